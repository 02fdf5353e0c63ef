"""A small filtered delete's fixed costs: submit and the job's first call
(`pgjobs.run_job`), against a bulk `DELETE` of the same rows, for this
checkout's sql/ (B) and another (A, e.g. main's), side by side on one server
in the same run.

Each round, per side: a submit of a filtered delete of one tenant's rows (10%
of its scope, clustered), then `CALL pgjobs.run_job` (the first call deletes
them all: they fit one page), then the rows are put back and a bulk `DELETE`
of the same rows is timed as the baseline. Submits are also timed alone
(submit + cancel), on a warm session and on a fresh connection each (as the
CLI and pg_cron's runner connect). Rounds alternate A and B, so the
machine's drift hits both alike. Prints medians and ratios. With --as-client
the submits (and their cancels) are made as a role granted pgjobs_client
(SET ROLE before the clock starts), so the checks that hold clients and
not administrators (pgjobs._require_client_room, ...) are in the figures.

    python bench/submit.py --compare-sql /path/to/main/sql [--dsn URL] [--rounds 7] [--as-client]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from _common import ROOT, scratch_database, server

from pgjobs.migrate import migrate

Conn = psycopg.Connection[Any]
TABLE = "submit_rows"
SCOPE = "3"
FILTER = {"batch": 0}  # 10% of the scope, together in the heap

SETUP = f"""
CREATE TABLE {TABLE} (id bigint PRIMARY KEY, table_id integer NOT NULL, data jsonb NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
CREATE INDEX ON {TABLE} (table_id, id);
INSERT INTO {TABLE}
SELECT g, 1 + (g - 1) / %(per)s, jsonb_build_object('batch', ((g - 1) %% %(per)s) * 10 / %(per)s,
                                                     'n', g %% 1000), now() - interval '1 day'
  FROM generate_series(1, %(rows)s) g;
CREATE TABLE saved AS SELECT * FROM {TABLE} WHERE table_id = {SCOPE} AND data @> '{{"batch": 0}}';
ANALYZE {TABLE};
SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', 'created_at', 'data');
"""
# A realistic catalog: a few hundred roles, as a multi-tenant install has.
ROLES = ("DO $$BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE ROLE %I', "
         "'bench_submit_' || pg_backend_pid() || '_' || i); END LOOP; END $$")


CLIENT = "bench_client_submit"  # not bench_submit_%: those are dropped by pattern
AS_CLIENT: list[bool] = [False]


def as_client(conn: Conn) -> None:
    if AS_CLIENT[0]:
        conn.execute(f"SET ROLE {CLIENT}")


def submit(conn: Conn) -> int:
    row = conn.execute("SELECT pgjobs.submit_delete(%s, %s, %s::jsonb)",
                       (TABLE, SCOPE, json.dumps(FILTER))).fetchone()
    assert row is not None
    return int(row[0])


def restore(conn: Conn) -> None:
    """Put the deleted rows back, then VACUUM: a page whose rows were deleted
    and re-inserted is not all-visible until a vacuum, and the index-only
    scans of a job's page bounds (pgjobs._nth_key) would read the heap
    too, as on no table autovacuum keeps."""
    conn.execute(f"INSERT INTO {TABLE} SELECT * FROM saved ON CONFLICT DO NOTHING")
    conn.execute(f"VACUUM (ANALYZE) {TABLE}")


def since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def round_of(dsn: str, conn: Conn, submits: int) -> dict[str, float]:
    out: dict[str, float] = {}
    warm = []
    as_client(conn)
    for _ in range(submits):
        started = time.perf_counter()
        job = submit(conn)
        warm.append(since(started))
        conn.execute("SELECT pgjobs.cancel(%s)", (job,))
    out["submit, warm session"] = statistics.median(warm)
    cold = []
    for _ in range(max(3, submits // 3)):
        with psycopg.connect(dsn, autocommit=True) as fresh:
            as_client(fresh)
            started = time.perf_counter()
            job = submit(fresh)
            cold.append(since(started))
            fresh.execute("SELECT pgjobs.cancel(%s)", (job,))
    out["submit, fresh connection"] = statistics.median(cold)
    started = time.perf_counter()
    job = submit(conn)
    out["submit of the job"] = since(started)
    conn.execute("RESET ROLE")
    started = time.perf_counter()
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    out["first call (run_job)"] = since(started)
    state = conn.execute("SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)).fetchone()
    assert state == ("succeeded",), state
    restore(conn)
    started = time.perf_counter()
    conn.execute(f"DELETE FROM {TABLE} WHERE table_id = {SCOPE} AND data @> '{{\"batch\": 0}}'")
    out["bulk DELETE"] = since(started)
    restore(conn)
    job_ms = out["submit of the job"] + out["first call (run_job)"]
    out["job / bulk"] = job_ms / out["bulk DELETE"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"))
    parser.add_argument("--compare-sql", type=Path, required=True, metavar="DIR")
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--scope-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--submits", type=int, default=15)
    parser.add_argument("--as-client", action="store_true",
                        help="submit as a role granted pgjobs_client, not as the superuser")
    args = parser.parse_args()
    AS_CLIENT[0] = args.as_client
    roots = {"A": args.compare_sql, "B": ROOT / "sql"}
    with (server(args.dsn) as (url, where), scratch_database(url, "submit_a") as dsn_a,
          scratch_database(url, "submit_b") as dsn_b):
        dsns = {"A": dsn_a, "B": dsn_b}
        conns: dict[str, Conn] = {}
        for side, dsn in dsns.items():
            migrate(dsn, roots[side])
            conns[side] = psycopg.connect(dsn, autocommit=True)
            conns[side].execute(SETUP % {"rows": int(args.rows), "per": int(args.scope_rows)})
            # A real table's visibility map: freshly loaded, every page would
            # send an index-only scan to the heap (VACUUM cannot run in SETUP's
            # implicit transaction).
            conns[side].execute(f"VACUUM (ANALYZE) {TABLE}")
        conns["A"].execute(ROLES)  # roles are the cluster's: both sides see them
        if args.as_client:
            conns["A"].execute(f"DROP ROLE IF EXISTS {CLIENT}")
            conns["A"].execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
            for c in conns.values():
                c.execute(f"GRANT SELECT, DELETE ON {TABLE} TO {CLIENT}")
        results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for _ in range(args.rounds):
            for side in ("A", "B"):
                results[side].append(round_of(dsns[side], conns[side], args.submits))
        conns["A"].execute("DO $$DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles "
                           "WHERE rolname LIKE 'bench\\_submit\\_%' LOOP "
                           "EXECUTE format('DROP ROLE %I', r); END LOOP; END $$")
        if args.as_client:
            for c in conns.values():
                c.execute(f"DROP OWNED BY {CLIENT}")
            conns["A"].execute(f"DROP ROLE {CLIENT}")
        for c in conns.values():
            c.close()
    print(f"submit and first call on {where}: {args.rows} rows, a {args.scope_rows}-row scope, "
          f"10% clustered; medians of {args.rounds} alternating rounds (ms)"
          f"{', submits as a pgjobs_client role' if args.as_client else ''}")
    print(f"  A = {args.compare_sql}\n  B = {roots['B']}")
    print(f"  {'':28s} {'A':>9s} {'B':>9s} {'B/A':>6s}")
    for name in results["A"][0]:
        a = statistics.median(r[name] for r in results["A"])
        b = statistics.median(r[name] for r in results["B"])
        print(f"  {name:28s} {a:9.2f} {b:9.2f} {b / a:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
