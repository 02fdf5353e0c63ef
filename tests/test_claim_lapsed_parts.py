"""Part and item claims under concurrency, and parts whose lease lapsed while
their export was not running.

The helper claim of a part (pgjobs.claim_export_part with no job id) fails a
part whose lease expired on its last attempt only while its export runs (it
reads parts from the running exports, never every part of every finished
export). A helper that died while its export was paused, failed or canceled
left its part `running` with a lapsed lease: the resumed or retried export's
first part claim then failed that part, and the export with it, without a
single new attempt. The export's next claim (pgjobs.export_parts_split) now
queues such a part again with the failed ones. Two connections stand for two
workers; an open transaction holds a claim's locks where a race would be. No
sleeps, no timings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import MANY_PARTS, make_items, scalar, submit_export

Conn = psycopg.Connection[Any]
MakeConn = Callable[..., Conn]


@pytest.fixture(autouse=True)
def items(conn: Conn) -> None:
    make_items(conn, rows=240, tenants=3)


def _running_export(conn: Conn, scope: str = "1", parallel: int = 4) -> tuple[int, str]:
    job_id = submit_export(conn, scope, {}, {**MANY_PARTS, "parallel": parallel})
    identity = str(scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 minute')",
                          (job_id,)))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)",
                  (job_id, identity)) == parallel
    return job_id, identity


def _helper_part(conn: Conn) -> tuple[int, int] | None:
    row = conn.execute("SELECT job_id, part FROM pgjobs.claim_export_part(NULL, 'helper', "
                       "'1 minute')").fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def _stop(conn: Conn, job_id: int, identity: str, how: str) -> None:
    """The export stops running the way `how` says (its own worker ends it)."""
    if how == "paused":
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, identity)) is False
    elif how == "canceled":
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, identity)) is False
    else:
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'part 2: boom', false)",
                      (job_id, identity))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == how


def _again(conn: Conn, job_id: int, how: str) -> None:
    verb = "resume" if how == "paused" else "retry"
    assert scalar(conn, f"SELECT pgjobs.{verb}(%s)", (job_id,))


@pytest.mark.parametrize("polled", [True, False], ids=["helpers-polled", "no-poll"])
@pytest.mark.parametrize("how", ["paused", "failed", "canceled"])
def test_a_part_lapsed_on_its_last_attempt_while_stopped_runs_again(
        conn: Conn, how: str, polled: bool) -> None:
    job_id, identity = _running_export(conn)
    assert _helper_part(conn) == (job_id, 1)
    _stop(conn, job_id, identity, how)
    # The helper died on the part's last attempt while the export was stopped.
    conn.execute("UPDATE pgjobs.export_parts p SET attempts = j.max_attempts, "
                 "lease_expires_at = now() - interval '1 second' FROM pgjobs.jobs j "
                 "WHERE j.id = p.job_id AND p.job_id = %s AND p.part = 1", (job_id,))
    if polled:  # idle helpers poll meanwhile: nothing of a stopped export
        assert _helper_part(conn) is None
    _again(conn, job_id, how)
    identity = str(scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c2', '1 minute')",
                          (job_id,)))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 4
    taken: list[int] = []
    for _ in range(4):
        row = conn.execute("SELECT part, attempts FROM pgjobs.claim_export_part(%s, 'own', "
                           "'1 minute')", (job_id,)).fetchone()
        assert row is not None, taken
        taken.append(int(row[0]))
        assert row[1] == 1  # a fresh attempt, as a part failed for good gets
    assert sorted(taken) == [1, 2, 3, 4]
    assert scalar(conn, "SELECT count(*) FROM pgjobs.export_parts WHERE job_id = %s "
                        "AND status = 'failed'", (job_id,)) == 0


def test_a_part_lapsed_before_its_last_attempt_keeps_its_attempts(conn: Conn) -> None:
    job_id, identity = _running_export(conn, parallel=2)
    assert _helper_part(conn) == (job_id, 1)
    _stop(conn, job_id, identity, "paused")
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND part = 1", (job_id,))
    _again(conn, job_id, "paused")
    identity = str(scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c2', '1 minute')",
                          (job_id,)))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 2
    row = conn.execute("SELECT part, attempts FROM pgjobs.claim_export_part(%s, 'own', "
                       "'1 minute')", (job_id,)).fetchone()
    assert row is not None and tuple(row) == (1, 2)  # its second attempt, from its checkpoint


def test_a_live_part_on_its_last_attempt_is_not_queued_again(conn: Conn) -> None:
    job_id, identity = _running_export(conn, parallel=2)
    assert _helper_part(conn) == (job_id, 1)
    conn.execute("UPDATE pgjobs.export_parts p SET attempts = j.max_attempts FROM pgjobs.jobs j "
                 "WHERE j.id = p.job_id AND p.job_id = %s AND p.part = 1", (job_id,))
    # The job's own claim again (its split runs at every claim): the part's
    # lease has not lapsed, its worker is at it.
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 2
    assert scalar(conn, "SELECT status FROM pgjobs.export_parts WHERE job_id = %s AND part = 1",
                  (job_id,)) == "running"


def test_two_helpers_at_once_never_get_the_same_part(conn: Conn, make_conn: MakeConn) -> None:
    first, _ = _running_export(conn, "1", 2)
    second, _ = _running_export(conn, "2", 2)
    one, other = make_conn(), make_conn()
    other.execute("SET statement_timeout = '60s'")  # a wait would fail, not hang
    one.execute("BEGIN")
    taken = [_helper_part(one)]  # its lock held until commit
    for _ in range(3):
        taken.append(_helper_part(other))  # never waits for it
    assert _helper_part(other) is None
    one.execute("COMMIT")
    assert None not in taken
    assert sorted(t for t in taken if t) == [(first, 1), (first, 2), (second, 1), (second, 2)]


def test_a_lapsed_part_is_taken_by_one_of_two_helpers_at_once(
        conn: Conn, make_conn: MakeConn) -> None:
    job_id, _ = _running_export(conn, "1", 2)
    assert _helper_part(conn) == (job_id, 1)
    assert _helper_part(conn) == (job_id, 2)
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s", (job_id,))
    one, other = make_conn(), make_conn()
    other.execute("SET statement_timeout = '60s'")
    one.execute("BEGIN")
    first = _helper_part(one)
    second = _helper_part(other)
    one.execute("COMMIT")
    assert {first, second} == {(job_id, 1), (job_id, 2)}
    assert _helper_part(other) is None


def test_a_held_ended_part_is_skipped_and_never_waited_for(
        conn: Conn, make_conn: MakeConn) -> None:
    job_id, _ = _running_export(conn, "1", 2)
    # Part 1 ended (failed for good) and its cleanup holds its row.
    assert _helper_part(conn) == (job_id, 1)
    conn.execute("UPDATE pgjobs.export_parts SET status = 'failed', lease_expires_at = NULL "
                 "WHERE job_id = %s AND part = 1", (job_id,))
    holder, other = make_conn(), make_conn()
    other.execute("SET statement_timeout = '60s'")
    holder.execute("BEGIN")
    assert holder.execute("SELECT part FROM pgjobs.export_parts WHERE job_id = %s AND part = 1 "
                          "FOR SHARE", (job_id,)).fetchall() == [(1,)]
    assert _helper_part(other) == (job_id, 2)
    assert _helper_part(other) is None
    holder.execute("COMMIT")


# Fan-out items: two claimers at once.

def _fanout(conn: Conn, scope: str, items: int, options: str = "{}") -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items'::regclass, %s, "
                            "(SELECT jsonb_agg(g) FROM generate_series(1, %s) g), %s::jsonb)",
                      (scope, items, options)))


def _claim(conn: Conn, limit: int) -> list[tuple[int, int]]:
    return [(int(r[0]), int(r[1])) for r in conn.execute(
        "SELECT id, job_id FROM pgjobs.claim_items(ARRAY['thumb'], 'w', '1 minute', %s)",
        (limit,))]


def test_two_item_claimers_at_once_never_get_the_same_item(
        conn: Conn, make_conn: MakeConn) -> None:
    jobs = [_fanout(conn, str(s), 6) for s in range(3)]
    one, other = make_conn(), make_conn()
    other.execute("SET statement_timeout = '60s'")
    one.execute("BEGIN")
    first = _claim(one, 7)
    second = _claim(other, 7)
    one.execute("COMMIT")
    third = _claim(other, 10)
    ids = [i for i, _ in first + second + third]
    assert len(ids) == len(set(ids)) == 18
    assert {j for _, j in first + second + third} == set(jobs)


def test_a_capped_job_is_capped_across_two_claimers_at_once(
        conn: Conn, make_conn: MakeConn) -> None:
    capped = _fanout(conn, "1", 20, '{"concurrency": 2}')
    other_job = _fanout(conn, "2", 20)
    one, other = make_conn(), make_conn()
    other.execute("SET statement_timeout = '60s'")
    one.execute("BEGIN")
    first = _claim(one, 6)
    second = _claim(other, 6)  # the capped job's row is held: skipped, not waited for
    one.execute("COMMIT")
    third = _claim(other, 6)
    out = [j for _, j in first + second + third]
    assert out.count(capped) == 2
    assert out.count(other_job) == 16


def test_a_limit_below_the_number_of_jobs_takes_one_of_each_in_turn(conn: Conn) -> None:
    jobs = [_fanout(conn, str(s % 3), 5) for s in range(5)]
    assert [j for _, j in _claim(conn, 2)] == jobs[:2]


def test_a_capped_higher_priority_leaves_the_rest_to_a_lower_one(conn: Conn) -> None:
    high = _fanout(conn, "1", 20, '{"concurrency": 1, "priority": 5}')
    low = _fanout(conn, "2", 20)
    out = [j for _, j in _claim(conn, 5)]
    assert (out.count(high), out.count(low)) == (1, 4)


# Turns by tenant (target and scope): each tenant's least recently served job
# before any tenant's second one. By job alone, a tenant with many fan-out
# jobs had a turn for each of them to another tenant's one.

def _claim_and_end(conn: Conn) -> int:
    """The job of the one item a claim hands out; the item then ends (which
    serves its job: a claim alone does not)."""
    row = conn.execute("SELECT id, job_id, worker FROM pgjobs.claim_items(ARRAY['thumb'], "
                       "'w', '1 minute', 1)").fetchone()
    assert row is not None
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (row[0], row[2]))
    return int(row[1])


def test_a_tenant_with_many_jobs_takes_turns_with_a_tenant_of_one(conn: Conn) -> None:
    many = [_fanout(conn, "1", 3) for _ in range(5)]
    one = _fanout(conn, "2", 3)
    taken = [_claim_and_end(conn) for _ in range(6)]
    assert taken == [many[0], one, many[1], one, many[2], one]


def test_a_claim_of_many_items_gives_each_tenant_a_turn_first(conn: Conn) -> None:
    many = [_fanout(conn, "1", 3) for _ in range(5)]
    one = _fanout(conn, "2", 3)
    assert [j for _, j in _claim(conn, 2)] == [many[0], one]


def test_one_tenants_jobs_keep_their_own_turns(conn: Conn) -> None:
    jobs = [_fanout(conn, "1", 2) for _ in range(3)]
    taken = [_claim_and_end(conn) for _ in range(6)]
    assert taken == jobs + jobs
