"""A resumed export reads its finished object back once. A native S3 upload (and
a GCS compose or Azure block list) resumed in another attempt lost its running
SHA-256, so ``finish`` reads the object back to hash it, checking every part
against the checkpointed digests in the same pass; the exporter then does not
read it a second time to check the same parts. The one read refuses what the two
refused: a changed byte in any part, a missing or an extra tail, an object that
is gone. An uninterrupted export keeps its single read-back, which hashes
nothing twice."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage, upload_file
from pgjobs.poller.export import Exporter
from pgjobs.poller.storage import CannotResume
from tests.support import (
    MANY_PARTS,
    NATIVE_S3,
    job,
    make_items,
    object_bytes,
    run_export,
    scalar,
    submit_export,
)

Conn = psycopg.Connection[Any]

READS = ("_read_object", "_check_s3", "_check_file")
"""storage's ways of reading an object back: one stream, ranged S3 GETs, a file
in two halves."""


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The read-backs of objects, in order, by the function that read."""
    seen: list[str] = []
    for name in READS:
        real = getattr(storage, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            seen.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(storage, name, counted)
    return seen


class StopAfter(Exporter):
    """Stops (as on SIGTERM) after ``chunks`` chunks: the parts written so far are
    checkpointed, the job is released with its checkpoint, the next run resumes."""

    chunks = 0

    def _read_chunk(self, cursor: str | None, part: Any) -> tuple[int, str | None]:
        self.chunks -= 1
        if self.chunks <= 0:
            self.stop.set()
        return super()._read_chunk(cursor, part)


def stopped_part_way(conn: Conn, dsn: str, destination: str, options: dict[str, Any] = NATIVE_S3,
                     target: str = "big", chunks: int = 9) -> int:
    """A job stopped after ``chunks`` chunks (9: past the first 5 MiB part of
    NATIVE_S3), released with its checkpoint."""
    job_id = submit_export(conn, "1", {}, options, target=target)
    worker = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'stop', '30 seconds')",
                    (job_id,))
    stopper = StopAfter(dsn, job_id, str(worker), destination, stop=threading.Event())
    stopper.chunks = chunks
    outcome = stopper.run()
    assert outcome.status == "released", outcome
    checkpoint = job(conn, job_id)["checkpoint"]
    assert checkpoint["parts"] >= 1 and len(checkpoint["digests"]) == checkpoint["parts"]
    return job_id


def run_again(conn: Conn, dsn: str, job_id: int, destination: str) -> Any:
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    return run_export(dsn, job_id, destination)


