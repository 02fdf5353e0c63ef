"""An export never deletes an object it did not provably create.

An export's key may hold another's object (another pgjobs database numbers
its jobs alike; anyone may write there): the export's final write is
conditional and refuses it (tests/test_export_foreign_object.py). What the
export removes must be as careful: pgjobs.prune queued the key of every
pruned export's checkpoint for deletion (``pgjobs._export_objects``), even of
one canceled mid-stream or failed because the key was taken, whose upload
never made anything there; a parallel export's join deleted the object at
the key when its temporary file read back wrong (``Join._start_over``),
before it had placed anything. Now the checkpoint records the object
``created`` (bytes, SHA-256) once the job's own write made it visible, and
only such an object is removed.

The cases: the foreign object appears at the key of an export that then
fails for good (42710), is canceled mid-stream, or whose parallel join
reads back wrong; each on ``file://`` and S3 where both apply. The object
must still hold the foreign bytes after the job ended, prune ran and a
worker's housekeeping pass worked the storage deletion queue.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs.poller import join, storage
from pgjobs.poller.export import Exporter
from pgjobs.poller.worker import Worker
from tests.support import make_items, run_export, scalar, submit_export

Conn = psycopg.Connection[Any]

THEIRS = b"another database's export, not this job's\n"


class Killed(KeyboardInterrupt):
    """What no handler of the exporter swallows: the attempt ends, the job released."""


def _housekeeping(dsn: str, storage_uri: str) -> None:
    """prune (every finished job) and one worker pass over the deletion queue."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pgjobs.prune('0 seconds')")
    worker = Worker(dsn, storage_uri, once=True, stale_after=timedelta(hours=1))
    worker._connect()
    try:
        worker.housekeeping()
    finally:
        worker._close()


def _first_look(monkeypatch: pytest.MonkeyPatch, appear: bool) -> list[str]:
    """The key the export looks at first (storage.taken); with ``appear``, the
    foreign object is created there just after that look."""
    key: list[str] = []
    real = storage.taken

    def taken(uri: str) -> bool:
        found = real(uri)
        if not key:
            key.append(uri)
            if appear:
                storage.write(uri, THEIRS)
        return found

    monkeypatch.setattr(storage, "taken", taken)
    return key


@pytest.mark.parametrize("store", ["file", "s3"])
def test_prune_of_an_export_that_found_the_key_taken_keeps_the_object(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str) -> None:
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn)
    job_id = submit_export(conn, "1", {}, {"format": "csv"})
    key = _first_look(monkeypatch, appear=True)
    outcome = run_export(dsn, job_id, prefix)
    assert storage.read(key[0]) == THEIRS, "the foreign object was written over"
    assert outcome.status == "failed" and "[42710]" in (outcome.error or ""), outcome
    _housekeeping(dsn, prefix)
    assert storage.read(key[0]) == THEIRS, "prune deleted an object the job never created"


@pytest.mark.parametrize("store", ["file", "s3"])
def test_prune_of_an_export_canceled_mid_stream_keeps_an_object_at_its_key(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str) -> None:
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn)
    job_id = submit_export(conn, "1", {}, {"format": "csv", "chunk_rows": 50})
    key = _first_look(monkeypatch, appear=False)
    real_read = Exporter._read_chunk
    calls = {"n": 0}

    def killed_read(self: Any, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return real_read(self, *args)

    monkeypatch.setattr(Exporter, "_read_chunk", killed_read)
    first = run_export(dsn, job_id, prefix)
    assert first.status != "succeeded", first
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    storage.write(key[0], THEIRS)  # another's, at the key the job never wrote
    _housekeeping(dsn, prefix)
    assert storage.read(key[0]) == THEIRS, "prune deleted an object the job never created"


def test_a_join_that_reads_back_wrong_keeps_an_object_it_did_not_place(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """file://: the join reads its temporary file back before placing it; one that
    reads back wrong starts over, and removed whatever was at the key then."""
    make_items(conn)
    job_id = submit_export(conn, "1", {}, {"format": "csv", "parallel": 2, "chunk_rows": 40})
    key = _first_look(monkeypatch, appear=False)
    real_copy = os.copy_file_range
    spoiled: list[str] = []

    def spoiling_copy(src: int, dst: int, count: int, offset_src: int | None = None,
                      offset_dst: int | None = None) -> int:
        n = real_copy(src, dst, count, offset_src, offset_dst)
        if n and not spoiled:
            # The foreign object appears, and the join's copy goes wrong.
            spoiled.append(key[0])
            storage.write(key[0], THEIRS)
            os.pwrite(dst, b"\x00", offset_dst or 0)
        return n

    monkeypatch.setattr(join.os, "copy_file_range", spoiling_copy)
    outcome = run_export(dsn, job_id, local_dir)
    assert spoiled, "the join never copied"
    assert storage.read(key[0]) == THEIRS, "the join deleted or replaced an object it never made"
    assert outcome.status != "succeeded", outcome


@pytest.mark.parametrize("store", ["file", "s3"])
def test_prune_of_an_export_killed_finishing_deletes_only_its_own_bytes(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str) -> None:
    """Killed in its final write (phase finalizing, nothing recorded made): prune
    queues the key with the part digests, and the worker deletes the object only
    if it reads back as them. Another's object there stays."""
    from pgjobs.poller import upload_file, upload_obstore, upload_s3

    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn)
    job_id = submit_export(conn, "1", {}, {"format": "csv"})
    key = _first_look(monkeypatch, appear=False)

    def killed_finish(self: Any) -> tuple[int, str]:
        raise Killed()

    for kind in (upload_file.LocalUpload, upload_s3.NativeS3Upload, upload_obstore.StagedUpload):
        monkeypatch.setattr(kind, "finish", killed_finish)
    first = run_export(dsn, job_id, prefix)
    assert first.status != "succeeded", first
    assert scalar(conn, "SELECT checkpoint ->> 'phase' FROM pgjobs.jobs WHERE id = %s",
                  (job_id,)) == "finalizing"
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    storage.write(key[0], THEIRS)
    _housekeeping(dsn, prefix)
    assert storage.read(key[0]) == THEIRS, "prune deleted an object the job never created"
