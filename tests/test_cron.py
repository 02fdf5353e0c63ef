"""pg_cron drives the engine: `pgjobs.schedule()` installs the runner and
prune jobs idempotently, pg_cron really fires `CALL pgjobs.run()` on its
minute tick, and `pgjobs.prune()` trims pg_cron's history of pgjobs' jobs.

pg_cron runs jobs only in its own database (`cron.database_name`), so these
tests use the session's `cron_dsn` fixture rather than a per-test copy; each
test unschedules what it scheduled. They need a throwaway cluster (run pytest
without PGJOBS_TEST_URL) and skip with the reason otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import job as job_row
from tests.support import scalar, wait_for

Conn = psycopg.Connection[Any]

CRON_RUN_SECONDS = 300
"""How long pg_cron may take to start a run after a submit and end it: 1.4
fires `* * * * *` jobs at the top of each minute, and a run's budget is 50 s.
A bound only for a pg_cron that never runs: the test waits for a run started
after the submit to end, however late the tick came."""
LAUNCHER_SECONDS = 30
"""The pg_cron launcher reconnects to cron.database_name after it is created
(postmaster restarts the failed worker; pg_cron asks for 1 s between tries)."""


@pytest.fixture
def cron(cron_dsn: str) -> Iterator[Conn]:
    """An autocommit connection to pg_cron's database; pgjobs unscheduled after."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        yield conn
    finally:
        conn.execute("SELECT pgjobs.unschedule()")
        # The session's cron database is shared by these tests: leave it empty.
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DELETE FROM pgjobs.target_registry")
        conn.execute("DROP TABLE IF EXISTS user_table_rows")
        conn.close()


