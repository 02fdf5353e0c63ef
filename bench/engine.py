"""Fairness, parallel runners and wake-up latency of the engine loop.

Run from the repository root:

    python bench/engine.py                       # throwaway cluster, default sizes
    python bench/engine.py --big-rows 1000000 --tenant-rows 150000
    python bench/engine.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

Measured in one run, on one relation shared by every tenant:

- fairness: one whole-scope delete of --big-rows rows is submitted and gets
  a first budget; then --small small deletes (--small-rows each) of other
  tenants are submitted, and one runner calls ``CALL pgjobs.run(--budget)``
  until everything is done. Printed: in which budget (counted from their
  submission) each small job finished, and how many budgets the big one took.
- runners: whole-scope deletes of 4 tenants (--tenant-rows each) worked by
  1 runner, then (same data, restored) by 2 runners side by side, each a
  session looping ``CALL pgjobs.run`` as ``pgjobs run --loop --runners N``
  does: the time ratio.
- latency: an idle ``pgjobs run --loop`` (cli/runners.py, waking on the
  ``submitted`` event) against the old poll-every-second loop: from a small
  job's submit (created_at) to its claim (started_at), p50 and p99.

Nothing here is a pass/fail test; the figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import scratch_database, server  # noqa: E402

from pgjobs import db  # noqa: E402
from pgjobs.cli.runners import run_loop  # noqa: E402
from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]
BIG = 1
SMALL = range(100, 200)
RUNNER_TENANTS = [11, 12, 13, 14]


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def scalar(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def build(conn: Conn, args: argparse.Namespace) -> None:
    started = time.monotonic()
    conn.execute("""
        CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           table_id int NOT NULL, data jsonb NOT NULL,
                           created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    # Tenants interleaved in chunks of 100 rows, as they arrive in a shared table.
    parts = [(BIG, args.big_rows)] + [(t, args.small_rows) for t in SMALL[:args.small]] + \
        [(t, args.tenant_rows) for t in RUNNER_TENANTS]
    conn.execute("""
        INSERT INTO rows (table_id, data)
        SELECT p.t, jsonb_build_object('n', g)
          FROM unnest(%s::int[], %s::int[]) p(t, n), generate_series(1, p.n) g
         ORDER BY g / 100, p.t""", ([p[0] for p in parts], [p[1] for p in parts]))
    conn.execute("CREATE INDEX rows_scope_key ON rows (table_id, id)")
    conn.execute("CREATE TABLE rows_copy AS SELECT * FROM rows")
    conn.execute("VACUUM (ANALYZE) rows")
    conn.execute("SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data')")
    log(f"built {scalar(conn, 'SELECT count(*) FROM rows'):,} rows in "
        f"{time.monotonic() - started:.0f} s")


def restore(conn: Conn) -> None:
    conn.execute("VACUUM rows")
    conn.execute("INSERT INTO rows OVERRIDING SYSTEM VALUE SELECT c.* FROM rows_copy c "
                 "WHERE NOT EXISTS (SELECT FROM rows r WHERE r.id = c.id) ORDER BY c.id")
    conn.execute("VACUUM (ANALYZE) rows")
    conn.execute("DELETE FROM pgjobs.jobs")


def submit(conn: Conn, scope: int) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s)", (str(scope),)))


def pending(conn: Conn, ids: list[int]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s) "
                            "AND status IN ('queued', 'running')", (ids,)))


def fairness(conn: Conn, args: argparse.Namespace) -> dict[str, Any]:
    big = submit(conn, BIG)
    conn.execute("CALL pgjobs.run(%s::interval)", (args.budget,))
    small = [submit(conn, t) for t in SMALL[:args.small]]
    finished_in: dict[int, int] = {}
    budgets = 1
    # Per budget after the submission: (seconds, the big job's rows, small
    # jobs finished, the big job's throttle reason then): whether a budget
    # went to the big job, to small ones, or to a hold.
    trace: list[tuple[float, int, int, str]] = []
    big_done = int(scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (big,)))
    while pending(conn, [big, *small]):
        t0 = time.perf_counter()
        conn.execute("CALL pgjobs.run(%s::interval)", (args.budget,))
        seconds = time.perf_counter() - t0
        budgets += 1
        ended = 0
        for job_id, status in conn.execute("SELECT id, status FROM pgjobs.jobs "
                                           "WHERE id = ANY (%s)", (small,)):
            if status == "succeeded" and job_id not in finished_in:
                finished_in[job_id] = budgets - 1  # budgets since their submission
                ended += 1
        now_done, held = conn.execute(
            "SELECT done, checkpoint -> 'throttled' ->> 'reason' FROM pgjobs.jobs "
            "WHERE id = %s", (big,)).fetchone()  # type: ignore[misc]
        trace.append((seconds, now_done - big_done, ended, held or "-"))
        big_done = now_done
    statuses = {r[0] for r in conn.execute("SELECT status FROM pgjobs.jobs")}
    assert statuses == {"succeeded"}, statuses
    log(f"fairness: big job took {budgets} budgets; small jobs finished in budgets "
        f"{sorted(finished_in.values())}")
    log("fairness: budgets after the submission (seconds, big job's rows, small jobs ended, "
        "held by): " + ", ".join(f"({s:.1f}, {b:,}, {e}, {h})" for s, b, e, h in trace))
    return {"budgets": budgets, "small": sorted(finished_in.values()), "trace": trace}


