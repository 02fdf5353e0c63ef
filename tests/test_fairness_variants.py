"""Fairness variants: idle workers helping parallel exports.

A worker's free slots take parts of running parallel exports
(pgjobs.claim_export_part with no job id). The pick went by job id alone:
every helper took a part of the oldest running export until each of its
parts was out, and another tenant's export, started a moment later, got no
helper at all. Now the export with the fewest parts out goes first, so the
helpers take turns between exports. No timings: the claim order alone is
asserted.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import MANY_PARTS, make_items, scalar, submit_export

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def items(conn: Conn) -> None:
    make_items(conn, rows=240, tenants=3)


def _running_export(conn: Conn, scope: str, parallel: int) -> int:
    """A claimed parallel export of `scope`, split into its parts (none out)."""
    job_id = submit_export(conn, scope, {}, {**MANY_PARTS, "parallel": parallel})
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 minute')",
                      (job_id,))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)",
                  (job_id, identity)) == parallel
    return job_id


def _help(conn: Conn, times: int) -> list[int]:
    """The job of each part `times` helper claims take (no job id given)."""
    taken = []
    for _ in range(times):
        row = conn.execute("SELECT job_id FROM pgjobs.claim_export_part(NULL, 'helper', "
                           "'1 minute')").fetchone()
        assert row is not None
        taken.append(int(row[0]))
    return taken


def test_helpers_take_turns_between_two_tenants_exports(conn: Conn) -> None:
    first = _running_export(conn, "1", 4)
    second = _running_export(conn, "2", 4)
    assert _help(conn, 4) == [first, second, first, second]


def test_helpers_take_turns_between_three_exports_of_any_size(conn: Conn) -> None:
    big = _running_export(conn, "1", 8)
    small = _running_export(conn, "2", 2)
    other = _running_export(conn, "0", 3)
    # Round by round while each has parts queued; then the ones left.
    assert _help(conn, 8) == [big, small, other, big, small, other, big, other]
    assert _help(conn, 5) == [big] * 5


def test_parts_the_jobs_own_worker_runs_count_as_out(conn: Conn) -> None:
    first = _running_export(conn, "1", 4)
    second = _running_export(conn, "2", 4)
    # The first export's own worker runs three of its parts itself.
    for _ in range(3):
        assert scalar(conn, "SELECT job_id FROM pgjobs.claim_export_part(%s, 'own', "
                      "'1 minute')", (first,)) == first
    assert _help(conn, 4) == [second, second, second, first]


def test_a_lapsed_part_is_not_out_and_is_taken_again(conn: Conn) -> None:
    first = _running_export(conn, "1", 2)
    second = _running_export(conn, "2", 2)
    assert _help(conn, 2) == [first, second]
    # The first export's helper died: its part's lease lapsed, so that
    # export has none out and its part is handed out again first.
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND status = 'running'", (first,))
    assert _help(conn, 1) == [first]


def test_a_given_job_id_still_takes_only_that_jobs_parts(conn: Conn) -> None:
    first = _running_export(conn, "1", 2)
    _running_export(conn, "2", 2)
    for _ in range(2):
        assert scalar(conn, "SELECT job_id FROM pgjobs.claim_export_part(%s, 'own', "
                      "'1 minute')", (first,)) == first
    assert conn.execute("SELECT * FROM pgjobs.claim_export_part(%s, 'own', '1 minute')",
                        (first,)).fetchall() == []


# Fan-out items: a claim of many items (a worker's free slots) took them all
# from the first job in claim order; another tenant's job got none until
# those items ended.

def _fanout(conn: Conn, scope: str, items: int, options: str = "{}") -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items'::regclass, %s, "
                            "(SELECT jsonb_agg(g) FROM generate_series(1, %s) g), %s::jsonb)",
                      (scope, items, options)))


def _claim_items(conn: Conn, limit: int) -> dict[int, int]:
    """How many items of each job one claim of `limit` items hands out."""
    rows = conn.execute("SELECT job_id, count(*) FROM pgjobs.claim_items(ARRAY['thumb'], 'w', "
                        "'1 minute', %s) GROUP BY job_id", (limit,)).fetchall()
    return {int(job_id): int(n) for job_id, n in rows}


def test_a_claim_of_many_items_shares_them_between_tenants_jobs(conn: Conn) -> None:
    big = _fanout(conn, "1", 100)
    other = _fanout(conn, "2", 100)
    assert _claim_items(conn, 10) == {big: 5, other: 5}


def test_a_job_with_few_items_leaves_its_share_to_the_others(conn: Conn) -> None:
    big = _fanout(conn, "1", 100)
    small = _fanout(conn, "2", 1)
    third = _fanout(conn, "0", 100)
    assert _claim_items(conn, 10) == {big: 5, small: 1, third: 4}


def test_every_small_job_gets_an_item_before_a_big_one_gets_the_rest(conn: Conn) -> None:
    big = _fanout(conn, "1", 100)
    small = [_fanout(conn, "2", 1) for _ in range(6)]
    assert _claim_items(conn, 10) == {big: 4, **{s: 1 for s in small}}


def test_a_capped_job_takes_no_more_than_its_concurrency(conn: Conn) -> None:
    capped = _fanout(conn, "1", 100, '{"concurrency": 2}')
    other = _fanout(conn, "2", 100)
    assert _claim_items(conn, 10) == {capped: 2, other: 8}


def test_priorities_still_win_in_a_claim_of_many_items(conn: Conn) -> None:
    low = _fanout(conn, "1", 100)
    high = _fanout(conn, "2", 4, '{"priority": 1}')
    higher = _fanout(conn, "0", 3, '{"priority": 2}')
    assert _claim_items(conn, 10) == {higher: 3, high: 4, low: 3}


def test_a_claim_of_one_item_keeps_the_order(conn: Conn) -> None:
    first = _fanout(conn, "1", 3)
    second = _fanout(conn, "2", 3)
    items = [int(r[0]) for r in conn.execute(
        "SELECT i.id FROM pgjobs.job_items i ORDER BY i.job_id, i.id")]
    # One at a time: the least recently served job first (a claim does not
    # serve it: an item's end does), each job's items in their order.
    taken = [conn.execute("SELECT id, job_id FROM pgjobs.claim_items(ARRAY['thumb'], 'w', "
                          "'1 minute', 1)").fetchone() for _ in range(6)]
    assert [t[1] for t in taken if t] == [first, second, first, first, second, second]
    assert sorted(t[0] for t in taken if t) == items
