"""`pgjobs run --loop` stopped by its operator (review h5).

SIGTERM (systemd's, Kubernetes') ended the process at Python's default and
left every runner's `CALL pgjobs.run(budget)` going on the server in an
orphaned session until its budget ran out: a delete went on deleting after
the operator had stopped it. Ctrl-C did the same with --runners 2 (the
runner threads died with the process). Now both cancel every runner's CALL:
no session of `pgjobs run` outlives the process, the page in flight rolls
back (each job's done matches the rows gone), and the next run finishes
each job exactly: the scope emptied, the other scope untouched.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import scalar, wait_for
from tests.support.cli import cli_env

Conn = psycopg.Connection[Any]
ROWS = 3000


def _table(conn: Conn) -> None:
    conn.execute("""
        CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{}',
                           created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    conn.execute("INSERT INTO rows (table_id) SELECT 1 + g %% 3 FROM generate_series(1, %s) g",
                 (ROWS * 3,))
    conn.execute("CREATE INDEX rows_scope_key ON rows (table_id, id)")
    conn.execute("ANALYZE rows")
    conn.execute("SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data')")


def _cli(dsn: str, *args: str) -> subprocess.Popen[bytes]:
    env = cli_env()
    return subprocess.Popen([sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sessions(conn: Conn) -> int:
    """Sessions of `pgjobs run` on this test's database (the cluster is shared:
    another test's runners, in their own databases, are not this one's)."""
    return int(scalar(conn, "SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name = 'pgjobs run' "
                            "AND datname = current_database()"))


def _stop_when(proc: subprocess.Popen[bytes], sig: signal.Signals,
               ready: Callable[[], object]) -> str:
    """Once ready() returns, stop `pgjobs run` with sig; it must exit as
    docs/command-line.md says (0 after SIGTERM, 130 after Ctrl-C) without a
    traceback. Returns its stderr."""
    try:
        ready()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = err.decode(errors="replace")
    assert "Traceback" not in stderr
    assert proc.returncode == (0 if sig == signal.SIGTERM else 130), stderr
    return stderr


@pytest.mark.parametrize("runners", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_runner_leaves_no_call_running_and_its_jobs_resume_exactly(
        dsn: str, conn: Conn, runners: int, sig: signal.Signals) -> None:
    _table(conn)
    options = json.dumps({"page_size": 50, "page_delay": "100 ms", "lease": "2 seconds"})
    jobs = [int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, '{}', '{}', %s)",
                       (str(scope), options))) for scope in range(1, runners + 1)]
    # A budget far longer than the test: an orphaned CALL would still be running.
    proc = _cli(dsn, "run", "--loop", "--runners", str(runners), "--budget", "1h",
                "--idle", "0.2")
    stderr = _stop_when(proc, sig, lambda: wait_for(
        lambda: scalar(conn, "SELECT bool_and(done > 0) FROM pgjobs.jobs "
                             "WHERE id = ANY (%s)", (jobs,)),
        60, "every job to commit a page"))
    if sig == signal.SIGTERM:
        assert "SIGTERM: stopped" in stderr
    wait_for(lambda: _sessions(conn) == 0, 20, "no session of pgjobs run to be left")

    # Nothing half-done: each job's progress is the rows its committed pages removed.
    for scope, job_id in enumerate(jobs, start=1):
        done = scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,))
        left = scalar(conn, "SELECT count(*) FROM rows WHERE table_id = %s", (scope,))
        assert 0 < done < ROWS and left == ROWS - done, (done, left)

    # The next run takes each job back (after its 2-second lease) and ends it exactly.
    wait_for(lambda: scalar(conn, "SELECT bool_and(status <> 'running' OR lease_expires_at "
                                  "< now()) FROM pgjobs.jobs WHERE id = ANY (%s)", (jobs,)),
             30, "the leases to lapse")
    # A job the cancel left running is rescued at the next claim with a
    # retry's backoff (run_at ahead): made due, the run after takes it.
    for _ in range(3):
        conn.execute("SELECT pgjobs.prune()")
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = ANY (%s) "
                     "AND status = 'queued'", (jobs,))
        rerun = _cli(dsn, "run", "--budget", "5m")
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err.decode(errors="replace")
        if scalar(conn, "SELECT bool_and(status = 'succeeded') FROM pgjobs.jobs "
                        "WHERE id = ANY (%s)", (jobs,)):
            break
    assert conn.execute("SELECT status, done FROM pgjobs.jobs WHERE id = ANY (%s) ORDER BY id",
                        (jobs,)).fetchall() == [("succeeded", ROWS)] * runners
    assert conn.execute("SELECT table_id, count(*) FROM rows GROUP BY 1 ORDER BY 1"
                        ).fetchall() == [(scope, ROWS) for scope in range(runners + 1, 4)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_runner_stopped_between_pages_hands_its_job_back_at_once(
        dsn: str, conn: Conn, sig: signal.Signals) -> None:
    """Stopped while its job waits between pages (page_delay: the runner
    sleeps in the throttle), the runner's cancelled CALL hands the job back
    before it ends: queued, no lease, no attempt counted, due at once. It
    stayed `running` under the stopped runner's lease until that lapsed
    (an hour's lease here), and no other runner could take it meanwhile."""
    _table(conn)
    options = json.dumps({"page_size": 50, "page_delay": "1 hour", "lease": "1 hour"})
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('rows', '1', '{}', '{}', %s)",
                        (options,)))
    proc = _cli(dsn, "run", "--loop", "--budget", "1h", "--idle", "0.2")

    def between_pages() -> None:
        wait_for(lambda: scalar(conn, "SELECT done > 0 FROM pgjobs.jobs WHERE id = %s",
                                (job_id,)), 60, "the first page to commit")
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE "
                                      "application_name = 'pgjobs run' AND datname = "
                                      "current_database() AND wait_event = 'PgSleep'"),
                 30, "the runner to wait between pages")

    _stop_when(proc, sig, between_pages)
    status, attempts, lease, due, done = conn.execute(
        "SELECT status, attempts, lease_expires_at, run_at <= now(), done FROM pgjobs.jobs "
        "WHERE id = %s", (job_id,)).fetchone()
    assert (status, attempts, lease, due) == ("queued", 0, None, True), (status, attempts, lease)
    assert scalar(conn, "SELECT count(*) FROM rows WHERE table_id = 1") == ROWS - done
    # Another runner takes it at once and ends it exactly (the delay lifted).
    conn.execute("UPDATE pgjobs.jobs SET options = options - 'page_delay' WHERE id = %s",
                 (job_id,))
    rerun = _cli(dsn, "run", "--budget", "5m")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode(errors="replace")
    assert conn.execute("SELECT status, done FROM pgjobs.jobs WHERE id = %s",
                        (job_id,)).fetchone() == ("succeeded", ROWS)
    assert conn.execute("SELECT table_id, count(*) FROM rows GROUP BY 1 ORDER BY 1"
                        ).fetchall() == [(2, ROWS), (3, ROWS)]
