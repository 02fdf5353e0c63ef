"""A throwaway PostgreSQL server for the test suite, through testing.postgresql.

``start_test_cluster()`` initdb's a fresh cluster in a temporary directory, starts it
on 127.0.0.1 (free port, own socket directory) tuned for tests (no fsync) with
pg_cron preloaded when installed, and removes it at ``stop()`` or at interpreter
exit, whichever comes first.

A port found free is free only at that moment: another test run's cluster (two
engineers, or CI, on one machine) can bind it before this server does. The
server then exits ("Address already in use") and is started again on another
port; and it is taken as up only when the server answering on the port is this
one (its data directory), never another cluster that holds the port.

PostgreSQL refuses to run as root. testing.postgresql runs ``initdb`` and
``postgres`` itself, so as root it is handed two generated wrapper scripts that
give the base directory to the ``postgres`` system user and exec the real binary
as that user (``setpriv`` execs in place, so testing.postgresql's SIGINT reaches
the postmaster itself).
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import testing.postgresql

from pgjobs import embedded

CRON_DATABASE = "pgjobs_cron"
"""``cron.database_name`` of the test cluster: the database pg_cron runs jobs from."""

_SERVER_SETTINGS = {
    "logging_collector": "off",
    "cron.database_name": CRON_DATABASE,
    "cron.use_background_workers": "on",
    "max_worker_processes": "32",
    "max_connections": "200",
    "max_prepared_transactions": "10",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
"""``postgres -c`` settings: values must not contain spaces (testing.postgresql splits
``postgres_args`` on whitespace)."""
_INITDB_ARGS = "-U postgres -A trust -E UTF8 --no-locale --no-sync"
PORT_TRIES = 5
"""Starts on a new port when the one found free was bound by someone else first."""


class TestCluster(testing.postgresql.Postgresql):  # type: ignore[misc]
    """testing.postgresql's server, whose ``url()`` names database ``postgres`` (its
    ``dsn()`` carries a ``database`` key that psycopg 3 rejects: use ``url()``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, owns_base_dir: bool, wrapper_dir: str | None, **kwargs: Any):
        self._owns_base_dir = owns_base_dir
        self._wrapper_dir = wrapper_dir
        self._starting = False
        super().__init__(**kwargs)

    def initialize(self) -> None:
        super().initialize()
        # We created base_dir ourselves (so wrappers could name it); let the base
        # class remove it on cleanup as if it had made it.
        self._use_tmpdir = self._owns_base_dir

    def start(self) -> None:
        """Start the server; again on another port while the port it was given
        was taken before the server bound it."""
        owns = self._use_tmpdir
        # A failed try must not remove the cluster, nor the wrappers.
        self._use_tmpdir, self._starting = False, True
        try:
            for attempt in range(PORT_TRIES):
                try:
                    super().start()
                    return
                except RuntimeError:
                    if attempt + 1 == PORT_TRIES or not _lost_its_port(self.read_bootlog()):
                        raise
                    self.settings["port"] = None  # prestart() finds another
        finally:
            self._use_tmpdir, self._starting = owns, False

    def is_server_available(self) -> bool:
        """Up when the server answering on the port is this one: another
        cluster holding the port (trust authentication too) answers as well,
        while this server is still starting, then failing to bind it."""
        try:
            with psycopg.connect(host="127.0.0.1", port=self.settings["port"], user="postgres",
                                 dbname="template1", connect_timeout=5) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        ours = os.path.realpath(os.path.join(self.base_dir, "data"))
        return row is not None and os.path.realpath(str(row[0])) == ours

    def url(self, **kwargs: Any) -> str:
        kwargs.setdefault("database", "postgres")
        return str(super().url(**kwargs))

    def poststart(self) -> None:
        """testing.postgresql creates a database ``test`` here; the suite does not
        need it."""

    def cleanup(self) -> None:
        super().cleanup()
        if self.child_process is None and self._wrapper_dir and not self._starting:
            shutil.rmtree(self._wrapper_dir, ignore_errors=True)
            self._wrapper_dir = None


def _lost_its_port(bootlog: str) -> bool:
    """Whether the server exited because its port was taken."""
    return "Address already in use" in bootlog or "could not create any TCP/IP sockets" in bootlog


def _wrapper(directory: str, name: str, binary: Path, base_dir: str) -> str:
    """A script that chowns ``base_dir`` to the server user, then execs ``binary`` as it."""
    server_user = embedded.SERVER_USER_AS_ROOT
    argv = embedded.as_server_user([str(binary)])
    script = "\n".join(
        [
            "#!/bin/sh",
            "# Generated by tests/support/pgcluster.py: PostgreSQL refuses to run as root.",
            "set -e",
            f"chown -R {server_user}: {shlex.quote(base_dir)}",
            f"cd {shlex.quote(base_dir)}",
            f'exec {shlex.join(argv)} "$@"',
            "",
        ]
    )
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(script)
    os.chmod(path, 0o755)
    return path


def start_test_cluster(base_dir: str | None = None) -> TestCluster:
    """Start a fresh cluster; stop it with ``.stop()`` (also done at exit).

    ``base_dir`` (created if missing, kept after stop) must be reachable by the
    ``postgres`` user when running as root; by default a new directory under /tmp
    is used and removed on stop.
    """
    bindir = embedded.find_bindir()
    root = embedded.is_root()
    owns = base_dir is None
    if base_dir is None:
        base_dir = tempfile.mkdtemp(prefix="pgjobs-test-", dir="/tmp" if root else None)
    else:
        base_dir = os.path.abspath(base_dir)
        os.makedirs(base_dir, exist_ok=True)
    server_settings = dict(_SERVER_SETTINGS)
    if embedded.pg_cron_available(bindir):
        server_settings["shared_preload_libraries"] = "pg_cron"
    args = ["-h", "127.0.0.1", "-F"] + [f"-c {k}={v}" for k, v in server_settings.items()]
    settings: dict[str, Any] = {
        "base_dir": base_dir,
        "initdb": str(bindir / "initdb"),
        "postgres": str(bindir / "postgres"),
        "initdb_args": _INITDB_ARGS,
        "postgres_args": " ".join(args),
    }
    wrapper_dir: str | None = None
    try:
        if root:
            user = embedded._server_user()
            assert user is not None
            blocked = embedded._first_unreachable(Path(base_dir).parent, user)
            if blocked is not None:
                raise RuntimeError(
                    f"test cluster base dir {base_dir} is not reachable by the "
                    f"'{user.pw_name}' user ({blocked} is {stat.filemode(blocked.stat().st_mode)})"
                    "; use a directory under /tmp"
                )
            wrapper_dir = tempfile.mkdtemp(prefix="pgjobs-pgwrap-", dir="/tmp")
            os.chmod(wrapper_dir, 0o755)
            settings["initdb"] = _wrapper(wrapper_dir, "initdb", bindir / "initdb", base_dir)
            settings["postgres"] = _wrapper(wrapper_dir, "postgres", bindir / "postgres", base_dir)
        cluster = TestCluster(owns_base_dir=owns, wrapper_dir=wrapper_dir, **settings)
    except BaseException:
        # testing.postgresql already stopped its server and removed base_dir only
        # when it owned it; clean what we made.
        if wrapper_dir:
            shutil.rmtree(wrapper_dir, ignore_errors=True)
        if owns:
            shutil.rmtree(base_dir, ignore_errors=True)
        raise
    atexit.register(cluster.stop)
    return cluster
