"""How filters and a backfill's set treat the document, as classes.

1. A filter key names a column; the registered document column named as a
   key compared the whole document ({"data": {"$ne": {...}}} matched almost
   every row: a delete-by-filter of a whole scope). The filter compiler
   (pgjobs._compile_filter_field) now takes only presence tests on it
   (null, {"$ne": null}, $exists, $in / $nin of null), and, in a filter
   given with a scope (every submit, pgjobs.preview), on the scope column
   only a restatement of the scope: every row of the scope holds the same
   value, so anything else is true for all of them or none.
2. A backfill's set merged fields through whatever a row held: {"status.x":
   1} turned a string status into {"x": 1}, a value the set does not name.
   Rows holding a scalar or an array where fields are merged in
   (pgjobs._set_guard) are refused at the submit, and the pages leave those
   they meet later unchanged and count them (result.skipped, the events),
   unless the job says replace_non_objects.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    Conn,
    Target,
    build_target,
    drain_notifies,
    job,
    make_rows_target,
    run_job,
    run_pages,
    scalar,
    seed,
    submit_backfill,
)

# --- 1. filters on the document column and the scope column ------------------------

DOC_REFUSED: list[Any] = [
    {"data": {"$ne": {"k": 1}}},
    {"data": {"$gt": 1}},
    {"data": {"$gte": "a"}},
    {"data": {"$lt": True}},
    {"data": {"$lte": 0}},
    {"data": "x"},
    {"data": 5},
    {"data": True},
    {"data": []},
    {"data": {"k": 1}},
    {"data": {"$eq": {"k": 1}}},
    {"data": {"$in": [{"k": 1}]}},
    {"data": {"$in": [None, {"k": 1}]}},
    {"data": {"$nin": [{"k": 1}, None]}},
    {"data": {"$contains": "k"}},
    {"data": {"$not": {"$eq": {"k": 1}}}},
    {"data": {"$not": {"$gt": 0}}},
    {"data": {"$not": "x"}},
    {"data": {"$exists": True, "$ne": {}}},
    {"$not": {"data": {"k": 1}}},
    {"$or": [{"k": 1}, {"data": {"$ne": {}}}]},
    {"$and": [{"k": 1}, {"$not": {"$or": [{"data": {"$in": [[1]]}}]}}]},
]

DOC_ALLOWED: list[tuple[Any, bool | None]] = [
    # (filter, which rows: True = a document, False = none, None = every row)
    ({"data": None}, False),
    ({"data": {"$eq": None}}, False),
    ({"data": {"$ne": None}}, True),
    ({"data": {"$exists": True}}, True),
    ({"data": {"$exists": False}}, False),
    ({"data": {"$in": [None]}}, False),
    ({"data": {"$nin": [None]}}, True),
    ({"data": {"$not": None}}, True),
    ({"data": {"$not": {"$exists": True}}}, False),
    ({"$not": {"data": None}}, True),
    ({"$or": [{"data": None}, {"data": {"$exists": True}}]}, None),
]


@pytest.fixture
def docs(conn: Conn) -> str:
    """Scope 1 of a target with a document column (data) and another jsonb
    column (meta): 30 rows, every third without a document."""
    build_target(conn, "docs", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 meta jsonb, data jsonb""", scope="table_id", document="data")
    conn.execute("""INSERT INTO docs (id, table_id, meta, data)
                    SELECT g, 1 + g % 2, jsonb_build_object('a', g % 3),
                           CASE WHEN g % 3 = 0 THEN NULL
                                ELSE jsonb_build_object('k', g % 4) END
                      FROM generate_series(1, 60) g""")
    return "docs"


def _entry_points(conn: Conn, flt: Any, scope: str = "1") -> list[tuple[str, str, tuple[Any, ...]]]:
    f = json.dumps(flt)
    return [
        ("delete", "SELECT pgjobs.submit_delete('docs', %s, %s::jsonb)", (scope, f)),
        ("backfill", "SELECT pgjobs.submit_backfill('docs', %s, %s::jsonb, '{\"s\": 1}')",
         (scope, f)),
        ("export", "SELECT pgjobs.submit_export('docs', %s, %s::jsonb)", (scope, f)),
        ("preview", "SELECT pgjobs.preview('docs', %s, %s::jsonb)", (scope, f)),
        ("preview backfill", "SELECT pgjobs.preview('docs', %s, %s::jsonb, '{}', "
         "'{\"kind\": \"backfill\"}')", (scope, f)),
        ("deferred (empty scope)", "SELECT pgjobs.submit_delete('docs', '7', %s::jsonb)", (f,)),
    ]


