"""Tenant-bounded: a scope delete's time as the relation around it grows.

Run from the repository root:

    python bench/bounded.py                    # 1M-row scope, 5M rows grown to 20M (issue 11)
    python bench/bounded.py --rows 1000000 --scope-rows 200000 --repeat 3
    python bench/bounded.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

The same relation, scope and layout as bench/delete.py (whose setup this
reuses), measured only for issue 11's tenant-bounded goal, without
delete.py's backfills, filtered deletes and mask reads (which at 5M rows
take longer than the check itself): a whole-scope delete of the scope
(``CALL pgjobs.run_job``) and the bulk ``DELETE`` of it, --repeat times each,
alternating, in the relation of --rows rows; then the relation grows to
--factor times its rows (other tenants only, appended) and the same runs
again. Printed: the job's time at the large size over the small one (goal
<= 1.2x), the same ratio for the bulk DELETE (how much of the growth plain
SQL pays too, and a check of drift on a shared machine), and job/DELETE at
each size. Median of the runs, best-of in brackets.

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import psycopg
from _common import server  # noqa: E402
from delete import (  # noqa: E402
    SCOPE,
    bench_database,
    build,
    bulk_delete,
    grow,
    job_via_call,
    log,
    restore,
    scalar,
)

Conn = psycopg.Connection[Any]


def runs(conn: Conn, repeat: int, label: str, options: dict[str, Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"bulk": [], "job": []}
    where = f"table_id = {SCOPE} AND created_at <= now()"
    for _ in range(repeat):
        seconds, deleted = bulk_delete(conn, where)
        out["bulk"].append(seconds)
        log(f"{label}: bulk DELETE {seconds:.3f} s, {deleted:,} rows")
        restore(conn)
        seconds, job = job_via_call(conn, {}, options)
        out["job"].append(seconds)
        log(f"{label}: CALL run_job {seconds:.3f} s, {job['result']}, "
            f"throttled: {job['checkpoint'].get('throttled', '-')}")
        assert job["done"] == deleted, (job["done"], deleted)
        restore(conn)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL (user may CREATE DATABASE) [env PGJOBS_BENCH_DSN; "
                             "default: a throwaway cluster]")
    parser.add_argument("--rows", type=int, default=5_000_000,
                        help="rows of the relation before it grows [default: 5000000]")
    parser.add_argument("--scope-rows", type=int, default=1_000_000,
                        help="rows of the deleted scope [default: 1000000]")
    parser.add_argument("--factor", type=int, default=4,
                        help="the relation grows to this many times --rows [default: 4]")
    parser.add_argument("--layout", default="interleaved", choices=["interleaved", "contiguous"])
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each side at each size [default: 2]")
    parser.add_argument("--options", type=json.loads, default={},
                        help="the job's options, a JSON object, e.g. "
                             "'{\"pause_on_autovacuum\": false}' [default: {}]")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if not 0 < args.scope_rows <= args.rows:
        parser.error("--scope-rows must be from 1 to --rows")

    settings_query = ("SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) "
                      "FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
                      "'shared_buffers')")
    with server(args.dsn) as (server_url, where), \
            bench_database(server_url, args.keep) as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        version = scalar(conn, "SHOW server_version")
        settings = scalar(conn, settings_query)
        build(conn, args.rows, args.scope_rows, args.layout)
        small = runs(conn, args.repeat, f"{args.rows:,} rows", args.options)
        started = time.monotonic()
        grow(conn, args.rows, args.factor)
        large = runs(conn, args.repeat, f"{args.rows * args.factor:,} rows", args.options)
        size = scalar(conn, "SELECT pg_size_pretty(pg_total_relation_size('user_table_rows'))")
        log(f"grown and measured in {time.monotonic() - started:.0f} s")

    med = statistics.median
    big = args.rows * args.factor
    print(f"pgjobs tenant-bounded benchmark: PostgreSQL {version} on {where} ({settings}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{args.scope_rows:,}-row scope ({args.layout}) in {args.rows:,} rows, then in "
          f"{big:,} rows ({size}), job options {json.dumps(args.options)}; "
          f"median of {args.repeat} run(s), best-of in brackets")
    for name, key, goal in (("CALL run_job", "job", "goal <= 1.2x"),
                            ("bulk DELETE", "bulk", "(plain SQL, same growth)")):
        print(f"  {name:<13} at {big:>12,}: {med(large[key]):8.3f} s, at {args.rows:>12,}: "
              f"{med(small[key]):8.3f} s: {med(large[key]) / med(small[key]):.2f}x "
              f"[{min(large[key]) / min(small[key]):.2f}x]   {goal}")
    for label, out in ((f"{args.rows:,}", small), (f"{big:,}", large)):
        print(f"  run_job / DELETE at {label} rows: {med(out['job']) / med(out['bulk']):.2f}x "
              f"[{min(out['job']) / min(out['bulk']):.2f}x]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
