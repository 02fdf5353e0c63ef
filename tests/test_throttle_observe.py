"""Throttled and waiting jobs as `pgjobs status`, `watch` and `doctor` show
them, and the doctor's checks for work nothing takes (issue 10 items 7-8)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import (
    Conn,
    Target,
    make_items,
    make_rows_target,
    scalar,
    seed,
    slow_deletes,
    submit_delete,
    submit_export,
    wait_for,
)


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])

    return invoke


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 900)
    return t


def _findings(conn: Conn) -> dict[str, tuple[str, str, str | None]]:
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT check_name, status, detail, fix FROM pgjobs.doctor()"
        " WHERE check_name NOT LIKE 'target.%'").fetchall()}


@pytest.fixture
def held(conn: Conn, make_conn: Callable[..., Conn], target: Target) -> Any:
    """A delete held by max_xact_age (1 second) in a runner thread, while another
    session's transaction stays open: a hold that does not lapse. (A WAL-rate
    hold lapses for a page whenever the server wrote no WAL in the runner's last
    half-second sample, so a look at the job could land in the lapse: CI.)
    Released (the transaction ends, the limit is lifted) and finished at
    teardown."""
    slow_deletes(conn, target, 0.005)
    old = make_conn(autocommit=False)
    old.execute("SELECT pg_catalog.txid_current()")
    wait_for(lambda: scalar(conn, "SELECT clock_timestamp() - xact_start > interval '1.5 s'"
                                  "  FROM pg_stat_activity WHERE pid = %s",
                            (old.info.backend_pid,)), what="a transaction open 1.5 s")
    job_id = submit_delete(conn, target, "2", options={"max_xact_age": "1 second",
                                                       "page_size": 20})
    runner = make_conn()
    thread = threading.Thread(target=lambda: runner.execute("CALL pgjobs.run_job(%s)",
                                                            (job_id,)), daemon=True)
    thread.start()
    wait_for(lambda: scalar(conn, "SELECT checkpoint ? 'throttled' FROM pgjobs.jobs"
                                  " WHERE id = %s", (job_id,)))
    yield job_id
    old.rollback()
    conn.execute("UPDATE pgjobs.jobs SET options = options - 'max_xact_age' WHERE id = %s",
                 (job_id,))
    thread.join(60)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"


def test_status_watch_and_doctor_show_a_throttled_job_and_why(
        conn: Conn, cli: Callable[..., Result], held: int) -> None:
    why = "max_xact_age"
    status = cli("status", str(held))
    assert status.exit_code == 3
    assert "throttled:" in status.stdout and why in status.stdout, status.stdout
    watched = cli("watch", str(held), "--timeout", "3")
    assert watched.exit_code == 3
    assert "throttled since" in watched.stdout and why in watched.stdout, watched.stdout
    state, detail, fix = _findings(conn)["jobs.throttled"]
    assert state == "warn"
    assert f"job {held}" in detail and why in detail
    assert fix is not None and str(held) in fix
    doctor = cli("doctor").stdout
    assert "jobs.throttled" in doctor and why in doctor, doctor


def test_doctor_without_throttled_or_stale_work_is_ok(conn: Conn, target: Target) -> None:
    findings = _findings(conn)
    for check in ("jobs.throttled", "jobs.queued_age", "workers.listening",
                  "throttle.visibility"):
        assert findings[check][0] == "ok", (check, findings[check])


def test_doctor_warns_of_jobs_due_long_ago(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "2")
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '1 hour' WHERE id = %s",
                 (job_id,))
    state, detail, fix = _findings(conn)["jobs.queued_age"]
    assert state == "warn" and str(job_id) in detail
    assert fix is not None and "pgjobs.schedule()" in fix


def test_doctor_warns_of_exports_no_worker_takes(conn: Conn, make_conn: Callable[..., Conn],
                                                dsn: str) -> None:
    make_items(conn, rows=10)
    job_id = submit_export(conn, "1")
    state, detail, fix = _findings(conn)["workers.listening"]
    assert state == "warn" and str(job_id) in detail
    assert fix is not None and "pgjobs worker" in fix
    worker = make_conn(application_name="pgjobs worker")  # as poller/worker.py connects
    assert _findings(conn)["workers.listening"][0] == "ok"
    worker.close()


def test_doctor_warns_when_the_owner_cannot_see_the_signals(conn: Conn) -> None:
    conn.execute("CREATE ROLE blind_owner NOLOGIN")
    conn.execute("ALTER FUNCTION pgjobs._health() OWNER TO blind_owner")
    state, detail, fix = _findings(conn)["throttle.visibility"]
    assert state == "warn" and "pg_monitor" in detail
    assert fix == "GRANT pg_monitor TO blind_owner;  -- as a superuser"
    conn.execute("GRANT pg_monitor TO blind_owner")
    assert _findings(conn)["throttle.visibility"][0] == "ok"


def _schedule(conn: Conn, schedule: str) -> None:
    """pgjobs.run on `schedule` in pg_cron's own cron.job (pgjobs reads pg_cron's
    table only, never a look-alike), running nothing: the jobs stay queued."""
    conn.execute("UPDATE cron.job SET schedule = %s, command = 'SELECT 1'"
                 " WHERE jobname = 'pgjobs.run'", (schedule,))


def test_watch_and_status_explain_the_wait_for_a_minute_tick(cron_dsn: str) -> None:
    conn = psycopg.connect(cron_dsn, autocommit=True)
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", cron_dsn, *args])

    try:
        target = make_rows_target(conn, "tick_rows")
        seed(conn, target, 90)
        job_id = submit_delete(conn, target, "2")
        note = "waiting for the engine: next tick within 60 s"
        assert note not in cli("status", str(job_id)).stdout  # nothing scheduled yet
        with conn.transaction():  # pg_cron never sees pgjobs.run's own command
            conn.execute("SELECT pgjobs.schedule()")
            _schedule(conn, "* * * * *")  # pg_cron 1.4: minute schedules only
        assert f"waiting: {note}" in cli("status", str(job_id)).stdout
        assert note in cli("watch", str(job_id), "--timeout", "3").stdout
        _schedule(conn, "10 seconds")  # pg_cron 1.5+
        assert note not in cli("status", str(job_id)).stdout
        _schedule(conn, "* * * * *")
        # `pgjobs run --loop` drives the engine
        with psycopg.connect(cron_dsn, autocommit=True, application_name="pgjobs run"):
            assert note not in cli("status", str(job_id)).stdout
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"
    finally:
        conn.execute("SELECT pgjobs.unschedule()")
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DROP TABLE IF EXISTS tick_rows")
        conn.close()
