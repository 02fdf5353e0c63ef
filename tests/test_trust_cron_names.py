"""pg_cron job names an attacker may pre-create.

pg_cron lets every role that may use its schema schedule jobs of its own
(`cron.schedule` is executable by PUBLIC; operators grant `USAGE ON SCHEMA
cron` to application roles so they can schedule their own maintenance, as
managed services' guides show; a job runs as the role that scheduled it),
and a job's name is unique only per role: such a `pgjobs_client` may own
cron jobs named `pgjobs.run`, `pgjobs.run.2` or `pgjobs.prune`. Those are not pgjobs' jobs:
they run as that role, which may not run the engine. A reader that sees every
role's jobs (a superuser, or a role pg_cron's row security does not confine:
how operators run `pgjobs doctor`, and a superuser-owned engine's SECURITY
DEFINER bodies) must not take them for pgjobs' own:

- doctor's `pg_cron.scheduled` must not say the engine is scheduled when only
  a client's look-alikes are, nor report a client's inactive look-alike over
  the real, active job;
- doctor's `pg_cron.history` must not count a client's run history;
- `pgjobs.prune` must not delete another role's run history, by job name or
  by command;
- `pgjobs._engine_wait` must not tell clients a look-alike's schedule.

Every reader goes through one rule (pgjobs._cron_jobs over
pgjobs._engine_runner: the job's role may call pgjobs.run); each is
tried here, and the wait note with a client session named `pgjobs run` too
(the other session readers: tests/test_trust_engine_sessions.py).

The other side of the rule: pgjobs' jobs scheduled by a role that runs the
engine without being a pgjobs_admin member (pgjobs' owner, or a role with
its rights: the runner of "Which role should own and run pgjobs" connects
with `role=pgjobs_owner`, so pgjobs.schedule() makes the jobs as that role)
are pgjobs' own to every reader: doctor must not call pgjobs unscheduled,
nor prune leave their history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

LOOK_ALIKES = ("pgjobs.run", "pgjobs.run.2", "pgjobs.prune")


@pytest.fixture
def cron(cron_dsn: str) -> Iterator[Conn]:
    """pg_cron's database as its superuser (who sees every role's cron jobs)."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        # schedule() creates the extension where it is missing; then none of
        # pgjobs' jobs is left.
        conn.execute("SELECT pgjobs.schedule()")
        conn.execute("SELECT pgjobs.unschedule()")
        yield conn
    finally:
        conn.execute("SELECT pgjobs.unschedule()")
        conn.close()


def _old_runs(cron: Conn, role: str) -> None:
    """10001 runs of each of the role's cron jobs, three days old, in pg_cron's history."""
    cron.execute(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command,"
        " status, return_message, start_time, end_time)"
        " SELECT j.jobid, 0, j.database, j.username, j.command, 'succeeded', 'test',"
        "        now() - interval '3 days', now() - interval '3 days'"
        "   FROM cron.job j, generate_series(1, 10001)"
        "  WHERE j.username = %s", (role,))


@pytest.fixture
def mallory(cron: Conn) -> Iterator[str]:
    """A client role owning cron jobs under pgjobs' names (their commands
    pgjobs' own), active, each with 10001 old runs in pg_cron's history."""
    role = make_role(cron, "cron_mallory", "GRANT pgjobs_client TO {role}",
                     "GRANT USAGE ON SCHEMA cron TO {role}")
    try:
        with cron.transaction():
            cron.execute(f"SET LOCAL ROLE {role}")
            for name in LOOK_ALIKES:
                command = ("SELECT pgjobs.prune('1 hour')" if name == "pgjobs.prune"
                           else "CALL pgjobs.run('50 seconds')")
                # A schedule that never fires: only the rows matter here.
                cron.execute("SELECT cron.schedule(%s, '0 0 31 2 *', %s)", (name, command))
        _old_runs(cron, role)
        yield role
    finally:
        cron.execute("RESET ROLE")
        cron.execute("DELETE FROM cron.job_run_details WHERE username = %s", (role,))
        cron.execute("DELETE FROM cron.job WHERE username = %s", (role,))
        drop_role(cron, role)


def findings(conn: Conn, check: str) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT * FROM pgjobs.doctor() WHERE check_name = %s", (check,))
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_a_clients_look_alikes_do_not_make_pgjobs_scheduled(cron: Conn, mallory: str) -> None:
    assert scalar(cron, "SELECT count(*) FROM cron.job WHERE username = %s",
                  (mallory,)) == len(LOOK_ALIKES)
    [f] = findings(cron, "pg_cron.scheduled")
    assert f["status"] == "warn", f
    assert f["fix"] == "SELECT pgjobs.schedule();", f
    assert "pgjobs.run missing, pgjobs.prune missing" in f["detail"], f


def test_a_clients_inactive_look_alikes_do_not_hide_the_real_jobs(cron: Conn,
                                                                   mallory: str) -> None:
    cron.execute("SELECT pgjobs.schedule()")
    cron.execute("UPDATE cron.job SET active = false WHERE username = %s", (mallory,))
    [f] = findings(cron, "pg_cron.scheduled")
    assert (f["status"], f["fix"]) == ("ok", None), f
    # and the client's schedule is not reported as pgjobs'
    assert "0 0 31 2 *" not in f["detail"], f


def test_a_clients_run_history_is_not_pgjobs(cron: Conn, mallory: str) -> None:
    cron.execute("SELECT pgjobs.schedule()")
    [f] = findings(cron, "pg_cron.history")
    assert f["status"] == "ok", f
    assert "holds 0 rows" in f["detail"], f


