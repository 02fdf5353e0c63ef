"""No silent local cluster: without a DSN (--dsn, PGJOBS_DSN, DATABASE_URL) a
command uses the embedded cluster only while it runs, and says so on stderr;
otherwise it exits 2 with a hint and starts nothing. Only `pgjobs dev up` and
`pgjobs demo` start it; `pgjobs dev down` stays down.

Each test gets its own PGJOBS_HOME under /tmp (reachable by the postgres user
when the suite runs as root) and stops its cluster at teardown."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import embedded
from pgjobs.cli.main import main
from tests.support import scalar

Conn = psycopg.Connection[Any]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"

# Every command that needs a database, with arguments it would accept.
COMMANDS = [
    ["migrate"], ["schedule"], ["unschedule"], ["list"], ["status", "1"], ["cancel", "1"],
    ["watch", "1", "--timeout", "1"], ["run", "--budget", "1s"], ["prune"], ["doctor"],
    ["delete", "t", "--scope", "1", "--yes"], ["delete", "t", "--scope", "1", "--dry-run"],
    ["backfill", "t", "--scope", "1", "--filter", "{}", "--set", "{}"],
    ["export", "t", "--scope", "1", "--detach"], ["worker", "--once"], ["url", "1"],
]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgjobs-dsntest-", dir="/tmp"))
    path.chmod(0o755)
    monkeypatch.setenv("PGJOBS_HOME", str(path))
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield path
    finally:
        try:
            embedded.down()
        finally:
            shutil.rmtree(path, ignore_errors=True)


def assert_refused_and_nothing_started(home: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (args, result.output)
    assert "Traceback" not in result.output
    assert "pgjobs dev up" in result.stderr and "--dsn" in result.stderr, result.stderr
    assert result.stdout == ""
    assert embedded.dsn_if_running() is None
    assert not (home / "data" / "PG_VERSION").exists()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_without_a_dsn_no_command_starts_the_cluster(home: Path, args: list[str]) -> None:
    assert_refused_and_nothing_started(home, args)


def test_up_then_used_and_announced_then_down_stays_down(home: Path) -> None:
    runner = CliRunner()
    up = runner.invoke(main, ["dev", "up"])
    assert up.exit_code == 0, up.output
    dsn = up.stdout.strip().splitlines()[-1]
    for args in (["migrate"], ["list"]):
        used = runner.invoke(main, args)
        assert used.exit_code == 0, used.output
        assert f"using the embedded cluster {dsn}" in used.stderr
    # A configured DSN wins, and nothing is announced.
    explicit = runner.invoke(main, ["--dsn", dsn, "list"])
    assert explicit.exit_code == 0 and "embedded" not in explicit.stderr
    down = runner.invoke(main, ["dev", "down"])
    assert down.exit_code == 0 and down.stdout.strip() == "stopped"
    for args in (["list"], ["migrate"], ["delete", "t", "--scope", "1", "--yes"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and "pgjobs dev up" in result.stderr, result.output
        assert embedded.dsn_if_running() is None
    assert runner.invoke(main, ["dev", "status"]).exit_code == 3


def test_demo_starts_the_cluster(home: Path, tmp_path: Path) -> None:
    # `make demo` from a fresh clone: `pgjobs demo` with nothing running.
    result = CliRunner().invoke(main, ["--storage", f"file://{tmp_path}", "demo",
                                       "--rows", "2000"])
    assert result.exit_code == 0, result.output
    assert embedded.dsn_if_running() is not None
    assert (home / "data" / "PG_VERSION").exists()


@pytest.mark.parametrize("variable", ["PGJOBS_DSN", "DATABASE_URL"])
def test_demo_never_builds_in_a_database_the_environment_names(
        home: Path, monkeypatch: pytest.MonkeyPatch, dsn: str, conn: Conn,
        variable: str) -> None:
    """Found by the h4 adversarial pass: `make demo` ("the demo on the embedded
    cluster") with DATABASE_URL left in the shell, as an application's developer
    has it, migrated pgjobs into that database, scheduled pg_cron there, dropped
    and refilled demo.user_table_rows with a million rows and ran its jobs. A
    database named only by the environment is refused (exit 2), nothing written
    and no cluster started; --dsn on the command line still names one."""
    monkeypatch.setenv(variable, dsn)
    result = CliRunner().invoke(main, ["demo", "--rows", "1000"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("error: pgjobs demo does not run on the database") and "\n" not in line
    assert variable in line and "(hint: pass --dsn" in line, line
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'demo'") == 0
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    assert embedded.dsn_if_running() is None
    # --dsn on the command line is asked for by name: not refused (this one
    # cannot be reached, so the demo stops at its connection, exit 1).
    explicit = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "demo", "--rows", "1000"])
    assert explicit.exit_code == 1 and "does not run on" not in explicit.stderr, explicit.output
