"""Imports: what a rejects object's `record` holds.

A JSONL record is the line as read, whoever refused it. A CSV record the
database refuses (a value its column's type refuses, a CHECK) is staged as
its fields, so today its text is the staging row's, e.g. `(2,bad-int,x,)`
(docs/imports.md says so). The CSV test below is a strict xfail that turns
green (and must then lose the marker) once the worker passes each staged
record's source text along. The mapping-drift defect (header matched to
the columns again on every batch) has no test here yet.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.helpers import job
from tests.import_support import allow, claim_import, make_people, submit_import

Conn = psycopg.Connection[Any]

@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    return folder


def rejects_of(conn: Conn, dsn: str, folder: Path, name: str, data: bytes) -> dict[int, str]:
    path = folder / name
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 10})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    lines = storage.read(row["result"]["rejects_uri"]).splitlines()
    return {r["line"]: r["record"] for r in (json.loads(x) for x in lines)}


def test_csv_worker_rejects_keep_the_record(conn: Conn, dsn: str, src: Path) -> None:
    """Records the worker refuses (field count) already keep the source text."""
    got = rejects_of(conn, dsn, src, "a.csv", b"name,age,born\nok,1,\nshort,2\n")
    assert list(got) == [3] and "short,2" in got[3]


def test_csv_sql_rejects_keep_the_record(conn: Conn, dsn: str, src: Path) -> None:
    data = (b"name,age,born\n"
            b"bad-int,x,\n"
            b'"two\nlines",-1,\n'
            b"ok,1,\n")
    got = rejects_of(conn, dsn, src, "b.csv", data)
    assert got[2].rstrip("\r\n") == "bad-int,x,"
    assert got[3].rstrip("\r\n") == '"two\nlines",-1,'


def test_jsonl_sql_rejects_keep_the_record(conn: Conn, dsn: str, src: Path) -> None:
    data = b'{"name": "ok"}\n{"age": "old"}\n{"age": -1,  "name": "n"}\n'
    got = rejects_of(conn, dsn, src, "c.jsonl", data)
    assert got[2].rstrip("\n") == '{"age": "old"}'
    assert got[3].rstrip("\n") == '{"age": -1,  "name": "n"}'
