"""Trust, the tables a target's statements reach (h67): a client's code run
with the rights of pgjobs' owner through a table the client owns.

pgjobs refuses a target whose code (triggers, rules, defaults, index
expressions, policies, column types) belongs to a role without the rights of
the role pgjobs runs as (pgjobs._untrusted_roles). What a statement on the
target writes besides was not followed:

- a rule on the target is covered as code, but not the tables its action
  names: a superuser's ``ON DELETE ... DO ALSO INSERT INTO tenant.audit``
  made every delete page also write ``tenant.audit``, whose owner (a client)
  decides what runs there; its triggers (and a view's functions) run as the
  current user;
- a client's table whose foreign key references the target ON DELETE
  CASCADE / SET NULL / SET DEFAULT: PostgreSQL runs the action as the
  client, but fires the AFTER triggers it queued later, as the role that
  deleted the target's rows.

Found, on the old code: in every variant below the client's trigger ran as
the superuser running the job and created a role. Now every table or view a
rule names (through views, at any depth) and every table referencing the
target with a foreign key action counts as the target's, and its owner, its
triggers and types must be trusted too.

The engine is the test's superuser (it owns schema pgjobs and runs the
jobs), the embedded default and the worst case; the last test runs it as an
ordinary role that owns the target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

PID = os.getpid()
CLIENT = f"pgjobs_reach_client_{PID}"
GRABBED = f"pgjobs_reach_grabbed_{PID}"
ENGINE = f"pgjobs_reach_engine_{PID}"

SETUP = """
CREATE SCHEMA tenant;
GRANT USAGE, CREATE ON SCHEMA tenant TO PUBLIC;
CREATE TABLE tenant.log (who name, su boolean, what text);
GRANT INSERT ON tenant.log TO PUBLIC;
CREATE TABLE tenant.rows (
    id bigint NOT NULL, scope int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), note text);
CREATE INDEX ON tenant.rows (scope, id);
INSERT INTO tenant.rows (id, scope, created_at)
SELECT i, 1 + i % 2, now() - interval '1 hour' FROM generate_series(1, 40) i;
SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at');
-- The client's own table (a per-tenant audit log, say), which the
-- superuser's rules write into.
CREATE TABLE tenant.audit (id bigint, n int DEFAULT 0);
INSERT INTO tenant.audit VALUES (0);
GRANT INSERT, UPDATE, SELECT ON tenant.audit TO PUBLIC;
CREATE VIEW tenant.audit_v AS SELECT id FROM tenant.audit;
ALTER TABLE tenant.audit OWNER TO {client};
"""

# What the client does with the table it owns: a trigger whose function
# records who runs it and, when that role may, creates a role.
CLIENT_CODE = """
CREATE FUNCTION tenant.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant.log
    SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
           TG_OP || ' ' || TG_TABLE_NAME;
    BEGIN
        EXECUTE 'CREATE ROLE {grabbed}';
    EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN NULL;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER grab AFTER INSERT OR UPDATE ON tenant.audit
    FOR EACH ROW EXECUTE FUNCTION tenant.grab();
CREATE FUNCTION tenant.grab_read() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant.log
    SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'read';
    RETURN 1;
