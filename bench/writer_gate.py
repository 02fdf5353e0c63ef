"""The writers' gate: what pgjobs._writer_may_start costs now that it is
compiled from the one definition of the rule (pgjobs._gate_clause), against
the gate of the previous release (d9c3e0a: its own copy of the rule; same
settings pinned), and what asking pgjobs._gate_holder (`IS NULL`) instead
would cost, measured in the same run on the same jobs.

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

from _common import ROOT, scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

# The gate as the previous release (d9c3e0a) defined it: its own copy of the rule,
# beside pgjobs._gate_holder's.
PREVIOUS = (ROOT / "tests" / "upgrade" / "previous_sql" / "functions" / "_writer_may_start.sql")


def previous_gate() -> str:
    text = PREVIOUS.read_text(encoding="utf-8")
    head = "CREATE OR REPLACE FUNCTION pgjobs._writer_may_start("
    assert head in text
    return text.replace(head, "CREATE OR REPLACE FUNCTION public.gate_previous(")


SETUP = """
CREATE TABLE t (id bigint PRIMARY KEY, scope int NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON t (scope, id);
SELECT pgjobs.register_target('t', 'id', 'scope', 'created_at');
"""

GATES = {
    "previous": "SELECT count(*) FILTER (WHERE public.gate_previous(target, scope, "
                "coalesce(gate_order, id))) FROM pgjobs.jobs WHERE status = 'queued'",
    "now": "SELECT count(*) FILTER (WHERE pgjobs._writer_may_start(target, scope, "
           "coalesce(gate_order, id))) FROM pgjobs.jobs WHERE status = 'queued'",
    "holder": "SELECT count(*) FILTER (WHERE pgjobs._gate_holder(target, scope, "
           "coalesce(gate_order, id)) IS NULL) FROM pgjobs.jobs WHERE status = 'queued'",
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
            conn.execute(previous_gate())
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
        before = statistics.median(timings["previous"])
        now = statistics.median(timings["now"])
        print(f"writer gate on {where}: {calls} queued writers over {args.scopes} scopes, "
              f"median of {args.repeat}")
        print(f"  previous (d9c3e0a, its own copy of the rule): {before:8.2f} us per gate call")
        print(f"  now (pgjobs._writer_may_start):               {now:8.2f} us per gate call")
        print(f"  now/previous: {now / before:.2f}x")
        h = statistics.median(timings["holder"])
        print(f"  pgjobs._gate_holder(...) IS NULL (the shape not taken): {h:8.2f} us per call, "
              f"{h / before:.2f}x previous")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
