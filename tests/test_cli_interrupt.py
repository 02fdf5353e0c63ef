"""Issue 15, the command line: Ctrl-C behaves the same in every waiting command.

Through a real pseudo-terminal (pexpect sends the terminal's interrupt
character): `delete`/`backfill --wait`, `--run`, `watch JOB`, `export` and
`import` (run in process) all detach instead of canceling: the job goes on
(or, when this process ran it, is handed back at its last checkpoint), three
lines on stderr say so and how to follow it and cancel it, exit 130.

SIGTERM (kill, timeout, a service manager's stop) does the same: Python's
default ended the process at once, and `delete --run` left its CALL
pgjobs.run_job running on the server, orphaned, the job going on to its end.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pexpect
import psycopg
import pytest

from tests.support import job, make_rows_target, scalar, seed, wait_for
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    seed(conn, make_rows_target(conn), 300)
    return conn


def spawn(dsn: str, *args: str) -> pexpect.spawn:
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn, COLUMNS="200", TERM="dumb")
    return pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8",
                         timeout=60, dimensions=(50, 200))


def until(conn: Conn, sql: str, params: Any = None) -> None:
    """Wait (tests.support.wait_for) until the query returns true."""
    wait_for(lambda: scalar(conn, sql, params), 30, sql)


def listening(conn: Conn, job_id: int) -> None:
    """The follower has read the job after its LISTENs: it is waiting."""
    until(conn, "SELECT count(*) > 0 FROM pg_catalog.pg_stat_activity"
                " WHERE application_name = 'pgjobs watch' AND state = 'idle'"
                "   AND query LIKE 'LISTEN%%' AND datname = current_database()")
    del job_id


STOPS = ["ctrl-c", "sigterm"]


def stop(child: pexpect.spawn, how: str) -> None:
    """Ctrl-C through the terminal, or SIGTERM to the process."""
    if how == "ctrl-c":
        child.sendintr()
    else:
        child.kill(signal.SIGTERM)


def interrupt(child: pexpect.spawn, job_id: int, *, ran_here: bool,
              how: str = "ctrl-c") -> None:
    stop(child, how)
    if ran_here:
        child.expect(rf"interrupted: job {job_id} was handed back and continues where it "
                     "stopped")
    else:
        child.expect(rf"interrupted: detached from job {job_id}, which goes on")
    child.expect(rf"follow it: pgjobs watch {job_id}")
    child.expect(rf"cancel it: pgjobs cancel {job_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert "Traceback" not in (child.before or "")
    assert child.exitstatus == 130, (child.exitstatus, child.signalstatus)


def submitted(child: pexpect.spawn) -> int:
    child.expect(r"job (\d+) submitted")
    return int(child.match.group(1))


@pytest.mark.parametrize("kind, extra, how", [
    ("delete", (), "ctrl-c"), ("backfill", ("--set", '{"n": 9}'), "ctrl-c"),
    ("delete", (), "sigterm")])
def test_wait_detaches_and_the_job_goes_on(rows: Conn, dsn: str, kind: str,
                                           extra: tuple[str, ...], how: str) -> None:
    child = spawn(dsn, kind, "user_table_rows", "--scope", "1", "--filter", "{}", *extra,
                  "--yes", "--wait")
    job_id = submitted(child)
    listening(rows, job_id)
    interrupt(child, job_id, ran_here=False, how=how)
    row = job(rows, job_id)
    assert row["status"] == "queued" and row["cancel_requested_at"] is None


@pytest.mark.parametrize("how", STOPS)
def test_watch_detaches_and_the_job_goes_on(rows: Conn, dsn: str, how: str) -> None:
    job_id = int(scalar(rows, "SELECT pgjobs.submit_delete('user_table_rows', '1')"))
    child = spawn(dsn, "watch", str(job_id))
    listening(rows, job_id)
    interrupt(child, job_id, ran_here=False, how=how)
    row = job(rows, job_id)
    assert row["status"] == "queued" and row["cancel_requested_at"] is None


@pytest.mark.parametrize("how", STOPS)
def test_run_here_hands_the_job_back_at_its_last_page(rows: Conn, dsn: str, how: str) -> None:
    # 10 rows a page, at most 5 rows a second: about 20 s for the scope's ~100
    # rows, which the Ctrl-C ends after the first page or two. At 20 rows a
    # second a machine that took 5 s to deliver the Ctrl-C saw the job end.
    child = spawn(dsn, "delete", "user_table_rows", "--scope", "1", "--yes", "--run",
                  "--page-size", "10", "--options", '{"max_rows_per_second": 5}')
    job_id = submitted(child)
    until(rows, "SELECT done > 0 FROM pgjobs.jobs WHERE id = %s", (job_id,))
    interrupt(child, job_id, ran_here=True, how=how)
    row = job(rows, job_id)
    assert row["cancel_requested_at"] is None and row["status"] == "queued", row
    assert 0 < row["done"] < row["total"]
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1") > 0
    # Its CALL ended with it: no session of this test's database still runs the job.
    until(rows, "SELECT count(*) = 0 FROM pg_catalog.pg_stat_activity"
                " WHERE query LIKE 'CALL pgjobs.run_job%%' AND state = 'active'"
                "   AND datname = current_database()")


@pytest.mark.parametrize("kind, how", [("export", "ctrl-c"), ("import", "ctrl-c"),
                                       ("export", "sigterm")])
def test_export_and_import_hand_the_job_back(rows: Conn, dsn: str, make_conn: Any,
                                             tmp_path: Path, kind: str, how: str) -> None:
    """The job runs here and is stuck on a lock when Ctrl-C comes: it is handed
    back (queued, not canceled) once its statement returns, at its lock_timeout,
    without waiting for the lock."""
    rows.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tmp_path}/",))
    source = tmp_path / "in.csv"
    source.write_text("id,n\n" + "".join(f"{100000 + i},{i}\n" for i in range(50)))
    locker = make_conn()
    locker.execute("BEGIN")
    if kind == "export":
        args: tuple[str, ...] = ("export", "user_table_rows", "--scope", "1")
    else:
        args = ("import", "user_table_rows", str(source), "--scope", "1")
    locker.execute("LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE")
    try:
        child = spawn(dsn, "--storage", f"file://{tmp_path}/out", *args)
        job_id = submitted(child)
        until(rows, "SELECT status = 'running' FROM pgjobs.jobs WHERE id = %s",
              (job_id,))
        until(rows, "SELECT count(*) > 0 FROM pg_catalog.pg_stat_activity"
                    " WHERE application_name LIKE 'pgjobs%%' AND wait_event_type = 'Lock'"
                    "   AND datname = current_database()")
        stop(child, how)
        # Handed back while the lock is still held: the read or write behind it
        # gives up at its lock_timeout and, asked to stop, does not try again.
        # (Released half a second after the interrupt instead, a child slower
        # than that to take the signal could read on and finish the job.)
        child.expect(rf"interrupted: job {job_id} was handed back")
        output = child.before
    finally:
        locker.execute("ROLLBACK")
    child.expect(rf"cancel it: pgjobs cancel {job_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, (child.exitstatus, child.before)
    row = job(rows, job_id)
    assert row["cancel_requested_at"] is None and row["status"] == "queued", (row, output)
