"""The cost of ``pgjobs.stats()`` on a job table of 100k rows (issue 14).

Run from the repository root:

    python bench/stats.py                  # a throwaway cluster (tests/support/pgcluster.py)
    python bench/stats.py --jobs 100000 --dsn postgresql://postgres@127.0.0.1:5432/postgres

Three shapes of the same table size, each timed as the superuser (row policies
bypassed), as a pgjobs_client role with SELECT on the target (the policy
jobs_client_read applied to every row read) and as that client in a session
with ``pgjobs.allowed_scopes`` set to one of the 500 scopes (tenancy):

* ``mostly finished``: all but 200 jobs finished more than an hour ago (the
  common case: prune keeps a day of history);
* ``finished last hour``: all of them finished within the hour (throughput
  window full);
* ``all queued``: every job unfinished (a flood).

The baseline, measured in the same run, is ``SELECT count(*) FROM pgjobs.jobs``
(one pass over the whole table) under the same role; the last column is that
count against the superuser's, which is what the row policy costs. Figures are
medians of --reps runs; the machine may be shared, so read the ratios, not the
milliseconds. Since migration 0024 the policy decides confinement once per
statement (pgjobs._confined_targets); before it, a client's count(*) over
100k jobs took seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

SHAPES = {
    "mostly finished": ("succeeded", "now() - interval '2 days'", 200),
    "finished last hour": ("succeeded", "now() - interval '30 minutes'", 200),
    "all queued": ("queued", None, 0),
}


def timed(conn: psycopg.Connection[tuple[object, ...]], sql: str, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def fill(conn: psycopg.Connection[tuple[object, ...]], jobs: int, shape: str) -> None:
    status, finished, unfinished = SHAPES[shape]
    conn.execute("TRUNCATE pgjobs.jobs CASCADE")
    if status == "queued":
        conn.execute(f"""
            INSERT INTO pgjobs.jobs (kind, target, scope, status)
            SELECT (ARRAY['delete','export','backfill'])[1 + i % 3], 'items'::regclass,
                   (i % 500)::text, 'queued'
              FROM generate_series(1, {jobs}) i""")
    else:
        conn.execute(f"""
            INSERT INTO pgjobs.jobs (kind, target, scope, status, done, started_at,
                                     finished_at)
            SELECT (ARRAY['delete','export','backfill'])[1 + i % 3], 'items'::regclass,
                   (i % 500)::text, '{status}', 1000, {finished} - interval '1 minute',
                   {finished}
              FROM generate_series(1, {jobs - unfinished}) i""")
        conn.execute(f"""
            INSERT INTO pgjobs.jobs (kind, target, scope, status)
            SELECT 'export', 'items'::regclass, (i % 500)::text, 'queued'
              FROM generate_series(1, {unfinished}) i""")
    conn.execute("VACUUM ANALYZE pgjobs.jobs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", help="server URL (default: a throwaway cluster)")
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    with server(args.dsn) as (url, where), scratch_database(url, "pgjobs_bench_stats") as dsn:
        migrate(dsn)
        print(f"pgjobs.stats() on {args.jobs} jobs; {where}; median of {args.reps}")
        print(f"{'shape':<20} {'as':<8} {'count(*) ms':>12} {'stats() ms':>11} {'ratio':>6} "
              f"{'count vs super':>15}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, scope int)")
            conn.execute("DROP ROLE IF EXISTS pgjobs_bench_reader")
            conn.execute("CREATE ROLE pgjobs_bench_reader IN ROLE pgjobs_client")
            conn.execute("GRANT SELECT ON items TO pgjobs_bench_reader")
            for shape in SHAPES:
                fill(conn, args.jobs, shape)
                superuser = 0.0
                for who, role, scopes in (("super", "postgres", ""),
                                          ("client", "pgjobs_bench_reader", ""),
                                          ("tenant", "pgjobs_bench_reader", "7")):
                    conn.execute(f"SET ROLE {role}")
                    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)",
                                 (scopes,))
                    timed(conn, "SELECT pgjobs.stats()", 2)  # warm
                    base = timed(conn, "SELECT count(*) FROM pgjobs.jobs", args.reps)
                    cost = timed(conn, "SELECT pgjobs.stats()", args.reps)
                    conn.execute("RESET ROLE")
                    conn.execute("RESET pgjobs.allowed_scopes")
                    superuser = superuser or base
                    print(f"{shape:<20} {who:<8} {base:>12.1f} {cost:>11.1f} "
                          f"{cost / base:>6.2f} {base / superuser:>14.2f}x", flush=True)
            conn.execute("TRUNCATE pgjobs.jobs CASCADE")
            conn.execute("DROP OWNED BY pgjobs_bench_reader")
            conn.execute("DROP ROLE pgjobs_bench_reader")


if __name__ == "__main__":
    main()
