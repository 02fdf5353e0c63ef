"""Fan-out items claimed and completed per second, against a bare queue.

Run from the repository root:

    python bench/items.py                      # a throwaway cluster (tests/support/pgcluster.py)
    python bench/items.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

One fan-out job of --items items (pgjobs.submit_items) is drained by --workers
threads, each on its own connection: pgjobs.claim_items(p_limit => batch), then
pgjobs.complete_item per item for a batch of one, else one
pgjobs.complete_items for the batch (fenced per item; the parent's done and end
settled once per batch). The baseline, measured in the same run on the same
server and interleaved with it, is bench/claim.py's bare queue on a plain table
(one row per claim, then one UPDATE to mark it done):

    UPDATE q SET status = 'running'
     WHERE id = (SELECT id FROM q WHERE status = 'queued' ORDER BY id LIMIT 1
                 FOR UPDATE SKIP LOCKED) RETURNING id;
    UPDATE q SET status = 'done' WHERE id = $1;

The figures print as a table of medians with the ratio's range over the runs;
nothing here is a pass/fail test. The machine may be shared and noisy: read the
ratio range, not one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import server  # noqa: E402
from claim import (  # noqa: E402
    BASELINE_FILL,
    Run,
    baseline_worker,
    bench_database,
    cpu,
    drain,
)

KIND = "bench_items"
FILL = """
SELECT pgjobs.submit_items(%s, 'bench_target'::regclass, '1',
       (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, %s) g))
"""
CLAIM = "SELECT id, worker FROM pgjobs.claim_items(%s, %s, '30 seconds'::interval, %s)"
COMPLETE = "SELECT pgjobs.complete_item(%s, %s)"
COMPLETE_MANY = "SELECT count(*) FROM pgjobs.complete_items(%s, %s)"


Worker = Callable[[psycopg.Connection[Any], str, int], int]


def items_worker_with(complete: str) -> Worker:
    """A worker that claims a batch, then completes it: `complete` (called with the
    item and its claim's identity, true when done) per item for a batch of one, else
    one pgjobs.complete_items for the batch."""
    def work(conn: psycopg.Connection[Any], name: str, batch: int) -> int:
        done = 0
        while True:
            claimed = conn.execute(CLAIM, ([KIND], name, batch)).fetchall()
            if not claimed:
                return done
            if len(claimed) == 1:
                item, identity = claimed[0]
                row = conn.execute(complete, (item, identity)).fetchone()
                assert row is not None and row[0], f"completion of item {item} was fenced off"
            else:
                row = conn.execute(COMPLETE_MANY, ([c[0] for c in claimed],
                                                   [c[1] for c in claimed])).fetchone()
                assert row is not None and row[0] == len(claimed), "complete_items fenced off"
            done += len(claimed)
    return work


items_worker = items_worker_with(COMPLETE)


def parser(doc: str) -> argparse.ArgumentParser:
    """The command line every fan-out bench starts from: its summary and --dsn."""
    result = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL (user may CREATE DATABASE) [env PGJOBS_BENCH_DSN; "
                             "default: a throwaway cluster]")
    return result


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_q, pgjobs.jobs, pgjobs.job_items RESTART IDENTITY CASCADE")
        conn.execute("VACUUM ANALYZE bench_q")
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
        conn.execute("VACUUM ANALYZE pgjobs.job_items")


def throughput(dsn: str, side: str, workers: int, items: int, batch: int) -> Run:
    reset(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if side == "baseline":
            conn.execute(BASELINE_FILL, (items,))
            conn.execute("VACUUM ANALYZE bench_q")
        else:
            job_id = conn.execute(FILL, (KIND, items)).fetchone()
            conn.execute("VACUUM ANALYZE pgjobs.job_items")
    done, result = drain(dsn, workers, batch,
                         baseline_worker if side == "baseline" else items_worker)
    if done != items:
        raise AssertionError(f"{side}: {done} of {items} items processed")
    if side == "pgjobs":
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT status, done FROM pgjobs.jobs WHERE id = %s",
                               (job_id[0] if job_id else None,)).fetchone()
        if row != ("succeeded", items):
            raise AssertionError(f"the fan-out job ended as {row}")
    return result


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__)
    options.add_argument("--workers", default="4", help="comma-separated worker counts [4]")
    options.add_argument("--items", type=int, default=4000, help="items per run [4000]")
    options.add_argument("--batch", default="1,10", help="comma-separated batch sizes [1,10]")
    options.add_argument("--repeat", type=int, default=5, help="runs per measurement [5]")
    options.add_argument("--keep", action="store_true", help="keep the bench database")
    args = options.parse_args(argv)

    with server(args.dsn) as (server_url, where), bench_database(server_url, args.keep) as dsn:
        print(f"pgjobs fan-out items benchmark on {where}, {os.cpu_count()} CPUs; "
              f"{args.items} items per run, median of {args.repeat}, runs interleaved\n")
        print(f"{'workers':>7}  {'batch':>5}  {'baseline items/s':>16}  {'pgjobs items/s':>14}  "
              f"{'pgjobs/baseline':>15}  {'ratio range':>11}  {'server CPU us/item':>18}")
        for workers in (int(w) for w in args.workers.split(",")):
            for batch in (int(b) for b in args.batch.split(",")):
                base: list[Run] = []
                ours: list[Run] = []
                for _ in range(args.repeat):
                    base.append(throughput(dsn, "baseline", workers, args.items, batch))
                    ours.append(throughput(dsn, "pgjobs", workers, args.items, batch))
                b = statistics.median(r.rate for r in base)
                o = statistics.median(r.rate for r in ours)
                ratios = [x.rate / y.rate for x, y in zip(ours, base, strict=True)]
                print(f"{workers:>7}  {batch:>5}  {b:>16,.0f}  {o:>14,.0f}  {o / b:>14.2f}x  "
                      f"{min(ratios):>5.2f}-{max(ratios):.2f}  "
                      f"{cpu(base, ours, 'server_us'):>18}", flush=True)
        print("(CPU column: baseline / pgjobs, medians; the server's only when it runs on "
              "this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
