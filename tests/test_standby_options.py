"""The standby options (--read-dsn, --read-max-wait, --read-max-lag,
--read-fallback; PGJOBS_READ_*) are one definition (cli/export.py
read_options/read_config) shared by every command that runs exports: `pgjobs
export` (in this process) and `pgjobs worker`. `pgjobs export` once had only
--read-dsn, with the defaults hard-wired; these tests make the commands agree
and exercise each fallback on the in-process export against a real streaming
standby paused behind the job's submit."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

import pgjobs.cli.export as cli_export
from pgjobs.cli.common import duration_seconds
from pgjobs.cli.main import main
from pgjobs.poller import standby as poller_standby
from pgjobs.poller.standby import ReadConfig
from tests.support import content, job, make_items, plain_copy, scalar, wait_for, with_database
from tests.support.cli import cli_env, pgjobs_command
from tests.support.standby import caught_up

Conn = psycopg.Connection[Any]
SMALL = '{"chunk_rows": 17, "part_size": 2048}'
SELECT_1 = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"
READ_PARAMS = {"read_dsn", "read_max_wait", "read_max_lag", "read_fallback"}


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn)


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
    return found


def _read_params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name in READ_PARAMS}


def _shape(param: click.Parameter) -> tuple[Any, ...]:
    assert isinstance(param, click.Option)
    choices = getattr(param.type, "choices", None)
    return (tuple(param.opts), param.envvar, param.default, param.show_default,
            param.show_envvar, param.type.name, tuple(choices) if choices else None, param.help)


# --- one definition ------------------------------------------------------------


def test_every_command_with_a_read_dsn_offers_the_same_standby_options() -> None:
    commands = {name: command for name, command in _commands(main).items()
                if _read_params(command)}
    assert {"export", "worker"} <= set(commands), sorted(commands)
    reference = {name: _shape(p) for name, p in _read_params(commands["worker"]).items()}
    assert set(reference) == READ_PARAMS
    for name, command in commands.items():
        shapes = {n: _shape(p) for n, p in _read_params(command).items()}
        assert shapes == reference, name


def test_the_standby_options_carry_the_pollers_defaults_and_variables() -> None:
    params = _read_params(main.commands["export"])
    assert {n: p.envvar for n, p in params.items()} == {
        n: f"PGJOBS_{n.upper()}" for n in READ_PARAMS}
    wait, lag = params["read_max_wait"].default, params["read_max_lag"].default
    assert isinstance(wait, str) and isinstance(lag, str)
    assert duration_seconds(wait) == poller_standby.DEFAULT_MAX_WAIT
    assert duration_seconds(lag) == poller_standby.DEFAULT_MAX_LAG
    assert params["read_fallback"].default == poller_standby.DEFAULT_FALLBACK
    assert tuple(getattr(params["read_fallback"].type, "choices", ())) == poller_standby.FALLBACKS
    # The one conversion, with the poller's own defaults when nothing is given.
    assert cli_export.read_config(None, wait, lag, "primary") is None
    assert cli_export.read_config("host=x", wait, lag, params["read_fallback"].default) == \
        ReadConfig("host=x")
    for command in ("export", "worker"):
        shown = CliRunner().invoke(main, [command, "--help"]).output
        for var in ("PGJOBS_READ_DSN", "PGJOBS_READ_MAX_WAIT", "PGJOBS_READ_MAX_LAG",
                    "PGJOBS_READ_FALLBACK"):
            assert var in shown, (command, var)


@pytest.mark.parametrize("how", ["options", "environment"])
def test_both_commands_hand_the_poller_the_same_settings(
        dsn: str, items: None, local_dir: str, monkeypatch: pytest.MonkeyPatch,
        how: str) -> None:
    # Nothing listens on port 1: the start-up check only warns, and each command
    # hands its settings to the poller, captured here.
    nowhere = make_conninfo(dsn, port="1")
    settings = {"PGJOBS_READ_DSN": nowhere, "PGJOBS_READ_MAX_WAIT": "2m",
                "PGJOBS_READ_MAX_LAG": "90s", "PGJOBS_READ_FALLBACK": "wait"}
    args: list[str] = []
    env: dict[str, str] = {}
    if how == "options":
        for var, value in settings.items():
            args += ["--" + var.removeprefix("PGJOBS_").lower().replace("_", "-"), value]
    else:
        env = settings
    seen: dict[str, ReadConfig | None] = {}

    def run_here(*a: Any, **kw: Any) -> int:
        seen["export"] = a[7] if len(a) > 7 else kw.get("reads")
        return 0

    class FakeWorker:
        name = "fake"

        def __init__(self, *a: Any, reads: ReadConfig | None = None, **kw: Any) -> None:
            seen["worker"] = reads

        def run(self) -> int:
            return 0

    monkeypatch.setattr(cli_export, "_run_here", run_here)
    monkeypatch.setattr("pgjobs.poller.worker.Worker", FakeWorker)
    for command in (["export", "items", "--scope", "1"], ["worker", "--once"]):
        result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, *command, *args],
                                    env=env)
        assert result.exit_code == 0, result.output
    expected = ReadConfig(nowhere, 120.0, "wait", 90.0)
    assert seen == {"export": expected, "worker": expected}


@pytest.mark.parametrize("command", ["export", "worker"])
@pytest.mark.parametrize(("args", "needle"), [
    (["--read-fallback", "never"], "'never' is not one of"),
    (["--read-max-wait", "soon"], "invalid --read-max-wait"),
    (["--read-max-lag", "0s"], "invalid --read-max-lag"),
])
def test_bad_standby_options_are_usage_errors_before_anything_is_submitted(
        conn: Conn, dsn: str, items: None, local_dir: str, command: str, args: list[str],
        needle: str) -> None:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    rest = ["items", "--scope", "1"] if command == "export" else ["--once"]
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, command, *rest,
                                       "--read-dsn", dsn, *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before


# --- each fallback on the in-process export, against a real standby --------------


def test_export_falls_back_to_the_primary_past_read_max_wait(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn, caplog: pytest.LogCaptureFixture) -> None:
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")  # the submit will be ahead of it
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", local_dir, "export", "items", "--scope", "1",
        "--options", SMALL, "--read-dsn", read_dsn, "--read-max-wait", "0.5s",
        "--read-fallback", "primary"])
    assert result.exit_code == 0, result.output
    row = job(conn, int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs")))
    assert row["status"] == "succeeded"
    assert content(row["result"]) == plain_copy(conn, SELECT_1)
    reads = row["checkpoint"]["reads"]
    assert reads["standby"] == 0 and reads["primary"] >= 5, reads
    assert "reading from the primary" in caplog.text and "replay is paused" in caplog.text


def test_export_with_fallback_wait_waits_for_the_standby_however_long(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    before = int(scalar(conn, "SELECT coalesce(max(id), 0) FROM pgjobs.jobs"))
    env = cli_env()
    command = [*pgjobs_command(), "--dsn", dsn, "--storage", local_dir, "export", "items",
               "--scope", "1", "--options", SMALL, "--no-progress", "--read-dsn", read_dsn,
               "--read-max-wait", "0.3s", "--read-fallback", "wait"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            job_id = wait_for(lambda: scalar(conn, "SELECT max(id) FROM pgjobs.jobs "
                                                   "WHERE id > %s AND status = 'running'",
                                             (before,)),
                              timeout=60, what="the export to be claimed")
            # Many times --read-max-wait: still nothing read, the primary untouched.
            time.sleep(3.0)
            row = job(conn, job_id)
            assert proc.poll() is None and row["status"] == "running" and row["done"] == 0
            assert not (row["checkpoint"] or {}).get("reads")
            replica.execute("SELECT pg_wal_replay_resume()")
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    row = job(conn, job_id)
    assert out.strip().splitlines()[-1] == row["result"]["uri"]
    assert content(row["result"]) == plain_copy(conn, SELECT_1)
    reads = row["checkpoint"]["reads"]
    assert reads["primary"] == 0 and reads["standby"] >= 5, reads


def test_a_read_dsn_of_another_database_is_refused_by_both_commands(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str) -> None:
    other = with_database(read_dsn, "postgres")
    for command in (["export", "items", "--scope", "1"], ["worker", "--once"]):
        result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, *command,
                                           "--read-dsn", other, "--read-fallback", "wait",
                                           "--read-max-wait", "1s"])
        assert result.exit_code == 2, (command, result.output)
        assert "not a standby of this database" in result.stderr
