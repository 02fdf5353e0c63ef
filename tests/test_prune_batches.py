"""pgjobs.prune deletes in bounded transactions and never waits for a row.

It deleted every finished job past the retention in one DELETE: a backlog
of millions (a retention shortened, pruning off for a while, a flood of
fan-out jobs) ran for minutes in one transaction, holding back vacuum for
every table, and under a statement_timeout was canceled at every call,
pruning nothing ever again while the table grew; a finished job's row held
by another transaction (a retry not yet committed, an earlier prune still
running from pg_cron's last minute) made it wait. Each call now deletes the
oldest 10,000 (`"more": true` when some are left), skipping rows another
transaction holds; `pgjobs prune` calls until none is left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from click.testing import CliRunner

from cli.main import main
from tests.support import make_rows_target, scalar, seed, submit_delete

Conn = psycopg.Connection[Any]

BATCH = 10_000


def finished_jobs(conn: Conn, count: int) -> list[int]:
    """count jobs that finished three days ago (copies of one delete that
    ran); their ids, oldest finish first."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    columns = ", ".join(r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'pgjobs'"
        " AND table_name = 'jobs' AND column_name <> 'id' AND is_generated = 'NEVER'"
        " AND identity_generation IS NULL ORDER BY ordinal_position"))
    conn.execute(f"INSERT INTO pgjobs.jobs ({columns}) SELECT {columns} FROM pgjobs.jobs j,"
                 " generate_series(2, %s) g WHERE j.id = %s", (count, job_id))
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '3 days'"
                 " - id * interval '1 ms'")  # the last ids finished first
    return [r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs ORDER BY finished_at")]


def prune(conn: Conn) -> dict[str, Any]:
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")
    assert isinstance(summary, dict)
    return summary


def test_a_prune_deletes_the_oldest_batch_and_says_more_are_left(conn: Conn) -> None:
    ids = finished_jobs(conn, BATCH + 50)
    first = prune(conn)
    assert (first["deleted"], first["more"]) == (BATCH, True)
    left = [r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs ORDER BY finished_at")]
    assert left == ids[BATCH:]  # the oldest went first
    second = prune(conn)
    assert (second["deleted"], second["more"]) == (50, False)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_prune_skips_a_finished_job_another_transaction_holds(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A row held (a retry not yet committed, another prune) is left for a
    later call; the others go, and the prune does not wait (lock_timeout
    would fail it, 55P03)."""
    ids = finished_jobs(conn, 5)
    holder = make_conn(autocommit=False)
    holder.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (ids[0],))
    pruner = make_conn()
    pruner.execute("SET lock_timeout = '1s'")
    try:
        summary = prune(pruner)
    finally:
        holder.rollback()
    assert summary["deleted"] == 4
    assert scalar(conn, "SELECT array_agg(id) FROM pgjobs.jobs") == [ids[0]]
    assert prune(conn)["deleted"] == 1


def test_the_cli_prune_deletes_every_batch(dsn: str, conn: Conn) -> None:
    finished_jobs(conn, BATCH + 7)
    result = CliRunner().invoke(main, ["--dsn", dsn, "prune", "--retention", "1d"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["deleted"], summary["more"]) == (BATCH + 7, False)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
