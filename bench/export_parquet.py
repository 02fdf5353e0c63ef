"""Parquet exports against CSV exports of the same rows, measured in one run.

Run from the repository root:

    python bench/export_parquet.py                       # 1M-row scope, 3 pairs
    python bench/export_parquet.py --rows 200000 --repeat 1 --rss-rows 0   # quick

The data is bench/export.py's (a shared multi-tenant ``user_table_rows(id,
table_id, data jsonb, created_at)``, the scope interleaved with as many other
rows). Measured in the same run, as interleaved pairs (CSV then Parquet, the
order flipped every other pair) on this shared, noisy machine:

- ``pgjobs export`` to ``file://`` as CSV, and as Parquet (zstd; snappy too);
  the ratio Parquet / CSV per pair (goal <= 2x) and its median;
- the sizes of the CSV object and of the Parquet files;
- the peak RSS (VmHWM) of a fresh process exporting the scope as Parquet, and a
  ``--rss-rows`` scope (goal <= 150 MB, flat in the row count);
- with ``--rss-parallel``, only: the peak RSS of a fresh process exporting the
  scope as ``parallel: 1`` and ``parallel: 2`` (both parts in that process),
  against a process that only imports pyarrow and the exporter (the baseline),
  ``--repeat`` times each.

Every Parquet export is read back (row count and key sum) with pyarrow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import server, with_database  # noqa: E402
from export import CHILD, peak_rss, prepare, submit  # noqa: E402

from pgjobs.poller.export import Exporter  # noqa: E402


def export(dsn: str, scope: int, destination: str,
           options: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    job = submit(dsn, scope, destination, options)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'bench', '60 seconds')",
                           (job,)).fetchone()
    assert row is not None
    outcome = Exporter(dsn, job, row[0], destination).run()
    elapsed = time.perf_counter() - started
    assert outcome.status == "succeeded" and outcome.result, outcome
    return elapsed, outcome.result


def local(uri: str) -> str:
    return uri[len("file://"):]


def check_parquet(result: dict[str, Any], rows: int) -> None:
    import pyarrow.parquet as pq

    total = 0
    for uri in result["uris"]:
        total += pq.ParquetFile(local(uri)).metadata.num_rows
    assert total == rows == result["rows"], (total, rows, result["rows"])


def remove(result: dict[str, Any]) -> None:
    for uri in result.get("uris") or [result["uri"]]:
        os.unlink(local(uri))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="server URL whose user may CREATE DATABASE "
                                      "[default: a throwaway cluster]")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=3_000_000,
                        help="rows of the scope for the second peak RSS run (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved pairs")
    parser.add_argument("--rss-parallel", action="store_true",
                        help="only the peak RSS of parallel 1 and 2 against an imports-only "
                             "process")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pgjobs-bench-parquet-")
    with server(args.dsn) as url:
        server_url, description = url
        name = f"pgjobs_bench_parquet_{os.getpid()}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        dsn = with_database(server_url, name)
        try:
            run(dsn, description, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


IMPORTS_ONLY = """
import pyarrow, pyarrow.compute, pyarrow.csv, pyarrow.json, pyarrow.parquet
import psycopg
from pgjobs.poller.export import Exporter
print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
"""


def rss_parallel(dsn: str, dest: str, repeat: int) -> None:
    """Peak RSS of one process running a Parquet export of 1 and of 2 parts."""
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    seen: dict[str, list[float]] = {"imports only": [], "parallel 1": [], "parallel 2": []}
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", IMPORTS_ONLY], cwd=root, check=True,
                              capture_output=True, text=True)
        seen["imports only"].append(int(done.stdout.split()[-1]) / 1024)
        for parallel in (1, 2):
            job = submit(dsn, 1, dest, {"format": "parquet", "parallel": parallel})
            done = subprocess.run([sys.executable, "-c", CHILD, dsn, str(job), dest], cwd=root,
                                  check=True, capture_output=True, text=True)
            seen[f"parallel {parallel}"].append(int(done.stdout.split()[-1]) / 1024)
    base = statistics.median(seen["imports only"])
    for label, values in seen.items():
        print(f"  peak RSS {label:12s}: median {statistics.median(values):5.0f} MB, max "
              f"{max(values):5.0f} MB, {statistics.median(values) - base:+5.0f} MB over the "
              "imports-only process (goal <= 150 MB)")


def run(dsn: str, description: str, args: argparse.Namespace, workdir: str) -> None:
    print(f"server: {description}")
    prepare(dsn, args.rows, 0 if args.rss_parallel else args.rss_rows)
    dest = f"file://{workdir}/exports"
    if args.rss_parallel:
        rss_parallel(dsn, dest, args.repeat)
        return
    csv_times: list[float] = []
    pq_times: list[float] = []
    ratios: list[float] = []
    sizes: dict[str, int] = {}
    for i in range(args.repeat):
        order = ["csv", "parquet"] if i % 2 == 0 else ["parquet", "csv"]
        got: dict[str, float] = {}
        for fmt in order:
            seconds, result = export(dsn, 1, dest, {"format": fmt})
            got[fmt] = seconds
            if fmt == "parquet":
                check_parquet(result, args.rows)
            sizes[fmt] = int(result["bytes"])
            sizes[f"{fmt} files"] = len(result.get("uris") or [1])
            remove(result)
        csv_times.append(got["csv"])
        pq_times.append(got["parquet"])
        ratios.append(got["parquet"] / got["csv"])
        print(f"  pair {i + 1}: csv {got['csv']:.2f}s  parquet {got['parquet']:.2f}s  "
              f"ratio {ratios[-1]:.2f}x", flush=True)
    seconds, result = export(dsn, 1, dest, {"format": "parquet", "compression": "snappy"})
    check_parquet(result, args.rows)
    sizes["parquet snappy"] = int(result["bytes"])
    remove(result)
    seconds_gz, result = export(dsn, 1, dest, {"format": "csv", "gzip": True})
    sizes["csv gzip"] = int(result["bytes"])
    remove(result)

    print(f"\nexport of {args.rows:,} rows, {args.repeat} interleaved pairs:")
    print(f"  csv      best {min(csv_times):6.2f}s  median {statistics.median(csv_times):6.2f}s")
    print(f"  parquet  best {min(pq_times):6.2f}s  median {statistics.median(pq_times):6.2f}s")
    print(f"  ratio parquet/csv: median {statistics.median(ratios):.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x (goal <= 2x); "
          f"parquet snappy {seconds:.2f}s, csv gzip {seconds_gz:.2f}s (single runs)")
    print(f"  sizes: csv {sizes['csv'] / 1e6:.1f} MB, csv gzip {sizes['csv gzip'] / 1e6:.1f} MB, "
          f"parquet zstd {sizes['parquet'] / 1e6:.1f} MB in {sizes['parquet files']} files, "
          f"parquet snappy {sizes['parquet snappy'] / 1e6:.1f} MB")
    rss = [peak_rss(dsn, 1, dest, {"format": "parquet"})]
    if args.rss_rows:
        rss.append(peak_rss(dsn, 3, dest, {"format": "parquet"}))
    for megabytes, rows in rss:
        print(f"  peak RSS exporting {rows:>11,} rows as parquet: {megabytes:6.0f} MB"
              "  (goal <= 150 MB, flat in row count)")


if __name__ == "__main__":
    main()
