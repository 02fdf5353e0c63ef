"""Exports to S3 through one native multipart upload (parts of 5 MiB and more,
through botocore), continued across processes, on moto's S3 server."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.poller import s3client as s3
from pgjobs.poller import storage
from pgjobs.poller.export import Exporter
from pgjobs.poller.worker import Worker
from tests.support import (
    BIG_TENANT_1,
    LONG_LEASE,
    NATIVE_S3,
    checkpoint_parts,
    expire_lease,
    expire_leases,
    job,
    leftovers,
    object_bytes,
    open_uploads,
    plain_copy,
    run_export,
    scalar,
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


# --- leftovers of an export that ended without its worker (the storage queue) -----


def _one_pass(dsn: str, storage_uri: str) -> dict[str, int]:
    """One housekeeping pass of a worker whose stale sweep takes nothing that just
    ended (--stale-after an hour): what goes, the storage deletion queue removed."""
    worker = Worker(dsn, storage_uri, once=True, stale_after=timedelta(hours=1))
    worker._connect()
    try:
        return worker.housekeeping()
    finally:
        worker._close()


def _handed_back(conn: Conn, dsn: str, job_id: int, bucket: str) -> None:
    """Claim the export and stop it once a part is sent: its multipart upload
    stays open, checkpointed; the job is queued."""
    [(_, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'w')",
                                 (job_id,)).fetchall()
    stop = threading.Event()

    def progress(_rows: int, sent: int) -> None:
        if sent >= s3.MIN_PART:
            stop.set()

    outcome = Exporter(dsn, job_id, worker, bucket, stop=stop, on_progress=progress).run()
    assert outcome.status == "released", outcome
    assert job(conn, job_id)["status"] == "queued"


def _killed(conn: Conn, dsn: str, job_id: int, bucket: str) -> None:
    """A worker process runs the export and is SIGKILLed once a part is sent and
    checkpointed: its multipart uploads stay open; the lease rescue queues the
    job again."""
    sent = ("SELECT count(*) FROM (SELECT checkpoint FROM pgjobs.jobs WHERE id = %(id)s "
            "UNION ALL SELECT checkpoint FROM pgjobs.export_parts WHERE job_id = %(id)s) c "
            "WHERE jsonb_array_length(coalesce(c.checkpoint #> '{upload,etags}', '[]')) > 0")
    worker = start_worker(dsn, bucket, "--once", "--concurrency", "3", "--lease", LONG_LEASE,
                          delays="part=1")
    try:
        wait_for(lambda: scalar(conn, sent, {"id": job_id}) > 0, what="a part sent")
    finally:
        worker.kill()
        worker.communicate(timeout=10)
    expire_leases(conn, job_id)
    assert scalar(conn, "SELECT pgjobs.prune()")["rescued"]["retried"] == 1
    assert job(conn, job_id)["status"] == "queued"


@pytest.mark.parametrize(("parallel", "ended", "how"), [
    (1, "released", "cancel"), (1, "released", "pause then cancel"),
    (1, "killed", "cancel"), (2, "killed", "cancel"), (2, "killed", "pause then cancel")])
def test_a_canceled_handed_back_export_has_its_multipart_upload_aborted_at_once(
        conn: Conn, dsn: str, big: None, bucket: str, parallel: int, ended: str,
        how: str) -> None:
    """Handed back (released, or its worker killed) with its multipart upload
    open (each part's, for a parallel export), then canceled while queued or
    paused: the next worker pass aborts every one, with no sweep band."""
    job_id = submit_export(conn, "1", {}, {**NATIVE_S3, "parallel": parallel}, target="big")
    (_handed_back if ended == "released" else _killed)(conn, dsn, job_id, bucket)
    assert open_uploads(bucket)
    if how == "pause then cancel":
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    queued = [r[0] for r in conn.execute(
        "SELECT upload ->> 'upload_id' FROM pgjobs.storage_deletions WHERE job_id = %s",
        (job_id,))]
    assert sorted(queued) == sorted(u for _, u, _ in open_uploads(bucket))
    assert _one_pass(dsn, bucket) == {"deleted": len(queued), "swept": 0}
    assert open_uploads(bucket) == []
    assert [p for p in leftovers(bucket, set()) if ".part0" not in p] == []


def test_a_cancel_racing_the_final_complete_never_loses_the_object(
        conn: Conn, dsn: str, big: None, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker has made the object visible (CompleteMultipartUpload) when its
    lease lapses, the job is handed back, canceled while queued and its upload's
    abort runs before the worker's pgjobs.complete. The complete is fenced off
    (the job stays canceled) and the abort finds the upload completed. The
    object, the canceled export's, is removed with it (it reads back as the
    checkpointed digests); pgjobs.retry writes it again, the same bytes."""
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    complete = db.complete
    raced: list[dict[str, int]] = []

    def racing(c: Any, *args: Any) -> bool:
        expire_lease(conn, job_id)
        assert scalar(conn, "SELECT pgjobs.prune()")["rescued"]["retried"] == 1
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
        raced.append(_one_pass(dsn, bucket))
        return complete(c, *args)

    monkeypatch.setattr(db, "complete", racing)
    outcome = run_export(dsn, job_id, bucket)
    monkeypatch.setattr(db, "complete", complete)
    assert outcome.status == "lost", outcome
    # Its upload's abort, and its object: a canceled export leaves nothing
    # (tests/test_export_killed_leaves_nothing.py), and the row that removes it
    # comes before the fenced complete, which never succeeds the job after it.
    assert raced == [{"deleted": 2, "swept": 0}]
    row = job(conn, job_id)
    assert row["status"] == "canceled" and row["result"] is None
    uri = row["checkpoint"]["uri"]
    assert not storage.exists(uri)
    assert open_uploads(bucket) == []
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    again = run_export(dsn, job_id, bucket)
    assert again.status == "succeeded", again
    assert again.result is not None and again.result["uri"] == uri
    assert object_bytes(again.result) == plain_copy(conn, BIG_TENANT_1)
    # Pruned, a succeeded export queues its object, and no leftover: its upload
    # became the object.
    summary = scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert (summary["objects_queued"], summary["leftovers_queued"]) == (1, 0), summary


def test_a_cancel_racing_the_final_complete_before_it_leaves_no_upload(
        conn: Conn, dsn: str, big: None, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race, the abort landing before CompleteMultipartUpload: the
    worker's complete finds no upload, it is fenced off when it would start
    over, and nothing is left: no object, no open upload."""
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    complete = s3.Client.complete

    def racing(self: s3.Client, *args: Any) -> None:
        if scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "running":
            expire_lease(conn, job_id)
            scalar(conn, "SELECT pgjobs.prune()")
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
            assert _one_pass(dsn, bucket)["deleted"] == 1
        complete(self, *args)

    monkeypatch.setattr(s3.Client, "complete", racing)
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status in ("lost", "canceled"), outcome
    row = job(conn, job_id)
    assert row["status"] == "canceled"
    assert not storage.exists(row["checkpoint"]["uri"])
    assert storage.pending_aborts(wait=10) == 0
    assert open_uploads(bucket) == []
