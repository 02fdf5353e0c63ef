"""The cost of pgjobs.preview and of the unknown-field check, against plain SQL.

Run from the repository root:

    python bench/preview.py                    # a 100,000-row scope, throwaway cluster
    python bench/preview.py --rows 1000000     # the figure docs/operations.md quotes
    python bench/preview.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

The relation is a shared table like bench/delete.py's: the measured scope
(table_id 1, ``--rows`` rows) interleaved in chunks of 100 with as many rows
of other tenants, the ``(table_id, id)`` btree pgjobs requires, no index on
the document. Measured on the same data in the same run (median of
``--repeat`` runs after a warm-up):

- ``pgjobs.preview`` of the whole scope, against ``SELECT count(*)`` of the
  scope (as the planner runs it, in parallel here, and with no parallel
  workers), and with a 200 ms time limit (counted in key ranges, then
  estimated);
- ``pgjobs.preview`` with a document filter (20% of the scope), against
  ``SELECT count(*)`` of the scope's rows matching it;
- the typo guard: ``submit_delete`` (rolled back) with a filter on a field
  every row has, and with a misspelt field (refused after reading the scope
  up to the bound), against the same submit with ``allow_unknown_fields``.

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import TABLE, create_rows_table, fill_interleaved, scratch_database, server  # noqa: E402,E501

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]


def timed(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up: caches, plans
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def build(conn: Conn, rows: int) -> None:
    create_rows_table(conn, identity=False)
    fill_interleaved(conn, rows)
    conn.execute(f"CREATE INDEX {TABLE}_scope_key ON {TABLE} (table_id, id)")
    conn.execute(f"VACUUM (ANALYZE) {TABLE}")
    conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', 'created_at',"
                 " 'data')")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE [default: a throwaway "
                             "cluster]")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the scope")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measure")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    with server(args.dsn) as (url, where), \
            scratch_database(url, "pgjobs_bench_preview", args.keep) as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            build(conn, args.rows)

            def q(sql: str, params: Any = None) -> Callable[[], object]:
                return lambda: conn.execute(sql, params).fetchall()

            def serial(sql: str) -> Callable[[], object]:
                def run() -> None:
                    with conn.transaction():
                        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                        conn.execute(sql).fetchall()
                return run

            def preview(filter_: dict[str, Any]) -> Callable[[], object]:
                return q("SELECT pgjobs.preview(%s, '1', %s::jsonb, '{}',"
                         " '{\"time_limit_ms\": 600000}')", (TABLE, json.dumps(filter_)))

            def submit(filter_: dict[str, Any], options: dict[str, Any]) -> Callable[[], object]:
                def run() -> None:
                    try:
                        with conn.transaction(force_rollback=True):
                            conn.execute("SELECT pgjobs.submit_delete(%s, '1', %s::jsonb, '{}',"
                                         " %s::jsonb)",
                                         (TABLE, json.dumps(filter_), json.dumps(options)))
                    except psycopg.errors.InvalidParameterValue:
                        pass
                return run

            late = {"status": "late"}
            shown = conn.execute("SELECT pgjobs.preview(%s, '1', %s::jsonb, '{}',"
                                 " '{\"time_limit_ms\": 600000}')",
                                 (TABLE, json.dumps(late))).fetchone()
            assert shown is not None
            measures = [
                ("preview {} vs count(*) of the scope",
                 timed(preview({}), args.repeat),
                 timed(q(f"SELECT count(*) FROM {TABLE} WHERE table_id = 1"), args.repeat)),
                ("preview {} vs count(*) of the scope, no parallel workers",
                 timed(preview({}), args.repeat),
                 timed(serial(f"SELECT count(*) FROM {TABLE} WHERE table_id = 1"),
                       args.repeat)),
                ("preview {}, time_limit_ms 200 (estimate) vs count(*)",
                 timed(q("SELECT pgjobs.preview(%s, '1', '{}', '{}', '{\"time_limit_ms\": 200}')",
                         (TABLE,)), args.repeat),
                 timed(q(f"SELECT count(*) FROM {TABLE} WHERE table_id = 1"), args.repeat)),
                ("preview status=late vs count(*) of its rows",
                 timed(preview(late), args.repeat),
                 timed(q(f"SELECT count(*) FROM {TABLE} WHERE table_id = 1"
                         " AND data @> '{\"status\": \"late\"}'"), args.repeat)),
                ("submit, field every row has vs allow_unknown_fields",
                 timed(submit(late, {}), args.repeat),
                 timed(submit(late, {"allow_unknown_fields": True}), args.repeat)),
                ("submit, misspelt field (refused) vs allow_unknown_fields",
                 timed(submit({"stauts": "late"}, {}), args.repeat),
                 timed(submit({"stauts": "late"}, {"allow_unknown_fields": True}),
                       args.repeat)),
            ]
    print(f"pgjobs.preview on a {args.rows:,}-row scope ({where}); "
          f"preview said matches={shown[0]['matches']:,} exact={shown[0]['exact']}")
    print(f"{'measure':<58} {'pgjobs':>10} {'baseline':>10} {'ratio':>7}")
    for name, ours, base in measures:
        print(f"{name:<58} {ours * 1000:>8.1f}ms {base * 1000:>8.1f}ms {ours / base:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
