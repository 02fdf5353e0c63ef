"""A json column's value check, deferred like the typo guard on an empty scope.

`{"meta": {"$ne": "1"}}` where the json or jsonb column meta holds objects
excludes no row, so the submits refuse it (tests/test_trust_structured_operands.py).
On a scope with no row yet there is nothing to judge it by: the typo guard
defers a filter's document paths to the job's start, but a filter whose
only judged keys are json columns had no path to defer, so the job was taken
as judged and, once rows came, a delete took every one of them. Now such a
job is deferred with an empty list and judged at its start (a delete's or
backfill's page, an export's claim), as a filter with document paths is;
tested over the kinds, targets with and without a document, the negated
forms, a valid filter (judged, then run), and a scope still empty.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import job, make_rows_target, scalar, seed
from tests.support.targets import Target

Conn = psycopg.Connection[Any]

EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"

WRONG = [
    {"meta": {"$ne": "1"}},
    {"meta": {"$nin": [[1]]}},
    {"$not": {"meta": {"a": "1"}}},
    {"$not": {"$or": [{"meta": {"$in": [{"A": 1}]}}]}},
]


def target(conn: Conn, document: bool) -> Target:
    made = make_rows_target(conn, document=document)
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN meta jsonb")
    return made


def submit(conn: Conn, kind: str, filter_: dict[str, Any],
           options: dict[str, Any] | None = None) -> int:
    flt, opts = json.dumps(filter_), json.dumps(options or {})
    if kind == "delete":
        sql = "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb, '{}', %s::jsonb)"
    elif kind == "backfill":
        sql = ("SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb, "
               "'{\"label\": \"x\"}', %s::jsonb)")
    else:
        sql = "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb, %s::jsonb)"
    return int(scalar(conn, sql, (EMPTY, flt, opts)))


def fill(conn: Conn, count: int = 5) -> None:
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, meta, created_at) "
                 "SELECT %s::int, g, 'keep', jsonb_build_object('a', g), %s::timestamptz "
                 "FROM generate_series(1, %s) g", (EMPTY, OLD, count))


def start(conn: Conn, kind: str, job_id: int) -> None:
    if kind == "export":
        conn.execute("SELECT pgjobs.claim_export(%s, 'w')", (job_id,)).fetchall()
    else:
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))


@pytest.mark.parametrize("document", [True, False], ids=["document", "no-document"])
@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
@pytest.mark.parametrize("filter_", WRONG, ids=[json.dumps(f) for f in WRONG])
def test_judged_at_its_start(conn: Conn, document: bool, kind: str,
                             filter_: dict[str, Any]) -> None:
    """Submitted on an empty scope, started once rows came: the job fails for
    good before it reads or writes a row, as its submit would have refused."""
    target(conn, document)
    job_id = submit(conn, kind, filter_)
    fill(conn)
    start(conn, kind, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "(SQLSTATE 22023)" in str(row["error"]), row
    assert 'filter compares column "meta"' in str(row["error"]), row
    assert row["done"] == 0, row
    assert [r[0] for r in conn.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))] == ["keep"] * 5


@pytest.mark.parametrize("document", [True, False], ids=["document", "no-document"])
def test_a_valid_one_is_judged_then_run(conn: Conn, document: bool) -> None:
    target(conn, document)
    job_id = submit(conn, "delete", {"meta": {"$ne": {"a": 1}}})
    assert job(conn, job_id)["payload"].get("unchecked_fields") == []
    fill(conn)
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    assert "unchecked_fields" not in row["payload"]
    assert [r[0] for r in conn.execute(
        "SELECT n FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))] == [1]


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_judged_or_allowed_is_not_deferred(conn: Conn, kind: str) -> None:
    """Only an empty scope defers: a scope with rows is judged at the submit
    (refused), the option skips both, and a filter without a json column's
    comparison (or a backfill's set) never leaves an empty list behind."""
    seed(conn, target(conn, True), 30)
    conn.execute("UPDATE user_table_rows SET meta = jsonb_build_object('a', n)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
                   (json.dumps(WRONG[0]),)))
    for filter_, options in ((WRONG[0], {"allow_unknown_fields": True}),
                             ({"meta": {"a": "1"}}, None), ({"label": {"$ne": "x"}}, None)):
        job_id = submit(conn, kind, filter_, options)
        assert "unchecked_fields" not in job(conn, job_id)["payload"], (filter_, options)



@pytest.mark.parametrize("document", [True, False], ids=["document", "no-document"])
def test_another_scope_is_refused_before_its_rows_are_read(conn: Conn, document: bool) -> None:
    """A json column's check read the scope's rows before the scope was
    checked against pgjobs.allowed_scopes: 22023 naming what another
    tenant's rows hold, where 42501 is due; now 42501 for either filter."""
    seed(conn, target(conn, document), 30)
    conn.execute("UPDATE user_table_rows SET meta = jsonb_build_object('a', n)")
    conn.execute("SET pgjobs.allowed_scopes = '2'")
    for filter_ in (WRONG[0], {"meta": {"$ne": {"a": 1}}}):
        for kind in ("delete", "backfill", "export"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                submit_on(conn, kind, "1", filter_)


def submit_on(conn: Conn, kind: str, scope: str, filter_: dict[str, Any]) -> int:
    flt = json.dumps(filter_)
    if kind == "delete":
        sql = "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb)"
    elif kind == "backfill":
        sql = ("SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb, "
               "'{\"label\": \"x\"}')")
    else:
        sql = "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb)"
    return int(scalar(conn, sql, (scope, flt)))


@pytest.mark.parametrize("filter_", [{"k": {"$ne": "3"}}, {"nest": {"$ne": {"a": "1"}}}],
                         ids=["type", "position"])
def test_a_bounded_look_says_so(conn: Conn, filter_: dict[str, Any]) -> None:
    """The check reads at most pgjobs.field_check_rows rows of a scope: past
    them it cannot say that no row holds the type, and its refusal said so
    anyway. It names the rows it read, as the typo guard does."""
    made = make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (id, table_id, n, label, data, created_at) "
                 "SELECT g, 1, 0, 'x', jsonb_build_object('k', g, 'nest', "
                 "jsonb_build_object('a', g)), now() - interval '1 day' "
                 "FROM generate_series(1, 1200) g")
    assert made.document
    conn.execute("SET pgjobs.field_check_rows = 1000")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
               (json.dumps(filter_),))
    message = caught.value.diag.message_primary or ""
    assert "none of the first 1000 rows of scope 1 holds" in message, message
    conn.execute("SET pgjobs.field_check_rows = 100000")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
               (json.dumps(filter_),))
    message = caught.value.diag.message_primary or ""
    assert "no row of scope 1 holds" in message, message
