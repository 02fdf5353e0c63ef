"""The h4 adversarial pass on filters: a value of the wrong JSON type.

A misspelt field excludes no row, which is why the typo guard refuses it
(tests/test_unknown_fields.py). A value written with the wrong JSON type does
the same through the negative operators: `{"k": {"$ne": "3"}}` on a field that
holds numbers is "not the string 3" for every row, so a delete took the whole
scope, the row with k = 3 included. So `submit_delete` and `submit_backfill`
refuse (22023, the path and both types named, a hint) a comparison that
matches every row whose value is of another type ($ne, $nin; $eq, $in, ranges
and $contains under a $not) when rows of the scope hold the path but none
holds a value of the operand's type there; `allow_unknown_fields` lets it
through. Tested as a class: every such operator, nesting ($and, $or, a
filter's and a field's $not, double negation), dotted paths, objects and
arrays held, per scope, columns, the option, an empty scope, and nothing
written on a refusal.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import insert_row, make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]

KINDS = ["delete", "backfill"]

# (filter, the path named, the operand's type) on the seed's documents:
# k and nest.a numbers, name a string, nest an object, tags an array.
REFUSED = [
    ({"k": {"$ne": "3"}}, "k", "string"),
    ({"k": {"$nin": [4, "3"]}}, "k", "string"),
    ({"$not": {"k": "3"}}, "k", "string"),
    ({"k": {"$not": {"$in": ["3"]}}}, "k", "string"),
    ({"k": {"$not": {"$gte": "3"}}}, "k", "string"),
    ({"k": {"$not": {"$contains": "3"}}}, "k", "string"),
    ({"k": {"$not": {"$not": {"$ne": "3"}}}}, "k", "string"),
    ({"$not": {"$not": {"$not": {"k": {"$eq": "3"}}}}}, "k", "string"),
    ({"name": {"$ne": 5}}, "name", "number"),
    ({"name": {"$ne": True}}, "name", "boolean"),
    ({"name": {"$nin": [["n1"]]}}, "name", "array"),
    ({"nest.a": {"$ne": "1"}}, "nest.a", "string"),
    ({"nest": {"$ne": "x"}}, "nest", "string"),
    ({"tags": {"$ne": "a"}}, "tags", "string"),
    ({"tags": {"$nin": ["a", "b"]}}, "tags", "string"),
    ({"$or": [{"label": "x"}, {"$and": [{"n": 1}, {"k": {"$ne": "1"}}]}]}, "k", "string"),
    ({"name": {"$ne": {"a": 1}}}, "name", "object"),  # "an object": the message's article
]

# A field's empty object negated: {} (an operator object that came out
# empty) under a $not holds for every row not holding exactly {}, whatever
# the types the rows hold. Refused before the type check, as every empty
# operand is (pgjobs._empty_operands, tests/test_trust_empty_operands.py),
# and allow_unknown_fields does not let it through: the option is for a
# field or a type the rows do not hold yet, not for a filter that came out
# empty. (It was in REFUSED above, taken with the option.)
EMPTY_OPERAND = [{"name": {"$not": {}}}]



def article(json_type: str) -> str:
    """The message's article for a JSON type: "an object", "an array", "a string"."""
    return "an" if json_type in ("object", "array") else "a"


ACCEPTED = [
    {"k": {"$ne": 3}},
    {"k": {"$nin": [3, 4, None]}},
    {"$not": {"k": 3}},
    {"k": "3"},  # matches nothing: never more than meant
    {"k": {"$gt": "3"}},
    {"k": {"$in": ["3", 3]}},
    {"$not": {"$not": {"k": "3"}}},
    {"k": {"$ne": None}},
    {"k": {"$exists": False}},
    {"tags": {"$ne": ["a", "b"]}},
    {"nest": {"$ne": {"a": 1}}},
    {"name": {"$not": {"$contains": "n1"}}},
    {"label": {"$ne": 5}},  # a column: compared as its type, never a path
    {"n": {"$nin": ["3"]}},
]


