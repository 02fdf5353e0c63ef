"""A Parquet export never writes over, nor deletes, a file it did not provably make.

Each Parquet file was written unconditionally (``storage.write``): a file
put at one of the export's names by someone else (another pgjobs database's
export of the same id, anyone) between the export's first look and the
file's write was replaced. The files past the last recorded one were
removed by their names (``_remove_unrecorded``), and ``pgjobs.prune``
deleted the file a checkpoint named as being written (``writing``) whatever
it held. Now every file is created conditionally (``storage.create``: a hard
link on disk, ``If-None-Match: *`` on S3), the checkpoint names the file
being written with the digest of its bytes, and a file the job did not
record is removed (by the next attempt, a cancel, prune) only while it holds
those bytes. Anything else stays, and the job fails for good (42710).

The cases, on ``file://`` and S3 (moto), for a whole Parquet export and a
parallel one (its parts' files): another's file appears at a file's name
just before its write; or the worker is killed right after writing a file,
before recording it, and another's file replaces that one before the job is
canceled and pruned. ``memory://`` is left out: its objects live in the
worker's process, which serves one database, and a create there writes as a
plain write does (storage.create; docs/exports.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.worker import Worker
from tests.support import job, make_items, run_export, scalar, submit_export

pytest.importorskip("pyarrow")

Conn = psycopg.Connection[Any]

THEIRS = b"PAR1 another database's file, not this job's PAR1"
FORMATS = {"parquet": {"format": "parquet", "chunk_rows": 20, "part_size": 4096},
           "parallel": {"format": "parquet", "chunk_rows": 20, "part_size": 4096,
                        "parallel": 2}}
STORES = ["file", "s3"]


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


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("store", STORES)
def test_a_file_put_at_its_name_before_its_write_is_never_written_over(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str) -> None:
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, FORMATS[fmt])
    real_create = storage.create
    taken: list[str] = []

    def create(uri: str, data: bytes) -> bool:
        if not taken and uri.endswith("00001.parquet"):
            taken.append(uri)
            storage.write(uri, THEIRS)  # another's, just before the job's write
        return real_create(uri, data)

    monkeypatch.setattr(storage, "create", create)
    outcome = run_export(dsn, job_id, prefix)
    assert taken, "no second file was written"
    assert storage.read(taken[0]) == THEIRS, "another's file was written over"
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and "[42710]" in outcome.error, outcome.error
    assert "pgjobs.retry" in outcome.error and taken[0] in outcome.error
    _housekeeping(dsn, prefix)
    assert storage.read(taken[0]) == THEIRS, "prune deleted a file the job never made"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("replaced", [False, True])
def test_a_file_written_but_not_recorded_goes_only_while_it_is_the_job_s(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, replaced: bool) -> None:
    """The worker dies right after its conditional write of a file, before the
    checkpoint records it; the job is canceled and pruned. The job's own file
    goes (its checkpoint holds the digest of its bytes); one that replaced it
    meanwhile (``replaced``) is another's and stays, as it was, through the
    cancel, prune and the worker's pass over the deletion queue. (A whole
    export: a parallel one's coordinator retries a killed part in the same
    run, which the next test covers.)"""
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, FORMATS["parquet"])
    real_create = storage.create
    made: list[str] = []

    def create(uri: str, data: bytes) -> bool:
        created = real_create(uri, data)
        if uri.endswith("00001.parquet") and not made:
            made.append(uri)
            raise Killed()
        return created

    monkeypatch.setattr(storage, "create", create)
    first = run_export(dsn, job_id, prefix)
    monkeypatch.setattr(storage, "create", real_create)
    assert made and first.status != "succeeded", first
    assert storage.exists(made[0])
    if replaced:
        storage.delete(made[0])
        storage.write(made[0], THEIRS)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "canceled"
    _housekeeping(dsn, prefix)
    if replaced:
        assert storage.read(made[0]) == THEIRS, "a file the job never made was deleted"
    else:
        assert not storage.exists(made[0]), "the job's own unrecorded file was left"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("store", STORES)
def test_the_next_attempt_removes_only_the_job_s_own_unrecorded_file(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str) -> None:
    """Killed after writing a file, before recording it, and another's file
    replaces the job's at that name: the next attempt (a parallel export's
    part retried) neither removes nor writes over it, and the job fails for
    good (42710)."""
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, FORMATS[fmt])
    real_create = storage.create
    made: list[str] = []

    def create(uri: str, data: bytes) -> bool:
        created = real_create(uri, data)
        if uri.endswith("00001.parquet") and not made:
            made.append(uri)
            storage.delete(uri)
            storage.write(uri, THEIRS)
            raise Killed()
        return created

    monkeypatch.setattr(storage, "create", create)
    outcome = run_export(dsn, job_id, prefix)
    for _ in range(3):
        if outcome.status == "failed":
            break
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        outcome = run_export(dsn, job_id, prefix)
    assert made
    assert storage.read(made[0]) == THEIRS, "another's file was removed or written over"
    assert outcome.status == "failed" and "[42710]" in (outcome.error or ""), outcome


@pytest.mark.parametrize("store", STORES)
def test_the_job_s_own_leftover_it_could_not_remove_is_not_taken_for_another_s(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str) -> None:
    """Killed after writing a file, before recording it; the rows change; the
    next attempt cannot delete the file (storage refusing deletes) and streams
    on, finds its own old file at the name with other bytes than it now
    writes. The checkpoint's digest proves that file the job's: the attempt
    ends retryable, never the 42710 of another's object (h40's reproduction:
    the job failed for good, blaming another), and once deletes work the
    export finishes with the rows as they are."""
    prefix = request.getfixturevalue("local_dir" if store == "file" else "bucket")
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, FORMATS["parquet"])
    real_create = storage.create
    made: list[str] = []

    def create(uri: str, data: bytes) -> bool:
        created = real_create(uri, data)
        if uri.endswith("00001.parquet") and not made:
            made.append(uri)
            raise Killed()
        return created

    monkeypatch.setattr(storage, "create", create)
    run_export(dsn, job_id, prefix)
    monkeypatch.setattr(storage, "create", real_create)
    conn.execute("UPDATE items SET note = 'changed ' || id WHERE tenant = 1")

    def no_delete(uri: str, sha256: str, *, retries: bool = True) -> bool:
        raise storage.StorageError("AccessDenied: DeleteObject not allowed", retryable=True)

    real_delete_holding = storage.delete_holding
    monkeypatch.setattr(storage, "delete_holding", no_delete)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    outcome = run_export(dsn, job_id, prefix, storage_retry=1.0)
    assert "[42710]" not in (outcome.error or ""), outcome
    assert outcome.status != "failed", outcome
    monkeypatch.setattr(storage, "delete_holding", real_delete_holding)
    for _ in range(3):
        if outcome.status in ("succeeded", "failed"):
            break
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        outcome = run_export(dsn, job_id, prefix)
    assert outcome.status == "succeeded", outcome
    assert job(conn, job_id)["done"] == scalar(
        conn, "SELECT count(*) FROM items WHERE tenant = 1")
