"""A bad record holding a NUL byte is rejected like any other: its text is
kept in pgjobs.import_rejects (jsonb), which holds no NUL, so storing the
reject failed the batch and the job (22P05, no line) whatever max_rejects
said, for a CSV record (COPY refuses it: 22021) and a JSONL line alike (the
NUL in its text, and in the reason naming it). The kept text shows U+FFFD in
its place, as it does for bytes that are not UTF-8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

SOURCES = {
    "csv-value": ("csv", b"name,age\na,1\nb\x00c,2\nd,3\n", 3),
    "csv-bad-utf8-and-nul": ("csv", b"name,age\na,1\nb\xff\x00,2\nd,3\n", 3),
    "jsonl-string": ("jsonl", b'{"name": "a", "age": 1}\n{"name": "b\x00c", "age": 2}\n'
                              b'{"name": "d", "age": 3}\n', 2),
    "jsonl-outside": ("jsonl", b'{"name": "a", "age": 1}\n{"name": "b", "age": 2}\x00\n'
                               b'{"name": "d", "age": 3}\n', 2),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", sorted(SOURCES))
def test_a_record_with_a_nul_byte_is_rejected_not_the_job_failed(
        conn: Conn, dsn: str, tmp_path: Path, case: str, gz: bool) -> None:
    import gzip

    fmt, data, line = SOURCES[case]
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    path = src / (f"in.{fmt}" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    job_id = submit_import(conn, f"file://{path}",
                           options={"format": fmt, "max_rejects": 5, "gzip": gz})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert (row["result"]["rows"], row["result"]["rejected"]) == (2, 1)
    assert sorted(r[0] for r in conn.execute("SELECT name FROM people")) == ["a", "d"]
    kept = conn.execute("SELECT line, record FROM pgjobs.import_rejects WHERE job_id = %s",
                        (job_id,)).fetchall()
    assert len(kept) == 1 and kept[0][0] == line and "\ufffd" in kept[0][1], kept
    written = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [r["line"] for r in written] == [line]
