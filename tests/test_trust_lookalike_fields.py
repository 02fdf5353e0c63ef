"""A field name that only looks like a column is refused, never written as a
new document field (adversarial pass h171, class: a typo'd field ignored).

Backfill's ``set`` and an import's fields create document fields, so they are
not typo-checked as a whole; a name that is a *slip* must name a path some
row of the scope has already (or the job says ``allow_unknown_fields``). The
slip test, pgjobs._field_slip, knew a column in another case and white space
around a name. A name that differs from a column only by what a reader cannot
see or tell apart was no slip: full-width letters (an input method left on:
``ｎａｍｅ``), a zero-width or other invisible format character inside the
name (``na\\u200bme``, a soft hyphen, a word joiner, a left-to-right mark:
copied from a web page or a document), the document column's name so written
(``ｄａｔａ.k``). A client's backfill ``{"ｎａｍｅ": "x"}`` then wrote a new
document field into every selected row of its scope and left the column it
meant unchanged, and the job succeeded; an import whose CSV header said
``ｎａｍｅ`` filled the document and left every row's ``name`` NULL. The typo
guard's hint did not name the column either.

The slip test now compares names as the guard's hint does (pgjobs._field_fold:
Unicode NFKC, no invisible format characters, case, white space around), for
columns; for document paths it takes out invisible format characters, not
NFKC, so that a new field legitimately named ``m²`` or ``µs`` stays no slip.
One function decides for the set, an import's fields and the guard's hint.

The same for a document field the scope's rows have, spelt in another case
or in look-alike characters (``"Status"`` where the rows say ``"status"``):
the set wrote a twin beside it in every row. pgjobs._field_twin reads the
rows, for the set (which needs SELECT on the table), and (after stop 63,
tests/test_trust_lookalike_entries.py) for an import's fields, judged by the
scope's rows from before the job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    allowed_folder,
    drop_client,
    import_as,
    one_record,
    people_client,
    scalar,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

# field -> (column_name, relative_path) as pgjobs._field_slip answers (people:
# columns id tenant created_at name age born active tags score data).
LOOKALIKES: dict[str, tuple[str | None, str | None]] = {
    "\uff4e\uff41\uff4d\uff45": ("name", None),        # full-width "name"
    "\uff2e\uff41\uff4d\uff45": ("name", None),        # full-width "Name"
    "na\u200bme": ("name", None),                      # zero-width space inside
    "na\u00adme": ("name", None),                      # soft hyphen inside
    "ag\u200de": ("age", None),                        # zero-width joiner inside
    "\u2060age": ("age", None),                        # word joiner before
    "\u200eage": ("age", None),                        # left-to-right mark before
    "\uff41ge": ("age", None),                         # one full-width letter
    "\uff44\uff41\uff54\uff41.k": (None, "k"),         # full-width document column
    "k\u200c": (None, "k"),                            # zero-width non-joiner after
    "ne\u00adst.a": (None, "nest.a"),
    "nest.\u200ba": (None, "nest.a"),
}

# Names NFKC would change that are legitimate new document fields: no slip.
NOT_SLIPS: dict[str, tuple[str | None, str | None]] = {
    "m\u00b2": (None, None),              # m², NFKC "m2"
    "\u00b5s": (None, None),              # µs (micro sign), NFKC Greek mu
    "caf\u00e9": (None, None),
    "a b": (None, None),
    "nme": (None, None),
}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    role = people_client(conn, "h171_lookalike")
    conn.execute("INSERT INTO people (tenant, name, age, data) VALUES "
                 "(1, 'ann', 30, '{\"k\": 1, \"nest\": {\"a\": 1}}'), "
                 "(2, 'bob', 40, '{\"k\": 2}')")
    yield role
    drop_client(conn, role)


def _slip(conn: Conn, field: str) -> tuple[str | None, str | None]:
    row = conn.execute("SELECT s.column_name::text, s.relative_path FROM pgjobs.target_registry r, "
                       "pgjobs._field_slip(r, %s) s WHERE r.target = 'people'::regclass",
                       (field,)).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("field", sorted(LOOKALIKES | NOT_SLIPS),
                         ids=lambda f: f.encode("unicode_escape").decode())
def test_the_slip_test_sees_lookalikes(conn: Conn, client: str, field: str) -> None:
    assert _slip(conn, field) == (LOOKALIKES | NOT_SLIPS)[field]


@pytest.mark.parametrize("field", sorted(LOOKALIKES),
                         ids=lambda f: f.encode("unicode_escape").decode())
def test_a_clients_backfill_set_of_a_lookalike_is_refused(
        conn: Conn, client: str, field: str) -> None:
    column, path = LOOKALIKES[field]
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with acting_as(conn, client, scopes="1"), \
            pytest.raises(errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                     (json.dumps({field: 7}),))
    diag = caught.value.diag
    assert diag.sqlstate == "22023"
    assert (diag.message_primary or "").startswith(
        f'the set names document field "{field}", which no row of scope \'1\' has')
    hint = diag.message_hint or ""
    if column is not None:
        assert f'Did you mean column "{column}"?' in hint, hint
    else:
        # 'write "k", not ...' (the slip's sentence), or for an invisible
        # character the guess's 'Did you mean document field "k", not
        # "k<U+200C>"?', which shows it as a code point.
        assert f'"{path}", not "' in hint, hint
    assert "allow_unknown_fields" in hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
    # Meant as written: the option lets it through.
    with acting_as(conn, client, scopes="1"):
        assert scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb, "
                            "'{\"allow_unknown_fields\": true}')",
                      (json.dumps({field: 7}),)) > 0


@pytest.mark.parametrize("field", sorted(NOT_SLIPS),
                         ids=lambda f: f.encode("unicode_escape").decode())
def test_a_new_field_that_is_no_lookalike_is_still_set(
        conn: Conn, client: str, field: str) -> None:
    with acting_as(conn, client, scopes="1"):
        assert scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                      (json.dumps({field: 7}),)) > 0


@pytest.mark.parametrize("call", [
    "SELECT pgjobs.submit_delete('people', '1', %s::jsonb)",
    "SELECT pgjobs.preview('people', '1', %s::jsonb) -> 'matches'",
])
def test_the_typo_guard_names_the_column_a_lookalike_means(
        conn: Conn, client: str, call: str) -> None:
    filter_ = json.dumps({"\uff4e\uff41\uff4d\uff45": "ann"})
    with acting_as(conn, client, scopes="1"):
        if "preview" in call:
            # The preview reports the path; the submit refuses it, naming the column.
            assert scalar(conn, call, (filter_,)) == 0
            return
        with pytest.raises(errors.InvalidParameterValue) as caught:
            conn.execute(call, (filter_,))
    assert 'Did you mean column "name"?' in (caught.value.diag.message_hint or "")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_import_field_that_looks_like_a_column_fails_the_job(
        conn: Conn, dsn: str, tmp_path: Path, client: str, fmt: str) -> None:
    folder = allowed_folder(conn, tmp_path)
    name = "\uff4e\uff41\uff4d\uff45"
    source = one_record(folder, fmt, {name: "cy", "age": 5})
    before = conn.execute("SELECT id, tenant, name, age, data FROM people ORDER BY id").fetchall()
    row = import_as(conn, dsn, client, source, "1", {"format": fmt})
    assert row["status"] == "failed", row
    assert f'field "{name}" of the source is not a column of public.people: did you mean ' \
           'column "name"?' in row["error"], row["error"]
    assert "[22023]" in row["error"], row["error"]
    # A JSON Lines record's error carries the rejects' hint instead
    # (pgjobs._import_insert_sql): the option is named for a CSV header.
    assert fmt == "jsonl" or "allow_unknown_fields" in row["error"], row["error"]
    assert conn.execute("SELECT id, tenant, name, age, data FROM people "
                        "ORDER BY id").fetchall() == before
    # Meant as written: the option imports it as a document field.
    assert import_as(conn, dsn, client, source, "1",
                     {"format": fmt, "allow_unknown_fields": True})["status"] == "succeeded"
    assert conn.execute("SELECT name, age, data ->> %s FROM people WHERE tenant = 1 AND age = 5",
                        (name,)).fetchall() == [(None, 5, "cy")]


# A document field the scope's rows have, spelt in another case or in
# look-alike characters: the set wrote a twin beside it in every row, the
# field meant unchanged (pgjobs._field_twin). (written, the field meant)
DOCUMENT_TWINS: dict[str, str] = {
    "Status": "status",
    "STATUS": "status",
    "\uff53\uff54\uff41\uff54\uff55\uff53": "status",   # full-width "status"
    "nest.A": "nest.a",
    "K": "k",
}


@pytest.fixture
def statuses(conn: Conn, client: str) -> str:
    conn.execute("UPDATE people SET data = data || '{\"status\": \"keep\"}' WHERE tenant = 1")
    return client


@pytest.mark.parametrize("field", sorted(DOCUMENT_TWINS),
                         ids=lambda f: f.encode("unicode_escape").decode())
def test_a_clients_backfill_set_of_a_document_fields_twin_is_refused(
        conn: Conn, statuses: str, field: str) -> None:
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with acting_as(conn, statuses, scopes="1"), \
            pytest.raises(errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                     (json.dumps({field: "gone"}),))
    diag = caught.value.diag
    assert diag.sqlstate == "22023"
    assert (diag.message_primary or "").startswith(
        f'the set names document field "{field}", which no row of scope \'1\' has')
    hint = diag.message_hint or ""
    assert f'Did you mean document field "{DOCUMENT_TWINS[field]}", not "' in hint, hint
    assert "allow_unknown_fields" in hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
    with acting_as(conn, statuses, scopes="1"):
        assert scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb, "
                            "'{\"allow_unknown_fields\": true}')",
                      (json.dumps({field: "gone"}),)) > 0


def test_a_twin_some_row_has_already_is_set(conn: Conn, statuses: str) -> None:
    """Both spellings in the scope's rows: the one written is a field of its own."""
    conn.execute("INSERT INTO people (tenant, name, data) VALUES (1, 'cy', '{\"Status\": 1}')")
    with acting_as(conn, statuses, scopes="1"):
        assert scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', "
                            "'{\"Status\": 2, \"nest.b\": 3, \"fresh\": 4}')") > 0

