"""A worker killed at any checkpoint of an export, and the storage changed
under the resume: the job never ends ``succeeded`` with objects that differ
from the scope's rows (file:// and S3 through moto, staged parts; CSV with
gzip, whose object path JSON Lines shares, and Parquet's files).

The kill is in process, where a SIGKILL would stop the attempt: at a
checkpointing heartbeat (every part recorded, the finalizing phase, the
object made visible), before it is sent (the write done, never recorded) or
once accepted (recorded, nothing after); no outcome is recorded, no cleanup
runs, the lease is made to lapse and another attempt takes the job over.
The checks are those of tests/test_trust_export_variants.py: the stored
bytes against the result's ``bytes`` and ``sha256``, the content against a
plain COPY, ``to_jsonb``, pyarrow and DuckDB."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.export import Exporter, Outcome, _Control
from tests.support import (
    BIG_TENANT_1,
    NATIVE_S3,
    leftovers,
    make_items,
    open_uploads,
    run_export,
    submit_export,
)
from tests.test_trust_export_variants import FORMATS, _check, _prefix, _records

Conn = psycopg.Connection[Any]
# The two writers of an export's object: one stream of parts (CSV, gzip on;
# JSON Lines takes the same path) and Parquet's files.
WRITERS = ["csv-gzip", "parquet"]


class Killed(BaseException):
    """The worker process dies here (SIGKILL): nothing after runs, no outcome
    is recorded, its lease is left to lapse."""


def _die_at(monkeypatch: pytest.MonkeyPatch, at: int | None, before: bool) -> list[int]:
    """Count the job's checkpointing heartbeats (every part recorded, the
    finalizing phase, the object made visible); with ``at``, the worker dies
    at that one: ``before`` it is sent (its write done, never recorded) or
    right after it was accepted (recorded, nothing after). The list holds
    the count."""
    seen = [0]
    beat = _Control.heartbeat

    def heartbeat(self: _Control, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        if checkpoint is None:  # a lease renewal: as many as time makes
            return beat(self, done, checkpoint)
        seen[0] += 1
        if seen[0] == at and before:
            raise Killed()
        ok = beat(self, done, checkpoint)
        if seen[0] == at and ok:
            raise Killed()
        return ok

    fail = Exporter._fail

    def _fail(self: Exporter, exc: BaseException) -> Outcome:
        if isinstance(exc, Killed):
            return Outcome(self.job_id, "lost", error="killed")
        return fail(self, exc)

    monkeypatch.setattr(_Control, "heartbeat", heartbeat)
    monkeypatch.setattr(Exporter, "_fail", _fail)
    monkeypatch.setattr(Exporter, "_abort_unrecorded", lambda self: None)
    return seen


def _checkpoints(conn: Conn, dsn: str, prefix: str, options: dict[str, Any],
                 target: str = "items") -> int:
    """How many checkpointing heartbeats an uninterrupted export of the
    target's scope 1 with ``options`` sends (it succeeds)."""
    with pytest.MonkeyPatch.context() as mp:
        seen = _die_at(mp, None, False)
        whole = run_export(dsn, submit_export(conn, "1", {}, options, target=target), prefix)
    assert whole.status == "succeeded", whole.error
    assert seen[0] >= 4, f"only {seen[0]} checkpoints: too few to attack"
    return seen[0]


