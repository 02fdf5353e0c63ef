"""Pause, resume and retry of exports (jobs run by external workers): a paused
export's worker learns it at its next heartbeat and stops, keeping its upload;
resumed, a worker continues it to a byte-identical object. A retried export
resumes its upload when it failed on transient errors (the staged parts are
kept until the job is pruned) and starts over cleanly when they are gone
(a permanent error or a cancel discards them)."""

from __future__ import annotations

import threading
from typing import Any, NoReturn

import psycopg
import pytest

from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.storage import StorageError
from tests.support import (
    checkpoint_parts,
    job,
    leftovers,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    scalar,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"


@pytest.fixture(params=["file-csv", "s3-jsonl-gzip"])
def case(request: pytest.FixtureRequest, conn: Conn) -> tuple[str, dict[str, Any]]:
    if request.param == "file-csv":
        make_items(conn, rows=900)
        return str(request.getfixturevalue("local_dir")), {}
    make_items(conn, rows=3000)
    return str(request.getfixturevalue("bucket")), {"format": "jsonl", "gzip": True}


def uninterrupted(conn: Conn, dsn: str, destination: str, options: dict[str, Any]
                  ) -> tuple[bytes, int]:
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    outcome = run_export(dsn, job_id, destination)
    assert outcome.result is not None and outcome.result["parts"] >= 4
    return object_bytes(outcome.result), int(outcome.result["parts"])


def claim_export(conn: Conn, job_id: int, worker: str = "w1") -> str:
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, %s, '30 seconds')",
                      (job_id, worker))
    assert identity
    return str(identity)


def finished(conn: Conn, job_id: int, expected: bytes, destination: str, *,
             resumed: bool) -> None:
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == expected
    history = row["checkpoint"]["history"]
    if resumed:  # the last attempt continued from a part, not from the start
        assert len(history) >= 2 and history[-1]["part"] > 0, history
    else:
        assert history[-1]["part"] == 0, history
    others = {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE id <> %s AND result ? 'uri'", (job_id,))}
    assert leftovers(destination, {row["result"]["uri"], *others}) == []


def test_pause_a_running_export_then_resume_byte_identical(
        conn: Conn, dsn: str, case: tuple[str, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    destination, options = case
    expected, parts = uninterrupted(conn, dsn, destination, options)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    identity = claim_export(conn, job_id)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", f"part={min(0.3, 3 / parts):.3f}")
    box: list[Outcome] = []
    worker = threading.Thread(
        target=lambda: box.append(Exporter(dsn, job_id, identity, destination).run()))
    worker.start()
    wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, what="two parts")
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    worker.join(60)
    assert [o.status for o in box] == ["paused"]
    paused = job(conn, job_id)
    assert paused["status"] == "paused" and paused["attempts"] == 0
    assert 2 <= checkpoint_parts(conn, job_id) < parts
    # Never handed out while paused, by either claim.
    assert conn.execute("SELECT * FROM pgjobs.claim_export(%s, 'w2')", (job_id,)).fetchall() == []
    assert conn.execute("SELECT * FROM pgjobs.claim('{export}', 'w2')").fetchall() == []
    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    assert run_export(dsn, job_id, destination).status == "succeeded"
    finished(conn, job_id, expected, destination, resumed=True)
    assert job(conn, job_id)["attempts"] == 1
    if not options:
        assert expected == plain_copy(conn, REFERENCE)


class _FailsBeforeFinishing(Exporter):
    """Streams every part, then fails as a storage outage (or a permanent error)
    would, before the object is made visible."""

    retryable = True

    def _finalize(self) -> NoReturn:
        raise StorageError("simulated outage", retryable=self.retryable)


class _FailsForGood(_FailsBeforeFinishing):
    retryable = False


@pytest.mark.parametrize("failure", [_FailsBeforeFinishing, _FailsForGood])
def test_retry_of_a_failed_export(conn: Conn, dsn: str, case: tuple[str, dict[str, Any]],
                                  failure: type[Exporter]) -> None:
    destination, options = case
    expected, _ = uninterrupted(conn, dsn, destination, options)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options, "max_attempts": 1})
    outcome = failure(dsn, job_id, claim_export(conn, job_id), destination).run()
    assert outcome.status == "failed", outcome
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    retried = job(conn, job_id)
    assert (retried["status"], retried["attempts"], retried["error"]) == ("queued", 0, None)
    assert run_export(dsn, job_id, destination).status == "succeeded"
    # Out of attempts on a transient error: the upload was kept and is resumed.
    # A permanent error discarded it: the retry starts over, cleanly.
    finished(conn, job_id, expected, destination, resumed=failure is _FailsBeforeFinishing)


def test_retry_of_a_canceled_export_starts_over(
        conn: Conn, dsn: str, case: tuple[str, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    destination, options = case
    expected, parts = uninterrupted(conn, dsn, destination, options)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    identity = claim_export(conn, job_id)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", f"part={min(0.3, 3 / parts):.3f}")
    box: list[Outcome] = []
    worker = threading.Thread(
        target=lambda: box.append(Exporter(dsn, job_id, identity, destination).run()))
    worker.start()
    wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, what="two parts")
    scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    worker.join(60)
    assert [o.status for o in box] == ["canceled"]
    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    assert run_export(dsn, job_id, destination).status == "succeeded"
    finished(conn, job_id, expected, destination, resumed=False)
