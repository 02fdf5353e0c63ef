"""The h4 adversarial pass, as a new user holding only the documented grants
(docs/operations.md, "Roles"): what the CLI says, and what it leaves behind,
when a command needs more than the role it connects as has.

- PostgreSQL's own refusals (a role in neither pgjobs role: `permission denied
  for schema pgjobs`; a pgjobs_client calling an administrator's function:
  `permission denied for function claim`) reached the user as the bare
  message, no hint: every command, one rule (pgjobs.errors).
- `pgjobs export` and `pgjobs import` run in process (without --detach) by a
  pgjobs_client submitted the job, then failed at its claim: exit 1, and the
  job stayed queued for a worker, so a second try queued a second export or
  import. They are refused before the submit now, nothing queued.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from pgjobs.cli.main import main
from tests.support import allowed_folder, make_people, scalar
from tests.support.cli import unset_ambient_settings

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def _role(conn: Conn, prefix: str, *member_of: str) -> str:
    role = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN" + (f" IN ROLE {', '.join(member_of)}"
                                                  if member_of else ""))
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON people TO {role}")
    return role


@pytest.fixture
def as_role(conn: Conn, dsn: str) -> Iterator[Callable[[str], Callable[..., Result]]]:
    """A CLI that connects as the test's login and sets a role at connection start,
    as docs/operations.md shows (`options=-c role=...`)."""
    make_people(conn)
    made: list[str] = []

    def cli_for(role: str) -> Callable[..., Result]:
        made.append(role)
        url = make_conninfo(dsn, options=f"-c role={role}")

        def invoke(*args: str) -> Result:
            return CliRunner().invoke(main, ["--dsn", url, *args])
        return invoke

    yield cli_for
    for role in made:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def error_line(result: Result, code: int, *fragments: str) -> str:
    """The command's error: one `error:` line on stderr (a worker may log before
    it), its SQLSTATE and a hint; no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "(hint: " in line, line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.parametrize("command", [
    ["run", "--budget", "1s"], ["prune"], ["worker", "--once"], ["schedule"],
    ["unschedule"], ["doctor"], ["rotate-channel-secret"]], ids=lambda c: c[0])
def test_an_administrators_command_run_by_a_client_says_which_role_it_needs(
        conn: Conn, as_role: Callable[[str], Callable[..., Result]],
        command: list[str]) -> None:
    cli = as_role(_role(conn, "h4_client", "pgjobs_client"))
    line = error_line(cli(*command), 1, "[42501]", "permission denied for",
                      "pgjobs_admin", "GRANT pgjobs_admin TO")
    assert '"Roles"' in line


@pytest.mark.parametrize("command", [
    ["list"], ["status", "1"], ["cancel", "1"],
    ["delete", "people", "--scope", "1", "--yes"],
    ["export", "people", "--scope", "1", "--detach"]], ids=lambda c: c[0])
def test_a_role_in_no_pgjobs_role_is_told_to_get_one(
        conn: Conn, as_role: Callable[[str], Callable[..., Result]],
        command: list[str]) -> None:
    cli = as_role(_role(conn, "h4_nobody"))
    error_line(cli(*command), 1, "[42501]", "permission denied for schema pgjobs",
               "GRANT pgjobs_client TO")


def test_export_and_import_in_process_by_a_client_submit_nothing(
        conn: Conn, as_role: Callable[[str], Callable[..., Result]], tmp_path: Path) -> None:
    folder = allowed_folder(conn, tmp_path)
    source = folder / "people.csv"
    source.write_text("name,age\nada,36\n")
    cli = as_role(_role(conn, "h4_client", "pgjobs_client"))
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    for command in (["export", "people", "--scope", "1", "--quiet"],
                    ["--storage", f"file://{folder}", "export", "people", "--scope", "1",
                     "--format", "jsonl", "--parallel", "2"],
                    ["import", "people", str(source), "--scope", "1"]):
        line = error_line(cli(*command), 1, "[42501]", "nothing was submitted", "--detach",
                          "pgjobs_admin")
        assert "claim_" in line
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before, command
    # --detach submits for a worker, as documented.
    for command in (["export", "people", "--scope", "1", "--detach"],
                    ["import", "people", str(source), "--scope", "1", "--detach"]):
        result = cli(*command)
        assert result.exit_code == 0, result.output
        job_id = int(result.stdout.strip().splitlines()[-1])
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"


def _pg_cron_installed(conn: Conn) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM pg_available_extensions "
                             "WHERE name = 'pg_cron'"))


@pytest.mark.parametrize("command", [
    ["doctor"], ["doctor", "people"], ["schedule"], ["schedule", "--runners", "2"],
    ["unschedule"], ["prune"], ["run", "--budget", "1s"], ["list"]],
    ids=lambda c: "-".join(c))
def test_an_administrator_who_is_no_superuser_is_served_or_told_what_to_grant(
        conn: Conn, as_role: Callable[[str], Callable[..., Result]],
        command: list[str]) -> None:
    """docs/operations.md: these commands need pgjobs_admin, not a superuser.
    shared_preload_libraries and cron.database_name are superuser-only
    settings (pg_read_all_settings), and reading them raised 42501 with no
    hint of pgjobs': `pgjobs doctor` failed whole and `pgjobs schedule` with
    PostgreSQL's bare "must be superuser or have privileges of
    pg_read_all_settings"."""
    cli = as_role(_role(conn, "h17_admin", "pgjobs_admin"))
    result = cli(*command)
    assert "Traceback" not in result.output
    if command[0] == "schedule" and _pg_cron_installed(conn):
        # The per-test database is never pg_cron's: refused, naming what to do.
        error_line(result, 1, "[42501]", "may not read cron.database_name",
                   "GRANT pg_read_all_settings TO", "pgjobs run --loop")
        return
    if command[0] == "schedule":
        error_line(result, 1, "[55000]", "pgjobs run --loop")
        return
    assert "error:" not in result.stderr, result.output
    if command[0] == "doctor":
        assert result.exit_code in (0, 1), result.output  # 1: a warning or a failure
        if _pg_cron_installed(conn):
            line = next(line for line in result.stdout.splitlines()
                        if "pg_cron.preloaded" in line)
            assert line.startswith("WARN") and "may not read shared_preload_libraries" in line
            assert "GRANT pg_read_all_settings TO" in result.stdout
    else:
        assert result.exit_code == 0, result.output


def test_doctor_as_a_superuser_still_reads_the_settings(conn: Conn) -> None:
    """The helper that spares a non-superuser the 42501 hides nothing from a
    role that may read the settings."""
    if not _pg_cron_installed(conn):
        pytest.skip("pg_cron is not installed")
    rows = conn.execute("SELECT check_name, status, detail FROM pgjobs.doctor() "
                        "WHERE check_name LIKE 'pg_cron.%'").fetchall()
    assert ("pg_cron.preloaded" not in [r[0] for r in rows]
            or all("may not read" not in r[2] for r in rows)), rows
    assert scalar(conn, "SELECT pgjobs._setting_hidden('shared_preload_libraries')") is False
    assert scalar(conn, "SELECT pgjobs._setting_hidden('no_such.setting')") is False
