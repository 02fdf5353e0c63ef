"""A chunk's keyset bound is walked ahead: while a chunk streams on the data
connection, the exporter walks the next chunk's keys on its control connection
(``_Ahead``) and passes the bound to the chunk as ``p_next`` of
pgjobs.export_chunk_sql, which then does not walk them again. The bound must be
the one the chunk would have walked (same chunks, parts and bytes, a resume
byte-identical), and the chunk keeps its own mask and checks."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs import db, queries
from pgjobs.poller.export import Exporter, _Ahead
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
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"
SMALL = {"chunk_rows": 7, "part_size": 1024}


def chunk(conn: Conn, job_id: int, after: str | None, limit: int,
          nxt: str | None = None) -> dict[str, Any]:
    row = conn.execute("SELECT copy_sql, next_after FROM pgjobs.export_chunk_sql(%s, %s, %s, "
                       "NULL, %s)", (job_id, after, limit, nxt)).fetchone()
    assert row is not None
    return {"copy_sql": row[0], "next_after": row[1]}


def test_every_bound_walked_ahead_is_the_bound_the_chunk_walks(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=600)
    sent = reader_statements(monkeypatch)
    job_id = submit_export(conn, "1", {}, SMALL)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(conn, REFERENCE)
    calls = [dict(params) for query, params in sent if query == queries.EXPORT_CHUNK_SQL]
    ahead = [c for c in calls if c["next"] is not None]
    # Every chunk but the first (nothing streams before it) and the last (no
    # limit-th key is left: it walks the rest itself) had its bound walked ahead.
    assert len(ahead) >= len(calls) - 2 and len(calls) >= 200 // 7
    for c in ahead:
        assert chunk(conn, job_id, c["after"], c["limit"])["next_after"] == c["next"]


def test_a_walk_of_fewer_keys_is_continued_and_a_stale_one_is_not_used() -> None:
    keys = [f"{i:03d}" for i in range(100)]
    walks: list[tuple[str, int]] = []

    def walk(after: str, limit: int) -> str | None:
        walks.append((after, limit))
        at = keys.index(after) + limit
        return keys[at] if at < len(keys) else None

    stop = threading.Event()
    ahead = _Ahead(walk, stop)
    ahead.start("010", 5)
    assert ahead.take("010", 5) == walk("010", 5) == "015"
    ahead.start("010", 5)
    # The limit grew to 8 meanwhile: 3 keys more are walked from "015", not 8.
    assert ahead.take("010", 8) == "018" and walks[-1] == ("015", 3)
    ahead.start("010", 5)
    assert ahead.take("011", 5) is None  # walked from elsewhere (a chunk read again)
    ahead.start("010", 5)
    assert ahead.take("010", 4) is None  # the limit shrank: the chunk walks its own
    assert ahead.take("010", 5) is None  # taken once only
    ahead.start("095", 10)
    assert ahead.take("095", 10) is None  # fewer keys left: the chunk walks the rest
    ahead.start("010", 5)
    stop.set()
    ahead.wait()
    assert ahead.take("010", 5) is None

    def failing(after: str, limit: int) -> str | None:
        raise RuntimeError("lost")

    broken = _Ahead(failing, threading.Event())
    broken.start("010", 5)
    assert broken.take("010", 5) is None

    # A walk that raises what `except Exception` lets pass (SystemExit) does not end
    # the walking thread: the next walk is served and taken (handed to a dead
    # thread it was never served: without the stop set below, take waited forever).
    calls: list[str] = []

    def exits_once(after: str, limit: int) -> str | None:
        calls.append(after)
        if len(calls) == 1:
            raise SystemExit
        return walk(after, limit)

    stop = threading.Event()
    dying = _Ahead(exits_once, stop)
    dying.start("010", 5)
    assert dying.take("010", 5) is None
    unblock = threading.Timer(30, stop.set)  # a hang fails the assert below instead
    unblock.start()
    try:
        dying.start("020", 5)
        assert dying.take("020", 5) == "025"
    finally:
        unblock.cancel()
        dying.wait()


def test_a_bound_given_is_used_checked_and_leaves_the_mask_to_the_chunk(conn: Conn) -> None:
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, SMALL)
    first = chunk(conn, job_id, None, 10)
    walked = chunk(conn, job_id, first["next_after"], 10)
    given = chunk(conn, job_id, first["next_after"], 10, walked["next_after"])
    assert given == walked
    # A bound is a key that advances, else the chunk fails (no rows lost or repeated).
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        chunk(conn, job_id, first["next_after"], 10, "not a key")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        chunk(conn, job_id, first["next_after"], 10, first["next_after"])
    # A delete submitted after the bound was walked still masks the chunk's rows:
    # the mask is the chunk's own, evaluated in its transaction.
    conn.execute("SELECT pgjobs.submit_delete('items', '1', '{}')")
    masked = chunk(conn, job_id, first["next_after"], 10, walked["next_after"])
    assert masked["next_after"] == walked["next_after"]
    copied = bytearray()
    db.copy_out(conn, masked["copy_sql"], copied.extend)
    assert copied == b""


def test_a_stop_while_a_bound_is_walked_ahead_resumes_byte_identically(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, SMALL)

    class StopAfter(Exporter):
        """Stops (as on SIGTERM) after some chunks, each of which started a walk
        ahead: the job is released at its last part with the walk in flight."""

        chunks = 12

        def _read_chunk(self, cursor: str | None, part: Any) -> tuple[int, str | None]:
            self.chunks -= 1
            if self.chunks <= 0:
                self.stop.set()
            return super()._read_chunk(cursor, part)

    worker = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'stop', '30 seconds')",
                          (job_id,)).fetchone()
    assert worker is not None
    stopped = StopAfter(dsn, job_id, worker[0], local_dir, stop=threading.Event()).run()
    assert stopped.status == "released", stopped
    checkpoint = job(conn, job_id)["checkpoint"]
    assert checkpoint["parts"] >= 1 and not checkpoint["eof"]
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(conn, REFERENCE)



def test_one_thread_walks_every_bound_of_an_export_and_ends_with_it(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds are handed to one walking thread: a thread started per chunk made
    the reader wait for it to start (Thread.start hands the GIL over and back)
    before every COPY. The thread ends with the export."""
    make_items(conn, rows=600)
    walkers: list[threading.Thread] = []
    walk = Exporter._walk_bound

    def recorded(self: Exporter, after: str, limit: int) -> str | None:
        walkers.append(threading.current_thread())  # objects: idents are reused
        return walk(self, after, limit)

    monkeypatch.setattr(Exporter, "_walk_bound", recorded)
    job_id = submit_export(conn, "1", {}, SMALL)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(conn, REFERENCE)
    assert len(walkers) >= 200 // 7 - 2
    assert len({id(t) for t in walkers}) == 1, len({id(t) for t in walkers})
    assert not walkers[0].is_alive()
