"""Trust, the reach a client can add later (h68): REFERENCES on a table a
target's statements reach.

pgjobs._untrusted_roles follows, from the target, every table whose foreign
key references it (or a table it reaches) with an ON DELETE or ON UPDATE
action, and refuses the target when such a table's owner lacks the engine's
rights (tests/test_trust_reached_tables.py). But a role holding REFERENCES
on a reached table may create such a table, and a trigger on it, at any
time: the runner checks trust at an attempt's first page and then once a
second, so a foreign key created while a delete ran was followed by nothing
for up to a second of pages, and every cascade of those pages fired the
client's AFTER trigger as the role running the job.

Found, on the old code: in every variant of the second test the client's
trigger ran as the superuser running the delete (17 times in one run) and
created a role; the job succeeded. Now REFERENCES on any table reached (or
on any of its columns), held by a role without the engine's rights or by
PUBLIC, refuses the target like TRIGGER does.

Also (the last tests): the tables and views a row-level security policy's
subquery reads are followed like a rule's (main returned no role for
either case), and the recursion ends on rule and foreign key cycles and
follows depth-2 cascades, partitioned referencing tables and inheritance
children (these pass on main too: regression tests).

The engine is the test's superuser, the embedded default and worst case.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.test_trust_reached_tables import CLIENT, GRABBED, _drop_roles, client_world

Conn = psycopg.Connection[Any]


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, int]]:
    """tests/test_trust_reached_tables.py's: the trusted target, the
    client's table and code, a delete and a backfill queued."""
    client_world(conn)
    yield {
        "delete": scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', '1')"),
        "backfill": scalar(conn, """SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}',"""
                                 """ '{"note": "x"}')"""),
    }
    conn.execute("RESET ROLE")
    _drop_roles(conn)

# Where the privilege is granted: (the superuser's setup, the grant, the
# table the client's foreign key references, the reason's table).
MID = ("CREATE TABLE tenant.mid (id bigint PRIMARY KEY"
       " REFERENCES tenant.rows (id) ON DELETE CASCADE);"
       " INSERT INTO tenant.mid SELECT id FROM tenant.rows;"
       " GRANT SELECT ON tenant.mid TO PUBLIC")
KID = ("CREATE TABLE tenant.kid () INHERITS (tenant.rows);"
       " CREATE UNIQUE INDEX ON tenant.kid (id)")
GRANTS = {
    "table": ("", "GRANT REFERENCES ON tenant.rows TO {client}", "tenant.rows"),
    "column": ("", "GRANT REFERENCES (id) ON tenant.rows TO {client}", "tenant.rows"),
    "public": ("", "GRANT REFERENCES ON tenant.rows TO PUBLIC", "tenant.rows"),
    "cascade_table": (MID, "GRANT REFERENCES ON tenant.mid TO {client}", "tenant.mid"),
    "inheritance_child": (KID, "GRANT REFERENCES ON tenant.kid TO {client}", "tenant.kid"),
}


def _setup(conn: Conn, how: str) -> str:
    setup, grant, _ = GRANTS[how]
    conn.execute("CREATE UNIQUE INDEX ON tenant.rows (id)")
    conn.execute(f"GRANT SELECT ON tenant.rows TO {CLIENT}")
    for statement in filter(str.strip, setup.split(";")):
        conn.execute(statement)
    return grant.format(client=CLIENT)


@pytest.mark.parametrize("how", sorted(GRANTS))
def test_references_on_a_reached_table_is_refused(
        conn: Conn, world: dict[str, int], how: str) -> None:
    grant = _setup(conn, how)
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    conn.execute(grant)
    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.rows')").fetchall()
    role = "PUBLIC" if how == "public" else CLIENT
    assert untrusted == [(role, untrusted[0][1])], untrusted
    assert "holds REFERENCES on" in untrusted[0][1] and GRANTS[how][2] in untrusted[0][1]
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc:
        conn.execute("SELECT pgjobs.submit_delete('tenant.rows', '2')")
    assert "holds REFERENCES on" in str(exc.value)
    doctor = conn.execute("SELECT status, detail FROM pgjobs.doctor('tenant.rows')"
                          " WHERE check_name = 'target.trusted'").fetchall()
    assert doctor and doctor[0][0] == "fail" and role in doctor[0][1]


@pytest.mark.parametrize("how", ["table", "column", "cascade_table"])
def test_a_cascade_a_client_adds_while_a_delete_runs_never_runs_its_trigger(
        conn: Conn, world: dict[str, int], make_conn: Callable[..., Conn], how: str) -> None:
    """The attack: a delete of one row a page is running; the client, holding
    REFERENCES, creates its table referencing the target (or a table that
    cascades from it) ON DELETE CASCADE, with an AFTER trigger, between two
    pages. The job must fail (at its first page) and the trigger never run
    as the job's role."""
    grant = _setup(conn, how)
    conn.execute("SELECT pgjobs.cancel(%s)", (world["backfill"],))
    job = scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', '2', '{}', '{}',"
                       " '{\"page_size\": 1}')")
    conn.execute(grant)
    referenced = GRANTS[how][2]
    engine = make_conn()
    thread = threading.Thread(
        target=lambda: engine.execute("CALL pgjobs.run_job(%s)", (job,)))
    thread.start()
    try:
        # Until the first page is done (old code) or the job has ended.
        for _ in range(5000):
            done, status = conn.execute("SELECT done, status FROM pgjobs.jobs WHERE id = %s",
                                        (job,)).fetchone() or (0, None)
            if done or status in ("failed", "succeeded"):
                break
            time.sleep(0.002)
        client = make_conn()
        client.execute(f"SET ROLE {CLIENT}")
        client.execute(f"CREATE TABLE tenant.child (n bigint REFERENCES {referenced} (id)"
                       " ON DELETE CASCADE);"
                       f" INSERT INTO tenant.child SELECT id FROM {referenced};"
                       " CREATE TRIGGER grab AFTER DELETE ON tenant.child"
                       " FOR EACH ROW EXECUTE FUNCTION tenant.grab()")
    finally:
        thread.join()
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job,)).fetchone() or (None, None)
    assert conn.execute("SELECT who, su, what FROM tenant.log").fetchall() == []
    assert scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (GRABBED,)) == 0
    assert status == "failed" and "holds REFERENCES on" in error, (status, error)
    assert scalar(conn, "SELECT count(*) FROM tenant.rows WHERE scope = 2") == 20


