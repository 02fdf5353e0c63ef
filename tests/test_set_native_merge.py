"""A backfill's nested set merges into each row's document with the native
jsonb operators, exactly as pgjobs._jsonb_merge does.

A set naming a nested field ({"meta.flag": 1}) or giving an object value
({"meta": {"flag": 1}}) compiled to a call of pgjobs._jsonb_merge, a
PL/pgSQL recursion of one call per object of the patch per row: three calls
a row for "meta.flag", 2.6 s of a 4.9 s backfill of 100,000 rows that a
jsonb_set UPDATE does in 0.8 s. pgjobs._jsonb_merge_sql now writes the
merge out as an expression (CASE on jsonb_typeof, `||`, jsonb_build_object);
a patch too large to write out (more than 64 objects, deeper than 16) keeps
the call. These tests hold the expression to the function on every shape
of base and patch (generated), and a backfill's documents to it end to end,
both ways of compiling.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Conn, build_target, run_pages, scalar

KEYS = st.sampled_from(["a", "b", "meta", "flag", "x y", "ké", "it's", "$q", ""])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                    st.text(st.characters(blacklist_characters="\x00"), max_size=3),
                    st.sampled_from([0.5, -2.25, 0.001]))
LEAVES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2))
VALUES = st.recursive(LEAVES, lambda inner: st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)
PATCHES = st.dictionaries(KEYS, VALUES, max_size=4)


def merged(base: Any, patch: Any) -> Any:
    """pgjobs._jsonb_merge in Python: the oracle the tests also check against
    the function itself."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = merged(base.get(key), value)
    return out


def native(conn: Conn, base: Any, patch: Any) -> Any:
    """The expression pgjobs._jsonb_merge_sql writes, evaluated on base (None:
    SQL NULL); None if it declines the patch."""
    expr = scalar(conn, "SELECT pgjobs._jsonb_merge_sql(format('%%L::jsonb', %s::text), "
                  "%s::jsonb)", (None if base is None else json.dumps(base), json.dumps(patch)))
    if expr is None:
        return None
    row = conn.execute(f"SELECT ({expr})::text").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return json.loads(row[0]) if row[0] is not None else "<SQL NULL>"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(base=st.one_of(st.none(), VALUES, st.dictionaries(KEYS, VALUES, max_size=4)),
       patch=PATCHES)
def test_the_expression_merges_as_the_function_does(conn: Conn, base: Any, patch: Any) -> None:
    want = scalar(conn, "SELECT pgjobs._jsonb_merge(%s::jsonb, %s::jsonb)::text",
                  (None if base is None else json.dumps(base), json.dumps(patch)))
    assert json.loads(want) == merged(base, patch)
    assert native(conn, base, patch) == merged(base, patch)


@pytest.mark.parametrize("base, patch, want", [
    ({"meta": {"k": 1}, "z": 0}, {"meta": {"flag": 1}}, {"meta": {"k": 1, "flag": 1}, "z": 0}),
    ({"meta": "text"}, {"meta": {"flag": 1}}, {"meta": {"flag": 1}}),
    ({"meta": [1]}, {"meta": {"flag": 1}}, {"meta": {"flag": 1}}),
    ({"meta": None}, {"meta": {"flag": 1}}, {"meta": {"flag": 1}}),
    ({}, {"meta": {"a": {"b": {"c": 1}}}}, {"meta": {"a": {"b": {"c": 1}}}}),
    ({"meta": {"a": {"b": {"d": 2}}}}, {"meta": {"a": {"b": {"c": 1}}}},
     {"meta": {"a": {"b": {"d": 2, "c": 1}}}}),
    ({"meta": {"a": 1}}, {"meta": {}}, {"meta": {"a": 1}}),
    ({"meta": 5}, {"meta": {}}, {"meta": {}}),
    ({"meta": {"a": 1}}, {"meta": {"a": None}}, {"meta": {"a": None}}),
    ({"a": {"b": 1}}, {"a": 2, "c": {"d": 3}}, {"a": 2, "c": {"d": 3}}),
    ({"it's": {"x y": 1}}, {"it's": {"x y": 2, "ké": [1, 2]}}, {"it's": {"x y": 2, "ké": [1, 2]}}),
    (None, {"meta": {"flag": 1}}, {"meta": {"flag": 1}}),
    ([1, 2], {"a": 1}, {"a": 1}),
    ("text", {"a": {"b": 1}}, {"a": {"b": 1}}),
])
def test_the_expression_on_each_shape(conn: Conn, base: Any, patch: Any, want: Any) -> None:
    assert merged(base, patch) == want
    assert native(conn, base, patch) == want


def nested(depth: int) -> dict[str, Any]:
    patch: dict[str, Any] = {"leaf": 1}
    for level in range(depth - 1):
        patch = {f"l{level}": patch, "s": level}
    return patch


@pytest.mark.parametrize("patch, written", [
    (nested(16), True),
    (nested(17), False),
    ({f"k{i}": {"v": i} for i in range(63)}, True),  # 126 arguments: two calls
    ({f"k{i}": {"v": i} for i in range(64)}, False),
    ({"a": {f"k{i}": {} for i in range(70)}}, False),
])
def test_a_patch_too_large_to_write_out_is_declined(conn: Conn, patch: dict[str, Any],
                                                    written: bool) -> None:
    base = {"l14": {"keep": True}, "k3": {"w": 0}, "a": {"k1": {"x": 1}}}
    got = native(conn, base, patch)
    if written:
        assert got == merged(base, patch)
    else:
        assert got is None


