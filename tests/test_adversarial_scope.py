"""An adversarial pass on the row set, as a low-privilege tenant of a shared
table: a pgjobs_client member holding only the table rights the docs say a
client needs, confined by pgjobs.allowed_scopes to tenant 1.

The documents of every tenant carry fields spelt like the scope column
(`table_id`, `Table_Id`, `TABLE_ID`, a quoted `"table_id"`, a full-width
look-alike `ｔable_id`, a trailing blank), a literal dotted key next to the
nested path it looks like (`a.b` and `a: {b}`), numbers and their strings,
nulls, missing fields and arrays. Every hostile filter (odd case, quotes,
look-alikes, dotted and nested paths, NULL/empty/array values, operators,
"1" against 1, duplicate keys in the JSON text, keys equal to the scope
column, keys of another tenant) must end one of two ways:

- refused with 22023 (or 42501) before anything is written: no job row, no
  row changed; or
- run, and then the rows the delete removed (or the backfill changed) are
  exactly the rows `pgjobs.preview` counted and sampled for the same call,
  exactly the rows `pgjobs.visible_count` counted, all of tenant 1, and
  the rows a Python reference evaluator of the filter language selects
  (tests/support/filter_reference.py) among tenant 1's rows.

No job may touch a row outside the scope the client may act on, and the
preview must equal what runs. Duplicate keys are passed as JSON text:
jsonb keeps the last, and so must everything that reads the filter.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, run_job, scalar
from tests.support.filter_reference import FilterError, matches
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

ROWS = 90
TENANT = "1"
COLUMNS = {"id", "table_id", "n", "label", "created_at", "data"}

# Raw JSON text (duplicate keys included on purpose).
FILTERS = [
    "{}",
    # the scope column, spelt right and wrong, as a column and as fields
    '{"table_id": 1}',
    '{"table_id": "1"}',
    '{"table_id": " 01"}',
    '{"table_id": 2}',
    '{"table_id": {"$ne": 2}}',
    '{"table_id": {"$in": [1, 2, 3]}}',
    '{"table_id": {"$nin": [2, 3]}}',
    '{"$not": {"table_id": 2}}',
    '{"$or": [{"table_id": 2}, {"k": 1}]}',
    '{"$or": [{"table_id": {"$gte": 1}}, {"k": 1}]}',
    '{"Table_Id": 2}',
    '{"TABLE_ID": {"$ne": 1}}',
    '{"\\"table_id\\"": 2}',
    '{"\\uff54able_id": 2}',
    '{"table_id ": 2}',
    '{"data.table_id": 2}',
    '{"tenant.id": {"$ne": 1}}',
    '{"tenant": {"id": 2}}',
    # duplicate keys: the last one counts, everywhere
    '{"k": 1, "k": 2}',
    '{"table_id": 2, "table_id": 1}',
    '{"k": {"$ne": 1}, "k": 3}',
    '{"$or": [{"table_id": 2}], "$or": [{"k": 4}]}',
    # "1" against 1, on columns and on fields
    '{"k": 1}',
    '{"k": "1"}',
    '{"k": 1.0}',
    '{"k": 1e0}',
    '{"s": 1}',
    '{"s": "1"}',
    '{"k": {"$in": ["1", 1]}}',
    '{"k": {"$gte": 3}}',
    '{"n": "1"}',
    '{"n": " 1"}',
    '{"n": {"$ne": "01"}}',
    '{"n": {"$gt": 2.5}}',
    # keys of another tenant's rows
    '{"id": 4}',
    '{"id": "4"}',
    '{"id": {"$in": [3, 4, 5, 6]}}',
    '{"$or": [{"id": 4}, {"id": 3}]}',
    '{"id": {"$ne": 4}}',
    # dotted, nested, literal-dot keys
    '{"a.b": 1}',
    '{"a": {"b": 1}}',
    '{"a": {"$eq": {"b": 1}}}',
    '{"a.b": {"$ne": 1}}',
    # null, missing, arrays
    '{"nul": null}',
    '{"nul": {"$exists": false}}',
    '{"nul": {"$ne": null}}',
    '{"tags": ["x", "y"]}',
    '{"tags": "x"}',
    '{"tags": {"$contains": "x"}}',
    '{"k": [1]}',
    '{"data": null}',
    '{"data": {"$exists": true}}',
    # LIKE's wildcards in a substring search
    '{"label": {"$contains": "%"}}',
    '{"label": {"$contains": "_"}}',
    '{"label": {"$contains": "LABEL 3"}}',
    # nesting
    '{"$and": [{"k": 1}, {"$or": [{"table_id": 2}, {"Table_Id": 2}]}]}',
    '{"$not": {"$not": {"k": 1}}}',
    '{"k": {"$nin": [1, 2]}}',
    '{"k": {"$not": {"$in": [1]}}}',
]


def _document(g: int) -> dict[str, Any]:
    other = g % 3 + 2 if g % 3 + 1 == 1 else 1  # never the row's own tenant
    doc: dict[str, Any] = {
        "k": g % 5, "s": str(g % 5),
        "table_id": other, "Table_Id": other, "TABLE_ID": other,
        '"table_id"': other, "\uff54able_id": other, "table_id ": other,
        "tenant": {"id": other},
        "a.b": g % 2, "a": {"b": (g // 2) % 2},
    }
    if g % 4 == 0:
        doc["nul"] = None
    if g % 6 == 0:
        doc["tags"] = ["x", "y"]
    elif g % 6 == 1:
        doc["tags"] = ["x"]
    return doc


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A shared table of three tenants and a pgjobs_client member with the
    table rights a client gets (docs/operations.md, Roles)."""
    build_target(conn, "user_table_rows", """
            id bigint NOT NULL,
            table_id int NOT NULL,
            n integer,
            label text,
            data jsonb,
            created_at timestamptz NOT NULL DEFAULT now()""",
                 scope="table_id", document="data", index="unique")
    for g in range(1, ROWS + 1):
        conn.execute("INSERT INTO user_table_rows VALUES (%s, %s, %s, %s, %s,"
                     " now() - interval '1 day' + %s * interval '1 second')",
                     (g, g % 3 + 1, g % 7, f"label {g}" + ("%" if g % 9 == 0 else ""),
                      None if g % 15 == 0 else json.dumps(_document(g)), g))
    role = f"adv_scope_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def _rows(conn: Conn) -> dict[int, dict[str, Any]]:
    cur = conn.execute("SELECT id, table_id, n, label, created_at, data FROM user_table_rows")
    return {r[0]: {"id": r[0], "table_id": r[1], "n": r[2], "label": r[3],
                   "created_at": r[4], "data": r[5]} for r in cur.fetchall()}


