"""Imports: what a rejects object's `record` holds, and the mapping decided once.

Rejects: a record keeps its text as read, whoever refused it (the worker:
field count, invalid UTF-8 or JSON; the database: a value its column's type
refuses, a CHECK), CSV or JSONL, on one line or several, in a batch that went
to COPY whole or record by record.

Mapping: where each source field goes (a column and its type, or a document
field) is decided at the first batch and kept in the checkpoint. A later batch
or a resume that would map a field differently (a column added, dropped,
retyped, renamed), or that finds the source changed (its size, its header),
fails the job for good with 55000 and a hint; rows of committed batches stay.
"""
from __future__ import annotations

import json
import os
import threading
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


def test_csv_rejects_keep_the_record_on_the_record_by_record_path(
        conn: Conn, dsn: str, src: Path) -> None:
    """A blank line sends the batch record by record; a short record and a bad
    value beside it keep their text too, and the lines count the blank one."""
    data = (b"name,age,born\n"
            b"\n"
            b"short,2\n"
            b"bad-date,3,notadate\n"
            b'"multi\nline",x,\n'
            b"ok,1,\n")
    got = rejects_of(conn, dsn, src, "d.csv", data)
    assert {k: v.rstrip("\r\n") for k, v in got.items()} == {
        3: "short,2", 4: "bad-date,3,notadate", 5: '"multi\nline",x,'}
    assert scalar(conn, "SELECT count(*) FROM people") == 1


def test_jsonl_sql_rejects_keep_the_record(conn: Conn, dsn: str, src: Path) -> None:
    data = b'{"name": "ok"}\n{"age": "old"}\n{"age": -1,  "name": "n"}\n'
    got = rejects_of(conn, dsn, src, "c.jsonl", data)
    assert got[2].rstrip("\n") == '{"age": "old"}'
    assert got[3].rstrip("\n") == '{"age": -1,  "name": "n"}'


def test_jsonl_sql_rejects_keep_crlf_and_carriage_returns(conn: Conn, dsn: str,
                                                          src: Path) -> None:
    """The staged copy of a JSONL line has its line end and carriage returns
    rewritten; the reject keeps the line as read."""
    data = b'{"name": "ok"}\r\n{"age":\r"old"}\r\n{"age": -1}\r\n'
    got = rejects_of(conn, dsn, src, "e.jsonl", data)
    assert got == {2: '{"age":\r"old"}\r\n', 3: '{"age": -1}\r\n'}


# --- the mapping, decided once -------------------------------------------------


def _first_batch_then(conn: Conn, dsn: str, folder: Path, name: str, data: bytes,
                      change: str | None, *, options: dict[str, Any] | None = None,
                      rewrite: bytes | None = None) -> tuple[int, Any]:
    """Import `data` with tiny batches, stop after the first committed batch, run
    `change` (SQL) and/or rewrite the source, then resume in a new worker."""
    path = folder / name
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}", "1", options)
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
                     stop=stop, batch_bytes=64,
                     on_progress=lambda *_: stop.set()).run()
    assert first.status == "released", (first, job(conn, job_id))
    assert "mapping" in job(conn, job_id)["checkpoint"]
    if change:
        conn.execute(change)
    if rewrite is not None:
        path.write_bytes(rewrite)
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job_id, outcome


def _refused(conn: Conn, job_id: int, outcome: Any, *words: str) -> None:
    row = job(conn, job_id)
    assert outcome.status == "failed", (outcome, row["error"])
    assert row["status"] == "failed", row  # for good: not queued again
    error = str(row["error"])
    assert "55000" in error and "hint:" in error, error
    for word in words:
        assert word in error, error
    # The committed first batch stays, nothing after it went in.
    assert 0 < scalar(conn, "SELECT count(*) FROM people") < 50


CSV = b"name,age,colour\n" + b"".join(b"p%d,%d,c%d\n" % (i, i, i) for i in range(50))


