"""The mistakes a new user makes, from the README down: each is one line on
stderr with a hint that says what to do next, a non-zero exit, no traceback.

- A DSN that does not parse is a usage error (exit 2) and a server that does
  not answer exit 1; either hint names where the DSN came from (--dsn,
  PGJOBS_DSN, DATABASE_URL), never the DSN (it may hold a password). `pgjobs
  ui` checks the database before it serves.
- A database without pgjobs, or with an older one (a missing pgjobs schema,
  table or function), says to run `pgjobs migrate` or check the DSN.
- `schedule --runners` / `--run-every` out of bounds is a usage error in the
  options' own terms.
- A table that does not exist (42P01, which PostgreSQL raises without a hint)
  gets one.
- Cancel of a job that already succeeded or failed canceled nothing: exit 1.
- pause / resume / retry name the job's status readably.
- An import whose local source is missing is not told to pick a writable
  directory; `pgjobs url` of a job that is not an export says what to do.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from pgjobs.cli.main import main
from tests.support import (
    allowed_folder,
    claim,
    empty_database,
    job,
    make_people,
    make_target,
    scalar,
    submit,
    who,
    with_database,
)
from tests.support.cli import pgjobs_command, unset_ambient_settings
from tests.support.net import free_port

Conn = psycopg.Connection[Any]

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
UNPARSABLE = ["notadsn", "postgresql://u@localhost/db?bogus=1", "postgresql://a b@localhost/db"]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def one_line_error(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr
    return lines[0]


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, *args])
    return invoke


# --- the DSN -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["list"], ["status", "1"], ["migrate"], ["doctor"],
                                     ["delete", "t", "--scope", "1", "--yes"]])
@pytest.mark.parametrize("bad", UNPARSABLE)
def test_a_dsn_that_does_not_parse_is_a_usage_error(command: list[str], bad: str) -> None:
    line = one_line_error(CliRunner().invoke(main, ["--dsn", bad, *command]), 2,
                          "invalid DSN", "(hint: fix --dsn", "postgresql://")
    assert "bogus=1" not in line.split("(hint:")[1]


@pytest.mark.parametrize("variable, named", [("PGJOBS_DSN", "PGJOBS_DSN"),
                                             ("DATABASE_URL", "DATABASE_URL")])
def test_the_hint_names_where_the_dsn_came_from(monkeypatch: pytest.MonkeyPatch,
                                                variable: str, named: str) -> None:
    monkeypatch.setenv(variable, "notadsn")
    one_line_error(CliRunner().invoke(main, ["list"]), 2, "invalid DSN", f"fix {named}:")
    monkeypatch.setenv(variable, UNREACHABLE)
    line = one_line_error(CliRunner().invoke(main, ["list"]), 1, "connection", f"check {named}")
    assert "nobody" not in line.split("(hint:")[1]  # the DSN itself is never repeated


def test_a_database_or_role_that_does_not_exist_says_what_to_check(dsn: str) -> None:
    for url in (with_database(dsn, "no_such_database_h5"),
                make_conninfo(dsn, user="no_such_role_h5")):
        result = CliRunner().invoke(main, ["--dsn", url, "list"])
        one_line_error(result, 1, "does not exist", "(hint: check --dsn",
                       "database and role exist")


def test_ui_checks_the_database_before_it_serves() -> None:
    pytest.importorskip("uvicorn")
    command = pgjobs_command()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    for dsn, code in ((UNREACHABLE, 1), ("notadsn", 2)):
        env["PGJOBS_DSN"] = dsn
        done = subprocess.run([*command, "ui", "--port", str(free_port())], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert "(hint: " in lines[0] and "PGJOBS_DSN" in lines[0], done.stderr


@pytest.mark.parametrize("command", [["list"], ["status", "1"], ["schedule"],
                                     ["delete", "t", "--scope", "1", "--yes"],
                                     ["export", "t", "--scope", "1"], ["cancel", "1"]])
def test_a_database_without_pgjobs_says_to_migrate(cluster_url: str,
                                                   command: list[str]) -> None:
    """PostgreSQL names the missing schema, table or function without a hint:
    the user pointed at the wrong database, or has not migrated it."""
    with empty_database(cluster_url, "h5none") as url:
        result = CliRunner().invoke(main, ["--dsn", url, *command])
        one_line_error(result, result.exit_code or 1, "pgjobs", "(hint: ",
                       "`pgjobs migrate`", "--dsn (PGJOBS_DSN)")
        assert result.exit_code != 0


def test_an_older_pgjobs_says_to_migrate(cli: Callable[..., Result], conn: Conn) -> None:
    conn.execute("DROP FUNCTION pgjobs.schedule(jsonb)")
    one_line_error(cli("schedule"), 1, "pgjobs.schedule", "[42883]", "`pgjobs migrate`")


@pytest.mark.parametrize("option, bad, bounds", [("--runners", "99", "1<=x<=16"),
                                                 ("--runners", "0", "1<=x<=16"),
                                                 ("--run-every", "60", "1<=x<=59")])
def test_schedule_bounds_are_the_cli_options(cli: Callable[..., Result], option: str,
                                             bad: str, bounds: str) -> None:
    """Refused by the CLI, in its own terms: not as the SQL option's JSON hint."""
    one_line_error(cli("schedule", option, bad), 2, f"'{option}'", bounds,
                   "(hint: see `pgjobs schedule --help`)")


