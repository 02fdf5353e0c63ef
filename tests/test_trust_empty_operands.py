"""An operand that came out empty never selects a whole scope (adversarial pass h26).

The h-pass that refused an empty `$and` (tests/test_filter_empty_logical.py)
left its twins at the field level. A client that builds a list or a search
text from a selection that came out empty (no status picked, an empty search
box) writes a clause that holds for every row:

- `{"status": {"$nin": []}}`: not in nothing, every row (missing fields too);
- `{"name": {"$contains": ""}}`: every text contains "", every row with a value;
- `{"$not": {"status": {"$in": []}}}` and `{"status": {"$not": {"$in": []}}}`:
  the negation of "in nothing";
- `{"$or": [{"status": "x"}, {}]}`: a branch whose conditions came out empty
  (`{}`, or `{"$and": [{}]}`) holds for every row, and so does its `$or`;
  `{"$not": {"$not": {}}}` too.

Each was a delete of the whole scope, columns and document fields alike, at
any depth (inside an `$or` it makes the `$or` hold for every row). The filter
compiler (pgjobs._compile_filter, through pgjobs._empty_operands) now refuses
them with 22023 and a hint at every entry point: each submit, the preview,
the read path and compile_filter. The same operands where they select no row
(`$in: []` as written, a negated `$nin: []` or `$contains: ""`, `{}` beside
other conditions of an `$and`, `{"$not": {}}`) still compile, and match what
the reference evaluator says.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed
from tests.support.filter_entries import FILTER_ENTRIES
from tests.support.filter_reference import matches

Conn = psycopg.Connection[Any]

# (filter, the field named, the operator named); "n" and "label" are columns,
# "k", "name" and "nest.a" document fields of the seed.
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"k": {"$nin": []}}, "k", "$nin"),
    ({"n": {"$nin": []}}, "n", "$nin"),
    ({"nest.a": {"$nin": []}}, "nest.a", "$nin"),
    ({"name": {"$contains": ""}}, "name", "$contains"),
    ({"label": {"$contains": ""}}, "label", "$contains"),
    ({"$not": {"k": {"$in": []}}}, "k", "$in"),
    ({"k": {"$not": {"$in": []}}}, "k", "$in"),
    ({"label": {"$not": {"$in": []}}}, "label", "$in"),
    ({"$not": {"$not": {"k": {"$nin": []}}}}, "k", "$nin"),
    ({"k": {"$not": {"$not": {"$contains": ""}}}}, "k", "$contains"),
    ({"$or": [{"n": 1}, {"label": {"$nin": []}}]}, "label", "$nin"),
    ({"$and": [{"n": 1}, {"$or": [{"n": 2}, {"name": {"$contains": ""}}]}]}, "name", "$contains"),
    ({"n": {"$gte": 0, "$nin": []}}, "n", "$nin"),
    ({"$or": [{"n": i} for i in range(9)] + [{"k": {"$nin": []}}]}, "k", "$nin"),
]

# A filter object that came out empty ({}, or $and lists of {} only) where it
# makes its $or, or a doubly negated $not, hold for every row.
REFUSED_OBJECTS: list[tuple[dict[str, Any], str]] = [
    ({"$or": [{"k": 1}, {}]}, 'operator "$or" has an empty filter object'),
    ({"$or": [{}]}, 'operator "$or" has an empty filter object'),
    ({"$or": [{"k": 1}, {"$and": [{}]}]}, 'operator "$or" has an empty filter object'),
    ({"$or": [{"k": 1}, {"$and": [{}, {"$and": [{}]}]}]},
     'operator "$or" has an empty filter object'),
    ({"n": 1, "$and": [{"$or": [{"label": "x"}, {}]}]}, 'operator "$or" has an empty filter'),
    ({"$not": {"$not": {}}}, 'a "$not" of an empty filter object {} is negated again'),
    ({"k": 1, "$not": {"$not": {"$and": [{}]}}}, '"$not" of an empty filter object'),
]

# A document field's empty object where it holds for every row not holding
# exactly {} (every row of the seed: "nest" holds {"a": ...}). Found on an
# export (h31) but taken by every entry point: the walk looked only at an
# operator object's keys, and {} has none. (filter, the field, what the
# message says.)
REFUSED_EMPTY_OBJECTS: list[tuple[dict[str, Any], str, str]] = [
    ({"$not": {"nest": {}}}, "nest", "the value {} at"),
    ({"nest": {"$not": {}}}, "nest", "the value {} at"),
    ({"$not": {"nest": {"$eq": {}}}}, "nest", 'operator "$eq" at'),
    ({"nest": {"$ne": {}}}, "nest", 'operator "$ne" at'),
    ({"$not": {"$not": {"nest": {"$ne": {}}}}}, "nest", 'operator "$ne" at'),
    ({"$or": [{"n": 1}, {"$not": {"nest.b": {}}}]}, "nest.b", "the value {} at"),
    ({"$and": [{"n": {"$gte": 0}}, {"$not": {"nest": {}}}]}, "nest", "the value {} at"),
]

# The same operands where they take no row, and non-empty neighbours.
ALLOWED: list[dict[str, Any]] = [
    {"k": {"$in": []}},
    {"n": {"$in": []}},
    {"k": {"$not": {"$nin": []}}},
    {"$not": {"label": {"$contains": ""}}},
    {"$not": {"k": {"$not": {"$in": []}}}},
    {"name": {"$contains": " "}},
    {"name": {"$contains": "n1"}},
    {"k": {"$nin": [1]}},
    {"$not": {"k": {"$in": [1]}}},
    {"name": ""},
    {"label": {"$in": [""]}},
    {"$and": [{"k": 1}, {}]},
    {"$not": {}},
    {"$not": {"$or": [{"k": 1}, {}]}},
    {"$or": [{"k": 1}, {"nest": {}}]},
    {"$or": [{"k": 1}, {"$and": [{"k": 2}, {}]}]},
    {"nest": {"$eq": {}}},
    {"$not": {"nest": {"$ne": {}}}},
    {"$not": {"$not": {"nest": {}}}},
    {"$not": {"nest": {"a": 0}}},
    {"nest": {"$nin": [{}]}},  # "not exactly {}" on purpose: what the refusal's hint says
]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    seed(conn, make_rows_target(conn), 60)
    return conn


ENTRIES = FILTER_ENTRIES


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize(("filter_", "field", "op"), REFUSED,
                         ids=[json.dumps(f)[:70] for f, _, _ in REFUSED])
def test_an_empty_operand_that_holds_for_every_row_is_refused_everywhere(
        rows: Conn, entry: str, filter_: dict[str, Any], field: str, op: str) -> None:
    jobs = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        ENTRIES[entry](rows, json.dumps(filter_))
    message = caught.value.diag.message_primary or ""
    assert f'operator "{op}" at "{field}"' in message, message
    hint = caught.value.diag.message_hint or ""
    assert "leave the condition out" in hint and "pass the filter {}" in hint, hint
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == jobs


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize(("filter_", "says"), REFUSED_OBJECTS,
                         ids=[json.dumps(f)[:70] for f, _ in REFUSED_OBJECTS])
def test_an_empty_filter_object_that_makes_its_or_hold_is_refused_everywhere(
        rows: Conn, entry: str, filter_: dict[str, Any], says: str) -> None:
    jobs = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        ENTRIES[entry](rows, json.dumps(filter_))
    message = caught.value.diag.message_primary or ""
    assert says in message and "holds for every row" in message, message
    hint = caught.value.diag.message_hint or ""
    assert "leave the empty branch out" in hint and "pass the filter {}" in hint, hint
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == jobs


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize(("filter_", "field", "says"), REFUSED_EMPTY_OBJECTS,
                         ids=[json.dumps(f)[:70] for f, _, _ in REFUSED_EMPTY_OBJECTS])
def test_a_negated_empty_object_of_a_field_is_refused_everywhere(
        rows: Conn, entry: str, filter_: dict[str, Any], field: str, says: str) -> None:
    jobs = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        ENTRIES[entry](rows, json.dumps(filter_))
    message = caught.value.diag.message_primary or ""
    assert f'{says} "{field}"' in message and "holds for every row" in message, message
    hint = caught.value.diag.message_hint or ""
    assert "leave the condition out" in hint and "pass the filter {}" in hint, hint
    # What to write when "not exactly {}" is meant: a $nin whose list is not
    # empty (taken: ALLOWED below).
    assert f'write {{"{field}": {{"$nin": [{{}}]}}}}' in hint, hint
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == jobs


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_empty_operands_that_take_no_row_still_compile(rows: Conn, entry: str) -> None:
    for filter_ in ALLOWED:
        assert ENTRIES[entry](rows, json.dumps(filter_)) is not None, filter_


def test_what_is_still_taken_matches_the_reference(rows: Conn) -> None:
    cur = rows.execute("SELECT id, table_id, n, label, data FROM user_table_rows "
                       "WHERE table_id = 1 AND created_at <= now()")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    scope = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    columns = {"id", "table_id", "n", "label", "data", "created_at"}
    for filter_ in ALLOWED:
        want = sum(1 for r in scope if matches(r, filter_, columns, "data"))
        got = scalar(rows, "SELECT pgjobs.preview('user_table_rows', '1', %s::jsonb) "
                           "->> 'matches'", (json.dumps(filter_),))
        assert int(got) == want, filter_


def test_the_delete_it_stops_would_have_taken_the_whole_scope(rows: Conn) -> None:
    """What the refusal saves: by the filter language's own rules (the
    reference evaluator), each of these selects every row of the scope."""
    cur = rows.execute("SELECT id, table_id, n, label, data FROM user_table_rows "
                       "WHERE table_id = 1")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    scope = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    columns = {"id", "table_id", "n", "label", "data", "created_at"}
    whole = [{"k": {"$nin": []}}, {"n": {"$nin": []}}, {"name": {"$contains": ""}},
             {"label": {"$contains": ""}}, {"$not": {"k": {"$in": []}}},
             {"label": {"$not": {"$in": []}}}, {"$or": [{"k": 1}, {}]},
             {"$or": [{"n": 99}, {"$and": [{}]}]}, {"$not": {"$not": {}}},
             {"$not": {"nest": {}}}, {"nest": {"$ne": {}}}]
    assert scope
    for filter_ in whole:
        assert all(matches(r, filter_, columns, "data") for r in scope), filter_
