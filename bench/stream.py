"""Fairness against a tenant's stream of small writers, and what passing the
scope's turn on costs, against another sql/ tree in the same run.

Run from the repository root:

    python bench/stream.py                                  # throwaway cluster
    python bench/stream.py --against /path/to/main/sql --stream 400 --rounds 3

Tenant 1 queues --stream small backfills of its scope (each one page, so each
ends inside the runner's budget), then tenants 2..--others+1 queue one each.
One runner drains the queue with ``CALL pgjobs.run('1 minute')``. Printed per
round and per sql/ tree: how many of the stream's jobs ended before each other
tenant's job (its wait, in jobs), and the drain's seconds per job (the cost of
a writer's start, pgjobs._start_attempts, with the rest of a small job). The
two trees take turns going first in every round, so load drift hits both
alike; the ratio is taken round by round. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]


def prepare(conn: Conn, others: int) -> None:
    conn.execute("""
        CREATE TABLE IF NOT EXISTS rows (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, table_id int NOT NULL,
            data jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX IF NOT EXISTS rows_scope_key ON rows (table_id, id);
    """)
    conn.execute("TRUNCATE rows")
    conn.execute("INSERT INTO rows (table_id) SELECT t FROM generate_series(1, %s) t, "
                 "generate_series(1, 50)", (others + 1,))
    conn.execute("ANALYZE rows")
    conn.execute("SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data') "
                 "WHERE NOT EXISTS (SELECT FROM pgjobs.targets WHERE target = 'rows'::regclass)")


def backfill(conn: Conn, scope: int) -> int:
    row = conn.execute("SELECT pgjobs.submit_backfill('rows', %s, '{}', '{\"seen\": 1}', "
                       "'{\"on_conflict\": \"queue\"}')", (str(scope),)).fetchone()
    assert row is not None
    return int(row[0])


def one_round(dsn: str, stream: int, others: int) -> tuple[list[int], float]:
    """(stream jobs ended before each other tenant's job, seconds per job)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare(conn, others)
        mine = [backfill(conn, 1) for _ in range(stream)]
        theirs = [backfill(conn, t) for t in range(2, others + 2)]
        t0 = time.perf_counter()
        conn.execute("CALL pgjobs.run('1 minute')")
        seconds = time.perf_counter() - t0
        ended = {r[0]: r[1] for r in conn.execute(
            "SELECT id, finished_at FROM pgjobs.jobs WHERE id = ANY (%s) "
            "AND status = 'succeeded'", (mine + theirs,))}
        assert len(ended) == len(mine) + len(theirs), "not every job succeeded"
        waits = [sum(1 for j in mine if ended[j] < ended[o]) for o in theirs]
        conn.execute("DELETE FROM pgjobs.jobs WHERE id = ANY (%s)", (mine + theirs,))
        return waits, seconds / (len(mine) + len(theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"))
    parser.add_argument("--against", type=Path, metavar="SQL_DIR",
                        help="another sql/ tree (say main's) to measure beside this one")
    parser.add_argument("--stream", type=int, default=200, help="tenant 1's small backfills")
    parser.add_argument("--others", type=int, default=3, help="other tenants, one job each")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server(args.dsn) as (server_url, where), ExitStack() as stack:
        trees: dict[str, str] = {}
        for name, root in [("this", None), ("against", args.against)]:
            if name == "against" and root is None:
                continue
            dsn = stack.enter_context(scratch_database(server_url, f"pgjobs_bench_stream_{name}"))
            migrate(dsn, root)
            trees[name] = dsn
        print(f"{where}; stream {args.stream}, others {args.others}, rounds {args.rounds}")
        per_job: dict[str, list[float]] = {name: [] for name in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                waits, seconds = one_round(trees[name], args.stream, args.others)
                per_job[name].append(seconds)
                print(f"round {r + 1} {name:8s} other tenants waited for {waits} stream jobs; "
                      f"{seconds * 1000:.2f} ms a job")
        if "against" in trees:
            ratios = [a / b for a, b in zip(per_job["this"], per_job["against"], strict=True)]
            listed = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"ms a job, this / against, round by round: {listed} "
                  f"(median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
