"""Imports under the job controls: a pause lets the batch in flight commit and
parks the job `paused` at once with its offset (in-process and under `pgjobs
worker`), resume and retry (after a failure or a cancel) read on from the
committed offset, and the health and rate limits hold an import between batches
(pgjobs._throttle) as they hold a delete's pages. Every record lands exactly once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.poller.export import Outcome
from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    claim_import,
    drain_notifies,
    job,
    make_people,
    scalar,
    start_worker,
    submit_import,
    wait_for,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    return tmp_path


def source(rows: int, bad: int | None = None) -> tuple[bytes, list[str]]:
    """A CSV of unique names (some quoted over two lines); record `bad` has an age
    that does not cast ("xx": a fix of the same length keeps every offset)."""
    names = [f'n{i} "q",\n{"x" * (i % 50)}' if i % 3 == 0 else f"n{i}" for i in range(rows)]
    body = "".join('"' + n.replace('"', '""') + '",' + ("xx" if i == bad else f"{i % 90:02d}")
                   + "\n" for i, n in enumerate(names))
    return ("name,age\n" + body).encode(), names


def imported(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM people ORDER BY name")]


def run(dsn: str, job_id: int, folder: Path,
        after_batch: Callable[[int], None] | None = None) -> Outcome:
    """Claim and run the import here, in batches of 5000 bytes; after_batch(n) after
    the nth committed batch."""
    count = [0]

    def progress(records: int, read: int, total: int | None) -> None:
        count[0] += 1
        if after_batch is not None:
            after_batch(count[0])

    return Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
                    on_progress=progress, batch_bytes=5000).run()


def assert_exactly_once(conn: Conn, job_id: int, names: list[str]) -> None:
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert imported(conn) == sorted(names)
    assert row["result"]["rows"] == row["result"]["records"] == len(names)
    assert "throttled" not in row["checkpoint"]


# --- pause -------------------------------------------------------------------------


def test_pause_commits_the_batch_in_flight_and_parks_at_once(conn: Conn, make_conn: Any,
                                                             dsn: str, folder: Path) -> None:
    """import_batch with a pause pending: the batch goes in, the job is `paused`
    with its checkpoint in the same transaction, and the result says so."""
    (folder / "a.csv").write_bytes(b"name,age\nx,1\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    worker = claim_import(dsn, job_id)
    attempts = job(conn, job_id)["attempts"]
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    c = make_conn(autocommit=False)
    copy_sql = scalar(c, "SELECT pgjobs.import_prepare(%s, %s, %s)",
                      (job_id, worker, ["name", "age"]))
    with c.cursor().copy(copy_sql) as cp:
        cp.write(b"x,1\n")
    result = scalar(c, "SELECT pgjobs.import_batch(%s, %s, %s, %s, 13, NULL, %s::jsonb)",
                    (job_id, worker, ["name", "age"], [2],
                     json.dumps({"v": 1, "offset": 13, "line": 2})))
    assert result["status"] == "paused" and result["inserted"] == 1
    c.commit()
    row = job(conn, job_id)
    assert row["status"] == "paused" and row["lease_expires_at"] is None
    assert row["pause_requested_at"] is None and row["attempts"] == attempts - 1
    assert row["checkpoint"]["offset"] == 13 and row["checkpoint"]["records"] == 1
    assert imported(conn) == ["x"]
    # A cancel still fences the batch off (nothing written).
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    worker = claim_import(dsn, job_id)
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    c.execute("SELECT pgjobs.import_prepare(%s, %s, %s)", (job_id, worker, ["name", "age"]))
    with c.cursor().copy(copy_sql) as cp:
        cp.write(b"y,1\n")
    assert scalar(c, "SELECT pgjobs.import_batch(%s, %s, %s, %s, 13, NULL, %s::jsonb)",
                  (job_id, worker, ["name", "age"], [2], json.dumps({"v": 1})))["status"] \
        == "lost"
    c.rollback()
    assert imported(conn) == ["x"]


def test_paused_import_resumes_exactly_once_in_process(conn: Conn, dsn: str,
                                                       folder: Path) -> None:
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute("LISTEN pgjobs")

    def pause(n: int) -> None:
        if n == 2:
            conn.execute("SELECT pgjobs.pause(%s)", (job_id,))

    first = run(dsn, job_id, folder, pause)
    assert first.status == "paused", first
    row = job(conn, job_id)
    assert row["status"] == "paused"
    # The batch in flight when the pause came committed: three batches in.
    records = row["checkpoint"]["records"]
    assert 0 < records < 3000 and len(imported(conn)) == records
    assert row["done"] == row["checkpoint"]["offset"]
    # Not claimable while paused.
    assert conn.execute("SELECT * FROM pgjobs.claim_import(%s, 'w')", (job_id,)).fetchall() == []
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    assert job(conn, job_id)["status"] == "queued"
    second = run(dsn, job_id, folder)
    assert second.status == "succeeded", second.error
    assert_exactly_once(conn, job_id, names)
    events = [e["event"] for e in drain_notifies(
        listener, 10, until=lambda e: e["id"] == job_id and e["event"] == "succeeded")
        if e["id"] == job_id]
    assert events.count("paused") == 1 and events.count("resumed") == 1
    listener.close()


def test_worker_pauses_an_import_promptly_and_finishes_it_after_resume(
        conn: Conn, dsn: str, folder: Path) -> None:
    """Under `pgjobs worker`: paused at the next batch (the lease is 10 minutes, so
    only the worker's reaction can park it), then resumed and finished by it."""
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv", options={"lease": "10 minutes"})
    proc = start_worker(dsn, f"file://{folder}/store",
                        env={"PGJOBS_IMPORT_DELAYS": "batch=0.1,bytes=5000"})
    try:
        wait_for(lambda: (job(conn, job_id)["checkpoint"] or {}).get("records", 0) > 0,
                 what="a first batch")
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
        wait_for(lambda: job(conn, job_id)["status"] == "paused", what="paused")
        row = job(conn, job_id)
        assert row["lease_expires_at"] is None and row["error"] is None
        assert 0 < row["checkpoint"]["records"] < 3000
        assert len(imported(conn)) == row["checkpoint"]["records"]
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
        wait_for(lambda: job(conn, job_id)["status"] == "succeeded", what="succeeded")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert_exactly_once(conn, job_id, names)


def test_cli_import_waits_while_paused_and_continues_after_resume(
        conn: Conn, dsn: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pgjobs import` (in-process): a pause is not an end; it says how to resume
    and goes on from the committed offset when resumed."""
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    monkeypatch.setenv("PGJOBS_IMPORT_DELAYS", "batch=0.1,bytes=5000")
    control = psycopg.connect(dsn, autocommit=True)

    def operator() -> None:
        job_id = wait_for(lambda: scalar(control, "SELECT max(id) FROM pgjobs.jobs"
                                         " WHERE (checkpoint ->> 'records')::int > 0"),
                          what="a first batch")
        control.execute("SELECT pgjobs.pause(%s)", (job_id,))
        wait_for(lambda: job(control, job_id)["status"] == "paused", what="paused")
        control.execute("SELECT pgjobs.resume(%s)", (job_id,))

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", f"file://{folder}/store",
                                       "import", "people", f"file://{folder}/a.csv",
                                       "--scope", "1"])
    thread.join(30)
    control.close()
    assert result.exit_code == 0, result.output
    assert "is paused: `pgjobs resume" in result.output
    assert "Traceback" not in result.output
    job_id = int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))
    assert_exactly_once(conn, job_id, names)