@pytest.mark.parametrize("position", ["first", "last-1", "last"])
@pytest.mark.parametrize("before", [True, False], ids=["unrecorded", "recorded"])
@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_worker_killed_at_any_checkpoint_resumes_to_exactly_the_rows(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, tmp_path: Path,
        store: str, fmt: str, before: bool, position: str) -> None:
    """The worker dies at a checkpointing heartbeat (a part, the finalizing
    phase, the object made visible), before it is sent or once accepted;
    another attempt takes the job over: it succeeds with objects that hold
    exactly the scope's rows (as independent readers read them), and its
    result's counts and sha256 are those of the stored bytes."""
    make_items(conn, rows=120)
    prefix = _prefix(request, store)
    options = {**FORMATS[fmt], "chunk_rows": 5, "part_size": 1024}
    beats = _checkpoints(conn, dsn, prefix, options)
    at = {"first": 1, "last-1": beats - 1, "last": beats}[position]
    job_id = submit_export(conn, "1", {}, options)
    with pytest.MonkeyPatch.context() as mp:
        _die_at(mp, at, before)
        killed = run_export(dsn, job_id, prefix)
    assert killed.status == "lost", killed
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (job_id,))
    out = run_export(dsn, job_id, prefix)
    assert out.status == "succeeded", out.error
    assert out.result is not None
    _check(conn, out.result, options, "SELECT * FROM items WHERE tenant = 1 ORDER BY id",
           tmp_path)


def _tamper(where: str, how: str) -> list[str]:
    """Another writer changes everything the killed attempt left under
    ``where`` (its parts, staged objects, temporary or Parquet files):
    ``truncated`` (the last byte gone), ``replaced`` (as long, other bytes)
    or ``deleted``. The URIs changed."""
    changed = []
    for uri in leftovers(where, set()):
        data = storage.read(uri)
        if not data:
            continue
        if how == "deleted":
            storage.delete(uri)
        elif how == "truncated":
            storage.write(uri, data[:-1])
        else:
            middle = len(data) // 2
            storage.write(uri, data[:middle] + bytes([data[middle] ^ 0x55]) + data[middle + 1:])
        changed.append(uri)
    return changed


@pytest.mark.parametrize("how", ["truncated", "replaced", "deleted"])
@pytest.mark.parametrize("position", ["middle", "last"])
@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_resume_after_the_storage_changed_never_succeeds_with_other_bytes(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, tmp_path: Path,
        store: str, fmt: str, position: str, how: str) -> None:
    """The worker dies once a part (``middle``) or the object made visible
    (``last``) is recorded; then another writer truncates, replaces or
    deletes what it wrote. The job then ends succeeded with objects holding
    exactly the scope's rows (an attempt that finds a part changed fails and
    the retry writes again), or failed for good naming the object it will
    not write over (another writer's) and how to run it again; never
    succeeded with other bytes."""
    make_items(conn, rows=120)
    prefix = _prefix(request, store) + "tampered/"
    options = {**FORMATS[fmt], "chunk_rows": 5, "part_size": 1024, "max_attempts": 5}
    job_id = submit_export(conn, "1", {}, options)
    beats = _checkpoints(conn, dsn, _prefix(request, store), options)
    with pytest.MonkeyPatch.context() as mp:
        _die_at(mp, beats // 2 if position == "middle" else beats, False)
        assert run_export(dsn, job_id, prefix).status == "lost"
    assert _tamper(prefix, how), "the killed attempt left nothing to change"
    outcomes = []
    for _ in range(4):
        # The lease lapses (a killed attempt), the retry's backoff is over.
        conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                     "WHERE id = %s AND status = 'running'", (job_id,))
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s AND status = 'queued'",
                     (job_id,))
        status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                     (job_id,)).fetchone() or (None, None)
        if status == "failed":
            # Failed for good, naming the object it will not write over.
            assert "tampered/" in str(error) and "pgjobs.retry" in str(error), error
            return
        assert status in ("running", "queued"), (status, error, outcomes)
        out = run_export(dsn, job_id, prefix)
        outcomes.append((out.status, out.error))
        if out.status == "succeeded":
            assert out.result is not None
            _check(conn, out.result, options,
                   "SELECT * FROM items WHERE tenant = 1 ORDER BY id", tmp_path)
            return
    pytest.fail(f"the job neither succeeded nor failed for good: {outcomes}")


