"""An idle worker's claim of a parallel export's part, as finished exports pile up.

Run from the repository root:

    python bench/claim_parts.py                 # a throwaway cluster
    python bench/claim_parts.py --churn 0,10000,100000 --calls 200

Every `pgjobs worker` with a free slot asks pgjobs.claim_export_part(NULL, ...)
at each poll for a part of any running parallel export. Finished exports keep
their parts in pgjobs.export_parts until prune (24 hours by default). For each
--churn figure (finished parts, 16 per finished export, added cumulatively) the
script times --calls helper claims (each rolled back, one running export of 4
parts present) and counts the rows each reads from pgjobs' tables; the ratio is
against --churn's first figure, measured in the same run. Nothing here is a
pass/fail test.
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

from _common import scratch_database, server  # noqa: E402

PARTS = 16
READS = ("SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
         "FROM pg_stat_xact_user_tables WHERE schemaname = 'pgjobs'")
CLAIM = "SELECT * FROM pgjobs.claim_export_part(NULL, 'helper', '1 minute')"


def add_history(conn: psycopg.Connection[Any], parts: int) -> None:
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'pgjobs.jobs'::regclass "
        "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' AND attname <> 'id' "
        "ORDER BY attnum")]
    fixed = {"status": "'succeeded'", "finished_at": "now()", "lease_expires_at": "NULL",
             "pause_requested_at": "NULL", "cancel_requested_at": "NULL", "scope": "'2'"}
    values = [fixed.get(c, f"j.{c}") for c in cols]
    ids = [r[0] for r in conn.execute(
        f"INSERT INTO pgjobs.jobs ({', '.join(cols)}) SELECT {', '.join(values)} "
        "FROM pgjobs.jobs j, generate_series(1, %s) WHERE j.id = (SELECT min(id) FROM "
        "pgjobs.jobs) RETURNING id", (max(parts // PARTS, 1),))]
    conn.execute("INSERT INTO pgjobs.export_parts (job_id, part, status, done) "
                 "SELECT j, p, 'succeeded', 10 FROM unnest(%s::bigint[]) j, "
                 "generate_series(1, %s) p", (ids, PARTS))
    conn.execute("ANALYZE pgjobs.jobs, pgjobs.export_parts")


def measure(conn: psycopg.Connection[Any], calls: int) -> tuple[float, int]:
    times, reads = [], 0
    for _ in range(calls):
        conn.execute("BEGIN")
        before = conn.execute(READS).fetchone()[0]  # type: ignore[index]
        start = time.perf_counter()
        conn.execute(CLAIM).fetchall()
        times.append(time.perf_counter() - start)
        reads = conn.execute(READS).fetchone()[0] - before  # type: ignore[index]
        conn.execute("ROLLBACK")
    return statistics.median(times), int(reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE [a throwaway cluster]")
    parser.add_argument("--churn", default="0,10000,100000",
                        help="finished parts, comma-separated, cumulative [0,10000,100000]")
    parser.add_argument("--calls", type=int, default=200, help="claims timed per figure [200]")
    args = parser.parse_args()
    from pgjobs.migrate import migrate
    from tests.support import make_items, submit_export

    with server(args.dsn) as (url, where), scratch_database(url, "bench_parts") as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            make_items(conn, rows=2000, tenants=2)
            job_id = submit_export(conn, "1", {}, {"parallel": 4})
            worker = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 hour')",
                                  (job_id,)).fetchone()[0]  # type: ignore[index]
            conn.execute("SELECT pgjobs.export_parts_split(%s, %s)", (job_id, worker))
            print(f"{where}; {args.calls} helper claims per figure (median)")
            print(f"{'finished parts':>15} {'ms/claim':>9} {'ratio':>6} {'rows read':>10}")
            total, base = 0, None
            for churn in (int(c) for c in args.churn.split(",")):
                if churn > total:
                    add_history(conn, churn - total)
                    total = churn
                seconds, reads = measure(conn, args.calls)
                base = base or seconds
                print(f"{total:>15} {seconds * 1000:>9.3f} {seconds / base:>6.1f} {reads:>10}")


if __name__ == "__main__":
    main()
