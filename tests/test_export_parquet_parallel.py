"""Parquet with `parallel` > 1: each part writes its own files of its key range
into the export's folder; `result.uris` lists every file in key order, and the
files read back (pyarrow and DuckDB) as the source rows; resumable per part after
a SIGKILL, retried per part, canceled and pruned as a whole."""


from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel, storage
from pgjobs.poller.export import Outcome
from pgjobs.poller.storage import StorageError
from pgjobs.poller.worker import Worker
from tests.support import (
    LONG_LEASE,
    expire_leases,
    job,
    part_rows,
    run_export,
    scalar,
    start_worker,
    submit_export,
    wait_for,
)
from tests.test_export_parquet import check_values, local_path, make_typed, read_arrow

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

Conn = psycopg.Connection[Any]
SMALL = {"format": "parquet", "chunk_rows": 100, "part_size": 4096,
         "row_group_bytes": 1048576}
NAME = re.compile(r"part-(\d{5})-(\d{5})\.parquet$")


def files_recorded(conn: Conn, job_id: int) -> int:
    return sum(len((p["checkpoint"] or {}).get("files") or []) for p in part_rows(conn, job_id))


def check_layout(conn: Conn, job_id: int, parts: int) -> dict[str, Any]:
    """The result lists every file of every part, in key order, under the export's
    folder, and nothing else is there; sizes and the SHA-256 of the files in order
    are the result's."""
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    result = row["result"]
    assert result["format"] == "parquet" and result["uri"].endswith("/")
    uris = result["uris"]
    assert all(u.startswith(result["uri"]) for u in uris)
    numbers = [tuple(int(x) for x in NAME.search(u).groups()) for u in uris]  # type: ignore[union-attr]
    assert numbers == sorted(numbers)  # key order is name order
    assert sorted({n[0] for n in numbers}) == list(range(1, parts + 1))
    assert result["parallel_parts"] == parts and result["parts"] == len(uris)
    whole = hashlib.sha256()
    size = 0
    for uri in uris:
        data = storage.read(uri)
        whole.update(data)
        size += len(data)
    assert (size, whole.hexdigest()) == (result["bytes"], result["sha256"])
    assert row["done"] == result["rows"]
    assert [p["status"] for p in part_rows(conn, job_id)] == ["succeeded"] * parts
    if result["uri"].startswith("file://"):
        folder = local_path(result["uri"])
        assert sorted(os.path.join(folder, f) for f in os.listdir(folder)) == sorted(
            local_path(u) for u in uris)
    return dict(result)


@pytest.mark.parametrize("parallel_n", [2, 3])
def test_parallel_parquet_files_read_back_as_the_source_rows(
        conn: Conn, dsn: str, local_dir: str, parallel_n: int) -> None:
    make_typed(conn, rows=3000)
    one = run_export(dsn, submit_export(conn, "0", target="typed", options=SMALL), local_dir)
    assert one.status == "succeeded" and one.result is not None, one.error
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": parallel_n})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    result = check_layout(conn, job_id, parallel_n)
    assert len(result["uris"]) > parallel_n  # cut by size within each part too
    check_values(conn, result, scope=0)  # pyarrow and DuckDB, every value and type
    # The same table as a parallel: 1 export's (NaN never equals itself: f4 aside).
    assert read_arrow(result).drop_columns(["f4"]).equals(
        read_arrow(one.result).drop_columns(["f4"]))
    assert result["rows"] == one.result["rows"] == 1500
    # Sized evenly: 1500 keys in N ranges.
    done = [p["done"] for p in part_rows(conn, job_id)]
    assert max(done) - min(done) <= 1


