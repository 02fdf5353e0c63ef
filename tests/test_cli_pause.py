"""`pgjobs pause | resume | retry` through click's CliRunner: the job's new
status on stdout, one-line errors with the SQLSTATE and hint (exit 1, as
`cancel`), and `status`, `list` and `watch` showing a paused job without
treating it as finished."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import claim, job, make_target, scalar, submit

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli(dsn: str, conn: Conn) -> Callable[..., Result]:
    make_target(conn)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])
    return invoke


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


def test_pause_resume_retry_print_the_new_status(cli: Callable[..., Result],
                                                 conn: Conn) -> None:
    queued = submit(conn)
    result = cli("pause", str(queued))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"job {queued}: paused"
    assert cli("pause", str(queued)).stdout.strip() == f"job {queued}: paused (already)"
    assert cli("resume", str(queued)).stdout.strip() == f"job {queued}: queued"

    assert claim(conn, "w") == [queued]
    result = cli("pause", str(queued))
    assert result.exit_code == 0
    assert result.stdout.strip().startswith(f"job {queued}: running (pause requested")
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (queued, job(conn, queued)["worker"])) \
        is False
    assert job(conn, queued)["status"] == "paused"

    assert cli("cancel", str(queued)).exit_code == 0
    result = cli("retry", str(queued))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"job {queued}: queued"
    assert job(conn, queued)["attempts"] == 0


@pytest.mark.parametrize("command, fragment", [
    ("resume", "is not paused"), ("retry", "cannot be retried")])
def test_a_verb_that_does_not_apply_is_a_one_line_error(
        cli: Callable[..., Result], conn: Conn, command: str, fragment: str) -> None:
    queued = submit(conn)
    one_line_error(cli(command, str(queued)), fragment, "[55000]", "hint:")
    conn.execute("SELECT pgjobs.cancel(%s)", (queued,))
    if command == "resume":
        one_line_error(cli(command, str(queued)), fragment, "[55000]", "pgjobs.retry")
    one_line_error(cli("pause", str(queued)), "cannot be paused", "[55000]", "hint:")


@pytest.mark.parametrize("command", ["pause", "resume", "retry"])
def test_unknown_job(cli: Callable[..., Result], command: str) -> None:
    one_line_error(cli(command, "987654"), "job 987654 does not exist", "[P0002]", "hint:")


def test_status_list_and_watch_show_a_paused_job(cli: Callable[..., Result],
                                                 conn: Conn) -> None:
    job_id = submit(conn)
    other = submit(conn)
    cli("pause", str(job_id))
    status = cli("status", str(job_id))
    assert status.exit_code == 3  # not finished
    assert "status: paused" in status.stdout
    listed = cli("list", "--status", "paused")
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [str(job_id)]
    assert str(other) not in listed.stdout
    # watch does not take paused for an end, and says why nothing moves.
    watched = cli("watch", str(job_id), "--timeout", "1")
    assert watched.exit_code == 3
    assert f"job {job_id} is paused: `pgjobs resume {job_id}` continues it" in watched.stderr
    assert watched.stderr.count("is paused") == 1
