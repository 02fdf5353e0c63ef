"""JSONL imports read every value a JSONL export writes, as a class: arrays of
any dimensions as nested JSON arrays, composites as JSON objects (nested,
in arrays, in domains), arrays whose lower bounds are not 1 as their
PostgreSQL text, NULL at every level (docs/imports.md, "JSON values").

- The round trip: a table of many column types (scalars, jsonb, 1-, 2- and
  3-dimensional arrays, a composite holding an array, a float and json, a
  composite nested in one, an array of composites, domains over an array
  and a composite, arrays starting at 0) exported as jsonl and csv by the
  worker and imported into an empty table of the same shape gives the same
  rows: compared whole (IS NOT DISTINCT FROM) and by each column's text.
  Before, a JSONL import refused a two-dimensional array and a composite's
  JSON object (their record rejected), and so failed the round trip.
- What cannot be read faithfully is a rejected record, the rest of the file
  imported: a ragged array (at any depth, in a composite, in an array of
  composites), a field a composite type lacks (naming it), an object for an
  array, an array or a number for a composite, a domain's CHECK; each
  reason names the column and the place.
- A field left out of a composite's object is NULL; JSON null is NULL at
  every level.
- JSON null and SQL NULL of a json or jsonb value inside an array or a
  composite (an element of jsonb[] or json[], a field, a domain over json,
  at any nesting) come back as they were from jsonl and csv, and so does a
  jsonb[] holding JSON strings ("1" stays a string) or JSON arrays, or of
  two dimensions: the export writes such a value as its PostgreSQL text
  (row_to_json spells JSON null as SQL NULL's null, and [[1],[2]] for a
  jsonb[] of two dimensions and one of arrays alike). Before, the import
  read every such null back as SQL NULL, "1" as the number 1 and refused
  "x". A json or jsonb column's own JSON null has no other spelling in
  JSONL (SQL NULL, documented); csv carries it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.support import (
    admin_execute,
    allow,
    build_target,
    database_name,
    job,
    run_export,
    run_import,
    submit_export,
    submit_import,
    with_database,
)

Conn = psycopg.Connection[Any]

TYPES = """
  CREATE TYPE nj_inner AS (tag varchar(8), n numeric);
  CREATE TYPE nj_comp AS (label text, items int[], f float8, j json, jb jsonb,
                          inner_ nj_inner, grid text[], ok boolean);
  CREATE DOMAIN nj_posarr AS int[] CHECK (VALUE[1] > 0);
  CREATE DOMAIN nj_poscomp AS nj_inner CHECK ((VALUE).n > 0);
  CREATE TYPE nj_wrapped AS (d nj_posarr, p nj_poscomp);
  CREATE DOMAIN nj_djson AS json;
  CREATE DOMAIN nj_djsonb AS jsonb;
  CREATE TYPE nj_jnest AS (dj nj_djson, djb nj_djsonb, ja jsonb[], jj json[], c nj_comp);
  CREATE DOMAIN nj_da AS int[];
  CREATE DOMAIN nj_dja AS jsonb[];
  CREATE TYPE nj_dawrap AS (das nj_da[], n int);
