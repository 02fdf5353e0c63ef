"""A job's done/total counts rows for a delete, backfill or export, bytes of
its source for an import and items for a fan-out job (pgjobs.submit_items).
The command line's bars said "rows/s" for every job (a new user's pass, h152):
`pgjobs watch` (and --wait/--run, and the demo) now name the job's own unit,
from pgjobs.units as the dashboard does, bytes shown as kB/MB. `pgjobs status`
of a fan-out job says what its placeholder worker and lease mean; its --json
stays the row as stored (scripts read it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pexpect
import psycopg
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import (
    allowed_folder,
    make_people,
    make_rows_target,
    make_target,
    run_import,
    run_job,
    scalar,
    seed,
    submit_delete,
    submit_import,
)
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


def _spawn(dsn: str, *args: str) -> pexpect.spawn:
    """The CLI on a terminal (a pty): stdout and stderr are ttys, so a bar is drawn."""
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn, COLUMNS="200", TERM="dumb")
    return pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8",
                         timeout=60, dimensions=(50, 200))


def _watched(dsn: str, job_id: int) -> str:
    """What `pgjobs watch JOB` of a finished job draws on a terminal (exit 0)."""
    child = _spawn(dsn, "watch", str(job_id))
    child.expect(pexpect.EOF)
    child.close()
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before.replace("\r", ""))
    assert child.exitstatus == 0, out
    return out


def _fanout(conn: Conn, items: int, complete: int) -> int:
    """A fan-out job of `items` items, `complete` of them claimed and completed
    (one more claimed and left running when complete < items)."""
    make_target(conn)
    job_id = int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items'::regclass, '1',"
                              " %s::jsonb)", (json.dumps([{"n": i} for i in range(items)]),)))
    claimed = conn.execute("SELECT id, worker FROM pgjobs.claim_items('{thumb}', 'w',"
                           " '1 hour', %s)", (min(items, complete + 1),)).fetchall()
    done = claimed[:complete]
    if done:
        conn.execute("SELECT * FROM pgjobs.complete_items(%s, %s)",
                     ([int(r[0]) for r in done], [str(r[1]) for r in done])).fetchall()
    return job_id


def test_watch_of_a_fanout_job_counts_items(dsn: str, conn: Conn) -> None:
    job_id = _fanout(conn, 3, 3)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    out = _watched(dsn, job_id)
    assert "3/3 items" in out and "items/s" in out, out
    assert "rows" not in out, out


def test_watch_of_an_import_counts_bytes_in_kb(dsn: str, conn: Conn, tmp_path: Path) -> None:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    (folder / "p.csv").write_text("name,age\n" + "".join(f"person {i},{i % 90}\n"
                                                         for i in range(2000)))
    job_id = submit_import(conn, f"file://{folder}/p.csv")
    assert run_import(dsn, job_id, f"file://{folder}/store").status == "succeeded"
    done = int(scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)))
    assert done > 10_000
    out = _watched(dsn, job_id)
    assert re.search(r"\d+\.\d/\d+\.\d kB", out) and re.search(r"[\d.]+ [kM]?B/s", out), out
    assert "rows" not in out and f"{done}/{done}" not in out, out


def test_watch_of_a_delete_still_counts_rows(dsn: str, conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 90)
    job_id = submit_delete(conn, target, "1")
    run_job(conn, job_id)
    out = _watched(dsn, job_id)
    assert re.search(r"(\d+)/\1 rows", out) and "rows/s" in out, out
    assert "items" not in out and "bytes" not in out, out


def test_status_of_a_fanout_job_says_what_its_placeholders_mean(dsn: str, conn: Conn) -> None:
    job_id = _fanout(conn, 3, 1)  # running: one item done, one leased
    row = conn.execute("SELECT worker, lease_expires_at FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and str(row[0]).startswith("pgjobs.items#")  # the placeholders
    runner = CliRunner()
    human = runner.invoke(main, ["--dsn", dsn, "status", str(job_id)])
    assert human.exit_code == 3, human.output
    assert "worker: (fan-out: items are leased one by one" in human.output
    assert "pgjobs.items#" not in human.output and "9999" not in human.output
    assert "lease_expires_at" not in human.output
    # --json: the row as stored, placeholders and all (a contract: scripts read it).
    as_json = runner.invoke(main, ["--dsn", dsn, "status", str(job_id), "--json"])
    job = json.loads(as_json.output)
    assert job["worker"] == row[0] and job["lease_expires_at"].startswith("9999-12-31")
    from pgjobs import db
    from pgjobs.cli.output import to_json
    with db.connect(dsn, app="test") as c:
        stored = db.get_job(c, job_id)
    assert stored is not None
    assert as_json.output == to_json(stored) + "\n"


def test_status_of_other_jobs_keeps_worker_and_lease(dsn: str, conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    conn.execute("SELECT pgjobs._claim_id(%s, 'someone')", (job_id,))
    human = CliRunner().invoke(main, ["--dsn", dsn, "status", str(job_id)])
    assert re.search(r"^worker: someone", human.output, re.M), human.output
    assert "lease_expires_at: " in human.output and "fan-out" not in human.output
