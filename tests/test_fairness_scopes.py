"""Fairness between scopes, attacked with variants (issue 11): one tenant's
stream of jobs must not hold another tenant's job behind it.

Round-robin by budget (tests/test_fairness.py) hands a big job back behind
the jobs that waited meanwhile. But a tenant's many *small* writers never
use up a budget: each ends inside one, and the next of its scope (held by
the gate until then) still had its submit's queued_at, older than any job
another tenant submitted after the stream. So a tenant that queued twenty
deletes (or backfills, or a mix) had all twenty run before another tenant's
one job, whatever its size: as many budgets as the stream needed.

Each check runs CALL pgjobs.run with budgets of a few milliseconds (so a
budget ends after a page or two) and asserts on the order jobs ended in and
on how many budgets a job waited: counts, never timings. Every entry point
that starts a writer (the runner's claim, run_job's claim of one job) goes
through pgjobs._start_attempts, the one place the scope's next writer joins
the queue.

Passing the turn on writes the next writer's row, and a claim must never
wait for that: a client that keeps its own next writer locked (a pause or
cancel in a transaction it leaves open) held every claimer that started the
writer before it, and with it every other tenant's job that claim had
taken. Such a next writer keeps its place (it is not moved earlier)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import claim, job, make_target, scalar, submit
from tests.test_fairness import _run_until_done, _tenants

Conn = Any
STREAM = 12


def _writer(conn: Conn, kind: str, scope: int, **options: Any) -> int:
    """A small writer of `scope` of `rows` (tests/test_fairness.py's table):
    a delete of its rows whose data matches nothing yet deleted, or a backfill."""
    opts = json.dumps({"page_size": 200, "on_conflict": "queue", **options})
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, '{}', '{}', %s::jsonb)",
                          (str(scope), opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('rows', %s, '{}', "
                            "'{\"seen\": 1}'::jsonb, %s::jsonb)", (str(scope), opts)))


def _stream(conn: Conn, kinds: list[str], scope: int = 1, **options: Any) -> list[int]:
    return [_writer(conn, kinds[i % len(kinds)], scope, **options) for i in range(STREAM)]


def _run(conn: Conn, jobs: list[int]) -> list[int]:
    """The jobs in the order they ended, run by budgets long enough for many
    of them: a small job ends inside one, so only the claims' order decides."""
    return _run_until_done(conn, jobs, budget="1 minute")


def _others_ahead(order: list[int], stream: list[int], job_id: int) -> int:
    """How many of the stream's jobs ended before `job_id`."""
    return len([j for j in order[:order.index(job_id)] if j in stream])


@pytest.mark.parametrize(("stream_kinds", "other_kind"), [
    (["delete"], "delete"),
    (["backfill"], "backfill"),
    (["backfill"], "delete"),
    (["backfill", "delete"], "backfill"),
], ids=["deletes-vs-delete", "backfills-vs-backfill", "backfills-vs-delete", "mixed-vs-backfill"])
def test_a_stream_of_small_writers_does_not_hold_another_scopes_job(
        conn: Conn, stream_kinds: list[str], other_kind: str) -> None:
    """Twelve small writers of tenant 1, then one of tenant 2: tenant 2's job
    ends after one of the stream's (the one that started first)."""
    _tenants(conn, big=100, small=100, tenants=1)
    stream = _stream(conn, stream_kinds)
    other = _writer(conn, other_kind, 2)
    order = _run(conn, [*stream, other])
    assert _others_ahead(order, stream, other) <= 1, order
    assert all(job(conn, j)["status"] == "succeeded" for j in [*stream, other])


def test_several_scopes_each_go_before_a_streams_second_job(conn: Conn) -> None:
    """Three tenants' one job each, behind tenant 1's stream: each ends after
    the stream's first job only."""
    _tenants(conn, big=100, small=100, tenants=3)
    stream = _stream(conn, ["backfill"])
    others = [_writer(conn, "backfill", scope) for scope in (2, 3, 4)]
    order = _run(conn, [*stream, *others])
    assert [_others_ahead(order, stream, o) for o in others] == [1, 1, 1], order


def test_run_job_of_a_streams_writer_passes_its_turn_on(conn: Conn) -> None:
    """run_job starts a writer through the same start as a claim: the next
    writer of its scope goes behind the jobs that waited meanwhile."""
    _tenants(conn, big=100, small=100, tenants=1)
    stream = _stream(conn, ["delete"])
    other = _writer(conn, "delete", 2)
    conn.execute("CALL pgjobs.run_job(%s)", (stream[0],))
    order = _run(conn, [*stream[1:], other])
    assert order[0] == other, order


def test_a_priority_stream_wins_over_lower_but_not_over_its_equals(conn: Conn) -> None:
    """A high-priority stream of tenant 1 still goes before a lower-priority
    job queued first, but an equal-priority job of tenant 2 takes its turn
    within the stream."""
    _tenants(conn, big=100, small=100, tenants=2)
    low = _writer(conn, "delete", 3)
    stream = _stream(conn, ["backfill"], priority=5)
    peer = _writer(conn, "delete", 2, priority=5)
    order = _run(conn, [low, *stream, peer])
    assert _others_ahead(order, stream, peer) <= 1, order
    assert order[-1] == low, order


def test_a_big_job_handed_back_still_goes_behind_a_waiting_scope(conn: Conn) -> None:
    """The budget's round-robin is kept: a big writer handed back at every
    budget (budgets of a few milliseconds) goes behind tenant 2's job, and
    the next writer of the big job's scope still waits for it (the gate)."""
    _tenants(conn, big=3000, small=100, tenants=1)
    big = _writer(conn, "delete", 1, page_size=50)
    after_big = _writer(conn, "backfill", 1)
    other = _writer(conn, "backfill", 2)
    order = _run_until_done(conn, [big, after_big, other])
    assert order == [other, big, after_big], order


def test_a_paused_and_resumed_big_job_goes_behind_the_scope_that_waited(conn: Conn) -> None:
    """A big delete paused between budgets and resumed joins the queue anew:
    tenant 2's job, queued while it was paused, goes first."""
    _tenants(conn, big=3000, small=100, tenants=1)
    big = _writer(conn, "delete", 1, page_size=50)
    for _ in range(3):
        conn.execute("CALL pgjobs.run('5 milliseconds')")
    conn.execute("SELECT pgjobs.pause(%s)", (big,))
    assert job(conn, big)["status"] == "paused"
    other = _writer(conn, "backfill", 2)
    conn.execute("SELECT pgjobs.resume(%s)", (big,))
    order = _run_until_done(conn, [big, other])
    assert order == [other, big], order


def test_passing_the_turn_on_never_moves_an_imports_turn_earlier(conn: Conn) -> None:
    """An import's turn between tenants (pgjobs._tenant_turn: an hour after
    its scope's pending imports) stays where it was when the writer before
    it starts."""
    make_target(conn)
    first = submit(conn, "import")
    second = submit(conn, "import")
    turn = job(conn, second)["queued_at"]
    assert turn > job(conn, first)["queued_at"]
    assert claim(conn, "w", kinds=["import"]) == [first]
    assert job(conn, second)["queued_at"] == turn


@pytest.mark.parametrize("holder", ["pause", "cancel"])
@pytest.mark.parametrize("start", ["claim", "run_job's claim"])
def test_a_claim_never_waits_for_a_lock_on_the_next_writer(
        conn: Conn, make_conn: Any, holder: str, start: str) -> None:
    """The next writer of the started writer's scope is locked by its client
    (pgjobs.pause or pgjobs.cancel in an open transaction): the claim starts
    the writer (and the other tenant's job it takes) without waiting; a wait
    would end in lock_timeout's 55P03."""
    _tenants(conn, big=100, small=100, tenants=1)
    first, second = _stream(conn, ["delete"])[:2]
    other = _writer(conn, "delete", 2)
    before = scalar(conn, "SELECT queued_at FROM pgjobs.jobs WHERE id = %s", (second,))
    held = make_conn(autocommit=False)
    held.execute(f"SELECT pgjobs.{holder}(%s)", (second,))
    conn.execute("SET lock_timeout = '10s'")
    try:
        if start == "claim":
            assert {first, other} <= set(claim(conn, "w", ["delete"], limit=10))
        else:
            conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (first,))
    finally:
        conn.execute("RESET lock_timeout")
        held.rollback()
    assert job(conn, first)["status"] == "running"
    # Not moved (earlier or later) while it was locked.
    assert scalar(conn, "SELECT queued_at FROM pgjobs.jobs WHERE id = %s", (second,)) == before