"""
# column: type (every column but id, scope and created_at)
TYPES_OF = {
    "i": "int", "b8": "bigint", "num": "numeric", "t": "text", "flag": "boolean",
    "day": "date", "at": "timestamptz", "u": "uuid", "jb": "jsonb", "ia": "int[]",
    "t2": "text[][]", "i3": "int[][][]", "f2": "float8[][]", "comp": "nj_comp",
    "carr": "nj_comp[]", "dom": "nj_posarr", "dcomp": "nj_poscomp", "wrap": "nj_wrapped",
    "warr": "nj_wrapped[]", "zb": "int[]", "tz": "text[][]",
    "jarr": "jsonb[]", "jsarr": "json[]", "dj": "nj_djson", "djb": "nj_djsonb",
    "jn": "nj_jnest", "jnarr": "nj_jnest[]",
    "dad": "nj_da[]", "djad": "nj_dja[]", "daw": "nj_dawrap[]",
}
COLUMNS = list(TYPES_OF)
JSON_INSIDE = {"comp", "carr", "jsarr", "dj", "jn", "jnarr"}  # (json has no equality operator)
TABLE = ("id bigint PRIMARY KEY, scope int NOT NULL, "
         "created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', "
         + ", ".join(f"{c} {t}" for c, t in TYPES_OF.items()))
COMP = ("ROW('a \"quoted\", {braced}', '{{1,2},{3,NULL}}', '-0', '{\"k\": 1, \"k\": 2}', "
        "'{\"x\": [1, null]}', ROW('tag', 1.50)::nj_inner, '{{a,b},{NULL,\"\"}}', true)::nj_comp")
ROWS = [
    # every column given
    {"i": "-2147483648", "b8": "9223372036854775807", "num": "123456789.000100",
     "t": "'é ✓ \"q\", {x}'", "flag": "true", "day": "'2024-02-29'",
     "at": "'2024-01-01 12:00:00.123456+00'",
     "u": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "jb": "'{\"a\": [1, {\"b\": null}]}'",
     "ia": "'{1,NULL,3}'", "t2": "'{{a,\"b c\"},{NULL,\"{x}\"}}'",
     "i3": "'{{{1,2},{3,4}},{{5,6},{7,NULL}}}'", "f2": "'{{-0,1.5},{NaN,-Infinity}}'",
     "comp": COMP, "carr": f"ARRAY[{COMP}, NULL, ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
                          " NULL)::nj_comp]",
     "dom": "'{5,6}'", "dcomp": "ROW('d', 2)", "wrap": "ROW('{1}', ROW('w', 3))",
     "warr": "ARRAY[ROW('{{1,2},{3,4}}', NULL)::nj_wrapped]", "zb": "'[0:2]={7,8,9}'",
     "tz": "'[0:1][2:3]={{a,b},{c,d}}'"},
    # NULLs at the top and one level down
    {"comp": "ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::nj_comp",
     "carr": "ARRAY[NULL]::nj_comp[]", "t2": "'{{NULL,NULL}}'", "wrap": "ROW(NULL, NULL)"},
    # empty arrays, a composite of one-element arrays
    {"ia": "'{}'", "t2": "'{}'", "i3": "'{{{1}}}'", "carr": "'{}'",
     "comp": "ROW('', '{}', 1e300, '\"s\"', '[]', ROW(NULL, NULL)::nj_inner, '{}', false)::nj_comp",
     "f2": "'{{1}}'"},
    # nothing but the key
    {},
    # JSON null beside SQL NULL inside arrays and composites, at every level
    # (a json or jsonb column's own JSON null is not among them: JSONL has
    # no spelling of it but null, which reads SQL NULL)
    {"comp": "ROW('n', NULL, NULL, 'null', 'null', NULL, NULL, NULL)::nj_comp",
     "carr": "ARRAY[ROW(NULL, NULL, NULL, 'null', NULL, NULL, NULL, NULL)::nj_comp, "
             "ROW(NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL)::nj_comp, NULL]",
     "jarr": "'{\"null\",NULL,\"\\\"1\\\"\",\"[1]\"}'",
     "jsarr": "ARRAY['null'::json, NULL, '\"x\"', '{\"a\":1,\"a\":2}']",
     "dj": "'{\"n\":null}'", "djb": "'[null]'",
     "jn": "ROW('null', 'null', '{\"null\",NULL}', '{\"null\",NULL}', "
           "ROW(NULL, NULL, NULL, 'null', 'null', NULL, NULL, NULL)::nj_comp)::nj_jnest",
     "jnarr": "ARRAY[ROW(NULL, 'null', NULL, NULL, NULL)::nj_jnest, "
              "ROW('null', NULL, '{}', NULL, NULL)::nj_jnest, NULL]"},
    # the same places holding SQL NULL, JSON strings and JSON arrays (a
    # jsonb[] of arrays and one of two dimensions), which a JSON array
    # carries or not
    {"comp": "ROW('s', NULL, NULL, '\"1\"', '\"1\"', NULL, NULL, NULL)::nj_comp",
     "jarr": "ARRAY['\"1\"', '\"x\"', '{\"k\": \"2\"}']::jsonb[]",
     "jsarr": "ARRAY['\"1\"', NULL]::json[]", "dj": "'\"s\"'", "djb": "'{\"a\": null}'",
     "jn": "ROW(NULL, NULL, '{NULL}', '{NULL}', NULL)::nj_jnest",
     "jnarr": "ARRAY[ROW('[1]', '[]', ARRAY['[1]', '[2]']::jsonb[], '{}', NULL)::nj_jnest]"},
    {"jarr": "'{{1,2},{3,NULL}}'", "jsarr": "ARRAY['[1]', '[2]']::json[]",
     "jn": "ROW('1', '\"1\"', '{{1},{2}}', '{{1},{NULL}}', NULL)::nj_jnest"},
    # arrays of a domain over an array (at the top, of jsonb, in a
    # composite in an array): row_to_json nests each element's array as if
    # it were a dimension, ragged or not
    {"dad": "'{\"{1,2}\",\"{3}\",NULL}'::nj_da[]",
     "djad": "'{\"{\\\"\\\\\\\"1\\\\\\\"\\\"}\",\"{NULL}\",\"{}\"}'::nj_dja[]",
     "daw": "ARRAY[ROW('{\"{{1},{2}}\",\"{4,5}\"}', 1)::nj_dawrap]"},
    {"dad": "'{\"{1,2}\",\"{3,4}\"}'::nj_da[]", "djad": "'{NULL}'::nj_dja[]",
     "daw": "ARRAY[ROW('{}', 2)::nj_dawrap, ROW('{NULL}', 3)::nj_dawrap]"},
]


@pytest.fixture(scope="module")
def nested_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    """One database for the module: nj_src (ROWS in scope 1) and nj_copy, empty."""
    from tests.conftest import TEMPLATE

    name = database_name("nested")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TYPES)
        for table in ("nj_src", "nj_copy"):
            build_target(conn, table, TABLE, index="unique")
        for n, row in enumerate(ROWS, start=1):
            columns = ", ".join(["id", "scope", *row])
            values = ", ".join([str(n), "1", *row.values()])
            conn.execute(f"INSERT INTO nj_src ({columns}) VALUES ({values})")
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def nconn(nested_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(nested_dsn, autocommit=True) as conn:
        conn.execute("SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; "
                     "SET TimeZone = 'UTC'")
        yield conn


def test_the_rows_hold_what_they_say(nconn: Conn) -> None:
    # (a 2- and a 3-dimensional array, a float -0 in a composite, bounds at 0)
    row = nconn.execute("SELECT array_ndims(t2), array_ndims(i3), (comp).f::text, "
                        "array_lower(zb, 1), array_dims(tz) FROM nj_src WHERE id = 1").fetchone()
    assert row == (2, 3, "-0", 0, "[0:1][2:3]")
    # (JSON null where the fixture says, beside SQL NULL: an array literal's
    # unquoted null is SQL NULL)
    row = nconn.execute(
        "SELECT jarr[1] = 'null', jarr[2] IS NULL, json_typeof(jsarr[1]), jsarr[2] IS NULL, "
        "json_typeof((comp).j), jsonb_typeof((comp).jb), (jn).ja[1] = 'null', "
        "(jn).ja[2] IS NULL, json_typeof((jn).dj), jsonb_typeof((jnarr[1]).djb) "
        "FROM nj_src WHERE id = 5").fetchone()
    assert row == (True, True, "null", True, "null", "null", True, True, "null", "null")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_imported_back_gives_the_same_rows(nconn: Conn, nested_dsn: str,
                                                      tmp_path: Path, fmt: str) -> None:
    storage = f"file://{tmp_path}/exports"
    allow(nconn, storage)
    exported = run_export(nested_dsn, submit_export(nconn, "1", {}, {"format": fmt},
                                                    target="nj_src"), storage)
    assert exported.status == "succeeded", exported
    assert exported.result is not None
    nconn.execute("TRUNCATE nj_copy")
    import_id = submit_import(nconn, exported.result["uri"], "1", target="nj_copy")
    run_import(nested_dsn, import_id, storage)
    imported = job(nconn, import_id)
    assert imported["status"] == "succeeded", imported
    assert imported["result"]["inserted"] == len(ROWS)
    # The whole row (arrays compare their bounds; json has no equality, so
    # the composites holding it are compared by text only) and each
    # column's text, in the fixture's fixed styles (floats exact).
    equal = ["id", "scope", *(c for c in COLUMNS if c not in JSON_INSIDE)]
    differ = nconn.execute(
        f"SELECT s.id, ROW({', '.join(f's.{c}' for c in COLUMNS)})::text, "
        f"ROW({', '.join(f'c.{c}' for c in COLUMNS)})::text "
        f"FROM nj_src s FULL JOIN nj_copy c USING (id) "
        f"WHERE ROW({', '.join(f's.{c}' for c in equal)}) IS DISTINCT FROM "
        f"ROW({', '.join(f'c.{c}' for c in equal)})"
        + "".join(f" OR s.{c}::text IS DISTINCT FROM c.{c}::text"
                  f" OR (s.{c} IS NULL) <> (c.{c} IS NULL)" for c in COLUMNS)).fetchall()
    assert differ == [], (COLUMNS, differ)


# --- the round trip as a property: generated nested values ------------------

EXAMPLES = int(os.environ.get("PGJOBS_NESTED_EXAMPLES", "6"))
SCOPE = itertools.count(100)


def quoted(text: str) -> str:
    """An element or field of PostgreSQL's array or record text, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_text(value: Any, lower: int = 1) -> str:
    """PostgreSQL's text of a (nested, rectangular) list; None elements NULL;
    `lower`: the first dimension's lower bound."""
    def inner(v: Any) -> str:
        if isinstance(v, list):
            return "{" + ",".join(inner(e) for e in v) + "}"
        return "NULL" if v is None else quoted(str(v))
    bounds = f"[{lower}:{lower + len(value) - 1}]=" if lower != 1 and value else ""
    return bounds + inner(value)


