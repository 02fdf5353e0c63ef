"""`pgjobs doctor` accepts the managed-service recipe: pg_cron lives in its own
database (cron.database_name, usually `postgres`) and runs pgjobs in the
application's database with cron.schedule_in_database (docs/operations.md,
"Managed services"). pg_cron's catalog is not readable from there, so doctor
judges what pgjobs.run and pgjobs.prune note when they run (pgjobs._engine_seen).

Also `jobs.heartbeats`: it fires for what it claims (no heartbeat for over half
the lease, at least a minute, while the lease still holds the job), for every
lease length where that can happen, and never for a worker that heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import claim, make_target, scalar, submit, who

Conn = psycopg.Connection[Any]
PG_CRON_ROWS = ("pg_cron.installed", "pg_cron.preloaded", "pg_cron.database",
                "pg_cron.scheduled")


def pg_cron_problem(conn: Conn) -> dict[str, Any]:
    """The one pg_cron row that judges whether something drives the engine here
    (the steps stop at the first problem: it is the last pg_cron.* row but history)."""
    rows = conn.execute(
        "SELECT check_name, status, detail, fix FROM pgjobs.doctor()"
        " WHERE check_name = ANY (%s)", (list(PG_CRON_ROWS),)).fetchall()
    names = [r[0] for r in rows]
    row = rows[-1]
    assert names == list(PG_CRON_ROWS[:len(names)])
    return {"check_name": row[0], "status": row[1], "detail": row[2], "fix": row[3]}


def as_session(make_conn: Callable[..., Conn], application_name: str) -> Conn:
    return make_conn(application_name=application_name)


def age_note(conn: Conn, what: str, interval: str) -> None:
    conn.execute("UPDATE pgjobs.settings SET value = jsonb_set(value, '{at}',"
                 " to_jsonb(now() - %s::interval)) WHERE key = %s",
                 (interval, f"engine_seen.{what}"))


def notes(conn: Conn) -> dict[str, Any]:
    """What pgjobs.run and pgjobs.prune noted, as doctor reads it."""
    return scalar(conn, "SELECT pgjobs._engine_seen_notes()")


def noted_at(conn: Conn, what: str) -> Any:
    return scalar(conn, "SELECT updated_at FROM pgjobs.settings WHERE key = %s",
                  (f"engine_seen.{what}",))


@pytest.fixture
def not_served_here(conn: Conn) -> dict[str, Any]:
    """This database is not pg_cron's (or the server has none): doctor warns."""
    problem = pg_cron_problem(conn)
    if problem["status"] == "ok":
        pytest.skip("pg_cron serves this database: the recipe is for another one")
    assert problem["status"] == "warn"
    return problem


def test_pg_cron_running_run_and_prune_from_elsewhere_is_ok(
        conn: Conn, make_conn: Callable[..., Conn], not_served_here: dict[str, Any]) -> None:
    cron = as_session(make_conn, "pg_cron")
    cron.execute("CALL pgjobs.run('1 second')")
    # Only run: a warn naming the call that schedules the other one, here.
    problem = pg_cron_problem(conn)
    assert problem["check_name"] == not_served_here["check_name"]
    assert problem["status"] == "warn"
    assert "runs pgjobs.run here from another database but not pgjobs.prune" in problem["detail"]
    assert "cron.schedule_in_database('pgjobs.prune', '* * * * *', 'SELECT pgjobs.prune()', " \
        f"'{conn.info.dbname}')" in problem["fix"]

    cron.execute("SELECT pgjobs.prune()")
    problem = pg_cron_problem(conn)
    assert (problem["status"], problem["fix"]) == ("ok", None)
    assert "cron.schedule_in_database" in problem["detail"]
    assert "pgjobs.run last ran" in problem["detail"]


def test_only_prune_names_the_run_schedule(
        conn: Conn, make_conn: Callable[..., Conn], not_served_here: dict[str, Any]) -> None:
    as_session(make_conn, "pg_cron").execute("SELECT pgjobs.prune()")
    problem = pg_cron_problem(conn)
    assert problem["status"] == "warn"
    assert "cron.schedule_in_database('pgjobs.run', '* * * * *', 'CALL pgjobs.run()', " \
        f"'{conn.info.dbname}')" in problem["fix"]


