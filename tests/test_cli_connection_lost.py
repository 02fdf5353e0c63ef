"""A session lost under a long-running command (server restart, failover, an
administrator's pg_terminate_backend): never a Python traceback.

`pgjobs watch` (one job or all) waited on LISTEN with psycopg's own
``notifies()``, outside the error translation, so the lost session surfaced as
``psycopg.OperationalError`` with a traceback; `pgjobs run --loop`, the
engine's sidecar when pg_cron is absent, died the same way on every server
restart. Now every LISTEN wait goes through ``db.notifications`` (one line,
the ConnectionLost hint, exit 1) and `run --loop` connects again, as a worker
does. A connection that never opened keeps the DSN hint.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import errors, queries
from tests.support import job, make_rows_target, scalar, seed, wait_for
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


def start(dsn: str, *args: str) -> subprocess.Popen[str]:
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn)
    return subprocess.Popen([*command, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def sessions(conn: Conn, app: str, *, waiting: bool) -> list[int]:
    """The backends of this database's sessions named ``app`` (idle after a
    LISTEN or an idle CALL when ``waiting``, or after a runner's look at what
    its CALL did, queries.RUN_SEEN, which follows every CALL)."""
    return [row[0] for row in conn.execute("""
        SELECT pid FROM pg_catalog.pg_stat_activity
         WHERE application_name = %s AND datname = current_database()
           AND (NOT %s OR (state = 'idle' AND (query LIKE 'LISTEN%%' OR query LIKE 'CALL%%'
                                               OR starts_with(query, %s))))""",
        (app, waiting, queries.RUN_SEEN[:60])).fetchall()]


def terminate(conn: Conn, app: str) -> list[int]:
    """Wait until ``app`` waits, then end its sessions; their backends."""
    pids = wait_for(lambda: sessions(conn, app, waiting=True), 30, f"{app} waiting")
    conn.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.unnest(%s::int[])"
                 " AS pid", (pids,))
    return pids


@pytest.mark.parametrize("one_job", [True, False], ids=["watch-job", "watch-all"])
def test_watch_says_the_session_was_lost_in_one_line(conn: Conn, dsn: str,
                                                     one_job: bool) -> None:
    make_rows_target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
    child = start(dsn, "watch", *([str(job_id)] if one_job else []))
    try:
        terminate(conn, "pgjobs watch")
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "run the command again" in lines[0], err
    assert child.returncode == 1, (child.returncode, err)
    assert job(conn, job_id)["status"] == "queued"  # the job never depended on the watcher
    del out


def test_run_loop_connects_again_and_goes_on(conn: Conn, dsn: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 300)
    child = start(dsn, "run", "--loop", "--idle", "1s")
    try:
        lost = terminate(conn, "pgjobs run")
        # A new session, then a job submitted after the loss runs to its end.
        wait_for(lambda: child.poll() is not None
                 or set(sessions(conn, "pgjobs run", waiting=False)) - set(lost),
                 30, "run --loop connected again")
        assert child.poll() is None, child.communicate()
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
        wait_for(lambda: child.poll() is not None or job(conn, job_id)["status"] == "succeeded",
                 30, "the job submitted after the loss ran")
        assert child.poll() is None, child.communicate()
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                      " AND created_at <= now()") == 0  # seed makes some rows in the future
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "Traceback" not in err, err
    assert re.search(r"database unavailable \(.*\); reconnecting in", err), err
    assert child.returncode == 130, (child.returncode, err)
    del out


def test_run_without_loop_and_a_wrong_dsn_still_fail(dsn: str) -> None:
    """Only a loop that was connected tries again: a DSN that never answers is an
    error at once, with the DSN hint, not the lost-session one."""
    child = start(dsn.rsplit("/", 1)[0] + "/no_such_database_h4", "run", "--loop")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1, err
    assert "Traceback" not in err and "reconnecting" not in err, err
    assert "do that database and role exist" in err and "run the command again" not in err, err
    del out


LONG_RUNNING = [("run", "--loop"), ("worker",), ("worker", "--once"),
                ("ui", "--port", "1")]
"""Every command that keeps running and so waits out a lost session: none may
wait out a first connection that fails."""


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
@pytest.mark.parametrize("wrong", ["database", "port"])
def test_a_long_running_command_whose_first_connection_fails_exits_1(
        dsn: str, command: tuple[str, ...], wrong: str) -> None:
    """`pgjobs worker` (--once too) logged "database unavailable ...; retrying"
    for good on a wrong DSN, where `run --loop` and `ui` exit 1 with its hint."""
    bad = (dsn.rsplit("/", 1)[0] + "/no_such_database_h110" if wrong == "database"
           else "postgresql://nobody@127.0.0.1:1/none?connect_timeout=5")
    child = start(bad, *command)
    try:
        out, err = child.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"`pgjobs {' '.join(command)}` is still waiting on a wrong DSN: {err}")
    assert child.returncode == 1, (child.returncode, err)
    assert "Traceback" not in err and "retrying" not in err, err
    assert "do that database and role exist" in err, err
    del out


@pytest.mark.parametrize("message, lost", [
    ("consuming input failed: server closed the connection unexpectedly", True),
    ("the connection is lost", True),
    ('connection failed: connection to server at "127.0.0.1", port 1 failed: refused', False),
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', False),
])
def test_translation_tells_a_lost_session_from_a_failed_connection(message: str,
                                                                     lost: bool) -> None:
    err = errors.from_psycopg(psycopg.OperationalError(message))
    assert isinstance(err, errors.ConnectionFailed)
    assert isinstance(err, errors.ConnectionLost) is lost
    assert (err.hint == errors.LOST_HINT) is lost
    connecting = errors.from_connect(psycopg.OperationalError(message))
    assert type(connecting) is errors.ConnectionFailed and connecting.hint is None


def test_every_listen_wait_goes_through_the_translation() -> None:
    """The class, not the two commands: no code above the core calls psycopg's
    ``notifies()`` itself (a lost session would escape as a traceback)."""
    root = Path(__file__).resolve().parent.parent
    raw = [f"{path.relative_to(root)}:{number}"
           for folder in ("cli", "poller", "ui")
           for path in sorted((root / folder).rglob("*.py"))
           for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
           if ".notifies(" in line]
    assert raw == [], f"use pgjobs.db.notifications (or notifies_async): {raw}"


def test_status_says_when_a_running_jobs_session_is_gone(conn: Conn, dsn: str) -> None:
    """A job whose runner died (SIGKILL, a server restart) stays "running" until its
    lease is taken back: `status` (and `watch`, through the same note) says its lease
    expired and what takes it back, instead of a bare "running"."""
    from tests.support import claim, expire_lease

    make_rows_target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
    assert claim(conn, "h4-dead-runner", ["delete"]) == [job_id]
    live = start(dsn, "status", str(job_id))
    out, err = live.communicate(timeout=60)
    assert live.returncode == 3 and "lease expired" not in out, (out, err)
    expire_lease(conn, job_id)
    child = start(dsn, "status", str(job_id))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert "status: running" in out, out
    assert re.search(r"^waiting: its lease expired at .*`pgjobs prune`", out, re.M), out


def test_run_says_which_jobs_another_session_holds(conn: Conn, dsn: str) -> None:
    """`pgjobs run` right after a runner died (its lease not lapsed yet) found
    nothing it could take and exited 0 in silence: "works until nothing is left"
    read as "nothing is left". It still exits 0 (another session may well be
    alive) and names the job and its lease on stderr; with nothing held, nothing."""
    from tests.support import claim

    target = make_rows_target(conn)
    seed(conn, target, 60)
    quiet = start(dsn, "run")
    out, err = quiet.communicate(timeout=120)
    assert quiet.returncode == 0 and "still running" not in err, err
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
    assert claim(conn, "h4-dead-runner", ["delete"], lease="1 hour") == [job_id]
    child = start(dsn, "run")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, (out, err)
    assert "Traceback" not in err, err
    assert re.search(rf"job\(s\) {job_id} still running in another session, under a lease "
                     r"until .*`pgjobs doctor`", err), err
    assert job(conn, job_id)["status"] == "running"
    del out