END $$;
CREATE VIEW tenant.peek AS SELECT tenant.grab_read() AS id;
"""

# Each turns the superuser's target into one whose statements reach the
# client's table: (what the superuser does, what the client does). A rule's
# action on the client's table, directly, through a view, on delete or on
# update; a client's table whose foreign key references the target with an
# action (PostgreSQL runs the action as the client, its AFTER triggers later,
# as whoever deleted the target's rows).
FK_GRANT = ("CREATE UNIQUE INDEX ON tenant.rows (id);"
            " GRANT REFERENCES ON tenant.rows TO {client}")
FK_CHILD = ("CREATE TABLE tenant.child (id bigint,"
            " n bigint REFERENCES tenant.rows (id) ON DELETE {action});"
            " INSERT INTO tenant.child (id, n) SELECT i, i FROM generate_series(1, 40) i;"
            " CREATE TRIGGER grab AFTER DELETE OR UPDATE ON tenant.child"
            " FOR EACH ROW EXECUTE FUNCTION tenant.grab()")
REACHES = {
    "rule_delete_inserts": ("CREATE RULE reach AS ON DELETE TO tenant.rows"
                            " DO ALSO INSERT INTO tenant.audit (id) VALUES (old.id)", ""),
    "rule_delete_updates": ("CREATE RULE reach AS ON DELETE TO tenant.rows"
                            " DO ALSO UPDATE tenant.audit SET n = n + 1 WHERE id = 0", ""),
    "rule_update_inserts": ("CREATE RULE reach AS ON UPDATE TO tenant.rows"
                            " DO ALSO INSERT INTO tenant.audit (id) VALUES (old.id)", ""),
    "rule_through_view": ("CREATE RULE reach AS ON DELETE TO tenant.rows"
                          " DO ALSO INSERT INTO tenant.audit_v (id) VALUES (old.id)", ""),
    "rule_reads_clients_view": ("CREATE RULE reach AS ON DELETE TO tenant.rows DO ALSO"
                                " INSERT INTO tenant.audit (id) SELECT id FROM tenant.peek",
                                ""),
    "fk_on_delete_cascade": (FK_GRANT, FK_CHILD.format(action="CASCADE")),
    "fk_on_delete_set_null": (FK_GRANT, FK_CHILD.format(action="SET NULL")),
    "fk_on_delete_set_default": (FK_GRANT, FK_CHILD.format(action="SET DEFAULT")),
    "fk_on_update_cascade": (FK_GRANT, FK_CHILD.replace("ON DELETE {action}",
                                                        "ON UPDATE CASCADE")),
}
# What the reason names: a table reached, or the client's code on one.
REACHED = {"tenant.audit", "tenant.peek", "tenant.child", "tenant.grab"}

PATHS = {
    "submit_delete": "SELECT pgjobs.submit_delete('tenant.rows', '1')",
    "submit_backfill": """SELECT pgjobs.submit_backfill('tenant.rows', '1', '{}',"""
                       """ '{"note": "x"}')""",
    "submit_export": "SELECT pgjobs.submit_export('tenant.rows', '1')",
    "visible_count": "SELECT pgjobs.visible_count('tenant.rows', '1')",
    "submit_custom": "SELECT pgjobs.submit('custom', 'tenant.rows', '1')",
}


def client_world(conn: Conn) -> None:
    """The client role (its roles dropped first), SETUP's tenant schema and
    target, and the client's code, created as the client."""
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(SETUP.format(client=CLIENT))
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute(CLIENT_CODE.format(grabbed=GRABBED))
    conn.execute("RESET ROLE")


def _drop_roles(conn: Conn) -> None:
    for role in (CLIENT, GRABBED, ENGINE):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, int]]:
    """The trusted target, the client's table with its code, a delete and a
    backfill queued while the target had no rule."""
    client_world(conn)
    jobs = {
        "delete": scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', '1')"),
        "backfill": scalar(conn, """SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}',"""
                                 """ '{"note": "x"}')"""),
    }
    yield jobs
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def test_without_a_rule_the_target_is_trusted_and_the_clients_table_untouched(
        conn: Conn, world: dict[str, int]) -> None:
    """Control: the client's table alone changes nothing; the jobs finish."""
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    conn.execute("CALL pgjobs.run('5 seconds')")
    for job in world.values():
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "succeeded"
    assert conn.execute("SELECT * FROM tenant.log").fetchall() == []


@pytest.mark.parametrize("how", sorted(REACHES))
def test_a_target_reaching_a_clients_table_is_refused_on_every_path(
        conn: Conn, world: dict[str, int], how: str) -> None:
    by_superuser, by_client = REACHES[how]
    for statement in by_superuser.split(";"):
        conn.execute(statement.format(client=CLIENT))
    conn.execute(f"SET ROLE {CLIENT}")
    for statement in filter(str.strip, by_client.split(";")):
        conn.execute(statement)
    conn.execute("RESET ROLE")
    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.rows')").fetchall()
    assert [r[0] for r in untrusted] == [CLIENT], untrusted
    assert any(name in untrusted[0][1] for name in REACHED), untrusted

    for name, sql in PATHS.items():
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            conn.execute(sql)
        assert "refuses target tenant.rows" in str(exc.value), name
        assert "docs/operations.md" in (exc.value.diag.message_hint or "")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at')")

    # The runner: the jobs queued before the rule fail for good, touching
    # nothing, and the client's code never ran (as anyone).
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    conn.execute("CALL pgjobs.run('5 seconds')")
    for kind, job in world.items():
        status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                     (job,)).fetchone() or (None, None)
        assert status == "failed", (kind, status, error)
        assert "refuses target" in error
    assert scalar(conn, "SELECT count(*) FROM tenant.rows") == 40
    assert conn.execute("SELECT who, su, what FROM tenant.log").fetchall() == []
    assert scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (GRABBED,)) == 0
    doctor = conn.execute("SELECT status, detail FROM pgjobs.doctor('tenant.rows')"
                          " WHERE check_name = 'target.trusted'").fetchall()
    assert doctor and doctor[0][0] == "fail"
    assert CLIENT in doctor[0][1]


