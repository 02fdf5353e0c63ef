"""The one way tests wait: poll a predicate until it returns something truthy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05,
             tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """Call predicate() every `interval` seconds until it returns a truthy value,
    and return that value; fail the test naming `what` after `timeout` seconds.
    Exceptions of the `tolerate` classes count as "not yet" (a chaos test polls
    through a restarting server with tolerate=(psycopg.OperationalError,))."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except tolerate:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def waits_on_lock_or_ends(conn: Any, pid: int, done: threading.Event) -> bool:
    """Whether the backend ``pid`` comes to wait on a lock (pg_stat_activity,
    read through ``conn``); False once ``done`` is set (its thread ended
    without waiting). Polls: the order of events is what a test asserts, not
    a time (tests/test_trust_client_race.py, tests/test_trust_client_bulk.py)."""
    for _ in range(6000):  # a safety net, not a time the test asserts
        if done.is_set():
            return False
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
                           "AND wait_event_type = 'Lock'", (pid,)).fetchone()
        if row and row[0]:
            return True
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} neither waited on a lock nor ended")
