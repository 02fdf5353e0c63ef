"""Issue 13, the connections of a one-shot export: `pgjobs export` submits,
claims and keeps the job's lease on one session.

It opened four sessions of its own (and a fifth for the progress bar's row
count): the submit's, the claim's (kept idle to follow the job), and the
exporter's control and data connections, each a new backend that compiles
the functions its first call runs (a cold `submit_export` 0.12-0.2 s). Now
the session that submits claims too and is lent to the exporter as its
control connection (heartbeats, bound walks, complete); the rows are read on
a connection of the exporter's own, so a chunk's COPY never holds up a
heartbeat. The exporter hands the session back open, with its own lock
timeout, whichever way the attempt ends; a session lost mid-export is
replaced by one of the exporter's own, and the command still ends exactly.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import db, queries
from pgjobs.cli.main import main
from pgjobs.poller.export import Exporter
from tests.support import job, make_rows_target, scalar, seed, wait_for
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


@pytest.fixture
def rows(conn: Conn, tmp_path: Path) -> Conn:
    seed(conn, make_rows_target(conn), 3000)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tmp_path}/",))
    return conn


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Every connection this process opens (``opened``: application names) and
    the backends that ran the submit, the heartbeats, the complete and the
    chunks, recorded by wrapping the connector's calls."""
    seen: dict[str, list[Any]] = {"opened": [], "submit": [], "heartbeat": [],
                                  "complete": [], "chunk": []}
    connect = psycopg.connect

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen["opened"].append(kwargs.get("application_name"))
        return connect(*args, **kwargs)

    def recording(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(conn: Any, *args: Any, **kwargs: Any) -> Any:
            seen[name].append(conn.info.backend_pid)
            return func(conn, *args, **kwargs)
        return call

    scalar_ = db.scalar

    def scalar_recording(conn: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql == queries.EXPORT_SUBMIT:
            seen["submit"].append(conn.info.backend_pid)
        return scalar_(conn, sql, *args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", counting)
    monkeypatch.setattr(db, "scalar", scalar_recording)
    for name, attr in (("heartbeat", "heartbeat"), ("complete", "complete"),
                       ("chunk", "begin_chunk")):
        monkeypatch.setattr(db, attr, recording(name, getattr(db, attr)))
    yield seen


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("options", [
    [], ["--format", "jsonl"], ["--gzip"], ["--format", "parquet"],
], ids=["csv", "jsonl", "gzip", "parquet"])
def test_a_one_shot_export_submits_claims_and_heartbeats_on_one_session(
        rows: Conn, dsn: str, tmp_path: Path, sessions: dict[str, list[Any]],
        options: list[str]) -> None:
    if "parquet" in options:
        pytest.importorskip("pyarrow")
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", f"file://{tmp_path}/out", "export", "user_table_rows",
        "--scope", "1", "--no-progress", "--options",
        '{"chunk_rows": 200, "part_size": 1024}', *options])
    assert result.exit_code == 0, result.output
    (job_id,) = [int(r[0]) for r in rows.execute("SELECT id FROM pgjobs.jobs").fetchall()]
    row = job(rows, job_id)
    assert row["status"] == "succeeded" and row["result"]["rows"] > 200, row
    # Its own sessions: one that submits, claims and keeps the lease, one that
    # reads (the progress bar's row count has one of its own, as before).
    mine = [app for app in sessions["opened"] if app != "pgjobs export count"]
    assert len(mine) == 2, sessions["opened"]
    (session,) = set(sessions["submit"])
    assert sessions["heartbeat"] and set(sessions["heartbeat"]) == {session}, sessions
    assert set(sessions["complete"]) == {session}, sessions
    # The rows are read elsewhere: a COPY never holds up a heartbeat.
    assert sessions["chunk"] and session not in sessions["chunk"], sessions


def _submit(conn: Conn, destination: str) -> tuple[int, str]:
    job_id = int(db.scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', "
                                 "%(o)s::jsonb)", {"o": f'{{"destination": "{destination}", '
                                                        '"chunk_rows": 200, "part_size": 1024}'}))
    worker = str(db.scalar(conn, "SELECT worker FROM pgjobs.claim_export(%(id)s, 'lent', "
                                 "'30 seconds')", {"id": job_id}))
    return job_id, worker


