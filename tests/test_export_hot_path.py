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


def _waits(path: str) -> list[str]:
    """What the client sent that waits for an answer, in a libpq protocol trace:
    each Query's text (a text's line breaks are printed raw: the lines after a
    message's own belong to it) and each Sync."""
    records: list[list[str]] = []
    with open(path) as trace:
        for line in trace:
            fields = line.rstrip("\n").split("\t")
            if len(fields) > 2 and fields[0] in ("F", "B") and fields[1].isdigit():
                records.append(fields)
            elif records:
                records[-1][-1] += "\n" + line.rstrip("\n")
    return [f[3].strip() if f[2] == "Query" and len(f) > 3 else f[2] for f in records
            if f[0] == "F" and f[2] in ("Query", "Sync")]


@pytest.mark.parametrize("options", [
    {"chunk_rows": 7, "part_size": 1024},
    {"chunk_rows": 7, "part_size": 1024, "gzip": True},
    {"chunk_rows": 7, "part_size": 1024, "parallel": 2},
    {"chunk_rows": 7, "part_size": 4096, "format": "parquet"},
], ids=["csv", "gzip", "parallel", "parquet"])
def test_a_chunk_commits_with_its_copy(
        conn: Conn, dsn: str, local_dir: str, options: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A chunk is two round trips: its transaction begins in the round trip of
    its statement (the BEGIN sent in the same query) and ends in the round trip
    of its COPY (the COMMIT sent in the same query), never in a round trip of
    its own: what the client sends on a data connection is, per chunk, the
    BEGIN with the chunk's statement, then the COPY with its COMMIT. Every COPY
    commits; nothing is left open."""
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
        sent += _waits(handle.name)
    copies = [s for s in sent if s.startswith('"COPY ')]
    assert len(copies) >= 200 // 7
    # Each COPY carries its chunk's COMMIT; no COMMIT (nor ROLLBACK) travels alone.
    assert all(s.endswith('; COMMIT"') for s in copies), copies[:3]
    assert not [s for s in sent if "COMMIT" in s and not s.startswith('"COPY ')]
    assert not [s for s in sent if "ROLLBACK" in s]
    # Per chunk: one query holding the BEGIN and the chunk's statement (simple
    # protocol, its parameters as literals), then the COPY: nothing else, and no
    # BEGIN travels alone. (Until issue 13's second round the BEGIN was a round
    # trip of its own, and the statement another, through the extended protocol.)
    assert f'"{queries.CHUNK_BEGIN}"' not in sent
    begins = [i for i, s in enumerate(sent) if s.startswith(f'"{queries.CHUNK_BEGIN}; ')]
    assert len(begins) == len(copies)
    assert all("pgjobs.export_chunk_sql(" in sent[i] for i in begins)
    assert all(sent[i + 1].startswith('"COPY ') for i in begins)
    # From the first chunk on, the data connection sends nothing but the chunks'
    # two queries, alternating (no Sync: no statement through the extended
    # protocol, whose Parse/Bind/Execute wait for their Sync's answer).
    for handle in files:
        waits = _waits(handle.name)
        first = next((i for i, q in enumerate(waits) if q.startswith(f'"{queries.CHUNK_BEGIN}; ')),
                     None)
        if first is None:
            continue
        chunks = waits[first:]
        assert len(chunks) % 2 == 0, chunks[-3:]
        assert all(q.startswith(f'"{queries.CHUNK_BEGIN}; ') for q in chunks[0::2])
        assert all(q.startswith('"COPY ') and q.endswith('; COMMIT"') for q in chunks[1::2])


@pytest.mark.parametrize("after", ["SELECT 1 / 0", "COMMIT; SELECT 1 / 0"])
def test_a_statement_sent_after_the_copy_that_fails_raises(dsn: str, after: str) -> None:
    """db.copy_out runs what follows the COPY in the same query (the chunk's
    COMMIT) and raises when any of it fails, as for the COPY itself: a COMMIT
    that failed is never taken for a chunk read. The connection stays usable."""
    from pgjobs import db

    with db.connect_reader(dsn) as c:
        rows: list[bytes] = []
        assert db.begin_chunk(c, "SELECT 1 AS one") == {"one": "1"}
        with pytest.raises(psycopg.errors.DivisionByZero):
            db.copy_out(c, f"COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT; {after}",
                        lambda data: rows.append(bytes(data)))
        assert rows == [b"1\n", b"2\n", b"3\n"]
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        db.begin_chunk(c, "SELECT 1 AS one")
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
        with pytest.raises((Refused, psycopg.Error)):
            if failure == "statement":  # after its BEGIN, in the same query
                db.begin_chunk(c, "SELECT 1 / 0 AS x")
            db.begin_chunk(c, "SELECT 1 AS one")
            if failure == "sink":
                db.copy_out(c, queries.COPY_THEN_COMMIT.format(
                    copy="COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT"), refuse)
            else:
                db.copy_out(c, queries.COPY_THEN_COMMIT.format(
                    copy="COPY (SELECT 1 / 0) TO STDOUT"), lambda data: None)
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert db.begin_chunk(c, "SELECT 1 AS one") == {"one": "1"}
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_chunk_begins_with_its_statement_in_one_query(dsn: str) -> None:
    """db.begin_chunk sends the BEGIN and the chunk's first statement as one
    query, its parameters bound as literals: the transaction is the chunk's
    (repeatable read, read only, its snapshot taken by that statement), values
    of any text come back as they went (quotes, backslashes, semicolons), NULL
    as None."""
    from pgjobs import db

    hostile = "o'k \\ \\x E'x' $$ ;-- COMMIT; \u00e9"
    with db.connect_reader(dsn) as c:
        row = db.begin_chunk(c, "SELECT %(k)s::text AS k, %(n)s::text AS n, %(i)s::bigint AS i, "
                                "pg_catalog.current_setting('transaction_isolation') AS iso, "
                                "pg_catalog.current_setting('transaction_read_only') AS ro",
                             {"k": hostile, "n": None, "i": 2**40})
        assert row == {"k": hostile, "n": None, "i": str(2**40), "iso": "repeatable read",
                       "ro": "on"}
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert db.copy_out(c, queries.COPY_THEN_COMMIT.format(
            copy="COPY (SELECT 1) TO STDOUT"), lambda data: None) == 1
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
