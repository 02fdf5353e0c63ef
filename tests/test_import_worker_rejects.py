"""CSV records COPY refuses for their field count go in as one COPY (h61).

A CSV record of the wrong field count used to be found by COPY: the batch's
COPY failed at it, the records before it were sent again, and the rest of the
batch after it, so each such record re-sent the rest of the batch (bytes grew
with the batch times the bad records: 1% of 50,000 lines took 9.4x the clean
import). The worker now counts each record's fields before sending (in batches
whose outcome that decides: valid UTF-8, one line end, whole quotes) and COPYs
the others once; COPY's own message for a count is asked of COPY once.

The outcome must stay that of one record a batch (the reference of
test_import_reject_patterns): over how the records are bad (too many fields,
too few, those mixed with values the database refuses in the same batches, a
CRLF source, and undecodable bytes, which COPY still judges), where they are,
and a crash (none, after a committed batch, inside a batch), and with a
max_rejects ceiling. These pass on the old code too (it was slow, not wrong);
the count of bytes sent for a batch with k such records does not (it grew
with k times the batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import db
from tests.support import allow, job, make_people, submit_import
from tests.test_import_reject_patterns import (
    LINES,
    PER_BATCH,
    dsn_folder,
    import_with_crash,
    outcome,
    reference,
    run,
)

Conn = psycopg.Connection[Any]

PATTERNS: dict[str, set[int]] = {
    "first": {1},
    "last": {LINES},
    "adjacent": {8, 9, 10},
    "every": set(range(1, LINES + 1)),
    "boundaries": {6, 7, 12, 13},
}
KINDS = ["extra", "missing", "mixed", "crlf", "undecodable"]
CRASHES = ["none", "after_batch", "in_batch"]


@pytest.fixture
def folder(conn: Conn, dsn: str, tmp_path: Path) -> Path:
    """test_import_reject_patterns' folder: the sources' (allowed), and the
    workers' storage its run() uses."""
    make_people(conn)
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    dsn_folder[dsn] = tmp_path / "store"
    return path


def record(kind: str, n: int, bad: bool) -> bytes:
    name, age = f"p{n:03d}", f"{n + 10:02d}"
    end = "\r\n" if kind == "crlf" else "\n"
    if not bad:
        return f"{name},{age}{end}".encode()
    if kind == "mixed":
        kind = ["extra", "cast", "missing", "check"][n % 4]
    if kind in ("extra", "crlf"):
        return f"{name},{age},9{end}".encode()
    if kind == "missing":
        return f"{name}{end}".encode()
    if kind == "cast":
        return f"{name},xx{end}".encode()
    if kind == "check":
        return f"{name},-1{end}".encode()
    return name.encode() + b"\xff," + age.encode() + b"\n"  # undecodable


def source(kind: str, bad: set[int]) -> bytes:
    head = b"name,age\r\n" if kind == "crlf" else b"name,age\n"
    return head + b"".join(record(kind, n, n in bad) for n in range(1, LINES + 1))


def batch_bytes(kind: str) -> int:
    return (9 if kind == "crlf" else 8) * PER_BATCH


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("kind", KINDS)
def test_worker_refused_records_end_as_one_record_at_a_time(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str, pattern: str) -> None:
    bad = PATTERNS[pattern]
    path = folder / "people.csv"
    path.write_bytes(source(kind, bad))
    uri = f"file://{path}"
    want = reference(conn, dsn, uri, 1000)
    assert want["status"] == "succeeded", want["error"]
    assert [r[0] for r in want["rejects"]] == [n + 1 for n in sorted(bad)]
    for scope, crash in enumerate(CRASHES, 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 1000})
        import_with_crash(conn, dsn, job_id, crash, batch_bytes(kind), monkeypatch)
        got = outcome(conn, job_id)
        assert got == want, crash
        assert len(got["rows"]) == LINES - len(bad)


def test_the_reasons_are_copys_own(conn: Conn, dsn: str, folder: Path) -> None:
    """The messages COPY gives (the staging column named as the header does),
    whatever the batch: too many fields, too few."""
    path = folder / "people.csv"
    path.write_bytes(source("mixed", {1, 2, 3, 4, 6, 8}))
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1000})
    assert run(dsn, job_id, 1 << 20) == "succeeded"
    reasons = dict(conn.execute("SELECT line, reason FROM pgjobs.import_rejects "
                                "WHERE job_id = %s", (job_id,)).fetchall())
    assert reasons[3] == 'missing data for column "age" (field 2)'
    assert reasons[5] == "extra data after last expected column"
    assert reasons[7] == reasons[3] and reasons[9] == reasons[5]
    assert sorted(reasons) == [2, 3, 4, 5, 7, 9]


@pytest.mark.parametrize("pattern", ["adjacent", "boundaries", "every"])
@pytest.mark.parametrize("kind", ["extra", "mixed"])
def test_max_rejects_fails_at_the_same_line_with_the_same_rejects(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str, pattern: str) -> None:
    bad = sorted(PATTERNS[pattern])
    path = folder / "people.csv"
    path.write_bytes(source(kind, set(bad)))
    uri = f"file://{path}"
    want = reference(conn, dsn, uri, 2)
    assert want["status"] == "failed"
    assert want["error"].startswith(f"line {bad[2] + 1}:"), want["error"]
    for scope, crash in enumerate(["none", "after_batch"], 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 2})
        import_with_crash(conn, dsn, job_id, crash, batch_bytes(kind), monkeypatch)
        got = outcome(conn, job_id)
        assert (got["status"], got["error"]) == ("failed", want["error"]), crash
        assert got["rejects"] == want["rejects"], crash
        line = int(job(conn, job_id)["checkpoint"].get("line", 0))
        assert got["rows"] == [(f"p{n:03d}", n + 10) for n in range(1, LINES + 1)
                               if n not in bad and n + 1 <= line], crash


@pytest.mark.parametrize("k", [1, 10, 40])
def test_a_batch_with_k_refused_records_is_sent_about_twice_not_k_times(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
        k: int) -> None:
    """400 records in one batch, k of them with a field too many: the bytes
    COPYed are the batch's whole COPY that failed, COPY's message asked once
    (one record) and the good records once; the old code sent the rest of the
    batch again after each refused record (k=10: ~6x the batch)."""
    lines = 400
    bad = {n * lines // k for n in range(1, k + 1)}
    body = "".join(f"p{n:03d},{n % 90 + 10}{',9' if n in bad else ''}\n"
                   for n in range(1, lines + 1))
    path = folder / "big.csv"
    path.write_text("name,age\n" + body)
    sent = {"bytes": 0, "copies": 0}
    original = db.copy_in

    def copy_in(conn: Any, sql: str, data: bytes) -> None:
        sent["bytes"] += len(data)
        sent["copies"] += 1
        original(conn, sql, data)

    monkeypatch.setattr(db, "copy_in", copy_in)
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1000})
    assert run(dsn, job_id, len(body)) == "succeeded", job(conn, job_id)["error"]
    assert job(conn, job_id)["result"]["rejected"] == k
    assert sent["bytes"] < 2.5 * len(body), (sent, len(body))
    assert sent["copies"] <= 4, sent
