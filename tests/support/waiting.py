"""The one way tests wait: poll a predicate until it returns something truthy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
