"""An attacker's variants on column grants counting as SELECT (h148, a
review of h146's 0e8d0aa).

pgjobs._reads_every_column lets the engine, running as its owner, read a
target for a role that holds SELECT on every one of its columns. The rule
under attack: the engine reads a table for a role exactly when PostgreSQL
would let that role read every column of it itself (a whole-row read,
``SELECT t FROM t``, asks the same). Each test sets up a way to hold
column grants the author did not try (a dropped column, a column dropped
and added again under its name, a generated column, membership through an
INHERIT and a NOINHERIT role, PUBLIC, a grant passed on WITH GRANT OPTION,
INSERT/UPDATE/REFERENCES without SELECT, a partitioned parent and its
partitions, a revoke from another session while this one's verdicts are
warm) and compares the engine's answer with PostgreSQL's own for that role.
A refusal must not depend on the rows: the same message for a scope with
rows and one without.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, in_role, make_role

Conn = psycopg.Connection[Any]

COLUMNS = ("id", "table_id", "n", "label", "data", "created_at")
ALL = ", ".join(COLUMNS)
WRITES = "GRANT UPDATE, DELETE ON user_table_rows TO {role}"
CLIENT = "GRANT pgjobs_client TO {role}"

# One read and one write of the engine, each behind the shared check.
COUNT = "SELECT pgjobs.visible_count('user_table_rows', '1')"
DELETE = """SELECT pgjobs.submit_delete('user_table_rows', '1', '{"n": 3}')"""
PLAIN = "SELECT count(t) FROM user_table_rows t"  # a whole-row read: every column


@pytest.fixture
def made(conn: Conn) -> Iterator[list[str]]:
    """Roles a test makes (appended to), dropped at its end, PUBLIC's
    column grants on the target revoked."""
    seed(conn, make_rows_target(conn), 200)
    roles: list[str] = []
    yield roles
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT ({ALL}) ON user_table_rows FROM PUBLIC")
    for role in roles:  # a grant passed on by a role goes with the role's (CASCADE)
        conn.execute(f"REVOKE ALL ({ALL}) ON user_table_rows FROM {role} CASCADE")
    for role in reversed(roles):
        drop_role(conn, role)


def _role(conn: Conn, made: list[str], label: str, *grants: str) -> str:
    role = make_role(conn, label, *grants)
    made.append(role)
    return role


def _outcome(conn: Conn, role: str, sql: str) -> tuple[bool, str]:
    """(answered, the refusal's message and hint) of sql run as role."""
    try:
        with in_role(conn, role):
            conn.execute(sql)
        return True, ""
    except errors.InsufficientPrivilege as refusal:
        return False, f"{refusal.diag.message_primary} / {refusal.diag.message_hint}"


def _judged_as_postgres_does(conn: Conn, role: str, answered: bool) -> None:
    """The engine answers role exactly when PostgreSQL lets it read every
    column itself; a refusal is the 42501 of a role without SELECT."""
    plain, _ = _outcome(conn, role, PLAIN)
    assert plain is answered, (role, plain)
    for sql in (COUNT, DELETE):
        engine, refusal = _outcome(conn, role, sql)
        assert engine is answered, (role, sql, refusal)
        if not answered:
            assert f"role {role} lacks SELECT on public.user_table_rows / " \
                   f"GRANT SELECT ON public.user_table_rows TO {role}" in refusal, refusal
    conn.execute("DELETE FROM pgjobs.jobs")


def test_a_dropped_column_is_not_one_a_role_must_hold(conn: Conn, made: list[str]) -> None:
    """pg_attribute keeps a dropped column (attisdropped, no grant can name
    it): asking for it would refuse every role of a table that ever lost a
    column, which PostgreSQL reads."""
    role = _role(conn, made, "cgadrop", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN gone text")
    conn.execute("ALTER TABLE user_table_rows DROP COLUMN gone")
    assert scalar(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                        "'user_table_rows'::regclass AND attisdropped") == 1
    _judged_as_postgres_does(conn, role, True)


def test_a_column_dropped_and_added_again_under_its_name_needs_a_new_grant(
        conn: Conn, made: list[str]) -> None:
    role = _role(conn, made, "cgareadd", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN secret text DEFAULT 's'")
    conn.execute(f"GRANT SELECT (secret) ON user_table_rows TO {role}")
    _judged_as_postgres_does(conn, role, True)
    conn.execute("ALTER TABLE user_table_rows DROP COLUMN secret")
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN secret text DEFAULT 'new'")
    _judged_as_postgres_does(conn, role, False)


def test_a_generated_column_added_later_needs_its_grant(conn: Conn, made: list[str]) -> None:
    role = _role(conn, made, "cgagen", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN twice integer "
                 "GENERATED ALWAYS AS (n * 2) STORED")
    _judged_as_postgres_does(conn, role, False)
    conn.execute(f"GRANT SELECT (twice) ON user_table_rows TO {role}")
    _judged_as_postgres_does(conn, role, True)


def test_system_columns_are_not_asked_as_postgresql_does_not(
        conn: Conn, made: list[str]) -> None:
    """ctid, xmin, tableoid: a whole-row read does not need them, nor does
    the engine's check (it never tells a client one)."""
    role = _role(conn, made, "cgasys", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    assert _outcome(conn, role, "SELECT ctid FROM user_table_rows LIMIT 1")[0] is False
    _judged_as_postgres_does(conn, role, True)


def test_membership_counts_through_inherit_and_not_through_noinherit(
        conn: Conn, made: list[str]) -> None:
    group = _role(conn, made, "cgagroup",
                  f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    inherits = _role(conn, made, "cgainh", CLIENT, WRITES, f"GRANT {group} TO {{role}}")
    middle = _role(conn, made, "cgamid", "ALTER ROLE {role} NOINHERIT",
                   f"GRANT {group} TO {{role}}")
    through = _role(conn, made, "cgathru", CLIENT, WRITES, f"GRANT {middle} TO {{role}}")
    _judged_as_postgres_does(conn, inherits, True)
    # middle is NOINHERIT: it (and so a role inheriting from it) holds
    # nothing of group's without SET ROLE.
    _judged_as_postgres_does(conn, through, False)


def test_grants_to_public_count_as_postgresql_counts_them(
        conn: Conn, made: list[str]) -> None:
    role = _role(conn, made, "cgapub", CLIENT, WRITES,
                 "GRANT SELECT (label) ON user_table_rows TO {role}")
    conn.execute("GRANT SELECT (id, table_id, n, data, created_at) ON user_table_rows "
                 "TO PUBLIC")
    _judged_as_postgres_does(conn, role, True)
    conn.execute("REVOKE SELECT (created_at) ON user_table_rows FROM PUBLIC")
    _judged_as_postgres_does(conn, role, False)


def test_a_grant_passed_on_with_grant_option_and_revoked_with_it(
        conn: Conn, made: list[str]) -> None:
    granter = _role(conn, made, "cgago",
                    f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}} WITH GRANT OPTION")
    role = _role(conn, made, "cgagot", CLIENT, WRITES)
    conn.execute(f"SET ROLE {granter}")
    conn.execute(f"GRANT SELECT ({ALL}) ON user_table_rows TO {role}")
    conn.execute("RESET ROLE")
    _judged_as_postgres_does(conn, role, True)
    conn.execute(f"REVOKE GRANT OPTION FOR SELECT (n) ON user_table_rows FROM {granter} "
                 "CASCADE")
    _judged_as_postgres_does(conn, role, False)


def test_every_column_for_writing_or_referencing_but_not_selecting_is_refused(
        conn: Conn, made: list[str]) -> None:
    role = _role(conn, made, "cgaiur", CLIENT, WRITES,
                 f"GRANT INSERT ({ALL}), UPDATE ({ALL}), REFERENCES ({ALL}) "
                 "ON user_table_rows TO {role}")
    _judged_as_postgres_does(conn, role, False)


def test_a_refusal_reads_the_same_for_a_scope_with_rows_and_one_without(
        conn: Conn, made: list[str]) -> None:
    role = _role(conn, made, "cgasame", CLIENT, WRITES,
                 "GRANT SELECT (id, table_id, n, label, created_at) ON user_table_rows "
                 "TO {role}")
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1") > 0
    for sql in (COUNT, DELETE, "SELECT pgjobs.preview('user_table_rows', '1', '{\"n\": 3}')",
                "SELECT pgjobs.mask('user_table_rows', '1')"):
        with_rows = _outcome(conn, role, sql)
        without = _outcome(conn, role, sql.replace("'1'", "'9999'"))
        assert with_rows[0] is False and with_rows == without, (with_rows, without)


def test_a_revoke_from_another_session_refuses_this_warm_sessions_next_read(
        conn: Conn, made: list[str], make_conn: Callable[..., Conn]) -> None:
    """The trust verdict (pgjobs._verdict_fresh, 1 s) is about the target,
    never the caller's grants: a column revoked anywhere refuses the next
    call at once, even one made while the verdict is fresh."""
    role = _role(conn, made, "cgawarm", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    warm = make_conn()
    warm.execute(f"SET ROLE {role}")
    sql = "SELECT count(*) FROM pgjobs.visible('user_table_rows', '1', '{}', NULL, 1000)"
    assert scalar(warm, sql) > 0
    assert scalar(warm, sql) > 0  # the verdict is kept and fresh
    conn.execute(f"REVOKE SELECT (data) ON user_table_rows FROM {role}")
    with pytest.raises(errors.InsufficientPrivilege, match=f"role {role} lacks SELECT"):
        scalar(warm, sql)
    warm.execute("RESET ROLE")
    warm.close()


@pytest.fixture
def parted(conn: Conn) -> Iterator[str]:
    conn.execute("CREATE TABLE pt (id bigint NOT NULL, scope int NOT NULL, n int, "
                 "secret text, created_at timestamptz NOT NULL DEFAULT now()) "
                 "PARTITION BY LIST (scope)")
    conn.execute("CREATE TABLE pt_1 PARTITION OF pt FOR VALUES IN (1)")
    conn.execute("CREATE TABLE pt_2 PARTITION OF pt FOR VALUES IN (2)")
    conn.execute("CREATE INDEX ON pt (scope, id)")
    conn.execute("INSERT INTO pt (id, scope, n, secret) SELECT g, 1 + g % 2, g % 5, 's' "
                 "FROM generate_series(1, 50) g")
    conn.execute("SELECT pgjobs.register_target('pt', 'id', 'scope', 'created_at', NULL, '{}')")
    yield "pt"


def test_a_partitioned_target_is_judged_by_the_grants_on_its_parent(
        conn: Conn, made: list[str], parted: str) -> None:
    cols = "id, scope, n, secret, created_at"
    on_parent = _role(conn, made, "cgapar", CLIENT, "GRANT DELETE ON pt TO {role}",
                      f"GRANT SELECT ({cols}) ON pt TO {{role}}")
    on_parts = _role(conn, made, "cgaparts", CLIENT, "GRANT DELETE ON pt TO {role}",
                     f"GRANT SELECT ({cols}) ON pt_1 TO {{role}}",
                     f"GRANT SELECT ({cols}) ON pt_2 TO {{role}}")
    short = _role(conn, made, "cgapshort", CLIENT, "GRANT DELETE ON pt TO {role}",
                  "GRANT SELECT (id, scope, n, created_at) ON pt TO {role}",
                  "GRANT SELECT ON pt_1, pt_2 TO {role}")
    count = "SELECT pgjobs.visible_count('pt', '1')"
    delete = """SELECT pgjobs.submit_delete('pt', '1', '{"n": 3}')"""
    for role, answered in ((on_parent, True), (on_parts, False), (short, False)):
        assert _outcome(conn, role, "SELECT count(t) FROM pt t")[0] is answered, role
        for sql in (count, delete):
            engine, refusal = _outcome(conn, role, sql)
            assert engine is answered, (role, sql, refusal)
            if not answered:
                assert f"role {role} lacks SELECT on public.pt" in refusal, refusal
        conn.execute("DELETE FROM pgjobs.jobs")


def test_row_security_refuses_a_column_granted_role_on_every_call(
        conn: Conn, made: list[str]) -> None:
    """Column grants never lift the refusal of a role a policy confines, on
    any call of the shared check (the author tried two)."""
    role = _role(conn, made, "cgarls", CLIENT, WRITES,
                 f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    conn.execute("ALTER TABLE user_table_rows ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY odd ON user_table_rows USING (id % 2 = 1)")
    calls = (COUNT, DELETE,
             "SELECT count(*) FROM pgjobs.visible('user_table_rows', '1', '{}', NULL, 10)",
             """SELECT pgjobs.submit_backfill('user_table_rows', '1', '{"n": 4}',
                                              '{"label": "x"}')""",
             "SELECT pgjobs.submit_export('user_table_rows', '1')",
             "SELECT pgjobs.preview('user_table_rows', '1', '{\"n\": 3}')",
             "SELECT pgjobs.mask('user_table_rows', '1')",
             "SELECT pgjobs.channel('user_table_rows', '1')")
    for sql in calls:
        engine, refusal = _outcome(conn, role, sql)
        assert engine is False and "row-level security" in refusal, (sql, refusal)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_channel_takes_column_grants_as_the_other_reads_do(
        conn: Conn, made: list[str]) -> None:
    every = _role(conn, made, "cgachan", CLIENT,
                  f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    short = _role(conn, made, "cgachshort", CLIENT,
                  "GRANT SELECT (id, table_id, n, created_at) ON user_table_rows TO {role}")
    sql = "SELECT pgjobs.channel('user_table_rows', '1')"
    assert _outcome(conn, every, sql) == (True, "")
    answered, refusal = _outcome(conn, short, sql)
    assert not answered and f"role {short} lacks SELECT" in refusal, refusal
