"""Trust: a partition's ancestors' partition keys are the partition's code.

A row written into a partition directly (a backfill's UPDATE, an import's
INSERT into a registered partition) is checked against its partition
constraint, which evaluates the partition key of every partitioned table
above it. A function, operator or type used in such a key runs with the
rights pgjobs runs with, so its owner must already have them
(pgjobs._untrusted_roles), exactly as for an index expression on the
target itself. Before, only the target's own dependencies (and its
partitions') were followed: registering a leaf partition of a table
partitioned by `bucket(id)` ran `bucket`'s owner's code as pgjobs (here a
superuser) on every row a backfill updated.

The engine is the test's superuser, the worst case (test_trust_owner.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

OWNER = f"pgjobs_trust_pkey_{os.getpid()}"

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
CREATE FUNCTION tenant.bucket(v bigint) RETURNS int LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM tenant.spy('bucket'); RETURN (v % 2)::int; END $$;
CREATE FUNCTION tenant.mod2(a bigint, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM tenant.spy('operator'); RETURN (a % b)::int; END $$;
CREATE OPERATOR tenant.%% (FUNCTION = tenant.mod2, LEFTARG = bigint, RIGHTARG = int);
CREATE FUNCTION tenant.even(v int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM tenant.spy('domain'); RETURN true; END $$;
CREATE DOMAIN tenant.slot AS int CHECK (tenant.even(VALUE));
"""

# Each: the partitioned tables (the target is tenant.leaf), and what then
# makes the key's code someone else's.
SHAPES = {
    # The parent's key is a function of the key column.
    "function": (
        """CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), note text)
               PARTITION BY LIST (tenant.bucket(id));
           CREATE TABLE tenant.leaf PARTITION OF tenant.rows FOR VALUES IN (0, 1);""",
        "ALTER FUNCTION tenant.bucket(bigint) OWNER TO {owner}"),
    # Two levels up: the grandparent's key; the target's parent is plain.
    "grandparent": (
        """CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), note text)
               PARTITION BY RANGE (tenant.bucket(id));
           CREATE TABLE tenant.mid PARTITION OF tenant.rows FOR VALUES FROM (0) TO (2)
               PARTITION BY LIST (scope);
           CREATE TABLE tenant.leaf PARTITION OF tenant.mid FOR VALUES IN (1, 2);""",
        "ALTER FUNCTION tenant.bucket(bigint) OWNER TO {owner}"),
    # An operator's owner (CREATE on any schema suffices to make one).
    "operator": (
        """CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), note text)
               PARTITION BY LIST ((id OPERATOR(tenant.%%) 2));
           CREATE TABLE tenant.leaf PARTITION OF tenant.rows FOR VALUES IN (0, 1);""",
        "ALTER OPERATOR tenant.%% (bigint, int) OWNER TO {owner}"),
    # The operator's function, the operator itself a superuser's.
    "operator_function": (
        """CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), note text)
               PARTITION BY LIST ((id OPERATOR(tenant.%%) 2));
           CREATE TABLE tenant.leaf PARTITION OF tenant.rows FOR VALUES IN (0, 1);""",
        "ALTER FUNCTION tenant.mod2(bigint, int) OWNER TO {owner}"),
    # A domain's CHECK, through a cast in the key.
    "domain_check": (
        """CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), note text)
               PARTITION BY LIST ((scope::tenant.slot));
           CREATE TABLE tenant.leaf PARTITION OF tenant.rows FOR VALUES IN (1, 2);""",
        "ALTER FUNCTION tenant.even(int) OWNER TO {owner}"),
}


def _drop_role(conn: Conn) -> None:
    if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (OWNER,)):
        conn.execute(f"REASSIGN OWNED BY {OWNER} TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {OWNER}")
        conn.execute(f"DROP ROLE {OWNER}")