def runners(dsn: str, n: int, budget: str) -> float:
    """Seconds for N sessions looping CALL pgjobs.run to finish the 4 deletes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [submit(conn, t) for t in RUNNER_TENANTS]

    def loop() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while pending(c, ids):
                c.execute("CALL pgjobs.run(%s::interval)", (budget,))

    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    log(f"runners: {n} runner(s), 4 whole-scope deletes in {seconds:.2f} s")
    return seconds


def latency(dsn: str, wake: bool, samples: int) -> tuple[list[float], list[float]]:
    """ms from a small job's submit to its claim (server clock), and to its
    end as this client sees it (the job is one page: its end is its first
    page's commit), with an idle loop that
    either wakes on `submitted` (cli/runners.py) or polls every second."""
    stop = threading.Event()

    def poll_loop() -> None:  # the loop before LISTEN: sleep 1 s when idle
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                c.execute("CALL pgjobs.run('5 seconds')")
                if time.monotonic() - t0 < 0.5:
                    time.sleep(1.0)

    def connect(**kwargs: Any) -> Any:
        return db.connect(dsn, **kwargs)

    target = (lambda: run_loop(connect, "5 seconds", True, 1.0, stop)) if wake \
        else poll_loop
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    out: list[float] = []
    ended: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        time.sleep(1.5)
        for i in range(samples):
            submitted = time.perf_counter()
            job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, "
                                      "'{\"n\": 1}')", (str(SMALL[i % 5]),)))
            while pending(conn, [job_id]) and not scalar(
                    conn, "SELECT started_at IS NOT NULL FROM pgjobs.jobs WHERE id = %s",
                    (job_id,)):
                time.sleep(0.005)
            out.append(float(scalar(conn, "SELECT extract(epoch FROM started_at - created_at) "
                                          "* 1000 FROM pgjobs.jobs WHERE id = %s", (job_id,))))
            while pending(conn, [job_id]):
                time.sleep(0.005)
            ended.append((time.perf_counter() - submitted) * 1000)  # seen by polling every 5 ms
            time.sleep(0.3 + (i % 7) * 0.1)  # idle again, at varied phases of the poll
    stop.set()
    if wake:  # wake the waiting loop so that it sees stop
        with psycopg.connect(dsn, autocommit=True) as conn:
            submit(conn, SMALL[0])
    thread.join(timeout=10)
    return out, ended


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round((len(ordered) - 1) * p / 100)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL (user may CREATE DATABASE) [env PGJOBS_BENCH_DSN; "
                             "default: a throwaway cluster]")
    parser.add_argument("--big-rows", type=int, default=1_000_000,
                        help="rows of the big delete [default: 1000000]")
    parser.add_argument("--small", type=int, default=20, help="small deletes [default: 20]")
    parser.add_argument("--small-rows", type=int, default=2_000,
                        help="rows of each small delete [default: 2000]")
    parser.add_argument("--tenant-rows", type=int, default=150_000,
                        help="rows of each of the 4 tenants of the runners run [default: 150000]")
    parser.add_argument("--budget", default="2 seconds",
                        help="runner budget of the fairness run [default: 2 seconds]")
    parser.add_argument("--samples", type=int, default=20, help="latency samples [default: 20]")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if not 1 <= args.small <= len(SMALL):
        parser.error(f"--small must be from 1 to {len(SMALL)}")

    with server(args.dsn) as (server_url, where), \
            scratch_database(server_url, "pgjobs_bench_engine", args.keep) as dsn:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = scalar(conn, "SHOW server_version")
            build(conn, args)
            fair = fairness(conn, args)
            restore(conn)
        one = runners(dsn, 1, "5 seconds")
        with psycopg.connect(dsn, autocommit=True) as conn:
            restore(conn)
        two = runners(dsn, 2, "5 seconds")
        with psycopg.connect(dsn, autocommit=True) as conn:
            restore(conn)
        woken = latency(dsn, True, args.samples)
        polled = latency(dsn, False, args.samples)

    print(f"pgjobs engine benchmark: PostgreSQL {version} on {where}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"\nfairness, 1 runner, budget {args.budget}: a {args.big_rows:,}-row delete queued "
          f"first, then {args.small} deletes of {args.small_rows:,} rows of other tenants")
    print(f"  small jobs finished within {max(fair['small'])} budget(s) of their submission "
          f"(each: {fair['small']}); goal <= 2. The big job took {fair['budgets']} budgets.")
    print("  the first budgets after the submission (seconds, the big job's rows, small jobs "
          "ended, the big job held by): "
          + ", ".join(f"({s:.1f}, {b:,}, {e}, {h})" for s, b, e, h in fair["trace"][:6]))
    print(f"\nrunners: 4 whole-scope deletes of {args.tenant_rows:,} rows each (4 tenants)")
    print(f"  1 runner {one:.2f} s, 2 runners {two:.2f} s: 2 runners take {two / one:.2f}x "
          f"the time of 1 (throughput {one / two:.2f}x)")
    print(f"\nlatency, submit to claim of a small job with an idle loop ({args.samples} samples)")
    for name, (claimed, ended) in (("run --loop waking on `submitted`", woken),
                                   ("polling every 1 s (before)", polled)):
        print(f"  {name + ':':<34} to claim p50 {statistics.median(claimed):.0f} ms, "
              f"p99 {pct(claimed, 99):.0f} ms; to its one page's commit p50 "
              f"{statistics.median(ended):.0f} ms, p99 {pct(ended, 99):.0f} ms")
    print("  goal (run --loop, to the first page): p50 <= 100 ms, p99 <= 500 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