def test_parallel_parquet_filter_struct_and_an_empty_scope(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_typed(conn, rows=600)
    options = {**SMALL, "parallel": 3, "columns": ["id", "kind", "price", "n"]}
    job_id = submit_export(conn, "1", {"n": {"$gt": 100}}, target="typed", options=options)
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    table = read_arrow(job(conn, job_id)["result"])
    assert table.schema.names == ["id", "doc", "price"]
    expected = conn.execute("SELECT id, doc->>'kind', doc->>'n' FROM typed WHERE tenant = 1 "
                            "AND (doc->>'n')::int > 100 ORDER BY id").fetchall()
    assert [(r["id"], r["doc"]["kind"], r["doc"]["n"]) for r in table.to_pylist()] == expected
    empty = submit_export(conn, "7", target="typed", options={**SMALL, "parallel": 4})
    assert run_export(dsn, empty, local_dir).status == "succeeded"
    result = job(conn, empty)["result"]
    assert result["rows"] == 0 and len(result["uris"]) >= 1
    assert read_arrow(result).num_rows == 0


def test_parallel_parquet_on_s3(conn: Conn, dsn: str, bucket: str, tmp_path: Any) -> None:
    make_typed(conn, rows=800)
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": 2})
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome.error
    result = check_layout(conn, job_id, 2)
    local = []
    for i, uri in enumerate(result["uris"]):
        path = tmp_path / f"{i:05d}.parquet"
        path.write_bytes(storage.read(uri))
        local.append(f"file://{path}")
    check_values(conn, {**result, "uris": local}, scope=0)


def test_sigkill_mid_parallel_parquet_then_another_worker_finishes(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_typed(conn, rows=3000)
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": 3})
    first = start_worker(dsn, local_dir, "--once", "--lease", LONG_LEASE, delays="part=0.3")
    try:
        wait_for(lambda: files_recorded(conn, job_id) >= 4, timeout=60,
                 what="files checkpointed")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = {p["part"]: [f["uri"] for f in (p["checkpoint"] or {}).get("files") or []]
              for p in part_rows(conn, job_id)}
    stamps = {u: os.stat(local_path(u)).st_mtime_ns for files in before.values() for u in files}
    assert len(stamps) >= 4
    expire_leases(conn, job_id)
    second = start_worker(dsn, local_dir, "--once")
    _, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    result = check_layout(conn, job_id, 3)
    check_values(conn, result, scope=0)
    # The files recorded before the kill are kept, not written again.
    assert {u: os.stat(local_path(u)).st_mtime_ns for u in stamps} == stamps
    for part, files in before.items():
        mine = [u for u in result["uris"] if NAME.search(u).group(1) == f"{part:05d}"]  # type: ignore[union-attr]
        assert mine[:len(files)] == files


def test_a_failed_parquet_part_is_retried_alone(conn: Conn, dsn: str, local_dir: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make_typed(conn, rows=1200)
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": 3})
    failures: list[int] = []
    complete = parallel.ParquetPart._complete

    def flaky(self: parallel.ParquetPart, result: dict[str, Any]) -> Outcome:
        if self.part_ex.part == 2 and not failures:
            failures.append(2)
            raise StorageError("injected: storage hiccup at the end of part 2", retryable=True)
        return complete(self, result)

    monkeypatch.setattr(parallel.ParquetPart, "_complete", flaky)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    assert failures == [2]
    assert {p["part"]: p["attempts"] for p in part_rows(conn, job_id)} == {1: 1, 2: 2, 3: 1}
    assert job(conn, job_id)["attempts"] == 1
    check_values(conn, check_layout(conn, job_id, 3), scope=0)


def test_a_file_changed_after_its_part_ended_never_completes(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_typed(conn, rows=600)
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": 2})
    complete = parallel.ParquetPart._complete

    def tamper(self: parallel.ParquetPart, result: dict[str, Any]) -> Outcome:
        outcome = complete(self, result)
        if self.part_ex.part == 2:
            with open(local_path(result["uris"][0]), "r+b") as f:
                f.seek(10)
                f.write(b"\0\0\0")
        return outcome

    monkeypatch.setattr(parallel.ParquetPart, "_complete", tamper)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status in ("retrying", "failed")
    row = job(conn, job_id)
    assert row["status"] != "succeeded" and "verification failed" in row["error"]


def test_cancel_removes_every_parts_files_and_prune_queues_every_file(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_typed(conn, rows=3000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.2")
    job_id = submit_export(conn, "0", target="typed", options={**SMALL, "parallel": 3})
    box: list[Outcome] = []
    runner = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    runner.start()
    wait_for(lambda: files_recorded(conn, job_id) >= 3, timeout=60, what="files")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    runner.join(timeout=60)
    assert not runner.is_alive() and box and box[0].status == "canceled"
    assert storage.list_paths(local_dir) == []

    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    done = submit_export(conn, "1", target="typed", options={**SMALL, "parallel": 2})
    assert run_export(dsn, done, local_dir).status == "succeeded"
    uris = job(conn, done)["result"]["uris"]
    assert len(uris) > 2 and all(storage.exists(u) for u in uris)
    # The canceled job's parts still record the files its worker removed: prune
    # queues them too (pgjobs._export_objects: every object an export wrote,
    # whatever way it ended; one already gone counts as deleted).
    removed = sorted({str(r[0]) for r in conn.execute(
        "SELECT f ->> 'uri' FROM pgjobs.export_parts p, "
        "jsonb_array_elements(p.checkpoint -> 'files') f WHERE p.job_id = %s", (job_id,))})
    assert len(removed) >= 3 and not set(removed) & set(uris)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")
    assert summary["objects_queued"] == len(uris) + len(removed)
    assert sorted(r[0] for r in conn.execute(
        "SELECT uri FROM pgjobs.storage_deletions WHERE upload IS NULL")) == sorted(uris + removed)
    # The cancel queued the canceled job's files already, each with its digest
    # (pgjobs._queue_export_objects), for when its worker could not remove them.
    assert set(removed) <= {str(r[0]) for r in conn.execute(
        "SELECT uri FROM pgjobs.storage_deletions WHERE job_id = %s "
        "AND upload ? 'object_sha256'", (job_id,))}
    Worker(dsn, local_dir, once=True, poll=0.1).run()
    assert storage.list_paths(local_dir) == []
