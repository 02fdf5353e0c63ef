"""The CSV header row is one record, or the import fails for good: a header
that the importer cut on its first line end but Python's CSV reader reads as
several records (lines ending with a carriage return alone, as "CSV
(Macintosh)" writes them; a line end style changing after the header) or as a
field holding line breaks (an unterminated quote in the header row) made the
rest of the source part of the header, silently: the import succeeded with
those records never read (0 rows for a whole CR-only file)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def _import(conn: Conn, dsn: str, src: Path, data: bytes, name: str = "in.csv",
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    path = src / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    job_id = submit_import(conn, f"file://{path}", options=options)
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    return job(conn, job_id)


BAD_HEADERS = {
    # Every line ends with CR alone: the whole source was one header.
    "cr-only": b"name,age\r" + b"".join(b"p%d,%d\r" % (i, i) for i in range(50)),
    "cr-only-no-final": b"name,age\r" + b"\r".join(b"p%d,%d" % (i, i) for i in range(50)),
    # The header ends with CR alone, the records with LF: the first record was
    # read as part of the header and dropped.
    "cr-then-lf": b"name,age\rp0,0\n" + b"".join(b"p%d,%d\n" % (i, i) for i in range(1, 50)),
    # An unterminated quote in the header: every record became a field name.
    "open-quote": b'name,"age\n' + b"".join(b"p%d,%d\n" % (i, i) for i in range(50)),
    # Not UTF-8: the header's field names were read with every bad byte replaced
    # by U+FFFD (a document field "n\ufffdme" imported in every record), and a
    # NUL in a name (UTF-16 text, as spreadsheets save "Unicode text") failed
    # each attempt as retryable, the job queued again and again.
    "latin1-field": b"name,age,st\xe4dt\n" + b"".join(b"p%d,%d,x\n" % (i, i) for i in range(50)),
    "utf16-bom": "name,age\n".encode("utf-16") + b"".join(
        f"p{i},{i}\n".encode("utf-16-le") for i in range(50)),
    "utf16-le": "name,age\n".encode("utf-16-le") + b"".join(
        f"p{i},{i}\n".encode("utf-16-le") for i in range(50)),
    "utf16-be": "name,age\n".encode("utf-16-be") + b"".join(
        f"p{i},{i}\n".encode("utf-16-be") for i in range(50)),
    "nul-in-name": b"name,age,no\x00te\n" + b"".join(b"p%d,%d,x\n" % (i, i) for i in range(50)),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_a_header_row_that_is_not_one_record_fails_for_good(
        conn: Conn, dsn: str, src: Path, case: str, gz: bool) -> None:
    row = _import(conn, dsn, src, BAD_HEADERS[case], "in.csv.gz" if gz else "in.csv")
    assert row["status"] == "failed", (row["status"], row["result"])
    assert "header row" in row["error"], row["error"]
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (0,)


@pytest.mark.parametrize("header", [b"name,age\n", b"name,age\r\n", b'"name","a""ge"\n'.replace(
    b'a""ge', b"age"), b"\xef\xbb\xbfname,age\r\n"])
def test_a_header_row_of_one_record_imports_every_record(
        conn: Conn, dsn: str, src: Path, header: bytes) -> None:
    end = b"\r\n" if header.endswith(b"\r\n") else b"\n"
    row = _import(conn, dsn, src, header + end.join(b"p%d,%d" % (i, i) for i in range(50)))
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rows"] == 50
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (50,)


def test_a_header_only_source_succeeds_with_no_rows(conn: Conn, dsn: str, src: Path) -> None:
    for data in (b"name,age", b"name,age\n", b"name,age\r\n"):
        conn.execute("DELETE FROM people")
        row = _import(conn, dsn, src, data)
        assert row["status"] == "succeeded" and row["result"]["rows"] == 0, row
