"""Fan-out jobs under concurrent external workers (issue 16): a Python harness
plays 8 workers finishing 20,000 items with random failures and retries; the
parent's progress and final status must be exact. And the `concurrency` option
must hold while several workers claim at once."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import psycopg

from tests.support import drain_notifies, job, make_target, scalar

Conn = psycopg.Connection[Any]

CLAIM = "SELECT id, worker, attempts FROM pgjobs.claim_items(ARRAY['doc'], %s, '30 seconds', %s)"


def run_workers(dsn: str, job_id: int, workers: int, batch: int, max_attempts: int,
                seed: int, deadline: float,
                on_claim: Any = None, on_finish: Any = None) -> dict[str, Any]:
    """Run `workers` threads until the job has finished; return what they saw."""
    lock = threading.Lock()
    outcome: dict[int, str] = {}  # item -> "succeeded" | "failed", as the workers ended it
    completed_twice: list[int] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        name = f"harness:{index}"
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    claimed = conn.execute(CLAIM, (name, batch)).fetchall()
                    if not claimed:
                        status = scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                                        (job_id,))
                        if status in ("succeeded", "failed"):
                            return
                        time.sleep(0.05)  # items backing off, or all out
                        continue
                    if on_claim:
                        on_claim(claimed)
                    ok_ids: list[int] = []
                    ok_workers: list[str] = []
                    for item, identity, attempts in claimed:
                        roll = rng.random()
                        if roll < 0.10:  # transient: retried while attempts last
                            end = "failed" if attempts >= max_attempts else None
                            if on_finish:
                                on_finish(item)
                            assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)",
                                          (item, identity, f"transient {item}"))
                        elif roll < 0.12:  # permanent
                            end = "failed"
                            if on_finish:
                                on_finish(item)
                            assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s, false)",
                                          (item, identity, f"permanent {item}"))
                        else:
                            end = "succeeded"
                            if rng.random() < 0.5:  # one by one, or in a batch
                                if on_finish:
                                    on_finish(item)
                                assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s,"
                                                    " %s::jsonb)",
                                              (item, identity, json.dumps({"by": index})))
                            else:
                                ok_ids.append(item)
                                ok_workers.append(identity)
                        if end:
                            with lock:
                                if item in outcome:
                                    completed_twice.append(item)
                                outcome[item] = end
                    if ok_ids:
                        if on_finish:
                            for item in ok_ids:
                                on_finish(item)
                        done = [r[0] for r in conn.execute(
                            "SELECT pgjobs.complete_items(%s, %s)", (ok_ids, ok_workers))]
                        assert sorted(done) == sorted(ok_ids)
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {"outcome": outcome, "twice": completed_twice}


def test_eight_workers_twenty_thousand_items_exact(dsn: str, conn: Conn) -> None:
    make_target(conn)
    total = 20_000
    job_id = scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, '1',"
                          " (SELECT jsonb_agg(jsonb_build_object('doc', g))"
                          "    FROM generate_series(1, %s) g), '{\"max_attempts\": 3}')",
                    (total,))
    assert job(conn, job_id)["total"] == total
    conn.execute("LISTEN pgjobs")
    seen = run_workers(dsn, job_id, workers=8, batch=20, max_attempts=3, seed=16,
                       deadline=time.monotonic() + 240)
    assert seen["twice"] == []
    outcome: dict[int, str] = seen["outcome"]
    assert len(outcome) == total
    want = Counter(outcome.values())
    assert want["failed"] > 0 and want["succeeded"] > 0  # the harness did fail some

    parent = job(conn, job_id)
    assert parent["status"] == "failed"  # some item failed for good
    assert parent["done"] == total and parent["total"] == total
    assert parent["result"]["items"] == total
    assert parent["result"]["succeeded"] == want["succeeded"]
    assert parent["result"]["failed"] == want["failed"]
    assert parent["result"]["canceled"] == 0
    assert len(parent["result"]["errors"]) == 5
    # Every item's stored status is the one its worker gave it.
    stored = dict(conn.execute("SELECT id, status FROM pgjobs.job_items WHERE job_id = %s",
                               (job_id,)).fetchall())
    assert stored == outcome
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items WHERE attempts > 3") == 0
    # Events: progress (throttled) and exactly one final event; none per item.
    events = drain_notifies(conn)
    mine = [e for e in events if e["id"] == job_id]
    assert [e["event"] for e in mine if e["event"] not in ("progress",)] == ["started",
                                                                              "failed"]
    assert all(e["id"] == job_id for e in events)
    assert len(mine) < total / 10


def test_concurrency_holds_under_concurrent_claimers(dsn: str, conn: Conn) -> None:
    make_target(conn)
    cap = 3
    job_id = scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, '1',"
                          " (SELECT jsonb_agg(g) FROM generate_series(1, 600) g),"
                          " '{\"concurrency\": 3, \"max_attempts\": 10}')")
    out: set[int] = set()
    lock = threading.Lock()
    peak = [0]
    db_peak = [0]
    stop = threading.Event()

    def on_claim(claimed: list[tuple[int, str, int]]) -> None:
        with lock:
            out.update(c[0] for c in claimed)
            peak[0] = max(peak[0], len(out))

    def on_finish(item: int) -> None:
        with lock:
            out.discard(item)

    def monitor() -> None:
        with psycopg.connect(dsn, autocommit=True) as watch:
            while not stop.is_set():
                n = scalar(watch, "SELECT count(*) FROM pgjobs.job_items WHERE job_id = %s"
                                  " AND status = 'running'", (job_id,))
                db_peak[0] = max(db_peak[0], n)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        run_workers(dsn, job_id, workers=6, batch=5, max_attempts=10, seed=3,
                    deadline=time.monotonic() + 120, on_claim=on_claim, on_finish=on_finish)
    finally:
        stop.set()
        watcher.join()
    assert job(conn, job_id)["status"] in ("succeeded", "failed")
    assert job(conn, job_id)["done"] == 600
    # The cap was reached (the workers wanted more) and never passed.
    assert db_peak[0] == cap and peak[0] <= cap
