"""Parallel exports survive their workers: a SIGKILL mid-export, a cancel, a
failed part, another worker process helping; the one object is always the one a
`parallel: 1` export writes, with the right SHA-256."""


from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel
from pgjobs.poller.export import Exporter, Outcome, Settings
from pgjobs.poller.storage import StorageError
from tests.support import (
    ITEMS_TENANT_1,
    LONG_LEASE,
    MANY_PARTS,
    expire_leases,
    job,
    leftovers,
    make_items,
    object_bytes,
    part_rows,
    plain_copy,
    run_export,
    scalar,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]


def part_progress(conn: Conn, job_id: int) -> int:
    return sum(int((p["checkpoint"] or {}).get("parts", 0)) for p in part_rows(conn, job_id))


def test_sigkill_mid_parallel_export_then_another_worker_finishes(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=900)
    expected = plain_copy(conn, ITEMS_TENANT_1)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    first = start_worker(dsn, local_dir, "--once", "--lease", LONG_LEASE, delays="part=0.2")
    try:
        wait_for(lambda: part_progress(conn, job_id) >= 6, what="parts checkpointed")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = {p["part"]: (p["checkpoint"] or {}).get("parts", 0) for p in part_rows(conn, job_id)}
    assert len(before) == 3 and sum(before.values()) >= 6
    expire_leases(conn, job_id)
    second = start_worker(dsn, local_dir, "--once")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == expected  # bytes and sha256
    assert row["done"] == row["result"]["rows"] == 300
    for p in part_rows(conn, job_id):
        assert p["status"] == "succeeded"
        history = p["checkpoint"]["history"]
        if before[p["part"]]:
            # Continued from its checkpoint, not restarted.
            assert len(history) >= 2 and history[-1]["part"] == before[p["part"]], history
    assert leftovers(local_dir, {row["result"]["uri"]}) == []


def test_sigkill_mid_parallel_export_on_s3(conn: Conn, dsn: str, bucket: str) -> None:
    make_items(conn, rows=900)
    one = run_export(dsn, submit_export(conn, "1", {}, {**MANY_PARTS, "format": "jsonl"}), bucket)
    assert one.result is not None
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "format": "jsonl", "parallel": 2})
    first = start_worker(dsn, bucket, "--once", "--lease", LONG_LEASE, delays="part=0.2")
    try:
        wait_for(lambda: part_progress(conn, job_id) >= 4, what="parts checkpointed")
    finally:
        first.kill()
        first.communicate(timeout=10)
    expire_leases(conn, job_id)
    second = start_worker(dsn, bucket, "--once")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == object_bytes(one.result)


def test_another_worker_process_exports_parts(conn: Conn, dsn: str, local_dir: str) -> None:
    """The job's worker places and splits it; a second `pgjobs worker` process takes
    the parts (idle slots help); the job's worker then joins them."""
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'coordinator', "
                      "'5 minutes')", (job_id,))
    coordinator = Exporter(dsn, job_id, identity, local_dir)
    coordinator.job = job(conn, job_id)
    coordinator.control.lease = 300.0
    coordinator.settings = Settings.of(coordinator.job["payload"])
    coordinator.format, coordinator.gzip = "csv", False
    coordinator._grain({})
    try:
        assert parallel.place(coordinator) == 3
    finally:
        coordinator.control.close()
    helper = start_worker(dsn, local_dir, "--once", "--concurrency", "2")
    _, err = helper.communicate(timeout=120)
    assert helper.returncode == 0, err
    parts = part_rows(conn, job_id)
    assert [p["status"] for p in parts] == ["succeeded"] * 3
    assert not any(p["worker"].startswith("coordinator#") for p in parts)
    assert len({p["worker"] for p in parts}) == 3  # a claim identity per part
    assert job(conn, job_id)["done"] == 200  # the job's progress sums its parts'
    outcome = Exporter(dsn, job_id, identity, local_dir).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)


def test_cancel_stops_every_part(conn: Conn, dsn: str, local_dir: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.2")
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    thread.start()
    wait_for(lambda: part_progress(conn, job_id) >= 3, what="parts checkpointed")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert box[0].status == "canceled"
    assert job(conn, job_id)["status"] == "canceled"
    parts = part_rows(conn, job_id)
    assert all(p["lease_expires_at"] is None for p in parts)
    assert any(p["status"] != "succeeded" for p in parts)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim_export_part(%s, 'late')",
                  (job_id,)) == 0
    assert leftovers(local_dir, set()) == []