def record_text(fields: list[str | None]) -> str:
    return "(" + ",".join("" if f is None else quoted(f) for f in fields) + ")"


words = st.one_of(st.sampled_from(["", " ", '"', "\\", ",", "{", "}", "(", ")", "NULL", "null",
                                   "a b", "\u00e9\u2713"]),
                  st.text(st.characters(blacklist_categories=("Cs",),
                                        blacklist_characters="\x00"), max_size=6))


def grids(elements: st.SearchStrategy[Any], dims: int) -> st.SearchStrategy[Any]:
    """Rectangular nested lists of `dims` dimensions (1 to 3 long each)."""
    return st.lists(st.integers(1, 3), min_size=dims, max_size=dims).flatmap(
        lambda shape: _grid(elements, shape))


def _grid(elements: st.SearchStrategy[Any], shape: list[int]) -> st.SearchStrategy[Any]:
    if not shape:
        return elements
    return st.lists(_grid(elements, shape[1:]), min_size=shape[0], max_size=shape[0])


maybe_int = st.one_of(st.none(), st.integers(-2 ** 31, 2 ** 31 - 1))
inner_values = st.one_of(st.none(), st.builds(
    lambda tag, n: record_text([tag, n]), st.one_of(st.none(), st.text("abc", max_size=8)),
    st.one_of(st.none(), st.decimals(allow_nan=False, places=3).map(str))))
