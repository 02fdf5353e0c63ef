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
MIB = 1024 * 1024


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
    """A chunk's transaction begins in the round trip of its statement (the
    BEGIN sent in the same query) and ends in the round trip of its COPY (the
    COMMIT sent in the same query), never in a round trip of its own. From the
    primary, the next chunk's BEGIN and statement travel with the COPY too
    (db.copy_then_begin), so its statement has no round trip either; only when
    the next chunk asks for another limit is that transaction rolled back and
    the chunk begun anew (before a wait for the part writer it is read first).
    Every COPY commits; nothing else does, and nothing is left open."""
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
    then = f"; COMMIT; {queries.CHUNK_BEGIN}; "
    # Each COPY carries its chunk's COMMIT, then (pipelined) the next chunk's
    # BEGIN and statement; no COMMIT travels alone.
    assert all(s.endswith('; COMMIT"') or (then in s and "pgjobs.export_chunk_sql(" in
                                           s.split(then, 1)[1]) for s in copies), copies[:3]
    assert not [s for s in sent if "COMMIT" in s and not s.startswith('"COPY ')]
    # Per chunk: its statement with its BEGIN (a query of its own, or after the
    # previous COPY), then its COPY; no BEGIN travels alone.
    assert f'"{queries.CHUNK_BEGIN}"' not in sent
    begins = [i for i, s in enumerate(sent) if s.startswith(f'"{queries.CHUNK_BEGIN}; ')]
    assert all("pgjobs.export_chunk_sql(" in sent[i] for i in begins)
    assert all(sent[i + 1].startswith('"COPY ') for i in begins)
    # From the first chunk on, the data connection sends nothing but the chunks'
    # queries (no Sync: no statement through the extended protocol, whose
    # Parse/Bind/Execute wait for their Sync's answer): a chunk begun with the
    # previous COPY sends its COPY next, or a ROLLBACK and begins anew.
    for handle in files:
        waits = _waits(handle.name)
        first = next((i for i, q in enumerate(waits) if q.startswith(f'"{queries.CHUNK_BEGIN}; ')),
                     None)
        if first is None:
            continue
        chunks = waits[first:]
        assert chunks[-1].startswith('"COPY ') and chunks[-1].endswith('; COMMIT"'), chunks[-3:]
        for query, following in zip(chunks, chunks[1:], strict=False):
            if query.startswith('"COPY ') and then in query:
                assert following.startswith('"COPY ') or following == '"ROLLBACK"', following
            elif query.startswith('"COPY ') or query == '"ROLLBACK"':
                assert following.startswith(f'"{queries.CHUNK_BEGIN}; '), following
            else:
                assert query.startswith(f'"{queries.CHUNK_BEGIN}; ') and \
                    following.startswith('"COPY '), (query, following)


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


def test_a_chunk_from_the_primary_is_one_round_trip(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    """Reading the primary, every chunk after the first is one round trip: its
    BEGIN and statement travel with the previous chunk's COPY (the server runs
    them as soon as that COPY ends) and its own COPY is the next query. One
    part (the reader never waits for the part writer) and a constant limit:
    nothing is rolled back, and the bytes are the plain COPY's. (Until issue
    13's later round, every chunk sent its statement in a round trip of its
    own: twice the queries.)"""
    make_items(conn, rows=600)
    files = _traced_readers(monkeypatch, tmp_path)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 7})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    sent: list[str] = []
    for handle in files:
        handle.close()
        sent += _waits(handle.name)
    first = next(i for i, q in enumerate(sent) if q.startswith(f'"{queries.CHUNK_BEGIN}; '))
    chunks = sent[first:]
    copies = [q for q in chunks if q.startswith('"COPY ')]
    assert len(copies) >= 200 // 7
    # One query per chunk, and the first chunk's statement.
    assert len(chunks) == len(copies) + 1, chunks[:4]
    assert all(f"; COMMIT; {queries.CHUNK_BEGIN}; " in q for q in copies[:-1])
    assert copies[-1].endswith('; COMMIT"')


