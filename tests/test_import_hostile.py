"""Import sources built to break the worker's own parsing, not the database's:
each bad record is a reject (or fails the job for good, naming its line) like any
other bad record, never an unexpected error the job retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, scalar, submit_import

Conn = psycopg.Connection[Any]

DEEP = 200_000  # far past Python's recursion limit; 400 kB of brackets


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def do_import(conn: Conn, dsn: str, folder: Path, name: str, data: bytes,
              options: dict[str, Any] | None = None) -> dict[str, Any]:
    path = folder / name
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}", "1", options)
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job(conn, job_id)


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_a_deeply_nested_jsonl_line_is_a_reject(conn: Conn, dsn: str, src: Path,
                                                opening: str) -> None:
    """json.loads raises RecursionError (not ValueError) on a line nested past
    Python's recursion limit: it escaped the line check as an unexpected error,
    so the job was retried attempt after attempt and then failed with 'maximum
    recursion depth exceeded', naming no line, while max_rejects let every other
    bad line through."""
    closing = "]" if opening == "[" else "}"
    deep = (opening * DEEP + "1" + closing * DEEP).encode()
    data = b'{"name": "ok", "age": 1}\n' + deep + b'\n{"name": "ok2", "age": 2}\n'
    row = do_import(conn, dsn, src, "deep.jsonl", data, {"max_rejects": 1})
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rows"] == 2 and row["result"]["rejected"] == 1
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [r["line"] for r in rejects] == [2]
    assert "nested too deeply" in rejects[0]["reason"], rejects[0]["reason"]
    assert scalar(conn, "SELECT count(*) FROM people") == 2
    # Without max_rejects: the job fails for good at once, naming the line.
    row = do_import(conn, dsn, src, "deep2.jsonl", data)
    assert row["status"] == "failed" and row["attempts"] == 1, row
    assert row["error"].startswith("line 2:") and "nested too deeply" in row["error"], row


def test_a_csv_header_nested_too_deeply_is_judged_as_a_header(
        conn: Conn, dsn: str, src: Path) -> None:
    """The check that a CSV header row is not a JSON object (a JSON Lines file
    imported as CSV) parses it: nested past the recursion limit, that too raised
    RecursionError, an unexpected error retried attempt after attempt. It is a
    header (of fields the target does not have), refused for good."""
    header = ('{"a":' + "[1," * 5000).encode()
    row = do_import(conn, dsn, src, "deep.csv", header + b"\nx\n", {"format": "csv"})
    assert row["status"] == "failed" and row["attempts"] == 1, (row["status"], row["error"])
    assert "recursion" not in row["error"], row["error"]


def test_a_csv_header_field_past_the_csv_field_limit_fails_for_good(
        conn: Conn, dsn: str, src: Path) -> None:
    """The header row is split by Python's csv module, whose field_size_limit
    (128 KiB) raises csv.Error, not a ValueError: an unexpected error, retried
    attempt after attempt, with no hint."""
    header = b"name," + b"x" * 200_000
    row = do_import(conn, dsn, src, "wide.csv", header + b"\nx,1\n", {"format": "csv"})
    assert row["status"] == "failed" and row["attempts"] == 1, (row["status"], row["error"])
    assert "header row cannot be read" in row["error"], row["error"]