def test_tables_reached_that_belong_to_trusted_roles_are_trusted(
        conn: Conn, world: dict[str, int]) -> None:
    """Neither a rule nor a cascading foreign key is refused as such: when
    every table reached belongs to a trusted role, the job runs, and the
    rule's action and the cascade with it."""
    conn.execute("CREATE TABLE tenant.mine (id bigint)")
    conn.execute("CREATE VIEW tenant.mine_v AS SELECT id FROM tenant.mine")
    conn.execute("CREATE RULE reach AS ON DELETE TO tenant.rows"
                 " DO ALSO INSERT INTO tenant.mine_v (id) VALUES (old.id)")
    conn.execute("CREATE UNIQUE INDEX ON tenant.rows (id)")
    conn.execute("CREATE TABLE tenant.kids (id bigint REFERENCES tenant.rows (id)"
                 " ON DELETE CASCADE)")
    conn.execute("INSERT INTO tenant.kids SELECT id FROM tenant.rows")
    # A client's table whose foreign key has no action runs nothing of its
    # owner's when a target row goes (PostgreSQL checks it as that owner).
    conn.execute("GRANT REFERENCES ON tenant.rows TO " + CLIENT)
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute("CREATE TABLE tenant.pins (id bigint REFERENCES tenant.rows (id));"
                 " INSERT INTO tenant.pins VALUES (1);"  # scope 2's
                 " CREATE TRIGGER grab AFTER INSERT OR UPDATE OR DELETE ON tenant.pins"
                 " FOR EACH ROW EXECUTE FUNCTION tenant.grab()")
    conn.execute("RESET ROLE")
    # The privilege itself is refused (it could add an ON DELETE CASCADE
    # foreign key at any time: tests/test_trust_reach_privileges.py); the
    # foreign key made with it stays when it is revoked.
    conn.execute("REVOKE REFERENCES ON tenant.rows FROM " + CLIENT)
    conn.execute("TRUNCATE tenant.log")
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    assert conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                        (world["delete"],)).fetchone() == ("succeeded", None)
    assert scalar(conn, "SELECT count(*) FROM tenant.mine") == 20
    assert scalar(conn, "SELECT count(*) FROM tenant.kids") == 20
    assert conn.execute("SELECT * FROM tenant.log").fetchall() == []


@pytest.mark.parametrize("how", sorted(REACHES))
def test_a_non_superuser_engine_refuses_it_too(
        conn: Conn, world: dict[str, int], how: str) -> None:
    """pgjobs run by an ordinary role that owns the target (the deployment
    docs/operations.md recommends): the client's code would run as that
    role, which may read and change every tenant's rows; refused alike."""
    conn.execute(f"CREATE ROLE {ENGINE} NOLOGIN IN ROLE pgjobs_admin")
    by_superuser, by_client = REACHES[how]
    for statement in by_superuser.split(";"):
        conn.execute(statement.format(client=CLIENT))
    conn.execute(f"ALTER TABLE tenant.rows OWNER TO {ENGINE}")
    conn.execute(f"SET ROLE {CLIENT}")
    for statement in filter(str.strip, by_client.split(";")):
        conn.execute(statement)
    conn.execute(f"SET ROLE {ENGINE}")
    untrusted = conn.execute("SELECT role_name FROM pgjobs._untrusted_roles('tenant.rows')"
                             ).fetchall()
    assert untrusted == [(CLIENT,)]
    conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
    conn.execute("RESET ROLE")
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (world["delete"],)).fetchone() or (None, None)
    assert status == "failed", (status, error)
    assert f"role {CLIENT}" in error and f"role {ENGINE}" in error
    assert scalar(conn, "SELECT count(*) FROM tenant.rows") == 40
    assert conn.execute("SELECT who, su, what FROM tenant.log").fetchall() == []
