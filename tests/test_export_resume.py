"""Exports survive their workers: SIGKILL at several points and another worker
resumes to a byte-identical object; a stale worker cannot complete; SIGTERM hands
the job back; a database restart mid-export is ridden out."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.migrate import migrate
from pgjobs.poller import storage
from pgjobs.poller.export import Exporter, Outcome
from tests.support import (
    checkpoint_parts,
    content,
    expire_lease,
    job,
    leftovers,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    scalar,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
# ~1 KB parts of one 5-row chunk each: 60 parts for tenant 1's 300 rows.
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn, rows=900)


@pytest.fixture(params=["file-csv", "s3-jsonl-gzip"])
def case(request: pytest.FixtureRequest, conn: Conn) -> tuple[str, dict[str, Any]]:
    """(destination, options), with the items table made: zlib emits compressed
    output about every 48 KB of input, so gzip needs more rows to make parts."""
    if request.param == "file-csv":
        make_items(conn, rows=900)
        return str(request.getfixturevalue("local_dir")), {}
    make_items(conn, rows=3000)
    return str(request.getfixturevalue("bucket")), {"format": "jsonl", "gzip": True}


def uninterrupted(conn: Conn, dsn: str, destination: str, options: dict[str, Any]
                  ) -> tuple[bytes, int]:
    """The object (and part count) of the same export run without interruption (the
    job id is not part of the content)."""
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    outcome = run_export(dsn, job_id, destination)
    assert outcome.result is not None
    assert outcome.result["parts"] >= 4, "too few parts to interrupt in the middle"
    return object_bytes(outcome.result), int(outcome.result["parts"])


def lapse_lease(conn: Conn, job_id: int) -> None:
    """The dead worker's lease lapses now. The workers here hold a long lease and
    the test ends it, rather than a lease of a second or two that ends by the
    clock: a loaded machine that paused the live worker longer than that lost it
    the job before the point where the test stops it."""
    assert job(conn, job_id)["lease_expires_at"] is not None
    expire_lease(conn, job_id)


def finish_with_new_worker(dsn: str, destination: str) -> subprocess.CompletedProcess[str]:
    worker = start_worker(dsn, destination, "--once")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    return subprocess.CompletedProcess(worker.args, worker.returncode, out, err)


def assert_resumed(conn: Conn, job_id: int, expected: bytes, destination: str) -> None:
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == expected
    history = row["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # continued, not restarted
    assert leftovers(destination, {row["result"]["uri"], *_other_objects(conn, job_id)}) == []


def test_sigkill_mid_stream_then_another_worker_resumes(
        conn: Conn, dsn: str, case: tuple[str, dict[str, Any]]) -> None:
    destination, options = case
    expected, parts = uninterrupted(conn, dsn, destination, options)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    first = start_worker(dsn, destination, "--once", "--lease", "120s",
                         delays=f"part={min(0.3, 3 / parts):.3f}")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= parts // 2, what="half the parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    assert job(conn, job_id)["status"] == "running"
    lapse_lease(conn, job_id)
    finish_with_new_worker(dsn, destination)
    assert_resumed(conn, job_id, expected, destination)
    assert job(conn, job_id)["attempts"] == 2
    if options.get("format") != "jsonl":
        assert expected == plain_copy(conn, REFERENCE)


def test_sigkill_while_finalizing_then_another_worker_finishes(
        conn: Conn, dsn: str, case: tuple[str, dict[str, Any]]) -> None:
    destination, options = case
    expected, _ = uninterrupted(conn, dsn, destination, options)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    first = start_worker(dsn, destination, "--once", "--lease", "120s", delays="finalize=60")
    try:
        wait_for(lambda: (job(conn, job_id)["checkpoint"] or {}).get("phase")
                 == "finalizing", what="the finalizing phase")
    finally:
        first.kill()
        first.communicate(timeout=10)
    lapse_lease(conn, job_id)
    finish_with_new_worker(dsn, destination)
    assert_resumed(conn, job_id, expected, destination)


class _CrashAfterVisible(Exporter):
    """Makes the object visible, then 'dies' before completing the job."""

    def _complete(self, size: int, sha256: str) -> Outcome:
        return Outcome(self.job_id, "lost", error="simulated crash")


def test_crash_between_visible_object_and_complete(
        conn: Conn, dsn: str, case: tuple[str, dict[str, Any]]) -> None:
    destination, options = case
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    crasher = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'crasher', '120 seconds')",
                     (job_id,))
    _CrashAfterVisible(dsn, job_id, crasher, destination).run()
    uri = job(conn, job_id)["checkpoint"]["uri"]
    visible = storage.read(uri)
    lapse_lease(conn, job_id)
    finish_with_new_worker(dsn, destination)
    row = job(conn, job_id)
    assert row["status"] == "succeeded"
    assert object_bytes(row["result"]) == visible
    assert leftovers(destination, {uri}) == []


def test_a_stale_worker_cannot_complete_or_overwrite(
        conn: Conn, dsn: str, items: None, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _ = uninterrupted(conn, dsn, bucket, {})
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    stale_identity = scalar(
        conn, "SELECT worker FROM pgjobs.claim_export(%s, 'stale', '30 seconds')", (job_id,))
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    stale = Exporter(dsn, job_id, stale_identity, bucket)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(stale.run()))
    thread.start()
    wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
    # The stale worker hangs past its lease; another worker takes the job over.
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (job_id,))
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "")
    with psycopg.connect(dsn, autocommit=True) as other:
        claimed = other.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['export'], 'fresh')")
        rows = claimed.fetchall()
        assert [r[0] for r in rows] == [job_id]
    fresh = Exporter(dsn, job_id, rows[0][1], bucket).run()
    thread.join(timeout=30)
    assert fresh.status == "succeeded"
    assert box and box[0].status == "lost"
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["worker"] == rows[0][1]
    assert object_bytes(row["result"]) == expected
    # Late calls of the stale worker change nothing.
    with db.connect(dsn) as late:
        for late_worker in (stale_identity, "stale", "fresh"):
            assert not db.complete(late, job_id, late_worker, {"uri": "bogus"})
            assert not db.heartbeat(late, job_id, late_worker, 1, {"bogus": True})
    assert job(conn, job_id)["result"] == row["result"]
    assert leftovers(bucket, {row["result"]["uri"], *_other_objects(conn, job_id)}) == []


def _other_objects(conn: Conn, job_id: int) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE id <> %s AND result ? 'uri'", (job_id,))}


def test_sigterm_checkpoints_releases_and_exits(
        conn: Conn, dsn: str, items: None, local_dir: str) -> None:
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    worker = start_worker(dsn, local_dir, delays="part=0.05")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit after SIGTERM")
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "queued" and row["attempts"] == 0 and row["worker"] is not None
    assert row["checkpoint"]["parts"] >= 3
    # No lease to wait for: the next worker takes it at once and continues.
    finish_with_new_worker(dsn, local_dir)
    assert_resumed(conn, job_id, plain_copy(conn, REFERENCE), local_dir)


# --- a real database restart ----------------------------------------------------------


@pytest.fixture
def restartable() -> Iterator[Any]:
    """A cluster of its own, for a test that restarts it."""
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_database_restart_mid_export(restartable: Any, local_dir: str) -> None:
    dsn = restartable.url()
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_items(conn, rows=900)
        job_id = submit_export(conn, "1", {}, MANY_PARTS)
        expected = plain_copy(conn, REFERENCE)
    worker = start_worker(dsn, local_dir, "--once", "--lease", "60s", delays="part=0.05")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: checkpoint_parts(conn, job_id) >= 5, what="five parts")
        restartable.terminate()
        time.sleep(1.0)
        restartable.start()
        out, err = worker.communicate(timeout=90)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = job(conn, job_id)
    assert row["status"] == "succeeded", (row["error"], err)
    assert row["attempts"] == 1  # the same attempt rode it out
    assert content(row["result"]) == expected