# --- retry -------------------------------------------------------------------------


def test_retry_of_a_failed_import_resumes_at_the_committed_offset(conn: Conn, dsn: str,
                                                                  folder: Path) -> None:
    bad = 2000
    data, names = source(3000, bad=bad)
    path = folder / "a.csv"
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}")  # max_rejects 0
    first = run(dsn, job_id, folder)
    assert first.status == "failed", first
    row = job(conn, job_id)
    assert row["error"].startswith("line ")
    committed = row["checkpoint"]["records"]
    assert 0 < committed <= bad and len(imported(conn)) == committed
    # Fix the record after the committed offset (same length: offsets hold).
    fixed, _ = source(3000)
    assert fixed[:row["checkpoint"]["offset"]] == data[:row["checkpoint"]["offset"]]
    path.write_bytes(fixed)
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    assert job(conn, job_id)["checkpoint"]["offset"] == row["checkpoint"]["offset"]
    second = run(dsn, job_id, folder)
    assert second.status == "succeeded", second.error
    assert_exactly_once(conn, job_id, names)


def test_canceled_import_retried_resumes_exactly_once(conn: Conn, dsn: str,
                                                      folder: Path) -> None:
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv")

    def cancel(n: int) -> None:
        if n == 2:
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))

    first = run(dsn, job_id, folder, cancel)
    assert first.status == "canceled", first
    row = job(conn, job_id)
    assert row["status"] == "canceled"
    assert 0 < row["checkpoint"]["records"] < 3000
    assert len(imported(conn)) == row["checkpoint"]["records"]  # the refused batch: none
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    second = run(dsn, job_id, folder)
    assert second.status == "succeeded", second.error
    assert_exactly_once(conn, job_id, names)


