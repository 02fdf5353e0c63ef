"""One slip test for field names (pgjobs._field_slip).

A name that is a column in another case ("Name" for name), has white space
around it or a part of its path (" age" from a CSV header "name, age"), or
starts with the document column's name ("data.k", "Data.k") is far more often
a slip than a new document field. The test was written three times: backfill's set keys
(pgjobs._submit_backfill_as), an import's fields (pgjobs._import_insert_sql)
and the typo guard's hint (pgjobs._require_known_fields). One function now
decides for all three; each words its own message as before
(tests/test_new_user_inputs.py pins those messages, unchanged).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_people, scalar

Conn = psycopg.Connection[Any]

# field -> (column_name, relative_path) as pgjobs._field_slip answers
CASES: dict[str, tuple[str | None, str | None]] = {
    "Name": ("name", None),
    "NAME": ("name", None),
    "data.k": (None, "k"),
    "Data.k": (None, "k"),
    "DATA.nest.a": (None, "nest.a"),
    "Data": ("data", None),
    "name": (None, None),        # the column itself
    "data": (None, None),
    "nme": (None, None),         # a new document field: no slip
    "datak": (None, None),
    "k.data": (None, None),
    # White space around a name (a CSV header "name, age", a spreadsheet cell
    # "age "): the value went to a document field " age" and the column kept
    # its default, the import succeeded (found in the hX pass).
    " age": ("age", None),
    "age ": ("age", None),
    "\tName\r": ("name", None),
    "\u00a0age": ("age", None),          # a no-break space
    "\u200bage\ufeff": ("age", None),    # zero-width space, a stray byte-order mark
    " data.k": (None, "k"),
    "Data . k": (None, "k"),
    " k": (None, "k"),
    "nest. a": (None, "nest.a"),
    "a b": (None, None),                 # white space inside a name is the user's
}


@pytest.fixture
def people(conn: Conn) -> None:
    make_people(conn)
    conn.execute("INSERT INTO people (tenant, name, data) VALUES (1, 'ann', '{\"k\": 1}')")


@pytest.mark.parametrize("field", sorted(CASES))
def test_one_function_names_the_slip(conn: Conn, people: None, field: str) -> None:
    row = conn.execute("SELECT s.column_name::text, s.relative_path FROM pgjobs.target_registry r, "
                       "pgjobs._field_slip(r, %s) s WHERE r.target = 'people'::regclass",
                       (field,)).fetchone()
    assert row == CASES[field]


@pytest.mark.parametrize("field", sorted(set(CASES) - {"data"}))  # (set names fields in it)
def test_backfill_set_refuses_exactly_the_slips(conn: Conn, people: None, field: str) -> None:
    slip = CASES[field] != (None, None)
    call = "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)"
    if slip:
        with pytest.raises(errors.InvalidParameterValue) as info:
            conn.execute(call, (json.dumps({field: 1}),))
        assert "allow_unknown_fields" in (info.value.diag.message_hint or "")
    elif field == "k.data":
        # A new field, no slip; but k holds a number in ann's row, so the set
        # would replace it (tests/test_trust_documents.py): refused for that,
        # and taken with the option that allows it.
        with pytest.raises(errors.InvalidParameterValue) as info:
            conn.execute(call, (json.dumps({field: 1}),))
        assert 'fields into "k"' in str(info.value)
        assert "allow_unknown_fields" not in (info.value.diag.message_hint or "")
        assert scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb, "
                            "'{\"replace_non_objects\": true}')", (json.dumps({field: 1}),)) > 0
    else:
        value = "bo" if field == "name" else 1
        assert scalar(conn, call, (json.dumps({field: value}),)) > 0


def test_every_consumer_asks_the_one_function(conn: Conn) -> None:
    """No copy of the test is left: each consumer calls pgjobs._field_slip,
    and no other function of the schema matches a name against the document
    column's prefix or a column's lower-cased name itself."""
    # Every overload's body under its name: a wrapper overload (the 3-argument
    # pgjobs._import_insert_sql calls the 4-argument one) is no copy, and the
    # overload that does the work must call the one function.
    bodies = dict(conn.execute(
        "SELECT p.proname::text, string_agg(p.prosrc, E'\\n' ORDER BY p.oid) FROM pg_proc p "
        "WHERE p.pronamespace = 'pgjobs'::regnamespace GROUP BY p.proname").fetchall())
    # The typo guard's hint moved from _require_known_fields into
    # _judge_fields (the guard in one walk), which the former now calls.
    for name in ("_submit_backfill_as", "_import_insert_sql", "_judge_fields"):
        assert "pgjobs._field_slip(" in bodies[name], name
    assert "pgjobs._judge_fields(" in bodies["_require_known_fields"]
    copies = [name for name, body in bodies.items()
              if name != "_field_slip" and ("lower(p_reg.document_column || '.')" in body
                                            or "lower(v_reg.document_column || '.')" in body)]
    assert copies == []
