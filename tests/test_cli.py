"""The `pgjobs` command line, through click's CliRunner and as a real process:
exit codes, one-line errors without tracebacks, `watch` piped, and a
`PGJOBS_*` environment variable for every option of every command.

(`pgjobs dev up | status | down` is covered in tests/test_embedded.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import claim, job, make_target, scalar, submit, wait_for, who
from tests.support.cli import pgjobs_command

Conn = psycopg.Connection[Any]

ENV_PREFIX = "PGJOBS_"


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never fall back to a DSN from the environment or the embedded cluster."""
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    """`pgjobs --dsn DSN ARGS...` through CliRunner (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])

    return invoke


@pytest.fixture
def items(conn: Conn) -> str:
    return make_target(conn)


def run_process(dsn: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["PGJOBS_DSN"] = dsn
    return subprocess.run([*pgjobs_command(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


def wait_for_backend(conn: Conn, app: str, query_like: str, seconds: float = 20) -> None:
    """Wait until a session named `app` sits idle after a statement like `query_like`."""
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_catalog.pg_stat_activity"
                                  " WHERE application_name = %s AND state = 'idle'"
                                  " AND query LIKE %s AND datname = current_database()",
                            (app, query_like)),
             seconds, f"an idle '{app}' session after {query_like!r}")


# --- install -------------------------------------------------------------------


@pytest.fixture
def bare_dsn(empty_dsn: str) -> str:
    """An empty database (pgjobs not installed)."""
    return empty_dsn


def test_migrate_twice(bare_dsn: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["--dsn", bare_dsn, "migrate"])
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("migrations applied: 0001.initial")
    assert "functions applied: " in first.stdout

    again = run_process(bare_dsn, "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("migrations applied: none pending; functions applied: ")
    with psycopg.connect(bare_dsn) as conn:
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


# --- observing and controlling ----------------------------------------------------


def test_status_exit_codes_and_json(cli: Callable[..., Result], conn: Conn, items: str) -> None:
    queued = submit(conn, payload={"x": 1})
    result = cli("status", str(queued))
    assert result.exit_code == 3, result.output
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert fields["id"] == str(queued)
    assert fields["status"] == "queued"
    assert fields["target"] == "items"

    as_json = cli("status", "--json", str(queued))
    assert as_json.exit_code == 3
    document = json.loads(as_json.stdout)
    assert document["id"] == queued and document["status"] == "queued"
    assert document["kind"] == "custom" and document["scope"] == "1"

    assert claim(conn, "w1") == [queued]
    assert cli("status", str(queued)).exit_code == 3  # running
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{\"rows\": 2}')",
                  (queued, who(conn, queued, 'w1')))
    done = cli("status", "--json", str(queued))
    assert done.exit_code == 0
    assert json.loads(done.stdout)["result"] == {"rows": 2}

    failing = submit(conn)
    assert claim(conn, "w2") == [failing]
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom', false)",
                  (failing, who(conn, failing, 'w2')))
    failed = cli("status", str(failing))
    assert failed.exit_code == 1
    assert "error: boom" in failed.stdout

    canceled = submit(conn)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (canceled,))
    assert cli("status", str(canceled)).exit_code == 1


def test_list_newest_first_with_filters(cli: Callable[..., Result], conn: Conn,
                                        items: str) -> None:
    ids = [submit(conn) for _ in range(3)]
    assert claim(conn, "w") == [ids[0]]
    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == ids[::-1]
    assert rows[0][1:] == ["custom", "items", "1", "queued", "0/?"]
    assert rows[-1][4] == "running"

    running = cli("list", "--status", "running")
    assert [int(line.split("\t")[0]) for line in running.stdout.splitlines()] == [ids[0]]
    limited = cli("list", "--limit", "1")
    assert [int(line.split("\t")[0]) for line in limited.stdout.splitlines()] == [ids[2]]
    assert cli("list", "--status", "nonsense").exit_code == 2


def test_cancel_queued_running_and_finished(cli: Callable[..., Result], conn: Conn,
                                            items: str) -> None:
    queued = submit(conn)
    result = cli("cancel", str(queued))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"job {queued}: canceled"
    assert job(conn, queued)["status"] == "canceled"

    running = submit(conn)
    assert claim(conn, "w") == [running]
    result = cli("cancel", str(running))
    assert result.stdout.strip() == f"job {running}: cancel requested"
    assert job(conn, running)["cancel_requested_at"] is not None
    assert not scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (running, who(conn, running, 'w')))

    again = cli("cancel", str(queued))
    assert again.exit_code == 0
    assert again.stdout.strip() == f"job {queued} had already finished (canceled)"


@pytest.mark.parametrize("command", [["status"], ["cancel"], ["watch", "--timeout", "1"]])
def test_unknown_job_is_one_line_error(cli: Callable[..., Result], command: list[str]) -> None:
    result = cli(*command, "987654")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "job 987654 does not exist", "[P0002]", "hint:")


def test_errors_as_a_process_are_one_line(dsn: str) -> None:
    unknown = run_process(dsn, "status", "987654")
    assert unknown.returncode == 1
    assert_one_line_error(unknown.stderr, "does not exist")

    unreachable = run_process("postgresql://nobody@127.0.0.1:1/none", "list")
    assert unreachable.returncode == 1
    assert_one_line_error(unreachable.stderr, "connection")

    usage = run_process(dsn, "status", "not-a-number")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    assert "Invalid value" in usage.stderr


# --- engine and install on a database without pg_cron ---------------------------------


def test_prune_deletes_old_finished_jobs(cli: Callable[..., Result], conn: Conn,
                                         items: str) -> None:
    old, recent = submit(conn), submit(conn)
    for job_id in (old, recent):
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '3 days'"
                 " WHERE id = %s", (old,))
    result = cli("prune", "--retention", "2d")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["deleted"] == 1
    assert set(summary) >= {"rescued", "deleted", "objects_queued", "cron_runs_trimmed"}
    assert scalar(conn, "SELECT array_agg(id) FROM pgjobs.jobs") == [recent]
    assert cli("prune").exit_code == 0  # default retention


def test_run_with_budget_works_a_delete_job(cli: Callable[..., Result], conn: Conn) -> None:
    conn.execute("CREATE TABLE rows_t (id bigint PRIMARY KEY, tenant int NOT NULL,"
                 " created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE INDEX ON rows_t (tenant, id)")
    conn.execute("SELECT pgjobs.register_target('rows_t', 'id', 'tenant', 'created_at')")
    conn.execute("INSERT INTO rows_t (id, tenant) SELECT g, g % 2 FROM generate_series(1, 50) g")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('rows_t', '1')")

    result = cli("run", "--budget", "1s")
    assert result.exit_code == 0, result.output
    assert job(conn, job_id)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM rows_t") == 25
    assert cli("run", "--budget", "1s").exit_code == 0  # idle: returns at once


@pytest.mark.parametrize("budget", ["5x", "abc", "-1s", ""])
def test_bad_budget_is_a_usage_error(cli: Callable[..., Result], budget: str) -> None:
    result = cli("run", "--budget", budget)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "invalid --budget")


def test_schedule_without_pg_cron_names_the_alternative(cli: Callable[..., Result],
                                                        conn: Conn) -> None:
    result = cli("schedule")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "[55000]", "pgjobs run --loop")
    assert cli("unschedule").stdout.strip() == "unscheduled 0 pg_cron job(s)"


# --- watch ------------------------------------------------------------------------


def test_watch_piped_follows_a_job_to_its_end(dsn: str, conn: Conn, items: str) -> None:
    job_id = submit(conn)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PGJOBS_DSN"] = dsn
    watcher = subprocess.Popen([*pgjobs_command(), "watch", str(job_id)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The watcher LISTENs, then reads the job: once that read is done, no
        # event can be missed.
        wait_for_backend(conn, "pgjobs watch", "%FROM pgjobs.jobs%")
        assert claim(conn, "w") == [job_id]
        # The watcher prints the row it re-reads when woken: wait for the
        # line of the claimed row before the row moves on.
        assert watcher.stdout is not None
        first = watcher.stdout.readline()
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 3)", (job_id, who(conn, job_id, 'w')))
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w')))
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert err == ""
    assert "\x1b[" not in out  # plain lines, no terminal drawing
    lines = [first.rstrip("\n"), *out.splitlines()]
    assert lines[0] == f"job {job_id} custom started: running 0/?"
    assert lines[-1] == f"job {job_id} custom succeeded 3/3 100%"
    assert all(line.startswith(f"job {job_id} custom ") for line in lines)


def test_watch_one_job_exit_codes(cli: Callable[..., Result], conn: Conn, items: str) -> None:
    job_id = submit(conn)
    pending = cli("watch", "--timeout", "0.2", str(job_id))
    assert pending.exit_code == 3
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    canceled = cli("watch", str(job_id))
    assert canceled.exit_code == 1
    assert canceled.stdout.strip() == f"job {job_id} custom canceled 0/?"


def test_watch_all_jobs_until_timeout(cli: Callable[..., Result], dsn: str, conn: Conn,
                                      items: str) -> None:
    quiet = cli("watch", "--timeout", "1")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == ""

    submitted: list[int] = []

    def submit_when_listening() -> None:
        with psycopg.connect(dsn, autocommit=True) as other:
            wait_for_backend(other, "pgjobs watch", "LISTEN pgjobs")
            submitted.append(submit(other))

    thread = threading.Thread(target=submit_when_listening)
    thread.start()
    try:
        result = cli("watch", "--timeout", "3")
    finally:
        thread.join()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"job {submitted[0]} custom submitted: queued 0/?"]


# --- help and environment variables --------------------------------------------------


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


def test_every_option_has_a_pgjobs_env_var_shown_in_help() -> None:
    # ... except operands and guards, which never read the environment
    # (pgjobs.cli.common.OPERANDS; tests/test_cli_guards.py checks that side).
    from pgjobs.cli.common import OPERANDS

    runner = CliRunner()
    checked = 0
    for path, command in walk(main):
        options = [p for p in command.params if isinstance(p, click.Option)
                   and p.name not in ("help", "version") and p.name not in OPERANDS]
        shown = runner.invoke(main, [*path, "--help"], terminal_width=200)
        assert shown.exit_code == 0, (path, shown.output)
        for option in options:
            where = f"pgjobs {' '.join(path)} {option.opts[0]}"
            envvars = [option.envvar] if isinstance(option.envvar, str) else option.envvar
            assert envvars, f"{where} has no environment variable"
            assert envvars[0].startswith(ENV_PREFIX), f"{where}: {envvars}"
            assert option.show_envvar, f"{where} does not show its environment variable"
            assert envvars[0] in shown.stdout, f"{where}: {envvars[0]} not in --help"
            checked += 1
    assert checked >= 10
    assert "PGJOBS_DSN" in runner.invoke(main, ["--help"]).stdout


def test_dsn_from_environment(dsn: str, conn: Conn, items: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = submit(conn)
    monkeypatch.setenv("PGJOBS_DSN", dsn)
    result = CliRunner().invoke(main, ["status", "--json", str(job_id)])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["id"] == job_id


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is generated from these commands by docs/gen_cli.py."""
    script = Path(__file__).resolve().parent.parent / "docs" / "gen_cli.py"
    spec = importlib.util.spec_from_file_location("gen_cli", script)
    assert spec is not None and spec.loader is not None
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    expected = gen_cli.render(main)
    assert gen_cli.DOC.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: run python docs/gen_cli.py")
