"""Issue 13, the connections of a one-shot import: `pgjobs import` submits,
claims and is the importer's control connection on one session, as
`pgjobs export` does (tests/test_export_one_session.py).

It opened four sessions: the submit's, the claim's (kept idle to follow the
job), and the importer's control and data connections, each a new backend
that compiles the functions its first call runs. Now the session that
submits claims too and is lent to the importer as its control connection
(the job's row, the allow-list, complete, rejects); the batches are copied on
a connection of the importer's own. The importer hands the session back
open, with its own lock timeout, whichever way the attempt ends; a session
lost mid-import is replaced, and the command still ends exactly.
"""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import db, queries
from pgjobs.cli.main import main
from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, job, make_people, scalar, wait_for
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]

RECORDS = 3000


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def csv_source(records: int = RECORDS) -> bytes:
    return ("name,age\n" + "".join(f"person {i},{i % 90}\n" for i in range(records))).encode()


def jsonl_source(records: int = RECORDS) -> bytes:
    return "".join(f'{{"name": "person {i}", "age": {i % 90}}}\n'
                   for i in range(records)).encode()


SOURCES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "csv": ("a.csv", csv_source),
    "jsonl": ("a.jsonl", jsonl_source),
    "gzip": ("a.csv.gz", lambda: gzip.compress(csv_source())),
}


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Every connection this process opens (``opened``: application names) and
    the backends that ran the submit, the claim, the job's reads, the complete
    and the batches, recorded by wrapping the connector's calls."""
    seen: dict[str, list[Any]] = {"opened": [], "submit": [], "claim": [], "load": [],
                                  "complete": [], "batch": []}
    connect = psycopg.connect

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen["opened"].append(kwargs.get("application_name"))
        return connect(*args, **kwargs)

    by_query = {queries.IMPORT_SUBMIT: "submit", queries.IMPORT_CLAIM_ONE: "claim",
                queries.EXPORT_JOB: "load", queries.IMPORT_BATCH: "batch"}

    def recording(func: Callable[..., Any]) -> Callable[..., Any]:
        def call(conn: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            if sql in by_query:
                seen[by_query[sql]].append(conn.info.backend_pid)
            return func(conn, sql, *args, **kwargs)
        return call

    complete = db.complete

    def completing(conn: Any, *args: Any, **kwargs: Any) -> Any:
        seen["complete"].append(conn.info.backend_pid)
        return complete(conn, *args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", counting)
    for name in ("scalar", "rows", "one"):
        monkeypatch.setattr(db, name, recording(getattr(db, name)))
    monkeypatch.setattr(db, "complete", completing)
    yield seen


@pytest.mark.parametrize("kind", list(SOURCES))
def test_a_one_shot_import_submits_claims_and_controls_on_one_session(
        conn: Conn, dsn: str, folder: Path, sessions: dict[str, list[Any]],
        kind: str) -> None:
    name, make = SOURCES[kind]
    (folder / name).write_bytes(make())
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", f"file://{folder}/store", "import", "people",
        str(folder / name), "--scope", "1", "--no-progress",
        "--options", '{"batch_ms": 500}'], env={"PGJOBS_IMPORT_DELAYS": "bytes=8192"})
    assert result.exit_code == 0, result.output
    (job_id,) = [int(r[0]) for r in conn.execute("SELECT id FROM pgjobs.jobs").fetchall()]
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["result"]["rows"] == RECORDS, row
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == RECORDS
    # Its own sessions: one that submits, claims and is the control connection,
    # one that copies the batches.
    assert len(sessions["opened"]) == 2, sessions["opened"]
    (session,) = set(sessions["submit"])
    assert set(sessions["claim"]) == {session}, sessions
    assert sessions["load"] and set(sessions["load"]) == {session}, sessions
    assert set(sessions["complete"]) == {session}, sessions
    # The batches are copied elsewhere: a batch never holds up the control calls.
    assert len(sessions["batch"]) > 1 and session not in sessions["batch"], sessions


def _submit(conn: Conn, source: str) -> tuple[int, str]:
    job_id = int(db.scalar(conn, "SELECT pgjobs.submit_import('people', '1', %(s)s, "
                                 "'{\"batch_ms\": 500}'::jsonb)", {"s": source}))
    worker = str(db.scalar(conn, "SELECT worker FROM pgjobs.claim_import(%(id)s, 'lent', "
                                 "'30 seconds')", {"id": job_id}))
    return job_id, worker


@pytest.mark.parametrize("ending", ["succeeded", "failed", "canceled"])
def test_the_importer_hands_a_lent_session_back_as_it_was(
        conn: Conn, dsn: str, folder: Path, sessions: dict[str, list[Any]],
        ending: str) -> None:
    """Whichever way the attempt ends, the lent session is open, idle, with the
    lock timeout it had: the caller follows the job on it (and claims again)."""
    (folder / "a.csv").write_bytes(csv_source())
    lent = db.connect(dsn)
    try:
        lent.execute("SET lock_timeout = '7s'")
        job_id, worker = _submit(lent, f"file://{folder}/a.csv")
        if ending == "failed":
            # Disallowed since the submit: refused before anything is read, for good.
            conn.execute("SELECT pgjobs.disallow_storage(%s)", (f"file://{folder}/",))
        if ending == "canceled":
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        outcome = Importer(dsn, job_id, worker, f"file://{folder}/store",
                           control=lent).run()
        assert outcome.status == ending, outcome
        assert not lent.closed and not lent.broken
        assert lent.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert db.scalar(lent, "SELECT current_setting('lock_timeout')") == "7s"
        assert job(conn, job_id)["status"] == ending
        if ending != "canceled":
            assert set(sessions["load"]) == {lent.info.backend_pid}, sessions
    finally:
        lent.close()


def test_a_session_lost_mid_import_is_replaced(conn: Conn, dsn: str, folder: Path) -> None:
    """The session lent to the importer is ended (an administrator's
    pg_terminate_backend) between two batches: the importer goes on on a
    session of its own, the command follows the job on a new one, and every
    record is imported exactly once."""
    (folder / "a.csv").write_bytes(csv_source())
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn, PGJOBS_IMPORT_DELAYS="batch=0.3,bytes=8192")
    child = subprocess.Popen([*command, "--storage", f"file://{folder}/store", "import",
                              "people", str(folder / "a.csv"), "--scope", "1",
                              "--no-progress"],
                             env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        wait_for(lambda: scalar(conn, "SELECT coalesce(bool_or((checkpoint->>'records')::int "
                                      "> 0), false) FROM pgjobs.jobs"),
                 30, "a first batch committed")
        # The session that submitted: the command's first (the batches' is the
        # importer's own, opened after the claim).
        ended = wait_for(lambda: conn.execute("""
            SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
             WHERE application_name = 'pgjobs import' AND datname = current_database()
             ORDER BY backend_start LIMIT 1
            """).fetchall(), 30, "the lent session")
        assert ended == [(True,)], ended
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "database connection lost" in err, err  # the lent session, ended mid-import
    (job_id,) = [int(r[0]) for r in conn.execute("SELECT id FROM pgjobs.jobs").fetchall()]
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["attempts"] == 1, row
    assert row["result"]["rows"] == RECORDS, row
    names = [r[0] for r in conn.execute("SELECT name FROM people WHERE tenant = 1").fetchall()]
    assert sorted(names) == sorted(f"person {i}" for i in range(RECORDS))
