"""Exclude lists and submit cost: this tree against the last release, side by side.

Run from the repository root:

    python bench/exclude.py                       # 500k rows, a 100k-row scope
    python bench/exclude.py --rows 2000000 --repeat 7
    python bench/exclude.py --dsn postgresql://postgres@127.0.0.1:5499/postgres
    python bench/exclude.py --sql main=/tmp/main_sql   # a third side: another sql/ tree

Two databases on one server, built alike: "before" migrated with the sql/ of
--before (default 7d6fb6d, stop 21, the last release without
pgjobs.job_exclusions; read from this repository's git history), "after"
with this tree's.
Each has the same shared table (``user_table_rows``, 5 tenants interleaved in
chunks of 100 rows). Measured in each, alternately, several times, medians:

- submit: ``pgjobs.submit_delete`` of scope 1 with a document filter and no
  exclusions (issue 11: the target was looked up and checked 4 times per
  submit), and with 100,000 excluded keys;
- page: the statement a range page of a delete runs (``DELETE ... WHERE
  <scope> AND <key range of 5,000 keys> AND coalesce((<predicate>), false)``,
  planned and executed, rolled back) for a job without exclusions and for one
  with 100,000; the predicate is the one each release stores;
- mask: a ``pgjobs.visible`` page (100 rows) and ``pgjobs.visible_count`` of
  the scope while each of those deletes is pending;
- the same for a whole-scope delete (no filter: "every row of the scope
  except these keys"), whose reads also take the short cut of
  ``pgjobs._mask_candidates``.

``--sql LABEL=DIR`` adds a side migrated with the ``sql/`` tree at DIR (for
example the previous commit's, ``git archive HEAD~1 sql | tar -x -C DIR``),
measured alternately with the others; the table then also gives
after/LABEL.

The throwaway cluster runs with fsync off (like the test suite's); use --dsn
for a server configured otherwise. The machine is shared and noisy: the
figures are medians of --repeat runs taken alternately; read the ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ROOT, scratch_database, server  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402

Conn = psycopg.Connection[Any]
EXCLUDED = 100_000


def build(conn: Conn, rows: int) -> None:
    conn.execute("""
        CREATE TABLE user_table_rows (
            id bigint NOT NULL PRIMARY KEY, table_id integer NOT NULL, n integer,
            data jsonb, created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON user_table_rows (table_id, id);""")
    conn.execute("""
        INSERT INTO user_table_rows (id, table_id, n, data)
        SELECT g, 1 + (g / 100) %% 5, g %% 7, jsonb_build_object('status', g %% 5)
          FROM generate_series(1, %s) g""", (rows,))
    conn.execute("VACUUM ANALYZE user_table_rows")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 " 'created_at', 'data')")


def sql_tree(commit: str, into: Path) -> Path:
    """`sql/` as `commit` had it, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "sql"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "sql"


def timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE (default: a throwaway "
                             "cluster)")
    parser.add_argument("--rows", type=int, default=500_000, help="rows in the table (5 scopes)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measure")
    parser.add_argument("--submits", type=int, default=0,
                        help="also time this many more submits without exclusions, alternately")
    parser.add_argument("--before", default="7d6fb6d",
                        help="commit whose sql/ the \"before\" database runs (default: stop 21)")
    parser.add_argument("--sql", action="append", default=[], metavar="LABEL=DIR",
                        help="also measure a side migrated with the sql/ tree at DIR")
    args = parser.parse_args(argv)
    extra = [tuple(spec.split("=", 1)) for spec in args.sql]
    if any(len(e) != 2 or e[0] in ("before", "after") for e in extra):
        parser.error("--sql takes LABEL=DIR, LABEL neither 'before' nor 'after'")

    with server(args.dsn) as (url, where), ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        trees: dict[str, Path | None] = {"before": sql_tree(args.before, Path(tmp)),
                                         "after": None}
        trees.update({label: Path(tree) for label, tree in extra})
        sides: dict[str, Conn] = {}
        for name, tree in trees.items():
            dsn = stack.enter_context(scratch_database(url, f"pgjobs_bench_exclude_{name}"))
            migrate(dsn, tree)
            sides[name] = psycopg.connect(dsn, autocommit=True)
            build(sides[name], args.rows)
        # Every other key of the scope's first 20,000 keys, the rest keys of
        # other scopes (short: the last release keeps the list in the job's
        # payload, at most 1 MiB).
        exclude = [str(k) for k in range(1, 100_000) if (k // 100) % 5 == 0][::2]
        exclude += [str(k) for k in range(1, 200_000) if (k // 100) % 5 != 0][
            :EXCLUDED - len(exclude)]
        results: dict[tuple[str, str], list[float]] = {}

        def record(side: str, what: str, ms: float) -> None:
            results.setdefault((what, side), []).append(ms)

        def submit(conn: Conn, exclusions: list[str], filter_: dict[str, Any]) -> int:
            return int(conn.execute(
                "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb, %s::text[],"
                " '{\"on_conflict\": \"queue\"}')",
                (json.dumps(filter_), exclusions)).fetchone()[0])  # type: ignore[index]

        cases = [("0 keys", [], {"status": 3}), ("100k keys", exclude, {"status": 3}),
                 ("100k keys, whole scope", exclude, {})]
        for _ in range(args.repeat):
            for side, conn in sides.items():
                for label, keys, filter_ in cases:
                    job_id = 0

                    def run(conn: Conn = conn, keys: list[str] = keys,
                            filter_: dict[str, Any] = filter_) -> None:
                        nonlocal job_id
                        job_id = submit(conn, keys, filter_)
                    record(side, f"submit_delete, {label}", timed(run))
                    predicate = conn.execute("SELECT predicate FROM pgjobs.jobs WHERE id = %s",
                                             (job_id,)).fetchone()[0]  # type: ignore[index]
                    page = (f"DELETE FROM user_table_rows WHERE table_id = 1 AND id > 0"
                            f" AND id <= 25000 AND coalesce(({predicate}), false)")

                    def page_run(conn: Conn = conn, page: str = page) -> None:
                        with conn.transaction(force_rollback=True):
                            conn.execute("SET LOCAL jit = off")
                            conn.execute(page)
                    record(side, f"page of 5,000 keys, {label}", timed(page_run))
                    record(side, f"visible page (100 rows), {label}", timed(
                        lambda conn=conn: conn.execute(
                            "SELECT count(*) FROM pgjobs.visible('user_table_rows', '1', '{}',"
                            " NULL, 100)").fetchone()))
                    record(side, f"visible_count, {label}", timed(
                        lambda conn=conn: conn.execute(
                            "SELECT pgjobs.visible_count('user_table_rows', '1')").fetchone()))
                    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))

        for _ in range(args.submits):
            for side, conn in sides.items():
                for filter_ in ({}, {"status": 3}):
                    t0 = time.perf_counter()
                    job_id = int(conn.execute(
                        "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb, '{}',"
                        " '{\"on_conflict\": \"queue\"}')",
                        (json.dumps(filter_),)).fetchone()[0])  # type: ignore[index]
                    record(side, f"submit_delete, filter {json.dumps(filter_)}",
                           (time.perf_counter() - t0) * 1000)
                    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))

        print(f"# bench/exclude.py: {args.rows} rows, scope 1 = {args.rows // 5} rows, "
              f"{EXCLUDED} excluded keys; {where}; medians of {args.repeat} (ms)")
        others = [label for label in trees if label not in ("before", "after")]
        print(f"{'measure':56}" + "".join(f" {label:>10}" for label in trees)
              + "".join(f" {'after/' + label:>13}" for label in ["before", *others]))
        for what in dict.fromkeys(w for w, _ in results):
            ms = {label: statistics.median(results[(what, label)]) for label in trees}
            print(f"{what:56}" + "".join(f" {ms[label]:10.1f}" for label in trees)
                  + "".join(f" {ms['after'] / ms[label]:13.2f}" for label in ["before", *others]))
        for conn in sides.values():
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
