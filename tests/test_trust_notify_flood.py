"""A burst of NOTIFYs from a role with no grants is one wake-up (adversarial pass hT).

Every role that can connect may NOTIFY on channel `pgjobs`. The worker's
wait (db.notified) read one notification per wake-up and claimed after
each; the runner's (`pgjobs run --loop`, cli/runners._submitted) woke on
each payload that reads as a `submitted` event and CALLed pgjobs.run. So
`SELECT pg_notify('pgjobs', '{"id": 1, "event": "submitted"}' || g) FROM
generate_series(1, 100000) g`, one statement of a role without a single
pgjobs grant, made a hundred thousand claims or engine calls, one after
the other. A wake-up now drops the notifications queued behind it
(db.drain): the queue is read whole, and the burst costs one call.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.cli.runners import _submitted

Conn = psycopg.Connection[Any]

BURST = 2000

REPEATS = 5


@pytest.fixture
def stranger(conn: Conn) -> Iterator[str]:
    """A role with no pgjobs grants at all (roles are the cluster's: dropped after)."""
    name = f"stranger_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {name} NOLOGIN")
    yield name
    conn.execute("RESET ROLE")
    conn.execute(f"DROP ROLE {name}")


def _burst(conn: Conn, role: str, payload: str) -> None:
    """BURST distinct notifications on `pgjobs` (payload with N in place of
    each one's number), sent by `role` in one statement."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        conn.execute("SELECT pg_notify('pgjobs', replace(%s, 'N', g::text)) "
                     "FROM generate_series(1, %s) g", (payload, BURST))


def _wakeups(wait: Callable[[], bool]) -> int:
    """How many more times `wait` wakes before it waits in vain (at most BURST)."""
    count = 0
    while count < BURST and wait():
        count += 1
    return count


def _listener(dsn: str) -> Conn:
    return db.listener(dsn, app="pgjobs test")


@pytest.mark.parametrize("payload", [
    '{"id": N, "kind": "delete", "event": "submitted", "status": "queued"}',
    "not json at all N",
    '{"id": 1, "event": "progress", "done": N}',
])
def test_a_burst_wakes_a_worker_once(conn: Conn, dsn: str, stranger: str, payload: str) -> None:
    listener = _listener(dsn)
    try:
        # The server sends a burst in pieces about a millisecond apart; once in
        # forty bursts, a drain that did not wait for them woke six times. So
        # several bursts, each one wake-up.
        for _ in range(REPEATS):
            _burst(conn, stranger, payload)
            assert db.notified(listener, 5.0)
            # The rest of the burst was read with it, not one wake-up per NOTIFY.
            assert _wakeups(lambda: db.notified(listener, 0.2)) == 0
        # A notification sent after the wake-up still wakes the next wait.
        conn.execute("SELECT pg_notify('pgjobs', 'later')")
        assert db.notified(listener, 5.0)
    finally:
        listener.close()


def test_the_rest_of_a_burst_that_comes_a_moment_later_is_the_same_wake_up(
        conn: Conn, dsn: str, make_conn: Callable[..., Conn]) -> None:
    """The deterministic form of the pieces above: the second piece of a burst
    arrives a few milliseconds after the first (the server flushes its send
    buffer as it fills). A drain that read only what had already arrived woke
    the worker once per piece."""
    sender = make_conn()
    listener = _listener(dsn)
    try:
        def second_piece() -> None:
            time.sleep(0.003)
            sender.execute("SELECT pg_notify('pgjobs', 'second piece')")

        conn.execute("SELECT pg_notify('pgjobs', 'first piece')")
        thread = threading.Thread(target=second_piece)
        thread.start()
        try:
            assert db.notified(listener, 5.0)
        finally:
            thread.join()
        assert not db.notified(listener, 0.2)
    finally:
        listener.close()


def test_a_burst_of_submitted_events_is_one_runner_call(conn: Conn, dsn: str,
                                                        stranger: str) -> None:
    listener = _listener(dsn)
    try:
        _burst(conn, stranger,
               '{"id": N, "kind": "delete", "event": "submitted", "status": "queued"}')
        assert _submitted(listener, 5.0)
        assert _wakeups(lambda: _submitted(listener, 0.5)) <= 5
        conn.execute("""SELECT pg_notify('pgjobs', '{"id": 2, "kind": "delete", '
                        '"event": "submitted", "status": "queued"}')""")
        assert _submitted(listener, 5.0)
    finally:
        listener.close()


def test_a_real_submit_after_a_burst_still_wakes_the_worker(conn: Conn, dsn: str,
                                                            stranger: str) -> None:
    listener = _listener(dsn)
    try:
        _burst(conn, stranger, "noise N")
        assert db.notified(listener, 5.0)
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, scope int NOT NULL)")
        conn.execute("SELECT pgjobs.submit('custom', 'items', '1')")
        assert db.notified(listener, 5.0)
    finally:
        listener.close()


def test_drain_of_nothing_drops_nothing(dsn: str) -> None:
    listener = _listener(dsn)
    try:
        assert db.drain(listener) == 0
    finally:
        listener.close()
