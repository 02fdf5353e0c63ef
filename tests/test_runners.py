"""Runners side by side: `pgjobs.schedule('{"runners": N}')` installs N pg_cron
runner entries, and `pgjobs run --loop --runners N` runs N loops without
pg_cron. Either way claim's SKIP LOCKED and the gate keep runners off the same
job and off one scope's writers, while different scopes proceed in parallel;
`pgjobs run --loop` wakes on a `submitted` event, not only by polling.

Parallelism is shown by the jobs' own timestamps (two scopes' jobs running
at once, on different sessions; one scope's jobs never overlapping), never
by timings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.support import scalar, wait_for
from tests.support.cli import cli_env
from tests.test_cron import CRON_RUN_SECONDS, cron_jobs, runs_ended_since, wait_for_launcher

Conn = psycopg.Connection[Any]


@pytest.fixture
def cron(cron_dsn: str) -> Iterator[Conn]:
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        yield conn
    finally:
        conn.execute("SELECT pgjobs.unschedule()")
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DELETE FROM pgjobs.target_registry")
        conn.execute("DROP TABLE IF EXISTS rows")
        conn.close()


def _tenants(conn: Conn, rows: int = 2000, scopes: int = 2) -> None:
    conn.execute("""
        CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{}',
                           created_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("INSERT INTO rows (table_id) SELECT 1 + g %% %s FROM generate_series(1, %s) g",
                 (scopes, rows * scopes))
    conn.execute("CREATE INDEX rows_scope_key ON rows (table_id, id)")
    conn.execute("ANALYZE rows")
    conn.execute("SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data')")


def _delete(conn: Conn, scope: int, page_size: int = 10) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, '{}', '{}', %s::jsonb)",
                      (str(scope), json.dumps({"page_size": page_size}))))


def _spans(conn: Conn, ids: list[int]) -> dict[int, tuple[Any, Any, str]]:
    """id -> (started_at, finished_at, runner session) of finished jobs."""
    rows = conn.execute("SELECT id, started_at, finished_at, split_part(worker, '#', 1), status "
                        "FROM pgjobs.jobs WHERE id = ANY (%s)", (ids,)).fetchall()
    assert all(r[4] == "succeeded" for r in rows), rows
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _overlap(a: tuple[Any, Any, str], b: tuple[Any, Any, str]) -> bool:
    return bool(a[0] < b[1] and b[0] < a[1])


@contextmanager
def _held_until_running(dsn: str, ids: list[int], seconds: float = 60) -> Iterator[None]:
    """Every row of `rows` locked (FOR UPDATE) until the jobs `ids` all run at
    once, then released. A page that meets a locked row retries it later and
    its job stays running (pgjobs._run_page's 'retry'), so neither job can end
    before the other has been claimed: without it a runner that started late
    (a thread's connection on a loaded machine) found the first scope's job
    already done and the two scopes' jobs ran one after the other."""
    with psycopg.connect(dsn, autocommit=False) as gate:
        gate.execute("SELECT FROM rows FOR UPDATE")
        try:
            yield
            wait_for(lambda: scalar(gate, "SELECT count(*) = %s FROM pgjobs.jobs"
                                          " WHERE id = ANY (%s) AND status = 'running'",
                                    (len(ids), ids)),
                     seconds, f"jobs {ids} to run at once", interval=0.1)
        finally:
            gate.rollback()


def test_schedule_installs_n_runners_and_changes_n(cron: Conn) -> None:
    result = scalar(cron, "SELECT pgjobs.schedule('{\"runners\": 3}')")
    assert result["runners"] == 3
    jobs = cron_jobs(cron)
    assert sorted(jobs) == ["pgjobs.prune", "pgjobs.run", "pgjobs.run.2", "pgjobs.run.3"]
    commands = {jobs[n]["command"] for n in ("pgjobs.run", "pgjobs.run.2", "pgjobs.run.3")}
    assert len(commands) == 1 and commands.pop().startswith("CALL pgjobs.run(")
    assert [j["name"] for j in result["jobs"]] == ["pgjobs.run", "pgjobs.run.2", "pgjobs.run.3",
                                                  "pgjobs.prune"]
    # Idempotent; then down to 1, up to 2: never duplicated, never left over.
    scalar(cron, "SELECT pgjobs.schedule('{\"runners\": 3}')")
    assert len(cron_jobs(cron)) == 4
    scalar(cron, "SELECT pgjobs.schedule()")
    assert sorted(cron_jobs(cron)) == ["pgjobs.prune", "pgjobs.run"]
    scalar(cron, "SELECT pgjobs.schedule('{\"runners\": 2}')")
    assert sorted(cron_jobs(cron)) == ["pgjobs.prune", "pgjobs.run", "pgjobs.run.2"]
    # Bad counts change nothing.
    for bad in ("0", "17", "\"2\"", "1.5", "null"):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            cron.execute("SELECT pgjobs.schedule(%s::jsonb)", (f'{{"runners": {bad}}}',))
    assert sorted(cron_jobs(cron)) == ["pgjobs.prune", "pgjobs.run", "pgjobs.run.2"]
    # unschedule removes every runner, and nobody else's job.
    other = scalar(cron, "SELECT cron.schedule('pgjobs.run.x', '0 0 1 1 *', 'SELECT 1')")
    try:
        assert scalar(cron, "SELECT pgjobs.unschedule()") == {"unscheduled": 3}
        assert sorted(cron_jobs(cron)) == ["pgjobs.run.x"]
    finally:
        cron.execute("SELECT cron.unschedule(%s::bigint)", (other,))


