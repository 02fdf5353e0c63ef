"""A backfill job's whole run, for comparing two sql/ trees side by side.

The page of a backfill that writes document fields checks each row's
document for values that are not objects where the set merges fields in
(pgjobs._set_guard), and counts the rows it left out. This times one
backfill of a scope, as a whole process, so that a timing tool can run two
sql/ trees in turn (A B A B ...) against one server:

    python bench/backfill.py serve                 # a throwaway cluster; prints its URL, waits
    python bench/backfill.py setup --dsn URL --db old --sql /tmp/old/sql
    python bench/backfill.py setup --dsn URL --db new                  # this checkout's sql/
    python bench/backfill.py run --dsn URL --db old --set '{"meta.flag": 1}'
    python bench/backfill.py run --dsn URL --db new --set '{"meta.flag": 1}'
    python bench/backfill.py run --dsn URL --db new --filter '{"n": {"$lt": 200}}'

`setup` builds `user_table_rows(id, table_id, data, created_at)`, tenant 1
interleaved with tenants 2..20 in chunks of 100 rows (--rows in all,
--scope-rows of tenant 1), the (table_id, id) btree, and registers it.
`run` submits a backfill of tenant 1 with --set (a new value each run, so
every row is written) and --filter (default: the whole scope; `n` is
0..999, so `{"n": {"$lt": 200}}` is 20% of the scope, on each of the job's pages)
and runs it to the end with CALL pgjobs.run_job,
printing the submit's and the job's seconds and the result. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import with_database  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402


def serve() -> int:
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    print(cluster.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


def setup(args: argparse.Namespace) -> int:
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(args.db)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db)))
    url = with_database(args.dsn, args.db)
    migrate(url, args.sql)
    other = args.rows - args.scope_rows
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE user_table_rows (id bigint PRIMARY KEY, table_id integer "
                     "NOT NULL, data jsonb, created_at timestamptz NOT NULL)")
        # Chunk c of 100 rows: tenant 1 while its rows last, spread over the heap.
        conn.execute("""
            INSERT INTO user_table_rows
            SELECT g, CASE WHEN (g / 100) %% %(every)s = 0 AND g / 100 / %(every)s * 100
                                < %(scope)s THEN 1 ELSE 2 + (g / 100) %% 19 END,
                   jsonb_build_object('status', (ARRAY['open', 'done'])[1 + g %% 2],
                                      'n', g %% 1000, 'meta', jsonb_build_object('k', g %% 7)),
                   now() - interval '1 day'
              FROM generate_series(0, %(rows)s - 1) g""",
                     {"every": max(1, round(args.rows / max(args.scope_rows, 1))),
                      "scope": args.scope_rows, "rows": args.rows})
        conn.execute("CREATE INDEX ON user_table_rows (table_id, id)")
        conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', "
                     "'created_at', 'data')")
        conn.execute("VACUUM ANALYZE user_table_rows")
        rows = conn.execute("SELECT count(*) FROM user_table_rows WHERE table_id = 1").fetchone()
    print(f"{args.db}: {args.rows:,} rows, tenant 1 has {rows[0] if rows else 0:,} ({other:,} "
          "others)")
    return 0


def run(args: argparse.Namespace) -> int:
    set_: dict[str, Any] = json.loads(args.set)
    stamp = time.time_ns()
    set_ = {k: (stamp if v == 1 else v) for k, v in set_.items()}  # every row changes
    with psycopg.connect(with_database(args.dsn, args.db), autocommit=True) as conn:
        submitted = time.perf_counter()
        row = conn.execute("SELECT pgjobs.submit_backfill('user_table_rows', '1', %s::jsonb, "
                           "%s::jsonb)", (args.filter, json.dumps(set_))).fetchone()
        assert row is not None
        started = time.perf_counter()
        submit_seconds = started - submitted
        conn.execute("CALL pgjobs.run_job(%s)", (row[0],))
        seconds = time.perf_counter() - started
        done = conn.execute("SELECT status, result FROM pgjobs.jobs WHERE id = %s",
                            (row[0],)).fetchone()
    print(f"{args.db}: submit {submit_seconds:.3f} s, job {seconds:.3f} s, {done}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "setup", "run"])
    parser.add_argument("--dsn", help="server URL (setup, run)")
    parser.add_argument("--db", default="pgjobs_bench_backfill")
    parser.add_argument("--sql", type=Path, default=None, help="sql/ tree (setup)")
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--scope-rows", type=int, default=100_000)
    parser.add_argument("--set", default='{"meta.flag": 1}',
                        help="the backfill's set (a value 1 becomes a new number each run)")
    parser.add_argument("--filter", default="{}", help="the backfill's filter (run)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve()
    if not args.dsn:
        parser.error("--dsn is required")
    return setup(args) if args.command == "setup" else run(args)


if __name__ == "__main__":
    sys.exit(main())
