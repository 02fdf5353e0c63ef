"""An export whose worker died (SIGKILL, or fenced off) and that then ended
without a worker (canceled, or out of attempts: pgjobs.prune's rescue) leaves
the objects its checkpoint records: Parquet files, the part objects of a
parallel export. Nothing else removes them (the stale sweep takes temporary
files and staged parts only), so pgjobs.prune queues every object the pruned
job's checkpoint and its parts record, not only result.uris; a worker's
housekeeping then leaves no object of the job behind."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.worker import Worker
from tests.support import job, make_items, start_worker, submit_export, wait_for

Conn = psycopg.Connection[Any]


def _job_objects(local_dir: str, job_id: int) -> list[str]:
    """Every file below the storage that belongs to job_id: its object, its part
    objects, its Parquet folder (temporary files and staged parts included)."""
    root = storage.parse(local_dir).path
    found = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root).split(os.sep)
            ours = any(p == str(job_id) or p.split(".", 1)[0] == str(job_id)
                       or p.lstrip(".").split(".", 1)[0] == str(job_id) for p in rel)
            if ours or ".pgjobs-" in name:
                found.append(path)
    return sorted(found)


def _recorded(conn: Conn, job_id: int) -> int:
    """Files or part objects job_id's checkpoints record so far."""
    row = conn.execute("""
        SELECT coalesce(jsonb_array_length(j.checkpoint -> 'files'), 0)
             + coalesce((SELECT sum(coalesce(jsonb_array_length(p.checkpoint -> 'files'), 0)
                                    + CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END)
                           FROM pgjobs.export_parts p WHERE p.job_id = j.id), 0)
          FROM pgjobs.jobs j WHERE j.id = %s""", (job_id,)).fetchone()
    return int(row[0]) if row else 0


def _kill_after(conn: Conn, dsn: str, local_dir: str, job_id: int, recorded: int) -> None:
    """SIGKILL the worker once `recorded` objects are recorded. The parts of a
    parallel export run side by side and end within moments of each other, so
    a loaded machine's late poll could find the job already ended (CI once saw
    it succeeded): the join of the parts waits 60 s at its first checkpoint,
    and the kill always lands before the worker can end the job. (A part's own
    finalize must not wait: its success is what is recorded.)"""
    worker = start_worker(dsn, local_dir, delays="part=0.3,join=60")
    try:
        wait_for(lambda: _recorded(conn, job_id) >= recorded, timeout=90,
                 what=f"{recorded} objects recorded")
        worker.send_signal(signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=30)


def _end_without_worker(conn: Conn, job_id: int, how: str) -> None:
    """The dead worker's job ends by pgjobs.prune's rescue: canceled (a cancel
    asked meanwhile) or failed (no attempt left)."""
    if how == "canceled":
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    else:
        conn.execute("UPDATE pgjobs.jobs SET max_attempts = attempts WHERE id = %s", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s AND status = 'running'", (job_id,))
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND status = 'running'", (job_id,))
    conn.execute("SELECT pgjobs.prune()")
    assert job(conn, job_id)["status"] == how


def _prune_and_housekeep(conn: Conn, dsn: str, local_dir: str, job_id: int) -> int:
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' WHERE id = %s",
                 (job_id,))
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None and summary[0]["deleted"] == 1
    # The stale sweep too (temporary files, staged parts): any age.
    from datetime import timedelta
    Worker(dsn, local_dir, once=True, poll=0.1, stale_after=timedelta(0)).run()
    return int(summary[0]["objects_queued"])


CASES = {
    "parquet": {"format": "parquet", "chunk_rows": 20, "part_size": 4096},
    "parquet-parallel": {"format": "parquet", "chunk_rows": 20, "part_size": 4096,
                         "parallel": 3},
    "csv-parallel": {"chunk_rows": 20, "part_size": 1024, "parallel": 3},
    "jsonl-parallel": {"format": "jsonl", "chunk_rows": 20, "part_size": 1024,
                       "parallel": 3},
}


