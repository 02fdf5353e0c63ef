"""The operand checks both filter compilers shared are one function
(pgjobs._check_filter_operand, issue 11 structure): every field operator
refuses the same operand shapes with the same 22023 error whether the field
is a column or a document path, for every operator and every JSON type."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

Conn = psycopg.Connection[Any]

# One operand of each JSON type, and the types each operator's operand may be
# (tag is a jsonb column, so its type accepts whatever the shape allows).
OPERANDS: dict[str, Any] = {
    "object": {"a": 1}, "array": [1, 2], "string": "x", "number": 3, "boolean": True,
    "null": None,
}
SHAPES = {
    "$in": {"array"}, "$nin": {"array"},
    "$gt": {"string", "number", "boolean"}, "$gte": {"string", "number", "boolean"},
    "$lt": {"string", "number", "boolean"}, "$lte": {"string", "number", "boolean"},
    "$contains": {"string"}, "$exists": {"boolean"},
}


@pytest.fixture
def target(conn: Conn) -> str:
    conn.execute("CREATE TABLE ops (id bigint PRIMARY KEY, table_id int NOT NULL, "
                 "tag jsonb, data jsonb, created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE INDEX ON ops (table_id, id)")
    conn.execute("SELECT pgjobs.register_target('ops', 'id', 'table_id', 'created_at', 'data')")
    return "ops"


def error_of(conn: Conn, target: str, flt: dict[str, Any]) -> tuple[str, str] | None:
    try:
        conn.execute("SELECT pgjobs.compile_filter(%s::regclass, %s::jsonb)",
                     (target, json.dumps(flt)))
    except errors.InvalidParameterValue as e:
        return (e.diag.message_primary or "", e.diag.message_hint or "")
    return None


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_an_operand_of_the_wrong_shape_is_refused_alike_for_columns_and_documents(
        conn: Conn, target: str, op: str) -> None:
    for kind, value in OPERANDS.items():
        # tag is a jsonb column: it accepts any JSON value where a shape allows it.
        column = error_of(conn, target, {"tag": {op: value}})
        document = error_of(conn, target, {"tag_doc": {op: value}})
        if kind in SHAPES[op]:
            assert column is None and document is None, (op, kind, column, document)
        else:
            assert column is not None and document is not None, (op, kind)
            assert column == tuple(s.replace('"tag_doc"', '"tag"').replace(
                "tag_doc", "tag") for s in document), (op, kind)
            assert f'"{op}"' in column[0] and '"tag"' in column[0], column


def test_too_many_values_in_one_operator(conn: Conn) -> None:
    """compile_filter refuses more than 10000 values in the whole filter first;
    the per-operator limit guards the compilers' other callers."""
    for op in ("$in", "$nin"):
        with pytest.raises(errors.InvalidParameterValue) as refused:
            conn.execute("SELECT pgjobs._check_filter_operand('tag', %s, %s::jsonb)",
                         (op, json.dumps(list(range(10001)))))
        assert refused.value.diag.message_primary == (
            f'operator "{op}" at "tag" has 10001 values (the limit is 10000)')
    conn.execute("SELECT pgjobs._check_filter_operand('tag', '$in', %s::jsonb)",
                 (json.dumps(list(range(10000))),))


def test_the_messages_are_those_of_before(conn: Conn, target: str) -> None:
    assert error_of(conn, target, {"tag": {"$in": 5}}) == (
        'operator "$in" at "tag" needs an array, got 5', 'e.g. {"tag": {"$in": [1, 2, 3]}}')
    assert error_of(conn, target, {"a.b": {"$gt": [1]}}) == (
        'operator "$gt" at "a.b" needs a string, number or boolean, got [1]',
        'Range operators take one string, number or boolean, e.g. {"amount": {"$gt": 10}}.')
    assert error_of(conn, target, {"tag": {"$contains": 1}}) == (
        'operator "$contains" at "tag" needs a string, got 1',
        'For example {"name": {"$contains": "smith"}}.')
    assert error_of(conn, target, {"a": {"$exists": "yes"}}) == (
        'operator "$exists" at "a" needs true or false, got "yes"',
        'For example {"email": {"$exists": true}}.')
    # Under $not the operand is checked as well.
    assert error_of(conn, target, {"tag": {"$not": {"$nin": "x"}}}) == (
        'operator "$nin" at "tag" needs an array, got "x"', 'e.g. {"tag": {"$nin": [1, 2, 3]}}')
