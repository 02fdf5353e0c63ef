"""What an export sends per chunk on its data connection: one statement (the
chunk's COPY text, its cursor and its read position together) then the COPY,
whether it reads the primary or a standby: no second round trip per chunk
(the read position used to be its own query). The position still lands in the
checkpoint, never going backwards."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs import queries
from pgjobs.poller.standby import lsn
from tests.support import (
    job,
    make_items,
    object_bytes,
    plain_copy,
    reader_statements,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


@pytest.mark.parametrize("options", [
    {"chunk_rows": 7, "part_size": 1024},
    {"chunk_rows": 7, "part_size": 1024, "parallel": 2},
    {"chunk_rows": 7, "part_size": 4096, "format": "parquet"},
], ids=["csv", "parallel", "parquet"])
def test_one_statement_per_chunk_on_the_data_connection(
        conn: Conn, dsn: str, local_dir: str, options: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if options.get("format") == "parquet":
        pytest.importorskip("pyarrow")
    make_items(conn, rows=600)
    log = reader_statements(monkeypatch)
    job_id = submit_export(conn, "1", {}, options)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    sent = [query for query, _ in log]
    chunks = sent.count(queries.EXPORT_CHUNK_SQL)
    assert chunks >= 200 // 7
    assert [q for q in sent if q != queries.EXPORT_CHUNK_SQL] == []
    row = job(conn, job_id)
    if options.get("format") is None and not options.get("parallel"):
        assert object_bytes(row["result"]) == plain_copy(
            conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
        # The read position is still recorded, and is past the submit.
        assert lsn(row["checkpoint"]["read_lsn"]) >= lsn(str(row["submit_lsn"]))


def test_export_settings_are_read_from_the_payload_the_submit_wrote(conn: Conn) -> None:
    """One place decides an export's defaults: the submit writes every setting into
    the payload and the worker reads them there, with no second set of defaults
    (a payload missing one is refused, never filled in)."""
    from pgjobs.poller.export import Settings

    make_items(conn, rows=30)
    for options in ({}, {"format": "jsonl", "gzip": True, "chunk_rows": 9, "part_size": 5000,
                         "parallel": 3},
                    {"format": "parquet"}, {"format": "parquet", "compression": "snappy",
                                            "row_group_bytes": 2097152}):
        payload = job(conn, submit_export(conn, "1", {}, options))["payload"]
        got = Settings.of(payload)
        assert got.format == payload["format"] == options.get("format", "csv")
        assert (got.gzip, got.chunk_rows, got.part_size, got.parallel) == (
            payload["gzip"], payload["chunk_rows"], payload["part_size"], payload["parallel"])
        for key in ("chunk_rows", "part_size", "parallel", "gzip"):
            if key in options:
                assert payload[key] == options[key]
        if got.format == "parquet":
            assert (got.compression, got.row_group_bytes) == (
                payload["compression"], payload["row_group_bytes"])
        else:
            assert got.compression is None and got.row_group_bytes is None
        for missing in ("format", "chunk_rows", "part_size", "parallel", "gzip"):
            with pytest.raises(ValueError, match="was not written by pgjobs.submit_export"):
                Settings.of({k: v for k, v in payload.items() if k != missing})


def _traced_readers(monkeypatch: pytest.MonkeyPatch, path: Any) -> list[Any]:
    """libpq's protocol trace of every data connection the exporter opens
    (db.connect_reader), written to files under ``path``."""
    from pgjobs import db

    connect = db.connect_reader
    files: list[Any] = []
    naming = threading.Lock()

    def traced(*args: Any, **kwargs: Any) -> Any:
        c = connect(*args, **kwargs)
        # A parallel export's workers connect side by side: each file is named
        # and appended under the lock, else two connections trace into one file.
        with naming:
            handle = open(path / f"trace-{len(files)}", "w")  # noqa: SIM115 - closed by the test
            files.append(handle)
        c.pgconn.trace(handle.fileno())
        c.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        return c

    monkeypatch.setattr(db, "connect_reader", traced)
    return files


@pytest.mark.parametrize("options", [
    {"chunk_rows": 7, "part_size": 1024},
    {"chunk_rows": 7, "part_size": 1024, "gzip": True},
    {"chunk_rows": 7, "part_size": 1024, "parallel": 2},
    {"chunk_rows": 7, "part_size": 4096, "format": "parquet"},
], ids=["csv", "gzip", "parallel", "parquet"])
def test_a_chunk_commits_with_its_copy(
        conn: Conn, dsn: str, local_dir: str, options: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A chunk's transaction ends in the round trip of its COPY (the COMMIT sent
    in the same query), never in a round trip of its own: what the client sends
    on a data connection is, per chunk, the BEGIN, the chunk's statement, and
    the COPY with its COMMIT. Every COPY commits; nothing is left open."""
    if options.get("format") == "parquet":
        pytest.importorskip("pyarrow")
    make_items(conn, rows=600)
    files = _traced_readers(monkeypatch, tmp_path)
    job_id = submit_export(conn, "1", {}, options)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    sent: list[str] = []  # what the client sent that waits for an answer
    for handle in files:
        handle.close()
        with open(handle.name) as trace:
            for line in trace:
                fields = line.rstrip("\n").split("\t")
                if len(fields) > 2 and fields[0] == "F" and fields[2] in ("Query", "Sync"):
                    sent.append(fields[3].strip() if len(fields) > 3 and fields[2] == "Query"
                                else fields[2])
    copies = [s for s in sent if s.startswith('"COPY ')]
    assert len(copies) >= 200 // 7
    # Each COPY carries its chunk's COMMIT; no COMMIT (nor ROLLBACK) travels alone.
    assert all(s.endswith('; COMMIT"') for s in copies), copies[:3]
    assert not [s for s in sent if "COMMIT" in s and not s.startswith('"COPY ')]
    assert not [s for s in sent if "ROLLBACK" in s]
    # Per chunk: BEGIN, its statement (extended protocol: Syncs; psycopg prepares
    # it once per connection, one Sync more), then the COPY: nothing else.
    queries_only = [s for s in sent if s != "Sync"]
    begins = [i for i, s in enumerate(queries_only) if s == f'"{queries.CHUNK_BEGIN}"']
    assert len(begins) == len(copies)
    assert all(queries_only[i + 1].startswith('"COPY ') for i in begins)


