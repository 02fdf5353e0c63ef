"""`pgjobs run`: the engine loop outside pg_cron, with one or more runners.

Each runner is a thread with its own connection calling ``CALL
pgjobs.run(budget)`` again and again. Between idle calls it waits on ``LISTEN
pgjobs`` for a ``submitted`` event (or ``idle`` seconds, whichever comes
first), so a job submitted while the runners are idle starts at once rather
than at the next poll. A notification is a wake-up only: any role may NOTIFY
any channel, so its payload decides nothing but "call again now"; the claim
reads the table. Runners never take the same job (claim's SKIP LOCKED) nor
two writers of one scope (the gate); jobs of different scopes run side by
side.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.progress import _wakeup
from pgjobs.errors import PgjobsError

IDLE_CALL_SECONDS = 0.5
"""A CALL that returns sooner found nothing to do: wait before the next."""


def _submitted(conn: Any, timeout: float) -> bool:
    """Wait up to timeout seconds for a notification that reads as a
    `submitted` event; True if one came (a hint, never trusted further). The
    notifications queued behind it are dropped (db.drain): any role may send
    a burst of them, and each would be a CALL pgjobs.run."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for payload in db.notifications(conn, left, stop_after=1):
            wakeup = _wakeup(payload)
            if wakeup is not None and wakeup[1] == "submitted":
                db.drain(conn)
                return True


RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
"""With --loop, the waits before each new connection after a lost session (then
the last one, again and again)."""


def run_loop(connect: Any, budget: str, loop: bool, idle: float,
             stop: threading.Event | None = None, live: set[Any] | None = None) -> None:
    """One runner: CALL pgjobs.run(budget) (interval text) once, or (loop)
    until stop is set. With loop, a lost session (server restart, failover,
    pg_terminate_backend) is not the end: the runner says so on stderr and
    connects again, as a worker does; its job resumes from its last committed
    page once the lease lapses. A first connection that fails still fails (a
    wrong DSN must not loop quietly). Its connection is in `live` while open,
    for run_runners to cancel its CALL on a stop."""
    connected = False
    attempt = 0
    while True:
        try:
            with connect(app="pgjobs run") as conn:
                connected = True
                attempt = 0
                if live is not None:
                    live.add(conn)
                try:
                    _run_on(conn, budget, loop, idle, stop)
                finally:
                    if live is not None:
                        live.discard(conn)
                return
        except PgjobsError as exc:
            if not (loop and connected and db.connection_lost(exc)):
                raise
            delay = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
            attempt += 1
            click.echo(f"database unavailable ({exc.message}); reconnecting in {delay:.1f}s",
                       err=True)
            if stop is not None:
                if stop.wait(delay):
                    return
            else:
                time.sleep(delay)


def _run_on(conn: Any, budget: str, loop: bool, idle: float,
            stop: threading.Event | None) -> None:
    """CALL pgjobs.run(budget) on one connection, once or (loop) until stop."""
    db.execute(conn, queries.RUN_SEARCH_PATH)  # nothing on the user's path may matter
    if loop:
        db.execute(conn, queries.LISTEN)
    while stop is None or not stop.is_set():
        started = time.monotonic()
        db.execute(conn, queries.RUN, {"budget": budget})
        if not loop:
            return
        if time.monotonic() - started < IDLE_CALL_SECONDS:  # nothing to do: do not spin
            _submitted(conn, idle)


STOP_SECONDS = 30.0
"""On Ctrl-C or SIGTERM, how long the runners' canceled CALLs get to end."""


def run_runners(connect: Any, budget: str, loop: bool, idle: float, runners: int) -> None:
    """`runners` runner threads side by side; the first error stops them all
    (each finishes its current CALL) and is raised here. A KeyboardInterrupt
    (Ctrl-C, or SIGTERM as `pgjobs run` maps it) cancels every runner's CALL
    on the server before it is raised: the runner threads die with the
    process, and their CALLs went on in orphaned sessions until the budget
    ran out, deleting with nobody left to stop them. (One runner runs in this
    thread, where psycopg cancels the CALL on the interrupt itself.)"""
    if runners == 1:
        run_loop(connect, budget, loop, idle)
        return
    stop = threading.Event()
    errors: list[BaseException] = []
    live: set[Any] = set()

    def runner() -> None:
        try:
            run_loop(connect, budget, loop, idle, stop, live)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=runner, name=f"pgjobs-runner-{i + 1}", daemon=True)
               for i in range(runners)]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for conn in list(live):
            db.cancel_statement(conn)
        deadline = time.monotonic() + STOP_SECONDS
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        raise
    if errors:
        raise errors[0]