# --- throttling --------------------------------------------------------------------


def test_import_is_held_by_a_health_signal_and_finishes_when_it_clears(
        conn: Conn, make_conn: Any, dsn: str, folder: Path) -> None:
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv",
                           options={"max_xact_age": "1 second"})
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    old = make_conn(autocommit=False)
    old.execute("SELECT 1")  # a transaction older than max_xact_age by the 2nd batch
    wait_for(lambda: scalar(conn, "SELECT max(clock_timestamp() - xact_start) > '1.2 s'"
                            " FROM pg_stat_activity WHERE pid = %s", (old.info.backend_pid,)))
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run(dsn, job_id, folder)))
    thread.start()
    try:
        held = wait_for(lambda: (job(conn, job_id)["checkpoint"] or {}).get("throttled"),
                        what="checkpoint.throttled")
        assert "max_xact_age" in held["reason"]
        row = job(conn, job_id)
        assert row["status"] == "running" and row["attempts"] == 1
        assert len(imported(conn)) == row["checkpoint"]["records"] < 3000
    finally:
        old.rollback()
    thread.join(60)
    assert box and box[0].status == "succeeded", box
    assert_exactly_once(conn, job_id, names)
    events = [e["event"] for e in drain_notifies(
        listener, 10, until=lambda e: e["id"] == job_id and e["event"] == "succeeded")
        if e["id"] == job_id]
    assert events.count("throttled") == 1 and events[-1] == "succeeded"


def test_a_throttled_import_honours_a_pause(conn: Conn, make_conn: Any, dsn: str,
                                           folder: Path) -> None:
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv",
                           options={"max_xact_age": "1 second"})
    old = make_conn(autocommit=False)
    old.execute("SELECT 1")
    wait_for(lambda: scalar(conn, "SELECT max(clock_timestamp() - xact_start) > '1.2 s'"
                            " FROM pg_stat_activity WHERE pid = %s", (old.info.backend_pid,)))
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run(dsn, job_id, folder)))
    thread.start()
    try:
        wait_for(lambda: (job(conn, job_id)["checkpoint"] or {}).get("throttled"))
        conn.execute("SELECT pgjobs.pause(%s)", (job_id,))
        thread.join(30)
        assert box and box[0].status == "paused", box
    finally:
        old.rollback()
    row = job(conn, job_id)
    assert row["status"] == "paused"
    assert len(imported(conn)) == row["checkpoint"]["records"]
    conn.execute("SELECT pgjobs.resume(%s)", (job_id,))
    assert run(dsn, job_id, folder).status == "succeeded"
    assert_exactly_once(conn, job_id, names)


