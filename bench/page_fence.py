"""The DDL fence's cost per page (h80, migration 0091): a whole-scope delete
driven page by page at a fixed page size, under another sql/ tree (A: main's,
say) and this checkout's (B), in alternating rounds on one server, against a
plain DELETE of the same rows (the baseline, restored and timed each round).

    python bench/page_fence.py --compare-sql /path/to/main/sql
    python bench/page_fence.py --compare-sql ... --rows 200000 --scope-rows 50000 \\
        --page-sizes 100,1000 --repeat 4

Each round and side: the scope restored, a plain DELETE of it timed, the scope
restored again, then the job with page_size fixed, every _run_page call timed
(the first call, which counts the scope, left out). Prints per page size the
median page time per side and the ratio B/A, each side's job over its plain
DELETE, and the load average; nothing here is a pass/fail test. The fixed
part of a page (its checks, the fence's lock and epoch read) shows best at
small page sizes. No DDL runs during the jobs: this is the price of the lock
and the read on every page, not of the full checks a DDL commit causes.
The roles of the reach are asked again on every page too
(pgjobs._verdict_roles_hold); --roles N first creates N roles in the
cluster, each a member of one group of 10 (a tenant's role per client,
say), to show that their number costs a page nothing (a throwaway cluster
only: the roles are cluster-wide and not dropped). --client submits each
job as a client role (pgjobs_bench_client: pgjobs_client, SELECT and DELETE
on the table) rather than as the runner, so that a page asks the
submitter's rights of a role that holds them by grant. --full-checks dates
every page's verdict 2 s back before the page (untimed), so every page
checks in full: the price of the full check (the target's registration,
the walk of its reach, the submitter) rather than of the verdict's.
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
from delete import build, bulk_delete, restore, scalar  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]


def job_by_pages(conn: Conn, size: int, client: bool,
                 full_checks: bool) -> tuple[float, list[float], dict[str, Any]]:
    """A whole-scope delete of scope 1 at page_size `size`, driven one
    _run_page call a transaction as run_job does, each call timed:
    (seconds, page ms, the job's status and error)."""
    started = time.perf_counter()
    if client:
        conn.execute("SET ROLE pgjobs_bench_client")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', "
                          "jsonb_build_object('page_size', %s::int))", (size,))
    conn.execute("RESET ROLE")
    identity = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'bench')).worker", (job_id,))
    pages: list[float] = []
    while True:
        if full_checks:
            conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint, "
                         "'{verified,at}', to_jsonb(extract(epoch FROM clock_timestamp()) - 2))"
                         " WHERE id = %s AND checkpoint ? 'verified'", (job_id,))
        t0 = time.perf_counter()
        state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity))
        pages.append((time.perf_counter() - t0) * 1000)
        if state not in ("more", "retry"):
            break
    row = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None
    return time.perf_counter() - started, pages, {"status": row[0], "error": row[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"))
    parser.add_argument("--compare-sql", type=Path, metavar="DIR", required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--scope-rows", type=int, default=50_000)
    parser.add_argument("--page-sizes", default="100,1000")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--roles", type=int, default=0)
    parser.add_argument("--client", action="store_true",
                        help="submit as a client role, not as the runner")
    parser.add_argument("--full-checks", action="store_true",
                        help="every page checks in full (its verdict dated 2 s back)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent / "sql"
    roots = {"A " + str(args.compare_sql): args.compare_sql, "B this checkout": here}
    with server(args.dsn) as (url, what), ExitStack() as stack:
        if (args.roles or args.client) and args.dsn:
            parser.error("--roles and --client create cluster-wide roles: a throwaway "
                         "cluster only")
        with psycopg.connect(url, autocommit=True) as admin:
            for i in range(args.roles):
                admin.execute(f"CREATE ROLE pgjobs_bench_role_{i} NOLOGIN"
                              + (f" IN ROLE pgjobs_bench_role_{i - i % 10}" if i % 10 else ""))
            roles = admin.execute("SELECT count(*) FROM pg_roles").fetchone()
            members = admin.execute("SELECT count(*) FROM pg_auth_members").fetchone()
        print(f"{what}; {args.rows} rows, scope {args.scope_rows}, "
              f"{roles[0] if roles else '?'} roles, {members[0] if members else '?'} memberships, "
              f"submitter {'a client' if args.client else 'the runner'}"
              f"{', every page a full check' if args.full_checks else ''}, "
              f"load {os.getloadavg()[0]:.2f}")
        conns: dict[str, Conn] = {}
        for side, root in roots.items():
            dsn = stack.enter_context(scratch_database(url, "pgjobs_bench_fence_" + side[0]))
            migrate(dsn, root)
            conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
            build(conn, args.rows, args.scope_rows)
            if args.client:
                conn.execute("DO $$BEGIN CREATE ROLE pgjobs_bench_client NOLOGIN; "
                             "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
                conn.execute("GRANT pgjobs_client TO pgjobs_bench_client")
                conn.execute("GRANT SELECT, DELETE ON user_table_rows TO pgjobs_bench_client")
            conns[side] = conn
        for size in (int(s) for s in args.page_sizes.split(",")):
            pages: dict[str, list[float]] = {side: [] for side in conns}
            jobs: dict[str, list[float]] = {side: [] for side in conns}
            bulks: dict[str, list[float]] = {side: [] for side in conns}
            for round_ in range(args.repeat):
                order = list(conns) if round_ % 2 == 0 else list(reversed(conns))
                for side in order:
                    conn = conns[side]
                    restore(conn)
                    bulks[side].append(bulk_delete(conn, "table_id = 1")[0])
                    restore(conn)
                    seconds, ms, job = job_by_pages(conn, size, args.client,
                                                    args.full_checks)
                    assert job["status"] == "succeeded", job
                    pages[side].extend(ms[1:])
                    jobs[side].append(seconds)
            medians = {side: statistics.median(v) for side, v in pages.items()}
            a, b = medians.values()
            print(f"page_size {size}: " + "; ".join(
                f"{side}: page median {medians[side]:.2f} ms over {len(pages[side])} pages, "
                f"job {statistics.median(jobs[side]):.3f} s = "
                f"{statistics.median(jobs[side]) / statistics.median(bulks[side]):.2f}x "
                f"its plain DELETE ({statistics.median(bulks[side]):.3f} s)"
                for side in conns) + f"; pages B/A {b / a:.3f}; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