@pytest.mark.parametrize("how", ["canceled", "failed"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_an_export_ended_after_its_worker_died_leaves_nothing_once_pruned(
        conn: Conn, dsn: str, local_dir: str, case: str, how: str) -> None:
    pytest.importorskip("pyarrow")
    make_items(conn, rows=1500)
    job_id = submit_export(conn, "1", {}, {**CASES[case], "lease": "60 seconds"})
    _kill_after(conn, dsn, local_dir, job_id, 2)
    assert _job_objects(local_dir, job_id), "the dead worker wrote nothing"
    _end_without_worker(conn, job_id, how)
    queued = _prune_and_housekeep(conn, dsn, local_dir, job_id)
    assert queued >= 2
    assert _job_objects(local_dir, job_id) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_part_objects_a_succeeded_parallel_export_could_not_remove_go_with_it(
        conn: Conn, dsn: str, local_dir: str, fmt: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator completes, then removes the part objects, best effort: a
    worker killed in between (here: every removal failing) leaves them next to
    the export's object, listed nowhere. Pruning the export removes them."""
    from tests.support import run_export

    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, {"format": fmt, "chunk_rows": 20, "part_size": 1024,
                                           "parallel": 3})
    with monkeypatch.context() as patch:
        def refuse(uri: str) -> bool:
            raise storage.StorageError(f"cannot delete {uri}", retryable=True)
        patch.setattr(storage, "delete", refuse)
        outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    result = job(conn, job_id)["result"]
    left = _job_objects(local_dir, job_id)
    assert len(left) == 4 and storage.parse(result["uri"]).path in left
    _prune_and_housekeep(conn, dsn, local_dir, job_id)
    assert _job_objects(local_dir, job_id) == []


@pytest.mark.parametrize("how", ["canceled", "failed"])
@pytest.mark.parametrize("case", ["parquet", "parquet-parallel"])
def test_a_file_written_but_not_recorded_when_the_worker_died_goes_too(
        conn: Conn, dsn: str, local_dir: str, case: str, how: str) -> None:
    """The worker is killed after writing a Parquet file and before recording it
    (the window the test above hits now and then): the checkpoint names the
    file it is writing before it writes it, so prune finds it as well."""
    pytest.importorskip("pyarrow")
    make_items(conn, rows=1500)
    job_id = submit_export(conn, "1", {}, {**CASES[case], "lease": "60 seconds"})
    worker = start_worker(dsn, local_dir, delays="written=30")
    try:
        wait_for(lambda: len([p for p in _job_objects(local_dir, job_id)
                              if p.endswith(".parquet")]) > _recorded(conn, job_id),
                 timeout=90, what="a file written and not recorded")
        worker.send_signal(signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=30)
    unrecorded = [p for p in _job_objects(local_dir, job_id) if p.endswith(".parquet")]
    assert len(unrecorded) > _recorded(conn, job_id)
    _end_without_worker(conn, job_id, how)
    _prune_and_housekeep(conn, dsn, local_dir, job_id)
    assert _job_objects(local_dir, job_id) == []


def test_a_parquet_files_temporary_file_goes_with_the_stale_sweep(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """A worker killed while writing a Parquet file on disk left the file's
    temporary file in the job's folder: named by no checkpoint, and its name
    (part-....parquet...) held no job id for the stale sweep, so it stayed for
    good (CI at 5b03823). The sweep takes it by its folder, the job's."""
    pytest.importorskip("pyarrow")
    make_items(conn, rows=1500)
    job_id = submit_export(conn, "1", {}, {**CASES["parquet"], "lease": "60 seconds"})
    _kill_after(conn, dsn, local_dir, job_id, 1)
    files = [p for p in _job_objects(local_dir, job_id) if p.endswith(".parquet")]
    assert files
    leftover = Path(storage.write_temp_path(os.path.join(os.path.dirname(files[0]),
                                                         "part-00099.parquet")))
    leftover.write_bytes(b"half a file")
    _end_without_worker(conn, job_id, "canceled")
    _prune_and_housekeep(conn, dsn, local_dir, job_id)
    assert _job_objects(local_dir, job_id) == []


@pytest.mark.parametrize("folder", ["", "sub/"])
def test_the_stale_sweep_takes_the_previous_releases_temporary_files(
        tmp_path: Path, folder: str) -> None:
    """Before stop 32, storage.write filled `{name}.pgjobs-tmp` (not hidden) next
    to the object: a worker killed mid-write left it, and the sweep, which knew
    only `.{name}.pgjobs-{token}.tmp`, left it for good. It now takes them too,
    by the same rule: the job's (the object name's leading number, or a Parquet
    file's folder), ended, and older than the sweep's age; nothing else."""
    root = tmp_path / "exports"
    base = root / folder
    (base / "7").mkdir(parents=True)
    (base / "9").mkdir(parents=True)
    (base / "misc").mkdir(parents=True)
    doomed = [base / "7" / "part-00003.parquet.pgjobs-tmp",  # job 7's Parquet folder
              base / "8.rejects.csv.pgjobs-tmp"]              # job 8's object
    kept = [base / "9" / "part-00001.parquet.pgjobs-tmp",    # job 9 is still running
            base / "misc" / "notes.pgjobs-tmp",               # no job's
            base / "7" / "part-00004.parquet.pgjobs-tmpx",    # not the pattern
            base / "7.csv"]                                   # an object
    for path in doomed + kept:
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    fresh = base / "7" / "part-00005.parquet.pgjobs-tmp"      # younger than the age
    fresh.write_bytes(b"x")
    asked: list[int] = []

    def active(jobs: list[int]) -> set[int]:
        asked.extend(jobs)
        return {9}

    assert storage.sweep_stale(f"file://{root}", active, timedelta(hours=1)) == len(doomed)
    assert [p for p in doomed if p.exists()] == []
    assert [p for p in kept + [fresh] if not p.exists()] == []
    assert set(asked) <= {7, 8, 9}