@pytest.mark.parametrize("change, words", [
    ("ALTER TABLE people ADD COLUMN colour text", ['"colour"', "document", "column"]),
    ("ALTER TABLE people ALTER COLUMN age TYPE bigint", ['"age"', "integer", "bigint"]),
    ("ALTER TABLE people DROP COLUMN age", ['"age"', "document"]),
    ("ALTER TABLE people RENAME COLUMN age TO years", ['"age"']),
], ids=["document-field-becomes-column", "column-retyped", "column-dropped",
        "column-renamed"])
def test_csv_a_target_changed_mid_import_is_refused(conn: Conn, dsn: str, src: Path,
                                                    change: str, words: list[str]) -> None:
    job_id, outcome = _first_batch_then(conn, dsn, src, "m.csv", CSV, change)
    _refused(conn, job_id, outcome, "target changed", *words)


def test_jsonl_a_target_changed_mid_import_is_refused(conn: Conn, dsn: str,
                                                      src: Path) -> None:
    data = b"".join(b'{"name": "j%d", "colour": "c%d"}\n' % (i, i) for i in range(50))
    job_id, outcome = _first_batch_then(conn, dsn, src, "m.jsonl", data,
                                        "ALTER TABLE people ADD COLUMN colour text")
    _refused(conn, job_id, outcome, "target changed", '"colour"')


def test_jsonl_keys_first_seen_later_are_mapped_then(conn: Conn, dsn: str,
                                                     src: Path) -> None:
    """Not a change: a key no earlier batch had is decided when first seen (and
    kept from then on)."""
    data = (b"".join(b'{"name": "j%d"}\n' % i for i in range(20))
            + b"".join(b'{"name": "k%d", "colour": "c%d"}\n' % (i, i) for i in range(20)))
    job_id, outcome = _first_batch_then(conn, dsn, src, "k.jsonl", data,
                                        "ALTER TABLE people ADD COLUMN colour text")
    assert outcome.status == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE colour LIKE 'c%'") == 20
    assert job(conn, job_id)["checkpoint"]["mapping"]["colour"].startswith("column")


def test_an_unrelated_change_to_the_target_is_no_change(conn: Conn, dsn: str,
                                                        src: Path) -> None:
    job_id, outcome = _first_batch_then(conn, dsn, src, "u.csv", CSV,
                                        "ALTER TABLE people ADD COLUMN unrelated text")
    assert outcome.status == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 50


@pytest.mark.parametrize("rewrite", [
    CSV + b"p50,50,c50\n",                       # grown
    CSV.replace(b"name,age,colour", b"age,name,colour").replace(b"p1,1,", b"1,p1,"),
], ids=["size", "header-same-size"])
def test_a_source_changed_between_attempts_is_refused(conn: Conn, dsn: str, src: Path,
                                                      rewrite: bytes) -> None:
    job_id, outcome = _first_batch_then(conn, dsn, src, "s.csv", CSV, None, rewrite=rewrite)
    _refused(conn, job_id, outcome, "changed since the import began")


def test_a_changed_gzip_source_is_refused(conn: Conn, dsn: str, src: Path) -> None:
    import gzip

    data = gzip.compress(CSV, mtime=0)
    rewrite = gzip.compress(CSV.replace(b"name,age,colour", b"nome,age,colour"), mtime=0)
    assert len(rewrite) == len(data)
    job_id, outcome = _first_batch_then(conn, dsn, src, "g.csv.gz", data, None,
                                        options={"gzip": True}, rewrite=rewrite)
    _refused(conn, job_id, outcome, "header")


