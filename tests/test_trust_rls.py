"""Row-level security on a target (issue 9, item 10): pgjobs reads and
writes targets as its own role, so a caller that a policy on the target
would confine is refused with 42501 by every client function
(pgjobs._require), unless an administrator registered the target with
{"ignore_row_security": true}. Superusers, BYPASSRLS roles and the owner
(without FORCE) are not confined, and pass."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]
PID = os.getpid()

CALLS = {
    "visible": "SELECT count(*) FROM pgjobs.visible('user_table_rows', %(scope)s)",
    "visible_count": "SELECT pgjobs.visible_count('user_table_rows', %(scope)s)",
    "mask": "SELECT pgjobs.mask('user_table_rows', %(scope)s)",
    "channel": "SELECT pgjobs.channel('user_table_rows', %(scope)s)",
    "submit_delete": "SELECT pgjobs.submit_delete('user_table_rows', %(scope)s)",
    "submit_export": "SELECT pgjobs.submit_export('user_table_rows', %(scope)s)",
    "submit_backfill": """SELECT pgjobs.submit_backfill('user_table_rows', %(scope)s, '{}',"""
                       """ '{"n": 7}')""",
    "submit_custom": "SELECT pgjobs.submit('custom', 'user_table_rows', %(scope)s)",
    "preview": "SELECT pgjobs.preview('user_table_rows', %(scope)s)",
}


def _role(conn: Conn, name: str, attrs: str = "") -> str:
    role = f"pgjobs_rls_{name}_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN {attrs} IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    return role


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    target = make_rows_target(conn)
    seed(conn, target, 60)
    made = {"tenant": _role(conn, "tenant"), "bypass": _role(conn, "bypass", "BYPASSRLS")}
    # Tenant 1 is confined by a policy to scope 1.
    conn.execute("ALTER TABLE user_table_rows ENABLE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY own ON user_table_rows TO {made['tenant']}, {made['bypass']}"
                 " USING (table_id = 1)")
    yield made
    conn.execute("RESET ROLE")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_policy_confines_direct_reads(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['tenant']}")
    assert scalar(conn, "SELECT count(DISTINCT table_id) FROM user_table_rows") == 1


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("scope", ["1", "2"])
def test_confined_caller_is_refused_everywhere(conn: Conn, roles: dict[str, str], call: str,
                                               scope: str) -> None:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    conn.execute(f"SET ROLE {roles['tenant']}")
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security") as exc:
        conn.execute(CALLS[call], {"scope": scope})
    assert "ignore_row_security" in (exc.value.diag.message_hint or "")
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before


def test_bypassrls_and_superuser_pass(conn: Conn, roles: dict[str, str]) -> None:
    """Not confined, they pass every call on a scope the policy hides from the
    tenant, and see all of it: reads count every row of scope 2, and each
    submit makes a job of its own."""
    in_scope = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2")
    assert in_scope > 0
    submits = [name for name in CALLS if name.startswith("submit")]
    for role in (roles["bypass"], None):
        conn.execute(f"SET ROLE {role}" if role else "RESET ROLE")
        conn.execute("SELECT pgjobs.cancel(id) FROM pgjobs.jobs WHERE status = 'queued'")
        assert scalar(conn, CALLS["visible"], {"scope": "2"}) == in_scope, role
        assert scalar(conn, CALLS["visible_count"], {"scope": "2"}) == in_scope, role
        before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
        for name, sql in CALLS.items():
            result = scalar(conn, sql, {"scope": "2"})
            assert result is not None, (role, name)
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before + len(submits), role
    conn.execute("RESET ROLE")


def test_administrator_opt_out(conn: Conn, roles: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                     """ 'created_at', 'data', '{"ignore_row_security": "yes"}')""")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 """ 'created_at', 'data', '{"ignore_row_security": true}')""")
    conn.execute(f"SET ROLE {roles['tenant']}")
    before = scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '2')")
    for sql in CALLS.values():
        conn.execute(sql, {"scope": "2"})
    # The submitted delete masks scope 2's rows (all but those created later).
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '2')") < before
    conn.execute("RESET ROLE")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 " 'created_at', 'data')")
    conn.execute(f"SET ROLE {roles['tenant']}")
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        conn.execute(CALLS["visible_count"], {"scope": "2"})


def test_owner_passes_unless_forced(conn: Conn, roles: dict[str, str]) -> None:
    """The owner (a member of the engine's role, so trusted: item 9) is not
    subject to its table's policies, unless FORCE ROW LEVEL SECURITY."""
    owner = f"pgjobs_rls_owner_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {owner}")
    conn.execute(f"CREATE ROLE {owner} NOLOGIN IN ROLE pgjobs_client")
    try:
        conn.execute(f"GRANT {scalar(conn, 'SELECT current_user')} TO {owner}")
        conn.execute(f"ALTER TABLE user_table_rows OWNER TO {owner}")
        conn.execute(f"SET ROLE {owner}")
        assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '2')") > 0
        conn.execute("RESET ROLE")
        conn.execute("ALTER TABLE user_table_rows FORCE ROW LEVEL SECURITY")
        conn.execute(f"SET ROLE {owner}")
        for call in ("visible_count", "submit_delete", "mask"):
            with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(CALLS[call], {"scope": "2"})
    finally:
        conn.execute("RESET ROLE")
        conn.execute("ALTER TABLE user_table_rows OWNER TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {owner}")
        conn.execute(f"DROP ROLE {owner}")


