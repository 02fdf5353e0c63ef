"""Trust (issue 9, item 9): code that belongs to a target (its owner's
triggers, domain checks, defaults, index expressions, the code of anyone
holding TRIGGER on it) never runs with the rights pgjobs runs with unless
its author already has them. pgjobs refuses such a target with 42501 on
every path (pgjobs._target -> pgjobs._require_trusted), so the owner's
code, which records who runs it, never observes a superuser.

The engine here is the test's superuser (it owns schema pgjobs and runs the
jobs), the worst case: only a superuser's code is trusted."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

PID = os.getpid()
OWNER = f"pgjobs_trust_owner_{PID}"
THIRD = f"pgjobs_trust_third_{PID}"

SETUP = """
CREATE SCHEMA tenant;
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
CREATE TABLE tenant.log (who name, su boolean, what text);
GRANT INSERT ON tenant.log TO PUBLIC;
-- Records who runs it and whether that role is a superuser.
CREATE FUNCTION tenant.spy(what text) RETURNS boolean LANGUAGE sql AS $$
    INSERT INTO tenant.log
    SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), what;
    SELECT true $$;
CREATE FUNCTION tenant.spy_check(v text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT tenant.spy('check') $$;
CREATE FUNCTION tenant.spy_check2(v text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT tenant.spy('check2') $$;
CREATE DOMAIN tenant.code AS text CHECK (tenant.spy_check(VALUE));
CREATE DOMAIN tenant.code2 AS text CHECK (tenant.spy_check2(VALUE));
CREATE FUNCTION tenant.spy_default() RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN tenant.spy('default') THEN 'd' END $$;
CREATE FUNCTION tenant.spy_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenant.spy('trigger ' || TG_OP);
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE FUNCTION tenant.ident(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE TABLE tenant.rows (
    id bigint NOT NULL, scope int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    code tenant.code, note text DEFAULT tenant.spy_default(), data jsonb);
CREATE INDEX ON tenant.rows (scope, id);
CREATE TRIGGER spy BEFORE UPDATE OR DELETE ON tenant.rows
    FOR EACH ROW EXECUTE FUNCTION tenant.spy_trigger();
INSERT INTO tenant.rows (id, scope, created_at, code, data)
SELECT i, 1 + i % 2, now() - interval '1 hour', CASE WHEN i % 4 < 2 THEN 'a' ELSE 'b' END,
       '{"k": 1}'
  FROM generate_series(1, 40) i;
SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at', 'data');
"""

# Each turns the (trusted, superuser-owned) target untrusted in one way.
UNTRUST = {
    "table_owner": "ALTER TABLE tenant.rows OWNER TO {owner}",
    "domain_owner": "ALTER DOMAIN tenant.code OWNER TO {owner}",
    "domain_check_function": "ALTER FUNCTION tenant.spy_check(text) OWNER TO {owner}",
    "array_of_domain": "ALTER TABLE tenant.rows ADD COLUMN codes tenant.code2[];"
                       " ALTER FUNCTION tenant.spy_check2(text) OWNER TO {owner}",
    "trigger_function": "ALTER FUNCTION tenant.spy_trigger() OWNER TO {owner}",
    "default_function": "ALTER FUNCTION tenant.spy_default() OWNER TO {owner}",
    "trigger_grant": "GRANT TRIGGER ON tenant.rows TO {third}",
    "trigger_grant_public": "GRANT TRIGGER ON tenant.rows TO PUBLIC",
    "index_expression": "CREATE INDEX ON tenant.rows (tenant.ident(id));"
                        " ALTER FUNCTION tenant.ident(bigint) OWNER TO {owner}",
    "check_constraint": "ALTER TABLE tenant.rows ADD CHECK (tenant.spy_check2(note));"
                        " ALTER FUNCTION tenant.spy_check2(text) OWNER TO {owner}",
    "policy_function": "CREATE POLICY p ON tenant.rows USING (tenant.spy_check2(note));"
                       " ALTER FUNCTION tenant.spy_check2(text) OWNER TO {owner}",
}

# Every client path, called by the superuser (as the SECURITY DEFINER
# functions, owned by a superuser, would run them for any client).
PATHS = {
    "submit_delete": """SELECT pgjobs.submit_delete('tenant.rows', '1', '{"code": "a"}')""",
    "submit_backfill": """SELECT pgjobs.submit_backfill('tenant.rows', '1', '{"code": "a"}',"""
                       """ '{"note": "x"}')""",
    "submit_export": """SELECT pgjobs.submit_export('tenant.rows', '1', '{"code": "a"}')""",
    "visible": """SELECT count(*) FROM pgjobs.visible('tenant.rows', '1', '{"code": "a"}')""",
    "visible_count": """SELECT pgjobs.visible_count('tenant.rows', '1', '{"code": "a"}')""",
    "mask": "SELECT pgjobs.mask('tenant.rows', '1')",
    "submit_custom": "SELECT pgjobs.submit('custom', 'tenant.rows', '1')",
    "compile_filter": """SELECT pgjobs.compile_filter('tenant.rows', '{"code": "a"}')""",
}


def _drop_roles(conn: Conn) -> None:
    for role in (OWNER, THIRD):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, int]]:
    """The target (trusted at first), and one job of each kind queued on it."""
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    conn.execute(f"CREATE ROLE {THIRD} NOLOGIN")
    conn.execute(SETUP)
    jobs = {
        "delete": scalar(conn, PATHS["submit_delete"]),
        "backfill": scalar(conn, """SELECT pgjobs.submit_backfill('tenant.rows', '2',"""
                                  """ '{"code": "a"}', '{"note": "x"}')"""),
        "export": scalar(conn, PATHS["submit_export"]),
    }
    conn.execute("TRUNCATE tenant.log")
    yield jobs
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def _superuser_runs(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT who, what FROM tenant.log WHERE su").fetchall()


def test_the_spy_sees_a_superuser_when_the_code_is_a_superusers(
        conn: Conn, world: dict[str, int]) -> None:
    """Control: while every piece of the target's code is a superuser's,
    every path works, and the spy records the superuser running it (so the
    refusals below are what keeps it from running)."""
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    for sql in PATHS.values():
        conn.execute(sql)
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (world["delete"],)) == "succeeded"
    whats = {r[1] for r in _superuser_runs(conn)}
    assert {"check", "trigger DELETE"} <= whats


@pytest.mark.parametrize("how", sorted(UNTRUST))
def test_untrusted_target_is_refused_on_every_path(
        conn: Conn, world: dict[str, int], how: str) -> None:
    for statement in UNTRUST[how].split(";"):
        conn.execute(statement.format(owner=OWNER, third=THIRD))
    conn.execute("TRUNCATE tenant.log")
    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.rows')").fetchall()
    assert untrusted, how
    assert {r[0] for r in untrusted} <= {OWNER, THIRD, "PUBLIC"}

    for name, sql in PATHS.items():
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            conn.execute(sql)
        assert "refuses target tenant.rows" in str(exc.value), name
        assert "docs/operations.md" in (exc.value.diag.message_hint or "")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at',"
                     " 'data')")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM pgjobs.export_chunk_sql(%s, NULL, 100)", (world["export"],))
    with pytest.raises(errors.InsufficientPrivilege):  # the worker's walk ahead of a chunk
        conn.execute("SELECT pgjobs.export_chunk_bound(%s, NULL, 100)", (world["export"],))

    # The runner: the jobs queued while the target was trusted fail for good,
    # touching nothing.
    before = scalar(conn, "SELECT count(*) FROM tenant.rows")
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    conn.execute("CALL pgjobs.run('5 seconds')")
    for kind in ("delete", "backfill"):
        status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                     (world[kind],)).fetchone() or (None, None)
        assert status == "failed", (kind, status, error)
        assert "refuses target" in error
    assert scalar(conn, "SELECT count(*) FROM tenant.rows") == before
    assert scalar(conn, "SELECT count(*) FROM tenant.rows WHERE note = 'x'") == 0

    assert _superuser_runs(conn) == []
    doctor = conn.execute("SELECT status, detail FROM pgjobs.doctor('tenant.rows')"
                          " WHERE check_name = 'target.trusted'").fetchall()
    assert doctor and doctor[0][0] == "fail"


def test_partition_owned_by_another_role_is_refused(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    try:
        conn.execute("""
            CREATE TABLE parts (id bigint NOT NULL, scope int NOT NULL,
                                created_at timestamptz NOT NULL DEFAULT now())
                PARTITION BY LIST (scope);
            CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);
            CREATE TABLE parts_2 PARTITION OF parts FOR VALUES IN (2);
            CREATE INDEX ON parts (scope, id);
            SELECT pgjobs.register_target('parts', 'id', 'scope', 'created_at');
        """)
        assert scalar(conn, "SELECT pgjobs.visible_count('parts', '1')") == 0
        changed_at = time.monotonic()
        conn.execute(f"ALTER TABLE parts_2 OWNER TO {OWNER}")
        # At once in a session without a read verdict; in this one (its read
        # above keeps a verdict for 1 s: pgjobs._target_recent) once the
        # window has passed. Submits always check in full.
        with make_conn() as other, \
                pytest.raises(errors.InsufficientPrivilege, match="owns table public.parts_2"):
            other.execute("SELECT pgjobs.visible_count('parts', '1')")
        with pytest.raises(errors.InsufficientPrivilege, match="owns table public.parts_2"):
            conn.execute("SELECT pgjobs.submit_delete('parts', '1')")
        time.sleep(max(0.0, 1.05 - (time.monotonic() - changed_at)))
        with pytest.raises(errors.InsufficientPrivilege, match="owns table public.parts_2"):
            conn.execute("SELECT pgjobs.visible_count('parts', '1')")
    finally:
        _drop_roles(conn)


def test_owner_with_the_engines_rights_is_trusted(conn: Conn, world: dict[str, int]) -> None:
    """A non-superuser owner that is a member of the role pgjobs runs as is
    trusted: its code gains nothing by running as that role."""
    conn.execute(f"ALTER TABLE tenant.rows OWNER TO {OWNER}")
    conn.execute(f"ALTER FUNCTION tenant.spy_trigger() OWNER TO {OWNER}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(PATHS["visible_count"])
    conn.execute(f"GRANT {scalar(conn, 'SELECT current_user')} TO {OWNER}")
    for sql in PATHS.values():
        conn.execute(sql)
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (world["delete"],)) == "succeeded"


def test_runner_acting_as_the_owner_runs_the_owners_target(
        conn: Conn, world: dict[str, int]) -> None:
    """pgjobs run by (a role with no more rights than) the table's owner: the
    runner's role is the one trust is judged against, and the owner's code
    runs as the owner, never as a superuser."""
    conn.execute(f"ALTER TABLE tenant.rows OWNER TO {OWNER}")
    for fn in ("spy_trigger()", "spy_check(text)", "spy_default()"):
        conn.execute(f"ALTER FUNCTION tenant.{fn} OWNER TO {OWNER}")
    conn.execute(f"GRANT pgjobs_admin TO {OWNER}")
    conn.execute(f"SET ROLE {OWNER}")
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (world["delete"],)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM tenant.log WHERE who = %s", (OWNER,)) > 0
    assert _superuser_runs(conn) == []


def test_doctor_flags_a_superuser_owned_engine(conn: Conn) -> None:
    rows = conn.execute("SELECT status, detail FROM pgjobs.doctor()"
                        " WHERE check_name = 'engine.owner'").fetchall()
    assert rows and rows[0][0] == "warn"
    assert "superuser" in rows[0][1]


def test_untrusted_roles_reports_json_friendly_reasons(conn: Conn, world: dict[str, int]) -> None:
    conn.execute(f"GRANT TRIGGER ON tenant.rows TO {THIRD}")
    reasons = dict(conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')")
                   .fetchall())
    assert reasons == {THIRD: "holds TRIGGER on tenant.rows"}
    json.dumps(reasons)


def test_inheritance_child_owned_by_another_role_is_refused(conn: Conn) -> None:
    """A DELETE on a parent reaches its inheritance children (and fires their
    triggers) as well as its partitions."""
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    try:
        conn.execute("""
            CREATE TABLE base (id bigint NOT NULL, scope int NOT NULL,
                               created_at timestamptz NOT NULL DEFAULT now());
            CREATE INDEX ON base (scope, id);
            CREATE TABLE child (extra int) INHERITS (base);
            SELECT pgjobs.register_target('base', 'id', 'scope', 'created_at');
        """)
        conn.execute(f"ALTER TABLE child OWNER TO {OWNER}")
        with pytest.raises(errors.InsufficientPrivilege, match="owns table public.child"):
            conn.execute("SELECT pgjobs.submit_delete('base', '1')")
    finally:
        _drop_roles(conn)
