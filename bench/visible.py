"""Read-path latency: pgjobs.visible pages against plain keyset pages.

Run from the repository root:

    python bench/visible.py                   # a 1,000,000-row scope, throwaway cluster
    python bench/visible.py --rows 100000     # a quick run
    python bench/visible.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

The relation is a shared table like bench/preview.py's: the measured scope
(table_id 1, ``--rows`` rows, dated in the past) interleaved in chunks of 100
with as many rows of other tenants, the ``(table_id, id)`` btree pgjobs
requires and a ``(table_id, created_at)`` btree (the index the short cut past
a whole-scope delete uses; docs/engine.md, "Reads during a delete").

Measured in one run, ``--reads`` pages of 100 rows each at random positions
of the scope (``p_after`` a random key), interleaved per read so noise hits
every measure alike; p50 and p99 of the client's round trip:

1. no delete pending: ``pgjobs.visible`` against the unmasked keyset page
   (``SELECT to_jsonb(t) ... WHERE table_id = 1 AND id > $1 ORDER BY id
   LIMIT 100``, prepared by psycopg; on a big scope PostgreSQL plans it
   again at every execution, its generic estimate being above the custom
   plans', so the baseline includes a plan per call) -- the goal is <= 1.2x;
   and the floor of any function that builds the page per call: the same text as
   ``pgjobs.visible`` runs, through ``EXECUTE`` in a pinned PL/pgSQL
   function with no check at all (``dynamic page, no checks``);
2. a whole-scope delete of the scope queued (no runner), with ``--new`` rows
   inserted into the scope after its submit (the rows a reader still sees):
   ``pgjobs.visible``, and the masked query pgjobs ran before the short cut
   (the keyset page with ``AND <pgjobs.mask()>``, what a client that
   splices the mask runs) -- the goal is a p99 <= 50 ms;
3. the same delete running, after ``--pages`` pages of it: both again.

On a shared, loaded machine round trips are mostly waiting; so with no
delete pending the server CPU time of the reading backend (utime + stime from
/proc, when the server runs on this machine) is also measured per call, in
blocks of 50, for the unmasked page, ``pgjobs.visible`` and ``pgjobs.visible``
with its 1 s trust verdict thrown away before every call (the full trust
check each read made before migration 0024's session verdicts).

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import TABLE, create_rows_table, fill_interleaved, pct, scratch_database, server  # noqa: E402,E501

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]
PLAIN = f"SELECT to_jsonb(t) FROM {TABLE} t WHERE table_id = 1 AND id > %s ORDER BY id LIMIT 100"
# What pgjobs._visible_as runs with no delete pending, built and planned per
# call as there, and nothing else: the floor of a page built per call.
DYNAMIC_SETUP = f"""
CREATE FUNCTION public.bench_dynamic_page(p_after text) RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rows jsonb[];
    v_row jsonb;
BEGIN
    EXECUTE format('SELECT ARRAY(SELECT to_jsonb(t) FROM public.{TABLE} t WHERE t.table_id = '
                   '%L::integer AND t.id > %L::bigint AND (true) AND (true) AND (true) '
                   'ORDER BY t.id LIMIT 100)', '1', p_after) INTO v_rows;
    FOREACH v_row IN ARRAY v_rows LOOP
        RETURN NEXT v_row;
    END LOOP;