@pytest.mark.slow
def test_pg_cron_runners_work_two_scopes_in_parallel_and_one_scope_in_order(
        cron: Conn, cron_dsn: str) -> None:
    _tenants(cron, rows=3000)
    # Queued before the runners are scheduled: a minute tick between the schedule
    # and the submits would start them on a partial queue (a runner that finds
    # nothing returns, and the other one ends up running both scopes).
    first, other, second = _delete(cron, 1), _delete(cron, 2), _delete(cron, 1, page_size=200)
    wait_for_launcher(cron)
    scheduled = scalar(cron, "SELECT clock_timestamp()")
    # pg_cron starts the tick's runners one after the other: held until both
    # run, one cannot finish its scope's job before the other has claimed.
    with _held_until_running(cron_dsn, [first, other], CRON_RUN_SECONDS):
        scalar(cron, "SELECT pgjobs.schedule('{\"runners\": 2}')")
    # pg_cron's events, not a guess at its timing: the jobs' end, or runs of
    # both runners started after the schedule and ended (they claimed them).
    wait_for(lambda: scalar(
        cron, "SELECT count(*) = 3 FROM pgjobs.jobs WHERE status = 'succeeded'")
        or runs_ended_since(cron, scheduled, ["pgjobs.run", "pgjobs.run.2"]),
        CRON_RUN_SECONDS, "pg_cron's two runners to run after the schedule", interval=0.5)
    assert scalar(cron, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 3
    spans = _spans(cron, [first, other, second])
    assert _overlap(spans[first], spans[other]), spans
    assert spans[first][2] != spans[other][2]  # two runner sessions
    assert spans[first][1] <= spans[second][0], spans  # one scope: one after the other
    assert scalar(cron, "SELECT count(*) FROM rows") == 0


def _cli(dsn: str, *args: str) -> subprocess.Popen[bytes]:
    env = cli_env()
    return subprocess.Popen([sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """Interrupt the CLI as Ctrl-C would; its stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def _wait_done(conn: Conn, ids: list[int], seconds: float = 60) -> None:
    wait_for(lambda: not scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s)"
                                      " AND status IN ('queued', 'running')", (ids,)),
             seconds, f"jobs {ids} to end", interval=0.1)


def test_run_loop_with_two_runners(dsn: str, conn: Conn) -> None:
    _tenants(conn, rows=3000)
    first, other, second = _delete(conn, 1), _delete(conn, 2), _delete(conn, 1, page_size=200)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with _held_until_running(dsn, [first, other]):
            proc = _cli(dsn, "run", "--loop", "--runners", "2", "--budget", "30s",
                        "--idle", "0.2")
        _wait_done(conn, [first, other, second])
    finally:
        if proc is not None:
            _stop(proc)
    spans = _spans(conn, [first, other, second])
    assert _overlap(spans[first], spans[other]), spans
    assert spans[first][2] != spans[other][2]
    assert spans[first][1] <= spans[second][0], spans
    assert scalar(conn, "SELECT count(*) FROM rows") == 0


def test_run_loop_wakes_on_submitted(dsn: str, conn: Conn) -> None:
    """An idle loop with a long poll interval still starts a submitted job:
    the `submitted` event wakes it (a forged payload on the channel only
    makes it look for work, and it finds none)."""
    _tenants(conn, rows=100)
    proc = _cli(dsn, "run", "--loop", "--idle", "3600")
    try:
        deadline = time.monotonic() + 30
        while not scalar(conn, "SELECT count(*) FROM pg_stat_activity "
                               "WHERE application_name = 'pgjobs run' AND state = 'idle'"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        conn.execute("NOTIFY pgjobs, '{\"id\": 1, \"event\": \"submitted\"}'")
        conn.execute("NOTIFY pgjobs, 'not json'")
        job_id = _delete(conn, 1)
        _wait_done(conn, [job_id], seconds=30)
    finally:
        _stop(proc)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
