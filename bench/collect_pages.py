"""A collect delete's page statement: by address list against by block range.

Run from the repository root:

    python bench/collect_pages.py                    # 2M rows, a 500k-row scope, both layouts
    python bench/collect_pages.py --repeat 5 --layouts contiguous
    python bench/collect_pages.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

A collect job's pages delete the rows at their collected addresses that
still match (``DELETE ... WHERE <scope> AND ctid = ANY ((SELECT $1)::tid[])
AND coalesce((<predicate>), false)``, a TID scan: docs/engine.md, *Selective
filters*). The alternative measured here deletes each page by the block
range its addresses span (``ctid >= <first> AND ctid <= <last> AND ...``, a
TID Range Scan, PostgreSQL 14+), which reads every row of those blocks,
other tenants' and the scope's unmatched rows too, and tests the predicate
on each. Which is cheaper depends on how densely the page's addresses fill
their blocks: the density printed is the page's addresses over (blocks
spanned x the table's rows per block), the median over the shape's pages.

On the relation of bench/delete.py (``--rows``, ``--scope-rows``, the
contiguous and interleaved layouts, with the btree_gin index), for each
shape: the matching rows' addresses are collected into pages of
``--page-size`` (server side, in a table), then, after a restore of the
relation each time, alternately: the bulk ``DELETE`` (through the btree_gin
index, as bench/delete.py's), every page by address list, every page by
block range. Each page statement runs in a PL/pgSQL function, planned as
the engine plans it (the addresses bound with ``USING``), so the addresses
never cross the wire: sent from the client as a text array parameter,
parsing 33,000 of them cost more than the page's delete itself (that
harness put the address list at 1.7x a bulk ``DELETE`` without the
btree_gin index, the block range at 1.0-1.4x). Medians of ``--repeat``
runs; the machine is shared and noisy: read the ratios.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import delete as bench_delete  # noqa: E402
from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]
TABLE = bench_delete.TABLE

# name -> the document condition (of the scope's rows). The first two are
# bench/delete.py's filtered shapes; the "batch 3" ones keep a share of a
# clustered batch, for pages of every density between.
SHAPES = {
    "10% clustered": """data @> '{"batch": 3}'""",
    "20% on every page": """data @> '{"status": "late"}'""",
    "clustered, 80% of its rows": ("""data @> '{"batch": 3}' """
                                   """AND NOT data @> '{"status": "late"}'"""),
    "clustered, 40% of its rows": ("""data @> '{"batch": 3}' AND (data @> '{"status": "late"}' """
                                   """OR data @> '{"status": "hold"}')"""),
}

PAGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION bench_page(p_page integer, p_range boolean, p_predicate text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_tids tid[];
    v_first tid;
    v_last tid;
    v_rows bigint;
BEGIN
    SELECT p.tids, p.first, p.last INTO v_tids, v_first, v_last
      FROM bench_pages p WHERE p.page = p_page;
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('enable_indexscan', 'off', true);
    PERFORM set_config('enable_bitmapscan', 'off', true);
    PERFORM set_config('jit', 'off', true);
    IF p_range THEN
        EXECUTE format('DELETE FROM {TABLE} WHERE ctid >= $1 AND ctid <= $2 AND table_id = 1 '
                       'AND coalesce((%s), false)', p_predicate) USING v_first, v_last;
    ELSE
        EXECUTE format('DELETE FROM {TABLE} WHERE table_id = 1 AND ctid = ANY ((SELECT $1)::tid[]) '
                       'AND coalesce((%s), false)', p_predicate) USING v_tids;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END $$;
"""


