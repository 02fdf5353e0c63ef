"""A client's ceilings hold for transactions that submit many jobs (h51).

Found (stop 47, h44's residual): a count sees the transaction's own
uncommitted jobs and not another session's, and far from a ceiling the
checks took no lock. So two sessions of one client, each submitting 85 jobs
in one transaction under max_jobs_kept_per_client 100, each counted at most
85, stayed far from the ceiling and kept 170 once both committed; the same
for max_pending_per_client and max_kinds_per_client. Now every check takes
the client's row of pgjobs.client_room_locks first (pgjobs._enter_client_room):
shared for a transaction's first submit of the client, exclusive once the
transaction already counts a job of the client (its room_xact, migration
0062), so such transactions count one after the other and single submits
wait for them. Each case here: ceiling 20, a first session submits 15 jobs
in one transaction (plainly, each in a savepoint, or in PL/pgSQL exception
blocks) and holds it open; a second session submits 15 more in a thread
(one transaction, or each on its own); the test waits until the second
waits on a lock (or has ended, as it did before), then commits the first.
The client may keep at most 20. No timing is asserted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, session_as
from tests.support.waiting import waits_on_lock_or_ends as waits_or_ends

Conn = psycopg.Connection[Any]

CEILING = 20
EACH = 15  # far from 20 (its margin is 2), together past it
CEILINGS = ("max_pending_per_client", "max_kinds_per_client", "max_jobs_kept_per_client")
# How the first session's transaction submits its jobs.
WAYS = {
    "plain": "SELECT pgjobs.submit(%(kind)s, 'user_table_rows', %(scope)s)",
    "savepoint": "SELECT pgjobs.submit(%(kind)s, 'user_table_rows', %(scope)s)",
    "exception-block": "DO $$ BEGIN BEGIN PERFORM pgjobs.submit({kind}, 'user_table_rows', "
                       "{scope}); EXCEPTION WHEN division_by_zero THEN NULL; END; END $$",
}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    seed(conn, make_rows_target(conn), 3)
    role = make_role(conn, "bclient", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    yield role
    drop_role(conn, role)


def _kind(ceiling: str, session: str, i: int) -> str:
    # Distinct kinds count toward max_kinds_per_client only.
    return f"{session}{i}" if ceiling == "max_kinds_per_client" else "k1"


def _submit(conn: Conn, way: str, kind: str, scope: str) -> None:
    if way == "exception-block":
        conn.execute(WAYS[way].format(kind=f"'{kind}'", scope=f"'{scope}'"))
    elif way == "savepoint":
        conn.execute("SAVEPOINT s")
        conn.execute(WAYS[way], {"kind": kind, "scope": scope})
        conn.execute("RELEASE SAVEPOINT s")
    else:
        conn.execute(WAYS[way], {"kind": kind, "scope": scope})


def _kept(conn: Conn, role: str) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s", (role,)))


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("second", ["one-transaction", "each-on-its-own"])
@pytest.mark.parametrize("ceiling", CEILINGS)
def test_transactions_that_submit_many_jobs_cannot_pass_a_ceiling_together(
        conn: Conn, make_conn: Callable[..., Conn], client: str, ceiling: str,
        second: str, way: str) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({ceiling: CEILING}),))
    first = session_as(make_conn, client, autocommit=False)
    other = session_as(make_conn, client, autocommit=second == "each-on-its-own")
    pid = int(scalar(other, "SELECT pg_backend_pid()"))
    for i in range(EACH):
        _submit(first, way, _kind(ceiling, "a", i), str(i))  # its transaction stays open
    outcome: dict[str, Any] = {"submitted": 0}
    done = threading.Event()

    def run() -> None:
        try:
            for i in range(EACH):
                _submit(other, "plain", _kind(ceiling, "b", i), str(100 + i))
                outcome["submitted"] += 1
            if second == "one-transaction":
                other.commit()
        except psycopg.Error as e:
            outcome["error"] = e
            if second == "one-transaction":
                other.rollback()
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        waited = waits_or_ends(conn, pid, done)
    finally:
        first.commit()
        thread.join()
    assert _kept(conn, client) <= CEILING, outcome
    assert waited, "the second session waited for the first's transaction"
    assert isinstance(outcome.get("error"), errors.ObjectInUse), outcome
    # Each on its own, the second kept what fitted once the first committed.
    assert _kept(conn, client) == (CEILING if second == "each-on-its-own" else EACH)


@pytest.mark.parametrize("ceiling", CEILINGS)
def test_a_savepoint_rolled_back_takes_its_jobs_out_of_the_count(
        conn: Conn, make_conn: Callable[..., Conn], client: str, ceiling: str) -> None:
    """A job of a subtransaction rolled back is gone: the transaction's next
    submit is its first again, takes the lock shared, and does not wait for
    another session's open single submit (lock_timeout: it would fail)."""
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({ceiling: CEILING}),))
    first = session_as(make_conn, client, autocommit=False)
    other = session_as(make_conn, client, autocommit=False)
    other.execute("SET lock_timeout = '5s'")
    _submit(other, "plain", _kind(ceiling, "b", 0), "100")  # open: holds its share
    first.execute("SAVEPOINT s")
    _submit(first, "plain", _kind(ceiling, "a", 0), "0")
    first.execute("ROLLBACK TO SAVEPOINT s")
    _submit(first, "plain", _kind(ceiling, "a", 1), "1")
    first.commit()
    other.commit()
    assert _kept(conn, client) == 2