@pytest.mark.parametrize("how", ["renamed-over", "rewritten-in-place"])
def test_a_source_replaced_by_one_of_the_same_size_and_header_is_refused(
        conn: Conn, dsn: str, src: Path, tmp_path: Path, how: str) -> None:
    """The checkpoint keeps the file's version (device, inode, size, mtime): a
    resume in another file of the same size and header read on from the first
    one's offset and the job succeeded with rows of both."""
    other = CSV.replace(b"p", b"q")
    assert len(other) == len(CSV)
    path = src / "r.csv"
    path.write_bytes(CSV)
    job_id = submit_import(conn, f"file://{path}", "1")
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store",
                     stop=stop, batch_bytes=64, on_progress=lambda *_: stop.set()).run()
    assert first.status == "released", (first, job(conn, job_id))
    if how == "renamed-over":
        (tmp_path / "new.csv").write_bytes(other)
        (tmp_path / "new.csv").replace(path)
    else:
        before = path.stat().st_mtime_ns
        path.write_bytes(other)
        os.utime(path, ns=(before + 10**9, before + 10**9))  # whatever the clock's grain
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    _refused(conn, job_id, outcome, "replaced since the import began", "submit a new import")
    assert scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'q%'") == 0


def test_a_retry_after_the_refusal_reads_on_in_the_source_as_it_is(
        conn: Conn, dsn: str, src: Path, tmp_path: Path) -> None:
    """pgjobs.retry is the operator's word that the source is as it should be
    (a bad record fixed in place, docs/imports.md): it forgets the pinned
    version, so the retried attempt reads on from the committed offset and
    pins the version it finds; the resume before it was refused."""
    other = CSV.replace(b"p4", b"q4")
    assert len(other) == len(CSV)
    path = src / "fixed.csv"
    path.write_bytes(CSV)
    job_id = submit_import(conn, f"file://{path}", "1")
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store",
                     stop=stop, batch_bytes=64, on_progress=lambda *_: stop.set()).run()
    assert first.status == "released", (first, job(conn, job_id))
    (tmp_path / "new.csv").write_bytes(other)
    (tmp_path / "new.csv").replace(path)
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    _refused(conn, job_id, outcome, "replaced since the import began", "pgjobs.retry")
    assert "version" in job(conn, job_id)["checkpoint"]
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    assert "version" not in job(conn, job_id)["checkpoint"]
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    assert outcome.status == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 50
    assert job(conn, job_id)["checkpoint"]["version"]["ino"] == path.stat().st_ino


def test_a_checkpoint_of_the_previous_release_resumes_as_before(conn: Conn, dsn: str,
                                                                src: Path) -> None:
    """A checkpoint written before versions were kept (none in it) resumes on
    its size and header alone, and keeps the version found then from now on."""
    path = src / "legacy.csv"
    path.write_bytes(CSV)
    job_id = submit_import(conn, f"file://{path}", "1")
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store",
                     stop=stop, batch_bytes=64, on_progress=lambda *_: stop.set()).run()
    assert first.status == "released", (first, job(conn, job_id))
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint - 'version' WHERE id = %s",
                 (job_id,))
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before + 10**9, before + 10**9))  # touched, not changed
    stop.clear()
    second = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store",
                      stop=stop, batch_bytes=64, on_progress=lambda *_: stop.set()).run()
    assert second.status == "released", (second, job(conn, job_id))
    assert job(conn, job_id)["checkpoint"]["version"]["mtime_ns"] == before + 10**9
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    assert outcome.status == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 50


def test_the_first_attempt_reads_the_file_it_checkpoints(
        conn: Conn, dsn: str, src: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader opens the file whose device and inode the attempt
    checkpointed: one renamed over it between the importer's stat and the
    reader's open was read whole under a checkpoint naming the other."""
    path = src / "race.csv"
    path.write_bytes(CSV)
    real = storage.version

    def version_then_replaced(source: str) -> Any:
        found = real(source)
        (tmp_path / "new.csv").write_bytes(CSV.replace(b"p", b"q"))
        (tmp_path / "new.csv").replace(path)
        return found

    monkeypatch.setattr(storage, "version", version_then_replaced)
    job_id = submit_import(conn, f"file://{path}", "1")
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert outcome.status == "failed", (outcome, row["checkpoint"])
    assert "changed while it was read" in str(row["error"]), row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 0
