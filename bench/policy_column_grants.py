"""What policy jobs_client_read costs a client's read of ``pgjobs.jobs`` since
column grants count there (migration 0160), against another ``sql/`` tree.

Run from the repository root:

    python bench/policy_column_grants.py                      # this tree alone
    python bench/policy_column_grants.py --baseline-sql /tmp/main/sql

Two databases on one throwaway cluster (or --dsn), one migrated from this
tree's ``sql/`` (B), one from --baseline-sql (A, e.g. main's), each with the
same --jobs jobs of another role: half on ``t_read`` (a table the readers
may read), half on ``t_other`` (one they may not). Readers: ``table``
(SELECT on t_read), ``columns`` (SELECT on every column of t_read, not on
the table), ``none`` (no SELECT anywhere). Each figure is the server's
execution time of ``SELECT * FROM pgjobs.jobs`` as that role (EXPLAIN
ANALYZE, TIMING OFF), the median of --reps, rounds alternating A B A B;
the baseline, measured in the same database and rounds, is the
superuser's (no policy applied). The rows column says what each role
sees: a column-granted role sees t_read's jobs in B, only its own (none)
in A.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

ROLES = ("super", "table", "columns", "none")
PID = os.getpid()


def role_name(who: str, tree: str) -> str:
    """Roles are the cluster's: one set per tree's database."""
    return f"pgjobs_bench_pcg_{tree.lower()}_{who}_{PID}"


def setup(dsn: str, tree: str, root: Path | None, jobs: int) -> None:
    migrate(dsn, root)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("t_read", "t_other"):
            conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, scope int NOT NULL, "
                         "n int, label text, data jsonb, "
                         "created_at timestamptz NOT NULL DEFAULT now())")
            conn.execute(f"CREATE INDEX ON {table} (scope, id)")
        for who in ROLES[1:]:
            conn.execute(f"DROP ROLE IF EXISTS {role_name(who, tree)}")
            conn.execute(f"CREATE ROLE {role_name(who, tree)} NOLOGIN IN ROLE pgjobs_client")
        conn.execute(f"GRANT SELECT ON t_read TO {role_name('table', tree)}")
        conn.execute("GRANT SELECT (id, scope, n, label, data, created_at) ON t_read "
                     f"TO {role_name('columns', tree)}")
        conn.execute(f"""
            INSERT INTO pgjobs.jobs (kind, target, scope, status, submitted_by, started_at,
                                     finished_at)
            SELECT 'export', (ARRAY['t_read', 't_other'])[1 + i % 2]::regclass,
                   (i % 500)::text, 'succeeded', 'someone_else', now(), now()
              FROM generate_series(1, {jobs}) i""")
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


def drop_roles(dsn: str, tree: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for who in ROLES[1:]:
            conn.execute(f"DROP OWNED BY {role_name(who, tree)}")
            conn.execute(f"DROP ROLE {role_name(who, tree)}")


def server_ms(conn: psycopg.Connection[Any], tree: str, who: str) -> tuple[float, int]:
    """Execution time (ms) and rows of the read as who."""
    if who != "super":
        conn.execute(f"SET ROLE {role_name(who, tree)}")
    lines = [r[0] for r in conn.execute(
        "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) SELECT * FROM pgjobs.jobs")]
    conn.execute("RESET ROLE")
    ms = float(re.search(r"Execution Time: ([\d.]+)", lines[-1]).group(1))  # type: ignore[union-attr]
    rows = int(re.search(r"actual rows=(\d+)", lines[0]).group(1))  # type: ignore[union-attr]
    return ms, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", help="server URL (default: a throwaway cluster)")
    ap.add_argument("--baseline-sql", type=Path, help="the sql/ tree to compare with (A)")
    ap.add_argument("--jobs", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    with server(args.dsn) as (url, where), ExitStack() as stack:
        trees: dict[str, Path | None] = {"B": None}
        if args.baseline_sql:
            trees = {"A": args.baseline_sql.resolve(), "B": None}
        dsns = {}
        for name, root in trees.items():
            dsn = stack.enter_context(scratch_database(url, f"pgjobs_bench_pcg_{name.lower()}"))
            setup(dsn, name, root, args.jobs)
            stack.callback(drop_roles, dsn, name)
            dsns[name] = dsn
        conns = {name: stack.enter_context(psycopg.connect(dsn, autocommit=True))
                 for name, dsn in dsns.items()}
        times: dict[tuple[str, str], list[float]] = {}
        rows: dict[tuple[str, str], int] = {}
        for _ in range(2):  # warm every plan and cache
            for name, conn in conns.items():
                for who in ROLES:
                    server_ms(conn, name, who)
        for _ in range(args.reps):
            for who in ROLES:
                for name, conn in conns.items():  # A B A B ...
                    ms, seen = server_ms(conn, name, who)
                    times.setdefault((name, who), []).append(ms)
                    rows[(name, who)] = seen
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print(f"SELECT * FROM pgjobs.jobs over {args.jobs} jobs; {where}; median of "
              f"{args.reps} alternating rounds; load {' '.join(load)}")
        print(f"{'tree':<5} {'as':<8} {'rows':>6} {'server ms':>10} {'vs super':>9}"
              + (f" {'B vs A':>7}" if "A" in conns else ""))
        for who in ROLES:
            for name in conns:
                ms = statistics.median(times[(name, who)])
                base = statistics.median(times[(name, "super")])
                line = f"{name:<5} {who:<8} {rows[(name, who)]:>6} {ms:>10.2f} {ms / base:>8.2f}x"
                if name == "B" and "A" in conns:
                    line += f" {ms / statistics.median(times[('A', who)]):>6.2f}x"
                print(line, flush=True)


if __name__ == "__main__":
    main()
