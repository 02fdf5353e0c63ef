"""What an empty value becomes in an import, for each format and kind of field.

A CSV record's empty unquoted field is NULL and a NULL document field is left
out of the document, but a dotted field ("a.b") left empty still made its
parent: the document read {"a": {}}, and an import with on_duplicate
"update" then merged an object in at "a", rejecting the record where the row
held a value there (or replacing it, with replace_non_objects), for a record
that named nothing. An object all of whose fields are left out is now left
out too. The matrix below is the rule docs/imports.md (*Empty values*) states:
an empty unquoted CSV field, a quoted empty one (""), a column missing from
the header; a JSONL key absent, JSON null, and "".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]
REJECT = "rejected"

# (format, header/keys, record, expected (name, age, data) or REJECT)
CASES = {
    # CSV: a column.
    "csv-text-unquoted": ("csv", "name,age", "n,", ("n", None, {})),
    "csv-text-quoted": ("csv", "age,name", '1,""', ("", 1, {})),
    "csv-text-missing": ("csv", "age", "1", (None, 1, {})),
    "csv-int-unquoted": ("csv", "name,age", "n,", ("n", None, {})),
    "csv-int-quoted": ("csv", "name,age", 'n,""', REJECT),
    # CSV: a document field.
    "csv-doc-unquoted": ("csv", "name,x", "n,", ("n", None, {})),
    "csv-doc-quoted": ("csv", "name,x", 'n,""', ("n", None, {"x": ""})),
    "csv-doc-missing": ("csv", "name", "n", ("n", None, {})),
    "csv-nested-unquoted": ("csv", "name,a.b", "n,", ("n", None, {})),
    "csv-nested-deep-unquoted": ("csv", "name,a.b.c,a.d.e", "n,,", ("n", None, {})),
    "csv-nested-sibling": ("csv", "name,a.b,a.c", "n,,v", ("n", None, {"a": {"c": "v"}})),
    "csv-nested-quoted": ("csv", "name,a.b", 'n,""', ("n", None, {"a": {"b": ""}})),
    # JSONL: a column.
    "jsonl-text-absent": ("jsonl", None, '{"age": 1}', (None, 1, {})),
    "jsonl-text-null": ("jsonl", None, '{"name": null, "age": 1}', (None, 1, {})),
    "jsonl-text-empty": ("jsonl", None, '{"name": "", "age": 1}', ("", 1, {})),
    "jsonl-int-null": ("jsonl", None, '{"name": "n", "age": null}', ("n", None, {})),
    "jsonl-int-empty": ("jsonl", None, '{"name": "n", "age": ""}', REJECT),
    # JSONL: a document field keeps the JSON value, typed, as given.
    "jsonl-doc-null": ("jsonl", None, '{"name": "n", "x": null}', ("n", None, {"x": None})),
    "jsonl-doc-empty": ("jsonl", None, '{"name": "n", "x": ""}', ("n", None, {"x": ""})),
    "jsonl-doc-object": ("jsonl", None, '{"name": "n", "a": {}}', ("n", None, {"a": {}})),
}


def run(conn: Conn, dsn: str, tmp_path: Path, fmt: str, text: str,
        options: dict[str, Any]) -> dict[str, Any]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    path = folder / f"s{len(list(folder.iterdir()))}.{fmt}"
    path.write_text(text)
    job_id = submit_import(conn, f"file://{path}", "1", options)
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{tmp_path}/store").run()
    return job(conn, job_id)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_empty_value_becomes_what_the_docs_say(
        conn: Conn, dsn: str, tmp_path: Path, case: str) -> None:
    fmt, header, record, expected = CASES[case]
    make_people(conn)
    allow(conn, f"file://{tmp_path}/in")
    text = f"{header}\n{record}\n" if fmt == "csv" else f"{record}\n"
    row = run(conn, dsn, tmp_path, fmt, text, {"max_rejects": 1})
    assert row["status"] == "succeeded", row["error"]
    stored = conn.execute("SELECT name, age, data FROM people").fetchall()
    if expected == REJECT:
        assert stored == [] and row["result"]["rejected"] == 1
        return
    assert row["result"]["rejected"] == 0
    assert stored == [expected]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("replace", [False, True], ids=["merge", "replace_non_objects"])
def test_an_update_with_empty_nested_fields_leaves_the_row_s_values(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str, replace: bool) -> None:
    """The row holds a value at "a" (a number) and at "k"; the record's "a.b" is
    empty (CSV) or absent (JSONL): the update names nothing at "a", so the row
    keeps it, whether non-objects may be replaced or not, and gets "k" anew."""
    make_people(conn)
    allow(conn, f"file://{tmp_path}/in")
    conn.execute("INSERT INTO people (id, tenant, name, data) "
                 "VALUES (7, 1, 'old', '{\"a\": 5, \"k\": 1}')")
    text = ("id,a.b,a.c.d,k\n7,,,2\n" if fmt == "csv"
            else json.dumps({"id": 7, "k": "2"}) + "\n")
    options: dict[str, Any] = {"on_duplicate": "update", "max_rejects": 1}
    if replace:
        options["replace_non_objects"] = True
    row = run(conn, dsn, tmp_path, fmt, text, options)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rejected"] == 0, row["result"]
    assert conn.execute("SELECT name, data FROM people").fetchall() == [
        ("old", {"a": 5, "k": "2"})]