@pytest.fixture
def docs(conn: Conn) -> str:
    build_target(conn, "ndocs", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 data jsonb""", scope="table_id", document="data")
    rows = [{"meta": {"k": 1, "deep": {"x": "old", "y": 1}}, "top": 0},
            {"meta": {}},
            {},
            {"other": [1, 2], "meta": {"deep": None}},
            {"meta": {"deep": {}}}]
    conn.execute("""INSERT INTO ndocs (id, table_id, data)
                    SELECT g + s * 1000, s, (%s::jsonb -> (g %% 5)::int)
                      FROM generate_series(1, 60) g, generate_series(1, 2) s""",
                 (json.dumps(rows),))
    return "ndocs"


def _run(conn: Conn, set_: dict[str, Any], options: dict[str, Any]) -> int:
    job_id = int(scalar(conn, "SELECT pgjobs.submit_backfill('ndocs', '1', '{}'::jsonb, "
                        "%s::jsonb, %s::jsonb)", (json.dumps(set_), json.dumps(options))))
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    return job_id


def _compiled(conn: Conn, set_: dict[str, Any]) -> str:
    return str(scalar(conn, "SELECT pgjobs._compile_set(r, %s::jsonb) FROM "
                      "pgjobs.target_registry r WHERE r.target = 'ndocs'::regclass",
                      (json.dumps(set_),)))


@pytest.mark.parametrize("set_", [
    {"meta.flag": 1},
    {"meta.flag": 1, "meta.deep.x": "new", "top": 2},
    {"meta": {"deep": {"z": [1]}}, "n.m.o": None},
    {"fresh": {"a": 1}, "flat": "v"},
    {"flat": "v", "other": 3},
    {f"w{i}.v": i for i in range(65)},  # 66 objects: the function's way
], ids=["one-nested", "nested-and-flat", "object-value", "object-new-field", "flat", "too-large"])
@pytest.mark.parametrize("page_size", [7, 1000])
def test_a_backfill_merges_every_document_as_the_function_does(
        conn: Conn, docs: str, set_: dict[str, Any], page_size: int) -> None:
    compiled = _compiled(conn, set_)
    assert ("_jsonb_merge(" in compiled) == (len(set_) == 65), compiled
    before = dict(conn.execute("SELECT id, data FROM ndocs WHERE table_id = 1").fetchall())
    others = conn.execute("SELECT id, data FROM ndocs WHERE table_id = 2 ORDER BY id").fetchall()
    _run(conn, set_, {"page_size": page_size})
    after = dict(conn.execute("SELECT id, data FROM ndocs WHERE table_id = 1").fetchall())
    want_patch: dict[str, Any] = {}
    for key, value in set_.items():
        piece: Any = value
        for part in reversed(key.split(".")):
            piece = {part: piece}
        want_patch = merged(want_patch, piece)
    assert after == {k: merged(v, want_patch) for k, v in before.items()}
    assert conn.execute("SELECT id, data FROM ndocs WHERE table_id = 2 "
                        "ORDER BY id").fetchall() == others


@pytest.mark.parametrize("doc", ["null", '"text"', "[1, 2]", "5", None])
def test_a_document_that_is_no_object_becomes_the_patch(conn: Conn, docs: str,
                                                        doc: str | None) -> None:
    conn.execute("UPDATE ndocs SET data = %s::jsonb WHERE table_id = 1 AND id %% 5 = 0", (doc,))
    _run(conn, {"meta.flag": 1, "top": 2}, {"replace_non_objects": True})
    got = [r[0] for r in conn.execute(
        "SELECT data FROM ndocs WHERE table_id = 1 AND id % 5 = 0").fetchall()]
    assert got and all(d == {"meta": {"flag": 1}, "top": 2} for d in got)


def test_an_update_in_the_callers_search_path_cannot_take_the_operators(
        conn: Conn, docs: str) -> None:
    """The expression runs in the page's UPDATE: its operators are
    schema-qualified, so a `||` or `->` of another schema on the path is
    never the one called."""
    conn.execute("""CREATE SCHEMA evil;
        CREATE FUNCTION evil.cat(jsonb, jsonb) RETURNS jsonb LANGUAGE sql
            AS $$ SELECT '{"evil": true}'::jsonb $$;
        CREATE OPERATOR evil.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.cat)""")
    try:
        compiled = _compiled(conn, {"meta.flag": 1, "top": 2})
        for operator in ("||", "->", "="):
            assert f" {operator} " not in compiled.removeprefix("data = ").replace(
                f"OPERATOR(pg_catalog.{operator})", ""), compiled
        conn.execute("SET search_path = evil, public")
        _run(conn, {"meta.flag": 1, "top": 2}, {})
        assert not conn.execute("SELECT 1 FROM ndocs WHERE data ? 'evil'").fetchall()
    finally:
        conn.execute("RESET search_path")
