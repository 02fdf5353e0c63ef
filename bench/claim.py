"""Claim throughput and submit->claim latency of pgjobs, against a bare queue.

Run from the repository root:

    python bench/claim.py                      # a throwaway cluster (tests/support/pgcluster.py)
    python bench/claim.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

With ``--dsn`` (a server URL whose user may CREATE DATABASE) the benchmark
creates its own database ``pgjobs_bench_<pid>`` there and drops it at the end.

Throughput: claim+complete cycles per second with 1, 4 and 8 worker threads,
each on its own connection, draining a queue filled beforehand. The baseline,
measured in the same run on the same server, is the classic bare queue on a
plain table (one job per claim):

    UPDATE q SET status = 'running'
     WHERE id = (SELECT id FROM q WHERE status = 'queued' ORDER BY id LIMIT 1
                 FOR UPDATE SKIP LOCKED) RETURNING id;
    UPDATE q SET status = 'done' WHERE id = $1;

pgjobs claims in batches (``pgjobs.claim(..., p_limit => --batch)``) and
completes each job with ``pgjobs.complete`` (fenced, NOTIFY per event).

Latency: a listener LISTENs on channel ``pgjobs`` and, woken by each
``submitted`` event, claims (and completes) everything queued, while another
connection submits jobs one at a time. Latency is ``started_at - created_at``
of each job, both stamped by the server's clock.

A change to the SQL is measured against another version side by side:
``--against /path/to/main/sql`` migrates that ``sql/`` directory into a second
database of the same server and drains it in every round too, the two
versions taking turns going first, so load drift hits both alike.

The figures print as a table with ratios; nothing here is a pass/fail test.
Besides wall-clock rates, each run records CPU time per cycle: of the worker
connections' server processes (read from /proc, so only when the server runs
on this machine) and of this client process. On a small machine shared with
other load the wall-clock ratio swings from run to run; CPU per cycle is the
steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

KIND = "bench"
LATENCY_KIND = "bench_latency"

BASELINE_SETUP = """
CREATE TABLE bench_q (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status  text  NOT NULL DEFAULT 'queued',
    payload jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_q_queued_idx ON bench_q (id) WHERE status = 'queued';
CREATE TABLE bench_target (id bigint PRIMARY KEY, scope int NOT NULL);
"""
BASELINE_FILL = "INSERT INTO bench_q (payload) SELECT '{}' FROM generate_series(1, %s)"
BASELINE_CLAIM = """
UPDATE bench_q SET status = 'running'
 WHERE id = (SELECT id FROM bench_q WHERE status = 'queued' ORDER BY id LIMIT 1
             FOR UPDATE SKIP LOCKED)
RETURNING id
"""
BASELINE_DONE = "UPDATE bench_q SET status = 'done' WHERE id = %s"

PGJOBS_FILL = """
SELECT count(pgjobs.submit(%s, 'bench_target'::regclass, (g %% 100)::text))
  FROM generate_series(1, %s) g
"""
PGJOBS_CLAIM = "SELECT id, worker FROM pgjobs.claim(%s, %s, '30 seconds'::interval, %s)"
PGJOBS_COMPLETE = "SELECT pgjobs.complete(%s, %s)"
PGJOBS_COMPLETE_MANY = "SELECT count(*) FROM pgjobs.complete_many(%s, %s)"
PGJOBS_SUBMIT = "SELECT pgjobs.submit(%s, 'bench_target'::regclass, '1')"
LATENCIES = """
SELECT extract(epoch FROM started_at - created_at) * 1000
  FROM pgjobs.jobs WHERE kind = %s ORDER BY id
"""


# --- database -------------------------------------------------------------------


@contextmanager
def bench_database(server_url: str, keep: bool, prefix: str = "pgjobs_bench",
                   root: Path | None = None) -> Iterator[str]:
    """A scratch database with pgjobs migrated from `root` (a `sql/` directory;
    default this tree's) and the bare queue's table."""
    with scratch_database(server_url, prefix, keep) as dsn:
        migrate(dsn, root)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(BASELINE_SETUP.encode())
        yield dsn


def reset(dsn: str) -> None:
    """Empty both queues and vacuum them, so every run starts alike."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_q, pgjobs.jobs RESTART IDENTITY CASCADE")
        conn.execute("VACUUM ANALYZE bench_q")
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


# --- throughput -----------------------------------------------------------------


def baseline_worker(conn: psycopg.Connection[Any], name: str, batch: int) -> int:
    done = 0
    while True:
        row = conn.execute(BASELINE_CLAIM).fetchone()
        if row is None:
            return done
        conn.execute(BASELINE_DONE, (row[0],))
        done += 1


def pgjobs_worker(conn: psycopg.Connection[Any], name: str, batch: int) -> int:
    """Claim a batch, then complete it: one pgjobs.complete per job for a batch of
    one, else the whole batch in one pgjobs.complete_many (fenced per job)."""
    done = 0
    while True:
        claimed = conn.execute(PGJOBS_CLAIM, ([KIND], name, batch)).fetchall()
        if not claimed:
            return done
        if len(claimed) == 1:
            job_id, identity = claimed[0]  # the claim's own identity: the fence
            row = conn.execute(PGJOBS_COMPLETE, (job_id, identity)).fetchone()
            assert row is not None and row[0], f"complete({job_id}) was fenced off"
        else:
            row = conn.execute(PGJOBS_COMPLETE_MANY, ([c[0] for c in claimed],
                                                      [c[1] for c in claimed])).fetchone()
            assert row is not None and row[0] == len(claimed), "complete_many was fenced off"
        done += len(claimed)


@dataclass
class Run:
    """One drained queue: cycles per second, and CPU microseconds per cycle spent by
    the server backends (None when they are not local processes) and this client."""

    rate: float
    server_us: float | None
    client_us: float


def backend_cpu(pids: list[int]) -> float | None:
    """CPU seconds used so far by these local server processes, or None if unreadable."""
    total = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def drain(dsn: str, workers: int, batch: int,
          work: Callable[[psycopg.Connection[Any], str, int], int]) -> tuple[int, Run]:
    """Run `workers` threads of `work` until the queue is empty."""
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(workers)]
    pids = [conn.info.backend_pid for conn in conns]
    counts = [0] * workers
    errors: list[BaseException] = []
    start = threading.Barrier(workers + 1)

    def run(i: int) -> None:
        try:
            start.wait()
            counts[i] = work(conns[i], f"bench:{os.getpid()}:{i}", batch)
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    server_before = backend_cpu(pids)
    client_before = time.process_time()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    client = time.process_time() - client_before
    server_after = backend_cpu(pids)
    for conn in conns:
        conn.close()
    if errors:
        raise errors[0]
    done = sum(counts)
    server = (None if server_before is None or server_after is None
              else (server_after - server_before) * 1e6 / done)
    return done, Run(done / elapsed, server, client * 1e6 / done)


