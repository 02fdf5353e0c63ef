"""A client's ceilings hold when its sessions submit at once (h44).

Found attacking as a client: pgjobs._require_client_room counted a client's
jobs without a lock, so two sessions of one client, each submitting in its
own transaction, each saw N-1 jobs under a ceiling of N and both passed: N+1
jobs. The per-role lock on every submit that closed it (migration 0050) was
backed out: one open transaction of a role held back every other submit of
that role, and one role often submits for all an application's tenants. Now
the checks (pending jobs, custom kinds, kept jobs) take the client's lock
(a row of pgjobs.client_room_locks, pgjobs._lock_client_room) only when a
count made without it is near its ceiling (pgjobs._near_ceiling), and count
again under it. The interleaving is forced: the first session submits and
holds its transaction open; the second submits in a thread; the test waits
until the second waits on a lock (or has ended, as it did before h44), then
commits the first. No timing is asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, session_as

Conn = psycopg.Connection[Any]

SUBMIT = "SELECT pgjobs.submit(%(kind)s, 'user_table_rows', %(scope)s)"

# Each ceiling at 2, the client one job below it (committed); then two
# sessions submit at once, the kinds each uses. For "kept", the job below
# the ceiling is finished, so only max_jobs_kept_per_client answers.
CEILINGS = {
    "max_pending_per_client": (("k1", "k1"), False),
    "max_kinds_per_client": (("k2", "k3"), False),
    "max_jobs_kept_per_client": (("k1", "k1"), True),
}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    seed(conn, make_rows_target(conn), 3)
    role = make_role(conn, "rclient", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    yield role
    drop_role(conn, role)


def _submit(conn: Conn, kind: str, scope: str) -> int:
    return int(scalar(conn, SUBMIT, {"kind": kind, "scope": scope}))


def _waits_or_ends(conn: Conn, pid: int, done: threading.Event) -> bool:
    """Whether the backend pid waits on a lock; False once its thread ended
    (it did not wait). Polls: the order of events is what is asserted."""
    for _ in range(6000):  # a safety net, not a time the test asserts
        if done.is_set():
            return False
        if scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
                        "AND wait_event_type = 'Lock'", (pid,)):
            return True
        time.sleep(0.01)
    raise AssertionError("the second submit neither waited nor ended")


@pytest.mark.parametrize("ceiling", sorted(CEILINGS))
def test_two_sessions_cannot_both_take_the_last_place(
        conn: Conn, make_conn: Callable[..., Conn], client: str, ceiling: str) -> None:
    (first_kind, second_kind), finished = CEILINGS[ceiling]
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({ceiling: 2}),))
    setup = session_as(make_conn, client)
    below = _submit(setup, "k1", "0")
    if finished:
        setup.execute(f"SELECT pgjobs.cancel({below})")
    first = session_as(make_conn, client, autocommit=False)
    second = session_as(make_conn, client)
    pid = int(scalar(second, "SELECT pg_backend_pid()"))
    _submit(first, first_kind, "1")  # its transaction stays open
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["job"] = _submit(second, second_kind, "2")
        except psycopg.Error as e:
            outcome["error"] = e
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        waited = _waits_or_ends(conn, pid, done)
    finally:
        first.commit()
        thread.join()
    assert isinstance(outcome.get("error"), errors.ObjectInUse), outcome
    assert waited, "the second submit waited for the first's transaction"
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s",
                  (client,)) == 2


@pytest.mark.parametrize("ceiling", sorted(CEILINGS))
def test_far_from_a_ceiling_an_open_transaction_holds_no_submit_back(
        conn: Conn, make_conn: Callable[..., Conn], client: str, ceiling: str) -> None:
    """The lock is taken near a ceiling only: with room for 20, a session's
    transaction left open after a submit does not make another session's
    submit wait (it would fail on its lock_timeout), and takes no lock row."""
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({ceiling: 20}),))
    first = session_as(make_conn, client, autocommit=False)
    second = session_as(make_conn, client)
    second.execute("SET lock_timeout = '5s'")
    _submit(first, "k1", "1")  # left open
    _submit(second, "k2", "2")
    first.commit()
    assert scalar(conn, "SELECT count(*) FROM pgjobs.client_room_locks") == 0


@pytest.mark.parametrize("refused", [False, True], ids=["retried", "retry-refused"])
def test_another_role_s_retry_near_a_ceiling_never_holds_the_client_back(
        conn: Conn, make_conn: Callable[..., Conn], client: str, refused: bool) -> None:
    """Found by the review of h44: a role with the kind's privilege on the
    target may retry a client's job, and near the client's ceiling that
    retry took the client's lock and kept it to the end of its transaction:
    left open, it made the client's own submits wait. Only the client's own
    calls take its lock now; the retrying role counts without it. (A
    refused retry held nothing already: its error aborts the transaction,
    which releases its locks; that case guards the new rule.)"""
    conn.execute("SELECT pgjobs.set_defaults('{\"max_pending_per_client\": 3}')")
    other = make_role(conn, "rother", "GRANT pgjobs_client TO {role}",
                      "GRANT SELECT, DELETE ON user_table_rows TO {role}")
    conn.execute(f"GRANT DELETE ON user_table_rows TO {client}")
    try:
        setup = session_as(make_conn, client)
        jobs = [int(scalar(setup, "SELECT pgjobs.submit_delete('user_table_rows', %s, "
                                  "'{\"id\": 1}')", (str(scope),))) for scope in (1, 2, 3)]
        setup.execute("SELECT pgjobs.cancel(%s)", (jobs[0],))  # 2 pending: near 3
        if refused:
            conn.execute("SELECT pgjobs.set_defaults('{\"max_pending_per_client\": 2}')")
        retrier = session_as(make_conn, other, autocommit=False)
        try:
            retrier.execute("SELECT pgjobs.retry(%s)", (jobs[0],))
            assert not refused
        except errors.ObjectInUse:
            assert refused  # an aborted transaction holds no lock: a guard
        probe = make_conn(autocommit=False)  # the retrier holds no lock row
        probe.execute("SELECT FROM pgjobs.client_room_locks FOR UPDATE NOWAIT")
        probe.rollback()
        if refused:
            conn.execute("SELECT pgjobs.set_defaults('{\"max_pending_per_client\": 4}')")
        submitter = session_as(make_conn, client)
        submitter.execute("SET lock_timeout = '5s'")
        assert _submit(submitter, "k1", "9")  # does not wait for the retrier
        retrier.rollback()
    finally:
        drop_role(conn, other)
