"""Issue 13, S3 exports: the multipart upload is created while the first chunk is
read from PostgreSQL, not before (one CreateMultipartUpload round trip off
every export's start).

The create runs in a thread of its own; the upload id is awaited where it is
first needed (the first part, the checkpoint, the complete, an abort). Every
ending still leaves no upload open and no object but the job's own: the
conditional complete and the read-back are unchanged
(tests/test_export_foreign_*.py, tests/test_s3_*.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.poller import export as export_module
from pgjobs.poller import s3client
from tests.support import (
    BIG_TENANT_1,
    NATIVE_S3,
    job,
    object_bytes,
    open_uploads,
    plain_copy,
    run_export,
    scalar,
    submit_export,
)

Conn = psycopg.Connection[Any]


class _Events:
    """The order of the create and the first chunk: the create is held until the
    first chunk's statement has run (or 5 s), so a create sent before any chunk
    is read is seen answering before it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: s3client.S3Error | None = None):
        self.seen: list[str] = []
        self.chunk = threading.Event()
        self.lock = threading.Lock()
        create, begin = s3client.Client.create, db.begin_chunk

        def creating(client: Any, key: str) -> str:
            self.note("create sent")
            self.chunk.wait(5)
            self.note("create answered")
            if fail is not None:
                raise fail
            return create(client, key)

        def beginning(conn: Any, *args: Any, **kwargs: Any) -> Any:
            row = begin(conn, *args, **kwargs)
            self.note("chunk read")
            self.chunk.set()
            return row

        monkeypatch.setattr(s3client.Client, "create", creating)
        monkeypatch.setattr(db, "begin_chunk", beginning)

    def note(self, what: str) -> None:
        with self.lock:
            self.seen.append(what)


def test_the_upload_is_created_while_the_first_chunk_is_read(
        conn: Conn, dsn: str, big: None, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """...and it is checkpointed before its first part is written (a worker
    killed after that leaves an upload the job records: a cancel aborts it at
    once, tests/test_export_s3.py)."""
    events = _Events(monkeypatch)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    recorded: list[Any] = []
    upload_part = s3client.Client.upload_part

    def uploading(client: Any, key: str, upload_id: str, *args: Any, **kwargs: Any) -> Any:
        if not recorded:
            with psycopg.connect(dsn, autocommit=True) as own:
                ck = job(own, job_id)["checkpoint"] or {}
            recorded.append(((ck.get("upload") or {}).get("upload_id"), upload_id))
        return upload_part(client, key, upload_id, *args, **kwargs)

    monkeypatch.setattr(s3client.Client, "upload_part", uploading)
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert events.seen[:3] == ["create sent", "chunk read", "create answered"], events.seen
    [(in_checkpoint, sent_with)] = recorded
    assert in_checkpoint == sent_with, recorded
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)
    assert row["checkpoint"]["upload"]["upload_id"]
    assert open_uploads(bucket) == []


class _Broken(Exception):
    pass


@pytest.mark.parametrize("ending", ["create-refused", "create-down", "read-fails", "stopped"])
def test_an_attempt_that_ends_while_the_upload_is_created_leaves_none_open(
        conn: Conn, dsn: str, big: None, bucket: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, ending: str) -> None:
    """Whichever way the attempt ends while the create is in flight, or because
    of it: the create's error is the attempt's (permanent: failed; transient:
    retried, then the attempt ends retryably), no upload is left open that the
    checkpoint does not record (a later owner continues that one; one it does
    not record nobody would ever abort while the job lives), and nothing is
    written at the key."""
    fail = {"create-refused": s3client.S3Error(403, "AccessDenied", "Access Denied"),
            "create-down": s3client.S3Error(503, "ServiceUnavailable", "down")}.get(ending)
    events = _Events(monkeypatch, fail)
    if ending in ("read-fails", "stopped"):
        read = export_module.Exporter._read_chunk

        def reading(self: Any, *args: Any, **kwargs: Any) -> Any:
            count = read(self, *args, **kwargs)
            if ending == "stopped":
                self.stop.set()
                return count
            raise _Broken("the first chunk failed")

        monkeypatch.setattr(export_module.Exporter, "_read_chunk", reading)
    job_id = submit_export(conn, "1", {}, {**NATIVE_S3, "max_attempts": 1}, target="big")
    outcome = run_export(dsn, job_id, bucket, storage_retry=1.0)
    assert "create sent" in events.seen
    want = {"create-refused": "failed", "create-down": "retrying", "read-fails": "failed",
            "stopped": "released"}[ending]
    if ending == "create-down" and outcome.status == "failed":
        want = "failed"  # max_attempts 1: no attempt is left to retry
    assert outcome.status == want, outcome
    if fail is not None:
        assert "cannot write" in str(outcome.error) and fail.code in str(outcome.error), outcome
    row = job(conn, job_id)
    recorded = ((row["checkpoint"] or {}).get("upload") or {}).get("upload_id")
    assert {upload[1] for upload in open_uploads(bucket)} <= {recorded}, (open_uploads(bucket),
                                                                        row["checkpoint"])
    assert not (row["result"] or {}).get("uri"), row


@pytest.mark.parametrize("then", ["left", "resumed"])
def test_a_pause_while_the_create_is_in_flight_leaves_no_upload_open(
        conn: Any, dsn: str, big: None, bucket: str, monkeypatch: Any, then: str) -> None:
    """Found by the review of h46: a pause requested while the create is in
    flight parks the job at the reader's next heartbeat (a keepalive, no
    checkpoint), with the checkpoint of before the upload; the recording's
    heartbeat is then refused, and the upload, no longer fresh, was left
    open while the job lived (a resumed job made a new one). An upload whose
    recording was refused is aborted as the attempt ends."""
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    create = s3client.Client.create
    calls = {"n": 0}

    def creating(client: Any, key: str) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            with psycopg.connect(dsn, autocommit=True) as own:
                own.execute("SELECT pgjobs.pause(%s)", (job_id,))
                for _ in range(400):  # until the reader's heartbeat parked it
                    if scalar(own, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                              (job_id,)) == "paused":
                        break
                    time.sleep(0.02)
        return create(client, key)

    monkeypatch.setattr(s3client.Client, "create", creating)
    run_export(dsn, job_id, bucket, lease="3 seconds")
    assert job(conn, job_id)["status"] == "paused"
    recorded = ((job(conn, job_id)["checkpoint"] or {}).get("upload") or {}).get("upload_id")
    assert {u[1] for u in open_uploads(bucket)} <= {recorded}
    if then == "resumed":
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
        assert run_export(dsn, job_id, bucket).status == "succeeded"
        assert open_uploads(bucket) == []
