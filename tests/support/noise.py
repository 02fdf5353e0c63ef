"""Noise beside the test suite, to hunt tests whose result depends on what else
happens on the machine or the cluster at the same moment (``PGJOBS_TEST_NOISE``).

CI machines and shared servers are busy: another database's pg_cron ticks commit
transactions (transaction IDs and snapshots are the cluster's), autovacuum
analyzes and vacuums a table a test just filled (estimates, pages, dead rows,
plans; and its worker is a session of the test's database with a transaction
of its own), and the machine's cores are taken by other work. A test that
passes only when none of that happens between two of its statements fails once
in thousands of runs. ``PGJOBS_TEST_NOISE`` makes it happen all the time:

* ``xids``: a session of the ``postgres`` database commits a transaction with
  an ID (``SELECT txid_current()``) in a loop;
* ``analyze``: a session goes round every test database (``pgjobs_test_*``),
  running ``ANALYZE`` and ``VACUUM`` of each table autovacuum may process
  (not those with ``autovacuum_enabled = false``; no ``VACUUM`` where a test
  set the vacuum thresholds to bring autovacuum itself), as autovacuum would;
* ``cpu``: two processes spinning on the cores;
* ``threads``: a test whose body started a thread still alive 10 s after its
  teardown fails (a leftover worker of one test is noise for the next).

``PGJOBS_TEST_NOISE=1`` (or ``all``) starts all four; a comma list starts
some (``xids,analyze``). Off by default.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.support.databases import with_database

KINDS = ("xids", "analyze", "cpu", "threads")
CPU_SPINNERS = 2


def kinds(setting: str | None) -> set[str]:
    """The noise ``PGJOBS_TEST_NOISE`` asks for; a kind not known is an error (a
    typo must not run the suite quietly without noise)."""
    value = (setting or "").strip().lower()
    if value in ("", "0", "off", "no"):
        return set()
    if value in ("1", "all", "on", "yes"):
        return set(KINDS)
    wanted = {part.strip() for part in value.split(",") if part.strip()}
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"PGJOBS_TEST_NOISE: unknown kind(s) {sorted(unknown)}; "
                         f"use 1 or a comma list of {', '.join(KINDS)}")
    return wanted


class _Loop(threading.Thread):
    """A daemon thread calling ``step`` until stopped; connection errors (a
    database dropped under it, FORCE ending its session) are the noise's own
    business, never the test's."""

    def __init__(self, name: str, step: object) -> None:
        super().__init__(name=f"pgjobs-noise-{name}", daemon=True)
        self._step = step
        self.stop = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._step(self.stop)  # type: ignore[operator]
                self.rounds += 1
            except psycopg.Error:
                self.stop.wait(0.05)


def _burn_xids(cluster_url: str) -> object:
    def step(stop: threading.Event) -> None:
        with psycopg.connect(cluster_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("SELECT txid_current()")
    return step


_TABLES = """
SELECT c.oid::regclass::text,
       NOT EXISTS (SELECT FROM pg_catalog.pg_options_to_table(c.reloptions) o
                    WHERE o.option_name IN ('autovacuum_vacuum_threshold',
                                            'autovacuum_vacuum_insert_threshold'))
  FROM pg_catalog.pg_class c
 WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
   AND coalesce((SELECT o.option_value FROM pg_catalog.pg_options_to_table(c.reloptions) o
                  WHERE o.option_name = 'autovacuum_enabled'), 'on')::boolean
 ORDER BY random()
"""
"""What autovacuum may ANALYZE: every table but temporary ones and those a test
set `autovacuum_enabled = false` on (it says nobody else does); and whether
to VACUUM it too: not a table whose vacuum thresholds a test set (it waits
for autovacuum's own VACUUM there, which a VACUUM of the noise pre-empts)."""


def _analyze_databases(cluster_url: str) -> object:
    def step(stop: threading.Event) -> None:
        with psycopg.connect(cluster_url, autocommit=True) as admin:
            names = [name for name, in admin.execute(
                "SELECT datname FROM pg_catalog.pg_database"
                " WHERE datname LIKE 'pgjobs\\_test\\_%' ORDER BY random()").fetchall()]
        for name in names:
            if stop.is_set():
                return
            try:
                with psycopg.connect(with_database(cluster_url, name), autocommit=True,
                                     connect_timeout=5) as conn:
                    found = conn.execute(_TABLES).fetchall()
                    tables = ", ".join(table for table, _ in found)
                    vacuumed = ", ".join(table for table, vacuum in found if vacuum)
                    # One statement over every table, as vacuumdb or an
                    # autovacuum worker's round: pg_stat_activity shows one
                    # transaction from its start to its end (the horizon of
                    # pgjobs._cutoff_clause), and each table analyzed and
                    # vacuumed in its own transaction meanwhile.
                    conn.execute(f"ANALYZE (SKIP_LOCKED) {tables}")  # type: ignore[arg-type]
                    conn.execute(f"VACUUM (SKIP_LOCKED) {vacuumed}")  # type: ignore[arg-type]
            except psycopg.Error:
                continue  # the database was dropped meanwhile: the next one
        stop.wait(0.02)
    return step


@contextmanager
def noise(cluster_url: str, wanted: set[str]) -> Iterator[list[_Loop]]:
    """Run the noise asked for during the block (the test session)."""
    loops: list[_Loop] = []
    spinners: list[subprocess.Popen[bytes]] = []
    if "xids" in wanted:
        loops.append(_Loop("xids", _burn_xids(cluster_url)))
    if "analyze" in wanted:
        loops.append(_Loop("analyze", _analyze_databases(cluster_url)))
    try:
        for loop in loops:
            loop.start()
        if "cpu" in wanted:
            for _ in range(int(os.environ.get("PGJOBS_TEST_NOISE_CPUS", CPU_SPINNERS))):
                spinners.append(subprocess.Popen([sys.executable, "-c", "while 1: pass"]))
        yield loops
    finally:
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(timeout=30)
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def leftover_threads(started: set[threading.Thread], grace: float = 10.0) -> list[str]:
    """Threads a test body started that are still alive after its teardown,
    given `grace` seconds to end (a thread still running a job or a statement
    of an earlier test is noise for the next test: its commits move the
    cluster's transaction IDs, its job takes runners)."""
    deadline = time.monotonic() + grace
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sorted(thread.name for thread in started if thread.is_alive())
