"""A Parquet export's folder holds exactly the files its result lists. A worker
that dies between writing a file and recording it leaves that file behind;
the successor writes it again under the same name, unless it writes fewer
files from there (the rows after its cursor deleted, or changed in size, since):
then the file of the dead worker, with rows the export does not hold, stayed
in the folder (`result.uri`) that a reader takes whole, and no prune removed it.
Such a file is removed only on proof that the job made it (the digest of its
bytes, checkpointed before the write): files at the export's names that no
record proves the job's are another's, left as they are, and fail the job."""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parquet, storage
from tests.support import job, make_items, run_export, submit_export

pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

Conn = psycopg.Connection[Any]
OPTIONS = {"format": "parquet", "chunk_rows": 20, "part_size": 4096}


class Crash(KeyboardInterrupt):
    """The worker dies here (an interrupt: the job is handed back, nothing cleaned)."""


def _crash_before_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    """The third file is written (the exporter's own conditional write, after
    the checkpoint named it with the digest of its bytes), then the worker
    dies before the checkpoint records it."""
    original = storage.create
    seen = {"n": 0}

    def create(uri: str, data: bytes) -> bool:
        created = original(uri, data)
        seen["n"] += 1
        if seen["n"] == 3:
            raise Crash()
        return created

    monkeypatch.setattr(storage, "create", create)


def _folder_files(uri: str) -> list[str]:
    folder = storage.parse(uri).path
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def _rows_read(uris: list[str]) -> list[int]:
    return sorted(i for u in uris for i in pq.read_table(storage.parse(u).path)["id"].to_pylist())


def _expected(conn: Conn, upto: int | None = None) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT id FROM items WHERE tenant = 1 AND id <= coalesce(%s, id) ORDER BY id",
        (upto,))]


def _check_folder(conn: Conn, job_id: int, upto: int | None = None) -> None:
    result = job(conn, job_id)["result"]
    assert _folder_files(result["uri"]) == sorted(storage.parse(u).path for u in result["uris"])
    # A reader of the folder reads the export's rows, each once.
    read = _rows_read([f"file://{p}" for p in _folder_files(result["uri"])])
    assert read == _expected(conn, upto) and result["rows"] == len(read)


@pytest.mark.parametrize("change", ["deleted", "masked"])
def test_a_file_written_but_not_recorded_never_stays_in_the_folder(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, OPTIONS)
    with monkeypatch.context() as patch:
        _crash_before_recording(patch)
        first = run_export(dsn, job_id, local_dir)
    assert first.status == "released", first
    files = job(conn, job_id)["checkpoint"]["files"]
    assert len(_folder_files(files[0]["uri"].rsplit("/", 1)[0] + "/")) == len(files) + 1
    # The rows after the last recorded file go before the successor resumes
    # (deleted by any writer, or masked by a delete job submitted meanwhile):
    # it writes no file from there.
    after = int(files[-1]["cursor"])
    if change == "deleted":
        assert conn.execute("DELETE FROM items WHERE tenant = 1 AND id > %s", (after,)).rowcount
    else:
        conn.execute("SELECT pgjobs.submit_delete('items', '1', %s::jsonb)",
                     (json.dumps({"id": {"$gt": after}}),))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    _check_folder(conn, job_id, after)


@pytest.mark.parametrize("parallel_n", [1, 3])
def test_files_past_the_last_recorded_one_that_no_record_proves_stay(
        conn: Conn, dsn: str, local_dir: str, parallel_n: int) -> None:
    """Files at every part's next names after its last recorded one, which no
    checkpoint of the job says it wrote (put there by someone else: another
    pgjobs database's export of the same id): they were removed by name, so
    an export deleted objects it never made. They stay now, byte for byte,
    and the job, whose folder a reader takes whole, fails for good (42710)
    naming them. (The job's own such files, which its checkpoint proves,
    go: test_a_file_written_but_not_recorded_never_stays_in_the_folder.)"""
    make_items(conn, rows=900)
    options = {**OPTIONS, "parallel": parallel_n}
    reference = run_export(dsn, submit_export(conn, "1", {}, options), local_dir)
    assert reference.status == "succeeded" and reference.result is not None
    job_id = submit_export(conn, "1", {}, options)
    names = [u.rsplit("/", 1)[1] for u in reference.result["uris"]]
    folder = storage.parse(reference.result["uri"]).path.rstrip("/").rsplit("/", 1)[0]
    ours = os.path.join(folder, str(job_id))
    os.makedirs(ours)
    stale = []
    for part in range(1, parallel_n + 1):
        mine = [n for n in names if parallel_n == 1 or n.startswith(f"part-{part:05d}-")]
        head = mine[-1].rsplit("-", 1)[0]
        for extra in range(len(mine), len(mine) + 2):
            stale.append(os.path.join(ours, f"{head}-{extra:05d}.parquet"))
    data = storage.read(reference.result["uris"][0])
    for path in stale:
        with open(path, "wb") as f:
            f.write(data)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and "[42710]" in outcome.error, outcome.error
    assert "pgjobs.retry" in outcome.error
    # The job's error is that of the part that failed first (parallel parts
    # run side by side): it names that part's files, whichever it is.
    assert any(path.rsplit("/", 1)[1] in outcome.error for path in stale), outcome.error
    for path in stale:
        with open(path, "rb") as f:
            assert f.read() == data, f"{path} was written over or removed"