def cron_jobs(conn: Conn) -> dict[str, dict[str, Any]]:
    cur = conn.execute(
        "SELECT jobid, jobname, schedule, command, database, username, active"
        "  FROM cron.job WHERE jobname LIKE 'pgjobs.%' ORDER BY jobname")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return {row[1]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def runs_ended_since(conn: Conn, since: Any, names: list[str]) -> bool:
    """Whether each of pgjobs' pg_cron jobs `names` has a run that started after
    `since` and has ended: such runs claimed every job due at `since`."""
    return bool(scalar(conn, """
        SELECT bool_and(EXISTS (SELECT FROM cron.job_run_details d
                                 WHERE d.jobid = j.jobid AND d.start_time > %s
                                   AND d.status IN ('succeeded', 'failed')))
          FROM cron.job j WHERE j.jobname = ANY (%s)""", (since, names)))


def wait_for_launcher(conn: Conn) -> None:
    wait_for(lambda: scalar(
        conn, "SELECT count(*) FROM pg_catalog.pg_stat_activity"
              " WHERE backend_type = 'pg_cron launcher' AND datname = current_database()"),
        LAUNCHER_SECONDS, "the pg_cron launcher to connect to this database", interval=0.5)


def test_schedule_is_idempotent_and_unschedule_removes_the_jobs(cron: Conn) -> None:
    first = scalar(cron, "SELECT pgjobs.schedule()")
    assert scalar(cron, "SELECT count(*) FROM pg_catalog.pg_extension"
                        " WHERE extname = 'pg_cron'") == 1
    version = scalar(cron, "SELECT extversion FROM pg_catalog.pg_extension"
                           " WHERE extname = 'pg_cron'")
    assert version.startswith(first["pg_cron"])
    jobs = cron_jobs(cron)
    assert sorted(jobs) == ["pgjobs.prune", "pgjobs.run"]
    assert jobs["pgjobs.run"]["command"].startswith("CALL pgjobs.run(")
    assert jobs["pgjobs.prune"]["command"] == "SELECT pgjobs.prune('24:00:00')"
    for job in jobs.values():
        assert job["database"] == cron.info.dbname
        assert job["active"]
    assert [j["name"] for j in first["jobs"]] == ["pgjobs.run", "pgjobs.prune"]

    # Again, with another retention: replaced in place, never duplicated.
    second = scalar(cron, "SELECT pgjobs.schedule(%s::jsonb)", (json.dumps(
        {"retention": "2 hours"}),))
    again = cron_jobs(cron)
    assert sorted(again) == ["pgjobs.prune", "pgjobs.run"]
    assert again["pgjobs.prune"]["command"] == "SELECT pgjobs.prune('02:00:00')"
    assert second["jobs"][1]["command"] == again["pgjobs.prune"]["command"]
    assert scalar(cron, "SELECT count(*) FROM cron.job") == 2

    assert scalar(cron, "SELECT pgjobs.unschedule()") == {"unscheduled": 2}
    assert cron_jobs(cron) == {}
    assert scalar(cron, "SELECT pgjobs.unschedule()") == {"unscheduled": 0}


def test_schedule_rejects_bad_options_before_touching_cron(cron: Conn) -> None:
    scalar(cron, "SELECT pgjobs.schedule()")
    before = cron_jobs(cron)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        cron.execute("SELECT pgjobs.schedule('{\"retention\": \"soon\"}')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        cron.execute("SELECT pgjobs.schedule('{\"every\": 5}')")
    assert cron_jobs(cron) == before


def test_prune_trims_pgjobs_cron_history_only(cron: Conn) -> None:
    # A long retention for the scheduled prune, so pg_cron's own minute run
    # cannot trim the aged rows before the call under test does.
    scalar(cron, "SELECT pgjobs.schedule('{\"retention\": \"30 days\"}')")
    other = scalar(cron, "SELECT cron.schedule('not-pgjobs', '0 0 1 1 *', 'SELECT 1')")
    try:
        jobs = cron_jobs(cron)
        ids = [jobs["pgjobs.run"]["jobid"], jobs["pgjobs.prune"]["jobid"], other]
        for jobid in ids:
            for age in ("2 days", "1 minute"):
                cron.execute(
                    "INSERT INTO cron.job_run_details (jobid, job_pid, database, username,"
                    " command, status, return_message, start_time, end_time)"
                    " VALUES (%s, 0, current_database(), current_user, 'test', 'succeeded',"
                    " 'test', now() - %s::interval, now() - %s::interval)",
                    (jobid, age, age))
        # History orphaned by an earlier schedule (its job id is gone) is
        # recognised by its command.
        cron.execute(
            "INSERT INTO cron.job_run_details (jobid, job_pid, database, username,"
            " command, status, return_message, start_time, end_time)"
            " VALUES (987654321, 0, current_database(), current_user,"
            " 'CALL pgjobs.run(''00:00:50'')', 'succeeded', 'orphan',"
            " now() - interval '2 days', now() - interval '2 days')")
        summary = scalar(cron, "SELECT pgjobs.prune('1 day')")
        assert summary["cron_runs_trimmed"] == 3
        assert scalar(cron, "SELECT count(*) FROM cron.job_run_details"
                            " WHERE return_message = 'orphan'") == 0
        left = cron.execute(
            "SELECT jobid, count(*) FROM cron.job_run_details"
            " WHERE command = 'test' GROUP BY jobid").fetchall()
        assert dict(left) == {ids[0]: 1, ids[1]: 1, other: 2}
        # Nothing old left to trim.
        assert scalar(cron, "SELECT pgjobs.prune('1 day')")["cron_runs_trimmed"] == 0
    finally:
        cron.execute("SELECT cron.unschedule(%s::bigint)", (other,))
        cron.execute("DELETE FROM cron.job_run_details WHERE command = 'test'")


@pytest.mark.slow
def test_pg_cron_fires_run_and_the_delete_job_succeeds(cron: Conn) -> None:
    cron.execute("""
        CREATE TABLE user_table_rows (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_id int NOT NULL,
            data jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now())""")
    cron.execute("CREATE INDEX ON user_table_rows (table_id, id)")
    cron.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 " 'created_at', 'data')")
    cron.execute("INSERT INTO user_table_rows (table_id, data)"
                 " SELECT 1 + (g % 2), jsonb_build_object('n', g)"
                 " FROM generate_series(1, 600) g")
    # The cron database may be seconds old: let the launcher find it first.
    wait_for_launcher(cron)
    scalar(cron, "SELECT pgjobs.schedule('{\"retention\": \"30 days\"}')")
    run_jobid = cron_jobs(cron)["pgjobs.run"]["jobid"]
    job_id = scalar(cron, "SELECT pgjobs.submit_delete('user_table_rows', '1',"
                          " '{\"n\": {\"$lte\": 400}}')")

    submitted = scalar(cron, "SELECT clock_timestamp()")

    def finished() -> tuple[str, str | None] | None:
        row = cron.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                           (job_id,)).fetchone()
        assert row is not None
        return row if row[0] in ("succeeded", "failed", "canceled") else None

    def settled() -> tuple[str, str | None] | None:
        """The job's end, or what it was when a run pg_cron started after the
        submit had ended (that run claimed every due job)."""
        ran = runs_ended_since(cron, submitted, ["pgjobs.run"])
        return finished() or (tuple(job_row(cron, job_id)[k] for k in ("status", "error"))
                              if ran else None)

    # Waits for pg_cron's events, not for a guess at its timing: a tick comes
    # late on a loaded machine (75 s after the submit failed then).
    status, error = wait_for(settled, CRON_RUN_SECONDS,
                             f"a run pg_cron started after delete job {job_id} to end",
                             interval=0.5)
    assert (status, error) == ("succeeded", None)
    assert cron.execute("SELECT table_id, count(*) FROM user_table_rows"
                        " GROUP BY 1 ORDER BY 1").fetchall() == [(1, 100), (2, 300)]
    worker = scalar(cron, "SELECT worker FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert worker.startswith("run:")  # claimed by pgjobs.run, i.e. by pg_cron's CALL

    # pg_cron records the CALL as succeeded once the procedure returns.
    wait_for(lambda: scalar(
        cron, "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s"
              " AND status = 'succeeded'", (run_jobid,)),
        30, "cron.job_run_details to record the run", interval=0.5)

    # Age pgjobs' history: prune trims it (pg_cron's own prune keeps 30 days).
    cron.execute("UPDATE cron.job_run_details SET end_time = now() - interval '2 days'"
                 " WHERE jobid = %s AND status = 'succeeded'", (run_jobid,))
    aged = scalar(cron, "SELECT count(*) FROM cron.job_run_details"
                        " WHERE jobid = %s AND end_time < now() - interval '1 day'",
                  (run_jobid,))
    summary = scalar(cron, "SELECT pgjobs.prune('1 day')")
    assert summary["cron_runs_trimmed"] >= aged >= 1
    assert scalar(cron, "SELECT count(*) FROM cron.job_run_details"
                        " WHERE jobid = %s AND end_time < now() - interval '1 day'",
                  (run_jobid,)) == 0


FUNCTIONS = Path(__file__).resolve().parent.parent / "sql" / "functions"
# pg_cron's tables named in code rather than taken from pgjobs._cron_relation.
BY_NAME = re.compile(r"%(?:\d+\$)?I\.job|'cron\.job(?:_run_details)?'"
                     r"|(?:FROM|JOIN|UPDATE|INTO)\s+cron\.", re.IGNORECASE)


def test_pg_cron_tables_are_read_only_as_cron_relation_found_them() -> None:
    """One idiom: every routine that reads pg_cron's tables splices the
    regclass pgjobs._cron_relation returned (format('%s', ...)), and asks
    has_table_privilege of it, never of cron.<name> (the relation checked
    is the relation read). The look-alike case itself:
    tests/test_trust_fixes_h1.py."""
    readers = []
    for path in sorted(FUNCTIONS.glob("*.sql")):
        code = "\n".join(line.split("--")[0] for line in path.read_text().splitlines())
        assert not BY_NAME.search(code), path.name
        if "_cron_relation(" in code and path.stem != "_cron_relation":
            readers.append(path.stem)
    assert {"_engine_wait_as", "prune", "unschedule", "_doctor_cron_jobs",
            "_doctor_cron_history"} <= set(readers)
    for sample in ("FROM %1$I.job_run_details d", "has_table_privilege('cron.job', 'SELECT')",
                   "FROM %I.job c", "JOIN cron.job c"):
        assert BY_NAME.search(sample), sample