def test_prune_leaves_a_clients_run_history(cron: Conn, mallory: str) -> None:
    before = scalar(cron, "SELECT count(*) FROM cron.job_run_details WHERE username = %s",
                    (mallory,))
    assert before == 10001 * len(LOOK_ALIKES)
    cron.execute("SELECT pgjobs.prune('1 hour')")
    assert scalar(cron, "SELECT count(*) FROM cron.job_run_details WHERE username = %s",
                  (mallory,)) == before


def test_engine_wait_ignores_a_clients_minute_look_alike(cron: Conn, mallory: str) -> None:
    """A client's active `pgjobs.run` on a minute schedule, none of pgjobs':
    the engine's wait note (read as pgjobs' owner, here a superuser) is about
    pgjobs' own runner only, so it says nothing."""
    cron.execute("UPDATE cron.job SET schedule = '* * * * *' WHERE username = %s", (mallory,))
    with cron.transaction(force_rollback=True):
        cron.execute("CREATE TABLE cron_wait_rows (id bigint PRIMARY KEY, table_id int NOT NULL,"
                     " data jsonb NOT NULL DEFAULT '{}',"
                     " created_at timestamptz NOT NULL DEFAULT now())")
        cron.execute("CREATE INDEX ON cron_wait_rows (table_id, id)")
        cron.execute("SELECT pgjobs.register_target('cron_wait_rows', 'id', 'table_id',"
                     " 'created_at', 'data')")
        cron.execute("SELECT pgjobs.submit_delete('cron_wait_rows', '1', '{}')")
        # A due delete waits: the note is about pgjobs' own runner only.
        assert scalar(cron, "SELECT pgjobs._engine_wait()") is None
        # The control: pgjobs' own runner on a minute tick gives the note, so
        # the call above did read pg_cron's jobs.
        cron.execute("SELECT cron.schedule('pgjobs.run', '* * * * *', 'CALL pgjobs.run()')")
        assert scalar(cron, "SELECT pgjobs._engine_wait()") == (
            "waiting for the engine: next tick within 60 s")


def test_engine_wait_ignores_a_clients_pgjobs_run_session(cron: Conn, mallory: str) -> None:
    """pgjobs' own runner on a minute tick and a client connected as `pgjobs
    run` (application_name is any role's to set): the note is still said; an
    engine role's session of that name silences it (the control)."""
    note = "waiting for the engine: next tick within 60 s"
    cron.execute(f"ALTER ROLE {mallory} LOGIN")
    params = psycopg.conninfo.conninfo_to_dict(cron.info.dsn)
    params.update(user=mallory, application_name="pgjobs run")
    with cron.transaction(force_rollback=True):
        cron.execute("CREATE TABLE cron_wait_rows (id bigint PRIMARY KEY, table_id int NOT NULL,"
                     " data jsonb NOT NULL DEFAULT '{}',"
                     " created_at timestamptz NOT NULL DEFAULT now())")
        cron.execute("CREATE INDEX ON cron_wait_rows (table_id, id)")
        cron.execute("SELECT pgjobs.register_target('cron_wait_rows', 'id', 'table_id',"
                     " 'created_at', 'data')")
        cron.execute("SELECT pgjobs.submit_delete('cron_wait_rows', '1', '{}')")
        cron.execute("SELECT cron.schedule('pgjobs.run', '* * * * *', 'CALL pgjobs.run()')")
        # pg_stat_activity is read once a transaction: clear it before each look.
        wait = "SELECT pgjobs._engine_wait() FROM pg_catalog.pg_stat_clear_snapshot()"
        with psycopg.connect(psycopg.conninfo.make_conninfo(**params)):
            assert scalar(cron, wait) == note
        with psycopg.connect(cron.info.dsn, application_name="pgjobs run"):
            assert scalar(cron, wait) is None


@pytest.fixture
def owner_member(cron: Conn) -> Iterator[str]:
    """A role with the rights of schema pgjobs' owner (a member of it), not of
    pgjobs_admin, that has scheduled pgjobs (pgjobs.schedule() as it), with
    10001 old runs of its jobs in pg_cron's history."""
    owner = scalar(cron, "SELECT nspowner::regrole::text FROM pg_namespace"
                         " WHERE nspname = 'pgjobs'")
    role = make_role(cron, "cron_owner_member", f"GRANT {owner} TO {{role}}")
    try:
        assert not scalar(cron, "SELECT pg_has_role(%s, 'pgjobs_admin', 'MEMBER')", (role,))
        with cron.transaction():
            cron.execute(f"SET LOCAL ROLE {role}")
            cron.execute("SELECT pgjobs.schedule()")
        _old_runs(cron, role)
        yield role
    finally:
        cron.execute("RESET ROLE")
        cron.execute("DELETE FROM cron.job_run_details WHERE username = %s", (role,))
        cron.execute("DELETE FROM cron.job WHERE username = %s", (role,))
        drop_role(cron, role)


def test_pgjobs_scheduled_by_a_role_of_the_owner_s_rights_is_scheduled(
        cron: Conn, owner_member: str) -> None:
    assert scalar(cron, "SELECT count(*) FROM cron.job WHERE username = %s",
                  (owner_member,)) == 2
    [f] = findings(cron, "pg_cron.scheduled")
    assert (f["status"], f["fix"]) == ("ok", None), f
    [h] = findings(cron, "pg_cron.history")
    assert "holds 0 rows" not in h["detail"], h


def test_prune_trims_the_history_of_pgjobs_scheduled_by_the_owner_s_rights(
        cron: Conn, owner_member: str) -> None:
    cron.execute("SELECT pgjobs.prune('1 hour')")
    assert scalar(cron, "SELECT count(*) FROM cron.job_run_details WHERE username = %s",
                  (owner_member,)) == 0