# JSON values, null at every level, as text (no \u0000 or lone surrogate,
# which jsonb refuses)
json_texts = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.sampled_from(["1", "", "null"]),
              st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                      max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b", "null"]), inner,
                                            max_size=2)),
    max_leaves=4).map(json.dumps)
# a json or jsonb slot: JSON null and SQL NULL (None) both likely
json_slots = st.one_of(st.none(), st.just("null"), json_texts)
json_arrays = st.one_of(st.none(), st.integers(1, 2).flatmap(lambda d: grids(json_slots, d))
                        .map(array_text))
comp_values = st.builds(
    lambda label, items, f, j, jb, inner, grid, ok: record_text(
        [label, items, f, j, jb, inner, grid, ok]),
    st.one_of(st.none(), words),
    st.one_of(st.none(), st.integers(1, 2).flatmap(lambda d: grids(maybe_int, d)).map(array_text)),
    st.one_of(st.none(), st.sampled_from(["-0", "NaN", "Infinity", "5e-324", "0.1"]),
              st.floats().map(repr)),
    json_slots, json_slots,
    inner_values,
    st.one_of(st.none(), grids(st.one_of(st.none(), words), 2).map(array_text)),
    st.sampled_from([None, "t", "f"]))
nested_rows = st.lists(st.fixed_dictionaries({
    "t2": st.one_of(st.none(), grids(st.one_of(st.none(), words), 2).map(array_text)),
    "i3": st.one_of(st.none(), grids(maybe_int, 3).map(array_text)),
    "comp": st.one_of(st.none(), comp_values),
    "carr": st.one_of(st.none(), st.lists(st.one_of(st.none(), comp_values), max_size=3)
                      .map(array_text)),
    "zb": st.one_of(st.none(), st.builds(array_text, st.lists(maybe_int, min_size=1, max_size=3),
                                         st.integers(-3, 3))),
    "jarr": json_arrays,
    "jn": st.one_of(st.none(), st.builds(
        lambda dj, djb, ja, jj, c: record_text([dj, djb, ja, jj, c]),
        json_slots, json_slots, json_arrays, json_arrays, st.one_of(st.none(), comp_values))),
}), min_size=1, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(rows=nested_rows)
# JSON null beside SQL NULL at every level (a field, an element, a field of
# an element, a domain, an array in a composite in an array)
@example(rows=[{"t2": None, "i3": None, "zb": None,
                "comp": record_text(["x", None, None, "null", "null", None, None, None]),
                "carr": array_text([record_text([None, None, None, "null", None, None, None,
                                                 None]), None]),
                "jarr": array_text([["null", None], ['"1"', "[null]"]]),
                "jn": record_text(["null", "null", array_text(["null", None]),
                                   array_text([None, "null"]),
                                   record_text([None, None, None, None, "null", None, None,
                                                None])])},
               {"t2": None, "i3": None, "zb": None, "jarr": array_text([None]),
                "comp": record_text(["y", None, None, None, None, None, None, None]),
                "carr": array_text([None]), "jn": record_text([None, None, None, None, None])}])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_generated_nested_values_come_back_from_jsonl(nconn: Conn, nested_dsn: str,
                                                      tmp_path: Path, fmt: str,
                                                      rows: list[dict[str, str | None]]) -> None:
    """(and from csv: the same rows, the same comparison)"""
    scope = next(SCOPE)
    storage = f"file://{tmp_path}/exports"
    allow(nconn, storage)
    for n, row in enumerate(rows, start=1):
        nconn.execute("INSERT INTO nj_src (id, scope, t2, i3, comp, carr, zb, jarr, jn) "
                      "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                      (scope * 10 + n, scope, row["t2"], row["i3"], row["comp"], row["carr"],
                       row["zb"], row["jarr"], row["jn"]))
    exported = run_export(nested_dsn, submit_export(nconn, str(scope), {}, {"format": fmt},
                                                    target="nj_src"), storage)
    assert exported.status == "succeeded", exported
    assert exported.result is not None
    import_id = submit_import(nconn, exported.result["uri"], str(scope), target="nj_copy")
    run_import(nested_dsn, import_id, storage)
    imported = job(nconn, import_id)
    assert imported["status"] == "succeeded", (imported, rows)
    differ = nconn.execute(
        "SELECT s.id, s.t2::text, c.t2::text, s.i3::text, c.i3::text, s.comp::text, "
        "c.comp::text, s.carr::text, c.carr::text, s.zb::text, c.zb::text, s.jarr::text, "
        "c.jarr::text, s.jn::text, c.jn::text "
        "FROM nj_src s FULL JOIN nj_copy c USING (id) "
        "WHERE coalesce(s.scope, c.scope) = %s AND ("
        "ROW(s.id, s.t2, s.i3, s.zb, s.jarr) IS DISTINCT FROM ROW(c.id, c.t2, c.i3, c.zb, c.jarr) "
        "OR ROW(s.comp, s.carr, s.jn)::text IS DISTINCT FROM ROW(c.comp, c.carr, c.jn)::text "
        "OR (s.comp IS NULL) <> (c.comp IS NULL) OR (s.carr IS NULL) <> (c.carr IS NULL) "
        "OR (s.jn IS NULL) <> (c.jn IS NULL))",
        (scope,)).fetchall()
    assert differ == [], (rows, differ)


