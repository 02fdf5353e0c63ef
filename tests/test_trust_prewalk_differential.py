"""Trust, one walk against two: every trust answer of today equals the
answer of the two-walk check it replaced (merge a5a6615), for every way code
reaches a target, every kind of role whose code it is, and every acting role.

The reference is that check's own text (tests/support/trust_prewalk.sql:
_untrusted_roles walking the reach itself, _trust_problem over it),
installed beside pgjobs as schema pgjobs_prewalk. Compared, in each world:

* pgjobs._untrusted_roles(target, p_as) row for row, in order, for p_as NULL
  (every role of the reach, what a page's verdict keeps), the superuser, the
  runner, a role with the runner's rights, a member without them (NOINHERIT)
  and a stranger: what pgjobs.doctor and operators read;
* as each acting role (SET ROLE): pgjobs._trust_problem and
  pgjobs._trust_verdict's message and hint, the 42501 pgjobs._require_trusted
  raises (message and hint), and whether the scope checks' test
  (pgjobs._reach_roles' lacks_rights) finds an untrusted role;
* pgjobs._trust_verdict's roles (kept by a page's full check, asked again by
  pgjobs._verdict_roles_hold on the next pages) against the list a page's
  full check built before: the oids of _untrusted_roles(target, NULL).

Each shape is also checked to reach (or not) the role it is about, in the
reference: a shape that stopped reaching would make its comparison empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

PREWALK = (Path(__file__).parent / "support" / "trust_prewalk.sql").read_text()

# runner: the role pages run as; author has its rights (a member, INHERIT);
# kin is a member that does not inherit them; stranger and other are
# strangers; bypass is a stranger with BYPASSRLS.
LABELS = ("runner", "author", "kin", "stranger", "other", "bypass")

SETUP = """
CREATE SCHEMA tenant;
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
CREATE TABLE tenant.rows (id bigint PRIMARY KEY, scope int NOT NULL, note text);
CREATE FUNCTION tenant.keep() RETURNS trigger LANGUAGE plpgsql
    AS 'BEGIN RETURN coalesce(new, old); END';
