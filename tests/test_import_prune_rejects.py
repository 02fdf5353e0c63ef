"""An import that rejected records writes them to a rejects object
(result.rejects_uri: every rejected line's text, the tenant's data) under the
worker's storage, whether it succeeded or failed. pgjobs.prune deleted the job
and its pgjobs.import_rejects rows, but queued only exports' objects: the
rejects object stayed in storage for good, named by no job. A pruned import's
rejects object is queued like an export's objects, and a worker's
housekeeping removes it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

SOURCES = {
    # max_rejects, source, status
    "csv-succeeded": (5, "csv", b"name,age\na,1\nbad,x\nb,2\n", "succeeded"),
    "csv-failed": (1, "csv", b"name,age\nbad,x\nworse,y\nb,2\n", "failed"),
    "jsonl-succeeded": (5, "jsonl", b'{"name": "a", "age": 1}\n{"name": "n", "age": NaN}\n',
                        "succeeded"),
}


@pytest.mark.parametrize("case", sorted(SOURCES))
def test_a_pruned_imports_rejects_object_is_deleted(
        conn: Conn, dsn: str, tmp_path: Path, case: str) -> None:
    max_rejects, fmt, data, status = SOURCES[case]
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    path = src / f"in.{fmt}"
    path.write_bytes(data)
    store = f"file://{src}/store"
    job_id = submit_import(conn, f"file://{path}",
                           options={"format": fmt, "max_rejects": max_rejects})
    Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    row = job(conn, job_id)
    assert row["status"] == status, row["error"]
    rejects = row["result"]["rejects_uri"]
    assert storage.exists(rejects)
    other = submit_import(conn, f"file://{path}",
                          options={"format": fmt, "max_rejects": max_rejects}, scope="2")
    Importer(dsn, other, claim_import(dsn, other), store).run()
    kept = job(conn, other)["result"]["rejects_uri"]
    assert storage.exists(kept) and kept != rejects
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' WHERE id = %s",
                 (job_id,))
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None
    assert (summary[0]["deleted"], summary[0]["objects_queued"]) == (1, 1)
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    assert not storage.exists(rejects)
    assert storage.exists(kept)  # the other job's, not pruned
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)
