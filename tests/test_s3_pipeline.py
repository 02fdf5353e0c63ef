"""The S3 export pipeline: the reader fills the next part while the uploader
thread writes the last one to moto's S3 server. Each part is sent without a copy
and hashed once, by botocore's SigV4 signature, whose hash is the part's digest in
the checkpoint (neither the exporter nor botocore hashes it again); the read-back
checks the parts without hashing the whole object again; a digest given with a
part that is not its bytes' hash stops the part before it is sent (moto, unlike
S3, does not check); a failure of the background upload surfaces in the attempt
and the next one continues the same upload; a kill between parts resumes
byte-identical; the reader never runs more than two parts ahead of storage
(memory stays flat)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import export as export_module
from pgjobs.poller import s3client, storage, upload_s3
from tests.support import (
    BIG_TENANT_1,
    LONG_LEASE,
    NATIVE_S3,
    checkpoint_parts,
    job,
    new_bucket,
    object_bytes,
    open_uploads,
    plain_copy,
    resume_after_kill,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)
from tests.support.s3_faults import FaultProxy
from tests.support.storage import clean_aws_env

Conn = psycopg.Connection[Any]




class _Counted:
    """A SHA-256 object that adds the bytes it is fed to ``counter[0]``."""

    name, digest_size, block_size = "sha256", 32, 64

    def __init__(self, real: Any, counter: list[int]):
        self._real = real
        self._counter = counter

    def update(self, data: Any) -> None:
        self._counter[0] += memoryview(data).nbytes
        self._real.update(data)

    def digest(self) -> bytes:
        return bytes(self._real.digest())

    def hexdigest(self) -> str:
        return str(self._real.hexdigest())

    def copy(self) -> _Counted:
        return _Counted(self._real.copy(), self._counter)


class _Sent:
    """What botocore puts on the wire for every S3 request of the client (through
    its own ``before-send`` event): the operation, the payload hash it signed, the
    real SHA-256 of the body and the body object itself; how many part-sized bodies
    botocore's signer hashed; and how many bytes any SHA-256 was fed (hashlib's and
    botocore's), wherever in the process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import botocore.auth

        self.requests: list[tuple[str, str, str, Any]] = []
        self.signer_hashed: list[Any] = []
        self.hashed = [0]
        real = self._real = hashlib.sha256

        def counting(data: Any = b"", **kwargs: Any) -> _Counted:
            hashed = _Counted(real(**kwargs), self.hashed)
            if memoryview(data).nbytes:
                hashed.update(data)
            return hashed

        def signer(data: Any = b"", **kwargs: Any) -> _Counted:
            if isinstance(data, bytearray):  # a part's body (its own inputs are bytes)
                self.signer_hashed.append(data)
            return counting(data, **kwargs)

        monkeypatch.setattr(hashlib, "sha256", counting)
        monkeypatch.setattr(botocore.auth, "sha256", signer)
        s3client.botocore_client().meta.events.register("before-send.s3", self._seen)

    def _seen(self, request: Any, event_name: str, **_: Any) -> None:
        body = request.body
        if hasattr(body, "read"):  # botocore's BytesIO around a bytes body
            position = body.tell()
            data = body.read()
            body.seek(position)
        else:
            data = body or b""
        signed = request.headers.get("X-Amz-Content-SHA256") or b""
        self.requests.append((event_name.rsplit(".", 1)[-1],
                              signed.decode() if isinstance(signed, bytes) else str(signed),
                              self._real(data).hexdigest(), body))

    def parts(self) -> list[tuple[str, str, str, Any]]:
        return [r for r in self.requests if r[0] == "UploadPart"]

    def close(self) -> None:
        s3client.botocore_client().meta.events.unregister("before-send.s3", self._seen)


@pytest.fixture
def sent(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Sent]:
    s3client.forget_clients()
    seen = _Sent(monkeypatch)
    yield seen
    seen.close()
    s3client.forget_clients()


