"""A batch with bad records ends exactly as one record at a time would (h55).

A batch the target refuses as a whole used to go in record by record, each
record a statement reading the whole stage: 100,000 CSV lines with 1% rejects
did not finish in 900 s. import_batch now narrows a failed run of records down
around the record it failed at (a guess the statements check), committing the
good runs whole. These tests pin the outcome to a reference: the same source
imported one record a batch (batch_bytes 1: every batch is one record, which
goes in or is rejected alone). Over where the bad records are (the first line,
the last, adjacent lines, every line, lines at batch boundaries, scattered),
how they are bad (a value the database's cast refuses, a CHECK the target
refuses, a CSV record of the wrong field count or a JSON Lines line that is not
JSON, which the worker refuses) and a crash of the worker (none, after a
committed batch, inside a batch after import_batch ran): the target's rows,
the rejects (line, reason, record) and the counts must equal the reference's.
A max_rejects ceiling still fails the job at the same line with the same
rejects kept. And a batch of many records with two bad ones takes a few
subtransactions, not one per record (counted in transaction ids: one
record at a time used one per record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    claim_import,
    expire_lease,
    job,
    make_people,
    scalar,
    submit_import,
)

Conn = psycopg.Connection[Any]

LINES = 18
PER_BATCH = 6  # records of one batch (each CSV record is 8 bytes, JSON Lines 28)
RECORD_BYTES = {"csv": 8, "jsonl": 28}

PATTERNS: dict[str, set[int]] = {
    "none": set(),
    "first": {1},
    "last": {LINES},
    "adjacent": {8, 9, 10},
    "every": set(range(1, LINES + 1)),
    "boundaries": {6, 7, 12, 13},
    "scattered": {3, 11, 14, 17},
}
# (format, how a bad record is bad): refused by the database's cast, by a
# CHECK constraint of the target, or by the worker's parse.
KINDS = [("csv", "cast"), ("csv", "check"), ("csv", "fields"), ("jsonl", "cast"),
         ("jsonl", "json")]
CRASHES = ["none", "after_batch", "in_batch"]


def source(fmt: str, how: str, bad: set[int]) -> bytes:
    out = [b"name,age\n"] if fmt == "csv" else []
    for n in range(1, LINES + 1):
        name, age = f"p{n:03d}", f"{n + 10:02d}"
        if n in bad:
            age = {"cast": "xx", "check": "-1"}.get(how, age)
        if fmt == "csv":
            extra = ",9" if n in bad and how == "fields" else ""
            out.append(f"{name},{age}{extra}\n".encode())
        elif n in bad and how == "json":
            out.append(f'{{"name": "{name}", "age": {age}\n'.encode())
        elif n in bad:
            out.append(f'{{"name": "{name}", "age": "{age}"}}\n'.encode())
        else:
            out.append(f'{{"name": "{name}", "age": {age}}}\n'.encode())
    return b"".join(out)


def src_line(fmt: str, n: int) -> int:
    """The source line of record n (a CSV source starts with its header)."""
    return n + 1 if fmt == "csv" else n


class Killed(BaseException):
    """The worker's process dies here: no handler runs."""


def run(dsn: str, job_id: int, batch_bytes: int) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{dsn_folder[dsn]}",
                    batch_bytes=batch_bytes).run().status


dsn_folder: dict[str, Path] = {}


def outcome(conn: Conn, job_id: int) -> dict[str, Any]:
    row = job(conn, job_id)
    return {
        "status": row["status"],
        "error": row["error"],
        "rows": conn.execute("SELECT name, age FROM people WHERE tenant = %s ORDER BY name",
                             (int(row["scope"]),)).fetchall(),
        "rejects": conn.execute("SELECT line, reason, record FROM pgjobs.import_rejects "
                                "WHERE job_id = %s ORDER BY line", (job_id,)).fetchall(),
        "counts": {k: (row["result"] or {}).get(k) for k in ("inserted", "rejected",
                                                             "records", "skipped")},
    }


def reference(conn: Conn, dsn: str, uri: str, max_rejects: int) -> dict[str, Any]:
    """The outcome of importing uri one record a batch (batch_bytes 1), in scope 9."""
    ref = submit_import(conn, uri, "9", {"max_rejects": max_rejects})
    run(dsn, ref, 1)
    found = outcome(conn, ref)
    conn.execute("DELETE FROM people WHERE tenant = 9")
    return found


@pytest.fixture
def folder(conn: Conn, dsn: str, tmp_path: Path) -> Path:
    make_people(conn)
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    dsn_folder[dsn] = tmp_path / "store"
    return path


