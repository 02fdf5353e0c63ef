"""Turns between tenants for exports. An export runs to its end once claimed
(no budget hands it back, as the runner's jobs are), and claims go by
priority, then queued_at: a tenant that queued a burst of exports held every
worker slot until the burst was done, and another tenant's export waited
behind all of it. An export submitted while exports of its (target, scope)
are pending queues an hour after the latest of them, so the tenants' exports
take turns. No timings: the claim order alone is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allow, make_items, make_people, scalar, submit_export, submit_import

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def items(conn: Conn) -> None:
    make_items(conn, rows=60, tenants=4)


def _claim_all(conn: Conn) -> list[int]:
    """Claim exports one at a time (a worker with one slot) until none is left."""
    order: list[int] = []
    while row := conn.execute("SELECT id FROM pgjobs.claim(ARRAY['export'], 'w', "
                              "'30 seconds', 1)").fetchone():
        order.append(int(row[0]))
    return order


def test_another_tenants_export_goes_after_the_first_of_a_burst_not_the_last(
        conn: Conn) -> None:
    burst = [submit_export(conn, "1") for _ in range(5)]
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]


def test_bursts_of_three_tenants_take_turns(conn: Conn) -> None:
    jobs = {scope: [submit_export(conn, scope) for _ in range(3)] for scope in ("1", "2", "3")}
    assert _claim_all(conn) == [jobs[s][k] for k in range(3) for s in ("1", "2", "3")]


def test_one_tenant_alone_keeps_its_order_and_a_running_export_counts(conn: Conn) -> None:
    first = submit_export(conn, "1")
    assert _claim_all(conn) == [first]  # running now
    rest = [submit_export(conn, "1") for _ in range(3)]
    fresh = submit_export(conn, "2")
    # Behind the running one: the tenant's next export waits an hour, a new
    # tenant's does not.
    assert _claim_all(conn) == [fresh, *rest]


def test_priority_still_wins_and_a_scheduled_export_pushes_nothing(conn: Conn) -> None:
    later = int(scalar(conn, "SELECT pgjobs.submit_export('items', '1', '{}', %s::jsonb)",
                       (json.dumps({"run_at": "2999-01-01T00:00:00Z"}),)))
    burst = [submit_export(conn, "1") for _ in range(2)]
    urgent = submit_export(conn, "2", options={"priority": 5})
    # The scheduled export is not due: it did not push the burst behind it.
    assert scalar(conn, "SELECT queued_at <= now() FROM pgjobs.jobs WHERE id = %s",
                  (burst[0],))
    assert _claim_all(conn) == [urgent, *burst]
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (later,)) == "queued"


def test_an_export_handed_back_queues_again_from_now(conn: Conn) -> None:
    burst = [submit_export(conn, "1") for _ in range(3)]
    [(first, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['export'], "
                                     "'w', '30 seconds', 1)").fetchall()
    assert first == burst[0]
    other = submit_export(conn, "2")
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (first, worker)) is True
    # The released export queues anew (now): behind the other tenant's, which
    # waited meanwhile, and ahead of its own tenant's later turns.
    assert _claim_all(conn) == [other, first, *burst[1:]]


def test_a_worker_with_one_slot_serves_the_tenants_by_turns(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """End to end: `pgjobs worker --concurrency 1` runs the exports; the other
    tenant's ends second, not after the whole burst."""
    from pgjobs.poller.worker import Worker

    conn.execute("SELECT pgjobs.allow_storage(%s)", (local_dir,))
    burst = [submit_export(conn, "1") for _ in range(4)]
    other = submit_export(conn, "2")
    Worker(dsn, local_dir, concurrency=1, once=True, poll=0.1).run()
    ended = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.jobs WHERE id = ANY (%s) AND status = 'succeeded' "
        "ORDER BY finished_at, id", ([*burst, other],))]
    assert ended == [burst[0], other, *burst[1:]]


