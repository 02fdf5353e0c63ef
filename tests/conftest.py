"""Fixtures: one real PostgreSQL server per test session, pgjobs migrated
once into a template database, and a fresh copy of it for every test.

Helpers live in tests/support/ (`from tests.support import who, job, scalar,
wait_for, build_target, ...`). Set PGJOBS_TEST_URL (a server URL whose user may
CREATE DATABASE) to run the suite against an existing server instead of a
throwaway one. Set PGJOBS_TEST_NOISE=1 to run it beside transaction-ID burning,
ANALYZE/VACUUM of the test databases and busy cores (tests/support/noise.py):
the way to find tests that pass only on a quiet machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import settings
from psycopg.rows import dict_row

from pgjobs.migrate import migrate
from tests.support.databases import admin_execute, database_name, empty_database, with_database
from tests.support.teardown_watch import TeardownWatch

# The storage fixtures (local_dir, s3_env, bucket, big, az_container, gcs_bucket, ...)
# are requested by name in any test; never import a fixture.
pytest_plugins = ("tests.support.storage", "tests.support.standby", "tests.support.roles",
                  "tests.support.browser")

# No deadline for any property test: hypothesis fails an example that took over
# its default 200 ms once and not when run again ("Unreliable test timings"),
# which a pause of a loaded machine does even to arithmetic of a microsecond
# (tests/test_trust_worker_memory.py had no settings of its own).
settings.register_profile("pgjobs", deadline=None)
# CI replays the same examples every run (a failure there is reproducible);
# developers and `PGJOBS_FUZZ_EXAMPLES` runs explore new ones.
settings.register_profile("ci", parent=settings.get_profile("pgjobs"), derandomize=True,
                          print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "pgjobs")

TEMPLATE = database_name("template")
_BODY_THREADS = pytest.StashKey[set[threading.Thread]]()
_CONNECTION_NAMES = pytest.StashKey[dict[int, str]]()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """URL of the server, connected to its `postgres` database."""
    url = os.environ.get("PGJOBS_TEST_URL")
    if url:
        yield url
        return
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster.url()
    finally:
        cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def session_noise(request: pytest.FixtureRequest) -> Iterator[None]:
    """PGJOBS_TEST_NOISE: the noise of a busy machine and cluster for the whole
    session (tests/support/noise.py); nothing when unset (and no server
    started for it)."""
    from tests.support.noise import kinds, noise

    wanted = kinds(os.environ.get("PGJOBS_TEST_NOISE"))
    if not wanted:
        yield
        return
    with noise(request.getfixturevalue("cluster_url"), wanted):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``nodb`` every test that asks no database of the suite's cluster
    (and is no chaos test): the checks that read the code, the docs and the
    contract (kind scanners, message wording, layering, sealed frames, ...),
    with the storage and command-line tests that need no server. ``make
    check`` runs them all in a few minutes, so a branch runs the whole class
    before it merges rather than a list of files that misses one (stops 57
    to 59 each failed CI on one check the branch's list left out). The mark
    follows the fixtures: a new check of that kind is in the class without
    anybody adding it."""
    for item in items:
        if ("cluster_url" not in getattr(item, "fixturenames", ())
                and item.get_closest_marker("chaos") is None):
            item.add_marker(pytest.mark.nodb)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """PGJOBS_TEST_NOISE=threads: note the threads the test body starts."""
    before = set(threading.enumerate())
    try:
        return (yield)
    finally:
        item.stash[_BODY_THREADS] = set(threading.enumerate()) - before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """A teardown never waits on a session the test left open in a transaction:
    the watch ends it and the teardown fails naming it (tests/support/teardown_watch.py).
    PGJOBS_TEST_NOISE=threads: fail the test when a thread its body started is
    still alive after its teardown."""
    url = getattr(item, "funcargs", {}).get("cluster_url")
    if not isinstance(url, str):
        result = yield
    else:
        with TeardownWatch(url, item.stash.get(_CONNECTION_NAMES, {})) as watch:
            try:
                result = yield
            except BaseException as exc:
                if watch.ended:
                    raise pytest.fail.Exception(
                        f"{watch.report()}\nand the teardown raised: {exc!r}") from exc
                raise
        if watch.ended:
            pytest.fail(watch.report(), pytrace=False)
    from tests.support.noise import kinds, leftover_threads

    started = item.stash.get(_BODY_THREADS, set())
    if started and "threads" in kinds(os.environ.get("PGJOBS_TEST_NOISE")):
        left = leftover_threads(started)
        if left:
            pytest.fail(f"threads the test started are still alive after its teardown: {left}")
    return result


