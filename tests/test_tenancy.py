"""Tenancy: the session setting pgjobs.allowed_scopes limits what a client
may submit, cancel and read, in the functions (42501) and by forced
row-level security on pgjobs.jobs; the engine and admins still see every
job (migration 0004, pgjobs._require_scope, docs/operations.md "Tenancy")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import Target, make_rows_target, scalar, seed, who
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

CLIENT_CALLS = [
    "SELECT pgjobs.submit_delete('user_table_rows', %(scope)s, '{}')",
    """SELECT pgjobs.submit_backfill('user_table_rows', %(scope)s, '{}', '{"n": 1}')""",
    "SELECT pgjobs.submit_export('user_table_rows', %(scope)s)",
    "SELECT pgjobs.submit('custom', 'user_table_rows', %(scope)s)",
    "SELECT pgjobs.mask('user_table_rows', %(scope)s)",
    "SELECT count(*) FROM pgjobs.visible('user_table_rows', %(scope)s)",
    "SELECT pgjobs.visible_count('user_table_rows', %(scope)s)",
]


@pytest.fixture
def rows(conn: Conn) -> Target:
    target = make_rows_target(conn)
    seed(conn, target, 60)
    return target


@pytest.fixture
def client(conn: Conn, rows: Target) -> Iterator[str]:
    """A pgjobs_client with every privilege on the target."""
    role = make_role(conn, "tclient", "GRANT pgjobs_client TO {role}",
                 "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON user_table_rows TO {role}")
    yield role
    drop_role(conn, role)


@pytest.fixture
def admin(conn: Conn, rows: Target) -> Iterator[str]:
    """A pgjobs_admin that may run delete and backfill pages on the target."""
    role = make_role(conn, "tadmin", "GRANT pgjobs_admin TO {role}",
                 "GRANT SELECT, UPDATE, DELETE ON user_table_rows TO {role}")
    yield role
    drop_role(conn, role)


def _jobs_by_scope(conn: Conn) -> dict[str, int]:
    """Submitted without any restriction (superuser): one custom job per scope."""
    return {scope: scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', %s)", (scope,))
            for scope in ("1", "2", "3")}


def _all_jobs(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, status, scope FROM pgjobs.jobs ORDER BY id").fetchall()


def test_jobs_has_forced_row_level_security(conn: Conn) -> None:
    assert conn.execute("""SELECT relrowsecurity, relforcerowsecurity FROM pg_class
                            WHERE oid = 'pgjobs.jobs'::regclass""").fetchone() == (True, True)


def test_client_reads_only_its_scopes_jobs(conn: Conn, client: str) -> None:
    _jobs_by_scope(conn)
    conn.execute(f"SET ROLE {client}")
    scopes = "SELECT coalesce(array_agg(scope ORDER BY scope), '{}') FROM pgjobs.jobs"
    assert scalar(conn, scopes) == ["1", "2", "3"]  # unset: no restriction
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    assert scalar(conn, scopes) == ["1"]
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE scope = '2'") == 0
    conn.execute("SET pgjobs.allowed_scopes = ' 1 , 3 '")
    assert scalar(conn, scopes) == ["1", "3"]
    # Canonical, as in the functions (pgjobs._scope_allowed, migration 0006):
    # '01' of an integer scope is tenant 1.
    conn.execute("SET pgjobs.allowed_scopes = '01'")
    assert scalar(conn, scopes) == ["1"]
    conn.execute("SET pgjobs.allowed_scopes = 'x1'")  # not a value of the column
    assert scalar(conn, scopes) == []
    conn.execute("SET pgjobs.allowed_scopes = ''")
    assert scalar(conn, scopes) == ["1", "2", "3"]


def test_set_local_lasts_one_transaction(conn: Conn, client: str) -> None:
    _jobs_by_scope(conn)
    conn.execute(f"SET ROLE {client}")
    with conn.transaction():
        conn.execute("SET LOCAL pgjobs.allowed_scopes = '2'")
        assert scalar(conn, "SELECT array_agg(scope) FROM pgjobs.jobs") == ["2"]
    # After the transaction the variable is '' (not NULL): no restriction.
    assert scalar(conn, "SELECT current_setting('pgjobs.allowed_scopes', true)") == ""
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 3


@pytest.mark.parametrize("call", CLIENT_CALLS)
def test_client_functions_refuse_other_scopes(conn: Conn, client: str, call: str) -> None:
    before = _all_jobs(conn)
    conn.execute(f"SET ROLE {client}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    # Other tenants, in every spelling of their value (issue 9 item 4: the
    # scope is compared canonical, so '01' and ' 1' are tenant 1 itself).
    for scope in ("2", "02", " 2", "+2", "0", "-1"):
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            conn.execute(call, {"scope": scope})
        assert "pgjobs.allowed_scopes" in str(exc.value)
        assert "allowed_scopes" in (exc.value.diag.message_hint or "")
    for scope in ("1", "01", " 1", "+1"):  # its own scope works, however spelled
        conn.execute(call, {"scope": scope})
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    after = _all_jobs(conn)
    assert [j for j in after if j[2] != "1"] == [j for j in before if j[2] != "1"]


def test_client_cannot_cancel_another_scopes_job(conn: Conn, client: str) -> None:
    jobs = _jobs_by_scope(conn)
    conn.execute(f"SET ROLE {client}")
    conn.execute("SET pgjobs.allowed_scopes = '1,3'")
    # As for an unknown id (P0002): the session does not see that job
    # (policy jobs_client_read), and the error neither says it exists nor
    # names its scope.
    with pytest.raises(errors.NoDataFound) as err:
        conn.execute("SELECT pgjobs.cancel(%s)", (jobs["2"],))
    assert "'2'" not in str(err.value)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (jobs["3"],)) is True
    conn.execute("RESET ROLE")
    assert dict(conn.execute("SELECT scope, status FROM pgjobs.jobs").fetchall()) == {
        "1": "queued", "2": "queued", "3": "canceled"}


def test_restricted_client_runs_the_whole_read_path(conn: Conn, client: str,
                                                    rows: Target) -> None:
    conn.execute(f"SET ROLE {client}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    visible = scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')")
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('user_table_rows', '1',
                                                         '{"n": {"$lt": 3}}')""")
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") < visible
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") != "true"
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True