def test_rls_disabled_again_lets_the_tenant_back(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute("ALTER TABLE user_table_rows DISABLE ROW LEVEL SECURITY")
    conn.execute(f"SET ROLE {roles['tenant']}")
    assert scalar(conn, CALLS["visible_count"], {"scope": "2"}) > 0


def test_engine_confined_by_a_policy_is_refused(conn: Conn, roles: dict[str, str]) -> None:
    """pgjobs' own role subject to the target's policies would delete part of
    a scope and report success: refused (42501) on every path, the runner's
    pages too."""
    engine = f"pgjobs_rls_engine_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {engine}")
    conn.execute(f"CREATE ROLE {engine} NOLOGIN IN ROLE pgjobs_admin")
    try:
        conn.execute(f"GRANT SELECT, UPDATE, DELETE ON user_table_rows TO {engine}")
        conn.execute(f"CREATE POLICY engine ON user_table_rows TO {engine} USING (id % 2 = 0)")
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')")
        conn.execute(f"SET ROLE {engine}")
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT pgjobs.compile_filter('user_table_rows', '{}')")
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        conn.execute("RESET ROLE")
        status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                     (job_id,)).fetchone() or (None, None)
        assert status == "failed" and "row-level security" in error
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2") > 0
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {engine}")
        conn.execute(f"DROP ROLE {engine}")


def test_confined_caller_reads_no_other_roles_jobs_nor_the_target(
        conn: Conn, roles: dict[str, str]) -> None:
    """The job rows name rows of the target (filters, exclusions, predicates):
    a role that a policy confines sees none of another role's jobs there, in
    any scope, nor the target in pgjobs.targets (one rule with _require:
    pgjobs._row_security_confines)."""
    secret = scalar(conn, """SELECT pgjobs.submit_delete('user_table_rows', '2',
                                    '{"label": "ssn 123-45-6789"}')""")
    mine = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    conn.execute(f"SET ROLE {roles['tenant']}")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id IN (%s, %s)",
                  (secret, mine)) == 0
    assert scalar(conn, "SELECT count(*) FROM pgjobs.targets") == 0
    conn.execute("RESET ROLE")
    # BYPASSRLS is not confined: it reads them, as it reads the table.
    conn.execute(f"SET ROLE {roles['bypass']}")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id IN (%s, %s)",
                  (secret, mine)) == 2
    assert scalar(conn, "SELECT count(*) FROM pgjobs.targets") == 1
    conn.execute("RESET ROLE")
    # Opted out by an administrator: the confined role reads them again.
    conn.execute("""SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',
                           'created_at', 'data', '{"ignore_row_security": true}')""")
    conn.execute(f"SET ROLE {roles['tenant']}")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id IN (%s, %s)",
                  (secret, mine)) == 2