@pytest.fixture(scope="session")
def template_dsn(cluster_url: str) -> Iterator[str]:
    """A database migrated once; every test copies it."""
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
                  f"CREATE DATABASE {TEMPLATE}")
    dsn = with_database(cluster_url, TEMPLATE)
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


@pytest.fixture
def fresh_database(cluster_url: str, template_dsn: str) -> Callable[[], str]:
    """Factory: a new copy of the migrated template; dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = database_name("test")
        admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        created.append(name)
        return with_database(cluster_url, name)

    yield make  # type: ignore[misc]
    for name in created:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_dsn(cluster_url: str) -> Iterator[str]:
    """A new empty database of its own (pgjobs not installed: migrate it yourself)."""
    with empty_database(cluster_url, "empty") as url:
        yield url


@pytest.fixture
def dsn(fresh_database: Callable[[], str]) -> str:
    """A freshly migrated database of its own for this test."""
    return fresh_database()


@pytest.fixture
def make_conn(dsn: str, request: pytest.FixtureRequest
              ) -> Iterator[Callable[..., psycopg.Connection[Any]]]:
    """Factory for more connections to the test's database (autocommit, tuples by
    default; pass row_factory=dict_row for dicts). Closed after the fixtures built
    on them: one the test leaves in a transaction is ended by the teardown watch
    (tests/support/teardown_watch.py), whose report names it by these words."""
    conns: list[psycopg.Connection[Any]] = []
    names = request.node.stash.setdefault(_CONNECTION_NAMES, {})

    def make(**kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        conn = psycopg.connect(dsn, **kwargs)
        conns.append(conn)
        names[conn.info.backend_pid] = (f"make_conn(autocommit={kwargs['autocommit']}) "
                                        f"#{len(conns)}")
        return conn

    yield make
    for conn in conns:
        conn.close()


@pytest.fixture
def conn(make_conn: Callable[..., psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
    """An autocommit connection (tuple rows) to the test's database."""
    return make_conn()


@pytest.fixture
def dconn(make_conn: Callable[..., psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
    """An autocommit connection with dict rows to the test's database."""
    return make_conn(row_factory=dict_row)


@pytest.fixture(scope="session")
def cron_dsn(cluster_url: str) -> Iterator[str]:
    """pg_cron's own database (`cron.database_name`), created and migrated for the
    session, or a skip when the server cannot give one: pg_cron not preloaded, or
    that database already exists (a shared server: never take over its database).
    Tests using it unschedule what they schedule. Dropped at the end (FORCE: the
    pg_cron launcher stays connected to it)."""
    from psycopg import sql

    with psycopg.connect(cluster_url, autocommit=True) as admin:
        preload = admin.execute("SHOW shared_preload_libraries").fetchone()
        libraries = [lib.strip() for lib in (preload[0] if preload else "").split(",")]
        if "pg_cron" not in libraries:
            pytest.skip("pg_cron is not in shared_preload_libraries of the test server")
        row = admin.execute("SHOW cron.database_name").fetchone()
        assert row is not None
        name = str(row[0])
        exists = admin.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = %s)", (name,)
        ).fetchone()
        if exists and exists[0]:
            pytest.skip(f"cron.database_name {name!r} already exists on the test server; "
                        "run without PGJOBS_TEST_URL to use a throwaway cluster")
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_database(cluster_url, name)
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(cluster_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