def _reference(rows: dict[int, dict[str, Any]], filter_text: str) -> set[int] | None:
    """Tenant 1's keys the reference evaluator selects; None where the filter
    is outside what the reference models (a column compared with text it
    would cast, created_at)."""
    filter_ = json.loads(filter_text)
    try:
        return {key for key, row in rows.items() if row["table_id"] == int(TENANT)
                and matches(row, filter_, COLUMNS, "data")}
    except (FilterError, TypeError, ValueError):
        return None


def _restore(conn: Conn, before: dict[int, dict[str, Any]]) -> None:
    """Put tenant rows back as they were, so the next filter of the group
    starts from the same table (finished jobs mask nothing, hold no gate)."""
    conn.execute("DELETE FROM user_table_rows")
    with conn.cursor().copy("COPY user_table_rows (id, table_id, n, label, data, created_at)"
                            " FROM STDIN") as copy:
        for r in before.values():
            copy.write_row((r["id"], r["table_id"], r["n"], r["label"],
                            None if r["data"] is None else json.dumps(r["data"]),
                            r["created_at"]))


def _one(conn: Conn, role: str, kind: str, filter_text: str) -> None:
    """One hostile filter, submitted by the confined client: refused with
    nothing written, or run touching exactly its preview, in its scope."""
    before = _rows(conn)
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    options = {"kind": kind} | ({"set": {"label": "touched"}} if kind == "backfill" else {})
    try:
        with acting_as(conn, role, scopes=TENANT):
            preview = scalar(conn, "SELECT pgjobs.preview('user_table_rows', %s, %s::jsonb,"
                                   " '{}', %s)", (TENANT, filter_text, json.dumps(options)))
            counted = scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', %s,"
                                   " %s::jsonb)", (TENANT, filter_text))
            if kind == "delete":
                job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s,"
                                      " %s::jsonb)", (TENANT, filter_text))
            else:
                job_id = scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s,"
                                      " %s::jsonb, '{\"label\": \"touched\"}')",
                                (TENANT, filter_text))
    except (errors.InvalidParameterValue, errors.InsufficientPrivilege) as refused:
        assert (refused.diag.message_hint or "").strip(), refused
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
        assert _rows(conn) == before
        return
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    after = _rows(conn)
    if kind == "delete":
        touched = set(before) - set(after)
        assert set(after) <= set(before)
    else:
        assert set(after) == set(before)
        touched = {k for k in before if after[k] != before[k]}
        assert all(after[k]["label"] == "touched" for k in touched)
        assert all({**after[k], "label": None} == {**before[k], "label": None} for k in touched)
    outside = {k for k in touched if before[k]["table_id"] != int(TENANT)}
    assert not outside, f"rows of other tenants touched: {sorted(outside)}"
    assert preview["exact"] is True
    assert len(touched) == preview["matches"] == counted, preview["predicate"]
    assert preview["sample"] == [str(k) for k in sorted(touched)][:10]
    reference = _reference(before, filter_text)
    if reference is not None:
        assert touched == reference
    _restore(conn, before)


GROUP = 10  # filters per test: one database for ten cases keeps the file quick


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("first", range(0, len(FILTERS), GROUP))
def test_a_hostile_filter_is_refused_or_runs_exactly_its_preview_in_its_scope(
        conn: Conn, client: str, kind: str, first: int) -> None:
    failures = []
    for filter_text in FILTERS[first:first + GROUP]:
        try:
            _one(conn, client, kind, filter_text)
        except AssertionError as failed:
            failures.append(f"{filter_text}: {failed}")
    assert not failures, "\n".join(failures)