@pytest.fixture
def owner(conn: Conn) -> Iterator[str]:
    _drop_role(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    conn.execute(SETUP)
    yield OWNER
    conn.execute("RESET ROLE")
    _drop_role(conn)


def _build(conn: Conn, shape: str) -> None:
    conn.execute(SHAPES[shape][0])
    conn.execute("""
        CREATE INDEX ON tenant.leaf (scope, id);
        INSERT INTO tenant.rows (id, scope, created_at)
        SELECT i, 1 + i % 2, now() - interval '1 hour' FROM generate_series(1, 20) i;
        SELECT pgjobs.register_target('tenant.leaf', 'id', 'scope', 'created_at');
        TRUNCATE tenant.log;
    """)


def _backfill(conn: Conn) -> int:
    return int(scalar(conn, """SELECT pgjobs.submit_backfill('tenant.leaf', '1', '{}',"""
                            """ '{"note": "x"}')"""))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_key_runs_as_pgjobs_while_it_is_trusted(
        conn: Conn, owner: str, shape: str) -> None:
    """Control: a backfill of the partition evaluates the ancestors' key, as
    the role pgjobs runs as (so the refusal below is what keeps it from
    running as a superuser)."""
    _build(conn, shape)
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.leaf')").fetchall() == []
    job = _backfill(conn)
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM tenant.log WHERE su") > 0


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_partition_whose_ancestors_key_is_another_roles_code_is_refused(
        conn: Conn, owner: str, shape: str) -> None:
    _build(conn, shape)
    queued = _backfill(conn)  # while trusted
    conn.execute(SHAPES[shape][1].format(owner=owner))
    conn.execute("TRUNCATE tenant.log")

    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.leaf')").fetchall()
    assert [r[0] for r in untrusted] == [owner], untrusted
    for sql in ("""SELECT pgjobs.submit_backfill('tenant.leaf', '1', '{}', '{"note": "y"}')""",
                "SELECT pgjobs.submit_delete('tenant.leaf', '1')",
                "SELECT pgjobs.visible_count('tenant.leaf', '1')",
                "SELECT pgjobs.register_target('tenant.leaf', 'id', 'scope', 'created_at')"):
        with pytest.raises(errors.InsufficientPrivilege, match="refuses target tenant.leaf"):
            conn.execute(sql)

    # The job queued while the key was trusted fails for good, writing nothing.
    conn.execute("CALL pgjobs.run_job(%s)", (queued,))
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (queued,)).fetchone() or (None, None)
    assert status == "failed" and "refuses target" in error, (status, error)
    assert scalar(conn, "SELECT count(*) FROM tenant.leaf WHERE note IS NOT NULL") == 0
    assert conn.execute("SELECT who, what FROM tenant.log WHERE su").fetchall() == []

    doctor = conn.execute("SELECT status FROM pgjobs.doctor('tenant.leaf')"
                          " WHERE check_name = 'target.trusted'").fetchall()
    assert doctor == [("fail",)]


def test_the_parent_itself_is_refused_as_before(conn: Conn, owner: str) -> None:
    """The partitioned table registered as the target: its own key was, and
    is, followed."""
    _build(conn, "function")
    # One registered table per partition tree (tests/test_trust_row_set.py):
    # the parent instead of the leaf _build registers.
    conn.execute("SELECT pgjobs.unregister_target('tenant.leaf')")
    conn.execute("CREATE INDEX ON tenant.rows (scope, id)")
    conn.execute("SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at')")
    conn.execute(SHAPES["function"][1].format(owner=owner))
    with pytest.raises(errors.InsufficientPrivilege, match="refuses target tenant.rows"):
        conn.execute("SELECT pgjobs.submit_delete('tenant.rows', '1')")


def test_a_plain_key_above_a_partition_refuses_nothing(conn: Conn, owner: str) -> None:
    """Only code counts: a parent keyed on a plain column, owned by another
    role, leaves its (trusted) partition registrable, since the parent's
    owner cannot put code on the partition without the partition's own
    rights."""
    conn.execute("""
        CREATE TABLE tenant.rows (id bigint NOT NULL, scope int NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(), note text) PARTITION BY LIST (scope);
        CREATE TABLE tenant.leaf PARTITION OF tenant.rows FOR VALUES IN (1, 2);
        CREATE INDEX ON tenant.leaf (scope, id);
        SELECT pgjobs.register_target('tenant.leaf', 'id', 'scope', 'created_at');
    """)
    conn.execute(f"ALTER TABLE tenant.rows OWNER TO {owner}")
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.leaf')").fetchall() == []
    conn.execute("SELECT pgjobs.submit_delete('tenant.leaf', '1')")


def test_a_typed_tables_row_type_is_not_its_code(conn: Conn, owner: str) -> None:
    """Following the tables' own dependencies (the partition keys) does not
    make the owner of a typed table's composite type an author: it cannot
    change the table (ALTER TYPE ... CASCADE needs the table's ownership), and
    its attributes' types are judged as the columns' types, as before."""
    conn.execute("""
        CREATE TYPE tenant.shape AS (id bigint, scope int, created_at timestamptz, note text);
        CREATE TABLE tenant.typed OF tenant.shape (
            id WITH OPTIONS NOT NULL, scope WITH OPTIONS NOT NULL,
            created_at WITH OPTIONS NOT NULL);
        CREATE INDEX ON tenant.typed (scope, id);
        SELECT pgjobs.register_target('tenant.typed', 'id', 'scope', 'created_at');
    """)
    conn.execute(f"ALTER TYPE tenant.shape OWNER TO {owner}")
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.typed')").fetchall() == []
    conn.execute("SELECT pgjobs.submit_delete('tenant.typed', '1')")
