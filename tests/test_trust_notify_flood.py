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
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.cli.runners import _submitted
from tests.support.roles import in_role

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
    with in_role(conn, role):
        conn.execute("SELECT pg_notify('pgjobs', replace(%s, 'N', g::text)) "
                     "FROM generate_series(1, %s) g", (payload, BURST))


def _listener(dsn: str) -> Conn:
    return db.listener(dsn, app="pgjobs test")


def _narrow(listener: Conn) -> None:
    """Shrink the listener's socket receive buffer to 16 kB: the server can put
    only that much at a time in it, so a burst reaches the worker in pieces,
    each sent once the worker has read enough of the one before, and (the
    kernel's window rules) often a good 20 ms later. On a quiet machine a
    burst comes in a few pieces anyway, about a millisecond apart."""
    sock = socket.fromfd(listener.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    finally:
        sock.close()  # a duplicate of the descriptor: the connection's stays open


def _left_behind(listener: Conn) -> list[str]:
    """The notifications committed so far that the listener has not read: a
    statement's reply comes after every notification committed before it, so
    after a round trip they are all on the client, none still on the way. No
    wait for "nothing more came" (how long is long enough on a loaded machine?)."""
    listener.execute("SELECT")
    return db.notifications(listener, 0)


@pytest.mark.parametrize("payload", [
    '{"id": N, "kind": "delete", "event": "submitted", "status": "queued"}',
    "not json at all N",
    '{"id": 1, "event": "progress", "done": N}',
])
def test_a_burst_wakes_a_worker_once(conn: Conn, dsn: str, stranger: str, payload: str) -> None:
    listener = _listener(dsn)
    try:
        for _ in range(REPEATS):
            _burst(conn, stranger, payload)
            assert db.notified(listener, 5.0)
            # The rest of the burst was read with it, not one wake-up per
            # NOTIFY: none of it is left for another wake-up, now or later.
            assert _left_behind(listener) == []
        # A notification sent after the wake-up still wakes the next wait.
        conn.execute("SELECT pg_notify('pgjobs', 'later')")
        assert db.notified(listener, 5.0)
        assert _left_behind(listener) == []
    finally:
        listener.close()


def test_a_burst_that_comes_in_many_pieces_is_one_wake_up(conn: Conn, dsn: str,
                                                          stranger: str) -> None:
    """The server sends a burst a send buffer at a time, each piece as soon as
    it gets the CPU: a drain that read only what had arrived woke a worker six
    times for one statement on CI (once in forty bursts), and one that waited
    20 ms for the next piece woke it again whenever the server took longer (a
    loaded machine). Here every burst comes in pieces well apart, and each is
    still one wake-up, whatever the machine's load."""
    listener = _listener(dsn)
    _narrow(listener)
    try:
        for _ in range(REPEATS):
            _burst(conn, stranger, "noise N")
            assert db.notified(listener, 5.0)
            assert _left_behind(listener) == []
    finally:
        listener.close()


def test_a_burst_of_submitted_events_is_one_runner_call(conn: Conn, dsn: str,
                                                        stranger: str) -> None:
    listener = _listener(dsn)
    try:
        _burst(conn, stranger,
               '{"id": N, "kind": "delete", "event": "submitted", "status": "queued"}')
        assert _submitted(listener, 5.0)
        assert _left_behind(listener) == []
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