def collect(conn: Conn, where: str, page_size: int) -> tuple[int, int, float]:
    """The matching rows' addresses, in pages: (pages, rows, median density)."""
    conn.execute("DROP TABLE IF EXISTS bench_pages")
    conn.execute("CREATE TABLE bench_pages (page integer, tids tid[], first tid, last tid)")
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute(f"""
            INSERT INTO bench_pages
            SELECT p, a, (SELECT min(x) FROM unnest(a) x), (SELECT max(x) FROM unnest(a) x)
              FROM (SELECT p, m.t[p * {page_size} + 1 : (p + 1) * {page_size}] AS a
                      FROM (SELECT array_agg(ctid) AS t FROM {TABLE} WHERE {where}) m,
                           generate_series(0, (cardinality(m.t) - 1) / {page_size}) p) s""")
    row = conn.execute(f"""
        SELECT count(*), coalesce(sum(cardinality(p.tids)), 0),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY cardinality(p.tids)
                   / (((p.last::text::point)[0] - (p.first::text::point)[0] + 1)
                      * (SELECT c.reltuples / c.relpages FROM pg_class c
                          WHERE c.oid = '{TABLE}'::regclass)))
          FROM bench_pages p""").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2] or 0)


def measure(conn: Conn, layout: str, args: argparse.Namespace) -> None:
    bench_delete.build(conn, args.rows, args.scope_rows, layout)
    conn.execute(f"CREATE INDEX {TABLE}_doc ON {TABLE} USING gin (table_id, data jsonb_path_ops)")
    conn.execute(f"VACUUM (ANALYZE) {TABLE}")
    conn.execute(PAGE_FUNCTION)
    cutoff = bench_delete.scalar(conn, "SELECT (pgjobs._cutoff_clause(r, now())).clause "
                                       "FROM pgjobs.target_registry r")
    print(f"\n{layout} layout: {args.rows:,} rows, scope of {args.scope_rows:,}; pages of "
          f"{args.page_size:,} addresses; median of {args.repeat} runs (load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"  {'shape':<28} {'rows':>7} {'pages':>5} {'density':>7} {'bulk ms':>8} "
          f"{'list ms':>8} {'range ms':>8} {'list/bulk':>9} {'range/bulk':>10} {'range/list':>10}")
    for shape, condition in SHAPES.items():
        where = f"table_id = 1 AND {cutoff} AND ({condition})"
        predicate = f"table_id = 1 AND {cutoff} AND coalesce(({condition}), false)"
        runs: dict[str, list[float]] = {"bulk": [], "list": [], "range": []}
        pages = rows = 0
        density = 0.0
        for round_ in range(args.repeat):
            order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
            for side in order:
                bench_delete.restore(conn)
                pages, rows, density = collect(conn, where, args.page_size)
                started = time.perf_counter()
                if side == "bulk":
                    with conn.transaction():
                        conn.execute("SET LOCAL enable_seqscan = off")
                        deleted = conn.execute(f"DELETE FROM {TABLE} WHERE {where}").rowcount
                else:
                    deleted = 0
                    for page in range(pages):
                        deleted += int(bench_delete.scalar(
                            conn, "SELECT bench_page(%s, %s, %s)",
                            (page, side == "range", predicate)))
                runs[side].append(time.perf_counter() - started)
                assert deleted == rows, (shape, side, deleted, rows)
        med = {side: statistics.median(v) * 1000 for side, v in runs.items()}
        print(f"  {shape:<28} {rows:>7,} {pages:>5} {density:>7.2f} {med['bulk']:>8.1f} "
              f"{med['list']:>8.1f} {med['range']:>8.1f} {med['list'] / med['bulk']:>8.2f}x "
              f"{med['range'] / med['bulk']:>9.2f}x {med['range'] / med['list']:>9.2f}x",
              flush=True)
    bench_delete.restore(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="server URL (user may CREATE DATABASE) "
                                      "[default: a throwaway cluster]")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--scope-rows", type=int, default=500_000)
    parser.add_argument("--layouts", default="contiguous,interleaved")
    parser.add_argument("--page-size", type=int, default=33_000,
                        help="addresses per page (a collect job's pages reach 33,000-50,000 "
                             "at page_ms 50) [default: 33000]")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args(argv)
    with server(args.dsn) as (server_url, where):
        print(f"collect pages: address list against block range, on {where}", flush=True)
        for layout in [name.strip() for name in args.layouts.split(",") if name.strip()]:
            with scratch_database(server_url, "pgjobs_bench_collect_pages", args.keep) as dsn:
                migrate(dsn)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    measure(conn, layout, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
