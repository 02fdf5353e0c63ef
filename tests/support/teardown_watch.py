"""Sessions a test left open in a transaction, ended when a teardown waits on them.

A test that fails while a connection of its own is in a transaction (a
non-autocommit connection from `make_conn`, a `psycopg.connect` of its own, a
failed statement leaving the transaction aborted) keeps that transaction's
locks until the connection closes. `make_conn` closes its connections after
every fixture built on them has torn down, so a fixture's `DROP TABLE`,
`TRUNCATE` or `DROP ROLE` waited on the leftover for as long as CI let it
(once ~8 minutes in tests/test_engine_overhead.py), and said nothing of why.

`TeardownWatch` runs beside every test's teardown (tests/conftest.py). Once the
teardown has run for `WATCH_AFTER` seconds it looks, every `POLL` seconds, for
a statement of the run's databases waiting on a lock held by a session that has
sat idle in a transaction for `IDLE` seconds or more: nobody is going to end
that transaction any more. It names the session, ends it
(`pg_terminate_backend`) so the teardown goes on, and the teardown then fails
with what it found. A teardown that waits on a session still at work (a
statement running, or a transaction busy moments ago) is left alone.

Only databases this process created (`database_name`: `pgjobs_<label>_<pid>_<n>`)
are looked at: a shared server (PGJOBS_TEST_URL) keeps everyone else's sessions.
A teardown that waits on no lock has no overhead beyond a timer thread: the
watch connects only after `WATCH_AFTER` seconds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg

WATCH_AFTER = 2.0
"""Seconds of teardown before the watch connects and starts looking."""
IDLE = 5.0
"""Seconds a blocking session must have sat idle in its transaction."""
POLL = 0.5

_LEFTOVERS = """
    SELECT DISTINCT b.pid, b.datname, b.state,
           round(extract(epoch FROM now() - b.xact_start))::int AS open_s,
           left(b.query, 300) AS last_query,
           w.pid AS waiter, left(w.query, 300) AS waiting
      FROM pg_catalog.pg_stat_activity w
     CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS blocker(pid)
      JOIN pg_catalog.pg_stat_activity b ON b.pid = blocker.pid
     WHERE w.wait_event_type = 'Lock'
       AND w.datname ~ %(ours)s AND b.datname ~ %(ours)s
       AND b.state IN ('idle in transaction', 'idle in transaction (aborted)')
       AND b.state_change < now() - make_interval(secs => %(idle)s)
     ORDER BY b.pid"""


def our_databases() -> str:
    """A regular expression matching the names `database_name` gives in this process."""
    return rf"^pgjobs_[a-z0-9_]+_{os.getpid()}_[0-9]+$"


@dataclass(frozen=True)
class Leftover:
    pid: int
    database: str
    state: str
    open_seconds: int
    last_query: str
    waiter: int
    waiting: str
    known_as: str

    def describe(self) -> str:
        return (f"backend pid {self.pid}{self.known_as} in {self.database}, {self.state} "
                f"(its transaction open {self.open_seconds} s), last query: "
                f"{self.last_query.strip()!r}; the teardown's {self.waiting.strip()!r} "
                f"(pid {self.waiter}) waited on it")


class TeardownWatch:
    """Ends the sessions a teardown waits on that nobody will end (see above).

    `names` maps backend pids to how the test made them (`make_conn` fills it),
    so the report can say "make_conn(autocommit=False) #2" beside the pid."""

    def __init__(self, cluster_url: str, names: dict[int, str] | None = None) -> None:
        self._url = cluster_url
        self._names = names if names is not None else {}
        self._stop = threading.Event()
        self._timer = threading.Timer(WATCH_AFTER, self._watch)
        self._timer.daemon = True
        self.ended: list[Leftover] = []

    def __enter__(self) -> TeardownWatch:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._timer.cancel()
        self._timer.join(timeout=30)

    def report(self) -> str:
        """The failure message: empty when the teardown waited on no leftover."""
        if not self.ended:
            return ""
        lines = [f"the teardown waited on {len(self.ended)} session(s) left idle in a "
                 "transaction (by the test, or a fixture's connection it left mid-transaction); "
                 "they were ended (pg_terminate_backend) so the teardown could go on:"]
        lines += [f"  {leftover.describe()}" for leftover in self.ended]
        lines.append("  hint: roll back or close every connection the test opens in a "
                     "try/finally (or a with block) so a failed assertion leaves no "
                     "transaction open (tests/README.md, \"A session left open\")")
        return "\n".join(lines)

    def _watch(self) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as admin:
                admin.execute("SET application_name = 'pgjobs tests: teardown watch'")
                while not self._stop.is_set():
                    self._end_leftovers(admin)
                    self._stop.wait(POLL)
        except psycopg.Error:
            # The server went away (the session's last teardown stops it): the
            # teardown has nothing left to wait on.
            return

    def _end_leftovers(self, admin: psycopg.Connection[Any]) -> None:
        rows = admin.execute(_LEFTOVERS, {"ours": our_databases(), "idle": IDLE}).fetchall()
        for pid, database, state, open_s, last_query, waiter, waiting in rows:
            if any(leftover.pid == pid for leftover in self.ended):
                continue
            known = self._names.get(pid)
            self.ended.append(Leftover(pid, database, state, open_s, last_query or "",
                                       waiter, waiting or "", f" ({known})" if known else ""))
            admin.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,))