def test_references_held_by_a_trusted_role_is_trusted(
        conn: Conn, world: dict[str, int]) -> None:
    """Only a role without the engine's rights is refused for it: a grant to
    a member of the engine's role changes nothing, and the job runs."""
    conn.execute(f"CREATE ROLE {CLIENT}_trusted NOLOGIN IN ROLE {conn.info.user}")
    try:
        conn.execute(f"GRANT REFERENCES ON tenant.rows TO {CLIENT}_trusted")
        assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')"
                            ).fetchall() == []
        conn.execute("CALL pgjobs.run_job(%s)", (world["delete"],))
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                      (world["delete"],)) == "succeeded"
    finally:
        conn.execute(f"REVOKE ALL ON tenant.rows FROM {CLIENT}_trusted")
        conn.execute(f"DROP ROLE {CLIENT}_trusted")


# Shapes the recursion must follow, and end on: (the superuser's statements,
# the client's, the table the reason names).
SHAPES = {
    "cascade_depth_2": (MID + "; GRANT REFERENCES ON tenant.mid TO {client};"
                        " SET ROLE {client}; CREATE TABLE tenant.deep (n bigint"
                        " REFERENCES tenant.mid (id) ON DELETE CASCADE); RESET ROLE;"
                        " REVOKE REFERENCES ON tenant.mid FROM {client}", "tenant.deep"),
    "partitioned_referencing_table": (
        "CREATE TABLE tenant.pref (n bigint REFERENCES tenant.rows (id) ON DELETE CASCADE)"
        " PARTITION BY RANGE (n);"
        " CREATE TABLE tenant.pref1 PARTITION OF tenant.pref FOR VALUES FROM (0) TO (100);"
        " ALTER TABLE tenant.pref1 OWNER TO {client}", "tenant.pref1"),
    "inheritance_child": (KID + "; ALTER TABLE tenant.kid OWNER TO {client}", "tenant.kid"),
    "rule_cycle": (
        "CREATE TABLE tenant.a (id bigint); CREATE TABLE tenant.b (id bigint);"
        " CREATE RULE r1 AS ON INSERT TO tenant.a DO ALSO INSERT INTO tenant.b VALUES (new.id);"
        " CREATE RULE r2 AS ON INSERT TO tenant.b DO ALSO INSERT INTO tenant.a"
        " SELECT 1 WHERE false;"
        " CREATE RULE reach AS ON DELETE TO tenant.rows DO ALSO INSERT INTO tenant.a"
        " VALUES (old.id); ALTER TABLE tenant.b OWNER TO {client}", "tenant.b"),
    "fk_cycle": (
        "CREATE TABLE tenant.x (id bigint PRIMARY KEY, y bigint);"
        " CREATE TABLE tenant.y (id bigint PRIMARY KEY"
        " REFERENCES tenant.x (id) ON DELETE CASCADE);"
        " ALTER TABLE tenant.x ADD FOREIGN KEY (y) REFERENCES tenant.y (id) ON DELETE CASCADE;"
        " ALTER TABLE tenant.x ADD FOREIGN KEY (id) REFERENCES tenant.rows (id)"
        " ON DELETE CASCADE; ALTER TABLE tenant.y OWNER TO {client}", "tenant.y"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_recursion_follows_every_shape_and_ends(
        conn: Conn, world: dict[str, int], shape: str) -> None:
    statements, table = SHAPES[shape]
    conn.execute("CREATE UNIQUE INDEX ON tenant.rows (id)")
    for statement in filter(str.strip, statements.split(";")):
        conn.execute(statement.format(client=CLIENT))
    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.rows')").fetchall()
    assert untrusted == [(CLIENT, f"owns table {table}")]


# A policy's subquery reads a client's view (whose function runs as the role
# the policy confines) or a client's table (whose own policies do): on the
# target, or on a trusted table a rule on the target writes into.
POLICIES = {
    "target_policy_reads_clients_view": (
        "ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY p ON tenant.rows USING (id > (SELECT min(id) - 1000 FROM tenant.peek))",
        "tenant.peek"),
    "reached_tables_policy_reads_clients_table": (
        "CREATE TABLE tenant.mine (id bigint);"
        " ALTER TABLE tenant.mine ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY p ON tenant.mine WITH CHECK"
        " (id IN (SELECT id FROM tenant.audit) OR true);"
        " CREATE RULE reach AS ON DELETE TO tenant.rows"
        " DO ALSO INSERT INTO tenant.mine (id) VALUES (old.id)",
        "tenant.audit"),
}


@pytest.mark.parametrize("how", sorted(POLICIES))
def test_a_policy_reading_a_clients_relation_is_refused(
        conn: Conn, world: dict[str, int], how: str) -> None:
    statements, table = POLICIES[how]
    for statement in filter(str.strip, statements.split(";")):
        conn.execute(statement)
    untrusted = conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles("
                             "'tenant.rows')").fetchall()
    assert [r[0] for r in untrusted] == [CLIENT], untrusted
    assert table in untrusted[0][1] or "tenant.grab_read" in untrusted[0][1], untrusted