def test_engine_sees_every_job_whatever_the_setting(conn: Conn, admin: str,
                                                    rows: Target) -> None:
    """claim / heartbeat / complete / run / prune as an admin (and the same
    session as superuser) with pgjobs.allowed_scopes set to another scope."""
    jobs = _jobs_by_scope(conn)
    deletes = {scope: scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, '{}')",
                             (scope,)) for scope in ("2", "3")}
    conn.execute(f"SET ROLE {admin}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 5
    claimed = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.claim('{custom}', 'w', '30 seconds', 10)").fetchall()]
    assert sorted(claimed) == sorted(jobs.values())
    for job_id in claimed:
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 7)",
                      (job_id, who(conn, job_id, 'w'))) is True
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)",
                      (job_id, who(conn, job_id, 'w'))) is True
    conn.execute("CALL pgjobs.run('30 seconds')")
    assert dict(conn.execute("SELECT id, status FROM pgjobs.jobs WHERE kind = 'delete'")
                .fetchall()) == {deletes["2"]: "succeeded", deletes["3"]: "succeeded"}
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id IN (2, 3)"
                        " AND created_at <= now() - interval '1 minute'") == 0
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'"
                 " WHERE id = %s", (jobs["2"],))
    assert scalar(conn, "SELECT pgjobs.prune()")["deleted"] == 1
    conn.execute("RESET ROLE")
    # Superuser with the setting: bypasses row security entirely.
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 4
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'"
                 " WHERE status = 'succeeded'")
    assert scalar(conn, "SELECT pgjobs.prune()")["deleted"] == 4


