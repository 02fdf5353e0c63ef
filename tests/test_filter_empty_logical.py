"""An empty $and or $or is refused everywhere a filter is compiled.

{"$and": []} compiled to true: it selected every row of the scope, so a
client that built its $and from a list of conditions that came out empty
(no facet picked, a search with no terms) submitted a delete of the whole
scope; {"$or": []} compiled to false. MongoDB refuses both ("$and/$or/$nor
must be a nonempty array"). The filter compiler (pgjobs._compile_filter_node)
now refuses them at any depth, with 22023 and a hint, at every entry point:
each submit, the preview and the read path. {} still selects the whole
scope, on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed
from tests.support.filter_entries import FILTER_ENTRIES

Conn = psycopg.Connection[Any]

EMPTY: list[dict[str, Any]] = [
    {"$and": []},
    {"$or": []},
    {"n": 1, "$and": []},
    {"$or": [{"n": 1}, {"$and": []}]},
    {"$and": [{"n": 1}, {"$or": []}]},
    {"$not": {"$and": []}},
    {"$not": {"$or": []}},
    {"$or": [{"n": i} for i in range(9)] + [{"$and": []}]},  # beside an $or folded to $in
]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    seed(conn, make_rows_target(conn), 60)
    return conn


ENTRIES = FILTER_ENTRIES


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("filter_", EMPTY, ids=[json.dumps(f)[:60] for f in EMPTY])
def test_an_empty_and_or_or_is_refused_everywhere(rows: Conn, entry: str,
                                                  filter_: dict[str, Any]) -> None:
    jobs = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        ENTRIES[entry](rows, json.dumps(filter_))
    message = caught.value.diag.message_primary or ""
    assert "needs at least one filter object, got []" in message, message
    operator = "$and" if '"$and": []' in json.dumps(filter_) else "$or"
    assert f'operator "{operator}"' in message, message
    hint = caught.value.diag.message_hint or ""
    assert "MongoDB refuses it too" in hint, hint
    if operator == "$and":
        assert "pass the filter {}" in hint, hint
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == jobs


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_the_whole_scope_on_purpose_and_non_empty_lists_still_work(rows: Conn,
                                                                   entry: str) -> None:
    for filter_ in ({}, {"$and": [{}]}, {"$and": [{"n": 1}]}, {"$or": [{"n": 1}, {"n": 2}]}):
        assert ENTRIES[entry](rows, json.dumps(filter_)) is not None


def test_the_delete_it_stops_would_have_taken_the_whole_scope(rows: Conn) -> None:
    """What the refusal saves: {"$and": []} and {} previewed the same rows."""
    whole = scalar(rows, "SELECT pgjobs.preview('user_table_rows', '1', '{}') ->> 'matches'")
    assert int(whole) == scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                                      "AND created_at <= now()")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        rows.execute("SELECT pgjobs.preview('user_table_rows', '1', '{\"$and\": []}')")
