"""A role that may read every column of a table through column grants is
answered as a role with SELECT on the table; one column short, refused as
before (h146).

Found: GRANT SELECT (every column) ON t lets plain PostgreSQL read (and,
with DELETE, delete) every row of t, but the engine's privilege checks
(pgjobs._require_entry, then pgjobs._grant_problem through
pgjobs._require / pgjobs._require_role) asked SELECT on the table and
refused such a role with 42501: one refusal too many. Now SELECT on every
column of the table at the time of the call counts as SELECT on it
(pgjobs._reads_every_column): every column, not only the registered ones,
so nothing the engine reads or deletes for the role tells it anything it
could not read itself. Kept: one column missing (one added later without
a grant, one revoked between two calls, a job submitted before the revoke
and run after) is the same 42501 as before; row-level security is
refused as before (tests/test_trust_owner_reads.py set-up (b) and
tests/test_trust_partial_privilege.py hold the rest).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, scalar_as

Conn = psycopg.Connection[Any]

COLUMNS = ("id", "table_id", "n", "label", "data", "created_at")
WRITES = "GRANT UPDATE, DELETE ON user_table_rows TO {role}"

# Each call as a client makes it, and whether its answer is a job id (a
# submit: compared by succeeding) or an answer compared with the table
# grant's.
CALLS = {
    "submit_delete": ("""SELECT pgjobs.submit_delete('user_table_rows', '1',
                                                     '{"n": 3}')""", "job"),
    "submit_backfill": ("""SELECT pgjobs.submit_backfill('user_table_rows', '2', '{"n": 4}',
                                                         '{"label": "x"}')""", "job"),
    "submit_export": ("""SELECT pgjobs.submit_export('user_table_rows', '3', '{"n": 5}')""",
                      "job"),
    "preview_delete": ("""SELECT pgjobs.preview('user_table_rows', '1', '{"n": 3}')""",
                       "answer"),
    "preview_backfill": ("""SELECT pgjobs.preview('user_table_rows', '2', '{"n": 4}', '{}',
                                                  '{"kind": "backfill"}')""", "answer"),
    "visible": ("""SELECT jsonb_agg(v ORDER BY v ->> 'id')
                     FROM pgjobs.visible('user_table_rows', '1', '{"n": 2}', NULL, 1000) v""",
                "answer"),
    "visible_count": ("SELECT pgjobs.visible_count('user_table_rows', '1')", "answer"),
    "mask": ("SELECT pgjobs.mask('user_table_rows', '1')", "answer"),
}


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 300)
    made = {
        "table": make_role(conn, "cgtable", "GRANT pgjobs_client TO {role}", WRITES,
                           "GRANT SELECT ON user_table_rows TO {role}"),
        "columns": make_role(conn, "cgcols", "GRANT pgjobs_client TO {role}", WRITES,
                             f"GRANT SELECT ({', '.join(COLUMNS)}) ON user_table_rows "
                             "TO {role}"),
        "short": make_role(conn, "cgshort", "GRANT pgjobs_client TO {role}", WRITES,
                           f"GRANT SELECT ({', '.join(COLUMNS[:-2])}, created_at) "
                           "ON user_table_rows TO {role}"),  # not data
    }
    yield made
    for role in made.values():
        drop_role(conn, role)


def _refused(conn: Conn, role: str, sql: str) -> errors.InsufficientPrivilege:
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        scalar_as(conn, role, sql)
    return caught.value


def _rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, n, label FROM user_table_rows ORDER BY id").fetchall()


def _drive(conn: Conn, job_id: int) -> str:
    """Claim the job and run its pages as the engine does; its final status."""
    claimed = conn.execute("SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,)).fetchone()
    if claimed is not None and claimed[0] is not None:
        for _ in range(1000):
            state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, claimed[0]))
            if state not in ("more", "retry"):
                break
    return str(scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)))


@pytest.mark.parametrize("call", sorted(CALLS))
def test_select_on_every_column_is_answered_as_select_on_the_table(
        conn: Conn, roles: dict[str, str], call: str) -> None:
    sql, what = CALLS[call]
    by_table = scalar_as(conn, roles["table"], sql)
    conn.execute("DELETE FROM pgjobs.jobs")  # the second submit is not held by the first
    by_columns = scalar_as(conn, roles["columns"], sql)
    if what == "job":
        assert isinstance(by_table, int) and isinstance(by_columns, int)
        assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s",
                      (by_columns,)) == roles["columns"]
    else:
        if call.startswith("preview"):  # its time, and the snapshot in its predicate
            for answer in (by_table, by_columns):
                del answer["elapsed_ms"], answer["predicate"]
        assert by_columns == by_table, (by_columns, by_table)
        assert by_columns  # an answer that tells something


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_column_granted_roles_job_runs_as_a_table_granted_roles_does(
        conn: Conn, roles: dict[str, str], kind: str) -> None:
    """The engine asks the submitter's privileges again as the job runs
    (pgjobs._submitter_problem): column grants pass there too."""
    sql = CALLS[f"submit_{kind}"][0]
    scope, n = (1, 3) if kind == "delete" else (2, 4)
    # Rows created after the submit (the seed's future ones) are not the job's.
    matched = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = %s AND n = %s"
                           " AND created_at <= now()", (scope, n))
    assert matched > 0
    job_id = int(scalar_as(conn, roles["columns"], sql))
    assert _drive(conn, job_id) == "succeeded"
    left = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = %s AND n = %s"
                        " AND created_at <= now()", (scope, n))
    changed = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE label = 'x'")
    assert (left, changed) == ((0, 0) if kind == "delete" else (matched, matched))


def _assert_same_refusal(conn: Conn, refusal: errors.InsufficientPrivilege, role: str) -> None:
    """The refusal of a role with no SELECT at all on the table: today's."""
    message = refusal.diag.message_primary or ""
    assert f"role {role} lacks SELECT on public.user_table_rows" in message, message
    assert (refusal.diag.message_hint or "").startswith(
        f"GRANT SELECT ON public.user_table_rows TO {role}"), refusal.diag.message_hint