def test_a_stale_worker_never_writes_a_file_over_its_successors(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stalls (a long GC pause, SIGSTOP, a frozen VM) between reading
    a file's rows and writing the file loses its lease; its successor resumes,
    writes that file from the rows as they are now and completes. The stale
    worker, waking up, wrote its file over the successor's (the same name: a
    file's name is its position) and only then met the fence: the succeeded
    export's file held rows the export does not (its result's SHA-256 no longer
    its bytes). A file is written only under a lease checked just before."""
    import threading

    from pgjobs.poller.export import Exporter

    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**OPTIONS, "lease": "60 seconds"})
    original = parquet.ParquetExport._file_done
    stalled, resume = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def file_done(self: parquet.ParquetExport, done: parquet.FileDone) -> None:
        n = seen[self.ex.worker] = seen.get(self.ex.worker, 0) + 1
        if n == 2 and len(seen) == 1:  # the first worker, at its second file
            stalled.set()
            resume.wait(60)
        original(self, done)

    monkeypatch.setattr(parquet.ParquetExport, "_file_done", file_done)
    # A long lease: it lapses when the test says so, not in a stall of the
    # loaded machine before the worker reaches the stall the test makes.
    claimed = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'stale', "
                           "'60 seconds'::interval)", (job_id,)).fetchone()
    assert claimed is not None
    box: list[Any] = []
    stale = threading.Thread(target=lambda: box.append(
        Exporter(dsn, job_id, claimed[0], local_dir).run()))
    stale.start()
    try:
        assert stalled.wait(60)
        # The rows change, the lease lapses, a successor exports them as they are.
        conn.execute("UPDATE items SET note = 'changed' WHERE tenant = 1")
        conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                     "WHERE id = %s", (job_id,))
        assert run_export(dsn, job_id, local_dir).status == "succeeded"
    finally:
        resume.set()
        stale.join(60)
    assert box and box[0].status == "lost"
    result = job(conn, job_id)["result"]
    sha256, bad = parquet.read_back(job(conn, job_id)["checkpoint"]["files"])
    assert bad is None and sha256 == result["sha256"]
    # The file the stale worker had recorded before it stalled is kept; every
    # file after it is the successor's, of the rows as changed.
    notes = [r for u in result["uris"][1:]
             for r in pq.read_table(storage.parse(u).path)["note"].to_pylist()]
    assert notes and set(notes) == {"changed"}
    _check_folder(conn, job_id)


class Stop(KeyboardInterrupt):
    """The worker stops before the read-back (the job is handed back)."""


@pytest.mark.parametrize("change", ["deleted", "masked"])
def test_files_dropped_by_the_read_back_after_a_missing_one_never_stay(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    """The read-back finds file 1 missing (removed by hand, a lifecycle rule):
    it drops files 1.. from the checkpoint and the retry writes them again from
    file 0's cursor. When the rows after that cursor went meanwhile, the retry
    writes no file: the removal of unrecorded files stopped at the first name
    not there (file 1), leaving files 2.. (with rows the export no longer
    holds) in the succeeded export's folder."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, OPTIONS)
    with monkeypatch.context() as patch:
        def stop(self: parquet.ParquetExport) -> Any:
            raise Stop()
        patch.setattr(parquet.ParquetExport, "_finish", stop)
        assert run_export(dsn, job_id, local_dir).status == "released"
    files = job(conn, job_id)["checkpoint"]["files"]
    assert len(files) >= 4
    os.remove(storage.parse(files[1]["uri"]).path)
    after = int(files[0]["cursor"])
    if change == "deleted":
        assert conn.execute("DELETE FROM items WHERE tenant = 1 AND id > %s", (after,)).rowcount
    else:
        conn.execute("SELECT pgjobs.submit_delete('items', '1', %s::jsonb)",
                     (json.dumps({"id": {"$gt": after}}),))
    assert run_export(dsn, job_id, local_dir).status == "retrying"
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    _check_folder(conn, job_id, after)


@pytest.mark.parametrize("parallel_n", [1, 3])
def test_files_past_a_gap_in_their_names_that_no_record_proves_stay(
        conn: Conn, dsn: str, local_dir: str, parallel_n: int) -> None:
    """Files at this export's names past its last recorded one, with gaps in
    their numbers, none of which the job's checkpoint says it wrote: never
    removed (they were, by name); the job fails for good (42710), and every
    other file of the folder is left alone too."""
    make_items(conn, rows=900)
    options = {**OPTIONS, "parallel": parallel_n}
    reference = run_export(dsn, submit_export(conn, "1", {}, options), local_dir)
    assert reference.status == "succeeded" and reference.result is not None
    job_id = submit_export(conn, "1", {}, options)
    names = [u.rsplit("/", 1)[1] for u in reference.result["uris"]]
    folder = storage.parse(reference.result["uri"]).path.rstrip("/").rsplit("/", 1)[0]
    ours = os.path.join(folder, str(job_id))
    os.makedirs(ours)
    stale = []
    for part in range(1, parallel_n + 1):
        mine = [n for n in names if parallel_n == 1 or n.startswith(f"part-{part:05d}-")]
        head = mine[-1].rsplit("-", 1)[0]
        for extra in (len(mine) + 1, len(mine) + 7, 100000 + len(mine)):
            stale.append(os.path.join(ours, f"{head}-{extra:05d}.parquet"))
    others = [os.path.join(ours, n) for n in ("notes.txt", "part-x.parquet")]
    data = storage.read(reference.result["uris"][0])
    for path in stale + others:
        with open(path, "wb") as f:
            f.write(data)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed" and "[42710]" in (outcome.error or ""), outcome
    for path in stale + others:
        with open(path, "rb") as f:
            assert f.read() == data, f"{path} was written over or removed"