class _PartOutage(FaultProxy):
    """Storage goes down at the first UploadPart numbered ``part`` (and stays down
    until the test brings it back)."""

    def __init__(self, upstream: str, part: int):
        super().__init__(upstream)
        self.part = part

    def handle(self, req: Any) -> None:
        if f"partNumber={self.part}&" in req.path.split("?", 1)[-1] + "&":
            self.faults.down = True
        super().handle(req)


@pytest.fixture
def outage(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[_PartOutage]:
    clean_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    faulty = _PartOutage(s3_endpoint, part=3).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
    monkeypatch.setenv("PGJOBS_S3_TIMEOUT", "2")
    monkeypatch.setenv("PGJOBS_S3_ATTEMPTS", "1")
    storage.forget_stores()
    yield faulty
    faulty.stop()
    storage.forget_stores()



def _client(uri: str) -> tuple[storage.Location, s3client.Client]:
    loc = storage.parse(uri)
    return loc, s3client.Client(loc.base.split("://", 1)[1])


# --- each part hashed once, signed with that hash, sent without a copy -------------


@pytest.mark.parametrize("gzip", [False, True])
def test_each_part_is_sent_as_cut_and_hashed_once_by_its_signature(
        conn: Conn, dsn: str, big: None, bucket: str, sent: _Sent,
        monkeypatch: pytest.MonkeyPatch, gzip: bool) -> None:
    cut: list[Any] = []
    real_write = upload_s3.NativeS3Upload.write_part

    def write(self: upload_s3.NativeS3Upload, data: bytes | bytearray) -> str | None:
        cut.append(data)
        return real_write(self, data)

    monkeypatch.setattr(upload_s3.NativeS3Upload, "write_part", write)
    job_id = submit_export(conn, "1", {}, {**NATIVE_S3, "gzip": gzip}, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    digests = job(conn, job_id)["checkpoint"]["digests"]
    parts = sent.parts()
    assert len(parts) == len(cut) == (1 if gzip else 4)  # the rows compress into one part
    # Each signed payload hash is the SHA-256 of the body sent, and it is the digest
    # the checkpoint holds for that part.
    assert [signed for _, signed, _, _ in parts] == [real for _, _, real, _ in parts]
    assert [signed for _, signed, _, _ in parts] == [d[1] for d in digests]
    # Sent as cut: the very buffer the reader filled, no copy on the way.
    assert all(body is data for (_, _, _, body), data in zip(parts, cut, strict=True))
    # Hashed by the signature, once each (and, see the next test, by nothing else).
    assert len(sent.signer_hashed) == len(cut)
    assert all(hashed is data for hashed, data in zip(sent.signer_hashed, cut, strict=True))
    data = object_bytes(outcome.result or {})
    if gzip:
        import gzip as gz

        data = gz.decompress(data)
    assert data == plain_copy(conn, BIG_TENANT_1)


def test_an_export_hashes_its_bytes_twice_with_sha256_in_all(
        conn: Conn, dsn: str, big: None, bucket: str, sent: _Sent) -> None:
    """Each part's digest (the signature's hash) and the whole object's SHA-256
    (as the parts are written): two passes of SHA-256 over the object's bytes,
    no more. The read-back checks each stored part against its keyed seal, not
    a third SHA-256 pass (tests/test_export_sealed_read_back.py holds it to
    every byte); a second hash of each part, or hashing the whole again on
    read-back, makes three or more."""
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    size = int((outcome.result or {})["bytes"])
    requests = len(sent.requests)
    # Besides the object's bytes: the signatures' own small inputs (canonical
    # requests, HMAC keys), far less than one more pass.
    assert 2 * size <= sent.hashed[0] < 2 * size + requests * 4096, (sent.hashed, size)


def test_bytes_and_bytearray_parts_carry_the_hash_of_their_bytes(bucket: str,
                                                                 sent: _Sent) -> None:
    loc, client = _client(bucket + "direct.bin")
    upload_id = client.create(loc.path)
    first = bytearray(b"x" * s3client.MIN_PART)
    last = b"tail bytes"  # bytes: botocore sends a BytesIO of it
    etags = []
    for number, data in enumerate([first, last], start=1):
        etag, sha256 = client.upload_part(loc.path, upload_id, number, data)
        assert sha256 == hashlib.sha256(data).hexdigest()
        etags.append(etag)
    client.complete(loc.path, upload_id, etags)
    assert [signed for _, signed, _, _ in sent.parts()] == \
        [real for _, _, real, _ in sent.parts()]
    assert sent.parts()[0][3] is first
    assert s3client._part.data is None  # nothing left over for the thread's next call
    assert storage.read(loc.uri) == bytes(first) + last


def test_a_digest_that_is_not_the_parts_hash_stops_the_part_before_it_is_sent(
        bucket: str, sent: _Sent) -> None:
    """moto keeps whatever it is sent (S3 would refuse a body whose hash is not the
    signed one): the client itself refuses, before a byte is sent, and for good."""
    loc, client = _client(bucket + "wrong.bin")
    upload_id = client.create(loc.path)
    data = bytearray(b"z" * s3client.MIN_PART)
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(s3client.S3Error) as caught:
        client.upload_part(loc.path, upload_id, 1, data, wrong)
    assert not caught.value.retryable and wrong in str(caught.value)
    assert client.list_parts(loc.path, upload_id) == {}  # not stored
    assert sent.parts() == []  # not sent either
    etag, sha256 = client.upload_part(loc.path, upload_id, 1, data,
                                      hashlib.sha256(data).hexdigest())
    assert client.list_parts(loc.path, upload_id) == {1: etag}
    assert sha256 == sent.parts()[0][2]
    client.abort(loc.path, upload_id)


def test_every_request_of_a_join_is_signed_with_its_bodys_hash(
        conn: Conn, dsn: str, big: None, bucket: str, sent: _Sent) -> None:
    """A parallel export's join on S3: UploadPartCopy (no body) and UploadPart of
    what is too small to copy, each signed with the hash of the body it sends."""
    job_id = submit_export(conn, "1", {}, {**NATIVE_S3, "parallel": 3}, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    operations = {operation for operation, _, _, _ in sent.requests}
    assert {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"} <= operations
    assert [signed for _, signed, _, _ in sent.requests] == \
        [real for _, _, real, _ in sent.requests]
    assert object_bytes(outcome.result or {}) == plain_copy(conn, BIG_TENANT_1)


def test_the_read_back_still_refuses_an_object_that_is_not_what_was_streamed(
        conn: Conn, dsn: str, big: None, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole object is not hashed again on read-back, the parts are checked:
    the same number of bytes, one of them changed, never completes."""
    real_finish = upload_s3.NativeS3Upload.finish

    def finish_then_damage(self: upload_s3.NativeS3Upload) -> tuple[int, str]:
        done = real_finish(self)
        data = bytearray(storage.read(self.location.uri))
        data[len(data) // 2] ^= 1
        storage.write(self.location.uri, bytes(data))
        return done

    monkeypatch.setattr(upload_s3.NativeS3Upload, "finish", finish_then_damage)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "retrying", outcome
    assert "verification failed" in (outcome.error or "")
    assert "differs from what was streamed" in (outcome.error or "")
    row = job(conn, job_id)
    assert row["result"] is None and row["checkpoint"]["parts"] == 0  # rewritten next
    assert not storage.exists(row["checkpoint"]["uri"])


# --- a failure in the background upload -----------------------------------------


def test_background_upload_failure_surfaces_and_the_retry_continues_the_upload(
        conn: Conn, dsn: str, big: None, outage: _PartOutage, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    # Part 3 fails in the uploader thread while the reader has moved on; storage
    # stays down past the retry ceiling: the attempt ends, retryably.
    outcome = run_export(dsn, job_id, bucket, storage_retry=3.0)
    assert outcome.status == "retrying", outcome
    row = job(conn, job_id)
    assert row["status"] == "queued"
    ck = row["checkpoint"]
    # Checkpointed only what storage acknowledged: parts 1 and 2.
    assert ck["parts"] == 2 and len(ck["upload"]["etags"]) == 2 and len(ck["digests"]) == 2
    outage.faults.down = False
    outage.part = 0
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))  # backoff
    again = run_export(dsn, job_id, bucket)
    assert again.status == "succeeded", again
    row = job(conn, job_id)
    assert row["checkpoint"]["upload"]["upload_id"] == ck["upload"]["upload_id"]
    assert row["checkpoint"]["upload"]["etags"][:2] == ck["upload"]["etags"]
    data = object_bytes(row["result"])
    assert data == plain_copy(conn, BIG_TENANT_1)
    assert row["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert open_uploads(bucket) == []


def test_an_error_of_the_uploader_thread_ends_the_attempt_with_its_message(
        conn: Conn, dsn: str, big: None, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = upload_s3.NativeS3Upload.write_part

    def refuse_third(self: upload_s3.NativeS3Upload, data: bytes | bytearray) -> str | None:
        if len(self._etags) == 2:
            raise storage.StorageError("part refused by the test", retryable=False)
        return real(self, data)

    monkeypatch.setattr(upload_s3.NativeS3Upload, "write_part", refuse_third)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "failed", outcome
    assert "part refused by the test" in (outcome.error or "")
    assert job(conn, job_id)["attempts"] == 1
    # A permanent failure leaves no open upload behind.
    assert storage.pending_aborts(wait=30) == 0
    assert open_uploads(bucket) == []


# --- a kill between parts ---------------------------------------------------------


def test_kill_between_parts_resumes_byte_identical(
        conn: Conn, dsn: str, big: None, bucket: str) -> None:
    options = NATIVE_S3  # (gzip: these rows compress into a single part)
    reference_job = submit_export(conn, "1", {}, options, target="big")
    reference = run_export(dsn, reference_job, bucket)
    assert reference.status == "succeeded", reference
    job_id = submit_export(conn, "1", {}, options, target="big")
    first = start_worker(dsn, bucket, "--once", "--lease", LONG_LEASE, delays="part=1")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, timeout=60, what="two parts")
    except BaseException:
        first.kill()
        first.communicate(timeout=10)
        raise
    # Byte-identical to an export that was never interrupted.
    resume_after_kill(conn, dsn, bucket, job_id, first, reference)


# --- memory: parts held at once ----------------------------------------------------


def test_reader_never_runs_more_than_two_parts_ahead_of_storage(
        conn: Conn, dsn: str, big: None, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With slow storage the reader blocks: at most one part being written and
    one queued besides the one filling (three parts in memory, whatever the
    export's size)."""
    lock = threading.Lock()
    counts = {"cut": 0, "written": 0, "ahead": 0}
    real_put = export_module._Uploader.put
    real_write = upload_s3.NativeS3Upload.write_part

    def put(self: Any, raw: bytearray, mark: dict[str, Any]) -> None:
        real_put(self, raw, mark)
        with lock:
            counts["cut"] += 1
            counts["ahead"] = max(counts["ahead"], counts["cut"] - counts["written"])

    def slow_write(self: upload_s3.NativeS3Upload, data: bytes | bytearray) -> str | None:
        # Storage far slower than the reader: the first part waits until the
        # reader has cut every part or has been held back for 5 s.
        deadline = time.monotonic() + 5
        while counts["written"] == 0 and counts["cut"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        sha256 = real_write(self, data)
        with lock:
            counts["written"] += 1
        return sha256

    monkeypatch.setattr(export_module._Uploader, "put", put)
    monkeypatch.setattr(upload_s3.NativeS3Upload, "write_part", slow_write)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert counts["cut"] == counts["written"] == 4
    assert counts["ahead"] <= 2, counts
    assert object_bytes(outcome.result or {}) == plain_copy(conn, BIG_TENANT_1)