def test_rate_limit_counts_an_imports_records_not_its_bytes(conn: Conn, dsn: str,
                                                            folder: Path) -> None:
    """max_rows_per_second paces batches by records (done counts bytes for an
    import) and leaves the batch size alone (no page_size in its checkpoint)."""
    data, names = source(600)
    (folder / "a.csv").write_bytes(data)
    # (By bytes, ~45 kB at 700/s would take a minute; by records, under a second.)
    job_id = submit_import(conn, f"file://{folder}/a.csv",
                           options={"max_rows_per_second": 700})
    assert run(dsn, job_id, folder).status == "succeeded"
    assert_exactly_once(conn, job_id, names)
    assert "page_size" not in job(conn, job_id)["checkpoint"]


def test_an_invalid_limit_fails_the_import_cleanly(conn: Conn, dsn: str, folder: Path) -> None:
    data, names = source(3000)
    (folder / "a.csv").write_bytes(data)
    job_id = submit_import(conn, f"file://{folder}/a.csv")

    def spoil(n: int) -> None:
        if n == 1:
            conn.execute("UPDATE pgjobs.jobs SET options = options || '{\"max_wal_rate\": -1}'"
                         " WHERE id = %s", (job_id,))

    outcome = run(dsn, job_id, folder, spoil)
    assert outcome.status == "failed", outcome
    row = job(conn, job_id)
    assert row["status"] == "failed" and "max_wal_rate" in row["error"]
    assert len(imported(conn)) == row["checkpoint"]["records"]


@pytest.mark.parametrize("records", [1, 10_000_000], ids=["few", "many"])
def test_rate_limit_paces_by_records(conn: Conn, make_conn: Any, dsn: str, folder: Path,
                                     records: int) -> None:
    """The next batch waits for the records of the last one at max_rows_per_second,
    whatever its bytes (an import's done)."""
    (folder / "a.csv").write_bytes(b"name,age\nx,1\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv", options={"max_rows_per_second": 700})
    worker = claim_import(dsn, job_id)
    conn.execute("UPDATE pgjobs.jobs SET done = 1000000000, checkpoint = %s::jsonb WHERE id = %s",
                 (json.dumps({"v": 1, "records": records}), job_id))
    c = make_conn()
    # The session's pacing state: a batch started now, with no records before it.
    c.execute("SELECT set_config('pgjobs.pace', json_build_object('job', %s::bigint,"
              " 'started', extract(epoch FROM clock_timestamp()), 'done', 0)::text, false)",
              (job_id,))
    held = scalar(c, "SELECT pgjobs._throttle(%s, %s, NULL)", (job_id, worker))
    assert held == (None if records == 1 else "more")


def test_a_retried_import_waits_behind_writers_submitted_before_its_retry(
        conn: Conn, dsn: str, folder: Path) -> None:
    """Every claim path orders a scope's writers by their place in the gate
    (gate_order after a retry, else id): `pgjobs import`'s own claim too."""
    (folder / "p.csv").write_bytes(b"name,age\nann,1\n")
    imported = submit_import(conn, f"file://{folder}/p.csv")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (imported,))
    delete = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}', '{}', "
                              "'{\"allow_unknown_fields\": true}')"))
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (imported,))
    with psycopg.connect(dsn, autocommit=True) as other:
        assert other.execute("SELECT id FROM pgjobs.claim_import(%s, 'w')",
                             (imported,)).fetchall() == []
    conn.execute("CALL pgjobs.run_job(%s)", (delete,))
    assert job(conn, delete)["status"] == "succeeded"
    claim_import(dsn, imported)
