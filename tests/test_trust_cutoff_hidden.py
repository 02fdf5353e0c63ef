"""The cutoff's horizon and sessions the engine cannot see.

The horizon (the start of the oldest other transaction running at the
submit) needs every session's transaction start. pg_stat_activity shows it
only for sessions of roles the reader may read (its own, or all of them
with pg_read_all_stats): a transaction that began before the submit in a
hidden session, and commits after it, wrote rows dated before a horizon
that did not count it, and the job took them by their date. So a hidden
session makes the horizon -infinity (only the snapshot decides).

The check counted a row as hidden when its state was NULL and its
backend_type 'client backend'. But PostgreSQL hides backend_type as well
from a reader who may not read the row (found here on PostgreSQL 15: every
column but pid, datid, datname, usesysid and usename is NULL, the query
'<insufficient privilege>'): no row ever matched, and a client of another
role, or a background worker writing as another role (pg_cron with
cron.use_background_workers, a logical replication apply worker, any
extension's worker), was simply left out of the horizon. Now any session of
the database with a role (client backends, walsenders and background
workers have one; autovacuum workers, which write no rows of a table, have
none) whose row the engine may not read makes the horizon -infinity.

The engine of the test suite is its superuser, who sees every session: here
pgjobs._cutoff_clause runs as a role without pg_read_all_stats (SECURITY
DEFINER, owned by it), as it does under an engine owner that was not granted
it. Synchronised on locks, never on time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import (
    Target,
    job,
    make_rows_target,
    scalar,
    seed,
    submit_delete,
    wait_for,
)

Conn = psycopg.Connection[Any]
MakeConn = Callable[..., Conn]

CUTOFF = "pgjobs._cutoff_clause(pgjobs.target_registry, timestamptz)"
INSERT = "INSERT INTO user_table_rows (table_id, n, label, data) VALUES (1, 4242, 'late', '{}')"
# (what the writer runs before the submit, what it runs after it); it commits last.
SCENARIOS = {
    "written_before_committed_after": ([INSERT], []),
    "began_before_written_after": (["SELECT 1"], [INSERT]),
}
GATE = 4243  # the advisory lock a background worker's transaction waits on


def _role(conn: Conn, prefix: str, options: str = "NOLOGIN") -> str:
    role = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} {options}")
    return role


def _drop_role(conn: Conn, role: str) -> None:
    conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def engine(conn: Conn) -> Iterator[str]:
    """The role the cutoff is computed as: no superuser, no pg_read_all_stats."""
    role = _role(conn, "h3_engine")
    conn.execute(f"GRANT USAGE ON SCHEMA pgjobs TO {role}")
    conn.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgjobs TO {role}")
    conn.execute(f"ALTER FUNCTION {CUTOFF} SECURITY DEFINER")
    conn.execute(f"ALTER FUNCTION {CUTOFF} OWNER TO {role}")
    try:
        yield role
    finally:
        _drop_role(conn, role)


@pytest.fixture
def rows(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 90)
    return t


def _late_rows_taken(conn: Conn, job_id: int) -> int:
    predicate = job(conn, job_id)["predicate"]
    return int(scalar(conn, f"SELECT count(*) FROM user_table_rows WHERE n = 4242 AND {predicate}"))  # type: ignore[str-format]


def _horizon(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT survivors ->> 'horizon' FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)))


def _writer(make_conn: MakeConn, dsn: str, conn: Conn, how: str) -> Conn:
    if how == "superuser":
        return make_conn(autocommit=False)
    role = _role(conn, "h3_writer", "LOGIN")
    conn.execute(f"GRANT INSERT, SELECT ON user_table_rows TO {role}")
    conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return make_conn(autocommit=False, user=role)


@pytest.mark.parametrize("how", ["superuser", "another_role"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_hidden_client_of_another_role_keeps_its_rows(
        conn: Conn, make_conn: MakeConn, dsn: str, engine: str, rows: Target, how: str,
        scenario: str) -> None:
    before, after = SCENARIOS[scenario]
    writer = _writer(make_conn, dsn, conn, how)
    try:
        for statement in before:
            writer.execute(statement)  # type: ignore[arg-type]
        job_id = submit_delete(conn, rows, "1")
        for statement in after:
            writer.execute(statement)  # type: ignore[arg-type]
        writer.commit()
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE n = 4242") == 1
        assert _late_rows_taken(conn, job_id) == 0
        assert _horizon(conn, job_id) == "-infinity"
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "succeeded"
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE n = 4242") == 1
    finally:
        writer.close()
        if how != "superuser":
            role = scalar(conn, "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                          (f"h3_writer_{os.getpid()}_%",))
            _drop_role(conn, role)


def test_sessions_the_engine_may_read_keep_the_horizon(
        conn: Conn, make_conn: MakeConn, engine: str, rows: Target) -> None:
    # Not every session counts as hidden: with pg_read_all_stats the engine
    # reads them all, and an open transaction is the horizon, not -infinity
    # (autovacuum workers, which have no role, never count).
    conn.execute(f"GRANT pg_read_all_stats TO {engine}")
    writer = make_conn(autocommit=False)
    writer.execute("SELECT 1")
    started = scalar(writer, "SELECT now()")
    job_id = submit_delete(conn, rows, "1")
    writer.rollback()
    horizon = scalar(conn, "SELECT (survivors ->> 'horizon')::timestamptz FROM pgjobs.jobs "
                           "WHERE id = %s", (job_id,))
    assert horizon == started


@pytest.mark.slow
def test_a_pg_cron_background_worker_of_another_role_keeps_its_rows(
        conn: Conn, make_conn: MakeConn, dsn: str, cron_dsn: str, engine: str,
        rows: Target) -> None:
    """A real background worker: pg_cron (cron.use_background_workers on in the
    test cluster) runs a job in this database as the superuser, whose
    transaction writes a row and then waits on an advisory lock the test holds;
    the delete is submitted meanwhile, and the worker commits after it."""
    cron = psycopg.connect(cron_dsn, autocommit=True)
    name = f"h3-hidden-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    holder = make_conn()
    holder.execute("SELECT pg_advisory_lock(%s)", (GATE,))
    try:
        cron.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if scalar(cron, "SELECT current_setting('cron.use_background_workers')") != "on":
            pytest.skip("pg_cron runs jobs through libpq here, not as background workers")
        cron.execute("SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s, 'postgres')",
                     (name, f"{INSERT}; SELECT pg_advisory_xact_lock({GATE})",
                      scalar(conn, "SELECT current_database()")))
        # Its row written, its transaction waiting for the lock (pg_cron fires
        # at the top of a minute).
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a"
                                      " USING (pid) WHERE l.locktype = 'advisory'"
                                      " AND l.database = (SELECT oid FROM pg_database"
                                      " WHERE datname = current_database())"
                                      " AND l.objid = %s AND NOT l.granted"
                                      " AND a.backend_type <> 'client backend'", (GATE,)),
                 150, "pg_cron's background worker to wait on the lock", interval=0.5)
        cron.execute("SELECT cron.unschedule(%s)", (name,))
        job_id = submit_delete(conn, rows, "1")
        holder.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM user_table_rows WHERE n = 4242"),
                 60, "the worker to commit its row", interval=0.2)
        assert _late_rows_taken(conn, job_id) == 0
        assert _horizon(conn, job_id) == "-infinity"
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "succeeded"
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE n = 4242") == 1
    finally:
        cron.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (name,))
        cron.close()