@pytest.mark.parametrize("flt", DOC_REFUSED, ids=[json.dumps(f) for f in DOC_REFUSED])
def test_the_document_column_compared_as_a_whole_is_refused_everywhere(
        conn: Conn, docs: str, flt: Any) -> None:
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.compile_filter('docs', %s::jsonb)", (json.dumps(flt),))
    assert 'the document column "data" as a whole' in str(info.value)
    hint = info.value.diag.message_hint or ""
    assert "field inside the document" in hint and '{"data": null}' in hint
    for name, sql, params in _entry_points(conn, flt):
        with pytest.raises(errors.InvalidParameterValue) as info:
            conn.execute(sql, params)
        assert info.value.diag.sqlstate == "22023", name
        assert '"data" as a whole' in str(info.value), name
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT count(*) FROM pgjobs.visible('docs', '1', %s::jsonb)",
                     (json.dumps(flt),))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    assert scalar(conn, "SELECT count(*) FROM docs") == 60


def test_the_hint_spells_a_literal_object_as_its_field(conn: Conn, docs: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("""SELECT pgjobs.submit_delete('docs', '1', '{"data": {"status": "x"}}')""")
    assert 'write {"status": "x"}' in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(("flt", "with_doc"), DOC_ALLOWED,
                         ids=[json.dumps(f) for f, _ in DOC_ALLOWED])
def test_presence_tests_on_the_document_column_keep_working(
        conn: Conn, docs: str, flt: Any, with_doc: bool | None) -> None:
    want = {k for (k,) in conn.execute(
        "SELECT id FROM docs WHERE table_id = 1"
        " AND (%s::boolean IS NULL OR (data IS NOT NULL) = %s::boolean)",
        (with_doc, with_doc))}
    preview = scalar(conn, "SELECT pgjobs.preview('docs', '1', %s::jsonb)", (json.dumps(flt),))
    assert preview["matches"] == len(want)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('docs', '1', %s::jsonb)",
                    (json.dumps(flt),))
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    left = {k for (k,) in conn.execute("SELECT id FROM docs WHERE table_id = 1")}
    assert left.isdisjoint(want) and len(left) + len(want) == 30
    assert scalar(conn, "SELECT count(*) FROM docs WHERE table_id = 2") == 30


@pytest.mark.parametrize("flt", [{"meta": {"$ne": {"a": 1}}}, {"meta": {"a": 1}},
                                 {"meta": {"$in": [{"a": 1}, {"a": 2}]}},
                                 {"meta": {"$nin": [{"a": 1}]}}])
def test_other_jsonb_columns_still_compare_as_values(conn: Conn, docs: str, flt: Any) -> None:
    """docs/filters.md: json/jsonb columns other than the document compare as
    jsonb values; that stays."""
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('docs', '1', %s::jsonb)",
                    (json.dumps(flt),))
    assert job(conn, job_id)["status"] == "queued"


SCOPE_REFUSED: list[Any] = [
    {"table_id": 2},
    {"table_id": "2"},
    {"table_id": None},
    {"table_id": {"$eq": 2}},
    {"table_id": {"$ne": 2}},
    {"table_id": {"$gt": 0}},
    {"table_id": {"$lte": 1}},
    {"table_id": {"$in": [2, 3]}},
    {"table_id": {"$in": []}},
    {"table_id": {"$nin": [2]}},
    {"table_id": {"$exists": True}},
    {"table_id": {"$contains": "1"}},
    {"table_id": {"$not": 2}},
    {"table_id": {"$eq": 1, "$ne": 2}},
    {"$not": {"table_id": 2}},
    {"$or": [{"table_id": {"$ne": 1}}, {"k": 1}]},
    {"$or": [{"table_id": i} for i in range(2, 12)]},  # folded into $in
]

SCOPE_ALLOWED: list[Any] = [
    {"table_id": 1},
    {"table_id": "1"},
    {"table_id": {"$eq": 1}},
    {"table_id": {"$in": [1, 2]}},
    {"table_id": 1, "k": 1},
    {"$or": [{"table_id": i} for i in range(1, 11)]},  # folded into $in, holds 1
]


@pytest.mark.parametrize("flt", SCOPE_REFUSED, ids=[json.dumps(f) for f in SCOPE_REFUSED])
def test_a_scope_column_condition_the_scope_decides_is_refused(
        conn: Conn, docs: str, flt: Any) -> None:
    for name, sql, params in _entry_points(conn, flt)[:5]:
        with pytest.raises(errors.InvalidParameterValue) as info:
            conn.execute(sql, params)
        assert 'scope column "table_id"' in str(info.value), name
        assert "Leave \"table_id\" out of the filter" in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    # Without a scope (a client's own query over the whole table) it compares
    # as any column does.
    conn.execute("SELECT pgjobs.compile_filter('docs', %s::jsonb)", (json.dumps(flt),))


