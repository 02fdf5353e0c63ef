"""A data connection (an export's reader, an import's writer) is set up in one
round trip: its fixed session settings (docs/exports.md) and its lock timeout
go as one statement, on every connect and reconnect. Each round trip before
the first chunk is waited for in full (nothing overlaps it yet): the setup
used to send the settings, then the lock timeout, as two.

The round trips are counted in libpq's own trace of the connection (each
ends with a Sync of the extended protocol or is one simple Query)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from pgjobs import db
from tests.support import job, make_items, object_bytes, plain_copy, run_export, submit_export

Conn = psycopg.Connection[Any]
ROUND_TRIP = re.compile(r"^F\t\d+\t(Sync|Query)\b", re.MULTILINE)
SETTINGS = {"lock_timeout": db.JOB_ROW_LOCK_TIMEOUT, "TimeZone": "UTC",
            "search_path": "pg_catalog, pg_temp", "DateStyle": "ISO, YMD",
            "extra_float_digits": "3", "xmloption": "content"}


OPENED: list[int] = []  # the trace files' descriptors, closed after each test


@pytest.fixture
def traces(tmp_path: Path) -> Iterator[list[Path]]:
    """Where traced connections write (one file each, in the order opened)."""
    paths: list[Path] = [tmp_path]  # [0]: the folder; the traces follow
    yield paths
    while OPENED:
        os.close(OPENED.pop())


def tracing(connect: Callable[..., Any], traces: list[Path]) -> Callable[..., Any]:
    """``connect`` (psycopg.connect), each connection it opens traced by libpq
    to a file of its own, appended to ``traces`` (after its folder, [0])."""
    def traced(*args: Any, **kwargs: Any) -> Any:
        conn = connect(*args, **kwargs)
        path = traces[0] / f"trace-{len(traces)}"
        traces.append(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        OPENED.append(fd)
        conn.pgconn.trace(fd)
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        return conn
    return traced


@pytest.mark.parametrize("connect", [db.connect_reader, db.connect_writer],
                         ids=["reader", "writer"])
def test_a_data_connection_is_set_up_in_one_round_trip(
        empty_dsn: str, traces: list[Path], monkeypatch: pytest.MonkeyPatch,
        connect: Callable[[str], Conn]) -> None:
    monkeypatch.setattr(psycopg, "connect", tracing(psycopg.connect, traces))
    conn = connect(empty_dsn)
    try:
        assert len(traces) == 2
        setup = traces[1].read_text()
        assert len(ROUND_TRIP.findall(setup)) == 1, setup
        # Every setting of the setup holds on the connection.
        for name, value in SETTINGS.items():
            row = conn.execute("SELECT pg_catalog.current_setting(%s) AS v", (name,)).fetchone()
            assert row is not None and row["v"] == value, (name, row)
    finally:
        conn.close()


def test_an_exports_data_connection_sends_one_round_trip_before_its_first_chunk(
        conn: Conn, dsn: str, local_dir: str, traces: list[Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's own data connection, however it is opened (standby.Reads,
    a reconnect): one round trip, then the first chunk's BEGIN."""
    make_items(conn, rows=50)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 7, "part_size": 1024})
    connect = db.connect_reader
    real = psycopg.connect

    def reader(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as m:
            m.setattr(psycopg, "connect", tracing(real, traces))
            return connect(*args, **kwargs)

    monkeypatch.setattr(db, "connect_reader", reader)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert object_bytes(job(conn, job_id)["result"]) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    assert len(traces) == 2
    text = traces[1].read_text()
    # Up to the message that carries the first chunk's BEGIN.
    opening = text[:text.rfind("\nF\t", 0, text.index("BEGIN ISOLATION LEVEL REPEATABLE READ"))]
    assert len(ROUND_TRIP.findall(opening)) == 1, opening

