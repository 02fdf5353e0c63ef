"""What the parent's bookkeeping costs a fan-out completion at batch 1.

Run from the repository root:

    python bench/items_parent.py               # a throwaway cluster (tests/support/pgcluster.py)
    python bench/items_parent.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

Both sides drain one fan-out job with pgjobs.claim_items(p_limit => 1) on
--workers connections. pgjobs completes each item with pgjobs.complete_item
(the job row locked first, done + 1, the end checked: pgjobs._items_settle);
the reference completes it with the same fenced UPDATE of the item and nothing
else (no job row lock, no done, the job never ends): the most any scheme that
defers the parent's bookkeeping (a lazy fold of done) could gain. Runs are
interleaved; the ratio is pgjobs / reference. With 1 worker nobody waits on
the job row, so that line is the bookkeeping's CPU, and the lines with more
workers add the queue on its lock. Not a pass/fail test; the machine may be
shared and noisy: read the range.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import server  # noqa: E402
from claim import bench_database, drain  # noqa: E402
from items import COMPLETE, FILL, KIND, items_worker_with, parser, reset  # noqa: E402

# The reference: complete_item's item UPDATE and fence, the same pinned
# settings (their cost per call is part of every pgjobs function), no parent.
ITEM_ONLY = """
CREATE FUNCTION public.bench_complete_item_only(p_item bigint, p_worker text)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
SET extra_float_digits = 3 SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
AS $$
BEGIN
    UPDATE pgjobs.job_items i
       SET status = 'succeeded', result = '{}', error = NULL,
           lease_expires_at = NULL, finished_at = now(), updated_at = now()
     WHERE i.id = p_item AND i.worker = p_worker AND i.lease_expires_at > now();
    RETURN FOUND;
END
$$"""
SIDES = {"pgjobs": COMPLETE, "reference": "SELECT public.bench_complete_item_only(%s, %s)"}


def rate(dsn: str, side: str, workers: int, items: int) -> float:
    reset(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL, (KIND, items))
        conn.execute("VACUUM ANALYZE pgjobs.job_items")
    done, run = drain(dsn, workers, 1, items_worker_with(SIDES[side]))
    if done != items:
        raise AssertionError(f"{side}: {done} of {items} items completed")
    return run.rate


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__)
    options.add_argument("--workers", default="1,4", help="comma-separated worker counts [1,4]")
    options.add_argument("--items", type=int, default=3000, help="items per run [3000]")
    options.add_argument("--repeat", type=int, default=3, help="runs per measurement [3]")
    options.add_argument("--keep", action="store_true", help="keep the bench database")
    args = options.parse_args(argv)

    with server(args.dsn) as (server_url, where), bench_database(server_url, args.keep) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ITEM_ONLY)
        print(f"fan-out completion, parent bookkeeping vs none, on {where}, {os.cpu_count()} "
              f"CPUs; {args.items} items per run, batch 1, median of {args.repeat}\n")
        print(f"{'workers':>7}  {'reference items/s':>17}  {'pgjobs items/s':>14}  "
              f"{'pgjobs/reference':>16}  {'ratio range':>11}")
        for workers in (int(w) for w in args.workers.split(",")):
            ours: list[float] = []
            ref: list[float] = []
            for _ in range(args.repeat):
                ours.append(rate(dsn, "pgjobs", workers, args.items))
                ref.append(rate(dsn, "reference", workers, args.items))
            ratios = [o / r for o, r in zip(ours, ref, strict=True)]
            print(f"{workers:>7}  {statistics.median(ref):>17,.0f}  "
                  f"{statistics.median(ours):>14,.0f}  "
                  f"{statistics.median(ratios):>15.2f}x  "
                  f"{min(ratios):>5.2f}-{max(ratios):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
