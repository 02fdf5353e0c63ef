"""A CSV record holding a carriage return outside quotes with no LF after it
is a bad record (COPY: "unquoted carriage return found in data"), rejected
and counted under max_rejects. When it was the first record COPY read in a
batch of a CRLF source, COPY took the CR for the line end of the whole batch
and reported a later line ("unquoted newline found in data") that is no
record's: the job failed (22P04) whatever max_rejects said."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


def _source(end: bytes, bad: set[int], n: int = 40) -> bytes:
    records = [b"p%d,%d" % (i, i) if i not in bad else b"p%d,%d\rq,%d" % (i, i, i)
               for i in range(n)]
    return b"name,age" + end + end.join(records) + end


CASES = {
    # (line end, bad record indexes, batch bytes)
    "crlf-first": (b"\r\n", {0}, None),
    "crlf-later": (b"\r\n", {5}, None),
    "crlf-first-and-later": (b"\r\n", {0, 1, 17}, None),
    "crlf-batches": (b"\r\n", {0, 3, 9, 10, 30}, 64),
    "lf-first": (b"\n", {0}, None),
    "lf-batches": (b"\n", {0, 9, 10, 30}, 64),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unquoted_lone_carriage_return_rejects_its_record(
        conn: Conn, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        case: str, gz: bool) -> None:
    end, bad, batch = CASES[case]
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    data = _source(end, bad)
    path = src / ("in.csv.gz" if gz else "in.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    if batch:
        monkeypatch.setenv("PGJOBS_IMPORT_DELAYS", f"bytes={batch}")
    job_id = submit_import(conn, f"file://{path}", options={"max_rejects": 10, "gzip": gz})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert (row["result"]["rows"], row["result"]["rejected"]) == (40 - len(bad), len(bad))
    ages = [r[0] for r in conn.execute("SELECT age FROM people ORDER BY age")]
    assert ages == [i for i in range(40) if i not in bad]
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == sorted(i + 2 for i in bad)


def test_a_carriage_return_inside_quotes_is_a_value(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    path = src / "in.csv"
    path.write_bytes(b'name,age\r\n"a\rb",1\r\nc,2\r\n')
    job_id = submit_import(conn, f"file://{path}")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    assert job(conn, job_id)["status"] == "succeeded"
    assert [r[0] for r in conn.execute("SELECT name FROM people ORDER BY age")] == ["a\rb", "c"]
