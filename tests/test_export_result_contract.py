"""An export's result holds what API.md promises, whatever the format:
`uri`, `uris` (every object written, one unless the format needs several),
`rows`, `bytes`, `sha256`. The single-object path left `uris` out while the
parallel and parquet paths wrote it."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest

from tests.support import make_items, run_export, submit_export

Conn = psycopg.Connection[Any]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_export_result_lists_its_objects_in_uris(
        conn: Conn, dsn: str, local_dir: str, fmt: str, gz: bool) -> None:
    make_items(conn)
    job_id = submit_export(conn, "1", {}, {"format": fmt, "gzip": gz})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    result = outcome.result
    assert result is not None
    assert {"uri", "uris", "rows", "bytes", "sha256"} <= set(result)
    assert result["uris"] == [result["uri"]]
    path = result["uri"].removeprefix("file://")
    assert os.path.getsize(path) == result["bytes"]
    stored = conn.execute("SELECT result FROM pgjobs.jobs WHERE id = %s", [job_id]).fetchone()
    assert stored is not None and stored[0]["uris"] == [result["uri"]]
