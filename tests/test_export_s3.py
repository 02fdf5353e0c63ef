"""Exports to S3 through one native multipart upload (parts of 5 MiB and more,
through botocore), continued across processes, on moto's S3 server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage
from pgjobs.poller.worker import Worker
from tests.support import (
    BIG_TENANT_1,
    LONG_LEASE,
    NATIVE_S3,
    checkpoint_parts,
    expire_leases,
    job,
    leftovers,
    object_bytes,
    open_uploads,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]



def test_native_multipart_export_equals_plain_copy(
        conn: Conn, dsn: str, big: None, bucket: str) -> None:
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["parts"] == 4
    assert object_bytes(outcome.result) == plain_copy(conn, BIG_TENANT_1)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload["upload_id"] and len(upload["etags"]) == 4  # the native path
    assert open_uploads(bucket) == []
    assert leftovers(bucket, {outcome.result["uri"]}) == []


def test_native_multipart_resumes_the_same_upload_after_sigkill(
        conn: Conn, dsn: str, big: None, bucket: str) -> None:
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    first = start_worker(dsn, bucket, "--once", "--lease", LONG_LEASE, delays="part=1")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, what="two parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = job(conn, job_id)["checkpoint"]["upload"]
    assert len(open_uploads(bucket)) == 1
    expire_leases(conn, job_id)
    second = start_worker(dsn, bucket, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)
    after = row["checkpoint"]["upload"]
    assert after["upload_id"] == before["upload_id"]
    assert after["etags"][:len(before["etags"])] == before["etags"]
    assert open_uploads(bucket) == []


def test_sweep_aborts_multipart_uploads_of_ended_jobs(
        conn: Conn, dsn: str, bucket: str) -> None:
    conn.execute("CREATE TABLE big (id int NOT NULL, tenant int, created_at timestamptz NOT NULL)")
    conn.execute("CREATE INDEX ON big (tenant, id)")
    conn.execute("SELECT pgjobs.register_target('big', 'id', 'tenant', 'created_at')")
    ended = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    running = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                 "WHERE id = %s", (ended,))
    loc = storage.parse(bucket)
    client = s3.Client(loc.base.split("://", 1)[1])
    for row in (ended, running):
        client.create(f"{loc.path}big/1/{row}.csv")
    worker = Worker(dsn, bucket, once=True, stale_after=timedelta(0))
    worker._connect()
    assert worker.housekeeping()["swept"] == 1
    worker._close()
    assert [key for key, _, _ in open_uploads(bucket)] == [f"{loc.path}big/1/{running}.csv"]


def test_a_completed_upload_is_not_aborted_after_the_export(
        conn: Conn, dsn: str, big: None, bucket: str, monkeypatch: Any) -> None:
    """CompleteMultipartUpload ends the upload: the tail of a successful export
    sends no AbortMultipartUpload after it (one more round trip for nothing)."""
    aborted: list[str] = []
    abort = s3.Client.abort

    def record(self: s3.Client, key: str, upload_id: str) -> None:
        aborted.append(upload_id)
        abort(self, key, upload_id)

    monkeypatch.setattr(s3.Client, "abort", record)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert aborted == []
    assert open_uploads(bucket) == []
