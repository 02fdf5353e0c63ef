"""Read-path cost of several SQL versions side by side, as a client calls it.

Run from the repository root:

    python bench/visible_versions.py                          # 4fe7471, fd4d4a3, this tree
    python bench/visible_versions.py --sql 4fe7471 --sql .    # any git commits, "." the tree
    python bench/visible_versions.py --rows 100000 --rounds 7

One throwaway cluster (or ``--dsn``), one database per version, each
migrated from that version's ``sql/`` (``git archive``; "." is this tree's)
by this tree's ``pgjobs migrate``, each holding the same shared table as
bench/visible.py's (the measured scope interleaved with other tenants') and
a client role (member of pgjobs_client, SELECT on the table) that every
measured call runs as (``SET ROLE``): clients are the real callers, and the
checks an administrator skips are part of their cost.

Rounds alternate between the versions (versions in turn inside a round,
the order rotated each round) so the machine's noise hits each alike. In a
round, per version, ``--reads`` random cursors, each read by every measure
in turn: the unmasked keyset page (prepared, the baseline),
``pgjobs.visible`` (a page of 100), ``pgjobs.visible_count`` and
``pgjobs.mask``; then per measure a block of ``--cpu-calls`` calls (a 20th
of them for visible_count) timed by the server CPU its backend used (utime +
stime from /proc, when the server runs on this machine: on a loaded machine
round trips are mostly waiting). No delete is pending. Printed: per version
and measure the median of the round medians, the p99 over all reads, both
against the same version's unmasked page of the same rounds, and the median
CPU per call of the rounds' blocks and its ratio likewise.

With ``--confined LIST`` every measured session is confined by the
setting ``pgjobs.allowed_scopes`` = LIST (it must allow scope 1, the one
read): the multi-tenant read path, a client that may read only its
tenants' scopes.

With ``--arrays`` the shared table also has columns whose types may hold
an array (``text[]``, ``int[][]``, a composite with an ``int[]`` field and
a domain over ``int[]``, every value starting at 1): ``pgjobs.visible``
then tests each such value for lower bounds that are not 1 (the text of
those tests is kept per session until a DDL commits).

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgjobs.migrate import migrate  # before the root goes on sys.path: the installed mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import ROOT, TABLE, create_rows_table, fill_interleaved, pct, server, with_database  # noqa: E402,E501

Conn = psycopg.Connection[Any]
CLIENT = "bench_visible_client"
MEASURES = {
    "unmasked keyset page": f"SELECT to_jsonb(t) FROM {TABLE} t WHERE table_id = 1 AND id > %s"
                            " ORDER BY id LIMIT 100",
    "visible": f"SELECT pgjobs.visible('{TABLE}', '1', '{{}}', %s::text, 100)",
    "visible_count": f"SELECT pgjobs.visible_count('{TABLE}', '1') WHERE %s::bigint IS NOT NULL",
    "mask": f"SELECT pgjobs.mask('{TABLE}', '1') WHERE %s::bigint IS NOT NULL",
}
BASE = "unmasked keyset page"


def sql_root(ref: str, into: Path) -> Path:
    """The sql/ directory of git commit `ref` ("." this tree's)."""
    if ref == ".":
        return ROOT / "sql"
    target = into / ref
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "sql"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "sql"


def used(stat: Path) -> float:
    """CPU seconds (user + system) the backend of /proc/<pid>/stat used so far."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


ARRAYS = ("CREATE TYPE bench_pair AS (label text, items int[]); "
          "CREATE DOMAIN bench_ints AS int[]; "
          f"ALTER TABLE {TABLE} ADD COLUMN tags text[] DEFAULT '{{a,b}}', "
          "ADD COLUMN grid int[] DEFAULT '{{1,2},{3,4}}', "
          "ADD COLUMN pair bench_pair DEFAULT ROW('x', '{1,2}'), "
          "ADD COLUMN ints bench_ints DEFAULT '{5}'")


def build(dsn: str, rows: int, arrays: bool = False) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_rows_table(conn)
        if arrays:
            conn.execute(ARRAYS)
        total = fill_interleaved(conn, rows)
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), {total})")
        conn.execute(f"CREATE INDEX {TABLE}_scope_key ON {TABLE} (table_id, id)")
        conn.execute(f"CREATE INDEX {TABLE}_scope_created ON {TABLE} (table_id, created_at)")
        conn.execute(f"VACUUM (ANALYZE) {TABLE}")
        conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', 'created_at',"
                     " 'data')")
        conn.execute(f"GRANT SELECT ON {TABLE} TO {CLIENT}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN"),
                        help="server URL whose user may CREATE DATABASE and ROLE [default: a "
                             "throwaway cluster]")
    parser.add_argument("--sql", action="append", metavar="REF",
                        help="a git commit whose sql/ to measure, or . for this tree "
                             "(repeat; default: 4fe7471, fd4d4a3 and .)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the scope")
    parser.add_argument("--reads", type=int, default=200, help="cursors per version and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--cpu-calls", type=int, default=200,
                        help="calls per CPU block (visible_count's a 20th; 0: no CPU measure)")
    parser.add_argument("--arrays", action="store_true",
                        help="add columns whose types may hold an array to the table")
    parser.add_argument("--confined", metavar="LIST",
                        help="set pgjobs.allowed_scopes to LIST in every measured session")
    args = parser.parse_args(argv)
    refs = args.sql or ["4fe7471", "fd4d4a3", "."]
    random.seed(11)

    with server(args.dsn) as (url, where), tempfile.TemporaryDirectory() as scratch:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {CLIENT}")
            dbs = {}
            for i, ref in enumerate(refs):
                name = f"pgjobs_bench_versions_{os.getpid()}_{i}"
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                dbs[ref] = with_database(url, name)
        try:
            total = 0
            conns: dict[str, Conn] = {}
            for i, (ref, dsn) in enumerate(dbs.items()):
                migrate(dsn, sql_root(ref, Path(scratch) / str(i)))
                if not conns:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
                total = build(dsn, args.rows, args.arrays)
                conns[ref] = psycopg.connect(dsn, autocommit=True)
                conns[ref].execute(f"SET ROLE {CLIENT}")
                if args.confined is not None:
                    conns[ref].execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)",
                                       (args.confined,))
            times: dict[str, dict[str, list[float]]] = {
                ref: {m: [] for m in MEASURES} for ref in refs}
            medians: dict[str, dict[str, list[float]]] = {
                ref: {m: [] for m in MEASURES} for ref in refs}
            stats = {ref: Path(f"/proc/{conn.info.backend_pid}/stat")
                     for ref, conn in conns.items()}
            if not all(stat.exists() for stat in stats.values()):
                args.cpu_calls = 0  # the server is not on this machine
            cpu: dict[str, dict[str, list[float]]] = {
                ref: {m: [] for m in MEASURES} for ref in refs}
            for conn in conns.values():  # warm-up: caches, plans, verdicts
                for _ in range(20):
                    for text in MEASURES.values():
                        conn.execute(text, (random.randrange(total),)).fetchall()
            for rnd in range(args.rounds):
                order = refs[rnd % len(refs):] + refs[:rnd % len(refs)]
                for ref in order:
                    conn = conns[ref]
                    this: dict[str, list[float]] = {m: [] for m in MEASURES}
                    for _ in range(args.reads):
                        after = random.randrange(total)
                        for m, text in MEASURES.items():
                            started = time.perf_counter()
                            conn.execute(text, (after,)).fetchall()
                            this[m].append(time.perf_counter() - started)
                    for m in MEASURES:
                        times[ref][m] += this[m]
                        medians[ref][m].append(statistics.median(this[m]))
                    for m, text in MEASURES.items():  # the backend's CPU, in blocks
                        calls = args.cpu_calls // (20 if m == "visible_count" else 1)
                        started = used(stats[ref])
                        for _ in range(calls):
                            conn.execute(text, (random.randrange(total),)).fetchall()
                        cpu[ref][m].append((used(stats[ref]) - started) / calls)
            for conn in conns.values():
                conn.close()
        finally:
            with psycopg.connect(url, autocommit=True) as admin:
                for dsn in dbs.values():
                    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                                  .format(sql.Identifier(str(name))))
                admin.execute(f"DROP ROLE IF EXISTS {CLIENT}")

    load = os.getloadavg()
    print(f"{args.rows:,}-row scope of a {total:,}-row relation ({where}); as a client role; "
          f"{'array columns; ' if args.arrays else ''}"
          f"{f'allowed_scopes {args.confined!r}; ' if args.confined is not None else ''}"
          f"{args.rounds} alternating rounds x {args.reads} reads per version; "
          f"load {load[0]:.1f}/{load[1]:.1f}")
    print(f"{'sql':<9} {'read':<22} {'p50':>9} {'p99':>9} {'p50 x':>7} {'p99 x':>7}")
    for ref in refs:
        base50 = statistics.median(medians[ref][BASE])
        base99 = pct(times[ref][BASE], 0.99)
        for m in MEASURES:
            p50 = statistics.median(medians[ref][m])
            p99 = pct(times[ref][m], 0.99)
            print(f"{ref:<9} {m:<22} {p50 * 1000:7.3f}ms {p99:7.3f}ms "
                  f"{p50 / base50:6.2f}x {p99 / base99:6.2f}x")
        if args.cpu_calls:
            base = statistics.median(cpu[ref][BASE])
            print("  server CPU per call (median of the rounds' blocks): " + ", ".join(
                f"{m} {statistics.median(cpu[ref][m]) * 1000:.3f}ms "
                f"({statistics.median(cpu[ref][m]) / base:.2f}x)" for m in MEASURES))
        rounds = zip(medians[ref]["visible"], medians[ref][BASE], strict=True)
        print("  round medians of visible/page: " + " ".join(f"{v / b:.2f}" for v, b in rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