# --- records the import cannot read faithfully: rejected, naming the place ---

GOOD = {"id": 0, "t2": [["a", "b"], ["c", None]],
        "comp": {"label": "x", "items": [[1], [2]], "inner_": {"tag": "t", "n": 1}},
        "carr": [{"label": "y", "grid": [["p"]]}, None], "dom": [1, 2],
        "dcomp": {"tag": "d", "n": 2}, "wrap": {"d": [3], "p": {"n": 4}}}
# case: (column, value, words the reason holds)
BAD: dict[str, tuple[str, Any, list[str]]] = {
    "ragged_short": ("t2", [["a", "b"], ["c"]],
                     ['column "t2"', "not rectangular", "t2[2] has 1 elements",
                      "t2[1] has 2 elements"]),
    "ragged_long": ("ia", [[1], [2, 3]], ['column "ia"', "not rectangular", "ia[2]"]),
    "ragged_scalar_among_arrays": ("t2", [["a"], "b"],
                                   ['column "t2"', "not rectangular", "t2[2] is a JSON string"]),
    "ragged_array_after_a_scalar": ("t2", [["a", "b"], ["c", ["d"]]],
                                    ['column "t2"', "not rectangular", "t2[2][2] is an array",
                                     "t2[1][1] is not"]),
    # (a first element that is no array makes one dimension: a later array
    # is an element, which an integer cannot read)
    "array_element_of_one_dimension": ("ia", [1, [2]], ["integer", '"[2]"']),
    "ragged_third_level": ("i3", [[[1, 2]], [[3]]],
                           ['column "i3"', "not rectangular", "i3[2][1] has 1 elements"]),
    "ragged_in_composite": ("comp", {"items": [[1, 2], [3]]},
                            ['column "comp"', "not rectangular", "comp.items[2]"]),
    "ragged_in_array_of_composites": ("carr", [{"grid": [["a"]]}, {"grid": [["a"], []]}],
                                      ['column "carr"', "not rectangular", "carr[2].grid[2]"]),
    "ragged_in_domain": ("dom", [[1, 2], [3]], ['column "dom"', "not rectangular"]),
    "unknown_field": ("comp", {"label": "x", "lable": "y"},
                      ['column "comp"', 'field "lable"', "not a field of type public.nj_comp",
                       "label, items"]),
    "unknown_nested_field": ("comp", {"inner_": {"tag": "t", "count": 1}},
                             ['field "count"', "comp.inner_.count", "nj_inner"]),
    "unknown_field_in_array": ("carr", [{"label": "a"}, {"labels": "b"}],
                               ['field "labels"', "carr[2].labels"]),
    "unknown_field_in_domain": ("dcomp", {"tag": "d", "n": 1, "x": 2},
                                ['column "dcomp"', 'field "x"', "nj_inner"]),
    "object_for_array": ("ia", {"a": 1}, ['column "ia"', "JSON object", "array of"]),
    "object_for_array_in_composite": ("comp", {"items": {"a": 1}},
                                      ["comp.items is a JSON object", "array of"]),
    "array_for_composite": ("comp", [1, 2], ['column "comp"', "JSON array",
                                             "object of type public.nj_comp"]),
    "number_for_composite": ("carr", [1], ["carr[1] is a JSON number",
                                           "object of type public.nj_comp"]),
    "number_for_nested_composite": ("wrap", {"p": 5}, ["wrap.p is a JSON number"]),
    "domain_array_check": ("dom", [-1, 2], ["nj_posarr", "check constraint"]),
    "domain_composite_check": ("dcomp", {"tag": "d", "n": -1}, ["nj_poscomp",
                                                                "check constraint"]),
    "domain_in_composite_check": ("wrap", {"d": [0]}, ["nj_posarr", "check constraint"]),
    "domain_text_check": ("dom", "{-1}", ["nj_posarr", "check constraint"]),
    "field_too_long": ("comp", {"inner_": {"tag": "123456789"}}, ["character varying(8)"]),
    "element_not_an_integer": ("i3", [[["x"]]], ["integer", '"x"']),
}


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


