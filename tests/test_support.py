"""The test suite's own structure (issue 15): one support package, one of each
helper, fixtures requested by name, and every database the suite makes named
with the process id, so that two runs sharing a server (PGJOBS_TEST_URL, xdist
workers) never drop each other's databases."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import database_name, drain_notifies, wait_for

TESTS = Path(__file__).resolve().parent
SOURCES = sorted(p for p in TESTS.rglob("*.py")
                 if "upgrade" not in p.parts and p.name != "test_support.py")
FIXTURES = {"local_dir", "s3_endpoint", "s3_env", "bucket", "big", "azurite_endpoint", "az_env",
            "az_container", "gcs_endpoint", "gcs_env", "gcs_bucket"}


def _name(path: Path) -> str:
    return str(path.relative_to(TESTS.parent))


def fixed_database_names(source: str) -> list[int]:
    """Lines building a CREATE/DROP DATABASE statement whose name is not made
    by database_name(): a literal name, or a variable assigned anything else."""
    tree = ast.parse(source)
    named = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
             and node.value.func.id == "database_name"
             for target in node.targets if isinstance(target, ast.Name)}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for i, part in enumerate(parts[:-1]):
                if (isinstance(part, ast.Constant) and isinstance(part.value, str)
                        and part.value.rstrip().endswith(("CREATE DATABASE", "EXISTS"))
                        and "DATABASE" in part.value):
                    value = parts[i + 1]
                    if not (isinstance(value, ast.FormattedValue)
                            and isinstance(value.value, ast.Name) and value.value.id in named):
                        bad.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                r"(CREATE|DROP) DATABASE (IF EXISTS )?(?!IF EXISTS)[A-Za-z_]", node.value):
            bad.append(node.lineno)
    return bad


def test_the_checker_finds_a_fixed_database_name() -> None:
    """The check below can fail: the shapes test_migrate and test_upgrade had."""
    assert fixed_database_names('''
def f(url):
    name = "pgjobs_empty_migrate"
    admin_execute(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                  f"CREATE DATABASE {name}")
''') == [4, 5]
    assert fixed_database_names('x = "CREATE DATABASE pgjobs_fixed"') == [1]
    assert fixed_database_names('name = f"pgjobs_{os.getpid()}"\n'
                                'q = f"CREATE DATABASE {name}"') == [2]
    assert fixed_database_names('name = database_name("x")\n'
                                'q = f"CREATE DATABASE {name} TEMPLATE {t}"') == []


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_every_database_the_suite_makes_is_named_by_database_name(path: Path) -> None:
    assert fixed_database_names(path.read_text()) == [], _name(path)


def test_database_names_carry_the_process_id_and_never_repeat() -> None:
    names = [database_name("x") for _ in range(3)]
    assert len(set(names)) == 3
    assert all(n.startswith(f"pgjobs_x_{os.getpid()}_") for n in names)


def test_one_of_each_helper_lives_in_tests_support() -> None:
    """No test module defines its own wait_for or job-row reader, or imports a
    fixture (storage fixtures are registered once, by conftest's pytest_plugins)."""
    found = []
    for path in SOURCES:
        if "support" in path.relative_to(TESTS).parts[:1]:
            continue
        source = path.read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in (
                    "wait_for", "job_row", "_job", "wait_until"):
                found.append(f"{_name(path)}:{node.lineno} defines {node.name}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
                for alias in node.names:
                    if alias.name in FIXTURES:
                        found.append(f"{_name(path)}:{node.lineno} imports fixture {alias.name}")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and "SELECT * FROM pgjobs.jobs WHERE id" in node.value):
                found.append(f"{_name(path)}:{node.lineno} reads a job row (use job())")
        if "noqa: F811" in source:
            found.append(f"{_name(path)} suppresses F811 (a fixture imported?)")
    assert found == []


def test_every_test_has_a_hard_timeout(pytestconfig: pytest.Config) -> None:
    """A hang fails its test with every thread's stack and the run goes on
    (pytest-timeout, signal method: the xdist worker survives), long before
    CI's own limit; `--timeout` on the command line may still change it."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) == 600
    assert pytestconfig.getini("timeout_method") == "signal"


def test_wait_for_returns_the_value_and_names_what_it_waited_for() -> None:
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0) == "ready"
    with pytest.raises(AssertionError, match="waiting for the moon"):
        wait_for(lambda: False, timeout=0, what="the moon")
    flaky = iter([ConnectionError(), 7])

    def probe() -> int:
        value = next(flaky)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for(probe, timeout=5, interval=0, tolerate=(ConnectionError,)) == 7
    with pytest.raises(ConnectionError):
        wait_for(lambda: (_ for _ in ()).throw(ConnectionError()), timeout=5)


def test_no_property_test_has_a_deadline() -> None:
    """Hypothesis' default deadline (200 ms) fails an example that a loaded
    machine paused once ("Unreliable test timings"): the suite's profiles have
    none, so a @given without settings of its own has none either (CI's
    profile included)."""
    from hypothesis import settings

    assert settings().deadline is None
    assert settings.get_profile("ci").deadline is None
    assert settings.get_profile("ci").derandomize


def test_drain_notifies_has_what_was_sent_before_it_without_a_wait(make_conn: Any) -> None:
    """Events a test's own statements sent are all there, with no timeout to
    guess: a wait of 0.2 s "for the submitted event" let it through late on a
    loaded machine (tests/test_pause.py), and a second wait then saw it."""
    listener, sender = make_conn(), make_conn()
    listener.execute("LISTEN pgjobs")
    sender.execute("""SELECT pg_notify('pgjobs', '{"id": ' || g || '}')
                      FROM generate_series(1, 3) g""")
    assert [e["id"] for e in drain_notifies(listener, timeout=0)] == [1, 2, 3]
    assert drain_notifies(listener, timeout=0) == []


def test_chaos_draws_the_same_schedule_in_every_ci_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI replays one schedule of kills and faults per chaos test, as it replays
    hypothesis' examples; an explicit PGJOBS_CHAOS_SEED still wins, and outside
    CI each run draws a new one."""
    from tests.chaos.support import rng

    monkeypatch.delenv("PGJOBS_CHAOS_SEED", raising=False)
    monkeypatch.setenv("CI", "true")
    assert rng("export_kills").random() == rng("export_kills").random()
    assert rng("export_kills").random() != rng("import_kills").random()
    monkeypatch.setenv("PGJOBS_CHAOS_SEED", "7")
    assert rng("export_kills").random() == rng("import_kills").random()
    monkeypatch.delenv("PGJOBS_CHAOS_SEED")
    monkeypatch.delenv("CI")
    assert rng("export_kills").random() != rng("export_kills").random()


def test_an_emulator_whose_port_was_taken_meanwhile_starts_on_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """free_port finds a port free now; another program may bind it before the
    emulator does (a test cluster, a client's ephemeral port). Then the emulator
    exits, and a connection to the port reaches the other program: the fixture
    took that for its emulator. It starts the emulator on another port."""
    import socket
    import sys

    from tests.support import net, storage

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1], net.free_port()])
    monkeypatch.setattr(storage, "free_port", lambda: next(ports))
    server = ("import socket, sys, time; s = socket.socket(); "
              "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)")
    proc, port = storage._serve(lambda port: [sys.executable, "-c", server, str(port)],
                                "a server", tmp_path / "log")
    try:
        assert port != taken.getsockname()[1]
        assert storage._listens(proc.pid, port)
    finally:
        storage._stop(proc)
        taken.close()


