"""A ``file://`` or native S3 export reads its object back against keyed tags
of its parts.

Each part is sealed as it is written (``Upload.seals``: AES-GMAC of the buffer
handed to ``pwrite``, the one the checkpoint's SHA-256 digest was computed
from, under a random key that lives in the worker's memory only), and the
read-back after the link checks every part's range against its tag instead
of hashing it with SHA-256 a second time: the same bytes read, about a tenth
of the CPU. What it refuses is what the SHA-256 read-back refused: one byte
changed in place (the same inode, size and modification time) wherever it
sits, a byte missing or added at the end, another file swapped in at the
name; each ends the attempt without a success, with the same words, and the
retry ends ``succeeded`` with the plain COPY's bytes (S3: the object changed
between CompleteMultipartUpload and the read-back). A worker killed mid-
export leaves a temporary file the next attempt inherits: its parts are
sealed as they are copied (checked against the checkpoint's digests on the
way), so the resumed export's read-back checks them too, refuses a changed
inherited byte, and ends with the uninterrupted export's bytes. The key is
never in the job's row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage, upload, upload_file
from tests.support import (
    ITEMS_TENANT_1,
    NATIVE_S3,
    checkpoint_parts,
    expire_leases,
    job,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]

# Parts of 4 KiB: the tenant's rows of 400 items are several of them.
OPTIONS = {"format": "csv", "chunk_rows": 40, "part_size": 4096}


class Counts:
    """What the read-back (``Exporter._verify_stored``) did: the bytes fed to
    part seals, the seals compared, and the SHA-256 checks it ran (runs of
    parts, one-stream digest checks)."""

    def __init__(self) -> None:
        self.reading = False
        self.sealed_bytes = 0
        self.compared = 0
        self.sha256_checks = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    from pgjobs.poller.export import Exporter

    seen = Counts()
    real_verify = Exporter._verify_stored
    real_update, real_matches = upload.Seal.update, upload.Seals.matches

    def verify(self: Any, size: int, sha256: str) -> None:
        seen.reading = True
        try:
            real_verify(self, size, sha256)
        finally:
            seen.reading = False

    def update(self: Any, data: Any) -> None:
        if seen.reading:
            seen.sealed_bytes += len(data)
        real_update(self, data)

    def matches(self: Any, index: int, seal: Any) -> bool:
        if seen.reading:
            seen.compared += 1
        return bool(real_matches(self, index, seal))

    def sha256_check(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if seen.reading:
                seen.sha256_checks += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(Exporter, "_verify_stored", verify)
    monkeypatch.setattr(upload.Seal, "update", update)
    monkeypatch.setattr(upload.Seals, "matches", matches)
    for name in ("_check_spans", "_check_spans_prefixed", "PartDigests"):
        monkeypatch.setattr(storage, name, sha256_check(getattr(storage, name)))
    return seen


def _succeeded_as_copied(conn: Conn, outcome: Any) -> bytes:
    assert outcome.status == "succeeded", outcome
    data = storage.read(outcome.result["uri"])
    assert data == plain_copy(conn, ITEMS_TENANT_1)
    assert (len(data), hashlib.sha256(data).hexdigest()) == \
        (outcome.result["bytes"], outcome.result["sha256"])
    return data


def test_the_read_back_checks_each_part_against_its_seal_not_sha256(
        conn: Conn, dsn: str, local_dir: str, counts: Counts) -> None:
    make_items(conn, rows=400)
    job_id = submit_export(conn, "1", {}, OPTIONS)
    outcome = run_export(dsn, job_id, local_dir)
    data = _succeeded_as_copied(conn, outcome)
    parts = job(conn, job_id)["checkpoint"]["parts"]
    assert parts >= 3
    # Every stored byte read back and fed to its part's seal, every part's tag
    # compared, no byte hashed with SHA-256 a second time.
    assert counts.sealed_bytes == len(data)
    assert counts.compared == parts
    assert counts.sha256_checks == 0


def _flip(path: str, offset: int) -> None:
    """One byte of ``path`` changed in place: the same inode and size, the
    modification time put back."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)


def _truncate(path: str) -> None:
    os.truncate(path, os.stat(path).st_size - 1)


def _extend(path: str) -> None:
    with open(path, "ab") as handle:
        handle.write(b"\n")


def _swap(path: str) -> None:
    """Another file of the same size renamed over the object's name."""
    other = path + ".other"
    with open(other, "wb") as handle:
        handle.write(b"x" * os.stat(path).st_size)
    os.replace(other, path)