def test_a_resumed_native_s3_export_reads_its_object_back_once(
        conn: Conn, dsn: str, big: None, bucket: str, reads: list[str]) -> None:
    reference = run_export(dsn, submit_export(conn, "1", {}, NATIVE_S3, target="big"), bucket)
    assert reference.status == "succeeded" and reference.result is not None
    assert reads == ["_check_s3"]  # uninterrupted: the parts checked, nothing hashed again
    expected = object_bytes(reference.result)

    job_id = stopped_part_way(conn, dsn, bucket)
    reads.clear()
    outcome = run_again(conn, dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert job(conn, job_id)["checkpoint"]["upload"]["upload_id"]  # the same upload, resumed
    # finish() read it back, hashed and checked part by part: no second read.
    assert reads == ["_read_object"]
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["result"]["sha256"] == hashlib.sha256(expected).hexdigest()


def _flip_first_part(data: bytes) -> bytes | None:
    return bytes([data[0] ^ 1]) + data[1:]


def _flip_last_byte(data: bytes) -> bytes | None:
    return data[:-1] + bytes([data[-1] ^ 1])


def _other_first_part(data: bytes) -> bytes | None:
    # Part 1 as another attempt might have written it: the same size, other bytes.
    return b"x" * s3.MIN_PART + data[s3.MIN_PART:]


def _shorter(data: bytes) -> bytes | None:
    return data[:-1]


def _longer(data: bytes) -> bytes | None:
    return data + b"\n"


def _gone(data: bytes) -> bytes | None:
    return None


def _change(uri: str, change: Callable[[bytes], bytes | None]) -> None:
    changed = change(storage.read(uri))
    if changed is None:
        storage.delete(uri)
    else:
        storage.write(uri, changed)


@pytest.mark.parametrize("change", [_flip_first_part, _flip_last_byte, _other_first_part,
                                    _shorter, _longer],
                         ids=["first-part", "last-byte", "other-first-part", "shorter",
                              "longer"])
def test_a_resumed_s3_object_changed_once_visible_never_completes(
        conn: Conn, dsn: str, big: None, bucket: str, reads: list[str],
        monkeypatch: pytest.MonkeyPatch, change: Callable[[bytes], bytes | None]) -> None:
    """The object changes between CompleteMultipartUpload and the read-back of a
    resumed export: the one read-back refuses it, the checkpoint is reset and the
    object removed, and the retry rewrites it."""
    expected_job = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    expected = object_bytes(run_export(dsn, expected_job, bucket).result or {})
    job_id = stopped_part_way(conn, dsn, bucket)
    complete = s3.Client.complete

    def complete_then_change(self: s3.Client, key: str, upload_id: str,
                             etags: list[str]) -> Any:
        done = complete(self, key, upload_id, etags)
        _change(f"s3://{self.bucket}/{key}", change)
        return done

    monkeypatch.setattr(s3.Client, "complete", complete_then_change)
    reads.clear()
    outcome = run_again(conn, dsn, job_id, bucket)
    assert outcome.status == "retrying", outcome
    assert "verification failed" in (outcome.error or "")
    assert reads == ["_read_object"]
    row = job(conn, job_id)
    assert row["result"] is None and row["checkpoint"]["parts"] == 0  # rewritten next
    assert not storage.exists(row["checkpoint"]["uri"])

    monkeypatch.setattr(s3.Client, "complete", complete)
    again = run_again(conn, dsn, job_id, bucket)
    assert again.status == "succeeded", again
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["result"]["sha256"] == hashlib.sha256(expected).hexdigest()


def test_a_resumed_s3_object_gone_once_visible_never_completes(
        conn: Conn, dsn: str, big: None, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected_job = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    expected = object_bytes(run_export(dsn, expected_job, bucket).result or {})
    job_id = stopped_part_way(conn, dsn, bucket)
    complete = s3.Client.complete

    def complete_then_delete(self: s3.Client, key: str, upload_id: str,
                             etags: list[str]) -> Any:
        done = complete(self, key, upload_id, etags)
        _change(f"s3://{self.bucket}/{key}", _gone)
        return done

    monkeypatch.setattr(s3.Client, "complete", complete_then_delete)
    outcome = run_again(conn, dsn, job_id, bucket)
    assert outcome.status == "retrying", outcome
    assert job(conn, job_id)["result"] is None
    monkeypatch.setattr(s3.Client, "complete", complete)
    again = run_again(conn, dsn, job_id, bucket)
    assert again.status == "succeeded", again
    assert object_bytes(job(conn, job_id)["result"]) == expected


def test_a_damaged_resumed_native_s3_part_fails_the_one_read_back(
        conn: Conn, dsn: str, big: None, bucket: str, reads: list[str]) -> None:
    """A stored part that is not the bytes its checkpointed digest says were
    streamed (here the digest stands for other bytes) fails at the read-back."""
    job_id = stopped_part_way(conn, dsn, bucket)
    checkpoint = job(conn, job_id)["checkpoint"]
    checkpoint["digests"][0][1] = hashlib.sha256(b"other bytes").hexdigest()
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = %s WHERE id = %s",
                 (psycopg.types.json.Jsonb(checkpoint), job_id))
    reads.clear()
    outcome = run_again(conn, dsn, job_id, bucket)
    assert outcome.status == "retrying", outcome
    assert "verification failed" in (outcome.error or "")
    assert "part 1 differs" in (outcome.error or "")
    assert reads == ["_read_object"]
    assert not storage.exists(job(conn, job_id)["checkpoint"]["uri"])


def test_a_resumed_file_export_reads_its_object_back_once(
        conn: Conn, dsn: str, local_dir: str, reads: list[str]) -> None:
    """``file://`` keeps its hash across a resume (it hashes the inherited prefix
    as it copies it): the finished file is read back once, as when uninterrupted."""
    make_items(conn, rows=900)
    job_id = stopped_part_way(conn, dsn, local_dir, MANY_PARTS, "items", chunks=30)
    reads.clear()
    outcome = run_again(conn, dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert reads == ["_check_file"]


def test_an_object_found_visible_at_finish_is_read_back_once(
        conn: Conn, dsn: str, local_dir: str, reads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``finish`` made the object visible but reported the upload gone (as a
    second owner whose predecessor finished it would): the object is accepted
    after one read-back against every part's digest, not read again."""
    make_items(conn, rows=900)
    real = upload_file.LocalUpload.finish

    def finish_then_lost(self: upload_file.LocalUpload) -> tuple[int, str]:
        real(self)
        raise CannotResume("the temporary file is gone")

    monkeypatch.setattr(upload_file.LocalUpload, "finish", finish_then_lost)
    outcome = run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS), local_dir)
    assert outcome.status == "succeeded", outcome
    assert reads == ["_read_object"]
    data = object_bytes(outcome.result or {})
    assert (outcome.result or {})["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_object_found_visible_at_finish_but_changed_never_completes(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    real = upload_file.LocalUpload.finish

    def finish_change_lost(self: upload_file.LocalUpload) -> tuple[int, str]:
        real(self)
        _change(self.location.uri, _flip_last_byte)
        raise CannotResume("the temporary file is gone")

    monkeypatch.setattr(upload_file.LocalUpload, "finish", finish_change_lost)
    outcome = run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS), local_dir)
    assert outcome.status == "retrying", outcome
    assert outcome.result is None


@pytest.mark.parametrize("prefix_fixture", ["az_container", "gcs_bucket"], ids=["az", "gs"])
def test_a_resumed_cloud_export_reads_its_object_back_once(
        conn: Conn, dsn: str, reads: list[str], prefix_fixture: str,
        request: pytest.FixtureRequest) -> None:
    """Azure blocks and a GCS compose resumed in another attempt read the
    committed object back once too (their running hash did not survive either),
    hashing it and checking every part against its digest in that read."""
    prefix = str(request.getfixturevalue(prefix_fixture))
    make_items(conn, rows=900)
    expected = object_bytes(run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS),
                                       prefix).result or {})
    job_id = stopped_part_way(conn, dsn, prefix, MANY_PARTS, "items", chunks=30)
    reads.clear()
    outcome = run_again(conn, dsn, job_id, prefix)
    assert outcome.status == "succeeded", outcome
    assert reads == ["_read_object"]
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["result"]["sha256"] == hashlib.sha256(expected).hexdigest()
