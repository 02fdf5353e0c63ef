"""One export, many workers: ``parallel: 2`` against ``parallel: 1`` on the same
data, measured in one run.

Run from the repository root:

    python bench/export_parallel.py                      # 1M-row scope of a 2M-row relation
    python bench/export_parallel.py --rows 200000 --repeat 2      # quick
    python bench/export_parallel.py --parallel 2 --parallel 4
    python bench/export_parallel.py --s3 --rows 500000    # to S3 on a local moto server
    python bench/export_parallel.py --join --rows 500000  # the join alone, before/after

The relation is bench/export.py's (``user_table_rows``, the scope interleaved
with as many rows of other tenants). Each round runs the export once per
setting, in alternating order (1, 2, 2, 1, ...), to ``file://``, in this
process: the worker that claims the job runs its parts side by side in threads
(each part its own server session) and joins them into the one object. Every
object's SHA-256 must equal the ``parallel: 1`` object's.

Printed per setting: median and best wall time, the speedup against
``parallel: 1`` (median over median), the server's CPU time per row (every
backend of the cluster: the postmaster's own and its reaped children's times,
plus the live backends', from /proc; needs the server on this machine) and this
process's CPU time per row (read once the export's backends have exited).
Nothing here is a pass/fail test.

``--join`` measures the join alone, before and after it was checkpointed and
made server-side on S3 (poller/join.py), on the same part objects: one
``parallel: 2`` export per store (``file://`` and S3 on a local moto server in
its own process), whose coordinator, once every part has succeeded, joins the
parts ``--repeat`` times with each method in alternating order (removing the
object in between), then once more for real. "before" is the earlier join
(``file://``: the parts copied by the kernel into a temporary file, renamed,
read back; object stores: every part read and streamed into a new upload, then
read back), kept here as the baseline; "after" is ``join.Join``. Printed: median
and best join time per method and the ratio after/before (median over median).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import scratch_database, server  # noqa: E402
from export import TABLE  # noqa: E402
from export import prepare as prepare_relation  # noqa: E402

from pgjobs.poller.export import Exporter  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(postmaster: int) -> float | None:
    """Seconds of CPU used by the cluster so far: the postmaster's own and reaped
    children's, plus its live children's. None when /proc does not show it."""
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == postmaster:  # ppid
            total += int(stat[11]) + int(stat[12])
    return total / TICK


def children(postmaster: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += int(stat[1]) == postmaster
    return count


def settled(postmaster: int, idle: int) -> None:
    """Until the backends of the export have exited and been reaped (their CPU time
    then sits in the postmaster's cutime/cstime), at most 10 s."""
    deadline = time.monotonic() + 10
    while children(postmaster) > idle and time.monotonic() < deadline:
        time.sleep(0.05)


def postmaster_pid(dsn: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    try:
        return int(Path(row[0], "postmaster.pid").read_text().split()[0])
    except OSError:
        return None


def prepare(dsn: str, description: str, rows: int, *prefixes: str) -> None:
    """bench/export.py's relation, scope 1 of `rows` rows (its prepare), and the
    storage prefixes the exports write under allowed; says where it runs."""
    print(f"server: {description}; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f}")
    prepare_relation(dsn, rows, 0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for prefix in prefixes:
            conn.execute("SELECT pgjobs.allow_storage(%s)", (prefix,))


def export(dsn: str, destination: str, parallel: int) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pgjobs.submit_export(%s::regclass, '1', '{}', %s::jsonb)",
                           (TABLE, f'{{"destination": "{destination}", '
                                   f'"parallel": {parallel}}}')).fetchone()
        assert row is not None
        claimed = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'bench', "
                               "'60 seconds')", (row[0],)).fetchone()
    assert claimed is not None
    outcome = Exporter(dsn, int(row[0]), claimed[0], destination).run()
    elapsed = time.perf_counter() - started
    assert outcome.status == "succeeded" and outcome.result, outcome
    return elapsed, outcome.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="server URL whose user may CREATE DATABASE "
                                      "[default: a throwaway cluster]")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the exported scope (the relation holds twice as many)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each runs every setting)")
    parser.add_argument("--parallel", type=int, action="append",
                        help="settings besides 1 (default: 2); repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--s3", action="store_true",
                        help="export to S3 on a local moto server (its own process) instead "
                             "of file://")
    parser.add_argument("--join", action="store_true",
                        help="time the join alone, before/after, file:// and S3 (moto)")
    args = parser.parse_args()
    settings = [1, *(args.parallel or [2])]

    workdir = tempfile.mkdtemp(prefix="pgjobs-bench-parallel-")
    with server(args.dsn) as (server_url, description), \
            scratch_database(server_url, "pgjobs_bench_parallel", args.keep) as dsn:
        try:
            if args.join:
                run_joins(dsn, description, args, workdir)
            elif args.s3:
                import boto3
                from export import moto

                from pgjobs.poller import storage

                with moto() as endpoint:
                    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                                      AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
                    storage.forget_stores()
                    boto3.client("s3", endpoint_url=endpoint).create_bucket(
                        Bucket="pgjobs-bench")
                    run(dsn, description, args, settings, workdir,
                        "s3://pgjobs-bench/exports/")
            else:
                run(dsn, description, args, settings, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def run(dsn: str, description: str, args: argparse.Namespace, settings: list[int],
        workdir: str, destination: str | None = None) -> None:
    prepare(dsn, description, args.rows, destination or f"file://{workdir}/")
    postmaster = postmaster_pid(dsn)
    destination = destination or f"file://{workdir}/exports"
    walls: dict[int, list[float]] = {n: [] for n in settings}
    cpus: dict[int, list[float]] = {n: [] for n in settings}
    clients: dict[int, list[float]] = {n: [] for n in settings}
    reference: str | None = None
    for round_ in range(args.repeat):
        order = settings if round_ % 2 == 0 else list(reversed(settings))
        for n in order:
            idle = children(postmaster) if postmaster else 0
            before = server_cpu(postmaster) if postmaster else None
            mine = resource.getrusage(resource.RUSAGE_SELF)
            elapsed, result = export(dsn, destination, n)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if postmaster:
                settled(postmaster, idle)
            spent = server_cpu(postmaster) if postmaster else None
            if reference is None:
                reference = result["sha256"]
            assert result["sha256"] == reference, f"parallel {n} wrote other bytes"
            from pgjobs.poller import storage

            storage.delete(result["uri"])
            walls[n].append(elapsed)
            clients[n].append(after.ru_utime + after.ru_stime - mine.ru_utime - mine.ru_stime)
            if before is not None and spent is not None:
                cpus[n].append(spent - before)
            print(f"  round {round_ + 1}: parallel {n}: {elapsed:.2f}s", flush=True)
    base = statistics.median(walls[1])
    print(f"\nexport of {args.rows:,} rows to {destination.split(':')[0]}:// "
          f"({args.repeat} rounds, alternating):")
    print(f"  {'setting':<12} {'median':>8} {'best':>8} {'speedup':>8} "
          f"{'server CPU/row':>15} {'client CPU/row':>15}")
    for n in settings:
        med = statistics.median(walls[n])
        server_us = (f"{statistics.median(cpus[n]) / args.rows * 1e6:12.2f} us"
                     if cpus[n] else "         n/a")
        client_us = statistics.median(clients[n]) / args.rows * 1e6
        print(f"  parallel {n:<3} {med:7.2f}s {min(walls[n]):7.2f}s {base / med:7.2f}x "
              f"{server_us:>15} {client_us:12.2f} us")
    print("  every object's sha256 equals the parallel 1 object's")


def old_file_join(ex: Any, results: list[dict[str, Any]]) -> tuple[int, str, int]:
    """The join before poller/join.py, for ``file://`` (the baseline): the parts
    copied by the kernel into a temporary file, fsynced, renamed, read back."""
    from pgjobs.poller import storage

    path = ex.location.path
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.pgjobs-old.tmp")
    with open(tmp, "wb") as out:
        for r in results:
            with open(storage.parse(str(r["uri"])).path, "rb") as src:
                left = int(r["bytes"])
                while left:
                    left -= os.copy_file_range(src.fileno(), out.fileno(), left)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    size, sha256 = storage.hash_object(ex.location, [[r["bytes"], r["sha256"]]
                                                     for r in results])
    return size, sha256, len(results)


def run_joins(dsn: str, description: str, args: argparse.Namespace, workdir: str) -> None:
    import boto3
    from export import moto  # noqa: E402

    from pgjobs.poller import join, parallel, storage

    prepare(dsn, description, args.rows, f"file://{workdir}/", "s3://pgjobs-bench/")
    times: dict[tuple[str, str], list[float]] = {}
    real_join = parallel._join

    def timed_join(ex: Any, rows: list[dict[str, Any]]) -> Any:
        results = [r["result"] for r in rows]
        store = ex.location.scheme
        for round_ in range(args.repeat):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for method in order:
                ex.state.pop("join", None)
                started = time.perf_counter()
                if method == "after":
                    size, sha256, _ = join.Join(ex, results).run()
                elif store == "file":
                    size, sha256, _ = old_file_join(ex, results)
                else:
                    size, sha256, _ = join.Join(ex, results)._restream()
                times.setdefault((store, method), []).append(time.perf_counter() - started)
                print(f"  {store} round {round_ + 1}: {method}: "
                      f"{times[(store, method)][-1]:.2f}s ({size / 1e6:.0f} MB)", flush=True)
                storage.delete(ex.location.uri)
        ex.state.pop("join", None)
        return real_join(ex, rows)

    parallel._join = timed_join  # type: ignore[assignment]
    export(dsn, f"file://{workdir}/exports", 2)
    with moto() as endpoint:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
        storage.forget_stores()
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pgjobs-bench")
        export(dsn, "s3://pgjobs-bench/exports/", 2)
    print(f"\njoin of a parallel 2 export of {args.rows:,} rows ({args.repeat} rounds, "
          "alternating; same parts):")
    for store in ("file", "s3"):
        before, after = (statistics.median(times[(store, m)]) for m in ("before", "after"))
        best = {m: min(times[(store, m)]) for m in ("before", "after")}
        print(f"  {store + '://':<8} before {before:6.2f}s (best {best['before']:.2f})"
              f"  after {after:6.2f}s (best {best['after']:.2f})"
              f"  after/before {after / before:5.2f}x")


if __name__ == "__main__":
    main()
