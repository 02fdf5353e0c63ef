"""Exports read from a streaming standby (`--read-dsn`) against exports read from
the primary, measured in one run.

Run from the repository root:

    python bench/standby.py                       # 1M-row scope of a 2M-row relation
    python bench/standby.py --rows 200000 --repeat 3     # quick

It starts a throwaway cluster (as the test suite does) and a hot standby of
it (``pg_basebackup -R``, tests/support/standby.py), builds bench/export.py's
relation, waits until the standby has replayed it, then alternates exports
of the same scope to ``file://``: one reading from the primary, one reading
from the standby (job state stays on the primary either way). Both run on
this machine, so the standby competes for the same cores: the figure says
what reading through a standby costs, not what it saves a loaded primary.
It also prints the primary's buffer accesses (pg_stat_database blks_hit +
blks_read) per export: the reading load that moves to the standby.

Every export's SHA-256 is checked against a plain COPY: same bytes.
Nothing here is a pass/fail test.
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
from export import SETUP, TABLE, baseline, fill, sha256_file  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402
from pgjobs.poller.export import Exporter  # noqa: E402
from pgjobs.poller.standby import ReadConfig  # noqa: E402
from tests.support.standby import start_standby  # noqa: E402


def blocks(dsn: str) -> int:
    """Buffer accesses of this database on the primary so far (stats flush ~1 s)."""
    time.sleep(1.1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT blks_hit + blks_read FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def export(dsn: str, destination: str, reads: ReadConfig | None) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.allow_storage(%s)", (destination,))
        row = conn.execute("SELECT pgjobs.submit_export(%s::regclass, '1', '{}', %s::jsonb)",
                           (TABLE, f'{{"destination": "{destination}"}}')).fetchone()
        assert row is not None
        job = int(row[0])
        claimed = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'bench', "
                               "'60 seconds')", (job,)).fetchone()
    assert claimed is not None
    outcome = Exporter(dsn, job, claimed[0], destination, reads=reads).run()
    elapsed = time.perf_counter() - started
    assert outcome.status == "succeeded" and outcome.result, outcome
    with psycopg.connect(dsn, autocommit=True) as conn:
        ck = conn.execute("SELECT checkpoint FROM pgjobs.jobs WHERE id = %s", (job,)).fetchone()
    assert ck is not None
    expected = "standby" if reads else "primary"
    assert ck[0]["reads"][expected] > 0 and not ck[0]["reads"][
        "primary" if reads else "standby"], ck[0]["reads"]
    return elapsed, outcome.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pgjobs-bench-standby-")
    with server(None) as (server_url, description):
        name = f"pgjobs_bench_standby_{os.getpid()}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        dsn = with_database(server_url, name)
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SETUP)
            fill(conn, 1, args.rows, 0)
            conn.execute(f"CREATE INDEX ON {TABLE} (table_id, id)")
            conn.execute(f"VACUUM ANALYZE {TABLE}")
            conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', "
                         "'created_at', 'data')")
        standby = start_standby(server_url)
        try:
            read_dsn = with_database(standby.url, name)
            print(f"server: {description}, plus a hot standby on port {standby.port}")
            base_file = os.path.join(workdir, "baseline.csv")
            base = baseline(dsn, 1, base_file)
            base_sha = sha256_file(base_file)
            os.unlink(base_file)
            destination = f"file://{workdir}/exports"
            reads = ReadConfig(read_dsn, max_wait=300, fallback="wait")
            export(dsn, destination, reads)  # warm the standby's cache and wait for replay
            times: dict[str, list[float]] = {"primary": [], "standby": []}
            load: dict[str, list[int]] = {"primary": [], "standby": []}
            for _ in range(args.repeat):
                for label, config in (("primary", None), ("standby", reads)):
                    before = blocks(dsn)
                    elapsed, result = export(dsn, destination, config)
                    load[label].append(blocks(dsn) - before)
                    assert result["sha256"] == base_sha, f"{label} export differs from COPY"
                    os.unlink(result["uri"][len("file://"):])
                    times[label].append(elapsed)
            print(f"\nexport of {args.rows:,} rows to file://, {args.repeat} alternating pairs "
                  f"(plain COPY on the primary: {base:.2f}s):")
            for label in ("primary", "standby"):
                print(f"  read from the {label:<8} best {min(times[label]):6.2f}s  median "
                      f"{statistics.median(times[label]):6.2f}s  primary buffer accesses "
                      f"{statistics.median(load[label]):>12,.0f}")
            best = min(times["standby"]) / min(times["primary"])
            median = statistics.median(times["standby"]) / statistics.median(times["primary"])
            pairs = ", ".join(f"{s / p:.2f}x" for p, s in zip(
                times["primary"], times["standby"], strict=True))
            print(f"  standby / primary: best {best:.2f}x, median {median:.2f}x; "
                  f"per pair: {pairs}")
            print("  every export's sha256 equals the plain COPY's")
        finally:
            standby.stop()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
