"""What a page kept as a prepared statement would save over one built per call.

Run from the repository root:

    python bench/visible_kept.py                  # a 100,000-row scope, throwaway cluster
    python bench/visible_kept.py --blocks 31 --calls 500

The lead of docs/engine.md ("The goal of a `visible` page within 1.2x"):
keep the page per session with the scope written as a range
(``scope >= $1 AND scope <= $1 ORDER BY scope, key``), whose generic plan
walks the (scope, key) index for every tenant. PL/pgSQL refuses a prepared
statement's ``EXECUTE`` in a non-volatile function, so the kept page runs in
a ``VOLATILE`` helper. No pgjobs here: the page alone, on bench/visible.py's
shared table, in four ways, each called as ``SELECT f(scope, cursor)``:

1. ``per call``: the page pgjobs.visible's short way builds, literals in
   its text, run by ``EXECUTE`` in a ``STABLE`` function (the baseline);
2. ``kept, checked``: the range kept as a prepared statement, after the
   check that ``pg_prepared_statements`` holds this text under its name (a
   session may ``PREPARE`` the name with any text);
3. ``kept, unchecked``: the same without the check;
4. ``kept, generic forced``: the same with ``plan_cache_mode =
   force_generic_plan`` (PostgreSQL keeps no generic plan of the range for
   a big tenant on its own: its estimate is far above a custom plan's).

Server CPU per call from the backend's ``/proc/<pid>/schedstat`` (the
server must run on this machine), in blocks of ``--calls`` random cursors,
the ways in turn and the order reversed every other block; printed: the
median of the blocks per way and its ratio to ``per call``, and the plans
PostgreSQL made of each kept statement. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import TABLE, create_rows_table, fill_interleaved, scratch_database, server  # noqa: E402

RANGE = (f"SELECT ARRAY(SELECT pg_catalog.to_jsonb(t.*) FROM public.{TABLE} t"
         " WHERE t.table_id OPERATOR(pg_catalog.>=) $1::integer"
         " AND t.table_id OPERATOR(pg_catalog.<=) $1::integer"
         " AND t.id OPERATOR(pg_catalog.>) $2::bigint ORDER BY t.table_id, t.id LIMIT 100)")
FUNCTIONS = f"""
CREATE SCHEMA bench_kept;
CREATE FUNCTION bench_kept.per_call(p_scope text, p_after text) RETURNS jsonb[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE v jsonb[];
BEGIN
    EXECUTE format('SELECT ARRAY(SELECT to_jsonb(t.*) FROM public.{TABLE} t '
                   'WHERE t.table_id = %L::integer AND t.id > %L::bigint ORDER BY t.id LIMIT 100)',
                   p_scope, p_after) INTO v;
    RETURN v;
END $f$;
CREATE FUNCTION bench_kept.run(p_name text, p_prepare text, p_check boolean,
                               p_scope text, p_after text) RETURNS jsonb[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE v jsonb[];
BEGIN
    IF p_check AND NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements p
                                WHERE p.name = p_name AND p.statement = p_prepare) THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_prepared_statements p WHERE p.name = p_name) THEN
            EXECUTE format('DEALLOCATE %I', p_name);
        END IF;
        EXECUTE p_prepare;
    END IF;
    EXECUTE format('EXECUTE %I(%L, %L)', p_name, p_scope, p_after) INTO v;
    RETURN v;
END $f$;
CREATE FUNCTION bench_kept.run_generic(p_name text, p_prepare text, p_check boolean,
                                       p_scope text, p_after text) RETURNS jsonb[]
LANGUAGE sql VOLATILE SET plan_cache_mode = force_generic_plan
RETURN bench_kept.run(p_name, p_prepare, p_check, p_scope, p_after);
"""


def kept(name: str, check: bool, generic: bool = False) -> str:
    prepare = f"PREPARE {name}(text, text) AS {RANGE}"
    run = "run_generic" if generic else "run"
    return (f"SELECT bench_kept.{run}('{name}', $p${prepare}$p$, {str(check).lower()}, "
            "%s, %s)")


WAYS = {
    "per call": "SELECT bench_kept.per_call(%s, %s)",
    "kept, checked": kept("bench_kept_checked", True),
    "kept, unchecked": kept("bench_kept_unchecked", False),
    "kept, generic forced": kept("bench_kept_generic", False, generic=True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE [default: a "
                             "throwaway cluster]")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the scope")
    parser.add_argument("--blocks", type=int, default=15, help="blocks per way")
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    args = parser.parse_args(argv)
    random.seed(11)
    with server(args.dsn) as (url, where), scratch_database(url, "pgjobs_bench_kept") as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        create_rows_table(conn)
        total = fill_interleaved(conn, args.rows)
        conn.execute(f"CREATE INDEX ON {TABLE} (table_id, id)")
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        conn.execute(FUNCTIONS)
        for name in ("bench_kept_unchecked", "bench_kept_generic"):
            conn.execute(f"PREPARE {name}(text, text) AS {RANGE}")
        schedstat = Path(f"/proc/{conn.info.backend_pid}/schedstat")
        if not schedstat.exists():
            print("the server does not run on this machine: no CPU to read")
            return 1

        def cpu_ns() -> int:
            return int(schedstat.read_text().split()[0])

        def call(text: str) -> None:
            conn.execute(text, ("1", str(random.randrange(total)))).fetchall()

        for text in WAYS.values():  # warm-up: caches, plans
            for _ in range(50):
                call(text)
        blocks: dict[str, list[float]] = {way: [] for way in WAYS}
        for block in range(args.blocks):
            for way in list(WAYS) if block % 2 == 0 else list(WAYS)[::-1]:
                started = cpu_ns()
                for _ in range(args.calls):
                    call(WAYS[way])
                blocks[way].append((cpu_ns() - started) / args.calls / 1000)
        plans = conn.execute("SELECT name, generic_plans, custom_plans "
                             "FROM pg_prepared_statements WHERE name LIKE 'bench_kept%' "
                             "ORDER BY name").fetchall()
    load = os.getloadavg()
    print(f"{args.rows:,}-row scope of a {total:,}-row relation ({where}); {args.blocks} "
          f"blocks x {args.calls} calls per way; load {load[0]:.1f}/{load[1]:.1f}")
    base = statistics.median(blocks["per call"])
    for way, times in blocks.items():
        median = statistics.median(times)
        print(f"  {way:<22} {median:7.1f} us  {median / base:5.2f}x")
    for name, generic, custom in plans:
        print(f"  {name}: {generic} generic plans, {custom} custom plans")
    return 0


if __name__ == "__main__":
    sys.exit(main())
