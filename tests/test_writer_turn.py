"""A tenant's stream of small writers costs each claim O(1), not O(stream)
(issue 11): the writers its scope's gate holds are parked an hour ahead at
submit (pgjobs._turn_at_submit) and come back one at a time, when the one
before them leaves the queue (pgjobs._pass_writer_turn).

Before, each start passed the turn to the next writer (queued_at now()), and
every other writer of the stream, held by the gate, kept its submit's
queued_at, ahead of it: every claim asked the gate about each of them
(1.22-1.31x the time a job for a stream of 200, bench/stream.py). Counted
here as calls of pgjobs._writer_may_start in one transaction
(track_functions), never as a time, for every entry point that picks from
the queue (pgjobs.claim of one job and of several, the runner's
pgjobs._run_next). And the class of a parked writer left behind: whatever
way the writer before it leaves the queue without running (canceled while
queued or paused, failed at its start, a client's pause expired), the
next one comes back at once, so it is never parked behind its own scope's
gate when nothing holds it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import claim, job, scalar
from tests.test_fairness import _tenants
from tests.test_fairness_scopes import _writer

Conn = Any
KINDS = ["delete", "backfill"]


def _gate_calls(conn: Conn) -> int:
    """Calls of the gate so far in this transaction (track_functions)."""
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_writer_may_start'"""))


def _pick(conn: Conn, entry: str) -> list[int]:
    if entry == "run_next":
        row = conn.execute("SELECT (pgjobs._run_next('w', now() + interval '1 hour')).id"
                           ).fetchone()
        return [] if row is None or row[0] is None else [int(row[0])]
    return claim(conn, "w", kinds=KINDS, limit=1 if entry == "claim" else 5)


@pytest.mark.parametrize("entry", ["claim", "claim_several", "run_next"])
@pytest.mark.parametrize("stream_kind", KINDS)
@pytest.mark.parametrize("size", [10, 40])
def test_a_claim_asks_the_gate_about_one_writer_of_a_stream(
        make_conn: Any, entry: str, stream_kind: str, size: int) -> None:
    """With a stream's first writer running, a claim asks the gate about the
    stream's next writer and the other tenants' jobs it takes, whatever the
    stream's length (10 or 40: the same count). A claim of five takes the
    five other tenants' jobs (a claim that wants more than the queue can give
    still asks about every writer it passes)."""
    setup = make_conn()
    _tenants(setup, big=50, small=50, tenants=5)
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    stream = [_writer(tx, stream_kind, 1) for _ in range(size)]
    others = [_writer(tx, "delete", t) for t in range(2, 7)]
    assert _pick(tx, "claim") == [stream[0]]
    before = _gate_calls(tx)
    taken = _pick(tx, entry)
    assert taken == others[:len(taken)] and taken
    assert _gate_calls(tx) - before <= 1 + len(taken)
    tx.rollback()


def _cancel(conn: Conn, first: int) -> None:
    conn.execute("SELECT pgjobs.cancel(%s)", (first,))


def _cancel_paused(conn: Conn, first: int) -> None:
    conn.execute("SELECT pgjobs.pause(%s)", (first,))
    assert job(conn, first)["status"] == "paused"
    conn.execute("SELECT pgjobs.cancel(%s)", (first,))


def _expire_pause(conn: Conn, first: int) -> None:
    """A client's pause outlives max_client_pause: the engine cancels it."""
    conn.execute("SELECT pgjobs.pause(%s)", (first,))
    conn.execute("UPDATE pgjobs.jobs SET paused_at = now() - interval '100 days', "
                 "paused_by_admin = false WHERE id = %s", (first,))
    assert scalar(conn, "SELECT pgjobs._expire_client_pauses()") == 1


def _fail_at_start(conn: Conn, first: int) -> None:
    """Its submitter lost a right: the claim fails it at its start."""
    conn.execute("UPDATE pgjobs.jobs SET submitted_by_oid = 0 WHERE id = %s", (first,))
    claim(conn, "w", kinds=KINDS, limit=1)


@pytest.mark.parametrize("leave", [_cancel, _cancel_paused, _expire_pause, _fail_at_start],
                         ids=["canceled", "paused-canceled", "pause-expired", "failed-at-start"])
@pytest.mark.parametrize("running_before", [False, True], ids=["first", "behind-a-runner"])
def test_a_writer_that_leaves_before_it_starts_passes_the_turn_on(
        conn: Conn, leave: Any, running_before: bool) -> None:
    """The writer after one that leaves the queue without running comes back
    from its park at once: it goes before jobs queued after it, not an hour
    later."""
    _tenants(conn, big=50, small=50, tenants=1)
    stream = [_writer(conn, "delete", 1) for _ in range(4)]
    if running_before:
        assert claim(conn, "w", kinds=KINDS) == [stream[0]]
        worker = job(conn, stream[0])["worker"]
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (stream[0], worker))
        stream = stream[1:]
    first, after = stream[0], stream[1]
    assert job(conn, after)["queued_at"] > scalar(conn, "SELECT now() + interval '50 minutes'")
    leave(conn, first)
    assert job(conn, first)["status"] in ("canceled", "failed")
    assert job(conn, after)["queued_at"] <= scalar(conn, "SELECT now()")


def test_a_writer_submitted_alone_or_behind_a_runner_is_not_parked(conn: Conn) -> None:
    """Only a writer behind one that has not started is parked: the first of
    a scope, and one submitted while the one before it runs, queue at now()."""
    _tenants(conn, big=50, small=50, tenants=1)
    first = _writer(conn, "delete", 1)
    assert job(conn, first)["queued_at"] <= scalar(conn, "SELECT now()")
    assert claim(conn, "w", kinds=KINDS) == [first]
    second = _writer(conn, "backfill", 1)
    assert job(conn, second)["queued_at"] <= scalar(conn, "SELECT now()")
