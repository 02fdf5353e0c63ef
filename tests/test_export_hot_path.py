"""What an export sends per chunk on its data connection: one statement (the
chunk's COPY text, its cursor and its read position together) then the COPY,
whether it reads the primary or a standby: no second round trip per chunk
(the read position used to be its own query). The position still lands in the
checkpoint, never going backwards."""

from __future__ import annotations

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