@pytest.mark.parametrize("call", sorted(CALLS))
def test_one_column_missing_is_refused_as_before(
        conn: Conn, roles: dict[str, str], call: str) -> None:
    before = _rows(conn)
    refusal = _refused(conn, roles["short"], CALLS[call][0])
    _assert_same_refusal(conn, refusal, roles["short"])
    assert _rows(conn) == before
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_column_added_later_without_a_grant_refuses_the_next_call(
        conn: Conn, roles: dict[str, str]) -> None:
    role = roles["columns"]
    assert scalar_as(conn, role, CALLS["visible_count"][0]) > 0
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN secret text DEFAULT 'hidden'")
    for call in ("visible_count", "visible", "submit_delete", "preview_delete"):
        _assert_same_refusal(conn, _refused(conn, role, CALLS[call][0]), role)
    conn.execute(f"GRANT SELECT (secret) ON user_table_rows TO {role}")
    assert scalar_as(conn, role, CALLS["visible_count"][0]) > 0


def test_a_revoke_of_one_column_between_two_calls_refuses_the_second(
        conn: Conn, roles: dict[str, str]) -> None:
    role = roles["columns"]
    job_id = int(scalar_as(conn, role, CALLS["submit_delete"][0]))
    assert scalar_as(conn, role, CALLS["visible"][0])
    conn.execute(f"REVOKE SELECT (label) ON user_table_rows FROM {role}")
    _assert_same_refusal(conn, _refused(conn, role, CALLS["visible"][0]), role)
    _assert_same_refusal(conn, _refused(conn, role, CALLS["submit_delete"][0]), role)
    # The job submitted before the revoke deletes nothing once it runs.
    before = _rows(conn)
    assert _drive(conn, job_id) != "succeeded"
    assert _rows(conn) == before
    error = scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert "lacks SELECT" in json.dumps(error), error


def test_row_level_security_refuses_a_column_granted_role_as_before(
        conn: Conn, roles: dict[str, str]) -> None:
    conn.execute("ALTER TABLE user_table_rows ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY odd ON user_table_rows USING (id % 2 = 1)")
    for call in ("visible", "submit_delete"):
        refusal = _refused(conn, roles["columns"], CALLS[call][0])
        assert "row-level security" in (refusal.diag.message_primary or ""), refusal
        assert refusal.diag.message_hint
