"""Column grants count where a client sees jobs and targets too (h153).

Found (left by h146, 0e8d0aa): the shared privilege check accepts a role
that holds SELECT on every column of a target through column grants
(pgjobs._reads_every_column), but policy jobs_client_read on pgjobs.jobs,
view pgjobs.targets and the helpers behind them (pgjobs._controlled_job,
pgjobs._allowed_scope_keys_as, pgjobs._confined_targets_as,
pgjobs._row_security_confines_as) still asked SELECT on the table: such a
role submitted and read pages, but saw no other role's job on the target
nor the target itself, could not pause or cancel a job it may control,
and under pgjobs.allowed_scopes or ignore_row_security lost what a table
grant keeps. One refusal too many in each place.

Now one rule decides everywhere: each place asks the table grant, then
SELECT on every current column. A column-granted role sees exactly what a
table-granted role sees, no more; one column short, a NOINHERIT chain, a
grant on the partitions only see what a role with no SELECT sees. The
column test costs once per statement (an InitPlan), never per job row, and
not at all when the table grant answers (counted, not timed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, function_calls_as, make_role, scalar_as

Conn = psycopg.Connection[Any]

COLUMNS = ("id", "table_id", "n", "label", "data", "created_at")
ALL = ", ".join(COLUMNS)
CLIENT = "GRANT pgjobs_client TO {role}"
WRITES = "GRANT UPDATE, DELETE ON user_table_rows TO {role}"
LATER = '{"run_at": "2999-01-01T00:00:00Z"}'  # queued, never claimed

JOBS = "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM pgjobs.jobs"
TARGETS = "SELECT coalesce(array_agg(target::text ORDER BY target), '{}') FROM pgjobs.targets"
ITEMS = "SELECT count(*) FROM pgjobs.job_items"


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, Any]]:
    """user_table_rows seeded; `owner` (a table-granted client) has two
    queued jobs on it (scopes 1 and 2, each with an item). The roles asked:
    `table` (SELECT on the table), `columns` (SELECT on every column),
    `short` (every column but data), `none` (no SELECT), `through` (every
    column held by a group reached through a NOINHERIT role); all with
    UPDATE and DELETE on the table."""
    seed(conn, make_rows_target(conn), 60)
    roles: list[str] = []

    def role(label: str, *grants: str) -> str:
        made = make_role(conn, label, *grants)
        roles.append(made)
        return made

    owner = role("cgvowner", CLIENT, WRITES, "GRANT SELECT ON user_table_rows TO {role}")
    group = role("cgvgroup", f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}")
    middle = role("cgvmid", "ALTER ROLE {role} NOINHERIT", f"GRANT {group} TO {{role}}")
    made = {
        "table": role("cgvtable", CLIENT, WRITES, "GRANT SELECT ON user_table_rows TO {role}"),
        "columns": role("cgvcols", CLIENT, WRITES,
                        f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}"),
        "short": role("cgvshort", CLIENT, WRITES,
                      "GRANT SELECT (id, table_id, n, label, created_at) ON user_table_rows "
                      "TO {role}"),
        "none": role("cgvnone", CLIENT, WRITES),
        "through": role("cgvthru", CLIENT, WRITES, f"GRANT {middle} TO {{role}}"),
    }
    jobs = []
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {owner}")
        for scope in ("1", "2"):
            jobs.append(int(scalar(conn, "SELECT pgjobs.submit_items('resize', "
                                         "'user_table_rows', %s, '[{\"a\": 1}]', %s)",
                                   (scope, LATER))))
    yield {"owner": owner, "jobs": jobs, **made}
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    conn.execute("DELETE FROM pgjobs.jobs")
    for name in reversed(roles):
        conn.execute(f"REVOKE ALL ON user_table_rows FROM {name}")
        drop_role(conn, name)


def _sees(conn: Conn, role: str) -> tuple[Any, ...]:
    """What role sees: job ids, targets, the items of those jobs."""
    return scalar_as(conn, role, JOBS), scalar_as(conn, role, TARGETS), scalar_as(conn, role, ITEMS)


def test_a_column_granted_role_sees_what_a_table_granted_role_sees(
        conn: Conn, world: dict[str, Any]) -> None:
    by_table = _sees(conn, world["table"])
    assert by_table == (world["jobs"], ["user_table_rows"], 2), by_table
    assert _sees(conn, world["columns"]) == by_table


@pytest.mark.parametrize("who", ["short", "through"])
def test_a_role_short_of_every_column_sees_what_a_role_without_select_sees(
        conn: Conn, world: dict[str, Any], who: str) -> None:
    """One column short; every column held only through a NOINHERIT role
    (PostgreSQL reads neither table for them): no other role's job, no
    target, no item."""
    assert _sees(conn, world["none"]) == ([], [], 0)
    assert _sees(conn, world[who]) == ([], [], 0)


def test_a_column_added_later_without_a_grant_hides_them_at_the_next_statement(
        conn: Conn, world: dict[str, Any]) -> None:
    role = world["columns"]
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN secret text DEFAULT 's'")
    assert _sees(conn, role) == ([], [], 0)
    conn.execute(f"GRANT SELECT (secret) ON user_table_rows TO {role}")
    assert _sees(conn, role) == _sees(conn, world["table"]) != ([], [], 0)


def test_the_role_may_control_another_roles_job_as_a_table_granted_role_may(
        conn: Conn, world: dict[str, Any]) -> None:
    """pgjobs._controlled_job asks what the policy asks: pause and resume
    (UPDATE, the custom kind's privilege) pass for the column-granted role;
    for the short role the job is an unknown id."""
    job = world["jobs"][0]
    status = "SELECT status FROM pgjobs.jobs WHERE id = %s"
    for who in ("table", "columns"):
        assert scalar_as(conn, world[who], "SELECT pgjobs.pause(%s)", (job,)) is True
        assert scalar(conn, status, (job,)) == "paused"
        assert scalar_as(conn, world[who], "SELECT pgjobs.resume(%s)", (job,)) is True
        assert scalar(conn, status, (job,)) == "queued"
    unknown = 1 + int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))
    answers = []
    for job_id in (job, unknown):
        with pytest.raises(psycopg.errors.NoDataFound) as caught:
            scalar_as(conn, world["short"], "SELECT pgjobs.pause(%s)", (job_id,))
        diag = caught.value.diag
        answers.append((re.sub(r"\d+", "J", diag.message_primary or ""), diag.message_hint))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == "job J does not exist" and answers[0][1], answers
    assert scalar(conn, status, (job,)) == "queued"


def test_tenancy_keys_cover_a_column_granted_target(
        conn: Conn, world: dict[str, Any]) -> None:
    """pgjobs.allowed_scopes = '01' allows scope 1 of an integer scope
    column by its canonical key only (pgjobs._allowed_scope_keys_as), which
    is made for a target the role reads through column grants too."""
    conn.execute("SET pgjobs.allowed_scopes = '01'")
    by_table = _sees(conn, world["table"])
    assert by_table == ([world["jobs"][0]], ["user_table_rows"], 1), by_table
    assert _sees(conn, world["columns"]) == by_table
    assert _sees(conn, world["short"]) == ([], [], 0)


@pytest.mark.parametrize("ignored", [True, False])
def test_row_security_confines_a_column_granted_role_as_a_table_granted_one(
        conn: Conn, world: dict[str, Any], ignored: bool) -> None:
    """Row security on the target: registered with ignore_row_security the
    registration is read for the column-granted role as for the table-granted
    one (pgjobs._confined_targets_as, pgjobs._row_security_confines_as), and
    both see; without it neither does."""
    conn.execute("ALTER TABLE user_table_rows ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY odd ON user_table_rows USING (id % 2 = 1)")
    if ignored:
        conn.execute("""UPDATE pgjobs.target_registry
                           SET options = options || '{"ignore_row_security": true}'
                         WHERE target = 'user_table_rows'::regclass""")
    by_table = _sees(conn, world["table"])
    assert by_table == ((world["jobs"], ["user_table_rows"], 2) if ignored else ([], [], 0))
    assert _sees(conn, world["columns"]) == by_table
    assert _sees(conn, world["short"]) == ([], [], 0)


def test_grants_on_the_partitions_only_show_nothing_of_the_parent(
        conn: Conn, world: dict[str, Any]) -> None:
    conn.execute("CREATE TABLE pt (id bigint NOT NULL, scope int NOT NULL, n int, "
                 "created_at timestamptz NOT NULL DEFAULT now()) PARTITION BY LIST (scope)")
    conn.execute("CREATE TABLE pt_1 PARTITION OF pt FOR VALUES IN (1)")
    conn.execute("CREATE INDEX ON pt (scope, id)")
    conn.execute("SELECT pgjobs.register_target('pt', 'id', 'scope', 'created_at', NULL, '{}')")
    conn.execute(f"GRANT SELECT, UPDATE ON pt TO {world['owner']}")
    pt_job = int(scalar_as(conn, world["owner"], "SELECT pgjobs.submit_items('resize', 'pt', '1', "
                                                 "'[{\"a\": 1}]', %s)", (LATER,)))
    on_parent, on_parts = world["columns"], world["short"]
    conn.execute(f"GRANT SELECT (id, scope, n, created_at) ON pt TO {on_parent}")
    conn.execute(f"GRANT SELECT (id, scope, n, created_at) ON pt_1 TO {on_parts}")
    conn.execute(f"GRANT SELECT ON pt TO {world['table']}")
    assert scalar_as(conn, on_parent, JOBS) == scalar_as(conn, world["table"], JOBS) == [
        *world["jobs"], pt_job]
    assert scalar_as(conn, on_parent, TARGETS) == ["user_table_rows", "pt"]
    assert scalar_as(conn, on_parts, JOBS) == [] and scalar_as(conn, on_parts, TARGETS) == []


def test_the_column_test_costs_once_per_statement_and_nothing_for_a_table_grant(
        conn: Conn, world: dict[str, Any]) -> None:
    """200 more jobs of the owner: the column-granted role's read of
    pgjobs.jobs computes the list once (one call of _column_read_targets,
    the rule once per table with a column grant, never per job row); the
    table-granted role's never computes it."""
    conn.execute("""INSERT INTO pgjobs.jobs (kind, target, scope, submitted_by,
                                             submitted_by_oid, payload)
                    SELECT kind, target, scope, submitted_by, submitted_by_oid, payload
                      FROM pgjobs.jobs, generate_series(1, 100)""")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 202
    for role in (world["table"], world["columns"]):
        assert scalar_as(conn, role, "SELECT count(*) FROM pgjobs.jobs") == 202
    reads = "SELECT * FROM pgjobs.jobs"
    by_table = function_calls_as(conn, world["table"], reads)
    assert "_column_read_targets" not in by_table, by_table
    by_columns = function_calls_as(conn, world["columns"], reads)
    assert by_columns.get("_column_read_targets") == 1, by_columns
    with_column_grants = scalar(conn, """SELECT count(DISTINCT attrelid) FROM pg_attribute
                                          WHERE attacl IS NOT NULL AND attnum > 0""")
    assert by_columns.get("_reads_every_column", 0) <= with_column_grants < 202, by_columns
    assert by_columns.get("_confined_targets") == by_table.get("_confined_targets") == 1, \
        (by_columns, by_table)


# Ways to hold (or not) SELECT on every column that the engine's shared
# check is tested with (tests/test_trust_column_grants_attacks.py), each a
# role's grants after CLIENT and WRITES; the same judge here: the role sees
# what a table-granted role sees exactly when PostgreSQL lets it read every
# column itself, else what a role without SELECT sees.
VARIANTS = {
    "a dropped column": (f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}",
                         "ALTER TABLE user_table_rows ADD COLUMN gone text",
                         "ALTER TABLE user_table_rows DROP COLUMN gone"),
    "a generated column added later": (
        f"GRANT SELECT ({ALL}) ON user_table_rows TO {{role}}",
        "ALTER TABLE user_table_rows ADD COLUMN twice integer "
        "GENERATED ALWAYS AS (n * 2) STORED"),
    "PUBLIC holds the other columns": (
        "GRANT SELECT (label) ON user_table_rows TO {role}",
        "GRANT SELECT (id, table_id, n, data, created_at) ON user_table_rows TO PUBLIC"),
    "PUBLIC one short": (
        "GRANT SELECT (label) ON user_table_rows TO {role}",
        "GRANT SELECT (id, table_id, n, data) ON user_table_rows TO PUBLIC"),
    "every column but for writing": (
        f"GRANT INSERT ({ALL}), UPDATE ({ALL}), REFERENCES ({ALL}) ON user_table_rows "
        "TO {role}",),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_way_to_hold_columns_is_judged_as_postgresql_does(
        conn: Conn, world: dict[str, Any], variant: str) -> None:
    role = make_role(conn, "cgvvar", CLIENT, WRITES)
    try:
        for statement in VARIANTS[variant]:
            conn.execute(statement.format(role=role))
        try:
            scalar_as(conn, role, "SELECT count(t) FROM user_table_rows t")
            reads = True
        except psycopg.errors.InsufficientPrivilege:
            reads = False
        expected = _sees(conn, world["table"]) if reads else ([], [], 0)
        assert expected != ([], [], 0) or not reads
        assert _sees(conn, role) == expected, (variant, reads)
        listed = scalar_as(conn, role, "SELECT pgjobs._column_read_targets()::text[]")
        assert listed == (["user_table_rows"] if reads else []), (variant, listed)
    finally:
        conn.execute("REVOKE ALL ON user_table_rows FROM PUBLIC")
        conn.execute(f"REVOKE ALL ON user_table_rows FROM {role}")
        drop_role(conn, role)