def test_a_retried_burst_takes_turns_as_its_submit_did(conn: Conn) -> None:
    """A tenant's burst of exports that failed (here canceled) and is
    retried all at once queues by turns again, not all at now() ahead of the
    other tenant's export submitted after the retries (pgjobs._tenant_turn)."""
    burst = [submit_export(conn, "1") for _ in range(3)]
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s) "
                        "AND status = 'canceled'", (burst,)) == 3
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]


def test_a_paused_and_resumed_burst_takes_turns_as_its_submit_did(conn: Conn) -> None:
    """Pausing a tenant's queued burst and resuming it does not queue it all
    at now(), ahead of the other tenant's export submitted after the resumes."""
    burst = [submit_export(conn, "1") for _ in range(3)]
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s) "
                        "AND status = 'paused'", (burst,)) == 3
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]


def _pass_time(conn: Conn, minutes: int) -> None:
    """As if `minutes` went by for every job: their times move back (the
    claim compares run_at with now() and orders by queued_at)."""
    conn.execute("UPDATE pgjobs.jobs SET run_at = run_at - make_interval(mins => %s), "
                 "queued_at = queued_at - make_interval(mins => %s)", (minutes, minutes))


def _at(conn: Conn, minutes: float) -> str:
    return str(scalar(conn, "SELECT (now() + make_interval(secs => %s))::text", (minutes * 60,)))


@pytest.mark.parametrize("ahead", [[1, 1, 1, 1], [1, 2, 3, 4], [4, 3, 2, 1], [7, 1, 9, 3]],
                         ids=["same", "rising", "falling", "mixed"])
def test_a_burst_scheduled_a_moment_ahead_takes_turns(conn: Conn, ahead: list[int]) -> None:
    """A tenant's burst submitted with run_at minutes ahead (in any order)
    counted as no pending export when submitted, and each kept its submit's
    queued_at: once due, the whole burst went before another tenant's export
    submitted after it, as if no turn existed. Each takes its turn from the
    later of its run_at and the turns of those due before it or within the
    hour after (pgjobs._tenant_turn)."""
    burst = [submit_export(conn, "1", options={"run_at": _at(conn, m)}) for m in ahead]
    _pass_time(conn, 10)  # every one of them due, within the hour
    other = submit_export(conn, "2")
    order = _claim_all(conn)
    assert order[1] == other, order
    assert sorted(order) == sorted([*burst, other])


def test_an_export_scheduled_long_ago_takes_its_turn_from_its_run_at(conn: Conn) -> None:
    """A scheduled export joins the queue when it becomes due: its submit's
    time, hours before, put it ahead of every other tenant's export that
    waited while it was not due."""
    scheduled = submit_export(conn, "1", options={"run_at": _at(conn, 120)})
    _pass_time(conn, 60)
    waiting = submit_export(conn, "2")
    _pass_time(conn, 61)  # both due
    assert _claim_all(conn) == [waiting, scheduled]


def test_an_import_burst_scheduled_a_moment_ahead_takes_turns(
        conn: Conn, tmp_path: Path) -> None:
    """Imports share the turns, and the run_at rule, with exports."""
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    (tmp_path / "a.csv").write_text("name,age\nx,1\n")
    burst = [submit_import(conn, f"file://{tmp_path}/a.csv", "1",
                           options={"run_at": _at(conn, 1)}) for _ in range(3)]
    _pass_time(conn, 2)
    other = submit_import(conn, f"file://{tmp_path}/a.csv", "2")
    order = []
    while row := conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['import'], "
                              "'w', '30 seconds', 1)").fetchone():
        order.append(int(row[0]))  # ended before the next claim: one slot
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{}')", (row[0], row[1])) is True
    assert order == [burst[0], other, *burst[1:]]


def test_a_paused_burst_resumed_with_run_at_ahead_takes_turns(conn: Conn) -> None:
    """Resume keeps the job's run_at: a paused burst scheduled a moment
    ahead, resumed, takes turns too."""
    burst = [submit_export(conn, "1", options={"run_at": _at(conn, 1)}) for _ in range(3)]
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    _pass_time(conn, 2)
    other = submit_export(conn, "2")
    assert _claim_all(conn)[:2] == [burst[0], other]
