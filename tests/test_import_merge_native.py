"""An import's on_duplicate "update" merges a record's document fields into a
row's document with native jsonb operators, exactly as the merge functions do.

The merge was a call of pgjobs._import_doc_merge (or, with
replace_non_objects, pgjobs._jsonb_merge) per record, recursing per field;
only records whose fields held no object at all (no dotted field) took a
`||` shortcut. An import of 100,000 records of fields "name",
"address.city" and "meta.score" took 8.7 s, 3.7x a COPY and INSERT ... ON
CONFLICT DO UPDATE written for them. pgjobs._import_merge_sql now writes
the merge out level by level from the import's fields, calling the function
only for a level whose shapes it cannot merge natively (a missing or null
place, a scalar or an array where the record makes an object, a JSONL
value that is an object, a record an insert trigger changed). These tests
hold the expression to the functions, value for value and error for error
(the same SQLSTATE and message, so the same rejected line), on generated
fields, rows and records, and an import end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import allowed_folder, make_people
from tests.test_import import do_import

Conn = psycopg.Connection[Any]

SEGMENTS = st.sampled_from(["a", "b", "c", "it's", "x y"])
PATHS = st.lists(st.lists(SEGMENTS, min_size=1, max_size=3).map(".".join),
                 min_size=1, max_size=5, unique=True).filter(
    lambda ps: not any(p != q and q.startswith(p + ".") for p in ps for q in ps))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "s"]))
VALUES = st.recursive(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)),
                      lambda inner: st.dictionaries(SEGMENTS, inner, max_size=2), max_leaves=6)


def record_of(paths: list[str], values: list[Any], present: list[bool]) -> dict[str, Any]:
    """The record's document as pgjobs._import_document_expr builds it: the
    fields nested by their paths (a field left out: a CSV NULL stripped)."""
    out: dict[str, Any] = {}
    for path, value, here in zip(paths, values, present, strict=False):
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if here:
            node[leaf] = value
    return out


def outcome(conn: Conn, sql: str, params: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        with conn.transaction():
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    except psycopg.errors.DatabaseError as exc:
        return ("error", (exc.sqlstate, str(exc.diag.message_primary),
                          exc.diag.message_hint))
    assert row is not None
    return ("value", row[0])


def compare(conn: Conn, base: Any, record: Any, paths: list[str], refuse: bool) -> None:
    base_text = None if base is None else json.dumps(base)
    record_text = None if record is None else json.dumps(record)
    expr = conn.execute(
        "SELECT pgjobs._import_merge_sql(format('%%L::jsonb', %s::text), "
        "format('%%L::jsonb', %s::text), %s::text[], %s)",
        (base_text, record_text, paths, refuse)).fetchone()[0]
    assert "_import_doc_merge" in expr or not refuse
    native = outcome(conn, f"SELECT {expr}", ())
    if refuse:
        want = outcome(conn, "SELECT pgjobs._import_doc_merge(%s::jsonb, %s::jsonb)",
                       (base_text, record_text))
    else:
        want = outcome(conn, "SELECT pgjobs._jsonb_merge(%s::jsonb, %s::jsonb)",
                       (base_text, record_text))
    assert native == want, (base, record, paths)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), paths=PATHS,
       base=st.one_of(st.none(), VALUES, st.dictionaries(SEGMENTS, VALUES, max_size=4)),
       refuse=st.booleans())
def test_the_expression_merges_and_refuses_as_the_function_does(
        conn: Conn, data: st.DataObject, paths: list[str], base: Any, refuse: bool) -> None:
    values = data.draw(st.lists(VALUES, min_size=len(paths), max_size=len(paths)))
    present = data.draw(st.lists(st.booleans(), min_size=len(paths), max_size=len(paths)))
    # Mostly the record the import builds; sometimes one a trigger made.
    record = data.draw(st.one_of(st.just(record_of(paths, values, present)), VALUES))
    compare(conn, base, record, paths, refuse)


@pytest.mark.parametrize("refuse", [True, False], ids=["refuse", "replace_non_objects"])
@pytest.mark.parametrize("base, record, paths", [
    ({"a": {"k": 1}, "n": 0}, {"a": {"b": "x"}, "n": 1}, ["a.b", "n"]),
    ({"a": "keep me"}, {"a": {"b": "x"}}, ["a.b"]),
    ({"a": {"b": [1]}}, {"a": {"b": {"c": "x"}}}, ["a.b.c"]),
    ({"a": {"b": True}}, {"a": {"b": {"c": "x"}, "d": 1}}, ["a.b.c", "a.d"]),
    ({"a": None}, {"a": {"b": "x"}}, ["a.b"]),
    ({}, {"a": {"b": "x"}, "c": {"d": 1}}, ["a.b", "c.d"]),
    ([1, 2], {"z": "x"}, ["z"]),
    ("text", {"a": {"b": 1}}, ["a.b"]),
    (None, {"a": {"b": 1}}, ["a.b"]),
    ({"a": {"k": 1}}, {"a": {}}, ["a.b"]),                  # the field was a CSV NULL
    ({"a": {"k": 1}}, {}, ["a.b"]),                         # a trigger dropped the parent
    ({"a": {"k": 1}}, {"a": 5}, ["a.b"]),                   # a trigger made it a number
    ({"a": {"k": 1}}, {"a": {"b": {"j": {"q": 1}}}}, ["a.b"]),  # a JSONL object value
    ({"a": {"b": {"j": "s"}}}, {"a": {"b": {"j": {"q": 1}}}}, ["a.b"]),
    ({"a": {"k": 1}}, [1], ["a.b"]),
])
def test_the_expression_on_each_shape(conn: Conn, base: Any, record: Any, paths: list[str],
                                      refuse: bool) -> None:
    compare(conn, base, record, paths, refuse)


def test_many_parents_at_one_level(conn: Conn) -> None:
    """More than 50 parents: jsonb_build_object takes 100 arguments."""
    paths = [f"p{i}.v" for i in range(120)]
    base = {f"p{i}": {"keep": i} for i in range(0, 120, 2)}
    record = {f"p{i}": {"v": i} for i in range(120)}
    compare(conn, base, record, paths, True)


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    conn.execute("ALTER TABLE people ALTER COLUMN data DROP NOT NULL")
    return allowed_folder(conn, tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("replace", [False, True], ids=["refuse", "replace_non_objects"])
def test_an_import_merges_every_row_as_the_function_says(
        conn: Conn, dsn: str, src: Path, fmt: str, replace: bool) -> None:
    documents: list[Any] = [
        {"name": "old", "address": {"city": "c", "street": "s"}, "meta": {"k": 1}},
        {"address": {}, "meta": None},
        {},
        {"address": "flat"},
        {"meta": {"score": {"deep": 1}}},
        None,
        [1],
    ]
    for key, document in enumerate(documents, 1):
        conn.execute("INSERT INTO people (id, tenant, name, data) VALUES (%s, 1, 'p', %s::jsonb)",
                     (key, None if document is None else json.dumps(document)))
    keys = range(1, len(documents) + 2)  # and one new row
    if fmt == "csv":
        data = "id,address.city,meta.score,top\n" + "".join(
            f"{k},City{k},{k * 10},{'' if k == 3 else 't'}\n" for k in keys)
    else:
        data = "".join(json.dumps({"id": k, "address.city": f"City{k}", "meta.score": k * 10,
                                   "top": {"o": k} if k == 2 else "t"}) + "\n" for k in keys)
    records = {}
    for k in keys:
        if fmt == "csv":
            fields = {"address": {"city": f"City{k}"}, "meta": {"score": str(k * 10)}}
            if k != 3:
                fields["top"] = "t"
        else:
            fields = {"address": {"city": f"City{k}"}, "meta": {"score": k * 10},
                      "top": {"o": k} if k == 2 else "t"}
        records[k] = fields
    want: dict[int, Any] = {}
    rejected = 0
    for k, document in enumerate(documents, 1):
        function = "_jsonb_merge" if replace else "_import_doc_merge"
        try:
            with conn.transaction():
                want[k] = conn.execute(f"SELECT pgjobs.{function}(%s::jsonb, %s::jsonb)",
                                       (None if document is None else json.dumps(document),
                                        json.dumps(records[k]))).fetchone()[0]
        except psycopg.errors.InvalidParameterValue:
            want[k] = document
            rejected += 1
    want[len(documents) + 1] = records[len(documents) + 1]
    options: dict[str, Any] = {"on_duplicate": "update", "max_rejects": 10}
    if replace:
        options["replace_non_objects"] = True
    job = do_import(conn, dsn, src, f"m.{fmt}", data.encode(), options=options)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["rejected"] == rejected, job["result"]
    assert (rejected > 0) != replace
    got = dict(conn.execute("SELECT id, data FROM people WHERE tenant = 1").fetchall())
    assert got == want


@pytest.mark.parametrize("depth, written", [(16, True), (17, False), (300, False)])
def test_a_field_nested_too_deep_to_write_out_calls_the_function(
        conn: Conn, depth: int, written: bool) -> None:
    """The expression would grow with the square of a field's depth (a CSV
    header's "a.a.a..."): past 16 levels the merge is the function's call."""
    path = ".".join(["a"] * depth)
    record: Any = "x"
    for _ in range(depth):
        record = {"a": record}
    expr = conn.execute("SELECT pgjobs._import_merge_sql('b', 'r', %s::text[], true)",
                        ([path, "z"],)).fetchone()[0]
    assert len(expr) < 100_000
    assert expr.startswith("CASE") == written, expr[:80]
    compare(conn, {"a": {"a": {"k": 1}}, "z": 0}, {**record, "z": 1}, [path, "z"], True)
    compare(conn, {"a": {"a": "s"}}, record, [path], True)


def test_an_import_of_a_field_nested_hundreds_of_levels_updates_the_row(
        conn: Conn, dsn: str, src: Path) -> None:
    path = ".".join(["a"] * 300)
    conn.execute("""INSERT INTO people (id, tenant, name, data)
                    VALUES (1, 1, 'p', '{"a": {"k": 1}, "z": 0}')""")
    job = do_import(conn, dsn, src, "deep.csv", f"id,{path}\n1,x\n".encode(),
                    options={"on_duplicate": "update"})
    assert job["status"] == "succeeded", job["error"]
    got = conn.execute("SELECT data FROM people WHERE id = 1").fetchone()[0]
    assert got["z"] == 0 and got["a"]["k"] == 1
    node = got
    for _ in range(300):
        node = node["a"]
    assert node == "x"
