"""The JSONL import's plain-SQL pre-test (pgjobs._import_json_fast) never
passes a value the full check (pgjobs._import_json_check) would refuse, as a
class: generated JSON values, near the shapes of array and composite types
(ragged arrays at every depth, [] and [[]], arrays of null, nested
composites, missing, extra and duplicate keys, keys differing only by case
or quoting, strings and numbers in place of objects, arrays of domains over
arrays, very deep nesting), each judged by the pre-test and by the check
alone. The pre-test may leave a value to the check (false); where it passes
one, the check passes it too, and the pre-test itself never raises (a
record must not be rejected for the test's own error). Both read the value
the import reads (jsonb), so what json(b)_to_record then inserts is the same
value either way (docs/imports.md, "Arrays and composites in JSON Lines").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import admin_execute, database_name, with_database

Conn = psycopg.Connection[Any]

TYPES = """
  CREATE TYPE jf_in AS (tag text, n numeric, xs int[]);
  CREATE TYPE jf_comp AS (label text, items int[], "A" int, a text, "we""ird,{k}" int[],
                          inner_ jf_in, arr jf_in[], f float8, j json, jb jsonb);
  CREATE DOMAIN jf_arr AS int[] CHECK (VALUE[1] > 0);
  CREATE TYPE jf_dom AS (d jf_arr, ds jf_arr[], c jf_comp);
  CREATE TYPE jf_empty AS ();
  CREATE DOMAIN jf_dcomp AS jf_in CHECK ((VALUE).n > 0);
"""
TYPES_CHECKED = ["int[]", "text[]", "float8[]", "jf_in", "jf_comp", "jf_comp[]", "jf_arr",
                 "jf_arr[]", "jf_dom", "jf_dom[]", "jf_empty", "jf_empty[]", "jf_dcomp",
                 "jf_dcomp[]"]
KEYS = ["label", "items", "A", "a", 'we"ird,{k}', "we\"ird,{K}", "inner_", "arr", "f", "j",
        "jb", "tag", "n", "xs", "d", "ds", "c", "LABEL", "Label", " label", "x"]

# The verdicts of one value for one type: the pre-test's (true, false or
# NULL, or its error) and the check's (true or its error).
JUDGE = """
CREATE FUNCTION pg_temp.jf_judge(p_type regtype, p_value jsonb, OUT fast text, OUT full_ text)
LANGUAGE plpgsql AS $$
DECLARE
    v_shape jsonb := pgjobs._import_json_shape(p_type);
    v_fast boolean;
BEGIN
    BEGIN
        EXECUTE format('SELECT (SELECT %s FROM (SELECT $1 AS v OFFSET 0) pgjobs_w)',
                       pgjobs._import_json_fast('pgjobs_w.v', v_shape))
           INTO v_fast USING p_value;
        fast := coalesce(v_fast::text, 'null');
    EXCEPTION WHEN OTHERS THEN
        fast := 'error: ' || SQLERRM;
    END;
    BEGIN
        PERFORM pgjobs._import_json_check(p_value, v_shape, 'c');
        full_ := 'true';
    EXCEPTION WHEN OTHERS THEN
        full_ := 'error: ' || SQLERRM;
    END;
END
$$;
"""


@pytest.fixture(scope="module")
def fast_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    from tests.conftest import TEMPLATE

    name = database_name("jsonfast")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TYPES)
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def fconn(fast_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(fast_dsn, autocommit=True) as conn:
        conn.execute(JUDGE)
        yield conn


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                    st.sampled_from([1.5, -0.0, 1e300, 0.1]),
                    st.sampled_from(["", "s", "{1,2}", "{}", "(1,x)", "()", "null", "[0:1]={1,2}"]))


def _rect(element: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A rectangular nest of lists, 1 to 3 deep, 0 to 2 long each."""
    return st.lists(st.integers(0, 2), min_size=1, max_size=3).flatmap(
        lambda shape: _grid(element, shape))


def _grid(element: st.SearchStrategy[Any], shape: list[int]) -> st.SearchStrategy[Any]:
    if not shape:
        return element
    return st.lists(_grid(element, shape[1:]), min_size=shape[0], max_size=shape[0])


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),  # arrays among scalars
        st.lists(st.lists(inner, max_size=2), min_size=1, max_size=3),  # often ragged
        _rect(inner),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=12)