ALTERATIONS: dict[str, tuple[Callable[[str], None], str]] = {
    "first byte flipped": (lambda p: _flip(p, 0), r"\(part 1 differs from what was streamed\)"),
    "middle byte flipped": (lambda p: _flip(p, os.stat(p).st_size // 2),
                            r"\(part \d+ differs from what was streamed\)"),
    "last byte flipped": (lambda p: _flip(p, os.stat(p).st_size - 1),
                          r"\(part \d+ differs from what was streamed\)"),
    "one byte missing": (_truncate, r"\(fewer bytes than were streamed \(\d+\)\)"),
    "one byte added": (_extend, r"\(more bytes than were streamed\)"),
    "another file swapped in": (_swap, r"\(part 1 differs from what was streamed\)"),
}


def _alter_after_link(monkeypatch: pytest.MonkeyPatch,
                      alteration: Callable[[str], None]) -> list[str]:
    done: list[str] = []
    real_finish = upload_file.LocalUpload.finish

    def finish(self: Any) -> tuple[int, str]:
        result = real_finish(self)
        if not done:
            done.append(self.location.path)
            alteration(self.location.path)
        return result

    monkeypatch.setattr(upload_file.LocalUpload, "finish", finish)
    return done


def _never_succeeds_then_retry_does(conn: Conn, dsn: str, local_dir: str, job_id: int,
                                    outcome: Any, error: str) -> None:
    assert outcome.status == "retrying", outcome
    assert outcome.error is not None
    assert "verification failed: the object is not what was streamed" in outcome.error
    assert re.search(error, outcome.error), outcome.error
    row = job(conn, job_id)
    assert row["status"] == "queued" and row["result"] is None, row
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    _succeeded_as_copied(conn, run_export(dsn, job_id, local_dir))


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_an_object_altered_after_the_link_fails_the_sealed_read_back(
        conn: Conn, dsn: str, local_dir: str, counts: Counts, name: str) -> None:
    alteration, error = ALTERATIONS[name]
    make_items(conn, rows=400)
    job_id = submit_export(conn, "1", {}, OPTIONS)
    faults = pytest.MonkeyPatch()
    try:
        altered = _alter_after_link(faults, alteration)
        outcome = run_export(dsn, job_id, local_dir)
    finally:
        faults.undo()
    assert altered, "the alteration never ran"
    # Refused by the seals, not by a SHA-256 pass.
    assert counts.sha256_checks == 0
    assert counts.compared >= 1 or "bytes than were streamed" in (outcome.error or "")
    _never_succeeds_then_retry_does(conn, dsn, local_dir, job_id, outcome, error)


def _killed_mid_export(conn: Conn, dsn: str, local_dir: str) -> int:
    """An export whose worker process was SIGKILLed with about half its parts
    checkpointed, its lease lapsed: the next attempt resumes it."""
    job_id = submit_export(conn, "1", {}, OPTIONS)
    first = start_worker(dsn, local_dir, "--once", "--lease", "120s", delays="part=0.3")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    assert job(conn, job_id)["status"] == "running"
    expire_leases(conn, job_id)
    return job_id


def test_a_worker_killed_mid_export_resumes_byte_identically_sealed(
        conn: Conn, dsn: str, local_dir: str, counts: Counts) -> None:
    make_items(conn, rows=400)
    job_id = _killed_mid_export(conn, dsn, local_dir)
    inherited = job(conn, job_id)["checkpoint"]
    outcome = run_export(dsn, job_id, local_dir)
    data = _succeeded_as_copied(conn, outcome)
    row = job(conn, job_id)
    assert row["attempts"] == 2
    # Resumed, not started over: the parts checkpointed before the kill kept.
    assert row["checkpoint"]["digests"][:inherited["parts"]] == inherited["digests"]
    # The inherited parts were sealed as they were copied: the read-back
    # checked every part's tag, none with SHA-256.
    assert counts.sealed_bytes == len(data)
    assert counts.compared == row["checkpoint"]["parts"]
    assert counts.sha256_checks == 0


def test_an_inherited_part_altered_after_the_link_fails_the_resumed_read_back(
        conn: Conn, dsn: str, local_dir: str, counts: Counts) -> None:
    make_items(conn, rows=400)
    job_id = _killed_mid_export(conn, dsn, local_dir)
    faults = pytest.MonkeyPatch()
    try:
        # Byte 0 is in part 1, which the resumed attempt inherited.
        altered = _alter_after_link(faults, lambda p: _flip(p, 0))
        outcome = run_export(dsn, job_id, local_dir)
    finally:
        faults.undo()
    assert altered, "the alteration never ran"
    assert counts.sha256_checks == 0
    _never_succeeds_then_retry_does(conn, dsn, local_dir, job_id, outcome,
                                    r"\(part 1 differs from what was streamed\)")


def test_the_seal_key_is_never_in_the_jobs_row(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keys: list[bytes] = []
    real_init = upload.Seals.__init__

    def init(self: Any) -> None:
        real_init(self)
        keys.append(self._key)

    monkeypatch.setattr(upload.Seals, "__init__", init)
    make_items(conn, rows=400)
    job_id = submit_export(conn, "1", {}, OPTIONS)
    _succeeded_as_copied(conn, run_export(dsn, job_id, local_dir))
    assert keys and all(len(key) == 32 for key in keys)
    row = conn.execute("SELECT to_jsonb(j)::text FROM pgjobs.jobs j WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None
    text = row[0] + json.dumps(job(conn, job_id), default=str)
    for key in keys:
        for spelling in (key.hex(), key.hex().upper(), base64.b64encode(key).decode()):
            assert spelling not in text
        seals = upload.Seals.__new__(upload.Seals)
        seals._key, seals.tags = key, []
        assert key.hex() not in repr(seals)


S3_CHANGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "first byte flipped": (lambda d: bytes([d[0] ^ 1]) + d[1:],
                           r"\(part 1 differs from what was streamed\)"),
    "last byte flipped": (lambda d: d[:-1] + bytes([d[-1] ^ 1]),
                          r"\(part \d+ differs from what was streamed\)"),
    "another first part": (lambda d: b"x" * s3.MIN_PART + d[s3.MIN_PART:],
                           r"\(part 1 differs from what was streamed\)"),
    "one byte missing": (lambda d: d[:-1], r"\(fewer bytes than were streamed \(\d+\)\)"),
    "one byte added": (lambda d: d + b"\n", r"\(more bytes than were streamed\)"),
}


def test_a_native_s3_read_back_checks_each_part_against_its_seal(
        conn: Conn, dsn: str, big: None, bucket: str, counts: Counts) -> None:
    outcome = run_export(dsn, submit_export(conn, "1", {}, NATIVE_S3, target="big"), bucket)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["parts"] >= 3
    data = object_bytes(outcome.result)
    assert counts.sealed_bytes == len(data)
    assert counts.compared == outcome.result["parts"]
    assert counts.sha256_checks == 0


@pytest.mark.parametrize("name", list(S3_CHANGES))
def test_a_native_s3_object_changed_once_visible_fails_the_sealed_read_back(
        conn: Conn, dsn: str, big: None, bucket: str, counts: Counts,
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    change, error = S3_CHANGES[name]
    expected = object_bytes(run_export(
        dsn, submit_export(conn, "1", {}, NATIVE_S3, target="big"), bucket).result or {})
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    complete = s3.Client.complete
    changed: list[str] = []

    def complete_then_change(self: s3.Client, key: str, upload_id: str,
                             etags: list[str]) -> Any:
        done = complete(self, key, upload_id, etags)
        uri = f"s3://{self.bucket}/{key}"
        storage.write(uri, change(storage.read(uri)))
        changed.append(uri)
        return done

    monkeypatch.setattr(s3.Client, "complete", complete_then_change)
    outcome = run_export(dsn, job_id, bucket)
    monkeypatch.setattr(s3.Client, "complete", complete)
    assert changed, "the change never ran"
    assert counts.sha256_checks == 0
    assert outcome.status == "retrying", outcome
    assert outcome.error is not None
    assert "verification failed: the object is not what was streamed" in outcome.error
    assert re.search(error, outcome.error), outcome.error
    row = job(conn, job_id)
    assert row["result"] is None and row["checkpoint"]["parts"] == 0  # rewritten next
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    again = run_export(dsn, job_id, bucket)
    assert again.status == "succeeded", again
    assert object_bytes(job(conn, job_id)["result"]) == expected


def test_the_read_back_names_the_first_part_that_differs_whatever_thread_finds_one_first(
) -> None:
    """The runs of parts are checked on threads side by side; an object wrong
    in several parts is said wrong at its first one, not at the part of the
    thread that came upon its error first (the swapped-file case above said
    "part 3" or "part 1" by timing). Here the later run raises first, and
    the earlier one raises only after it: the earlier one's error is raised."""
    from pgjobs.poller.storage import Mismatch, _each_on_a_thread

    later_raised = threading.Event()
    stopped_early: list[int] = []

    def check(parts: range, failed: threading.Event) -> None:
        if parts[0] == 0:
            assert later_raised.wait(30), "the later run never raised"
            if failed.is_set():
                stopped_early.append(parts[0])  # told to stop by a later run: wrong
                return
            raise Mismatch(f"part {parts[0] + 1} differs from what was streamed")
        later_raised.set()
        raise Mismatch(f"part {parts[0] + 1} differs from what was streamed")

    with pytest.raises(Mismatch, match=r"^part 1 differs"):
        _each_on_a_thread(check, [range(0, 2), range(2, 4)])
    assert stopped_early == []
