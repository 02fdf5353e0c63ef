"""``pgjobs dev up | status | down``: the embedded cluster, through click and as a process.

Each test gets its own ``PGJOBS_HOME`` under /tmp (reachable by the ``postgres``
user when the suite runs as root) and stops its cluster at teardown.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import embedded
from pgjobs.cli.dev import EXIT_NOT_RUNNING, dev


@pytest.fixture
def dev_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgjobs-devtest-", dir="/tmp"))
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


def _select_one(dsn: str) -> tuple[int, str]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT 1, pg_catalog.current_setting('shared_preload_libraries')"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _status_fields(output: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in output.splitlines() if line.strip())


def test_cli_up_status_down(dev_home: Path) -> None:
    runner = CliRunner()

    first = runner.invoke(dev, ["up"])
    assert first.exit_code == 0, first.output
    dsn = first.stdout.strip().splitlines()[-1]
    assert dsn.startswith("postgresql://postgres@127.0.0.1:") and dsn.endswith("/pgjobs")

    one, preload = _select_one(dsn)
    assert one == 1
    if embedded.pg_cron_available():
        assert "pg_cron" in preload
        with psycopg.connect(dsn) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'"
            ).fetchone() == (1,)

    again = runner.invoke(dev, ["up", "--home", str(dev_home)])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == dsn

    status = runner.invoke(dev, ["status"])
    assert status.exit_code == 0, status.output
    fields = _status_fields(status.stdout)
    assert fields["running"] == "true"
    assert fields["dsn"] == dsn
    assert fields["data_dir"] == str(dev_home / "data")

    down = runner.invoke(dev, ["down"])
    assert down.exit_code == 0, down.output
    assert down.stdout.strip() == "stopped"
    assert embedded.dsn_if_running() is None

    stopped = runner.invoke(dev, ["status"])
    assert stopped.exit_code == EXIT_NOT_RUNNING
    assert _status_fields(stopped.stdout)["running"] == "false"

    assert runner.invoke(dev, ["down"]).stdout.strip() == "not running"

    # Restart keeps the port (and so the DSN) chosen at first init.
    assert embedded.ensure_dsn() == dsn
    assert _select_one(dsn)[0] == 1


def _dev(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgjobs.cli.dev", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_subprocess_concurrent_up_inits_once(dev_home: Path) -> None:
    env = {**os.environ, "PGJOBS_HOME": str(dev_home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pgjobs.cli.dev", "up"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert outputs[0] == outputs[1]
    assert _select_one(outputs[0])[0] == 1
    log = (dev_home / "postgres.log").read_text()
    assert log.count("database system is ready to accept connections") == 1

    status = _dev("status", env=env)
    assert status.returncode == 0, status.stderr
    assert _status_fields(status.stdout)["dsn"] == outputs[0]

    assert _dev("down", env=env).stdout.strip() == "stopped"
    assert _dev("status", env=env).returncode == EXIT_NOT_RUNNING


def test_help_shows_env_vars() -> None:
    result = CliRunner().invoke(dev, ["up", "--help"])
    assert result.exit_code == 0
    assert "PGJOBS_HOME" in result.output


def test_status_of_missing_cluster(dev_home: Path) -> None:
    info = embedded.status()
    assert info["running"] is False
    assert info["initialized"] is False
    assert info["dsn"] is None
    assert embedded.dsn_if_running() is None


def test_long_home_uses_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    chosen = embedded._socket_dir(deep, 65535)
    assert len(str(chosen / ".s.PGSQL.65535").encode()) <= 107
    assert embedded._socket_dir(Path("/tmp/h"), 5432) == Path("/tmp/h/run")


@pytest.mark.skipif(os.geteuid() != 0, reason="root only: the postgres user's reach")
def test_root_home_out_of_postgres_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = Path(tempfile.mkdtemp(prefix="pgjobs-closed-", dir="/tmp"))
    try:
        closed.chmod(0o700)
        monkeypatch.setenv("PGJOBS_HOME", str(closed / "home"))
        result = CliRunner().invoke(dev, ["up"])
        assert result.exit_code == 1
        assert "not reachable by the 'postgres' user" in result.output
        assert stat.filemode(0o40700) in result.output
        assert not (closed / "home").exists()
    finally:
        shutil.rmtree(closed, ignore_errors=True)
