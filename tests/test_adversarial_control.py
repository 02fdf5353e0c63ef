"""An adversarial pass on the control verbs, as low-privilege clients acting
on a job that is not theirs (docs/operations.md, Roles and Tenancy).

A tenant's job (every kind: delete with excluded keys, backfill, export,
import, a custom kind, a fan-out job with items) is attacked with `cancel`,
`pause`, `resume`, `retry` and `add_items`, each in the state where the verb
applies (so a state error cannot stand in for the access check), by:

- `other_tenant`: a pgjobs_client with every right on the shared table,
  confined by pgjobs.allowed_scopes to another tenant;
- `stranger`: a pgjobs_client with no right on the table;
- `reader`: a pgjobs_client holding SELECT only, against the jobs whose
  kind needs more (every kind but export).

The first two must get exactly what an unknown id gets (P0002, the same
message and hint but for the id): the job's existence is not theirs to
learn. The reader, who may see the job, gets 42501. Either way the job row,
its items and its excluded keys are unchanged, and the first two read none
of them through pgjobs.jobs, pgjobs.job_items, pgjobs.job_exclusions or
pgjobs.stats().
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import (
    CLIENT_SOURCE_PREFIX,
    CONTROL_VERBS,
    acting_as,
    drop_role,
    make_role,
)

Conn = psycopg.Connection[Any]

SUBMITS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{\"n\": 1}', '{3, 6}', "
              "'{\"allow_unknown_fields\": true}')",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{\"n\": 1}', "
                "'{\"label\": \"x\"}')",
    "export": "SELECT pgjobs.submit_export('user_table_rows', '1')",
    "import": "SELECT pgjobs.submit_import('user_table_rows', '1', "
              f"'{CLIENT_SOURCE_PREFIX}/a.csv')",
    "custom": "SELECT pgjobs.submit('resize', 'user_table_rows', '1')",
    "items": "SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', "
             "'[{\"a\": 1}, {\"a\": 2}]')",
}

VERBS = CONTROL_VERBS

UNKNOWN = 987654321


@pytest.fixture
def attackers(conn: Conn, client_roles: dict[str, str]) -> Iterator[dict[str, str]]:
    reader = make_role(conn, "advreader", "GRANT pgjobs_client TO {role}",
                       "GRANT SELECT ON user_table_rows TO {role}")
    stranger = make_role(conn, "advstranger", "GRANT pgjobs_client TO {role}")
    yield {"owner": client_roles["client"], "other_tenant": client_roles["other"],
           "reader": reader, "stranger": stranger}
    for role in (reader, stranger):
        drop_role(conn, role)


def _state(conn: Conn, job_id: int) -> Any:
    """Everything a verb could change, read as the session's own role."""
    return (conn.execute("SELECT to_jsonb(j) - 'target_columns' FROM pgjobs.jobs j"
                         " WHERE id = %s", (job_id,)).fetchone(),
            conn.execute("SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY i.id), '[]')"
                         " FROM pgjobs.job_items i WHERE job_id = %s", (job_id,)).fetchone(),
            conn.execute("SELECT count(*) FROM pgjobs.job_exclusions WHERE job_id = %s",
                         (job_id,)).fetchone())


def _owner(conn: Conn, role: str, sql: str, job_id: int) -> None:
    with acting_as(conn, role):
        assert scalar(conn, sql, (job_id,)) is True


def _refusal(conn: Conn, role: str, scopes: str | None, sql: str,
             job_id: int) -> psycopg.Error:
    with acting_as(conn, role, scopes), pytest.raises(psycopg.Error) as refused:
        conn.execute(sql, (job_id,))
    return refused.value


# SELECT is an export's own privilege: the reader may control an export.
CASES = [(kind, attacker) for kind in sorted(SUBMITS)
         for attacker in ("other_tenant", "stranger", "reader")
         if (kind, attacker) != ("export", "reader")]


@pytest.mark.parametrize(("kind", "attacker"), CASES)
def test_a_client_cannot_control_or_read_a_job_that_is_not_its_own(
        conn: Conn, attackers: dict[str, str], kind: str, attacker: str) -> None:
    owner, role = attackers["owner"], attackers[attacker]
    scopes = "2" if attacker == "other_tenant" else None
    with acting_as(conn, owner, "1"):
        job_id = scalar(conn, SUBMITS[kind])
    hidden = attacker != "reader"
    failures: list[str] = []

    def attack(verb: str) -> None:
        sql = VERBS[verb]
        before = _state(conn, job_id)
        refused = _refusal(conn, role, scopes, sql, job_id)
        assert _state(conn, job_id) == before, f"{verb} changed the job"
        if hidden:
            unknown = _refusal(conn, role, scopes, sql, UNKNOWN)
            assert refused.sqlstate == unknown.sqlstate == "P0002", (verb, str(refused))
            assert (refused.diag.message_primary or "").replace(f"job {job_id} ", "job N ") == (
                unknown.diag.message_primary or "").replace(f"job {UNKNOWN} ", "job N "), verb
            assert (refused.diag.message_hint or "") == (unknown.diag.message_hint or "")
        elif verb != "add_items" or kind == "items":
            assert isinstance(refused, errors.InsufficientPrivilege), (verb, str(refused))

    for verb in ("cancel", "pause", "add_items"):
        try:
            attack(verb)
        except AssertionError as failed:
            failures.append(str(failed))
    _owner(conn, owner, "SELECT pgjobs.pause(%s)", job_id)
    try:
        attack("resume")
    except AssertionError as failed:
        failures.append(str(failed))
    _owner(conn, owner, "SELECT pgjobs.cancel(%s)", job_id)
    try:
        attack("retry")
    except AssertionError as failed:
        failures.append(str(failed))

    if hidden:
        with acting_as(conn, role, scopes):
            seen = {name: scalar(conn, f"SELECT count(*) FROM pgjobs.{name} WHERE {column} = %s",
                                 (job_id,))
                    for name, column in [("jobs", "id"), ("job_items", "job_id"),
                                         ("job_exclusions", "job_id")]}
            stats = json.dumps(scalar(conn, "SELECT pgjobs.stats()"))
        if any(seen.values()):
            failures.append(f"read {seen}")
        if "user_table_rows" in stats or kind in stats:
            failures.append(f"stats shows the job: {stats}")
    assert not failures, "\n".join(failures)