@pytest.mark.parametrize("flt", SCOPE_ALLOWED, ids=[json.dumps(f) for f in SCOPE_ALLOWED])
def test_a_filter_may_restate_its_scope(conn: Conn, docs: str, flt: Any) -> None:
    for _name, sql, params in _entry_points(conn, flt)[:5]:
        conn.execute(sql, params)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 3


def test_a_text_scope_is_restated_as_its_canonical_value(conn: Conn) -> None:
    t = make_rows_target(conn, scope_type="text")
    seed(conn, t, 30)
    for flt in ({"table_id": "tenant-1"}, {"table_id": {"$in": ["tenant-1", "x"]}}):
        conn.execute("SELECT pgjobs.submit_delete(%s, 'tenant-1', %s::jsonb)",
                     (t.name, json.dumps(flt)))
    with pytest.raises(errors.InvalidParameterValue, match="scope column"):
        conn.execute("SELECT pgjobs.submit_delete(%s, 'tenant-1', %s::jsonb)",
                     (t.name, json.dumps({"table_id": "Tenant-1"})))


# --- 2. a backfill's set through a value that is no object ----------------------------

# Scope 1 of `shapes`: what each row's document holds (key -> document).
SHAPES: dict[int, Any] = {
    1: {"status": "a"},
    2: {"status": 5},
    3: {"status": [1]},
    4: {"status": True},
    5: {"status": None},
    6: {},
    7: {"status": {"y": 1}},
    8: None,              # SQL NULL
    9: "null",            # JSON null
    10: {"other": 1},
    11: {"status": {"x": "old", "keep": 2}},
    12: {"status": {"x": 7}},
}
BLOCKED_AT_STATUS = {1, 2, 3, 4}

SETS: list[tuple[dict[str, Any], set[int]]] = [
    # (set, the keys it cannot merge into besides BLOCKED_AT_STATUS)
    ({"status.x": 1}, set()),
    ({"status": {"x": 1}}, set()),          # an object value merges: the same patch
    ({"status.x.y": 1}, {11, 12}),          # status.x holds "old", 7
    ({"status.0.z": 1}, set()),             # a path never indexes into an array
    ({"status.x": 1, "other": 2}, set()),
    ({"status.x": 1, "status.w.v": None}, set()),
]