@pytest.mark.parametrize("ending", ["succeeded", "failed", "canceled"])
def test_the_exporter_hands_a_lent_session_back_as_it_was(
        rows: Conn, dsn: str, tmp_path: Path, sessions: dict[str, list[Any]],
        ending: str) -> None:
    """Whichever way the attempt ends, the lent session is open, idle, with the
    lock timeout it had: the caller follows the job on it (and claims again)."""
    lent = db.connect(dsn)
    try:
        lent.execute("SET lock_timeout = '7s'")
        destination = f"file://{tmp_path}/out/"
        if ending == "failed":
            # Disallowed since the submit: refused before anything is written,
            # for good.
            job_id, worker = _submit(lent, destination)
            rows.execute("SELECT pgjobs.disallow_storage(%s)", (f"file://{tmp_path}/",))
        else:
            job_id, worker = _submit(lent, destination)
        if ending == "canceled":
            rows.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        outcome = Exporter(dsn, job_id, worker, f"file://{tmp_path}/elsewhere",
                           control=lent).run()
        assert outcome.status == ending, outcome
        assert not lent.closed and not lent.broken
        assert lent.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert db.scalar(lent, "SELECT current_setting('lock_timeout')") == "7s"
        assert job(rows, job_id)["status"] == ending
        if ending == "succeeded":
            assert set(sessions["heartbeat"]) == {lent.info.backend_pid}, sessions
    finally:
        lent.close()


def test_a_session_lost_mid_export_is_replaced(rows: Conn, dsn: str, tmp_path: Path) -> None:
    """The session lent to the exporter is ended (an administrator's
    pg_terminate_backend) between two parts: the exporter goes on on a session
    of its own, the command follows the job on a new one, and the object is
    exactly the rows."""
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn, PGJOBS_EXPORT_DELAYS="part=0.3")
    child = subprocess.Popen([*command, "--storage", f"file://{tmp_path}/out", "export",
                              "user_table_rows", "--scope", "1", "--no-progress", "--options",
                              '{"chunk_rows": 100, "part_size": 1024}'],
                             env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        # The session that submitted holds the lease: it has heartbeaten.
        wait_for(lambda: scalar(rows, "SELECT coalesce(bool_or((checkpoint->>'parts')::int >= 2), "
                                       "false) FROM pgjobs.jobs"),
                 30, "two parts checkpointed")
        # Its last statement a heartbeat or a bound walked ahead (the reading
        # session's are its chunks' BEGIN and COPY).
        ended = wait_for(lambda: rows.execute("""
            SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
             WHERE application_name = 'pgjobs export' AND datname = current_database()
               AND (query LIKE '%%heartbeat%%' OR query LIKE '%%SELECT c.next_after FROM%%')
            """).fetchall(), 30, "the lent session")
        assert ended == [(True,)], ended
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "database connection lost" in err, err  # the lent session, ended mid-export
    (job_id,) = [int(r[0]) for r in rows.execute("SELECT id FROM pgjobs.jobs").fetchall()]
    row = job(rows, job_id)
    assert row["status"] == "succeeded" and row["attempts"] == 1, row
    uri = out.strip().splitlines()[-1]
    assert uri == row["result"]["uri"]
    assert sha256(Path(uri[len("file://"):])) == row["result"]["sha256"]
    copied = scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                          "AND created_at <= now()")
    assert row["result"]["rows"] == copied


@pytest.mark.parametrize("display", [["--no-progress"], ["--quiet"], []],
                         ids=["no-progress", "quiet", "plain-lines"])
def test_the_row_count_runs_only_for_a_display_that_shows_it(
        rows: Conn, dsn: str, tmp_path: Path, sessions: dict[str, list[Any]],
        display: list[str]) -> None:
    """The progress display's row count (a scan of the scope on a session of
    its own, beside the export's, on the same cores) runs only when a bar or
    plain lines show it: with --no-progress or --quiet nothing reads it."""
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", f"file://{tmp_path}/out", "export", "user_table_rows",
        "--scope", "1", "--options", '{"chunk_rows": 200, "part_size": 1024}', *display])
    assert result.exit_code == 0, result.output
    if display:
        assert sessions["opened"] == ["pgjobs export", "pgjobs export"], sessions["opened"]
    else:
        # Piped stderr: plain lines, which show the total.
        wait_for(lambda: "pgjobs export count" in sessions["opened"], 30, "the row count")
