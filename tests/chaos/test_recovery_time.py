"""Dead-worker recovery under the default lease: a worker holding an export is
SIGKILLed; another worker, polling as usual, takes the job over once the lease
(30 s by default) has expired. The figure (kill -> job running again under the
new owner; goal <= 60 s) is printed and written to bench/results/chaos.json; the
test only asserts that the job recovers and finishes."""


from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from tests.chaos.support import record
from tests.support import (
    checkpoint_parts,
    job,
    make_items,
    object_bytes,
    plain_copy,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]


@pytest.mark.chaos
def test_dead_worker_recovery_time_under_the_default_lease(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=900)
    # Default lease and poll interval: only the part delay is a testing aid, so
    # that the export is still running when its worker is killed.
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 5, "part_size": 1024})
    first = start_worker(dsn, local_dir, delays="part=0.5")
    second: Any = None
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, timeout=60, what="two parts")
        owner = job(conn, job_id)["worker"]
        # The rescuer is already running and idle, polling every 2 s (the default).
        second = start_worker(dsn, local_dir, "--poll", "2")
        time.sleep(1.0)
        killed = time.monotonic()
        first.kill()
        first.communicate(timeout=10)
        lease_left = conn.execute("SELECT extract(epoch FROM lease_expires_at - now()) "
                                  "FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
        # Another owner took it: it may already have finished the rest of the
        # export by the time we look (the rescuer has no part delay), so the
        # job need not still be running.
        wait_for(lambda: conn.execute(
            "SELECT worker <> %s AND status IN ('running', 'succeeded') FROM pgjobs.jobs "
            "WHERE id = %s", (owner, job_id)).fetchone() == (True,), timeout=120,
            what="another owner")
        recovered = time.monotonic() - killed
        wait_for(lambda: job(conn, job_id)["status"] in ("succeeded", "failed"),
                 timeout=120, what="the export to end")
    finally:
        for w in (first, second):
            if w is not None and w.poll() is None:
                w.terminate()
                w.communicate(timeout=30)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["attempts"] == 2
    assert object_bytes(row["result"]) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    record("dead_worker_recovery", {
        "lease_s": float(row["lease"].total_seconds()) if row.get("lease") else 30.0,
        "lease_left_at_kill_s": round(float(lease_left[0]), 2) if lease_left else None,
        "kill_to_running_again_s": round(recovered, 2), "goal_s": 60})