def test_runs_by_other_sessions_or_long_ago_do_not_count(
        conn: Conn, make_conn: Callable[..., Conn], not_served_here: dict[str, Any]) -> None:
    # Run by hand (psql, a script): no evidence that anything keeps running them.
    other = as_session(make_conn, "psql")
    other.execute("CALL pgjobs.run('1 second')")
    other.execute("SELECT pgjobs.prune()")
    assert pg_cron_problem(conn)["status"] == "warn"
    seen = notes(conn)
    assert seen["run"]["application_name"] == "psql"
    assert seen["prune"]["application_name"] == "psql"

    # By pg_cron, but over 3 minutes ago: the schedule stopped.
    age_note(conn, "run", "10 seconds")  # past the 5 s write throttle
    age_note(conn, "prune", "10 seconds")
    cron = as_session(make_conn, "pg_cron")
    cron.execute("CALL pgjobs.run('1 second')")
    cron.execute("SELECT pgjobs.prune()")
    assert pg_cron_problem(conn)["status"] == "ok"
    for what in ("run", "prune"):
        age_note(conn, what, "4 minutes")
        assert pg_cron_problem(conn)["status"] == "warn", what
        age_note(conn, what, "1 minute")
        assert pg_cron_problem(conn)["status"] == "ok", what


