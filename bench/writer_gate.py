"""The writers' gate with pause and retry: what pgjobs._writer_may_start costs
now that it compares queue places (coalesce(gate_order, id); pgjobs.retry sets
gate_order) and counts paused writers, against the gate as it was before
(ids only, queued and running; same settings pinned), measured in the same
run on the same jobs.

Every claim of a writing job calls the gate once per candidate; the figure is
the cost of one gate call, over queued writers of many scopes with a few
writers queued per scope (and some paused).

    python bench/writer_gate.py [--dsn URL] [--scopes 2000] [--per-scope 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

BEFORE = """
CREATE FUNCTION public.gate_before(p_target regclass, p_scope text, p_id bigint)
RETURNS boolean LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1 FROM pgjobs.jobs w
         WHERE w.target = p_target AND w.scope = p_scope
           AND w.kind IN ('delete', 'backfill', 'import')
           AND w.status IN ('queued', 'running')
           AND w.id <> p_id
           AND (w.status = 'running' OR w.id < p_id)
           AND (w.status = 'running' OR w.started_at IS NOT NULL
                OR (w.run_at <= now()
                    AND (w.kind IN ('delete', 'backfill')
                         OR w.run_at > now() - interval '10 minutes'))));
END $$;
"""

SETUP = """
CREATE TABLE t (id bigint PRIMARY KEY, scope int NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON t (scope, id);
SELECT pgjobs.register_target('t', 'id', 'scope', 'created_at');
"""

GATES = {
    "before": "SELECT count(*) FILTER (WHERE public.gate_before(target, scope, id)) "
              "FROM pgjobs.jobs WHERE status = 'queued'",
    "now": "SELECT count(*) FILTER (WHERE pgjobs._writer_may_start(target, scope, "
           "coalesce(gate_order, id))) FROM pgjobs.jobs WHERE status = 'queued'",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"))
    parser.add_argument("--scopes", type=int, default=2000)
    parser.add_argument("--per-scope", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with server(args.dsn) as (url, where), scratch_database(url, "pgjobs_gate") as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SETUP)
            conn.execute(BEFORE)
            for _ in range(args.per_scope):
                conn.execute("SELECT pgjobs.submit_delete('t', s::text) "
                             "FROM generate_series(1, %s) s", (args.scopes,))
            # One writer in ten paused (the rest of its scope waits behind it).
            conn.execute("UPDATE pgjobs.jobs SET status = 'paused' WHERE id % 10 = 0")
            conn.execute("VACUUM ANALYZE pgjobs.jobs")
            calls = int(conn.execute("SELECT count(*) FROM pgjobs.jobs "
                                     "WHERE status = 'queued'").fetchone()[0])
            timings: dict[str, list[float]] = {name: [] for name in GATES}
            for _ in range(args.repeat):  # interleaved: drift hits both alike
                for name, query in GATES.items():
                    started = time.perf_counter()
                    conn.execute(query)
                    timings[name].append((time.perf_counter() - started) / calls * 1e6)
        before = statistics.median(timings["before"])
        now = statistics.median(timings["now"])
        print(f"writer gate on {where}: {calls} queued writers over {args.scopes} scopes, "
              f"median of {args.repeat}")
        print(f"  before (ids, queued/running): {before:8.2f} us per gate call")
        print(f"  now (gate_order, paused):     {now:8.2f} us per gate call")
        print(f"  now/before: {now / before:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