def test_a_standby_whose_port_was_taken_meanwhile_starts_on_another(
        cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the emulators: the standby's server found its port taken at bind
    time, exited, and every standby test of the module failed."""
    import socket

    import psycopg

    from tests.support import net, standby

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1], net.free_port()])
    monkeypatch.setattr(standby, "free_port", lambda: next(ports))
    server = standby.start_standby(cluster_url)
    try:
        assert server.port != taken.getsockname()[1]
        with psycopg.connect(server.url, autocommit=True) as replica:
            assert replica.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        server.stop()
        taken.close()


@pytest.mark.parametrize("holder", ["a socket", "another cluster"])
def test_a_test_cluster_whose_port_was_taken_meanwhile_starts_on_another(
        cluster_url: str, monkeypatch: pytest.MonkeyPatch, holder: str) -> None:
    """The throwaway cluster's port is found free, then bound by the server a
    moment later: another test run's cluster on the machine may take it first.
    The server exited (the whole session failed to start), or, while it was
    still starting, the other cluster answered on the port and was taken for
    it. It starts on another port, and is its own."""
    import socket

    import psycopg
    import testing.common.database
    from psycopg.conninfo import conninfo_to_dict

    from tests.support import net
    from tests.support.pgcluster import start_test_cluster

    taken = socket.socket()
    if holder == "a socket":
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
    else:
        port = int(conninfo_to_dict(cluster_url)["port"])
    ports = iter([port, net.free_port()])
    monkeypatch.setattr(testing.common.database, "get_unused_port", lambda: next(ports))
    cluster = start_test_cluster()
    try:
        assert cluster.settings["port"] != port
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None and row[0].startswith(cluster.base_dir)
    finally:
        cluster.stop()
        taken.close()


def test_the_noise_switch_names_its_kinds() -> None:
    """PGJOBS_TEST_NOISE: off unless set; 1 is every kind; a typo is an error,
    never a quiet run without noise."""
    from tests.support.noise import KINDS, kinds

    assert kinds(None) == kinds("") == kinds("0") == set()
    assert kinds("1") == kinds("all") == set(KINDS)
    assert kinds("xids, analyze") == {"xids", "analyze"}
    with pytest.raises(ValueError, match="xid"):
        kinds("xid")


def test_a_thread_left_running_by_a_test_is_named() -> None:
    """PGJOBS_TEST_NOISE=threads: a thread of a test body still alive after
    its teardown is noise for the next test (its commits move the cluster's
    transaction IDs); one that ends within the grace is not."""
    import threading

    from tests.support.noise import leftover_threads

    stop = threading.Event()
    left = threading.Thread(target=stop.wait, name="left-running", daemon=True)
    ending = threading.Thread(target=lambda: None, name="ending")
    left.start()
    ending.start()
    try:
        assert leftover_threads({left, ending}, grace=0.5) == ["left-running"]
    finally:
        stop.set()
        left.join()


def test_events_are_read_after_a_round_trip() -> None:
    """A test reads the events it counts with drain_notifies (a round trip
    first, so everything its statements sent is there), or waits for one
    event (`stop_after=1`); reading `notifies(timeout=...)` alone counted what
    had arrived by then, and a loaded machine delivers late (d4e14b1)."""
    found = []
    for path in SOURCES:
        if "support" in path.relative_to(TESTS).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "notifies"):
                stop_after = [k.value for k in node.keywords if k.arg == "stop_after"]
                if not (stop_after and isinstance(stop_after[0], ast.Constant)
                        and stop_after[0].value == 1):
                    found.append(f"{_name(path)}:{node.lineno} counts notifies() within a timeout")
    assert found == []


def short_worker_leases(source: str) -> list[int]:
    """Lines starting a `pgjobs worker` with a --lease under 30 s. A test that
    kills a worker gives it LONG_LEASE and lapses its leases once it is gone
    (expire_leases): a lease of 2 s lapsed while the worker lived whenever the
    loaded machine stalled it or its backend past two thirds of it (heartbeats
    come every third), and a worker's rescues counted attempts until the job
    failed. A test of a lapse lapses it by hand, as expire_lease does."""
    return [source.count("\n", 0, m.start()) + 1
            for m in re.finditer(r'"--lease",\s*"(\d+(?:\.\d+)?)s"', source)
            if float(m.group(1)) < 30]


def test_the_checker_finds_a_short_worker_lease() -> None:
    assert short_worker_leases('w = start_worker(dsn, uri, "--once", "--lease", "2s",\n'
                               '                 delays="part=0.2")\n'
                               'x = start_worker(dsn, uri, "--lease",\n    "3s")') == [1, 3]
    assert short_worker_leases('start_worker(dsn, uri, "--lease", LONG_LEASE)\n'
                               'start_worker(dsn, uri, "--lease", "60s")') == []


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_no_worker_a_test_starts_has_a_short_lease(path: Path) -> None:
    assert short_worker_leases(path.read_text()) == [], _name(path)