@pytest.mark.parametrize("case", list(BAD))
def test_a_record_not_read_faithfully_is_rejected_with_its_reason(
        nconn: Conn, nested_dsn: str, tmp_path: Path, case: str) -> None:
    column, value, words = BAD[case]
    folder = tmp_path / "in"
    folder.mkdir()
    allow(nconn, f"file://{folder}")
    source = folder / "rows.jsonl"
    # The bad record between two good ones, all naming the same keys.
    records = [{**GOOD, "id": n, column: GOOD.get(column)} for n in (1, 2, 3)]
    records[1][column] = value
    keys = sorted({k for r in records for k in r})
    source.write_text("".join(_line({k: r.get(k) for k in keys}) for r in records))
    nconn.execute("TRUNCATE nj_copy")
    import_id = submit_import(nconn, f"file://{source}", "1", {"max_rejects": 5},
                              target="nj_copy")
    run_import(nested_dsn, import_id, f"file://{folder}")
    imported = job(nconn, import_id)
    assert imported["status"] == "succeeded", imported
    assert (imported["result"]["inserted"], imported["result"]["rejected"]) == (2, 1)
    rejects = nconn.execute("SELECT line, reason FROM pgjobs.import_rejects WHERE job_id = %s",
                            (import_id,)).fetchall()
    assert [r[0] for r in rejects] == [2]
    reason = rejects[0][1]
    for word in words:
        assert word in reason, (case, reason)
    assert [r[0] for r in nconn.execute("SELECT id FROM nj_copy ORDER BY id")] == [1, 3]


