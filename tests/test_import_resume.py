"""Imports survive their workers: a batch commits with its position or not at all,
a stale worker's batch is refused, and a worker SIGKILLed between batches or in
the middle of one is replaced by one that resumes at the committed offset: every
record of the source lands exactly once."""

from __future__ import annotations

import gzip
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.migrate import migrate
from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    claim_import,
    expire_lease,
    job,
    make_people,
    scalar,
    start_worker,
    submit_import,
    wait_for,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    return tmp_path


def source(rows: int) -> tuple[bytes, list[str]]:
    """A CSV whose names are unique and hard to split: quotes, commas, newlines."""
    names = [f'n{i} "q",\n{"x" * (i % 50)}' if i % 3 == 0 else f"n{i}" for i in range(rows)]
    body = "".join('"' + n.replace('"', '""') + f'",{i % 90}\n' for i, n in enumerate(names))
    return ("name,age\n" + body).encode(), names


def imported(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM people ORDER BY name")]


def stage_one(conn: Conn, job_id: int, worker: str, prepare: bool = True) -> None:
    """What a worker does before import_batch: the staging table (prepared while the
    worker held the job) and one record."""
    copy_sql = "COPY pg_temp.pgjobs_import_stage (f1, f2) FROM STDIN (FORMAT csv)"
    if prepare:
        copy_sql = scalar(conn, "SELECT pgjobs.import_prepare(%s, %s, %s)",
                          (job_id, worker, ["name", "age"]))
    with conn.cursor().copy(copy_sql) as cp:
        cp.write(b"stale,1\n")


def batch(conn: Conn, job_id: int, worker: str) -> dict[str, Any]:
    result = scalar(conn, "SELECT pgjobs.import_batch(%s, %s, %s, %s, 0, NULL, %s::jsonb)",
                    (job_id, worker, ["name", "age"], [2],
                     json.dumps({"v": 1, "offset": 17, "line": 2})))
    return dict(result)


def test_stale_worker_batch_is_refused(conn: Conn, make_conn: Any, dsn: str,
                                       folder: Path) -> None:
    (folder / "a.csv").write_bytes(b"name,age\nfresh,1\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    old = claim_import(dsn, job_id, "w1")
    stale = make_conn(autocommit=False)
    stage_one(stale, job_id, old)
    stale.commit()
    # The lease lapses, another worker takes the job over.
    expire_lease(conn, job_id)
    new = claim_import(dsn, job_id, "w2")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        stage_one(stale, job_id, old)  # it cannot prepare again
    stale.rollback()
    with stale.transaction():
        stage_one(stale, job_id, old, prepare=False)
        assert batch(stale, job_id, old) == {"status": "lost"}
        assert batch(stale, job_id, "w1") == {"status": "lost"}  # the bare name is no fence
    stale.commit()
    assert imported(conn) == [] and job(conn, job_id)["checkpoint"] is None
    # The owner's batch goes in, with its checkpoint.
    owner = make_conn(autocommit=False)
    stage_one(owner, job_id, new)
    assert batch(owner, job_id, new)["status"] == "ok"
    owner.commit()
    assert imported(conn) == ["stale"] and job(conn, job_id)["checkpoint"]["offset"] == 17


def test_batch_rolls_back_with_a_lost_commit(conn: Conn, make_conn: Any, dsn: str,
                                             folder: Path) -> None:
    """The rows and the checkpoint are one transaction: a batch whose transaction
    does not commit leaves neither."""
    (folder / "a.csv").write_bytes(b"name,age\nx,1\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    worker = claim_import(dsn, job_id)
    c = make_conn(autocommit=False)
    stage_one(c, job_id, worker)
    assert batch(c, job_id, worker)["status"] == "ok"
    c.rollback()
    assert imported(conn) == [] and job(conn, job_id)["checkpoint"] is None


def test_canceled_import_stops_at_a_batch(conn: Conn, make_conn: Any, dsn: str,
                                          folder: Path) -> None:
    (folder / "a.csv").write_bytes(b"name,age\nx,1\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    worker = claim_import(dsn, job_id)
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    c = make_conn(autocommit=False)
    stage_one(c, job_id, worker)
    assert batch(c, job_id, worker) == {"status": "lost"}
    c.rollback()
    outcome = Importer(dsn, job_id, worker, f"file://{folder}").run()
    assert outcome.status == "canceled" and job(conn, job_id)["status"] == "canceled"
    assert imported(conn) == []


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_released_import_resumes_exactly_once(conn: Conn, dsn: str, folder: Path,
                                              gz: bool) -> None:
    data, names = source(3000)
    path = folder / ("a.csv.gz" if gz else "a.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    job_id = submit_import(conn, f"file://{path}")
    stop = threading.Event()
    batches = []

    def progress(records: int, read: int, total: int | None) -> None:
        batches.append(records)
        if len(batches) == 3:
            stop.set()

    first = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}", stop=stop,
                     on_progress=progress, batch_bytes=5000).run()
    assert first.status == "released"
    row = job(conn, job_id)
    assert row["status"] == "queued" and 0 < row["checkpoint"]["records"] < 3000
    assert len(imported(conn)) == row["checkpoint"]["records"]
    second = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}",
                      batch_bytes=7000).run()
    assert second.status == "succeeded", second.error
    assert imported(conn) == sorted(names)
    assert job(conn, job_id)["result"]["rows"] == 3000


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_sigkill_at_random_points_lands_every_record_once(conn: Conn, dsn: str,
                                                          folder: Path, gz: bool) -> None:
    """Workers SIGKILLed between batches and inside a batch's transaction (the delays
    put them there half the time each); each successor resumes at the committed
    offset. The table ends equal to the file: nothing missing, nothing twice."""
    rows = 12_000
    data, names = source(rows)
    path = folder / ("k.csv.gz" if gz else "k.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    job_id = submit_import(conn, f"file://{path}", "1",
                           {"lease": "2 seconds", "max_attempts": 100})
    rng = random.Random(12)
    delays = "bytes=20000,batch=0.05,staged=0.05"
    kills = 0
    offsets = []
    def records() -> int:
        return int((job(conn, job_id)["checkpoint"] or {}).get("records", 0))

    for _ in range(6):
        before = records()
        proc = start_worker(dsn, f"file://{folder}/store", env={"PGJOBS_IMPORT_DELAYS": delays})
        try:
            # Once this worker committed a batch, kill it a random moment later:
            # between batches or inside one (COPY done, INSERT not committed).
            wait_for(lambda b=before: records() > b or job(conn, job_id)["status"] == "succeeded",
                     timeout=60, what="a committed batch")
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        kills += 1
        row = job(conn, job_id)
        offsets.append((row["checkpoint"] or {}).get("offset"))
        if row["status"] == "succeeded":
            break
        # The table holds exactly the committed records, whatever the kill hit.
        assert len(imported(conn)) == (row["checkpoint"] or {}).get("records", 0)
    assert kills >= 3
    expire_lease(conn, job_id)  # the last one killed: no need to wait for its lease
    proc = start_worker(dsn, f"file://{folder}/store")
    try:
        wait_for(lambda: job(conn, job_id)["status"] in ("succeeded", "failed"), timeout=120,
                 what="the import to finish")
    finally:
        proc.terminate()
        proc.communicate()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert imported(conn) == sorted(names)
    assert row["result"]["rows"] == rows and row["result"]["records"] == rows
    assert len([o for o in offsets if o]) >= 2  # it made progress between kills


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


def test_database_restarts_mid_import(restartable: Any, tmp_path: Path) -> None:
    """PostgreSQL restarted twice mid-import: the worker reconnects and resumes the
    same attempt from the committed offset; the table equals the file."""
    dsn = restartable.url()
    migrate(dsn)
    data, names = source(8000)
    (tmp_path / "r.csv").write_bytes(data)
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_people(conn)
        allow(conn, f"file://{tmp_path}")
        job_id = submit_import(conn, f"file://{tmp_path}/r.csv")
    worker = start_worker(dsn, f"file://{tmp_path}/store", "--once", "--lease", "60s",
                          env={"PGJOBS_IMPORT_DELAYS": "bytes=15000,batch=0.05,staged=0.05"})
    try:
        for threshold in (1500, 4000):
            def committed(t: int = threshold) -> bool:
                with psycopg.connect(dsn, autocommit=True) as c:
                    ck = job(c, job_id)["checkpoint"] or {}
                return int(ck.get("records", 0)) >= t

            wait_for(committed, timeout=60, what=f"{threshold} records")
            restartable.terminate()
            time.sleep(1.0)
            restartable.start()
        out, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = job(conn, job_id)
        assert row["status"] == "succeeded", (row["error"], err)
        assert row["attempts"] == 1  # the same attempt rode it out
        assert imported(conn) == sorted(names)
