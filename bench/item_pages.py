"""A page of a fan-out job's items (`pgjobs items`), and submit_items, with
job_items_job_idx as (job_id, status, id) (migration 0161) and as it was,
(job_id, status).

Run from the repository root:

    python bench/item_pages.py                 # a throwaway cluster (tests/support/pgcluster.py)
    python bench/item_pages.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

One fan-out job of --items items (beside another a quarter its size) is read
a page of 100 at a time (pgjobs.queries.JOB_ITEMS_PAGE, the query `pgjobs items`
sends) from its middle, every status and one status; the baseline, measured in the
same run and interleaved with it, is an unmasked keyset page of a plain table
of the same rows: `SELECT * FROM plain WHERE id > $1 ORDER BY id LIMIT 101`.
Then submit_items of --append items into a new job, and their drain (claim_items
of 100 at a time, complete_items of each batch, one session), with each index. The two
index shapes alternate round by round (each round builds its index and drops
the other). Figures are medians with the ratio's range; nothing here is a
pass/fail test, and the machine may be shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import server  # noqa: E402
from claim import bench_database  # noqa: E402

from pgjobs import queries  # noqa: E402

SHAPES = {"0161 (job_id, status, id)": "(job_id, status, id)",
          "before (job_id, status)": "(job_id, status)"}
FILL = """
SELECT pgjobs.submit_items(%s, 'bench_target'::regclass, %s,
       (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, %s) g))
"""
PLAIN = "SELECT * FROM bench_plain WHERE id > %(after)s ORDER BY id LIMIT 101"
CLAIM = "SELECT id, worker FROM pgjobs.claim_items(ARRAY['bench_drain'], 'bench', '1 minute', 100)"
COMPLETE = "SELECT count(*) FROM pgjobs.complete_items(%s, %s)"


def drain(conn: psycopg.Connection[Any]) -> int:
    """Claim and complete every queued item, 100 at a time; how many."""
    done = 0
    while claimed := conn.execute(CLAIM).fetchall():
        done += conn.execute(COMPLETE, ([c[0] for c in claimed],
                                        [c[1] for c in claimed])).fetchone()[0]  # type: ignore[index]
    return done


def use_shape(conn: psycopg.Connection[Any], columns: str) -> None:
    conn.execute("DROP INDEX IF EXISTS pgjobs.job_items_job_idx")
    conn.execute(f"CREATE INDEX job_items_job_idx ON pgjobs.job_items {columns}")
    conn.execute("VACUUM ANALYZE pgjobs.job_items")


def timed(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any], reps: int) -> float:
    """The median milliseconds of `reps` runs of `sql`."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                         help="server URL (user may CREATE DATABASE) [default: a throwaway "
                              "cluster]")
    options.add_argument("--items", type=int, default=100_000, help="items of the job [100000]")
    options.add_argument("--append", type=int, default=50_000,
                         help="items of the submit timed [50000]")
    options.add_argument("--rounds", type=int, default=3, help="rounds per shape [3]")
    options.add_argument("--reps", type=int, default=30, help="pages timed per round [30]")
    args = options.parse_args(argv)

    with server(args.dsn) as (server_url, where), \
            bench_database(server_url, False, prefix="pgjobs_bench_pages") as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        job = conn.execute(FILL, ("bench_pages", "1", args.items)).fetchone()[0]  # type: ignore[index]
        conn.execute(FILL, ("bench_pages", "2", args.items // 4))
        conn.execute("CREATE TABLE bench_plain AS SELECT * FROM pgjobs.job_items")
        conn.execute("ALTER TABLE bench_plain ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE bench_plain")
        first, _ = conn.execute("SELECT min(id), max(id) FROM pgjobs.job_items "
                                   "WHERE job_id = %s", (job,)).fetchone()  # type: ignore[misc]
        after = first + args.items // 2
        page = {"id": job, "after": after, "limit": 101}
        base_ms: list[float] = []
        print(f"item pages on {where}, {os.cpu_count()} CPUs, load {os.getloadavg()}; job of "
              f"{args.items:,} items (+{args.items // 4:,} another's), page of 100 after "
              f"item {after - first + 1:,}; submit of {args.append:,} items; "
              f"{args.rounds} rounds alternating, median of {args.reps} pages\n")
        pages: dict[str, list[float]] = {name: [] for name in SHAPES}
        queued: dict[str, list[float]] = {name: [] for name in SHAPES}
        submits: dict[str, list[float]] = {name: [] for name in SHAPES}
        drains: dict[str, list[float]] = {name: [] for name in SHAPES}
        for _ in range(args.rounds):
            for name, columns in SHAPES.items():
                use_shape(conn, columns)
                base = timed(conn, PLAIN, {"after": after}, args.reps)
                base_ms.append(base)
                pages[name].append(timed(conn, queries.JOB_ITEMS_PAGE, {
                    **page, "status": None}, args.reps) / base)
                queued[name].append(timed(conn, queries.JOB_ITEMS_PAGE, {
                    **page, "status": "queued"}, args.reps) / base)
                start = time.perf_counter()
                added = conn.execute(FILL, ("bench_drain", "3", args.append)).fetchone()[0]  # type: ignore[index]
                submits[name].append(time.perf_counter() - start)
                start = time.perf_counter()
                assert drain(conn) == args.append
                drains[name].append(time.perf_counter() - start)
                conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (added,))
        print(f"{'index':<28}{'page/plain (all)':>18}{'page/plain (queued)':>21}"
              f"{'submit s':>10}{'drain s':>9}")
        for name in SHAPES:
            print(f"{name:<28}{statistics.median(pages[name]):>8.1f}x "
                  f"({min(pages[name]):.1f}-{max(pages[name]):.1f})"
                  f"{statistics.median(queued[name]):>10.1f}x "
                  f"({min(queued[name]):.1f}-{max(queued[name]):.1f})"
                  f"{statistics.median(submits[name]):>10.2f}"
                  f"{statistics.median(drains[name]):>9.2f}")
        print(f"(plain page: median {statistics.median(base_ms):.3f} ms; load now "
              f"{os.getloadavg()})")
        new, old = SHAPES
        ratios = [a / b for a, b in zip(submits[new], submits[old], strict=True)]
        print(f"\nsubmit_items with 0161's index / before: {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")
        ratios = [a / b for a, b in zip(drains[new], drains[old], strict=True)]
        print(f"drain of {args.append:,} items with 0161's index / before: "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