def throughput(dsn: str, side: str, workers: int, jobs: int, batch: int) -> Run:
    reset(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if side == "baseline":
            conn.execute(BASELINE_FILL, (jobs,))
        else:
            conn.execute(PGJOBS_FILL, (KIND, jobs))
        conn.execute("VACUUM ANALYZE bench_q")
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
    work = baseline_worker if side == "baseline" else pgjobs_worker
    done, result = drain(dsn, workers, batch, work)
    if done != jobs:
        raise AssertionError(f"{side}: {done} of {jobs} jobs processed")
    return result


def peer_rate(peer_python: str, dsn: str, workers: int, jobs: int, batch: int) -> float:
    """PgQueuer's drain benchmark (bench/peer_pgqueuer.py) on the same server, run by
    `peer_python`, a Python with PgQueuer installed."""
    script = Path(__file__).resolve().parent / "peer_pgqueuer.py"
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    url = (f"postgresql://{info.get('user', '')}"
           f"{':' + str(info['password']) if info.get('password') else ''}"
           f"@{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}")
    done = subprocess.run([peer_python, str(script), url, str(jobs), str(workers), str(batch)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"PgQueuer side failed: {done.stderr.strip()[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])


def peer_available(peer_python: str | None) -> str | None:
    """The Python to run PgQueuer's side with, or None (then that column is skipped)."""
    if not peer_python:
        return None
    probe = subprocess.run([peer_python, "-c", "import pgqueuer, asyncpg"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        print(f"PgQueuer comparison skipped: {peer_python} cannot import pgqueuer and asyncpg "
              "(pip install -r bench/requirements-peer.txt)")
        return None
    return peer_python


# --- latency --------------------------------------------------------------------


def latency(dsn: str, jobs: int, interval: float, batch: int) -> list[float]:
    """Submit `jobs` jobs `interval` seconds apart while a LISTENing worker claims
    them; return each job's submit->claim latency in milliseconds."""
    reset(dsn)
    name = f"listener:{os.getpid()}"
    listen = psycopg.connect(dsn, autocommit=True)
    work = psycopg.connect(dsn, autocommit=True)
    listen.execute("LISTEN pgjobs")
    stop = threading.Event()
    claimed = [0]
    errors: list[BaseException] = []

    def claim_all() -> None:
        while True:
            ids = list(work.execute(PGJOBS_CLAIM, ([LATENCY_KIND], name, batch)))
            for job_id, identity in ids:
                work.execute(PGJOBS_COMPLETE, (job_id, identity))
            claimed[0] += len(ids)
            if len(ids) < batch:
                return

    def listener() -> None:
        try:
            while not stop.is_set() or claimed[0] < jobs:
                woken = False
                # A 1 s timeout doubles as the polling fallback.
                for note in listen.notifies(timeout=1.0, stop_after=1):
                    event = json.loads(note.payload)
                    woken = event["event"] == "submitted" and event["kind"] == LATENCY_KIND
                if woken or stop.is_set():
                    claim_all()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=listener)
    thread.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as submitter:
            for _ in range(jobs):
                submitter.execute(PGJOBS_SUBMIT, (LATENCY_KIND,))
                time.sleep(interval)
    finally:
        stop.set()
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        values = [float(r[0]) for r in conn.execute(LATENCIES, (LATENCY_KIND,)) if r[0] is not None]
    listen.close()
    work.close()
    if len(values) != jobs:
        raise AssertionError(f"latency: {len(values)} of {jobs} jobs claimed")
    return values


def cpu(base: list[Run], ours: list[Run], field: str) -> str:
    """'baseline / pgjobs' median CPU microseconds per cycle, or '-' when unknown."""
    values = [[getattr(r, field) for r in runs] for runs in (base, ours)]
    if any(v is None for side in values for v in side):
        return "-"
    return " / ".join(f"{statistics.median(side):.0f}" for side in values)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- main -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL (user may CREATE DATABASE) [env PGJOBS_BENCH_DSN; "
                             "default: a throwaway cluster]")
    parser.add_argument("--workers", default="4",
                        help="comma-separated worker counts [default: 4]")
    parser.add_argument("--jobs", type=int, default=4000,
                        help="jobs drained per throughput run [default: 4000]")
    parser.add_argument("--batch", default="1,10,50",
                        help="comma-separated pgjobs.claim p_limit values (jobs per claim) "
                             "[default: 1,10,50]")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per measurement; the median is shown [default: 5]")
    parser.add_argument("--latency-jobs", type=int, default=300,
                        help="jobs submitted for the latency run [default: 300]")
    parser.add_argument("--latency-interval", type=float, default=0.01,
                        help="seconds between latency submits [default: 0.01]")
    parser.add_argument("--peer-python", default=os.environ.get("PGJOBS_BENCH_PEER_PYTHON"),
                        help="a Python with PgQueuer installed (bench/requirements-peer.txt): "
                             "adds PgQueuer's drain benchmark, same server, same workers and "
                             "batch [env PGJOBS_BENCH_PEER_PYTHON; default: skipped]")
    parser.add_argument("--against", type=Path, metavar="SQL_DIR",
                        help="the sql/ directory of another pgjobs version (say a checkout "
                             "of main): its claim and complete run in a second database of "
                             "the same server, alternated with this tree's in every round, "
                             "and the line adds its cycles/s, server CPU and pgjobs/other "
                             "[default: none]")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    worker_counts = [int(w) for w in args.workers.split(",")]
    batches = [int(b) for b in args.batch.split(",")]

    with server(args.dsn) as (server_url, where), bench_database(server_url, args.keep) as dsn, \
            (bench_database(server_url, args.keep, "pgjobs_bench_other", args.against)
             if args.against else nullcontext(None)) as other:
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings = conn.execute(
                "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name)"
                "  FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')").fetchone()
        print(f"pgjobs claim benchmark: PostgreSQL {version[0] if version else '?'} on {where}"
              f" ({settings[0] if settings else ''}), {os.cpu_count()} CPUs")
        print(f"{args.jobs} jobs per run, median of {args.repeat}, runs interleaved; the "
              f"baseline claims one job per UPDATE\n")
        peer = peer_available(args.peer_python)
        print(f"{'workers':>7}  {'batch':>5}  {'baseline cycles/s':>17}  {'pgjobs cycles/s':>15}  "
              f"{'pgjobs/baseline':>15}  {'ratio range':>11}  {'server CPU us/cycle':>19}  "
              f"{'client CPU us/cycle':>19}" + ("  pgqueuer jobs/s  pgjobs/pgqueuer"
                                                if peer else "")
              + ("  other cycles/s  other server us  pgjobs/other" if other else ""))
        for workers in worker_counts:
            for batch in batches:
                base: list[Run] = []
                ours: list[Run] = []
                theirs: list[float] = []
                olds: list[Run] = []
                for i in range(args.repeat):  # interleaved: drift hits all sides alike
                    base.append(throughput(dsn, "baseline", workers, args.jobs, batch))
                    if other and i % 2:  # the versions take turns going first
                        olds.append(throughput(other, "pgjobs", workers, args.jobs, batch))
                    ours.append(throughput(dsn, "pgjobs", workers, args.jobs, batch))
                    if other and not i % 2:
                        olds.append(throughput(other, "pgjobs", workers, args.jobs, batch))
                    if peer:
                        theirs.append(peer_rate(peer, dsn, workers, args.jobs, batch))
                b = statistics.median(r.rate for r in base)
                o = statistics.median(r.rate for r in ours)
                ratios = [x.rate / y.rate for x, y in zip(ours, base, strict=True)]
                line = (f"{workers:>7}  {batch:>5}  {b:>17,.0f}  {o:>15,.0f}  {o / b:>14.2f}x  "
                        f"{min(ratios):>5.2f}-{max(ratios):.2f}  "
                        f"{cpu(base, ours, 'server_us'):>19}  "
                        f"{cpu(base, ours, 'client_us'):>19}")
                if peer:
                    t = statistics.median(theirs)
                    pair = [x.rate / y for x, y in zip(ours, theirs, strict=True)]
                    line += (f"  {t:>15,.0f}  {o / t:>6.2f}x "
                             f"({min(pair):.2f}-{max(pair):.2f})")
                if other:
                    d = statistics.median(r.rate for r in olds)
                    mine = [x.rate / y.rate for x, y in zip(ours, olds, strict=True)]
                    servers = [r.server_us for r in olds]
                    server_us = ("-" if any(s is None for s in servers)
                                 else f"{statistics.median(s for s in servers if s):.0f}")
                    line += (f"  {d:>14,.0f}  {server_us:>15}  {o / d:>6.2f}x "
                             f"({min(mine):.2f}-{max(mine):.2f})")
                print(line, flush=True)
        print("(CPU columns: baseline / pgjobs, medians; the server's only when it runs on "
              "this machine)")

        values = latency(dsn, args.latency_jobs, args.latency_interval, batches[0])
        print(f"\nsubmit -> claim latency, LISTEN-woken worker, {len(values)} jobs submitted "
              f"{args.latency_interval * 1000:.0f} ms apart:")
        print(f"  p50 {percentile(values, 50):.1f} ms   p90 {percentile(values, 90):.1f} ms   "
              f"p99 {percentile(values, 99):.1f} ms   max {max(values):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