CREATE FUNCTION tenant.ok(bigint) RETURNS boolean IMMUTABLE LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION tenant.okint(int) RETURNS boolean IMMUTABLE LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION tenant.same(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION tenant.imm(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION tenant.d() RETURNS text LANGUAGE sql AS 'SELECT ''x''';
CREATE FUNCTION tenant.eq(bigint, bigint) RETURNS boolean IMMUTABLE LANGUAGE sql
    AS 'SELECT $1 = $2';
CREATE DOMAIN tenant.label AS text CHECK (VALUE <> '');
CREATE TYPE tenant.e AS ENUM ('a', 'b');
"""

TRIGGER = ("CREATE TRIGGER k BEFORE DELETE ON tenant.rows FOR EACH ROW"
           " EXECUTE FUNCTION tenant.keep()")

# name: (target, statements with {who}, whether {who} is in the reach).
# The superuser runs the statements; {who} may be PUBLIC where a privilege is
# granted (PRIVILEGES).
SHAPES: dict[str, tuple[str, str, bool]] = {
    "table_owner": ("tenant.rows", "ALTER TABLE tenant.rows OWNER TO {who}", True),
    "inheritance_child": (
        "tenant.rows", "CREATE TABLE tenant.kid () INHERITS (tenant.rows);"
        " ALTER TABLE tenant.kid OWNER TO {who}", True),
    "partition": (
        "tenant.parted", "CREATE TABLE tenant.parted (id bigint, scope int)"
        " PARTITION BY LIST (scope);"
        " CREATE TABLE tenant.parted_1 PARTITION OF tenant.parted FOR VALUES IN (1);"
        " ALTER TABLE tenant.parted_1 OWNER TO {who}", True),
    "ancestors_partition_key": (
        "tenant.keyed_1", "ALTER FUNCTION tenant.same(int) OWNER TO {who};"
        " CREATE TABLE tenant.keyed (id bigint, scope int) PARTITION BY LIST (tenant.same(scope));"
        " CREATE TABLE tenant.keyed_1 PARTITION OF tenant.keyed FOR VALUES IN (1)", True),
    "rule_action_table": (
        "tenant.rows", "CREATE TABLE tenant.log (id bigint); ALTER TABLE tenant.log OWNER TO {who};"
        " CREATE RULE l_d AS ON DELETE TO tenant.rows DO ALSO"
        " INSERT INTO tenant.log VALUES (old.id)", True),
    "view_query_table": (
        "tenant.v", "CREATE TABLE tenant.base (id bigint);"
        " ALTER TABLE tenant.base OWNER TO {who};"
        " CREATE VIEW tenant.v AS SELECT id FROM tenant.base", True),
    "policy_subquery_table": (
        "tenant.rows", "CREATE TABLE tenant.acl (scope int); ALTER TABLE tenant.acl OWNER TO {who};"
        " CREATE POLICY p ON tenant.rows USING (scope IN (SELECT scope FROM tenant.acl))", True),
    "foreign_key_with_action": (
        "tenant.rows", "CREATE TABLE tenant.child"
        " (rid bigint REFERENCES tenant.rows (id) ON DELETE CASCADE);"
        " ALTER TABLE tenant.child OWNER TO {who}", True),
    "foreign_key_without_action": (
        "tenant.rows", "CREATE TABLE tenant.child (rid bigint REFERENCES tenant.rows (id));"
        " ALTER TABLE tenant.child OWNER TO {who}", False),
    "trigger_privilege": ("tenant.rows", "GRANT TRIGGER ON tenant.rows TO {who}", True),
    "references_privilege": ("tenant.rows", "GRANT REFERENCES ON tenant.rows TO {who}", True),
    "column_references": ("tenant.rows", "GRANT REFERENCES (note) ON tenant.rows TO {who}", True),
    "select_privilege": ("tenant.rows", "GRANT SELECT, DELETE ON tenant.rows TO {who}", False),
    "trigger_function": (
        "tenant.rows", "ALTER FUNCTION tenant.keep() OWNER TO {who}; " + TRIGGER, True),
    "trigger_when": (
        "tenant.rows", "ALTER FUNCTION tenant.ok(bigint) OWNER TO {who};"
        " CREATE TRIGGER k BEFORE DELETE ON tenant.rows FOR EACH ROW"
        " WHEN (tenant.ok(old.id)) EXECUTE FUNCTION tenant.keep()", True),
    "default": (
        "tenant.rows", "ALTER FUNCTION tenant.d() OWNER TO {who};"
        " ALTER TABLE tenant.rows ALTER COLUMN note SET DEFAULT tenant.d()", True),
    "generated_column": (
        "tenant.rows", "ALTER FUNCTION tenant.imm(text) OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD COLUMN g text"
        " GENERATED ALWAYS AS (tenant.imm(note)) STORED", True),
    "check_constraint": (
        "tenant.rows", "ALTER FUNCTION tenant.ok(bigint) OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD CONSTRAINT c CHECK (tenant.ok(id))", True),
    "index_expression": (
        "tenant.rows", "ALTER FUNCTION tenant.imm(text) OWNER TO {who};"
        " CREATE INDEX ON tenant.rows (tenant.imm(note))", True),
    "index_predicate": (
        "tenant.rows", "ALTER FUNCTION tenant.ok(bigint) OWNER TO {who};"
        " CREATE INDEX ON tenant.rows (id) WHERE tenant.ok(id)", True),
    "policy_function": (
        "tenant.rows", "ALTER FUNCTION tenant.ok(bigint) OWNER TO {who};"
        " CREATE POLICY p ON tenant.rows USING (tenant.ok(id))", True),
    "operator_owner": (
        "tenant.rows", "CREATE OPERATOR tenant.=== (FUNCTION = tenant.eq, LEFTARG = bigint,"
        " RIGHTARG = bigint); ALTER OPERATOR tenant.=== (bigint, bigint) OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD CONSTRAINT c CHECK (id OPERATOR(tenant.===) id)", True),
    "operators_function": (
        "tenant.rows", "ALTER FUNCTION tenant.eq(bigint, bigint) OWNER TO {who};"
        " CREATE OPERATOR tenant.=== (FUNCTION = tenant.eq, LEFTARG = bigint,"
        " RIGHTARG = bigint);"
        " ALTER TABLE tenant.rows ADD CONSTRAINT c CHECK (id OPERATOR(tenant.===) id)", True),
    "enum_column": (
        "tenant.rows", "ALTER TYPE tenant.e OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD COLUMN e tenant.e", True),
    "domain_column": (
        "tenant.rows", "ALTER DOMAIN tenant.label OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD COLUMN label tenant.label", True),
    "domains_check_function": (
        "tenant.rows", "ALTER FUNCTION tenant.okint(int) OWNER TO {who};"
        " CREATE DOMAIN tenant.n AS int CHECK (tenant.okint(VALUE));"
        " ALTER TABLE tenant.rows ADD COLUMN n tenant.n", True),
    "domain_over_a_domain": (
        "tenant.rows", "ALTER DOMAIN tenant.label OWNER TO {who};"
        " CREATE DOMAIN tenant.label2 AS tenant.label;"
        " ALTER TABLE tenant.rows ADD COLUMN l2 tenant.label2", True),
    "array_element": (
        "tenant.rows", "ALTER DOMAIN tenant.label OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD COLUMN labels tenant.label[]", True),
    "composite_attribute": (
        "tenant.rows", "ALTER TYPE tenant.e OWNER TO {who};"
        " CREATE TYPE tenant.pair AS (x tenant.e);"
        " ALTER TABLE tenant.rows ADD COLUMN pr tenant.pair", True),
    "range_subtype": (
        "tenant.rows", "ALTER TYPE tenant.e OWNER TO {who};"
        " CREATE TYPE tenant.er AS RANGE (SUBTYPE = tenant.e);"
        " ALTER TABLE tenant.rows ADD COLUMN r tenant.er", True),
    "typed_tables_type": (
        "tenant.typed", "CREATE TYPE tenant.tt AS (id bigint); ALTER TYPE tenant.tt OWNER TO {who};"
        " CREATE TABLE tenant.typed OF tenant.tt", False),
    "row_security_on_its_table": (
        "tenant.rows", "ALTER TABLE tenant.rows OWNER TO {who};"
        " ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY", True),
    "row_security_forced": (
        "tenant.rows", "ALTER TABLE tenant.rows OWNER TO {who};"
        " ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY;"
        " ALTER TABLE tenant.rows FORCE ROW LEVEL SECURITY", True),
    # One role, code and a REFERENCES: its first reason is the code.
    "code_and_privileges_of_one_role": (
        "tenant.rows", "ALTER FUNCTION tenant.keep() OWNER TO {who}; " + TRIGGER + ";"
        " GRANT REFERENCES, TRIGGER ON tenant.rows TO {who};"
        " GRANT REFERENCES (note) ON tenant.rows TO {who}", True),
    # Several roles at once, the reference's order (by name) against today's.
    "many_roles": (
        "tenant.rows", "ALTER FUNCTION tenant.keep() OWNER TO {who}; " + TRIGGER + ";"
        " ALTER DOMAIN tenant.label OWNER TO {author};"
        " ALTER TABLE tenant.rows ADD COLUMN label tenant.label;"
        " GRANT REFERENCES (note) ON tenant.rows TO {kin};"
        " GRANT TRIGGER ON tenant.rows TO PUBLIC;"
        " CREATE TABLE tenant.child (rid bigint REFERENCES tenant.rows (id) ON DELETE SET NULL);"
        " ALTER TABLE tenant.child OWNER TO {other}", True),
}
PRIVILEGES = {"trigger_privilege", "references_privilege", "column_references",
              "select_privilege"}
WHOS = ("author", "kin", "stranger", "runner", "bypass")


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    made: dict[str, str] = {}
    try:
        for label in LABELS:
            made[label] = make_role(conn, label, prefix="pgjobs_pw")
        conn.execute(f"GRANT {made['runner']} TO {made['author']}")
        conn.execute(f"GRANT {made['runner']} TO {made['kin']}")
        conn.execute(f"ALTER ROLE {made['kin']} NOINHERIT")
        conn.execute(f"ALTER ROLE {made['bypass']} BYPASSRLS")
        conn.execute(SETUP)
        conn.execute(PREWALK)
        yield made
    finally:
        for role in made.values():
            drop_role(conn, role)


ACTING = ("runner", "author", "kin", "stranger", "bypass")
GRANTS = """
GRANT USAGE ON SCHEMA pgjobs, pgjobs_prewalk TO {to};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgjobs_prewalk TO {to};
GRANT EXECUTE ON FUNCTION pgjobs._untrusted_roles(regclass, name),
    pgjobs._reach_roles(regclass, name), pgjobs._trust_verdict(regclass),
    pgjobs._trust_problem(regclass), pgjobs._require_trusted(regclass) TO {to};
"""


def _answers(conn: Conn, target: int, acting: list[str | None]) -> list[str]:
    """Every difference between the reference and today's functions."""
    diffs: list[str] = []
    for p_as in acting:
        old = conn.execute("SELECT * FROM pgjobs_prewalk._untrusted_roles(%s::oid::regclass, %s)",
                           (target, p_as)).fetchall()
        new = conn.execute("SELECT * FROM pgjobs._untrusted_roles(%s::oid::regclass, %s)",
                           (target, p_as)).fetchall()
        if old != new:
            diffs.append(f"_untrusted_roles as {p_as}: {old} != {new}")
    old_roles = conn.execute("""
        SELECT coalesce(jsonb_agg(a.oid::bigint ORDER BY a.oid), '[]'::jsonb)
          FROM pgjobs_prewalk._untrusted_roles(%s::oid::regclass, NULL) u
          JOIN pg_catalog.pg_roles a ON a.rolname = u.role_name""", (target,)).fetchone()
    for role in [None, *[r for r in acting if r is not None]]:
        if role is not None:
            conn.execute(f'SET LOCAL ROLE "{role}"')
        old_problem = conn.execute(
            "SELECT message, hint FROM pgjobs_prewalk._trust_problem(%s::oid::regclass)",
            (target,)).fetchone()
        new_problem = conn.execute(
            "SELECT message, hint FROM pgjobs._trust_problem(%s::oid::regclass)",
            (target,)).fetchone()
        verdict = conn.execute(
            "SELECT message, hint, roles FROM pgjobs._trust_verdict(%s::oid::regclass)",
            (target,)).fetchone()
        old_any = conn.execute(
            "SELECT EXISTS (SELECT FROM pgjobs_prewalk._untrusted_roles(%s::oid::regclass))",
            (target,)).fetchone()
        new_any = conn.execute(
            "SELECT EXISTS (SELECT FROM pgjobs._reach_roles(%s::oid::regclass) r"
            " WHERE r.lacks_rights)", (target,)).fetchone()
        raised: tuple[str | None, str | None, str | None] = (None, None, None)
        try:
            with conn.transaction():
                conn.execute("SELECT pgjobs._require_trusted(%s::oid::regclass)", (target,))
        except psycopg.Error as e:
            raised = (e.sqlstate, e.diag.message_primary, e.diag.message_hint)
        expected_raise = (("42501", *old_problem) if old_problem and old_problem[0] is not None
                          else (None, None, None))
        as_ = role or "the superuser"
        if not (old_problem == new_problem == (verdict or (None,) * 3)[:2]):
            diffs.append(f"trust problem as {as_}: {old_problem} / {new_problem} / {verdict}")
        if verdict is None or old_roles is None or verdict[2] != old_roles[0]:
            diffs.append(f"verdict roles as {as_}: {verdict} != {old_roles}")
        if old_any != new_any:
            diffs.append(f"any untrusted as {as_}: {old_any} != {new_any}")
        if raised != expected_raise:
            diffs.append(f"_require_trusted as {as_}: {raised} != {expected_raise}")
        conn.execute("RESET ROLE")
    return diffs


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_trust_answer_is_the_two_walk_checks(conn: Conn, roles: dict[str, str],
                                                   shape: str) -> None:
    target_name, statements, reaches = SHAPES[shape]
    acting: list[str | None] = [None, str(conn.execute("SELECT current_user").fetchone()[0]),
                                *(roles[a] for a in ACTING)]
    diffs: list[str] = []
    for whom in (*WHOS, *(("PUBLIC",) if shape in PRIVILEGES else ())):
        who = "PUBLIC" if whom == "PUBLIC" else roles[whom]
        with conn.transaction(force_rollback=True):
            for to in roles.values():
                conn.execute(GRANTS.format(to=to))
            conn.execute(statements.format(who=who, **roles))
            target = conn.execute("SELECT %s::regclass::oid", (target_name,)).fetchone()[0]
            named = {r[0] for r in conn.execute(
                "SELECT role_name FROM pgjobs_prewalk._untrusted_roles(%s::oid::regclass, NULL)",
                (target,)).fetchall()}
            assert (who in named) == reaches, (whom, named)
            diffs += [f"{whom}: {d}" for d in _answers(conn, target, acting)]
    assert diffs == []


# The walk and the checks over it, and the functions that call them for a
# page or a client call.
WALK_FUNCTIONS = ("_reach_roles", "_trust_verdict", "_untrusted_roles", "_trust_problem",
                  "_require_trusted", "_target", "_target_registration")


def test_the_walk_runs_as_its_caller_and_no_client_may_call_it(conn: Conn) -> None:
    """The acting role of every check is its caller's current_user (p_as's
    default, the rule's pg_has_role): none of the walk's functions is
    SECURITY DEFINER, which would judge every target for pgjobs' owner. And
    none is a client's to call (they take any table, and tell whose code is
    in it): not PUBLIC's, not pgjobs_client's."""
    rows = conn.execute("""
        SELECT p.proname, p.prosecdef, has_function_privilege('public', p.oid, 'EXECUTE'),
               has_function_privilege('pgjobs_client', p.oid, 'EXECUTE')
          FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.proname = ANY (%s)
         ORDER BY 1""", (list(WALK_FUNCTIONS),)).fetchall()
    assert [r[0] for r in rows] == sorted(WALK_FUNCTIONS)
    assert [r for r in rows if any(r[1:])] == []
