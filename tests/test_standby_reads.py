"""Exports that read their rows from a real streaming standby (`pgjobs worker
--read-dsn`, poller/standby.py, jobs.submit_lsn of migration 0019).

The promise under test: each chunk's snapshot is no older than the job's
submit nor than any chunk read before it, on whatever server it is read. So a
standby export holds the same bytes as a primary export (filter, cutoff and
the mask of pending deletes included); a standby behind the submit (replay
paused with pg_wal_replay_pause()) is waited for, then, by --read-fallback,
read past on the primary or waited for still; a resumed attempt never reads
older rows than the attempt before it read; a read DSN of another database
is never read from.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from pgjobs import db
from pgjobs.cli.main import main
from pgjobs.errors import InvalidInput
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.standby import ReadConfig, check_read_dsn, lsn, lsn_text, same_server
from pgjobs.poller.worker import Worker
from tests.support import (
    add_items,
    content,
    job,
    make_items,
    plain_copy,
    submit_export,
    with_database,
)
from tests.support.standby import Standby, caught_up

Conn = psycopg.Connection[Any]
SMALL = {"chunk_rows": 17, "part_size": 2048}
SELECT_1 = "SELECT * FROM items WHERE tenant = 1 AND id <= 300 ORDER BY id"


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn)


def _claim(dsn: str, job_id: int, lease: str = "30 seconds") -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT worker FROM pgjobs.claim_export(%s, 'standby-test', "
                        "%s::interval)", (job_id, lease)).fetchone()
    assert row is not None, f"job {job_id} was not claimable"
    return str(row[0])


def _export(dsn: str, job_id: int, storage_uri: str, reads: ReadConfig | None) -> Outcome:
    return Exporter(dsn, job_id, _claim(dsn, job_id), storage_uri, reads=reads).run()


def _reads(conn: Conn, job_id: int) -> dict[str, int]:
    return dict(job(conn, job_id)["checkpoint"]["reads"])


def test_every_submit_records_its_wal_position(conn: Conn, items: None) -> None:
    before = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    submit_export(conn, "1")
    conn.execute("SELECT pgjobs.submit_delete('items', '2', '{}')")
    conn.execute("SELECT pgjobs.submit_backfill('items', '3', '{}', '{\"note\": \"x\"}')")
    after = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert before is not None and after is not None
    rows = conn.execute("SELECT kind, submit_lsn::text FROM pgjobs.jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["export", "delete", "backfill"]
    positions = [lsn(before[0]), *(lsn(r[1]) for r in rows), lsn(after[0])]
    assert all(p > 0 for p in positions) and positions == sorted(positions), rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_standby_export_is_byte_identical_to_a_primary_export(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        fmt: str) -> None:
    # A pending delete masks kind "b"; the filter keeps nested.x < 4; rows added
    # after the submit are outside the cutoff. Both exports see all of it.
    conn.execute("""SELECT pgjobs.submit_delete('items', '1', '{"kind": "b"}')""")
    options = {"format": fmt, **SMALL}
    on_primary = submit_export(conn, "1", {"nested.x": {"$lt": 4}}, options)
    on_standby = submit_export(conn, "1", {"nested.x": {"$lt": 4}}, options)
    add_items(conn, 1001, 30, created="now()")

    reference = _export(dsn, on_primary, local_dir, None)
    outcome = _export(dsn, on_standby, local_dir, ReadConfig(read_dsn, max_wait=30,
                                                             fallback="wait"))
    assert reference.status == outcome.status == "succeeded", (reference, outcome)
    assert reference.result is not None and outcome.result is not None
    assert content(outcome.result) == content(reference.result)
    assert outcome.result["rows"] == reference.result["rows"] > 20
    if fmt == "csv":
        assert content(outcome.result) == plain_copy(
            conn, "SELECT * FROM items WHERE tenant = 1 AND id <= 300 "
                  "AND (doc->'nested'->>'x')::int < 4 AND doc->>'kind' <> 'b' ORDER BY id")
    reads = _reads(conn, on_standby)
    assert reads["standby"] >= 5 and reads["primary"] == 0, reads
    assert _reads(conn, on_primary)["standby"] == 0
    # The checkpoint's position is no earlier than the submit.
    row = job(conn, on_standby)
    assert lsn(row["checkpoint"]["read_lsn"]) >= lsn(str(row["submit_lsn"]))


def test_a_delete_run_or_submitted_after_the_export_reads_the_same_on_the_standby(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    # Submitted after the exports: a pending delete of kind "a" (its mask is in a
    # jobs row, replicated like the rows), and a delete of tenant 1's id <= 30
    # that has run (its rows are gone on both servers).
    on_primary = submit_export(conn, "1", {}, SMALL)
    on_standby = submit_export(conn, "1", {}, SMALL)
    conn.execute("""SELECT pgjobs.submit_delete('items', '1', '{"id": {"$lte": 30}}')""")
    conn.execute("CALL pgjobs.run('10 seconds')")
    conn.execute("""SELECT pgjobs.submit_delete('items', '1', '{"kind": "a"}')""")
    caught_up(conn, replica)

    reference = _export(dsn, on_primary, local_dir, None)
    outcome = _export(dsn, on_standby, local_dir, ReadConfig(read_dsn, 30, "wait"))
    assert reference.result is not None and outcome.result is not None
    assert content(outcome.result) == content(reference.result) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 AND id > 30 AND doc->>'kind' <> 'a' "
              "ORDER BY id")
    assert _reads(conn, on_standby)["primary"] == 0


def _start(dsn: str, job_id: int, storage_uri: str, reads: ReadConfig,
           stop: threading.Event | None = None,
           lease: str = "30 seconds") -> tuple[threading.Thread, list[Outcome]]:
    outcomes: list[Outcome] = []
    worker = _claim(dsn, job_id, lease)

    def go() -> None:
        outcomes.append(Exporter(dsn, job_id, worker, storage_uri, reads=reads,
                                 stop=stop).run())

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, outcomes


def test_a_standby_paused_behind_the_submit_is_waited_for(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn, caplog: pytest.LogCaptureFixture) -> None:
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    job_id = submit_export(conn, "1", {}, SMALL)
    thread, outcomes = _start(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.3, "wait"))
    time.sleep(2.0)
    # Nothing read: the standby has not replayed the submit.
    row = job(conn, job_id)
    assert thread.is_alive() and row["status"] == "running" and row["done"] == 0
    assert not (row["checkpoint"] or {}).get("reads")
    replica.execute("SELECT pg_wal_replay_resume()")
    thread.join(60)
    assert not thread.is_alive() and outcomes[0].status == "succeeded", outcomes
    assert outcomes[0].result is not None
    assert content(outcomes[0].result) == plain_copy(conn, SELECT_1)
    assert _reads(conn, job_id)["primary"] == 0


@pytest.mark.parametrize("how", ["cancel", "pause", "stop"])
def test_cancel_pause_and_stop_end_a_wait_for_the_standby(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn, how: str) -> None:
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    job_id = submit_export(conn, "1", {}, SMALL)
    stop = threading.Event()
    thread, outcomes = _start(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.2, "wait"),
                              stop=stop, lease="15 seconds")
    time.sleep(1.0)
    assert thread.is_alive()
    if how == "stop":
        stop.set()
    else:
        conn.execute(f"SELECT pgjobs.{how}(%s)", (job_id,))
    thread.join(30)
    assert not thread.is_alive() and outcomes, "the wait did not end"
    expected = {"cancel": ("canceled", "canceled"), "pause": ("paused", "paused"),
                "stop": ("released", "queued")}[how]
    assert (outcomes[0].status, job(conn, job_id)["status"]) == expected, outcomes


def test_a_standby_paused_past_the_limit_falls_back_to_the_primary(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn, caplog: pytest.LogCaptureFixture) -> None:
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    job_id = submit_export(conn, "1", {}, SMALL)
    with caplog.at_level(logging.WARNING, logger="pgjobs.export"):
        outcome = _export(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.5, "primary"))
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert content(outcome.result) == plain_copy(conn, SELECT_1)
    reads = _reads(conn, job_id)
    assert reads["primary"] >= 5 and reads["standby"] == 0, reads
    assert "reading from the primary" in caplog.text and "replay is paused" in caplog.text


def test_a_resumed_attempt_never_reads_older_rows_than_the_attempt_before(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    # The standby has replayed the submit, then stops; an earlier attempt read
    # from the primary later on (its checkpoint holds that position): the
    # standby must reach that position before it serves the resumed attempt.
    job_id = submit_export(conn, "1", {}, SMALL)
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    add_items(conn, 5001, 20, created="now()")  # WAL the standby does not replay
    ahead = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert ahead is not None
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object('read_lsn', %s::text) "
                 "WHERE id = %s", (ahead[0], job_id))
    thread, outcomes = _start(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.3, "wait"))
    time.sleep(1.5)
    assert thread.is_alive() and job(conn, job_id)["done"] == 0
    replica.execute("SELECT pg_wal_replay_resume()")
    thread.join(60)
    assert outcomes and outcomes[0].status == "succeeded", outcomes
    assert outcomes[0].result is not None
    assert content(outcomes[0].result) == plain_copy(conn, SELECT_1)
    row = job(conn, job_id)
    assert lsn(row["checkpoint"]["read_lsn"]) >= lsn(ahead[0])
    assert row["checkpoint"]["reads"]["primary"] == 0


def test_a_standby_that_stops_replaying_mid_export_serves_no_older_than_max_lag(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    # The standby shows the job and serves the first chunks, then replays
    # nothing more (the claim already wrote WAL it has not replayed): once the
    # first sample of the primary's position is max_lag old, the standby is
    # too stale, and the rest is read from the primary.
    job_id = submit_export(conn, "1", {}, SMALL)
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.4")
    outcome = _export(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.2, "primary", max_lag=1))
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert content(outcome.result) == plain_copy(conn, SELECT_1)
    reads = _reads(conn, job_id)
    assert reads["standby"] >= 1 and reads["primary"] >= 1, reads


def test_a_chunk_canceled_by_a_recovery_conflict_is_read_again(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        standby: Standby, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a standby raises when replay needs what a query holds
    # (max_standby_streaming_delay): 40001 then 40P01, mid-COPY. The same
    # SQLSTATE on the primary is the job's error, as before.
    from pgjobs.poller import export as export_module

    real = export_module.copy_out
    failures = iter([psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected])

    def flaky(c: Conn, sql: str, sink: Any) -> int:
        if c.info.port == standby.port:
            error = next(failures, None)
            if error is not None:
                real(c, sql, sink)  # the rows went into the part: they must be rolled back
                raise error("canceling statement due to conflict with recovery")
        return real(c, sql, sink)

    monkeypatch.setattr(export_module, "copy_out", flaky)
    job_id = submit_export(conn, "1", {}, SMALL)
    outcome = _export(dsn, job_id, local_dir, ReadConfig(read_dsn, 30, "wait"))
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert content(outcome.result) == plain_copy(conn, SELECT_1)
    assert next(failures, None) is None
    assert job(conn, job_id)["attempts"] == 1

    def on_primary(c: Conn, sql: str, sink: Any) -> int:
        raise psycopg.errors.SerializationFailure("not a standby's conflict")

    monkeypatch.setattr(export_module, "copy_out", on_primary)
    job_id = submit_export(conn, "1", {}, SMALL)
    outcome = _export(dsn, job_id, local_dir, None)
    assert outcome.status in ("retrying", "failed") and "not a standby" in str(outcome.error)


@pytest.mark.parametrize("where", ["another database", "unreachable"])
def test_a_read_dsn_that_is_not_this_database_is_never_read(
        conn: Conn, dsn: str, items: None, local_dir: str, standby: Standby,
        where: str) -> None:
    if where == "another database":
        other = with_database(standby.url, "postgres")  # the same cluster, not this db
    else:
        other = make_conninfo(with_database(standby.url, "x"), port="1")  # nothing listens
    job_id = submit_export(conn, "1", {}, SMALL)
    outcome = _export(dsn, job_id, local_dir, ReadConfig(other, 0.3, "primary"))
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert content(outcome.result) == plain_copy(conn, SELECT_1)
    assert _reads(conn, job_id)["standby"] == 0
    if where == "another database":
        with pytest.raises(InvalidInput, match="not a standby of this database"):
            check_read_dsn(dsn, ReadConfig(other))
        result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "worker",
                                           "--once", "--read-dsn", other])
        assert result.exit_code == 2, result.output
        assert "not a standby of this database" in result.stderr
        assert "Traceback" not in result.output
    else:
        check_read_dsn(dsn, ReadConfig(other))  # a warning only: it may come back


def test_the_worker_reads_from_the_standby_end_to_end(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    ids = [submit_export(conn, scope, {}, SMALL) for scope in ("0", "1", "2")]
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "worker", "--once",
                                       "--poll", "0.1", "--concurrency", "2",
                                       "--read-dsn", read_dsn, "--read-fallback", "wait"])
    assert result.exit_code == 0, result.output
    assert "export reads from --read-dsn" in result.stderr
    for scope, job_id in zip(("0", "1", "2"), ids, strict=True):
        row = job(conn, job_id)
        assert row["status"] == "succeeded", row
        assert content(row["result"]) == plain_copy(
            conn, f"SELECT * FROM items WHERE tenant = {scope} AND id <= 300 ORDER BY id")
        assert row["checkpoint"]["reads"]["primary"] == 0
    # The Worker class takes the same configuration.
    job_id = submit_export(conn, "1", {}, SMALL)
    w = Worker(dsn, local_dir, once=True, poll=0.1, reads=ReadConfig(read_dsn, 30, "wait"))
    assert w.run() == 0
    assert job(conn, job_id)["checkpoint"]["reads"]["standby"] > 0


@pytest.mark.parametrize(("args", "needle"), [
    (["--read-fallback", "never"], "'never' is not one of"),
    (["--read-max-wait", "soon"], "invalid --read-max-wait"),
    (["--read-max-lag", "0s"], "invalid --read-max-lag"),
])
def test_bad_read_options_are_usage_errors(dsn: str, local_dir: str, read_dsn: str,
                                           args: list[str], needle: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "worker", "--once",
                                       "--read-dsn", read_dsn, *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output


def test_read_options_come_from_the_environment_and_show_in_help() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    for var in ("PGJOBS_READ_DSN", "PGJOBS_READ_MAX_WAIT", "PGJOBS_READ_MAX_LAG",
                "PGJOBS_READ_FALLBACK"):
        assert var in result.output
    with pytest.raises(ValueError, match="read fallback"):
        ReadConfig("host=x", fallback="sometimes")


def test_a_server_identity_is_its_database_where_pg_control_system_is_not_granted(
        dsn: str, conn: Conn) -> None:
    """db.server_identity: the cluster's system identifier and the database where
    pg_control_system() may be called; where it may not (a managed service may
    revoke it: this test's database only), the database alone."""
    role = f"no_control_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
    try:
        with db.connect(dsn) as session:
            database = str(db.scalar(session, "SELECT pg_catalog.current_database()::text"))
            system, name = db.server_identity(session)
            assert system is not None and system.isdigit() and name == database
            session.execute(f"SET ROLE {role}")
            assert db.server_identity(session) == (None, database)
    finally:
        conn.execute(f"DROP ROLE {role}")


def test_which_read_servers_count_as_this_database_and_lsn_arithmetic() -> None:
    # Another cluster is refused even with the same database name; where
    # pg_control_system() is not granted (None) the database name decides.
    assert same_server(("7311", "app"), ("7311", "app")) is None
    assert "another cluster" in str(same_server(("7311", "app"), ("9999", "app")))
    assert "database 'postgres'" in str(same_server(("7311", "app"), ("7311", "postgres")))
    assert same_server((None, "app"), ("9999", "app")) is None
    assert "database" in str(same_server(("7311", "app"), (None, "other")))
    for text in ("0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert lsn_text(lsn(text)) == text
    assert lsn("1/0") > lsn("0/FFFFFFFF") and lsn(None) == 0


def _pending_guard_export(conn: Conn) -> int:
    """An export submitted on an empty scope (its typo guard pending: the
    claim judges it), then rows of that scope."""
    job_id = submit_export(conn, "7", {"kind": {"$ne": "b"}}, SMALL)
    assert job(conn, job_id)["payload"]["unchecked_fields"] == ["kind"]
    conn.execute("INSERT INTO items (id, tenant, doc) SELECT g, 7, '{\"kind\": \"a\"}' "
                 "FROM generate_series(1001, 1010) g")
    return job_id


def test_a_standby_behind_the_claims_judgment_is_not_read_as_pending(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    # The standby has replayed the submit and the scope's rows, not the claim
    # that judged the typo guard on the primary: its chunk saw the guard
    # pending and refused (55000), the attempt failed, and with replay still
    # behind every attempt did, until the job failed. Now the chunk is read
    # again once the standby has replayed the claim (or, by --read-fallback,
    # on the primary).
    job_id = _pending_guard_export(conn)
    caught_up(conn, replica)
    replica.execute("SELECT pg_wal_replay_pause()")
    outcome = _export(dsn, job_id, local_dir, ReadConfig(read_dsn, 0.3, "primary"))
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert outcome.result["rows"] == 10
    row = job(conn, job_id)
    assert row["attempts"] == 1 and "unchecked_fields" not in row["payload"], row
    assert _reads(conn, job_id)["primary"] >= 1


def test_a_guard_still_pending_on_the_primary_still_ends_the_attempt(
        conn: Conn, dsn: str, items: None, local_dir: str, read_dsn: str,
        replica: Conn) -> None:
    # Rows that reached the scope after the claim (which found it empty):
    # the guard is pending on the primary too. The standby's refusal is read
    # again once on the primary's position, then ends the attempt (55000,
    # retried: the next claim judges), as on the primary; no loop.
    job_id = submit_export(conn, "7", {"kind": {"$ne": "b"}}, SMALL)
    worker = _claim(dsn, job_id)
    conn.execute("INSERT INTO items (id, tenant, doc) SELECT g, 7, '{\"kind\": \"a\"}' "
                 "FROM generate_series(1001, 1010) g")
    caught_up(conn, replica)
    outcome = Exporter(dsn, job_id, worker, local_dir,
                       reads=ReadConfig(read_dsn, 0.3, "primary")).run()
    assert outcome.status == "retrying" and "cannot read rows yet" in str(outcome.error), outcome
    assert job(conn, job_id)["status"] == "queued"
