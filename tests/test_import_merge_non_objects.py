"""An import with on_duplicate "update" never replaces a value its record does
not name.

Document fields of a record are merged into the existing row's document. Where
the row holds a string, number, boolean or array at a place where the record's
fields make an object (the document itself, the parent `a` of a field `a.b`, a
JSONL field whose value is an object), the merge replaced that value with the
object, silently: `{"a": "keep me"}` updated by a field `a.b` came out
`{"a": {"b": ...}}`, and the job succeeded. The class backfill's `set` closed
(pgjobs._set_guard); now the import rejects such a record (22023, its line and
the place in the reason, counted against max_rejects) and leaves the row as it
was. A missing place or JSON null still becomes the object; a value the record
names replaces what the row holds; the option replace_non_objects keeps the old
merge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from tests.support import allowed_folder, make_people
from tests.test_import import do_import

Conn = psycopg.Connection[Any]

# (the row's document, the source's records as (CSV, JSONL), the reason's place)
BLOCKED = [
    ({"a": "keep me"}, ("id,a.b\n1,x\n", '{"id": 1, "a.b": "x"}\n'), 'a string at "a"'),
    ({"a": 5}, ("id,a.b\n1,x\n", '{"id": 1, "a": {"b": "x"}}\n'), 'a number at "a"'),
    ({"a": {"b": [1, 2]}}, ("id,a.b.c\n1,x\n", '{"id": 1, "a.b.c": "x"}\n'),
     'an array at "a.b"'),
    ({"a": {"b": True}}, ("id,a.b.c\n1,x\n", '{"id": 1, "a": {"b": {"c": "x"}}}\n'),
     'a boolean at "a.b"'),
    ([1, 2], ("id,z\n1,x\n", '{"id": 1, "z": "x"}\n'), "an array as the document itself"),
    ("text", ("id,z\n1,x\n", '{"id": 1, "z": "x"}\n'), "a string as the document itself"),
]
# (the row's document, the records, the document after): merged as before.
MERGED = [
    ({"a": None}, ("id,a.b\n1,x\n", '{"id": 1, "a.b": "x"}\n'), {"a": {"b": "x"}}),
    ({"q": 1}, ("id,a.b\n1,x\n", '{"id": 1, "a.b": "x"}\n'), {"q": 1, "a": {"b": "x"}}),
    (None, ("id,a.b\n1,x\n", '{"id": 1, "a": {"b": "x"}}\n'), {"a": {"b": "x"}}),
    # A value the record names replaces what the row holds, object or not.
    ({"a": {"b": 1}, "c": 2}, ("id,a\n1,x\n", '{"id": 1, "a": "x"}\n'), {"a": "x", "c": 2}),
    ({"a": "s"}, ("id,a\n1,x\n", '{"id": 1, "a": "x"}\n'), {"a": "x"}),
]


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    conn.execute("ALTER TABLE people ALTER COLUMN data DROP NOT NULL")
    return allowed_folder(conn, tmp_path)


def row_with(conn: Conn, document: Any) -> None:
    conn.execute("INSERT INTO people (id, tenant, name, data) VALUES "
                 "(1, 1, 'one', %s::jsonb), (2, 1, 'two', '{\"a\": \"other\"}')",
                 (None if document is None else json.dumps(document),))


def document_of(conn: Conn, key: int = 1) -> Any:
    return conn.execute("SELECT data FROM people WHERE id = %s", (key,)).fetchone()[0]


def run(conn: Conn, dsn: str, src: Path, fmt: str, records: tuple[str, str],
        options: dict[str, Any]) -> dict[str, Any]:
    data = records[0] if fmt == "csv" else records[1]
    return do_import(conn, dsn, src, f"u.{fmt}", data.encode(),
                     options={"on_duplicate": "update", **options})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("document", "records", "place"), BLOCKED,
                         ids=[b[2] for b in BLOCKED])
def test_a_record_that_would_replace_a_value_it_does_not_name_is_rejected(
        conn: Conn, dsn: str, src: Path, fmt: str, document: Any,
        records: tuple[str, str], place: str) -> None:
    row_with(conn, document)
    job = run(conn, dsn, src, fmt, records, {"max_rejects": 5})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert (result["inserted"], result["updated"], result["rejected"]) == (0, 0, 1), result
    assert document_of(conn) == document  # left as it was
    rejects = [json.loads(x) for x in storage.read(result["rejects_uri"]).splitlines()]
    assert len(rejects) == 1, rejects
    assert rejects[0]["line"] == (2 if fmt == "csv" else 1), rejects
    reason = rejects[0]["reason"]
    assert place in reason and "replace_non_objects" in reason, reason


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("document", "records", "place"), BLOCKED[:2] + BLOCKED[4:5],
                         ids=[b[2] for b in BLOCKED[:2] + BLOCKED[4:5]])
def test_without_rejects_allowed_the_import_fails_and_writes_nothing(
        conn: Conn, dsn: str, src: Path, fmt: str, document: Any,
        records: tuple[str, str], place: str) -> None:
    row_with(conn, document)
    job = run(conn, dsn, src, fmt, records, {})
    assert job["status"] == "failed", job
    assert place in job["error"], job["error"]
    assert document_of(conn) == document


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("document", "records", "place"), BLOCKED,
                         ids=[b[2] for b in BLOCKED])
def test_replace_non_objects_keeps_the_old_merge(
        conn: Conn, dsn: str, src: Path, fmt: str, document: Any,
        records: tuple[str, str], place: str) -> None:
    row_with(conn, document)
    job = run(conn, dsn, src, fmt, records, {"replace_non_objects": True})
    assert job["status"] == "succeeded", job["error"]
    assert (job["result"]["updated"], job["result"]["rejected"]) == (1, 0), job["result"]
    assert document_of(conn) != document


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("document", "records", "after"), MERGED,
                         ids=[json.dumps(m[0]) for m in MERGED])
def test_objects_json_null_and_missing_places_merge_as_before(
        conn: Conn, dsn: str, src: Path, fmt: str, document: Any,
        records: tuple[str, str], after: Any) -> None:
    row_with(conn, document)
    job = run(conn, dsn, src, fmt, records, {})
    assert job["status"] == "succeeded", job["error"]
    assert (job["result"]["updated"], job["result"]["rejected"]) == (1, 0), job["result"]
    assert document_of(conn) == after
    assert document_of(conn, 2) == {"a": "other"}  # another row untouched


def test_the_rejected_record_does_not_hold_back_the_others(
        conn: Conn, dsn: str, src: Path) -> None:
    row_with(conn, {"a": "keep me"})
    conn.execute("INSERT INTO people (id, tenant, name, data) VALUES (4, 1, 'four', '{}')")
    data = b"id,a.b\n4,fine\n1,blocked\n3,new\n"
    job = do_import(conn, dsn, src, "m.csv", data,
                    options={"on_duplicate": "update", "max_rejects": 1})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert (result["inserted"], result["updated"], result["rejected"]) == (1, 1, 1), result
    assert document_of(conn) == {"a": "keep me"}
    assert document_of(conn, 4) == {"a": {"b": "fine"}}
    assert document_of(conn, 3) == {"a": {"b": "new"}}


# (the row's document, the record's JSONL fields): every shape of patch value
# against objects the row holds, both sides of the merge's shortcut (a record
# whose fields hold no object merges as `||`, pgjobs._import_insert_sql).
SHAPES = [
    ({"a": 1, "t": {"k": 1}}, {"t": [1, 2], "n": None, "s": "x"}),
    ({"a": 1, "t": {"k": 1}}, {"t": [1, {"k": 2}]}),      # an array holding an object
    ({"a": 1, "t": {"k": 1}}, {"t": {"j": 2}}),            # an object: merged into t
    ({"a": 1, "t": {"k": 1}}, {"t": {}}),
    ({"a": {"b": {"c": 1}}}, {"a": {"b": {"d": 2}}, "e": [[{}]]}),
    ({}, {"x": True, "y": 1.5}),
    ({"a": [1]}, {"a": {"b": 1}}),                         # rejected: an array at "a"
    ({"a": "s"}, {"b": 1}),
]


@pytest.mark.parametrize(("document", "fields"), SHAPES, ids=[json.dumps(s[1]) for s in SHAPES])
def test_every_patch_shape_merges_as_the_merge_function_says(
        conn: Conn, dsn: str, src: Path, document: Any, fields: dict[str, Any]) -> None:
    row_with(conn, document)
    try:
        want = conn.execute("SELECT pgjobs._import_doc_merge(%s::jsonb, %s::jsonb)",
                            (json.dumps(document), json.dumps(fields))).fetchone()[0]
    except psycopg.errors.InvalidParameterValue:
        want = None  # the record is rejected, the row left as it was
    done = do_import(conn, dsn, src, "u.jsonl", (json.dumps({"id": 1, **fields}) + "\n").encode(),
                     options={"on_duplicate": "update", "max_rejects": 1})
    assert done["status"] == "succeeded", done["error"]
    if want is None:
        assert done["result"]["rejected"] == 1 and document_of(conn) == document
    else:
        assert done["result"]["updated"] == 1 and document_of(conn) == want