@pytest.mark.parametrize("position", ["middle", "last-1", "last"])
@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_stale_worker_waking_after_a_takeover_changes_nothing(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, store: str, fmt: str,
        position: str) -> None:
    """Two workers on one job: the first stalls once a checkpoint is accepted
    (a part, the finalizing phase, the object made visible) until its lease
    lapses; every row's note grows meanwhile (the next parts' bytes differ);
    a second worker takes the job over and succeeds. The first then wakes and
    goes on: it reports no success but the job's own (same bytes, same
    sha256), and the objects the job's result names still hold the result's
    bytes and sha256, every key of the scope once."""
    make_items(conn, rows=120)
    prefix = _prefix(request, store)
    options = {**FORMATS[fmt], "chunk_rows": 5, "part_size": 1024}
    beats = _checkpoints(conn, dsn, prefix, options)
    at = {"middle": beats // 2, "last-1": beats - 1, "last": beats}[position]
    job_id = submit_export(conn, "1", {}, options)
    stalled, wake = threading.Event(), threading.Event()
    count = [0]
    beat = _Control.heartbeat
    first_worker: list[str] = []

    def heartbeat(self: _Control, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = beat(self, done, checkpoint)
        if checkpoint is not None and self.worker == (first_worker or [None])[0]:
            count[0] += 1
            if count[0] == at and ok:
                stalled.set()
                assert wake.wait(120)
        return ok

    claim = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'stale', '30 seconds')",
                         (job_id,)).fetchone()
    assert claim is not None
    first_worker.append(claim[0])
    outcome: list[Outcome] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_Control, "heartbeat", heartbeat)
        first = threading.Thread(target=lambda: outcome.append(
            Exporter(dsn, job_id, claim[0], prefix).run()))
        first.start()
        try:
            assert stalled.wait(120), "the first worker never reached its checkpoint"
            conn.execute("UPDATE items SET note = coalesce(note, '') || ' and more' "
                         "WHERE tenant = 1")
            conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                         "WHERE id = %s", (job_id,))
            second = run_export(dsn, job_id, prefix)
        finally:
            wake.set()
            first.join(120)
    assert second.status == "succeeded", second.error
    row = conn.execute("SELECT status, result FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and row[0] == "succeeded"
    assert row[1] == second.result
    # The stale worker reports success only for the job's own result (its
    # object made visible before the stall: the same bytes, the same sha256).
    assert outcome and (outcome[0].status != "succeeded" or outcome[0].result == row[1]), \
        outcome
    records = _records(second.result or {}, fmt.split("-")[0])
    keys = [int(r["id"]) for r in records]
    assert keys == [r[0] for r in conn.execute(
        "SELECT id FROM items WHERE tenant = 1 ORDER BY id")]
    assert (second.result or {})["rows"] == len(keys)


@pytest.mark.parametrize("position", ["first", "last-1", "last"])
@pytest.mark.parametrize("before", [True, False], ids=["unrecorded", "recorded"])
def test_a_native_multipart_export_killed_at_a_checkpoint_resumes_to_exactly_the_rows(
        conn: Conn, dsn: str, bucket: str, big: None, tmp_path: Path, before: bool,
        position: str) -> None:
    """S3's native multipart upload (parts of 5 MiB, one upload a job, its id
    in the checkpoint, CompleteMultipartUpload to make it visible): killed
    at its first part, its finalizing phase or once its object is visible,
    before the record or after it; the resumed job holds exactly the rows."""
    options = {**NATIVE_S3, "format": "csv"}
    beats = _checkpoints(conn, dsn, bucket, options, target="big")
    job_id = submit_export(conn, "1", {}, options, target="big")
    with pytest.MonkeyPatch.context() as mp:
        _die_at(mp, {"first": 1, "last-1": beats - 1, "last": beats}[position], before)
        assert run_export(dsn, job_id, bucket).status == "lost"
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (job_id,))
    out = run_export(dsn, job_id, bucket)
    assert out.status == "succeeded", out.error
    assert out.result is not None
    _check(conn, out.result, options, BIG_TENANT_1, tmp_path)
    assert open_uploads(bucket) == []