def test_the_note_is_written_at_most_every_5_seconds_and_never_waits(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    cron = as_session(make_conn, "pg_cron")
    cron.execute("CALL pgjobs.run('1 second')")
    # One transaction, one now(): the second prune is within 5 s of the first
    # however slow the machine (two transactions could be seconds apart).
    with cron.transaction():
        cron.execute("SELECT pgjobs.prune()")
        first = noted_at(cron, "prune")
        cron.execute("SELECT pgjobs.prune()")
    assert noted_at(conn, "prune") == first

    # Another runner holds the row (it is noting its own run): prune and run go on
    # without waiting for it, and note nothing.
    age_note(conn, "prune", "10 seconds")
    age_note(conn, "run", "10 seconds")
    holder = make_conn(autocommit=False)
    holder.execute("SELECT 1 FROM pgjobs.settings WHERE key LIKE 'engine_seen.%' FOR UPDATE")
    try:
        cron.execute("SET lock_timeout = '2s'")
        cron.execute("SELECT pgjobs.prune()")
        cron.execute("CALL pgjobs.run('1 second')")
    finally:
        holder.rollback()
    seen = notes(conn)
    assert scalar(conn, "SELECT %s::timestamptz < now() - interval '9 seconds'",
                  (seen["prune"]["at"],))
    assert scalar(conn, "SELECT %s::timestamptz < now() - interval '9 seconds'",
                  (seen["run"]["at"],))


@pytest.mark.parametrize("first", ["run", "prune"])
def test_run_and_prune_at_the_same_moment_are_both_noted(
        conn: Conn, make_conn: Callable[..., Conn], first: str) -> None:
    """pg_cron starts pgjobs.run and pgjobs.prune on the same minute: the one still
    in its transaction (holding its note) must not cost the other its note, or
    doctor warns that the other is not scheduled, minute after minute."""
    other = {"run": "prune", "prune": "run"}[first]
    for what in ("run", "prune"):
        age_note(conn, what, "10 seconds")  # past the 5 s write throttle
    began = scalar(conn, "SELECT clock_timestamp()")
    holder = as_session(make_conn, "pg_cron")
    holder.execute("BEGIN")
    assert scalar(holder, "SELECT pgjobs._engine_seen(%s)", (first,))
    try:
        cron = as_session(make_conn, "pg_cron")
        cron.execute("SET lock_timeout = '2s'")
        if other == "run":
            cron.execute("CALL pgjobs.run('1 second')")
        else:
            cron.execute("SELECT pgjobs.prune()")
    finally:
        holder.execute("COMMIT")
    seen = notes(conn)
    for what in ("run", "prune"):
        # Noted during this test (not "within 9 s", which a slow machine may not be).
        assert scalar(conn, "SELECT %s::timestamptz >= %s", (seen[what]["at"], began)), \
            (what, seen)


def test_a_note_of_the_previous_release_is_still_read(conn: Conn) -> None:
    """Releases before stop 29 kept both notes in one row 'engine_seen': a doctor
    right after the migrate still sees them; a newer note of a kind wins."""
    conn.execute("DELETE FROM pgjobs.settings WHERE key LIKE 'engine_seen%'")
    try:
        conn.execute("""
            INSERT INTO pgjobs.settings (key, value) VALUES ('engine_seen', jsonb_build_object(
                'run', jsonb_build_object('at', now() - interval '1 minute',
                                          'backend_type', 'pg_cron'),
                'prune', jsonb_build_object('at', now() - interval '1 minute',
                                            'backend_type', 'pg_cron')))""")
        assert set(notes(conn)) == {"run", "prune"}
        conn.execute("SELECT pgjobs._engine_seen('run')")
        seen = notes(conn)
        assert seen["run"]["backend_type"] == "client backend"
        assert seen["prune"]["backend_type"] == "pg_cron"
    finally:
        conn.execute("DELETE FROM pgjobs.settings WHERE key = 'engine_seen'")


def test_engine_seen_refuses_an_unknown_kind(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs._engine_seen('export')")
    assert caught.value.diag.message_hint


# --- the real recipe: pg_cron's own database schedules into this one -------------------


@pytest.fixture
def cron_elsewhere(cron_dsn: str, dsn: str) -> Iterator[Conn]:
    """pg_cron's database with the extension; the test's schedules removed after."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if not scalar(conn, "SELECT count(*) FROM pg_catalog.pg_proc"
                            " WHERE proname = 'schedule_in_database'"):
            pytest.skip("this pg_cron has no cron.schedule_in_database (pg_cron < 1.4)")
        yield conn
    finally:
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job"
                     " WHERE jobname LIKE 'managed-test.%'")
        conn.close()


@pytest.mark.slow
def test_cron_schedule_in_database_recipe_is_accepted(
        conn: Conn, cron_elsewhere: Conn, not_served_here: dict[str, Any]) -> None:
    """docs/operations.md's recipe, verbatim but for the job names: pg_cron in its own
    database runs pgjobs.run and pgjobs.prune in this one; doctor here says ok."""
    database = conn.info.dbname
    for name, command in (("managed-test.run", "CALL pgjobs.run()"),
                          ("managed-test.prune", "SELECT pgjobs.prune()")):
        cron_elsewhere.execute("SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s)",
                               (name, command, database))
    deadline = time.monotonic() + 150  # up to two minute ticks of pg_cron 1.4
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = notes(conn)
        if "run" in seen and "prune" in seen:
            break
        time.sleep(1)
    assert "run" in seen and "prune" in seen, f"pg_cron did not run pgjobs here: {seen}"
    # What pg_cron's sessions look like (background workers or libpq).
    for what in ("run", "prune"):
        assert "pg_cron" in (seen[what]["backend_type"], seen[what]["application_name"]), seen
    problem = pg_cron_problem(conn)
    assert (problem["status"], problem["fix"]) == ("ok", None), problem
    assert "cron.schedule_in_database" in problem["detail"]


# --- jobs.heartbeats ------------------------------------------------------------------


def heartbeats(conn: Conn) -> tuple[str, str]:
    row = conn.execute("SELECT status, detail FROM pgjobs.doctor()"
                       " WHERE check_name = 'jobs.heartbeats'").fetchone()
    assert row is not None
    return row[0], row[1]


def set_last_heartbeat(conn: Conn, job_id: int, ago: str) -> None:
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - %s::interval WHERE id = %s",
                 (ago, job_id))


@pytest.mark.parametrize(("lease", "quiet", "late"), [
    ("10 minutes", "4 minutes", "6 minutes"),   # a lease the old 15-minute rule never judged
    ("2 minutes", "50 seconds", "70 seconds"),  # the floor: a minute at least
    ("1 hour", "20 minutes", "40 minutes"),
])
def test_heartbeats_fire_past_half_the_lease(conn: Conn, lease: str, quiet: str,
                                             late: str) -> None:
    make_target(conn)
    job_id = submit(conn, options={"lease": lease})
    assert claim(conn, "w", lease=lease) == [job_id]
    assert heartbeats(conn)[0] == "ok"
    set_last_heartbeat(conn, job_id, quiet)
    assert heartbeats(conn)[0] == "ok"
    set_last_heartbeat(conn, job_id, late)
    status, detail = heartbeats(conn)
    assert status == "warn" and f"(ids {job_id})" in detail
    # A heartbeat clears it, and the worker keeps its job.
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, who(conn, job_id, "w")))
    assert heartbeats(conn)[0] == "ok"


def test_heartbeats_with_the_default_lease_are_left_to_jobs_leases(conn: Conn) -> None:
    """With a 30 s lease a silent worker's lease expires before a minute passes:
    jobs.leases reports it (this check cannot, by design, and says so)."""
    make_target(conn)
    job_id = submit(conn)
    assert claim(conn, "w") == [job_id]
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - interval '40 seconds',"
                 " lease_expires_at = now() - interval '10 seconds' WHERE id = %s", (job_id,))
    assert heartbeats(conn)[0] == "ok"
    leases = conn.execute("SELECT status, detail FROM pgjobs.doctor()"
                          " WHERE check_name = 'jobs.leases'").fetchone()
    assert leases is not None and leases[0] == "warn" and str(job_id) in leases[1]


def test_heartbeats_judge_a_job_never_heartbeated_from_its_start(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn, options={"lease": "1 hour"})
    assert claim(conn, "w", lease="1 hour") == [job_id]
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = NULL,"
                 " started_at = now() - interval '31 minutes' WHERE id = %s", (job_id,))
    assert heartbeats(conn)[0] == "warn"