@pytest.mark.parametrize("after", ["SELECT 1 / 0", "COMMIT; SELECT 1 / 0"])
def test_a_statement_sent_after_the_copy_that_fails_raises(dsn: str, after: str) -> None:
    """db.copy_out runs what follows the COPY in the same query (the chunk's
    COMMIT) and raises when any of it fails, as for the COPY itself: a COMMIT
    that failed is never taken for a chunk read. The connection stays usable."""
    from pgjobs import db

    with db.connect_reader(dsn) as c:
        rows: list[bytes] = []
        db.begin_chunk(c)
        with pytest.raises(psycopg.errors.DivisionByZero):
            db.copy_out(c, f"COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT; {after}",
                        lambda data: rows.append(bytes(data)))
        assert rows == [b"1\n", b"2\n", b"3\n"]
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        db.begin_chunk(c)
        assert db.copy_out(c, queries.COPY_THEN_COMMIT.format(
            copy="COPY (SELECT 1) TO STDOUT"), lambda data: None) == 1
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("failure", ["sink", "copy", "statement"])
def test_a_chunk_that_fails_leaves_its_connection_idle(dsn: str, failure: str) -> None:
    """A chunk's transaction that did not reach its COMMIT (the sink refused a row,
    the COPY or the chunk's statement failed) is rolled back by db.end_chunk: the
    next chunk begins on an idle connection, in a snapshot of its own."""
    from pgjobs import db

    class Refused(Exception):
        pass

    def refuse(data: Any) -> None:
        raise Refused()

    with db.connect_reader(dsn) as c:
        db.begin_chunk(c)
        with pytest.raises((Refused, psycopg.Error)):
            if failure == "sink":
                db.copy_out(c, queries.COPY_THEN_COMMIT.format(
                    copy="COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT"), refuse)
            elif failure == "copy":
                db.copy_out(c, queries.COPY_THEN_COMMIT.format(
                    copy="COPY (SELECT 1 / 0) TO STDOUT"), lambda data: None)
            else:
                c.execute("SELECT 1 / 0")
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        db.begin_chunk(c)
        assert c.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
