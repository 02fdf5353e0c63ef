"""The value-type check looks inside object and array operands, and at json columns.

`{"k": {"$ne": "3"}}` on numbers excludes no row, so it is refused
(tests/test_adversarial_filters.py). The check compared only the operand's
own JSON type with the field's: an object or array operand passed whatever
it held, and a key naming a json or jsonb column was never checked. A value
compared whole equals only one with the same fields and elements of the same
types, so each of these negated comparisons excluded no row and a delete
took the whole scope (preview: "matches" = every row):

- `{"nest": {"$ne": {"a": "1"}}}` where nest.a holds numbers;
- `{"$not": {"nest": {"A": 1}}}` (a misspelt or differently cased key inside);
- `{"tags": {"$ne": ["a", 1]}}` where tags hold arrays of strings;
- `{"objs": {"$ne": [{"x": "1"}]}}` (objects in arrays);
- `{"meta": {"$ne": "1"}}` and `{"$not": {"meta": {"a": "1"}}}` on a jsonb column.

pgjobs._require_value_types (every entry point that judges a filter: the
submits, preview, and the deferred judgment at a job's start) now asks that
each field and element inside such an operand is one some row of the scope
holds, with that type (pgjobs._operand_positions), and judges json columns'
equalities as it judges document fields. Tested as a class over operators,
nesting, arrays of objects, key spellings, null inside, columns, every
entry point, the deferred judgment, and keys that would break a path or SQL.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import job, make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]

FULL = "1"
EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"

# (filter, what the message names, the position, the type no row holds there)
# on the fixture's rows: nest {"a": number}, tags ["a", "b"], objs [{"x":
# number}], and the jsonb column meta {"a": number}.
REFUSED = [
    ({"nest": {"$ne": {"a": "1"}}}, 'document field "nest"', "nest.a", "string"),
    ({"$not": {"nest": {"A": 1}}}, 'document field "nest"', "nest.A", "number"),
    ({"nest": {"$ne": {"a ": 1}}}, 'document field "nest"', "nest.a ", "number"),
    ({"nest": {"$nin": [{"a": 1}, {"a": 1, "b": 1}]}}, 'document field "nest"', "nest.b",
     "number"),
    ({"nest": {"$not": {"$eq": {"a": True}}}}, 'document field "nest"', "nest.a", "boolean"),
    ({"nest": {"$ne": {"a": 1, "b": None}}}, 'document field "nest"', "nest.b", "null"),
    ({"nest": {"$not": {"$in": [{"a": [1]}]}}}, 'document field "nest"', "nest.a", "array"),
    ({"tags": {"$ne": ["a", 1]}}, 'document field "tags"', "tags[]", "number"),
    ({"$not": {"tags": [["a"]]}}, 'document field "tags"', "tags[]", "array"),
    ({"objs": {"$ne": [{"x": "1"}]}}, 'document field "objs"', "objs[].x", "string"),
    ({"objs": {"$nin": [[{"X": 1}]]}}, 'document field "objs"', "objs[].X", "number"),
    ({"$or": [{"label": "x"}, {"$and": [{"n": 1}, {"objs": {"$ne": [{"x": {"y": 1}}]}}]}]},
     'document field "objs"', "objs[].x", "object"),
    ({"meta": {"$ne": "1"}}, 'column "meta"', None, "string"),
    ({"$not": {"meta": {"a": "1"}}}, 'column "meta"', "meta.a", "string"),
    ({"meta": {"$nin": [{"A": 1}]}}, 'column "meta"', "meta.A", "number"),
]

ACCEPTED = [
    {"nest": {"$ne": {"a": 1}}},
    {"$not": {"nest": {"a": 2}}},
    {"nest": {"$nin": [{"a": 1}, {"a": 2}]}},
    {"nest": {"a": "1"}},  # matches nothing: never more than meant
    {"tags": {"$ne": ["a", "b"]}},
    {"tags": {"$ne": []}},
    {"objs": {"$ne": [{"x": 1}]}},
    {"meta": {"$ne": {"a": 1}}},
    {"meta": {"$not": {"$contains": "a"}}},  # a column's $contains reads its text
    {"label": {"$ne": 5}},  # a column of another type: compared as its type
]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN meta jsonb")
    seed(conn, target, 90)
    conn.execute("UPDATE user_table_rows SET meta = jsonb_build_object('a', n), "
                 "data = data || jsonb_build_object('tags', '[\"a\", \"b\"]'::jsonb, "
                 "'objs', jsonb_build_array(jsonb_build_object('x', n)))")
    return conn


def submit(conn: Conn, kind: str, scope: str, filter_: dict[str, Any],
           options: dict[str, Any] | None = None) -> int:
    opts = json.dumps(options or {})
    flt = json.dumps(filter_)
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, flt, opts)))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, "
                                "%s::jsonb, '{\"label\": \"x\"}', %s::jsonb)",
                          (scope, flt, opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb, "
                            "%s::jsonb)", (scope, flt, opts)))


def preview(conn: Conn, kind: str, filter_: dict[str, Any],
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    result = scalar(conn, "SELECT pgjobs.preview('user_table_rows', %s, %s::jsonb, '{}', "
                          "%s::jsonb)", (FULL, json.dumps(filter_),
                                         json.dumps({"kind": kind, **(options or {})})))
    assert isinstance(result, dict)
    return result


ENTRIES = {
    "submit_delete": lambda c, f, o: submit(c, "delete", FULL, f, o),
    "submit_backfill": lambda c, f, o: submit(c, "backfill", FULL, f, o),
    "submit_export": lambda c, f, o: submit(c, "export", FULL, f, o),
    "preview": lambda c, f, o: preview(c, "delete", f, o),
}


def assert_refusal(error: psycopg.Error | str, what: str, position: str | None,
                   json_type: str) -> None:
    if isinstance(error, str):
        text = error
    else:
        assert error.sqlstate == "22023"
        text = f"{error.diag.message_primary} {error.diag.message_hint}"
    assert f"filter compares {what} with" in text, text
    if position is None:
        article = "an" if json_type in ("object", "array") else "a"
        assert f"with {article} {json_type} value" in text, text
    else:
        assert f"holds {'an' if json_type in ('object', 'array') else 'a'} {json_type} " \
               f"at {position} (" in text, text
    assert "allow_unknown_fields" in text, text


@pytest.mark.parametrize(("filter_", "what", "position", "json_type"), REFUSED,
                         ids=[json.dumps(f) for f, _, _, _ in REFUSED])
def test_a_delete_is_refused(rows: Conn, filter_: dict[str, Any], what: str,
                             position: str | None, json_type: str) -> None:
    before = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit(rows, "delete", FULL, filter_)
    assert_refusal(caught.value, what, position, json_type)
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == before
    assert submit(rows, "delete", FULL, filter_, {"allow_unknown_fields": True}) > 0


# The refused filters that are one comparison (no valid alternative beside it).
WHOLE = [REFUSED[i][0] for i in (0, 1, 7, 10, 12, 13)]


@pytest.mark.parametrize("filter_", WHOLE, ids=[json.dumps(f) for f in WHOLE])
def test_as_written_it_takes_every_row(rows: Conn, filter_: dict[str, Any]) -> None:
    """What the refusal saves: let through, the delete takes the whole scope."""
    job_id = submit(rows, "delete", FULL, filter_, {"allow_unknown_fields": True})
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(rows, job_id)["status"] == "succeeded"
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND created_at <= now()") == 0


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize(("filter_", "what", "position", "json_type"),
                         [REFUSED[i] for i in (1, 10, 13)],
                         ids=[json.dumps(REFUSED[i][0]) for i in (1, 10, 13)])
def test_every_entry_refuses(rows: Conn, entry: str, filter_: dict[str, Any], what: str,
                             position: str | None, json_type: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        ENTRIES[entry](rows, filter_, None)
    assert_refusal(caught.value, what, position, json_type)
    assert ENTRIES[entry](rows, filter_, {"allow_unknown_fields": True})


@pytest.mark.parametrize("entry", ["submit_delete"])
@pytest.mark.parametrize("filter_", ACCEPTED, ids=[json.dumps(f) for f in ACCEPTED])
def test_a_value_the_rows_hold_is_taken(rows: Conn, entry: str,
                                        filter_: dict[str, Any]) -> None:
    assert ENTRIES[entry](rows, filter_, None)


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
@pytest.mark.parametrize(("filter_", "what", "position", "json_type"),
                         [REFUSED[i] for i in (1, 9)],
                         ids=[json.dumps(REFUSED[i][0]) for i in (1, 9)])
def test_a_deferred_judgment_refuses(rows: Conn, kind: str, filter_: dict[str, Any],
                                     what: str, position: str | None, json_type: str) -> None:
    """Submitted on an empty scope (judged at the start), started once rows
    came: the job fails for good before it reads or writes a row."""
    job_id = submit(rows, kind, EMPTY, filter_)
    assert job(rows, job_id)["payload"].get("unchecked_fields"), "not deferred"
    rows.execute("INSERT INTO user_table_rows (table_id, n, label, data, meta, created_at) "
                 "SELECT %s::int, 1, 'keep', d.data, d.meta, %s::timestamptz "
                 "FROM user_table_rows d WHERE d.table_id = 1 LIMIT 5", (EMPTY, OLD))
    if kind == "export":
        rows.execute("SELECT pgjobs.claim_export(%s, 'w')", (job_id,)).fetchall()
    else:
        rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(rows, job_id)
    assert row["status"] == "failed", row
    assert "(SQLSTATE 22023)" in str(row["error"]), row
    assert_refusal(str(row["error"]), what, position, json_type)
    assert row["done"] == 0, row
    labels = [r[0] for r in rows.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))]
    assert labels == ["keep"] * 5


KEYS = ["a'); DROP TABLE user_table_rows; --", 'a"b', "a\\b", "a\nb", "x.y", "", "$1",
        "a\u0301", "@.type()", "a ? (@ == 1)"]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_an_operand_key_is_a_value_never_path_or_sql_text(rows: Conn, key: str) -> None:
    """A key no row has is refused as such, whatever it holds (quotes, dots,
    path syntax, control characters); a key a row has is taken."""
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit(rows, "delete", FULL, {"nest": {"$ne": {key: 1}}})
    assert "no row has it there" in (caught.value.diag.message_primary or "")
    assert scalar(rows, "SELECT count(*) FROM user_table_rows") == 90
    rows.execute("UPDATE user_table_rows SET data = jsonb_set(data, '{nest}', "
                 "data -> 'nest' || jsonb_build_object(%s::text, 1)) "
                 "WHERE id = (SELECT min(id) FROM user_table_rows WHERE table_id = 1)", (key,))
    assert submit(rows, "delete", FULL, {"nest": {"$ne": {"a": 1, key: 1}}}) > 0


def test_a_json_column_is_read_as_the_filter_reads_it(rows: Conn) -> None:
    """A json column compares as jsonb, a value jsonb refuses (a \\u0000
    escape) as a string of its text (pgjobs._json_as_jsonb): the check reads
    it so too, and never fails on it (22P05) instead of judging."""
    rows.execute("ALTER TABLE user_table_rows ADD COLUMN raw json")
    rows.execute("UPDATE user_table_rows SET raw = CASE WHEN n = 0 THEN '{\"a\": \"\\u0000\"}' "
                 "ELSE json_build_object('a', n) END")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit(rows, "delete", FULL, {"raw": {"$ne": {"a": True}}})
    assert_refusal(caught.value, 'column "raw"', "raw.a", "boolean")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit(rows, "delete", FULL, {"$not": {"raw": ["x"]}})
    assert_refusal(caught.value, 'column "raw"', None, "array")
    assert submit(rows, "delete", FULL, {"raw": {"$ne": {"a": 1}}}) > 0
    assert submit(rows, "delete", FULL, {"raw": {"$ne": "x"}}) > 0  # the refused text's


def test_a_target_without_a_document_has_its_json_columns_judged(conn: Conn) -> None:
    target = make_rows_target(conn, document=False)
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN meta jsonb")
    seed(conn, target, 30)
    conn.execute("UPDATE user_table_rows SET meta = jsonb_build_object('a', n)")
    for filter_, position, json_type in (({"meta": {"$ne": "1"}}, None, "string"),
                                         ({"$not": {"meta": {"a": "1"}}}, "meta.a", "string")):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            submit(conn, "delete", FULL, filter_)
        assert_refusal(caught.value, 'column "meta"', position, json_type)
    assert submit(conn, "delete", FULL, {"meta": {"$ne": {"a": 1}}}) > 0
