"""The rejects object when an import FAILS: on too many rejects (the failing
batch's rejects up to the record that failed the job included), on any other
error after records were rejected, across batches, for CSV and JSONL; and a retry
after fixing the source forgets the rejects of the batch it reads again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    claim_import,
    job,
    make_people,
    scalar,
    submit_import,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def run(dsn: str, job_id: int, folder: Path, **kw: Any) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
                    **kw).run().status


def rejects_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]


def csv_with_bad(lines: int, bad: set[int]) -> bytes:
    """A CSV of people: data line n (the header is line 1) has age 'x' when n in bad."""
    rows = [b"name,age\n"]
    for n in range(2, lines + 2):
        rows.append(b"p%d,%s\n" % (n, b"x" if n in bad else b"%d" % n))
    return b"".join(rows)


@pytest.mark.parametrize("batch_bytes", [None, 256], ids=["one_batch", "many_batches"])
def test_too_many_rejects_writes_every_reject_met(conn: Conn, dsn: str, src: Path,
                                                  batch_bytes: int | None) -> None:
    bad = {5, 40, 77, 120, 150}
    path = src / "bad.csv"
    path.write_bytes(csv_with_bad(200, bad))
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 3})
    assert run(dsn, job_id, src, batch_bytes=batch_bytes) == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["error"].startswith("line 120:"), row["error"]
    assert row["attempts"] == 1
    rejects = rejects_of(row)
    assert [r["line"] for r in rejects] == [5, 40, 77, 120]
    assert all("invalid input syntax for type integer" in r["reason"] for r in rejects)
    assert "p5" in rejects[0]["record"]
    assert row["result"]["rejected"] == 4
    kept = scalar(conn, "SELECT count(*) FROM people")
    assert row["result"]["inserted"] == kept and row["result"]["rows"] == kept
    # The failing batch rolled back: no row of it or after it.
    assert scalar(conn, "SELECT max(substr(name, 2)::int) FROM people") is None or \
        scalar(conn, "SELECT max(substr(name, 2)::int) FROM people") < 120


def test_jsonl_too_many_rejects_writes_the_object(conn: Conn, dsn: str, src: Path) -> None:
    data = (b'{"name": "ok", "age": 1}\n'
            b'{"name": "x", \n'
            b'{"age": "old"}\n'
            b'[1]\n'
            b'{"name": "ok2"}\n')
    path = src / "b.jsonl"
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 2})
    assert run(dsn, job_id, src) == "failed"
    row = job(conn, job_id)
    assert row["error"].startswith("line 4:"), row["error"]
    assert [r["line"] for r in rejects_of(row)] == [2, 3, 4]
    assert scalar(conn, "SELECT count(*) FROM people") == 0


def test_default_max_rejects_keeps_no_object(conn: Conn, dsn: str, src: Path) -> None:
    path = src / "bad.csv"
    path.write_bytes(csv_with_bad(10, {4}))
    job_id = submit_import(conn, f"file://{path}")
    assert run(dsn, job_id, src) == "failed"
    row = job(conn, job_id)
    assert row["error"].startswith("line 4:")
    assert not (row["result"] or {}).get("rejects_uri")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.import_rejects") == 0


def test_any_other_failure_after_rejects_writes_the_object(
        conn: Conn, dsn: str, src: Path, make_conn: Callable[..., Conn]) -> None:
    """Rejects committed in early batches, then the job fails for another reason
    (here its submitter loses INSERT): the object is written all the same."""
    role = f"imp_rej_{os.getpid()}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT, INSERT ON people TO {role}")
    path = src / "bad.csv"
    path.write_bytes(csv_with_bad(300, {3, 4}))
    conn.execute(f"SET ROLE {role}")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 100})
    conn.execute("RESET ROLE")
    admin = make_conn()
    seen: list[int] = []

    def revoke(records: int, done: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == 2:
            admin.execute(f"REVOKE INSERT ON people FROM {role}")

    try:
        assert run(dsn, job_id, src, batch_bytes=256, on_progress=revoke) == "failed"
        row = job(conn, job_id)
        assert "lacks INSERT" in row["error"]
        assert [r["line"] for r in rejects_of(row)] == [3, 4]
        assert row["result"]["rejected"] == 2
        assert row["result"]["inserted"] == scalar(conn, "SELECT count(*) FROM people") > 0
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_retry_after_fixing_the_source_forgets_the_redone_batch_rejects(
        conn: Conn, dsn: str, src: Path) -> None:
    path = src / "bad.csv"
    path.write_bytes(csv_with_bad(100, {10, 60, 61}))
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 2})
    assert run(dsn, job_id, src, batch_bytes=600) == "failed"
    first = job(conn, job_id)
    assert [r["line"] for r in rejects_of(first)] == [10, 60, 61]
    # Fix line 61 in place (same length), retry: 10 and 60 stay rejected, 61 is not.
    data = path.read_bytes().replace(b"p61,x\n", b"p61,1\n")
    path.write_bytes(data)
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    assert run(dsn, job_id, src) == "succeeded", job(conn, job_id)["error"]
    row = job(conn, job_id)
    assert [r["line"] for r in rejects_of(row)] == [10, 60]
    assert row["result"]["rejected"] == 2 and row["result"]["rows"] == 98
    assert scalar(conn, "SELECT count(*) FROM people") == 98