# --- targets, jobs -----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["delete", "no_such_table", "--scope", "1", "--yes"],
    ["backfill", "no_such_table", "--scope", "1", "--filter", "{}", "--set", '{"a": 1}',
     "--yes"],
    ["export", "no_such_table", "--scope", "1"],
    ["doctor", "no_such_table"]])
def test_a_table_that_does_not_exist_has_a_hint(cli: Callable[..., Result],
                                                command: list[str]) -> None:
    one_line_error(cli(*command), 2, '"no_such_table" does not exist', "[42P01]",
                   "(hint: ", "pgjobs.targets")


def test_cancel_of_a_job_that_ran_to_its_end_cancels_nothing(cli: Callable[..., Result],
                                                              conn: Conn) -> None:
    make_target(conn)
    done, failed, canceled = submit(conn), submit(conn), submit(conn)
    assert claim(conn, "w", limit=2) == [done, failed]
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (done, who(conn, done, "w")))
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom', false)",
                  (failed, who(conn, failed, "w")))
    conn.execute("SELECT pgjobs.cancel(%s)", (canceled,))
    for job_id, status in ((done, "succeeded"), (failed, "failed")):
        result = cli("cancel", str(job_id))
        one_line_error(result, 1, f"job {job_id} had already finished ({status})",
                       "nothing to cancel", f"(hint: `pgjobs status {job_id}`")
        assert result.stdout == ""
        assert job(conn, job_id)["status"] == status
    again = cli("cancel", str(canceled))  # what was asked already holds
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"job {canceled} had already finished (canceled)"


def test_a_verb_that_does_not_apply_names_the_status(cli: Callable[..., Result],
                                                     conn: Conn) -> None:
    make_target(conn)
    running, queued = submit(conn), submit(conn)
    assert claim(conn, "w") == [running]
    one_line_error(cli("retry", str(running)), 1,
                   f"job {running} (running) cannot be retried", "[55000]", "hint:")
    one_line_error(cli("resume", str(queued)), 1,
                   f"job {queued} (queued) is not paused", "[55000]", "hint:")
    conn.execute("SELECT pgjobs.cancel(%s)", (queued,))
    one_line_error(cli("pause", str(queued)), 1,
                   f"job {queued} (canceled) cannot be paused", "[55000]", "hint:")


def test_url_of_a_job_that_is_not_an_export_has_a_hint(cli: Callable[..., Result],
                                                       conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    one_line_error(cli("url", str(job_id)), 2, "not an export", "(hint: ")


def test_an_import_of_a_missing_file_says_to_check_the_path(cli: Callable[..., Result],
                                                            conn: Conn,
                                                            tmp_path: Path) -> None:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    result = cli("import", "people", str(folder / "typo.csv"), "--scope", "1", "--quiet")
    # Refused before the submit (exit 2): the job it used to submit could only fail.
    line = one_line_error(result, 2, "typo.csv", "No such file", "check the path")
    assert "writable" not in line
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_watch_says_where_the_job_stands_at_its_timeout(cli: Callable[..., Result],
                                                        conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    watched = cli("watch", str(job_id), "--timeout", "0.3")
    assert watched.exit_code == 3, watched.output
    assert watched.stdout == ""
    assert watched.stderr.strip() == (f"job {job_id} is still queued at --timeout; it goes on: "
                                      f"`pgjobs watch {job_id}` follows it again")
    quiet = cli("watch", str(job_id), "--timeout", "0.3", "--quiet")
    assert (quiet.exit_code, quiet.stderr) == (3, "")


@pytest.mark.parametrize("columns", ["id,,name", "id,", "", " , "])
def test_an_empty_entry_in_export_columns_is_refused_not_dropped(cli: Callable[..., Result],
                                                                  conn: Conn, tmp_path: Path,
                                                                  columns: str) -> None:
    """`--columns 'id,,name'` exported id and name as if the typo were not
    there; the submit now sees the empty entry and refuses it with its hint."""
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    result = cli("export", "people", "--scope", "1", "--columns", columns,
                 "--to", (folder / "out.csv").as_uri(), "--quiet")
    one_line_error(result, 2, 'option "columns"', "non-empty string", "(hint: ")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