def _deep(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _judge(conn: Conn, type_: str, value: Any) -> tuple[str, str]:
    row = conn.execute("SELECT fast, full_ FROM pg_temp.jf_judge(%s::regtype, %s::jsonb)",
                       (type_, json.dumps(value))).fetchone()
    assert row is not None
    return row[0], row[1]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(type_=st.sampled_from(TYPES_CHECKED), value=st.one_of(
    values,
    # an array of arrays, often ragged, at the top or in a field
    st.lists(st.lists(scalars, max_size=2), min_size=2, max_size=3),
    st.dictionaries(st.sampled_from(KEYS),
                    st.lists(st.lists(scalars, max_size=2), min_size=2, max_size=3),
                    max_size=2)))
def test_the_pre_test_passes_nothing_the_check_refuses(fconn: Conn, type_: str,
                                                        value: Any) -> None:
    fast, full = _judge(fconn, type_, value)
    assert not fast.startswith("error"), (type_, value, fast)
    assert fast != "true" or full == "true", (type_, value, full)


# Values picked at the edges each type's shape draws: the pre-test's verdict
# and the check's, fixed.
EDGES: list[tuple[str, Any, str, bool]] = [
    # (type, value, pre-test, check passes)
    ("int[]", [], "true", True),
    ("int[]", [[]], "true", True),
    ("int[]", [[], []], "true", True),
    ("int[]", [[], [1]], "false", False),
    ("int[]", [None, None], "true", True),
    ("int[]", [[None], [None]], "true", True),
    ("int[]", [[1], None], "false", False),
    ("int[]", [[1, 2], [3]], "false", False),
    ("int[]", [[1], [[2]]], "false", False),
    ("int[]", [[[1]], [[2, 3]]], "false", False),  # three dimensions: the check decides
    ("int[]", [1, [2]], "true", True),  # one dimension: [2] an element (refused by int)
    ("int[]", {"a": 1}, "false", False),
    ("int[]", 7, "false", False),
    ("int[]", "{1,2}", "true", True),
    ("jf_comp", {"label": "x", "LABEL": "y"}, "false", False),
    ("jf_comp", {"A": 1, "a": "x"}, "true", True),
    ("jf_comp", {'we"ird,{k}': [1]}, "true", True),
    ("jf_comp", {'we"ird,{K}': [1]}, "false", False),
    ("jf_comp", {" label": "x"}, "false", False),
    ("jf_comp", {"items": [[1], [2, 3]]}, "false", False),
    ("jf_comp", {"inner_": "(a,1,)"}, "true", True),
    ("jf_comp", {"inner_": 5}, "false", False),
    ("jf_comp", {"arr": [{"tag": "t", "xs": [[1], []]}]}, "false", False),
    ("jf_comp", {"arr": [{"tag": "t"}, [{"tag": "u"}]]}, "false", False),
    ("jf_comp", [1], "false", False),
    ("jf_comp[]", [[{"label": "x"}]], "false", True),  # two dimensions: the check decides
    ("jf_comp[]", [[{"label": "x"}], [{"lable": "y"}]], "false", False),
    ("jf_empty", {}, "true", True),
    ("jf_empty", {"x": 1}, "false", False),
    ("jf_arr[]", ["{1}", [[1, 2], [3, 4]]], "true", True),
    ("jf_arr[]", [[1, 2], [3]], "false", False),
    ("jf_dcomp[]", [{"tag": "t", "n": -1, "xs": None}], "true", True),  # the domain's CHECK: later
    ("int[]", _deep(40, 1), "false", True),
    ("jf_in", _deep(40, {}), "false", False),
]


@pytest.mark.parametrize("type_, value, fast, passes", EDGES,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(EDGES)])
def test_edges_are_judged_alike(fconn: Conn, type_: str, value: Any, fast: str,
                                passes: bool) -> None:
    got_fast, got_full = _judge(fconn, type_, value)
    assert (got_fast, got_full == "true") == (fast, passes), (got_fast, got_full)