def test_fields_left_out_and_nulls_at_every_level_are_null(nconn: Conn, nested_dsn: str,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    allow(nconn, f"file://{folder}")
    source = folder / "rows.jsonl"
    source.write_text("".join(_line(r) for r in [
        {"id": 1, "comp": {"label": "only"}, "carr": [None, {}], "t2": [[None], [None]],
         "wrap": {"d": None, "p": {"tag": None}}, "dcomp": None, "i3": [[[None]]]},
        {"id": 2, "comp": None, "carr": None, "t2": None, "wrap": None, "dcomp": None,
         "i3": None},
    ]))
    nconn.execute("TRUNCATE nj_copy")
    import_id = submit_import(nconn, f"file://{source}", "1", target="nj_copy")
    run_import(nested_dsn, import_id, f"file://{folder}")
    assert job(nconn, import_id)["status"] == "succeeded"
    rows = nconn.execute("SELECT comp::text, carr::text, t2::text, wrap::text, dcomp::text, "
                         "i3::text FROM nj_copy ORDER BY id").fetchall()
    assert rows == [("(only,,,,,,,)", '{NULL,"(,,,,,,,)"}', "{{NULL},{NULL}}", '(,"(,)")',
                     None, "{{{NULL}}}"),
                    (None, None, None, None, None, None)]


def _import_lines(nconn: Conn, nested_dsn: str, tmp_path: Path, records: list[dict[str, Any]],
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    allow(nconn, f"file://{folder}")
    source = folder / f"rows{len(list(folder.iterdir()))}.jsonl"
    source.write_text("".join(_line(r) for r in records))
    import_id = submit_import(nconn, f"file://{source}", "1", options, target="nj_copy")
    run_import(nested_dsn, import_id, f"file://{folder}")
    return job(nconn, import_id)


def test_bad_records_of_every_kind_in_one_batch_are_each_rejected(
        nconn: Conn, nested_dsn: str, tmp_path: Path) -> None:
    """Several bad records in one batch: each is found (the batch narrowed
    down around the new reads) and rejected with its own reason; the good
    ones around them go in."""
    nconn.execute("TRUNCATE nj_copy")
    bad = {3: "ragged_short", 6: "unknown_nested_field", 7: "domain_composite_check",
           11: "number_for_composite"}
    records = []
    for n in range(1, 13):
        record = {**GOOD, "id": n, "ia": None, "i3": None}
        if n in bad:
            column, value, _ = BAD[bad[n]]
            record[column] = value
        records.append(record)
    imported = _import_lines(nconn, nested_dsn, tmp_path, records, {"max_rejects": 10})
    assert imported["status"] == "succeeded", imported
    rejects = nconn.execute("SELECT line, reason FROM pgjobs.import_rejects WHERE job_id = %s "
                            "ORDER BY line", (imported["id"],)).fetchall()
    assert [r[0] for r in rejects] == sorted(bad)
    for line, reason in rejects:
        assert all(word in reason for word in BAD[bad[line]][2]), (line, reason)
    assert [r[0] for r in nconn.execute("SELECT id FROM nj_copy ORDER BY id")] == [
        n for n in range(1, 13) if n not in bad]


def test_on_duplicate_update_replaces_nested_values(nconn: Conn, nested_dsn: str,
                                                    tmp_path: Path) -> None:
    nconn.execute("TRUNCATE nj_copy")
    first = {"id": 1, "t2": [["a"]], "comp": {"label": "old", "items": [[1]]}}
    assert _import_lines(nconn, nested_dsn, tmp_path, [first])["status"] == "succeeded"
    second = {"id": 1, "t2": [["b", "c"], ["d", None]], "comp": {"label": "new"}}
    updated = _import_lines(nconn, nested_dsn, tmp_path, [second], {"on_duplicate": "update"})
    assert updated["status"] == "succeeded", updated
    assert updated["result"]["updated"] == 1
    assert nconn.execute("SELECT t2::text, comp::text FROM nj_copy").fetchall() == [
        ("{{b,c},{d,NULL}}", "(new,,,,,,,)")]


def test_an_array_of_json_or_jsonb_stays_one_dimension(nconn: Conn, nested_dsn: str,
                                                       tmp_path: Path) -> None:
    """A JSONL export writes a jsonb[] of one dimension holding arrays and one
    of two dimensions alike ([[1], [2]]): the import reads one dimension of
    JSON values, as it always did (docs/imports.md)."""
    nconn.execute("TRUNCATE nj_copy")
    nconn.execute("ALTER TABLE nj_copy ADD COLUMN IF NOT EXISTS ja jsonb[]")
    try:
        imported = _import_lines(nconn, nested_dsn, tmp_path,
                                 [{"id": 1, "ja": [[1], {"k": [2]}, None]}])
        assert imported["status"] == "succeeded", imported
        assert nconn.execute("SELECT array_ndims(ja), ja[1]::text, ja[2]::text, ja[3] IS NULL "
                             "FROM nj_copy").fetchall() == [(1, "[1]", '{"k": [2]}', True)]
    finally:
        nconn.execute("TRUNCATE nj_copy")
        nconn.execute("ALTER TABLE nj_copy DROP COLUMN ja")


# --- a json or jsonb column's own JSON null -----------------------------------

TOP_TABLE = ("id bigint PRIMARY KEY, scope int NOT NULL, "
             "created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', "
             "j json, jb jsonb, dj nj_djson, djb nj_djsonb")
# id: the row's json values (None: SQL NULL)
TOP_ROWS: dict[int, str | None] = {1: "null", 2: None, 3: '"null"', 4: "[null]"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_json_columns_own_null_is_read_as_documented(nconn: Conn, nested_dsn: str,
                                                       tmp_path: Path, fmt: str) -> None:
    """csv carries a json, jsonb or domain column's JSON null (the text null)
    apart from SQL NULL (an empty field): every row comes back as it was.
    JSONL spells both null, which the import reads as SQL NULL
    (docs/imports.md): there the JSON null row comes back SQL NULL, and
    every other row as it was."""
    if nconn.execute("SELECT to_regclass('nj_top') IS NULL").fetchone() == (True,):
        build_target(nconn, "nj_top", TOP_TABLE, index="unique")
        build_target(nconn, "nj_top_copy", TOP_TABLE, index="unique")
        for n, value in TOP_ROWS.items():
            nconn.execute("INSERT INTO nj_top (id, scope, j, jb, dj, djb) "
                          "VALUES (%s, 1, %s, %s, %s, %s)", (n, value, value, value, value))
    nconn.execute("TRUNCATE nj_top_copy")
    storage = f"file://{tmp_path}/exports"
    allow(nconn, storage)
    exported = run_export(nested_dsn, submit_export(nconn, "1", {}, {"format": fmt},
                                                    target="nj_top"), storage)
    assert exported.status == "succeeded", exported
    assert exported.result is not None
    import_id = submit_import(nconn, exported.result["uri"], "1", target="nj_top_copy")
    run_import(nested_dsn, import_id, storage)
    assert job(nconn, import_id)["status"] == "succeeded"
    rows = nconn.execute(
        "SELECT id, j::text, jb::text, dj::text, djb::text FROM nj_top_copy ORDER BY id").fetchall()
    read = {n: (None if fmt == "jsonl" and value == "null" else value)
            for n, value in TOP_ROWS.items()}
    assert rows == [(n, value, value, value, value) for n, value in read.items()], fmt


# --- the check's fast path never passes what the check refuses ----------------

SHAPED = ["int[]", "text[]", "nj_comp", "nj_comp[]", "nj_wrapped", "nj_wrapped[]", "nj_posarr",
          "nj_jnest", "nj_jnest[]"]
# values near the shapes: arrays of 0-3 dimensions, ragged or not, objects
# naming the types' fields or others, scalars where arrays or objects go
json_near = st.recursive(
    st.one_of(st.none(), st.integers(0, 3), st.just("s"), st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["label", "items", "inner_", "grid", "d", "p", "n",
                                         "tag", "ja", "c", "x"]), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=int(os.environ.get("PGJOBS_NESTED_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=json_near, type_=st.sampled_from(SHAPED))
def test_the_fast_test_passes_only_what_the_check_passes(nconn: Conn, value: Any,
                                                         type_: str) -> None:
    """pgjobs._import_json_fast (an expression the INSERT evaluates so that
    most records need no call of pgjobs._import_json_check) may leave a value
    to the check, never pass one the check refuses: a ragged array, a field
    the type lacks, an object for an array would otherwise be read as
    another value without a word."""
    shape = nconn.execute("SELECT pgjobs._import_json_shape(%s::regtype)", (type_,)).fetchone()
    assert shape is not None
    fast_sql = nconn.execute("SELECT pgjobs._import_json_fast('v.v', %s::jsonb)",
                             (json.dumps(shape[0]),)).fetchone()
    assert fast_sql is not None
    fast = nconn.execute(f"SELECT {fast_sql[0]} FROM (SELECT %s::jsonb AS v) v",
                         (json.dumps(value),)).fetchone()
    assert fast is not None
    try:
        nconn.execute("SELECT pgjobs._import_json_check(%s::jsonb, %s::jsonb, 'c')",
                      (json.dumps(value), json.dumps(shape[0])))
        passed = True
    except psycopg.errors.InvalidTextRepresentation:
        passed = False
    assert passed or fast[0] is not True, (type_, value, fast_sql[0])
    if isinstance(value, list) and all(not isinstance(e, (list, dict)) for e in value):
        # (and it does pass the common case: one dimension of scalars)
        assert fast[0] is True or type_ not in ("int[]", "text[]"), (type_, value)


@pytest.mark.parametrize("type_, value, fast", [
    ("int[]", [[1, 2], [3, 4]], True), ("int[]", [[1, 2], [3]], False),
    ("int[]", [[1], "x"], False), ("int[]", [[1, [2]], [3, 4]], False),
    ("int[]", [[[1]]], False), ("int[]", {"a": 1}, False), ("int[]", [], True),
    ("nj_comp", {"label": "a", "items": [[1], [2]]}, True),
    ("nj_comp", {"label": "a", "lable": 1}, False),
    ("nj_comp", {"items": [[1], [2, 3]]}, False),
    ("nj_comp[]", [{"label": "a"}, None, "(x)"], True), ("nj_comp[]", [{"labels": 1}], False),
    ("nj_comp[]", [[{"label": 1}]], False), ("nj_wrapped", {"p": {"tag": "t", "x": 1}}, False),
])
def test_the_fast_test_on_known_values(nconn: Conn, type_: str, value: Any, fast: bool) -> None:
    got = nconn.execute(
        "SELECT pgjobs._import_json_fast('v.v', pgjobs._import_json_shape(%s::regtype))",
        (type_,)).fetchone()
    assert got is not None
    row = nconn.execute(f"SELECT coalesce({got[0]}, false) FROM (SELECT %s::jsonb AS v) v",
                        (json.dumps(value),)).fetchone()
    assert row == (fast,), (type_, value)