def test_a_non_superuser_owner_keeps_working_under_force(conn: Conn, client: str,
                                                         rows: Target) -> None:
    """FORCE applies the policies to the table owner: the owner policy keeps
    the SECURITY DEFINER functions working when pgjobs is owned by an
    ordinary role, and without it they would fail."""
    owner = make_role(conn, "towner", "GRANT USAGE, CREATE ON SCHEMA pgjobs TO {role}",
                  "GRANT EXECUTE ON ALL ROUTINES IN SCHEMA pgjobs TO {role}",
                  "GRANT SELECT ON ALL TABLES IN SCHEMA pgjobs TO {role}",
                  # The rows a submit locks, as pgjobs' owner may (an advisory
                  # lock, which any role may take, before round 31):
                  # the scope's gate, the registration, and (since 0062) the
                  # client's ceilings' row, which every client submit locks.
                  "GRANT INSERT, UPDATE ON pgjobs.scope_locks, pgjobs.target_registry,"
                  " pgjobs.client_room_locks TO {role}",
                  "GRANT SELECT, DELETE ON user_table_rows TO {role}")
    try:
        conn.execute(f"ALTER TABLE pgjobs.jobs OWNER TO {owner}")
        # The SECURITY DEFINER bodies of the client entry points.
        for fn in ("_submit_delete_as(name, regclass, text, jsonb, text[], jsonb)",
                   "_cancel_as(name, bigint)", "_visible_count_as(name, regclass, text, jsonb)"):
            conn.execute(f"ALTER FUNCTION pgjobs.{fn} OWNER TO {owner}")
        other = scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', '2')")
        conn.execute(f"SET ROLE {owner}")
        conn.execute("SET pgjobs.allowed_scopes = '1'")
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1  # the owner sees all
        conn.execute(f"SET ROLE {client}")
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
        assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == 0
        assert scalar(conn, "SELECT array_agg(id) FROM pgjobs.jobs") == [job_id]
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
        with pytest.raises(errors.NoDataFound):  # another scope's: as no job at all
            conn.execute("SELECT pgjobs.cancel(%s)", (other,))
        conn.execute("RESET ROLE")
        conn.execute("DROP POLICY jobs_owner ON pgjobs.jobs")
        conn.execute(f"SET ROLE {client}")
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}')")
    finally:
        conn.execute("RESET ROLE")
        conn.execute("ALTER TABLE pgjobs.jobs OWNER TO CURRENT_USER")
        drop_role(conn, owner)


@pytest.mark.parametrize("setting", [None, "", "  ", "1", "1,2", " 2 ,3", "tenant-1", "1,,2",
                                     "a b", "x'y", ",", "é,中"])
def test_functions_and_policy_agree(conn: Conn, client: str, setting: str | None) -> None:
    # Custom jobs on a table that is not registered: their scopes are text as
    # given, compared as trimmed text by the functions and the policy alike.
    conn.execute("CREATE TABLE custom_items (id bigint)")
    # A client sees the jobs of tables it may read (migration 0006).
    conn.execute(f"GRANT SELECT ON custom_items TO {client}")
    scopes = ["1", "2", "3", "", "tenant-1", "a b", "x'y", "é", "中", " 1"]
    ids = {s: scalar(conn, "SELECT pgjobs.submit('custom', 'custom_items', %s)", (s,))
           for s in scopes}
    conn.execute(f"SET ROLE {client}")
    if setting is not None:
        conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (setting,))
    seen = {r[0] for r in conn.execute("SELECT scope FROM pgjobs.jobs").fetchall()}
    conn.execute("RESET ROLE")  # the setting stays; _require_scope is private
    for scope in scopes:
        try:
            conn.execute("SELECT pgjobs._require_scope('custom_items', %s)", (scope,))
            allowed = True
        except errors.InsufficientPrivilege:
            allowed = False
        assert (scope in seen) == allowed, (setting, scope)
    assert len(ids) == len(scopes)
