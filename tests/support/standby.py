"""A real streaming standby of the test cluster, for the throttling tests.

``start_standby(primary_url)`` takes a base backup of the primary with
``pg_basebackup -R`` (which writes ``standby.signal`` and ``primary_conninfo``)
into a new directory under /tmp and starts a hot standby from it on a free
port of 127.0.0.1, as the ``postgres`` system user when running as root (as
tests/support/pgcluster.py starts the primary). The primary needs nothing special:
PostgreSQL 15 defaults to ``wal_level = replica`` and ``max_wal_senders = 10``,
and initdb's pg_hba.conf (``-A trust``) already allows local replication
connections. ``Standby.stop()`` stops it (immediate) and removes the directory;
it is also registered at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgjobs import embedded
from tests.support.databases import with_database
from tests.support.net import free_port

Conn = psycopg.Connection[Any]

# Hot standby refuses to start with fewer of these than the primary has
# (tests/support/pgcluster.py raises them).
_SETTINGS = {
    "max_connections": "200",
    "max_worker_processes": "32",
    "max_prepared_transactions": "10",
    "fsync": "off",
    "logging_collector": "off",
    "hot_standby": "on",
}


@dataclass
class Standby:
    base_dir: str
    port: int
    url: str
    _stopped: bool = field(default=False)

    def _pg_ctl(self, *args: str) -> list[str]:
        return embedded.as_server_user(
            [str(embedded.find_bindir() / "pg_ctl"), "-D", os.path.join(self.base_dir, "data"),
             *args])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        subprocess.run(self._pg_ctl("-m", "immediate", "-w", "stop"), capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_standby(primary_url: str) -> Standby:
    bindir = embedded.find_bindir()
    base_dir = tempfile.mkdtemp(prefix="pgjobs-standby-", dir="/tmp")
    os.chmod(base_dir, 0o755)
    data = os.path.join(base_dir, "data")
    sockets = os.path.join(base_dir, "sockets")
    os.makedirs(sockets)
    if embedded.is_root():
        shutil.chown(base_dir, embedded.SERVER_USER_AS_ROOT, embedded.SERVER_USER_AS_ROOT)
        shutil.chown(sockets, embedded.SERVER_USER_AS_ROOT, embedded.SERVER_USER_AS_ROOT)
    primary = conninfo_to_dict(primary_url)
    user = str(primary.get("user", "postgres"))
    standby = Standby(base_dir, 0, "")
    atexit.register(standby.stop)
    try:
        source = make_conninfo(host=str(primary.get("host", "127.0.0.1")),
                               port=str(primary.get("port", "5432")),
                               user=str(primary.get("user", "postgres")),
                               application_name="pgjobs_test_standby")
        subprocess.run(
            embedded.as_server_user([str(bindir / "pg_basebackup"), "-R", "-X", "stream",
                                     "-c", "fast", "-D", data, "-d", source]),
            check=True, capture_output=True, timeout=300)
        log = os.path.join(base_dir, "log")
        for attempt in range(5):
            # A port found free is free only until another program binds it
            # (a test cluster, a client's ephemeral port): the server then
            # says so in its log and exits, and another port is tried.
            standby.port = free_port()
            standby.url = make_conninfo(host="127.0.0.1", port=str(standby.port), user=user,
                                        dbname="postgres")
            options = " ".join([f"-p {standby.port}", "-h 127.0.0.1", f"-k {sockets}"]
                               + [f"-c {k}={v}" for k, v in _SETTINGS.items()])
            logged = os.path.getsize(log) if os.path.exists(log) else 0
            started = subprocess.run(standby._pg_ctl("-o", options, "-l", log, "-w", "-t", "120",
                                                     "start"),
                                     capture_output=True, timeout=180)
            if started.returncode == 0:
                break
            with open(log, errors="replace") as text:
                text.seek(logged)
                taken = "could not bind" in text.read()
            if not taken or attempt == 4:
                started.check_returncode()
        deadline = time.monotonic() + 60
        with psycopg.connect(primary_url, autocommit=True) as conn:
            while not conn.execute(
                    "SELECT EXISTS (SELECT FROM pg_stat_replication"
                    " WHERE application_name = 'pgjobs_test_standby'"
                    " AND state = 'streaming')").fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise RuntimeError("the standby does not stream")
                time.sleep(0.1)
    except BaseException:
        standby.stop()
        raise
    return standby


def caught_up(conn: Conn, replica: Conn, timeout: float = 60) -> None:
    """Until the standby (``replica``: a session on it) has replayed everything the
    primary (``conn``) has written now."""
    target = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert target is not None
    deadline = time.monotonic() + timeout
    while replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                          (target[0],)).fetchone() != (True,):
        assert time.monotonic() < deadline, "the standby does not catch up"
        time.sleep(0.05)


# Fixtures (registered by tests/conftest.py: request them by name) --------------


@pytest.fixture(scope="module")
def standby(cluster_url: str) -> Iterator[Standby]:
    s = start_standby(cluster_url)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def read_dsn(dsn: str, standby: Standby) -> str:
    """The test's database on the standby."""
    return with_database(standby.url, str(conninfo_to_dict(dsn)["dbname"]))


@pytest.fixture
def replica(standby: Standby) -> Iterator[Conn]:
    """A superuser session on the standby; replay is resumed at the end whatever
    the test did."""
    with psycopg.connect(standby.url, autocommit=True) as c:
        try:
            yield c
        finally:
            c.execute("SELECT pg_wal_replay_resume()")