@pytest.fixture
def shapes(conn: Conn) -> str:
    build_target(conn, "shapes", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 n integer, data jsonb""", scope="table_id", document="data")
    for key, doc in SHAPES.items():
        conn.execute("INSERT INTO shapes (id, table_id, data) VALUES (%s, 1, %s::jsonb)",
                     (key, doc if doc is None or doc == "null" else json.dumps(doc)))
    conn.execute("INSERT INTO shapes (id, table_id, data) SELECT g, 2, '{\"status\": \"s\"}'"
                 " FROM generate_series(100, 110) g")
    return "shapes"


def _docs(conn: Conn, scope: int = 1) -> dict[int, Any]:
    return {k: d for k, d in conn.execute(
        "SELECT id, data FROM shapes WHERE table_id = %s", (scope,))}


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merge(base.get(key), value)
    return out


def _patch(set_: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for path, value in sorted(set_.items()):
        nested: Any = value
        for part in reversed(path.split(".")):
            nested = {part: nested}
        patch = _merge(patch, nested)
    return patch


@pytest.mark.parametrize(("set_", "more"), SETS, ids=[json.dumps(s) for s, _ in SETS])
def test_a_set_through_a_non_object_is_refused_at_the_submit(
        conn: Conn, shapes: str, set_: dict[str, Any], more: set[int]) -> None:
    blocked = BLOCKED_AT_STATUS | more
    before = _docs(conn)
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.submit_backfill('shapes', '1', '{}', %s::jsonb)",
                     (json.dumps(set_),))
    message = str(info.value)
    assert f"which {len(blocked)} of the rows it selects in scope 1" in message, message
    assert f"the first, key {min(blocked)}, holds a string" in message
    assert '"status"' in message
    hint = info.value.diag.message_hint or ""
    assert "replace_non_objects" in hint and "filter" in hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    assert _docs(conn) == before
    # The preview of that backfill shows the same rows without refusing.
    shown = scalar(conn, "SELECT pgjobs.preview('shapes', '1', '{}', '{}', %s::jsonb)",
                   (json.dumps({"kind": "backfill", "set": set_}),))
    assert shown["non_object_rows"] == len(blocked)
    assert shown["non_object_first"]["key"] == str(min(blocked))
    # A filter that leaves them out is taken.
    job_id = submit_backfill(conn, _target(), "1", {"id": {"$nin": sorted(blocked)}}, set_)
    run_job(conn, job_id)
    done = job(conn, job_id)
    assert done["status"] == "succeeded" and "skipped" not in done["result"]
    after = _docs(conn)
    for key, doc in before.items():
        want = doc if key in blocked else _merge(doc if isinstance(doc, dict) else {},
                                                 _patch(set_))
        assert after[key] == want, key


def _target() -> Target:
    return Target("shapes", "bigint", "int", True)


@pytest.mark.parametrize(("set_", "more"), SETS, ids=[json.dumps(s) for s, _ in SETS])
@pytest.mark.parametrize("page_size", [1, 5, 100])
def test_rows_that_turn_non_object_after_the_submit_are_skipped_and_reported(
        conn: Conn, shapes: str, set_: dict[str, Any], more: set[int], page_size: int) -> None:
    blocked = BLOCKED_AT_STATUS | more
    # Submitted while every row of the scope holds objects ...
    originals = _docs(conn)
    conn.execute("UPDATE shapes SET data = '{}' WHERE id = ANY (%s)", (sorted(blocked),))
    job_id = submit_backfill(conn, _target(), "1", {}, set_, {"page_size": page_size})
    # ... and the rows changed back before it runs.
    for key in blocked:
        conn.execute("UPDATE shapes SET data = %s::jsonb WHERE id = %s",
                     (json.dumps(originals[key]), key))
    before = _docs(conn)
    conn.execute("LISTEN pgjobs")
    run_job(conn, job_id)
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["updated"] == len(SHAPES) - len(blocked)
    assert done["result"]["skipped"] == len(blocked)
    assert done["result"]["skipped_reason"] == "not_an_object"
    first = done["result"]["skipped_first"]
    assert first["key"] == str(min(blocked)) and first["path"] == "status"
    assert first["type"] == "string"
    after = _docs(conn)
    for key, doc in before.items():
        if key in blocked:
            assert after[key] == doc, key  # unchanged
        else:
            assert after[key] == _merge(doc if isinstance(doc, dict) else {}, _patch(set_)), key
    events = drain_notifies(conn)
    final = [e for e in events if e["id"] == job_id and e["event"] == "succeeded"]
    assert final and final[-1]["skipped"] == len(blocked)
    assert _docs(conn, 2) == {k: {"status": "s"} for k in range(100, 111)}


@pytest.mark.parametrize("doc", ['"text"', "5", "[1, 2]", "true", "[]"])
def test_a_document_that_is_no_object_is_skipped_by_a_flat_set(conn: Conn, shapes: str,
                                                                doc: str) -> None:
    conn.execute("UPDATE shapes SET data = %s::jsonb WHERE id = 6", (doc,))
    with pytest.raises(errors.InvalidParameterValue, match="the document itself"):
        submit_backfill(conn, _target(), "1", {"id": 6}, {"flag": 1})
    conn.execute("UPDATE shapes SET data = '{}' WHERE id = 6")
    job_id = submit_backfill(conn, _target(), "1", {"id": {"$in": [6, 8, 9]}}, {"flag": 1})
    conn.execute("UPDATE shapes SET data = %s::jsonb WHERE id = 6", (doc,))
    run_job(conn, job_id)
    done = job(conn, job_id)
    assert done["result"]["skipped"] == 1 and done["result"]["skipped_first"]["path"] == ""
    docs_after = _docs(conn)
    assert docs_after[6] == json.loads(doc)
    # A SQL NULL and a JSON null document become objects, as a missing field does.
    assert docs_after[8] == {"flag": 1} and docs_after[9] == {"flag": 1}


def test_replace_non_objects_replaces_them_as_before(conn: Conn, shapes: str) -> None:
    before = _docs(conn)
    job_id = submit_backfill(conn, _target(), "1", {}, {"status.x": 1},
                             {"replace_non_objects": True})
    run_job(conn, job_id)
    done = job(conn, job_id)
    assert done["result"]["updated"] == len(SHAPES) and "skipped" not in done["result"]
    after = _docs(conn)
    for key in BLOCKED_AT_STATUS:
        assert after[key] == {"status": {"x": 1}}
    assert after[11] == {"status": {"x": 1, "keep": 2}}
    assert after[8] == after[9] == {"status": {"x": 1}}
    assert before[10] == {"other": 1} and after[10] == {"other": 1, "status": {"x": 1}}
    with pytest.raises(errors.InvalidParameterValue, match="replace_non_objects"):
        submit_backfill(conn, _target(), "1", {}, {"status.x": 1},
                        {"replace_non_objects": "yes"})


def test_a_deferred_scope_skips_the_rows_that_arrive(conn: Conn, shapes: str) -> None:
    """Scope 3 has no row at the submit: nothing to refuse then; rows dated
    before the cutoff that arrive later are judged by the pages."""
    job_id = submit_backfill(conn, _target(), "3", {}, {"status.x": 1})
    conn.execute("""INSERT INTO shapes (id, table_id, data) VALUES
                    (300, 3, '{"status": "a"}'), (301, 3, '{"status": {}}'), (302, 3, NULL)""")
    states = run_pages(conn, job_id)
    assert states[-1] == "done"
    done = job(conn, job_id)
    assert done["result"]["updated"] == 2 and done["result"]["skipped"] == 1
    assert _docs(conn, 3) == {300: {"status": "a"}, 301: {"status": {"x": 1}},
                              302: {"status": {"x": 1}}}


def test_skipped_rows_survive_a_crash_mid_job_without_double_counting(
        conn: Conn, shapes: str, make_conn: Any) -> None:
    """A page's count commits with the page: one redone after a lost page
    counts its rows once."""
    originals = _docs(conn)
    conn.execute("UPDATE shapes SET data = '{}' WHERE id = ANY (%s)", (sorted(BLOCKED_AT_STATUS),))
    job_id = submit_backfill(conn, _target(), "1", {}, {"status.x": 1}, {"page_size": 2})
    for key in BLOCKED_AT_STATUS:
        conn.execute("UPDATE shapes SET data = %s::jsonb WHERE id = %s",
                     (json.dumps(originals[key]), key))
    other: psycopg.Connection[Any] = make_conn(autocommit=False)
    identity = scalar(other, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    other.commit()
    for _ in range(3):
        scalar(other, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity))
        other.commit()
    scalar(other, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity))
    other.rollback()  # a page lost with its runner
    while scalar(other, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity)) == "more":
        other.commit()
    other.commit()
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["result"]["skipped"] == len(BLOCKED_AT_STATUS)
    assert done["result"]["updated"] == len(SHAPES) - len(BLOCKED_AT_STATUS)



@pytest.mark.parametrize(("set_", "doc", "first"), [
    ({"k.x": 1}, {"k": 5}, 'first: key 2, "k" holds a number'),
    ({"k.x.y": 1}, {"k": {"x": [1]}}, 'first: key 2, "k.x" holds an array'),
    ({"flag": 1}, "text", "first: key 2, the document holds a string"),
], ids=["field", "nested", "document"])
def test_the_command_line_says_when_a_backfill_left_rows_unchanged(
        conn: Conn, docs: str, dsn: str, set_: dict[str, Any], doc: Any, first: str) -> None:
    """`pgjobs watch` (and `--wait`, which follows the same way) ended on
    "succeeded" alone, exit 0, while the job left rows unchanged
    (result.skipped): a line on stderr now says how many, where the first
    is, and what to do. A backfill that left none says nothing more."""
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    conn.execute("UPDATE docs SET data = '{}' WHERE table_id = 1 AND data IS NOT NULL")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_backfill('docs', '1', '{}', %s::jsonb)",
                        (json.dumps(set_),)))
    # Rows 2 and 4 hold no object where set merges, once submitted.
    conn.execute("UPDATE docs SET data = %s::jsonb WHERE id IN (2, 4)", (json.dumps(doc),))
    run_job(conn, job_id)
    result = CliRunner().invoke(main, ["--dsn", dsn, "watch", str(job_id)])
    assert result.exit_code == 0, result.output
    assert job(conn, job_id)["result"]["skipped"] == 2
    assert f"job {job_id} succeeded but left 2 row(s) unchanged" in result.stderr, result.stderr
    assert first in result.stderr
    assert "replace_non_objects" in result.stderr
    # One that left none: nothing more.
    clean = int(scalar(conn, "SELECT pgjobs.submit_backfill('docs', '2', '{}', '{\"y\": 1}')"))
    run_job(conn, clean)
    quiet = CliRunner().invoke(main, ["--dsn", dsn, "watch", str(clean)])
    assert quiet.exit_code == 0 and "unchanged" not in quiet.stderr, quiet.stderr
