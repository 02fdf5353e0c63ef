"""The deferred typo guard: what a claim and a job's first page cost when a
delete's filter names a document field that no row of its scope has.

Run from the repository root:

    python bench/typo_guard.py                  # a 1,000,000-row scope, throwaway cluster
    python bench/typo_guard.py --rows 100000    # a quick run
    python bench/typo_guard.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

``--jobs`` deletes (``{"stauts": {"$ne": "keep"}}``: a misspelt field) are
submitted on scope 1 while it has no row, so each defers its typo guard
(payload ``unchecked_fields``); then the scope is filled with ``--rows`` rows,
interleaved in chunks of 100 with as many rows of other tenants, none with the
field. The jobs are then claimed (``pgjobs.claim``, limit 1) until none is
queued, and a claimed job gets its pages (``pgjobs._run_page``, each in a
transaction of its own) until one is not 'more'; the round trip of each
call is timed (a claim that
fails a job picks the next one, so one claim may judge them all). Wherever
the guard runs, the walk of the scope (up to pgjobs.field_check_rows rows)
is paid once per job: the point is where, since a claim holds every job row
it picked, and the runner's loop, while it runs.

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import TABLE, create_rows_table, fill_interleaved, pct, scratch_database, server  # noqa: E402,E501

from pgjobs.migrate import migrate  # noqa: E402

KEEP_DOCUMENT = "jsonb_build_object('status', 'keep', 'n', g % 1000)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE [default: a throwaway "
                             "cluster]")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scope")
    parser.add_argument("--jobs", type=int, default=5, help="misspelt deletes to claim")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    claims: list[float] = []
    pages: list[float] = []
    outcome: list[str] = []
    with server(args.dsn) as (url, where), \
            scratch_database(url, "pgjobs_bench_typo", args.keep) as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_rows_table(conn)
            conn.execute(f"CREATE INDEX {TABLE}_scope_key ON {TABLE} (table_id, id)")
            conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', "
                         "'created_at', 'data')")
            ids = [conn.execute(f"SELECT pgjobs.submit_delete('{TABLE}', '1', "
                                "'{\"stauts\": {\"$ne\": \"keep\"}}')").fetchone()
                   for _ in range(args.jobs)]
            total = fill_interleaved(conn, args.rows, KEEP_DOCUMENT)
            conn.execute(f"VACUUM (ANALYZE) {TABLE}")
            for _ in ids:
                before = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE status = 'queued'"
                                      ).fetchone()
                started = time.perf_counter()
                claimed = conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['delete'], "
                                       "'bench', '5 minutes', 1)").fetchall()
                claims.append(time.perf_counter() - started)
                after = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE status = 'queued'"
                                     ).fetchone()
                assert before is not None and after is not None
                outcome.append(f"{before[0] - after[0]} left the queue")
                while claimed:  # its pages until the walk is over (not 'more')
                    started = time.perf_counter()
                    state = conn.execute("SELECT pgjobs._run_page(%s, %s)",
                                         claimed[0]).fetchone()
                    pages.append(time.perf_counter() - started)
                    if not state or state[0] != "more":
                        break
                if not after[0]:
                    break
            ended = conn.execute("SELECT string_agg(status, ', ' ORDER BY id) FROM pgjobs.jobs"
                                 ).fetchone()
            left = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE table_id = 1").fetchone()

    print(f"deferred typo guard, missing field, {args.rows:,}-row scope of a {total:,}-row "
          f"relation ({where}); {args.jobs} jobs; rows of the scope left: "
          f"{left[0] if left else '?'}; jobs: {ended[0] if ended else '?'}")
    print("claims: " + "; ".join(f"{t * 1000:.1f}ms ({o})"
                                 for t, o in zip(claims, outcome, strict=True)))
    print(f"{'call':<24} {'n':>3} {'p50':>9} {'max':>9}")
    for name, series in (("claim (one job)", claims), ("page", pages)):
        if series:
            print(f"{name:<24} {len(series):>3} {pct(series, 0.5):>7.1f}ms "
                  f"{max(series) * 1000:>7.1f}ms")
        else:
            print(f"{name:<24} {0:>3} {'-':>9} {'-':>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
