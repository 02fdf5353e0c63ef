"""Every bad import input is refused with a clear error and a hint, as early as
it can be known, and never as a raw internal error that fails the whole job.

- The table's shape decides it: a scope column the import cannot write (a
  generated column, a GENERATED ALWAYS identity) is refused at the submit
  (22023, the hint naming the ALTER TABLE that fixes it), and at the start of
  an attempt when the column was altered since; before, every record was
  rejected one by one with PostgreSQL's "cannot insert a non-DEFAULT value".
  Document fields into a generated document column are refused when a batch
  maps them, as a generated column the source names is.
- The record decides it: a value whose type's input raises an error outside
  class 22 (hstore: XX000; ltree, tsvector, jsonpath: 42601; regclass:
  42P01; the types that accept no value: 0A000) failed the whole job. Every
  type of every extension installable here, every built-in type, and arrays,
  domains, composites and ranges of them, are tried with bad values, from
  CSV and from JSON Lines: a bad value is one rejected record, never a
  failed job; the types read through pgjobs._import_input name the column.
- A JSON Lines record naming a key twice is rejected naming it (the last one
  silently won), as a CSV header naming a field twice fails the import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


def _run(conn: Conn, dsn: str, folder: Path, job_id: int) -> dict[str, Any]:
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job(conn, job_id)


def _rejects(conn: Conn, job_id: int) -> dict[int, str]:
    return dict(conn.execute("SELECT line, reason FROM pgjobs.import_rejects WHERE job_id = %s"
                             " ORDER BY line", (job_id,)).fetchall())


# --- (c) a JSON Lines record naming a key twice ----------------------------------------

DUPLICATES = [
    '{"name": "a", "age": 1, "name": "b"}',
    '{"age": 2, "age": 3}',
    '{"name": "c", "x": 1, "x": 2}',
    '{"name": "d", "data": {"k": 1}, "data": {"k": 2}}',
    '{"name": "e", "age": 5, "age": 5}',
    # Spelt apart, one key once decoded:
    '{"name": "f", "n\\u0061me": "g"}',
]


@pytest.mark.parametrize("batch", [None, 64], ids=["one_batch", "many_batches"])
def test_a_jsonl_record_naming_a_key_twice_is_rejected_naming_it(
        conn: Conn, dsn: str, tmp_path: Path, batch: int | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    path = folder / "in.jsonl"
    good = ['{"name": "ok1", "age": 10}', '{"name": "ok2", "x": {"y": 1, "y": 2}}']
    path.write_text("".join(line + "\n" for line in [good[0], *DUPLICATES, good[1]]))
    if batch:
        monkeypatch.setenv("PGJOBS_IMPORT_DELAYS", f"bytes={batch}")
    row = _run(conn, dsn, folder, submit_import(conn, f"file://{path}", "1",
                                                {"max_rejects": 10}))
    assert row["status"] == "succeeded", row["error"]
    rejects = _rejects(conn, row["id"])
    keys = ["name", "age", "x", "data", "age", "name"]
    assert list(rejects) == list(range(2, 2 + len(DUPLICATES))), rejects
    for line, key in zip(rejects, keys, strict=True):
        assert rejects[line].startswith(f'the record names field "{key}" twice'), rejects[line]
    # Inside a value, an object is read as jsonb reads it (the last key wins).
    assert conn.execute("SELECT name, age, data FROM people ORDER BY name").fetchall() == [
        ("ok1", 10, {}), ("ok2", None, {"x": {"y": 2}})]


def test_without_max_rejects_a_duplicated_key_fails_the_job_naming_line_and_key(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    path = folder / "in.jsonl"
    path.write_text('{"name": "a"}\n{"name": "b", "name": "c"}\n')
    row = _run(conn, dsn, folder, submit_import(conn, f"file://{path}", "1"))
    assert row["status"] == "failed", row
    assert row["error"].startswith('line 2: the record names field "name" twice'), row["error"]