def submit(conn: Conn, kind: str, scope: str, filter_: dict[str, Any],
           options: dict[str, Any] | None = None) -> int:
    opts = json.dumps(options or {})
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, json.dumps(filter_), opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb,"
                            " '{\"label\": \"x\"}', %s::jsonb)",
                      (scope, json.dumps(filter_), opts)))


@pytest.fixture
def rows(conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 90)
    conn.execute("UPDATE user_table_rows SET data = data || '{\"tags\": [\"a\", \"b\"]}'")
    # Scope 2 also holds a k written as a string: there "3" is a value of k.
    insert_row(conn, target, "2", data={"k": "3", "name": "s", "tags": "a"})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("filter_", "path", "json_type"), REFUSED,
                         ids=[json.dumps(f) for f, _, _ in REFUSED])
def test_a_value_of_a_type_no_row_holds_is_refused(conn: Conn, rows: None, kind: str,
                                                    filter_: dict[str, Any], path: str,
                                                    json_type: str) -> None:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit(conn, kind, "1", filter_)
    message = caught.value.diag.message_primary or ""
    assert f'document field "{path}"' in message
    assert f"with {article(json_type)} {json_type} value" in message, message
    assert "allow_unknown_fields" in (caught.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before
    # The option lets it through, as it does a field no row has.
    assert submit(conn, kind, "1", filter_, {"allow_unknown_fields": True}) > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("filter_", EMPTY_OPERAND, ids=[json.dumps(f) for f in EMPTY_OPERAND])
def test_a_negated_empty_object_is_refused_as_an_empty_operand(conn: Conn, rows: None,
                                                               kind: str,
                                                               filter_: dict[str, Any]) -> None:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    for options in (None, {"allow_unknown_fields": True}):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            submit(conn, kind, "1", filter_, options)
        message = caught.value.diag.message_primary or ""
        assert message.startswith('the value {} at "name"'), message
        assert "holds for every row that does not hold exactly {}" in message, message
        assert "with an object value" not in message, message
        hint = caught.value.diag.message_hint or ""
        assert "leave the condition out" in hint and "pass the filter {}" in hint, hint
        assert "allow_unknown_fields" not in hint, hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("filter_", ACCEPTED, ids=[json.dumps(f) for f in ACCEPTED])
def test_a_value_of_a_type_the_rows_hold_is_taken(conn: Conn, rows: None, kind: str,
                                                   filter_: dict[str, Any]) -> None:
    assert submit(conn, kind, "1", filter_) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_types_are_those_of_the_jobs_scope(conn: Conn, rows: None, kind: str) -> None:
    """Scope 2 holds one k written "3" (and one tags a string): the same filters
    are values of k (and tags) there; scope 3 holds none."""
    for filter_ in ({"k": {"$ne": "3"}}, {"tags": {"$ne": "a"}}):
        assert submit(conn, kind, "2", filter_) > 0
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            submit(conn, kind, "3", filter_)


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_scope_is_left_to_the_typo_guard(conn: Conn, rows: None, kind: str) -> None:
    """No row holds the path: the typo guard's case (deferred on an empty scope),
    not this one's."""
    job_id = submit(conn, kind, "7", {"k": {"$ne": "3"}})
    assert scalar(conn, "SELECT payload -> 'unchecked_fields' FROM pgjobs.jobs WHERE id = %s",
                  (job_id,)) == ["k"]


def test_the_delete_it_stops_would_have_taken_the_row_it_names(conn: Conn,
                                                                rows: None) -> None:
    """What the refusal saves: with the option, the delete takes k = 3 too."""
    in_scope = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                            "AND created_at <= now()")
    # (The preview refuses it as the submit does, unless told, as here.)
    preview = scalar(conn, "SELECT pgjobs.preview('user_table_rows', '1', "
                           "'{\"k\": {\"$ne\": \"3\"}}', '{}', "
                           "'{\"allow_unknown_fields\": true}')")
    assert preview["matches"] == in_scope