@pytest.mark.parametrize("ceiling", CEILINGS)
def test_far_from_a_ceiling_open_single_submits_hold_none_back(
        conn: Conn, make_conn: Callable[..., Conn], client: str, ceiling: str) -> None:
    """The guard: two transactions of a client that each submitted one job,
    far from the ceiling, and a third session's submit: none waits."""
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({ceiling: CEILING}),))
    sessions = [session_as(make_conn, client, autocommit=False) for _ in range(2)]
    for n, session in enumerate(sessions):
        _submit(session, "plain", _kind(ceiling, "a", n), str(n))  # left open
    third = session_as(make_conn, client, autocommit=True)
    pid = int(scalar(third, "SELECT pg_backend_pid()"))
    done = threading.Event()

    def run() -> None:
        try:
            _submit(third, "plain", _kind(ceiling, "b", 0), "9")
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        waited = waits_or_ends(conn, pid, done)
    finally:
        for session in sessions:
            session.commit()
        thread.join()
    assert not waited
    assert _kept(conn, client) == 3


def test_two_bulk_transactions_that_wait_for_each_other_get_a_clear_error(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """Each submitted a job (a shared lock), then each submits another (an
    exclusive one, waiting for the other's share): PostgreSQL ends one
    (40P01), with a message that says what happened and a hint; the other
    goes on. (The client's row exists: a transaction that submitted two
    jobs made it. With none, a first submit locks nothing and there is no
    share to wait for.)"""
    setup = session_as(make_conn, client, autocommit=False)
    _submit(setup, "plain", "k1", "5")
    _submit(setup, "plain", "k1", "6")
    setup.commit()
    first = session_as(make_conn, client, autocommit=False)
    other = session_as(make_conn, client, autocommit=False)
    _submit(first, "plain", "k1", "1")
    _submit(other, "plain", "k1", "2")
    pid = int(scalar(first, "SELECT pg_backend_pid()"))
    outcomes: dict[str, Any] = {}
    done = threading.Event()

    def run(name: str, session: Conn, scope: str) -> None:
        try:
            _submit(session, "plain", "k1", scope)
            session.commit()
            outcomes[name] = "committed"
        except psycopg.Error as e:
            outcomes[name] = e
            session.rollback()

    def first_run() -> None:
        try:
            run("first", first, "3")
        finally:
            done.set()

    thread = threading.Thread(target=first_run)
    thread.start()
    assert waits_or_ends(conn, pid, done), "the first waits for the other's share"
    run("other", other, "4")
    thread.join()
    errors_seen = [o for o in outcomes.values() if isinstance(o, psycopg.Error)]
    assert len(errors_seen) == 1, outcomes
    error = errors_seen[0]
    assert isinstance(error, errors.DeadlockDetected), error
    assert "each submit several jobs" in str(error)
    assert error.diag.message_hint and "run the transaction again" in error.diag.message_hint
    assert _kept(conn, client) == 4  # the two of the setup, the two of the one that went on


def _lock_rows(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.client_room_locks"))


def test_prune_deletes_the_lock_rows_of_clients_that_keep_no_job(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """Found: a client's row of pgjobs.client_room_locks was never deleted
    (one per role that ever came near a ceiling, or now submitted two jobs
    in one transaction). prune deletes it once the client keeps no job, or
    its role is gone; never one a transaction holds (it skips it), and the
    client's next transaction that needs it makes it again."""
    gone = make_role(conn, "bgone", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    for role in (client, gone):
        session = session_as(make_conn, role, autocommit=False)
        jobs = [int(scalar(session, WAYS["plain"], {"kind": "k1", "scope": str(n)}))
                for n in range(2)]
        session.commit()
        for job in jobs:
            session.execute("SELECT pgjobs.cancel(%s)", (job,))
        session.commit()
    assert _lock_rows(conn) == 2
    drop_role(conn, gone)  # its jobs are kept, its row is of no use
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")  # the client's jobs stay
    assert summary["client_room_locks_deleted"] == 1
    holder = make_conn(autocommit=False)  # a transaction that holds the client's row
    holder.execute("SELECT FROM pgjobs.client_room_locks FOR KEY SHARE")
    summary = scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert summary["deleted"] == 4 and summary["client_room_locks_deleted"] == 0
    holder.rollback()
    summary = scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert summary["client_room_locks_deleted"] == 1
    assert _lock_rows(conn) == 0
    session = session_as(make_conn, client, autocommit=False)
    for n in range(2):
        _submit(session, "plain", "k1", str(n))  # the second makes the row again
    session.commit()
    assert _lock_rows(conn) == 1


def test_transactions_that_retry_many_jobs_cannot_pass_the_pending_ceiling_together(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """A retry makes a job pending again and counts as a submit does: two
    sessions each retrying 15 of the client's canceled jobs in one
    transaction, under max_pending_per_client 20, kept 30 pending before."""
    setup = session_as(make_conn, client, autocommit=True)
    jobs = [int(scalar(setup, WAYS["plain"], {"kind": "k1", "scope": str(n)}))
            for n in range(2 * EACH)]
    for job in jobs:
        setup.execute("SELECT pgjobs.cancel(%s)", (job,))
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_pending_per_client": CEILING}),))
    first = session_as(make_conn, client, autocommit=False)
    other = session_as(make_conn, client, autocommit=False)
    pid = int(scalar(other, "SELECT pg_backend_pid()"))
    for job in jobs[:EACH]:
        first.execute("SELECT pgjobs.retry(%s)", (job,))  # its transaction stays open
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            for job in jobs[EACH:]:
                other.execute("SELECT pgjobs.retry(%s)", (job,))
            other.commit()
        except psycopg.Error as e:
            outcome["error"] = e
            other.rollback()
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        waited = waits_or_ends(conn, pid, done)
    finally:
        first.commit()
        thread.join()
    pending = scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'queued'")
    assert pending <= CEILING, outcome
    assert waited and isinstance(outcome.get("error"), errors.ObjectInUse), outcome


# The strength a transaction's first submit waits at when it closes a cycle
# with a transaction that holds the client's row: 'share' (FOR KEY SHARE,
# behind a bulk transaction's FOR UPDATE) and 'near' (FOR NO KEY UPDATE,
# behind another near a ceiling). Before h59 only the exclusive wait turned
# PostgreSQL's 40P01 into pgjobs' message: these two raised the bare
# "deadlock detected ... relation client_room_locks", no hint.
@pytest.mark.parametrize("strength", ["share", "near"])
def test_a_first_submit_ended_by_a_deadlock_on_the_clients_lock_gets_a_clear_error(
        conn: Conn, make_conn: Callable[..., Conn], client: str, strength: str) -> None:
    """The holder (first) waits for an application row the waiter (other)
    locked; the waiter's submit then waits for the client's row the holder
    holds. The waiter alone checks for the deadlock soon (its
    deadlock_timeout, set before SET ROLE), so it is the one ended."""
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_jobs_kept_per_client": CEILING}),))
    setup = session_as(make_conn, client, autocommit=False)
    # Near: the client keeps 18 of 20 (pgjobs._near_ceiling), so each first
    # submit locks the row 'near'; else 2, far from it.
    for i in range(CEILING - 2 if strength == "near" else 2):
        _submit(setup, "plain", "k1", str(200 + i))
    setup.commit()
    first = make_conn(autocommit=False)
    first.execute("SET deadlock_timeout = '10min'")
    first.execute(f"SET ROLE {client}")
    other = make_conn(autocommit=False)
    other.execute("SET deadlock_timeout = '20ms'")
    other.execute(f"SET ROLE {client}")
    other.execute("SELECT 1 FROM user_table_rows WHERE id = 1 FOR UPDATE")
    _submit(first, "plain", "k1", "1")
    if strength == "share":
        _submit(first, "plain", "k1", "2")  # now it holds the row FOR UPDATE
    pid = int(scalar(first, "SELECT pg_backend_pid()"))
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def hold() -> None:
        try:
            first.execute("UPDATE user_table_rows SET id = id WHERE id = 1")
            first.commit()
            outcome["first"] = "committed"
        except psycopg.Error as e:
            outcome["first"] = e
            first.rollback()
        finally:
            done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert waits_or_ends(conn, pid, done), "the holder waits for the waiter's row"
        with pytest.raises(errors.DeadlockDetected) as caught:
            _submit(other, "plain", "k1", "3")
    finally:
        other.rollback()
        thread.join()
    assert outcome["first"] == "committed", outcome
    error = caught.value
    assert "run the transaction again" in (error.diag.message_hint or ""), str(error)
    assert client in str(error), str(error)