def test_a_failed_part_is_retried_alone(conn: Conn, dsn: str, local_dir: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    failures: list[int] = []
    finalize = parallel.PartExporter._finalize

    def flaky(self: parallel.PartExporter) -> Outcome:
        if self.part == 2 and not failures:
            failures.append(self.part)
            raise StorageError("injected: storage hiccup at the end of part 2", retryable=True)
        return finalize(self)

    monkeypatch.setattr(parallel.PartExporter, "_finalize", flaky)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    attempts = {p["part"]: p["attempts"] for p in part_rows(conn, job_id)}
    assert attempts == {1: 1, 2: 2, 3: 1}
    row = job(conn, job_id)
    assert row["attempts"] == 1  # the job itself was not retried


def test_a_part_failing_for_good_fails_the_job_and_retry_resumes(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})

    def broken(self: parallel.PartExporter) -> Outcome:
        raise StorageError("injected: refused for good", retryable=False)

    with monkeypatch.context() as patch:
        patch.setattr(parallel.PartExporter, "_finalize", broken)
        outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and "refused for good" in row["error"]
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)


def test_part_calls_are_fenced(conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 minute')",
                      (job_id,))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT pgjobs.export_parts_split(%s, 'c')", (job_id,))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 2
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 2
    mine = conn.execute("SELECT part, worker FROM pgjobs.claim_export_part(%s, 'p', "
                        "'1 minute')", (job_id,)).fetchone()
    assert mine is not None
    part, worker = mine
    for stale in ("p", worker + "x", identity):
        assert scalar(conn, "SELECT pgjobs.export_part_heartbeat(%s, %s, %s, 5)",
                      (job_id, part, stale)) is False
        assert scalar(conn, "SELECT pgjobs.export_part_finish(%s, %s, %s, 'succeeded')",
                      (job_id, part, stale)) is None
    assert scalar(conn, "SELECT pgjobs.export_part_heartbeat(%s, %s, %s, 5)",
                  (job_id, part, worker)) is True
    assert job(conn, job_id)["done"] == 5
    # A pause pending on the job: the part's heartbeat refuses, nothing more is claimed.
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs.export_part_heartbeat(%s, %s, %s)",
                  (job_id, part, worker)) is False
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim_export_part(%s, 'q')", (job_id,)) == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.export_part_finish(%s, %s, %s, 'done')",
                     (job_id, part, worker))


def test_pause_and_resume_a_parallel_export(conn: Conn, dsn: str, local_dir: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 3})
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.2")
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    thread.start()
    wait_for(lambda: part_progress(conn, job_id) >= 3, what="parts checkpointed")
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    thread.join(timeout=30)
    assert box[0].status == "paused"
    row = job(conn, job_id)
    assert row["status"] == "paused"
    parts = part_rows(conn, job_id)
    assert all(p["lease_expires_at"] is None for p in parts)
    kept = {p["part"]: (p["checkpoint"] or {}).get("parts", 0) for p in parts}
    assert sum(kept.values()) >= 3
    assert all(p["attempts"] <= 1 for p in parts)  # a hand-back is not an attempt
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "")
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    for p in part_rows(conn, job_id):
        if kept[p["part"]] and p["part"] in kept:
            assert p["checkpoint"]["history"][-1]["part"] >= kept[p["part"]]


def test_cli_export_parallel(conn: Conn, dsn: str, local_dir: str) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    make_items(conn, rows=300)
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "items",
                                       "--scope", "1", "--parallel", "2"])
    assert result.exit_code == 0, result.output
    uri = result.stdout.strip().splitlines()[-1]
    row = job(conn, int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs")))
    assert row["payload"]["parallel"] == 2 and row["result"]["uri"] == uri
    assert object_bytes(row["result"]) == plain_copy(conn, ITEMS_TENANT_1)
    assert len(part_rows(conn, row["id"])) == 2
    bad = CliRunner().invoke(main, ["--dsn", dsn, "export", "items", "--scope", "1",
                                    "--parallel", "0"])
    assert bad.exit_code == 2


def test_a_part_object_changed_before_the_join_never_completes(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The join checks every part's bytes against the SHA-256 the part recorded:
    a part object overwritten after its part ended is caught, the job is not
    completed, and no object is left at the export's key."""
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    complete = parallel.PartExporter._complete

    def tamper(self: parallel.PartExporter, size: int, sha256: str) -> Outcome:
        outcome = complete(self, size, sha256)
        if self.part == 2:
            path = self.location.path
            with open(path, "r+b") as f:
                f.seek(10)
                byte = f.read(1)
                f.seek(10)
                f.write(bytes([byte[0] ^ 1]))
        return outcome

    monkeypatch.setattr(parallel.PartExporter, "_complete", tamper)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "retrying", outcome
    row = job(conn, job_id)
    assert row["status"] == "queued" and row["result"] in (None, {})
    assert "not what they wrote" in row["error"]
    uri = row["checkpoint"]["uri"]
    assert leftovers(local_dir, set()) and uri not in leftovers(local_dir, set())
