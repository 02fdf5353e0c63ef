"""Roles: pgjobs_client may submit, cancel, read jobs and use the read path,
only on tables it could act on itself; it may not run the engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A role in pgjobs_client with DELETE and SELECT (not UPDATE) on `rows`."""
    role = f"pgjobs_test_client_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute("""
        CREATE TABLE rows (id bigint PRIMARY KEY, scope int NOT NULL, data jsonb,
                           created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON rows (scope, id);
        INSERT INTO rows (id, scope, data) SELECT i, i % 2, '{}' FROM generate_series(1, 20) i;
        SELECT pgjobs.register_target('rows', 'id', 'scope', 'created_at', 'data');
    """)
    conn.execute(f"GRANT SELECT, DELETE ON rows TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_client_submits_reads_and_cancels_within_its_rights(conn: Conn, client: str) -> None:
    conn.execute(f"SET ROLE {client}")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('rows', '1', '{}')")
    assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s", (job_id,)) == client
    assert scalar(conn, "SELECT pgjobs.visible_count('rows', '1')") == 0
    assert scalar(conn, "SELECT count(*) FROM pgjobs.visible('rows', '0')") == 10
    assert scalar(conn, "SELECT pgjobs.mask('rows', '0')") == "true"
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True


def test_client_cannot_submit_what_it_could_not_do_itself(conn: Conn, client: str) -> None:
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute("""SELECT pgjobs.submit_backfill('rows', '1', '{}', '{"x": 1}')""")
    assert "UPDATE" in str(exc.value)
    assert "GRANT UPDATE ON" in (exc.value.diag.message_hint or "")
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT ON rows FROM {client}")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.visible_count('rows', '1')")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.mask('rows', '1')")
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_client_cannot_cancel_another_roles_job_without_the_privilege(
        conn: Conn, client: str) -> None:
    job_id = scalar(conn, """SELECT pgjobs.submit_backfill('rows', '1', '{}', '{"x": 1}')""")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))


@pytest.mark.parametrize("sql", [
    "SELECT * FROM pgjobs.claim('{delete}', 'w')",
    "SELECT pgjobs.heartbeat(1, 'w')",
    "SELECT pgjobs.complete(1, 'w')",
    "SELECT pgjobs.fail(1, 'w', 'x')",
    "SELECT pgjobs.prune()",
    "SELECT pgjobs.schedule()",
    "SELECT pgjobs.register_target('rows', 'id', 'scope', 'created_at')",
    "CALL pgjobs.run('1 second')",
    "CALL pgjobs.run_job(1)",
    "SELECT pgjobs._insert_job('delete', 'rows', '1', '{}', '{}', '{}', 'true')",
    "SELECT pgjobs._run_page(1, 'w')",
    "SELECT pgjobs._claim_id(1, 'w')",
    "SELECT pgjobs._notify(NULL::pgjobs.jobs, 'x')",
    "SELECT pgjobs._require_scope('rows', '1')",
    "SELECT pgjobs.release(1, 'w')",
    "SELECT pgjobs.claim_export(1, 'w')",
    "SELECT * FROM pgjobs.claim_storage_deletions()",
    "SELECT pgjobs.finish_storage_deletion(1)",
    "SELECT pgjobs.export_chunk_sql(1, NULL, 1)",
    "SELECT pgjobs.export_chunk_bound(1, NULL, 1)",
    "SELECT pgjobs._export_chunk(1, NULL, 1, NULL, NULL, true)",
    "SELECT pgjobs.unregister_target('rows')",
    "SELECT pgjobs.unschedule()",
    "DELETE FROM pgjobs.jobs",
    "UPDATE pgjobs.target_registry SET options = '{}'",
    "DELETE FROM pgjobs.storage_deletions",
    "UPDATE pgjobs.jobs SET status = 'failed'",
    "INSERT INTO pgjobs.jobs (kind, target, scope) VALUES ('delete', 'rows', '1')",
])
def test_client_may_not_run_the_engine_or_write_jobs(conn: Conn, client: str, sql: str) -> None:
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(sql)


def test_security_definer_functions_pin_search_path_and_public_has_nothing(conn: Conn) -> None:
    unpinned = [r[0] for r in conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prosecdef
           AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']""")]
    assert unpinned == []
    definers = {r[0] for r in conn.execute("""
        SELECT p.proname FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prosecdef""")}
    # The client entry points are SECURITY INVOKER (their current_user is the
    # role they act for); their bodies, pgjobs._<name>_as, are the definers.
    entries = {"submit", "submit_delete", "submit_backfill", "submit_export", "cancel", "mask",
               "visible", "visible_count", "channel"}
    assert {f"_{name}_as" for name in entries} <= definers
    assert not entries & definers
    public = [r[0] for r in conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND has_function_privilege('public', p.oid, 'EXECUTE')""")]
    assert public == []


SUBMITS = {
    "DELETE": "SELECT pgjobs.submit_delete('rows', '1', '{}')",
    "UPDATE": """SELECT pgjobs.submit_backfill('rows', '1', '{}', '{"x": 1}')""",
    "SELECT": "SELECT pgjobs.submit_export('rows', '1')",
    "INSERT": "SELECT pgjobs.submit_import('rows', '1', 'file:///pgjobs-priv-src/a.csv')",
}
# What the refusal names: the table. An import needs INSERT on the scope
# column it always writes (column grants count, docs/imports.md), but a role
# with INSERT on no column at all is told so before the registration (which
# names that column) is read: test_trust_partial_privilege.py has the role
# with INSERT on another column, told the scope column.
LACKS = {privilege: (f"lacks {privilege} on public.rows", f"GRANT {privilege} ON public.rows TO")
         for privilege in SUBMITS}
LACKS["INSERT"] = ("lacks INSERT on public.rows (on any of its columns)",
                   "GRANT INSERT ON public.rows TO")


@pytest.mark.parametrize("privilege", sorted(SUBMITS))
def test_each_submit_needs_its_privilege_on_the_target(
        conn: Conn, client: str, privilege: str) -> None:
    """delete needs DELETE, backfill UPDATE, export SELECT, import INSERT:
    with every other privilege the submit raises 42501 and writes nothing."""
    others = sorted({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"} - {privilege})
    conn.execute(f"REVOKE ALL ON rows FROM {client}")
    conn.execute(f"GRANT {', '.join(others)} ON rows TO {client}")
    conn.execute("SELECT pgjobs.allow_storage('file:///pgjobs-priv-src')")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute(SUBMITS[privilege])
    assert LACKS[privilege][0] in str(exc.value)
    assert LACKS[privilege][1] in (exc.value.diag.message_hint or "")
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    conn.execute(f"GRANT {privilege} ON rows TO {client}")
    conn.execute(f"SET ROLE {client}")
    job_id = scalar(conn, SUBMITS[privilege])
    assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s", (job_id,)) == client


def test_client_may_not_touch_what_it_cannot_see(conn: Conn, client: str) -> None:
    """A table the client has no privilege on at all: every entry point says 42501."""
    conn.execute("CREATE TABLE secret (id bigint NOT NULL, scope int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now()); "
                 "CREATE INDEX ON secret (scope, id)")
    conn.execute("SELECT pgjobs.register_target('secret', 'id', 'scope', 'created_at')")
    conn.execute(f"SET ROLE {client}")
    for sql in ["SELECT pgjobs.submit_delete('secret', '1')",
                "SELECT pgjobs.submit_backfill('secret', '1', '{}', '{\"scope\": 2}')",
                "SELECT pgjobs.submit_export('secret', '1')",
                "SELECT pgjobs.mask('secret', '1')",
                "SELECT * FROM pgjobs.visible('secret', '1')",
                "SELECT pgjobs.visible_count('secret', '1')",
                "SELECT * FROM secret"]:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)