def test_a_chunk_begun_for_another_limit_is_begun_anew(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next chunk's statement travels with the COPY for this chunk's limit
    once the limit has settled; when the chunk's rows then change it (narrower
    rows after wide ones: _next_limit grows it again), that transaction is
    rolled back and the chunk begins anew with the new limit: the same chunks,
    and bytes, as if nothing had been sent ahead. While the limit still grows
    (small first chunks double) nothing is sent ahead, so no chunk's
    statement runs twice then."""
    from pgjobs.poller import export

    # The first chunk asks for 5 keys (of chunk_bytes 1 MiB, the part size); rows 1-100 are
    # about 30 kB (31 fill nine tenths of 1 MiB), the rest about 100 bytes.
    monkeypatch.setattr(export, "FIRST_ROW_BYTES", export.MIN_CHUNK_BYTES * 9 // 50)
    make_items(conn, rows=0)
    conn.execute("INSERT INTO items (id, tenant, doc, note, noise) "
                 "SELECT g, 1, '{}', repeat(md5(g::text), CASE WHEN g <= 100 THEN 940 ELSE 3 END), "
                 "'n' FROM generate_series(1, 400) g")
    sent = reader_statements(monkeypatch)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 50, "part_size": MIB})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    calls = [(p["after"], p["limit"]) for q, p in sent if q == queries.EXPORT_CHUNK_SQL]
    limits: list[tuple[Any, int]] = []
    again = []
    for after, limit in calls:
        if limits and limits[-1][0] == after:
            again.append((limits[-1][1], limit))
            limits[-1] = (after, limit)  # begun anew with the new limit
        else:
            limits.append((after, limit))
    read = [lim for _, lim in limits]
    # Grown 5, 10, 20, 31 (each chunk read once), settled at 31 over wide rows,
    # then grown to 50 after the narrow rows began: the chunk sent ahead for 31
    # was begun anew for 50, the only one begun for another limit (none is
    # rolled back for a wait for the part writer: see the test below).
    assert read[:4] == [5, 10, 20, 31] and read[-1] <= 50 and 50 in read, calls
    assert [(old, new) for old, new in again if old != new] == [(31, 50)], calls


def test_copy_then_begin_returns_the_next_statement_or_none(dsn: str) -> None:
    """db.copy_then_begin runs the COPY, its COMMIT and the next chunk's BEGIN and
    statement as one query: the COPY's rows go to the sink, the statement's row
    comes back in an open REPEATABLE READ transaction. A statement that fails
    returns None (the COPY's rows were read and committed) and leaves a failed
    transaction that db.end_chunk rolls back; a COPY that fails raises."""
    from pgjobs import db

    copy = "COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT"
    with db.connect_reader(dsn) as c:
        rows: list[bytes] = []
        db.begin_chunk(c, "SELECT 1 AS one")
        count, row = db.copy_then_begin(c, copy, lambda d: rows.append(bytes(d)),
                                        "SELECT %(k)s::text AS k, "
                                        "current_setting('transaction_isolation') AS iso",
                                        {"k": "it's"})
        assert (count, rows, row) == (3, [b"1\n", b"2\n", b"3\n"],
                                      {"k": "it's", "iso": "repeatable read"})
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        rows.clear()
        count, row = db.copy_then_begin(c, copy, lambda d: rows.append(bytes(d)),
                                        "SELECT 1 / 0 AS x", {})
        assert (count, rows, row) == (3, [b"1\n", b"2\n", b"3\n"], None)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        db.end_chunk(c)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        db.begin_chunk(c, "SELECT 1 AS one")
        with pytest.raises(psycopg.errors.UndefinedTable):
            db.copy_then_begin(c, "COPY no_such_table TO STDOUT", rows.append,
                               "SELECT 1 AS one", {})
        db.end_chunk(c)
        assert db.begin_chunk(c, "SELECT 1 AS one") == {"one": "1"}
        db.end_chunk(c)


def test_a_chunk_begun_ahead_is_read_before_a_wait_for_the_part_writer(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk begun with the previous COPY is never rolled back because the
    reader must wait for the part writer: when the COPY that begun it also
    completed a part and a part already waits behind the one being written,
    that chunk is read first (into the next part, the finished one held
    aside), then the reader waits, with no chunk's transaction open. Here the
    writer is held on its first part until the reader meets that wait with a
    chunk begun while the writer was busy; every chunk's statement still runs
    once (until this round the begun chunk was rolled back before the wait and
    its statement run again, the last one without its bound: the flake of
    test_export_bound_ahead; then no chunk was begun ahead while the writer
    was busy, which left a wait-free timing to the limit test above), each
    but the first and the last with its bound walked ahead, and nothing is
    rolled back."""
    from pgjobs import db
    from pgjobs.poller import export

    waited = threading.Event()
    events: list[tuple[str, bool]] = []  # (what, whether the writer was busy)
    writers: list[Any] = []
    put, retry = export._Uploader.put, export.Exporter.storage_retry
    make_items(conn, rows=600)
    sent = reader_statements(monkeypatch)  # wraps db.copy_then_begin: ahead_seen wraps that
    copy_then_begin, end_chunk = db.copy_then_begin, db.end_chunk

    def busy() -> bool:
        return bool(writers) and writers[0].busy()

    def put_seen(self: Any, raw: bytearray, mark: dict[str, Any]) -> None:
        writers[:] = [self]
        since = events[max((i for i, e in enumerate(events) if e[0] == "put"), default=-1) + 1:]
        if self.busy() and ("ahead", True) in since:
            # This put waits for the held writer, and a chunk was begun with a
            # COPY while the writer was busy since the last put.
            assert self.exporter.pending is None, "a begun chunk is open during the wait"
            waited.set()
        events.append(("put", self.busy()))
        put(self, raw, mark)

    def ahead_seen(*args: Any, **kwargs: Any) -> Any:
        events.append(("ahead", busy()))
        return copy_then_begin(*args, **kwargs)

    def end_seen(c: Any) -> None:
        events.append(("rollback", busy()))
        end_chunk(c)

    def held(self: Any, call: Any, what: str, **kwargs: Any) -> Any:
        if what == "part 1":
            waited.wait(60)  # a deadline: a reader that never meets the wait fails below
        return retry(self, call, what, **kwargs)

    monkeypatch.setattr(export._Uploader, "put", put_seen)
    monkeypatch.setattr(export.Exporter, "storage_retry", held)
    monkeypatch.setattr(db, "copy_then_begin", ahead_seen)
    monkeypatch.setattr(db, "end_chunk", end_seen)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 7, "part_size": 1024})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    assert waited.is_set(), events
    assert job(conn, job_id)["checkpoint"]["parts"] >= 4
    assert ("ahead", True) in events and not [e for e in events if e[0] == "rollback"], events
    calls = [dict(p) for q, p in sent if q == queries.EXPORT_CHUNK_SQL]
    cursors = [c["after"] for c in calls]
    assert len(cursors) >= 200 // 7 and len(set(cursors)) == len(cursors), cursors
    assert [c["after"] for c in calls if c["next"] is None] == [None, cursors[-1]], calls