def crash_once(monkeypatch: pytest.MonkeyPatch, crash: str) -> None:
    """Make the next run's worker die at `crash` (once its second batch ran)."""
    calls = {"settled": 0, "batches": 0}
    original_settle, original_batch = Importer._settle, Importer._import_batch
    original_fail = Importer._fail

    def settle(self: Importer, result: dict[str, Any]) -> None:
        original_settle(self, result)
        calls["settled"] += 1
        if crash == "after_batch" and calls["settled"] == 2:
            raise Killed()

    def import_batch(self: Importer, *args: Any) -> dict[str, Any]:
        result = original_batch(self, *args)
        if result.get("status") != "records":
            calls["batches"] += 1
            if crash == "in_batch" and calls["batches"] == 2:
                raise Killed()  # before the batch's transaction commits
        return result

    def fail(self: Importer, exc: BaseException) -> Any:
        if isinstance(exc, Killed):
            raise exc
        return original_fail(self, exc)

    monkeypatch.setattr(Importer, "_settle", settle)
    monkeypatch.setattr(Importer, "_import_batch", import_batch)
    monkeypatch.setattr(Importer, "_fail", fail)


def import_with_crash(conn: Conn, dsn: str, job_id: int, crash: str, batch_bytes: int,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    if crash != "none":
        with monkeypatch.context() as patched:
            crash_once(patched, crash)
            try:
                run(dsn, job_id, batch_bytes)
            except Killed:
                expire_lease(conn, job_id)
                conn.execute("SELECT pgjobs.prune()")  # rescued: queued again
                conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    if job(conn, job_id)["status"] in ("queued", "running"):
        run(dsn, job_id, batch_bytes)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize(("fmt", "how"), KINDS, ids=[f"{f}-{h}" for f, h in KINDS])
def test_a_batch_with_bad_records_ends_as_one_record_at_a_time(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
        fmt: str, how: str, pattern: str) -> None:
    """Each crash (none, after a committed batch, inside a batch) in a scope
    of its own."""
    bad = PATTERNS[pattern]
    path = folder / f"people.{fmt}"
    path.write_bytes(source(fmt, how, bad))
    uri = f"file://{path}"
    want = reference(conn, dsn, uri, 1000)
    assert want["status"] == "succeeded", want["error"]
    assert [r[0] for r in want["rejects"]] == [src_line(fmt, n) for n in sorted(bad)]
    for scope, crash in enumerate(CRASHES, 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 1000})
        import_with_crash(conn, dsn, job_id, crash, RECORD_BYTES[fmt] * PER_BATCH,
                          monkeypatch)
        got = outcome(conn, job_id)
        assert got == want, crash
        assert len(got["rows"]) == LINES - len(bad)


@pytest.mark.parametrize("pattern", ["adjacent", "boundaries", "every"])
@pytest.mark.parametrize(("fmt", "how"), KINDS, ids=[f"{f}-{h}" for f, h in KINDS])
def test_max_rejects_fails_the_job_at_the_same_line_with_the_same_rejects(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
        fmt: str, how: str, pattern: str) -> None:
    """max_rejects 2: the job fails at the third bad line, its error and the
    rejects kept (the first three) as one record at a time has them; the rows
    kept are the good records of the batches committed before it. With and
    without a crash after a committed batch."""
    bad = sorted(PATTERNS[pattern])
    path = folder / f"people.{fmt}"
    path.write_bytes(source(fmt, how, set(bad)))
    uri = f"file://{path}"
    want = reference(conn, dsn, uri, 2)
    assert want["status"] == "failed"
    assert want["error"].startswith(f"line {src_line(fmt, bad[2])}:"), want["error"]
    for scope, crash in enumerate(["none", "after_batch"], 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 2})
        import_with_crash(conn, dsn, job_id, crash, RECORD_BYTES[fmt] * PER_BATCH,
                          monkeypatch)
        got = outcome(conn, job_id)
        assert got["status"] == "failed", crash
        assert got["error"] == want["error"], crash
        assert got["rejects"] == want["rejects"], crash
        line = int(job(conn, job_id)["checkpoint"].get("line", 0))
        assert line < src_line(fmt, bad[2])
        assert got["rows"] == [(f"p{n:03d}", n + 10) for n in range(1, LINES + 1)
                               if n not in bad and src_line(fmt, n) <= line], crash


def test_a_batch_with_two_bad_records_takes_a_few_subtransactions(
        conn: Conn, dsn: str, folder: Path) -> None:
    """400 records in one batch, lines 100 and 300 bad: each subtransaction
    that writes takes a transaction id, so the ids the import used count its
    statements. One record at a time took one per record (400 and more)."""
    lines = 400
    body = "".join(f"p{n:03d},{'xx' if n in (100, 300) else n % 90 + 10}\n"
                   for n in range(1, lines + 1))
    path = folder / "big.csv"
    path.write_text("name,age\n" + body)
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 10})
    before = int(scalar(conn, "SELECT pg_current_xact_id()::text::bigint"))
    assert run(dsn, job_id, len(body)) == "succeeded", job(conn, job_id)["error"]
    used = int(scalar(conn, "SELECT pg_current_xact_id()::text::bigint")) - before
    assert scalar(conn, "SELECT count(*) FROM people") == lines - 2
    assert [r[0] for r in conn.execute("SELECT line FROM pgjobs.import_rejects "
                                       "WHERE job_id = %s ORDER BY line", (job_id,))] \
        == [101, 301]
    assert used < 60, f"{used} transaction ids for a batch of {lines} records with 2 bad"
    assert job(conn, job_id)["result"]["rejected"] == 2