END $$"""
DYNAMIC = "SELECT public.bench_dynamic_page(%s::text)"
VISIBLE = f"SELECT pgjobs.visible('{TABLE}', '1', '{{}}', %s::text, 100)"


def build(conn: Conn, rows: int) -> int:
    create_rows_table(conn)
    total = fill_interleaved(conn, rows)
    conn.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), {total})")
    conn.execute(f"CREATE INDEX {TABLE}_scope_key ON {TABLE} (table_id, id)")
    conn.execute(f"CREATE INDEX {TABLE}_scope_created ON {TABLE} (table_id, created_at)")
    conn.execute(f"VACUUM (ANALYZE) {TABLE}")
    conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', 'created_at',"
                 " 'data')")
    return total


def measure(conn: Conn, reads: int, total: int,
            queries: dict[str, Callable[[int], object]]) -> dict[str, list[float]]:
    """Each query once per random cursor, in turn; returns the times by name."""
    for run in queries.values():  # warm-up: caches, plans, psycopg's prepare
        for _ in range(6):
            run(random.randrange(total))
    times: dict[str, list[float]] = {name: [] for name in queries}
    for _ in range(reads):
        after = random.randrange(total)
        for name, run in queries.items():
            started = time.perf_counter()
            run(after)
            times[name].append(time.perf_counter() - started)
    return times


def server_cpu(conn: Conn, total: int, blocks: int,
               queries: dict[str, Callable[[int], object]]) -> dict[str, float] | None:
    """Server CPU seconds per call of each query (None: the server is not local)."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    stat = Path(f"/proc/{row[0] if row else 0}/stat")
    if not stat.exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def used() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    spent = dict.fromkeys(queries, 0.0)
    for _ in range(blocks):
        for name, run in queries.items():
            started = used()
            for _ in range(50):
                run(random.randrange(total))
            spent[name] += used() - started
    return {name: cpu / (blocks * 50) for name, cpu in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE [default: a throwaway "
                             "cluster]")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scope")
    parser.add_argument("--reads", type=int, default=300, help="pages per measure")
    parser.add_argument("--new", type=int, default=500,
                        help="rows inserted into the scope after the delete's submit")
    parser.add_argument("--pages", type=int, default=50, help="pages the delete runs")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    random.seed(11)

    report: list[tuple[str, dict[str, list[float]], str | None]] = []
    with server(args.dsn) as (url, where), \
            scratch_database(url, "pgjobs_bench_visible", args.keep) as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            total = build(conn, args.rows)

            def plain(after: int) -> object:
                return conn.execute(PLAIN, (after,)).fetchall()

            def visible(after: int) -> object:
                return conn.execute(VISIBLE, (str(after),)).fetchall()

            def masked(after: int) -> object:
                mask = conn.execute(f"SELECT pgjobs.mask('{TABLE}', '1')").fetchone()
                assert mask is not None
                sql = (f"SELECT to_jsonb(t) FROM {TABLE} t WHERE table_id = 1 AND id > %s"
                       f" AND ({mask[0]}) ORDER BY id LIMIT 100")
                return conn.execute(sql.encode(), (after,)).fetchall()

            conn.execute(DYNAMIC_SETUP)

            def dynamic(after: int) -> object:
                return conn.execute(DYNAMIC, (str(after),)).fetchall()

            report.append(("no delete pending", measure(conn, args.reads, total, {
                "visible": visible, "dynamic page, no checks": dynamic,
                "unmasked keyset page": plain}), "unmasked keyset page"))
            slot = conn.execute("SELECT 'pgjobs.verified_trusted_' || %s::regclass::oid",
                                (TABLE,)).fetchone()

            def visible_full_check(after: int) -> object:
                conn.execute("SELECT set_config(%s, '', false)", (slot[0] if slot else "",))
                return visible(after)

            def reset_only(after: int) -> object:
                return conn.execute("SELECT set_config(%s, '', false)",
                                    (slot[0] if slot else "",)).fetchall()

            cpu = server_cpu(conn, total, max(1, args.reads // 50), {
                "unmasked keyset page": plain, "visible": visible,
                "dynamic page, no checks": dynamic,
                "visible, full trust check": visible_full_check, "(reset alone)": reset_only})

            conn.execute(f"SELECT pgjobs.submit_delete('{TABLE}', '1', '{{}}', '{{}}',"
                         " '{\"page_size\": 2000}')")
            conn.execute(f"INSERT INTO {TABLE} (table_id, data)"
                         " SELECT 1, jsonb_build_object('n', g) FROM generate_series(1, %s) g",
                         (args.new,))
            conn.execute(f"ANALYZE {TABLE}")
            report.append(("whole-scope delete queued", measure(conn, args.reads, total, {
                "visible": visible, "masked page (before)": masked}), "masked page (before)"))

            started = time.perf_counter()
            while True:
                conn.execute("CALL pgjobs.run('1 second')")
                done = conn.execute("SELECT done FROM pgjobs.jobs WHERE kind = 'delete'"
                                    " ORDER BY id DESC LIMIT 1").fetchone()
                assert done is not None
                if done[0] >= args.pages * 2000 or time.perf_counter() - started > 120:
                    break
            state = conn.execute("SELECT status, done FROM pgjobs.jobs WHERE kind = 'delete'"
                                 " ORDER BY id DESC LIMIT 1").fetchone()
            assert state is not None
            report.append((f"whole-scope delete {state[0]}, {state[1]:,} rows deleted",
                           measure(conn, args.reads, total, {
                               "visible": visible, "masked page (before)": masked}),
                           "masked page (before)"))
            seen = conn.execute(f"SELECT pgjobs.visible_count('{TABLE}', '1')").fetchone()

    print(f"pgjobs.visible on a {args.rows:,}-row scope of a {total:,}-row relation ({where}); "
          f"{args.reads} pages of 100 per measure, p50/p99 of the round trip; "
          f"visible_count at the end: {seen[0] if seen else '?'}")
    print(f"{'situation':<48} {'read':<22} {'p50':>8} {'p99':>8} {'p50 x':>7} {'p99 x':>7}")
    for situation, times, base in report:
        for name, series in times.items():
            ratio = ""
            if base is not None and name != base:
                ratio = (f"{pct(series, 0.5) / pct(times[base], 0.5):>6.2f}x "
                         f"{pct(series, 0.99) / pct(times[base], 0.99):>6.2f}x")
            print(f"{situation:<48} {name:<22} {pct(series, 0.5):>6.2f}ms "
                  f"{pct(series, 0.99):>6.2f}ms {ratio}")
            situation = ""
    if cpu is not None:
        base = cpu["unmasked keyset page"]
        print("server CPU per call, no delete pending (the reset's own cost subtracted):")
        for name, seconds in cpu.items():
            if name == "(reset alone)":
                continue
            if name == "visible, full trust check":
                seconds -= cpu["(reset alone)"]
            print(f"  {name:<28} {seconds * 1000:6.3f}ms {seconds / base:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
