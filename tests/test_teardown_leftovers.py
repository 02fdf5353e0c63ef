"""A test that leaves a session in a transaction never hangs the suite's teardown.

A failed assertion while a second connection holds a transaction open (inside
`with conn.transaction()` on a non-autocommit connection, or a transaction a
failed statement left aborted) kept that transaction's locks until the
connection closed, which `make_conn` does only after the fixtures built on it
have torn down: their DROP TABLE or TRUNCATE waited for ever (an 8-minute CI
hang in tests/test_engine_overhead.py). Now the teardown watch
(tests/support/teardown_watch.py, run by tests/conftest.py) ends the leftover and
the teardown fails naming it; a session still at work is left alone.

Each case runs in a pytest of its own (a subprocess, the suite's conftest as
a plugin, this run's server): the hard timeout is a safety net, not a time
asserted. On the code before the watch, that pytest hangs until it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CASES = '''
import threading

import psycopg
import pytest

from tests.support import wait_for

LEFT = []  # connections the tests leave open: never collected before the end


@pytest.fixture
def joined():
    """Threads joined after the table's teardown, before make_conn closes."""
    threads = []
    yield threads
    for thread in threads:
        thread.join()


@pytest.fixture
def held(conn):
    """A table the teardown drops (or empties): it needs every lock on it."""
    conn.execute("CREATE TABLE held (id int)")
    yield
    conn.execute("DROP TABLE held")


@pytest.fixture
def emptied(conn):
    conn.execute("CREATE TABLE emptied (id int)")
    yield
    conn.execute("TRUNCATE emptied")


def test_fails_inside_a_transaction_block(make_conn, held):
    tx = make_conn(autocommit=False)
    tx.execute("INSERT INTO held VALUES (1)")
    with tx.transaction():
        tx.execute("INSERT INTO held VALUES (2)")
        assert tx.execute("SELECT count(*) FROM held").fetchone() == (3,)


def test_fails_on_a_statement_of_its_own_connection(dsn, emptied):
    """Failed in a savepoint: aborted, still holding what it took before."""
    own = psycopg.connect(dsn)
    LEFT.append(own)
    own.execute("LOCK TABLE emptied IN SHARE MODE")
    own.execute("SAVEPOINT s")
    own.execute("SELECT 1 / 0")


def test_passes_but_leaves_a_read_open(make_conn, held):
    reader = make_conn(autocommit=False)
    assert reader.execute("SELECT count(*) FROM held").fetchone() == (0,)


def test_passes_while_a_statement_still_runs(make_conn, joined, held, conn):
    """Still at work (active, never idle in its transaction): the teardown
    waits for it to end and nobody is ended."""
    busy = make_conn()
    pid = busy.info.backend_pid
    thread = threading.Thread(target=busy.execute, args=(
        "BEGIN; LOCK TABLE held IN SHARE MODE; SELECT pg_sleep(8); COMMIT",))
    joined.append(thread)
    thread.start()
    wait_for(lambda: conn.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND relation = 'held'::regclass"
        " AND granted", (pid,)).fetchone()[0], what="the busy session holds the table")
'''


def _run_cases(tmp_path: Path, cluster_url: str) -> dict[str, dict[str, str]]:
    """Run CASES in a pytest of their own; per test, each outcome's message."""
    (tmp_path / "test_cases.py").write_text(CASES)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PGJOBS_TEST_URL": cluster_url, "PGJOBS_TEST_NOISE": ""}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO),
         f"--junitxml={report}", "-o", "junit_family=xunit1", "-q",
         str(tmp_path / "test_cases.py")],
        cwd=REPO, env=env, capture_output=True, text=True,
        timeout=150)  # a safety net: without the watch this pytest hangs here
    assert report.exists(), run.stdout + run.stderr
    outcomes: dict[str, dict[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        found = outcomes.setdefault(case.get("name", ""), {})
        for child in case:
            if child.tag in ("failure", "error"):
                found[child.tag] = (child.get("message") or "") + "\n" + (child.text or "")
    return outcomes


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, cluster_url: str
             ) -> dict[str, dict[str, str]]:
    return _run_cases(tmp_path_factory.mktemp("leftovers"), cluster_url)


def test_a_failure_inside_a_transaction_block_is_reported_and_its_session_ended(
        outcomes: dict[str, dict[str, str]]) -> None:
    found = outcomes["test_fails_inside_a_transaction_block"]
    assert "assert (2,) == (3,)" in found.get("failure", ""), found
    error = found.get("error", "")
    assert "make_conn(autocommit=False) #2" in error, error
    assert "idle in transaction" in error and "(aborted)" not in error, error
    assert "'DROP TABLE held'" in error and "pg_terminate_backend" in error, error


def test_a_transaction_left_aborted_on_a_connection_of_its_own_is_reported(
        outcomes: dict[str, dict[str, str]]) -> None:
    found = outcomes["test_fails_on_a_statement_of_its_own_connection"]
    assert "DivisionByZero" in found.get("failure", ""), found
    error = found.get("error", "")
    assert "idle in transaction (aborted)" in error and "SELECT 1 / 0" in error, error
    assert "'TRUNCATE emptied'" in error, error
    assert "make_conn" not in error  # not one of make_conn's: named by its pid


def test_a_passing_test_that_leaves_a_read_open_fails_at_its_teardown(
        outcomes: dict[str, dict[str, str]]) -> None:
    found = outcomes["test_passes_but_leaves_a_read_open"]
    assert "failure" not in found, found
    error = found.get("error", "")
    assert "backend pid" in error and "make_conn(autocommit=False) #2" in error, error
    assert "SELECT count(*) FROM held" in error and "'DROP TABLE held'" in error, error


def test_a_session_still_at_work_is_waited_for_and_left_alone(
        outcomes: dict[str, dict[str, str]]) -> None:
    assert outcomes["test_passes_while_a_statement_still_runs"] == {}
