"""A client's submit as it keeps more jobs: this checkout's sql/ (B) against
another (A, e.g. main's), side by side on one server in the same run.

The client role keeps K finished jobs (0, 20,000, 99,000 by default; made
by one INSERT, as pruning would leave them), under the built-in ceilings
(max_jobs_kept_per_client 100,000: at 99,000 the count is near it and made
under the client's lock). Each round, per side: `--submits` custom-kind
submits as the client (autocommit, a warm session; each job canceled after
its clock stops, so the pending count stays flat), timed one by one. Rounds
alternate A and B, so the machine's drift hits both alike. Prints each
side's median and the ratio B/A per K. --payload N pads each payload with N
bytes (past 4096 bytes a job, a client's running total of kept bytes is
updated under its lock: the cost of max_item_bytes_per_client on a large
submit).

    python bench/client_kept.py --compare-sql /path/to/main/sql [--dsn URL] [--rounds 3]
        [--payload N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from _common import ROOT, scratch_database, server

from pgjobs.migrate import migrate

Conn = psycopg.Connection[Any]
CLIENT = "bench_client_kept"


def _setup(dsn: str, root: Path) -> None:
    migrate(dsn, root)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept_rows (id bigint PRIMARY KEY, table_id integer)")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CLIENT,)).fetchone():
            conn.execute(f"CREATE ROLE {CLIENT}")
        conn.execute(f"GRANT pgjobs_client TO {CLIENT}")
        conn.execute(f"GRANT SELECT, UPDATE ON kept_rows TO {CLIENT}")


def _keep(dsn: str, kept: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("INSERT INTO pgjobs.jobs (kind, target, scope, submitted_by, "
                     "submitted_by_oid, status, finished_at) "
                     "SELECT 'k', 'kept_rows', g::text, r.rolname, r.oid, 'canceled', now() "
                     "FROM generate_series(1, %s) g, pg_roles r WHERE r.rolname = %s",
                     (kept, CLIENT))
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


def _submits(dsn: str, n: int, payload: int) -> list[float]:
    times = []
    body = json.dumps({"pad": "x" * payload})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET ROLE {CLIENT}")
        for i in range(n):
            start = time.perf_counter()
            row = conn.execute("SELECT pgjobs.submit('k', 'kept_rows', %s, %s::jsonb)",
                               (str(i), body)).fetchone()
            times.append(time.perf_counter() - start)
            assert row
            conn.execute("SELECT pgjobs.cancel(%s)", (row[0],))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-sql", type=Path, required=True)
    parser.add_argument("--dsn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--kept", default="0,20000,99000")
    parser.add_argument("--payload", type=int, default=0,
                        help="bytes of padding in each payload (past 4096 bytes a job a "
                             "client's running total is updated, under its lock)")
    args = parser.parse_args()
    roots = {"A": args.compare_sql, "B": ROOT / "sql"}
    with (server(args.dsn) as (url, where), scratch_database(url, "kept_a") as dsn_a,
          scratch_database(url, "kept_b") as dsn_b):
        dsns = {"A": dsn_a, "B": dsn_b}
        for side in "AB":
            _setup(dsns[side], roots[side])
        print(f"{where}\n  A = {roots['A']}\n  B = {roots['B']}")
        for kept in (int(k) for k in args.kept.split(",")):
            medians: dict[str, list[float]] = {"A": [], "B": []}
            for _ in range(args.rounds):
                for side in "AB":
                    _keep(dsns[side], kept)
                    medians[side].append(statistics.median(_submits(dsns[side], args.submits,
                                                                       args.payload)))
            a, b = (statistics.median(medians[s]) * 1000 for s in "AB")
            runs = ", ".join(f"{x * 1000:.1f}/{y * 1000:.1f}"
                             for x, y in zip(medians["A"], medians["B"], strict=True))
            print(f"kept {kept:>6}: A {a:6.1f} ms  B {b:6.1f} ms  B/A {b / a:4.2f}  "
                  f"(per round A/B medians: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
