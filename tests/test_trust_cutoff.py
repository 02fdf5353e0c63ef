"""The cutoff: a row whose inserting transaction commits after the submit is
never touched by the job nor hidden by its mask, however its created_at was
set (issue 9, items 2 and 3).

`DEFAULT now()` dates a row at the start of its transaction, so created_at
alone would let a transaction that began before the submit and commits after
it lose its rows. Every way a transaction can be "in progress at the submit"
is tried: no transaction ID yet, an ID from another table, the row already
written but uncommitted, a subtransaction (whose ID the snapshot functions
do not list), a prepared transaction, COPY, a backdated created_at, a
clock_timestamp() default; and for deletes, backfills and exports alike.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import (
    Target,
    job,
    make_rows_target,
    scalar,
    seed,
    snapshot,
    submit_delete,
    visible_keys,
)

Conn = psycopg.Connection[Any]
MakeConn = Callable[..., Conn]

# Each scenario: (SQL run by the writer before the submit, SQL after it). The
# writer's transaction is open across the submit and commits at the end.
# `{t}` is the target; every scenario inserts rows with n = 4242 into scope 1.
INSERT = "INSERT INTO {t} (table_id, n, label, data) VALUES (1, 4242, 'late', '{{}}')"
SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    "began_before_no_xid": (["SELECT 1"], [INSERT]),
    "xid_from_another_table": (["INSERT INTO elsewhere VALUES (1)"], [INSERT]),
    "written_before_committed_after": ([INSERT], []),
    "subtransaction_before": (["INSERT INTO elsewhere VALUES (1)", "SAVEPOINT s", INSERT,
                               "RELEASE SAVEPOINT s"], []),
    "nested_subtransactions_before": (["SAVEPOINT a", "SAVEPOINT b", INSERT, "RELEASE SAVEPOINT b",
                                       "RELEASE SAVEPOINT a"], []),
    "subtransaction_after": (["INSERT INTO elsewhere VALUES (1)"],
                             ["SAVEPOINT s", INSERT, "RELEASE SAVEPOINT s"]),
    "clock_timestamp_written_before": ([INSERT.replace("data)", "data, created_at)")
                                        .replace("'{{}}')", "'{{}}', clock_timestamp())")], []),
    "copy": (["SELECT 1"], ["COPY"]),
}


def _make(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 300)
    conn.execute("CREATE TABLE elsewhere (x int)")
    return t


def _run_writer(writer: Conn, statements: list[str], t: Target) -> None:
    for statement in statements:
        if statement == "COPY":
            with writer.cursor().copy(
                    f"COPY {t.name} (table_id, n, label, data) FROM STDIN") as copy:
                copy.write_row((1, 4242, "late", "{}"))
        else:
            writer.execute(statement.format(t=t.name))  # type: ignore[arg-type]


def _late_keys(conn: Conn, t: Target) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT id::text FROM {t.name} WHERE n = 4242")}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rows_of_a_transaction_committing_after_the_submit_are_never_touched(
        conn: Conn, make_conn: MakeConn, scenario: str) -> None:
    t = _make(conn)
    before, after = SCENARIOS[scenario]
    writer = make_conn(autocommit=False)
    _run_writer(writer, before, t)
    old = {k for k, r in snapshot(conn, t).items() if r["table_id"] == "1"
           and r["n"] != 4242}
    # A transaction that completes now moves the snapshot's xmax past every
    # ID the writer holds: they must be found as in progress, not as later.
    conn.execute("INSERT INTO elsewhere VALUES (0)")
    job_id = submit_delete(conn, t, "1")
    _run_writer(writer, after, t)
    writer.commit()
    late = _late_keys(conn, t)
    assert len(late) == 1

    # The mask does not hide it: reads mid-job show it, and only it... plus
    # the rows created after the cutoff by the seed (every 23rd: future dated).
    future = {k for k, r in snapshot(conn, t).items()
              if r["table_id"] == "1" and r["n"] != 4242
              and r["created_at"] > job(conn, job_id)["cutoff"]}
    assert set(visible_keys(conn, t, "1", limit=500)) == late | future
    assert scalar(conn, "SELECT pgjobs.visible_count(%s, '1')", (t.name,)) == len(late | future)
    mask = scalar(conn, "SELECT pgjobs.mask(%s, '1')", (t.name,))
    assert "%" not in mask  # spliced into queries of drivers with %s placeholders
    masked = {r[0] for r in conn.execute(
        f"SELECT id::text FROM {t.name} WHERE table_id = 1 AND {mask}")}  # type: ignore[str-format]
    assert masked == late | future

    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["done"] == len(old - future)
    remaining = {k for k, r in snapshot(conn, t).items() if r["table_id"] == "1"}
    assert remaining == late | future


def test_a_prepared_transaction_committed_after_the_submit_keeps_its_rows(
        conn: Conn, make_conn: MakeConn) -> None:
    t = _make(conn)
    writer = make_conn(autocommit=False)
    writer.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
    writer.execute("PREPARE TRANSACTION 'pgjobs-test-2pc'")
    writer.commit()  # psycopg: leave the (now empty) transaction block
    job_id = submit_delete(conn, t, "1")
    conn.execute("COMMIT PREPARED 'pgjobs-test-2pc'")
    late = _late_keys(conn, t)
    assert late and late <= set(visible_keys(conn, t, "1", limit=500))
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"
    assert late <= {k for k, r in snapshot(conn, t).items() if r["table_id"] == "1"}


def test_clock_timestamp_default_written_before_the_submit_committed_after(
        conn: Conn, make_conn: MakeConn) -> None:
    conn.execute("""
        CREATE TABLE clocked (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                              scope int NOT NULL,
                              created_at timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE INDEX ON clocked (scope, id);
        INSERT INTO clocked (scope) SELECT 1 FROM generate_series(1, 50);
        SELECT pgjobs.register_target('clocked', 'id', 'scope', 'created_at');
    """)
    writer = make_conn(autocommit=False)
    writer.execute("INSERT INTO clocked (scope) VALUES (1) RETURNING id")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('clocked', '1')")
    writer.commit()
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["done"] == 50
    assert scalar(conn, "SELECT count(*) FROM clocked") == 1


def test_an_open_transaction_does_not_spare_rows_committed_before_the_submit(
        conn: Conn, make_conn: MakeConn) -> None:
    """The other direction: rows that existed at the submit are deleted even
    while unrelated transactions (with and without IDs, subtransactions) stay
    open across the whole job."""
    t = _make(conn)
    idle = make_conn(autocommit=False)
    idle.execute("INSERT INTO elsewhere VALUES (1)")
    idle.execute("SAVEPOINT s")
    idle.execute("INSERT INTO elsewhere VALUES (2)")
    reader = make_conn(autocommit=False)
    reader.execute("SELECT 1")
    cutoff_rows = {k for k, r in snapshot(conn, t).items() if r["table_id"] == "1"}
    job_id = submit_delete(conn, t, "1")
    cutoff = job(conn, job_id)["cutoff"]
    doomed = {k for k, r in snapshot(conn, t).items()
              if r["table_id"] == "1" and r["created_at"] <= cutoff}
    assert doomed and doomed < cutoff_rows
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["done"] == len(doomed)
    assert not doomed & set(snapshot(conn, t))
    idle.rollback()
    reader.rollback()


def test_rows_updated_after_the_submit_are_still_the_jobs(
        conn: Conn, make_conn: MakeConn, dsn: str, tmp_path: Any) -> None:
    """A row that existed at the submit stays the job's however often it is
    updated afterwards (an update must not drop a row from an export or a
    backfill, nor save it from a delete); only its values at its page count."""
    t = _make(conn)
    other = make_conn()
    first = scalar(conn, f"SELECT min(id)::text FROM {t.name} WHERE table_id = 1")  # type: ignore[str-format]
    second = scalar(conn, f"SELECT max(id)::text FROM {t.name} WHERE table_id = 1 "  # type: ignore[str-format]
                          "AND created_at < now()")
    destination = f"file://{tmp_path}/exports"
    conn.execute("SELECT pgjobs.allow_storage(%s)", (destination,))
    export = scalar(conn, "SELECT pgjobs.submit_export(%s, '1', '{}', %s)",
                    (t.name, json.dumps({"format": "jsonl", "destination": destination})))
    backfill = scalar(conn, "SELECT pgjobs.submit_backfill(%s, '1', '{}', %s)",
                      (t.name, json.dumps({"label": "filled"})))
    delete = submit_delete(conn, t, "1", {"label": "filled"})
    for key in (first, second):
        other.execute(f"UPDATE {t.name} SET n = n + 1000 WHERE id = %s::bigint",  # type: ignore[str-format]
                      (key,))
    existing = scalar(conn, f"SELECT count(*) FROM {t.name} WHERE table_id = 1 "  # type: ignore[str-format]
                            "AND created_at <= (SELECT cutoff FROM pgjobs.jobs WHERE id = %s)",
                      (export,))
    from pgjobs.poller.worker import Worker
    Worker(dsn, destination, once=True, poll=0.1).run()
    result = job(conn, export)["result"]
    assert job(conn, export)["status"] == "succeeded" and result["rows"] == existing
    conn.execute("CALL pgjobs.run_job(%s)", (backfill,))
    assert job(conn, backfill)["done"] == existing
    conn.execute("CALL pgjobs.run_job(%s)", (delete,))
    assert job(conn, delete)["done"] == existing
    assert not {first, second} & set(snapshot(conn, t))


@pytest.mark.parametrize("traffic", [True, False])
def test_rows_of_the_submitting_transaction_itself_are_the_jobs(
        conn: Conn, make_conn: MakeConn, traffic: bool) -> None:
    """Written at its top level before or after the submit, whatever other
    transactions commit meanwhile: always the job's (deterministic)."""
    t = _make(conn)
    submitter = make_conn(autocommit=False)
    submitter.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
    if traffic:
        conn.execute("INSERT INTO elsewhere VALUES (0)")  # xmax moves past the submitter's ID
    job_id = submit_delete(submitter, t, "1")
    submitter.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
    submitter.commit()
    assert len(_late_keys(conn, t)) == 2
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert _late_keys(conn, t) == set()


def test_backfill_and_export_use_the_same_cutoff(conn: Conn, make_conn: MakeConn) -> None:
    t = _make(conn)
    writer = make_conn(autocommit=False)
    writer.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
    backfill = scalar(conn, "SELECT pgjobs.submit_backfill(%s, '1', '{}', %s)",
                      (t.name, json.dumps({"label": "filled"})))
    export = scalar(conn, "SELECT pgjobs.submit_export(%s, '1')", (t.name,))
    writer.commit()
    conn.execute("CALL pgjobs.run_job(%s)", (backfill,))
    assert scalar(conn, f"SELECT label FROM {t.name} WHERE n = 4242") == "late"  # type: ignore[str-format]
    assert scalar(conn, f"SELECT count(*) FROM {t.name} WHERE label = 'filled'") == job(  # type: ignore[str-format]
        conn, backfill)["done"] > 0
    predicate = job(conn, export)["predicate"]
    assert scalar(conn, f"SELECT count(*) FROM {t.name} WHERE n = 4242 AND {predicate}") == 0  # type: ignore[str-format]


def test_null_created_at_rows_that_existed_are_deleted_new_ones_kept(
        conn: Conn, make_conn: MakeConn) -> None:
    conn.execute("""
        CREATE TABLE loose (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            scope int NOT NULL, created_at timestamptz);
        CREATE INDEX ON loose (scope, id);
        INSERT INTO loose (scope, created_at) SELECT 1, NULL FROM generate_series(1, 30);
        INSERT INTO loose (scope, created_at) SELECT 1, now() FROM generate_series(1, 30);
        SELECT pgjobs.register_target('loose', 'id', 'scope', 'created_at');
    """)
    writer = make_conn(autocommit=False)
    writer.execute("INSERT INTO loose (scope, created_at) VALUES (1, NULL)")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('loose', '1')")
    writer.commit()
    assert scalar(conn, "SELECT pgjobs.visible_count('loose', '1')") == 1
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["done"] == 60
    assert scalar(conn, "SELECT count(*) FROM loose") == 1


# --- timestamp without time zone (item 3) -------------------------------------------


# created_at types holding a timestamp without time zone: a domain is judged by
# its base type, however deep.
LOCAL_TYPES = {
    "timestamp": "",
    "domain": "CREATE DOMAIN local_ts AS timestamp;",
    "domain-of-domain": "CREATE DOMAIN local_ts0 AS timestamp; "
                        "CREATE DOMAIN local_ts AS local_ts0 CHECK (VALUE > '2000-01-01');",
}


def _make_local(conn: Conn, options: dict[str, Any] | None = None,
                kind: str = "timestamp") -> None:
    conn.execute(LOCAL_TYPES[kind])  # type: ignore[arg-type]
    column_type = "timestamp" if kind == "timestamp" else "local_ts"
    conn.execute(f"""
        CREATE TABLE local_rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                 scope int NOT NULL,
                                 created_at {column_type} NOT NULL
                                     DEFAULT (now() AT TIME ZONE 'UTC'));
        CREATE INDEX ON local_rows (scope, id);
    """)  # type: ignore[arg-type]
    conn.execute("SELECT pgjobs.register_target('local_rows', 'id', 'scope', 'created_at', "
                 "NULL, %s)", (json.dumps(options or {}),))


@pytest.mark.parametrize("kind", list(LOCAL_TYPES))
@pytest.mark.parametrize("submitter_zone", ["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])
def test_timestamp_created_at_is_read_in_utc_whatever_the_submitter_zone(
        conn: Conn, make_conn: MakeConn, submitter_zone: str, kind: str) -> None:
    _make_local(conn, kind=kind)
    # A UTC writer; rows from 2 hours ago to now (UTC wall clock).
    conn.execute("INSERT INTO local_rows (scope, created_at) SELECT 1, (now() AT TIME ZONE 'UTC')"
                 " - g * interval '1 minute' FROM generate_series(0, 120) g")
    submitter = make_conn()
    submitter.execute(f"SET TimeZone = '{submitter_zone}'")  # type: ignore[arg-type]
    job_id = scalar(submitter, "SELECT pgjobs.submit_delete('local_rows', '1')")
    predicate = job(conn, job_id)["predicate"]
    utc_cutoff = scalar(conn, "SELECT to_char(cutoff AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM pgjobs.jobs WHERE id = %s",
                        (job_id,))
    assert f"'{utc_cutoff}'::pg_catalog.timestamp" in predicate
    # A UTC writer inserts after the submit: spared; every earlier row goes.
    conn.execute("INSERT INTO local_rows (scope) VALUES (1)")
    runner = make_conn()
    runner.execute("SET TimeZone = 'Asia/Kathmandu'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["done"] == 121
    assert scalar(conn, "SELECT count(*) FROM local_rows") == 1


def test_timestamp_created_at_in_a_registered_zone(conn: Conn, make_conn: MakeConn) -> None:
    _make_local(conn, {"created_at_time_zone": "America/New_York"})
    # Writers in New York write New York wall-clock time.
    conn.execute("INSERT INTO local_rows (scope, created_at) SELECT 1, "
                 "(now() AT TIME ZONE 'America/New_York') - g * interval '1 minute' "
                 "FROM generate_series(0, 30) g")
    conn.execute("INSERT INTO local_rows (scope, created_at) "
                 "VALUES (1, (now() AT TIME ZONE 'America/New_York') + interval '1 minute')")
    submitter = make_conn()
    submitter.execute("SET TimeZone = 'UTC'")
    job_id = scalar(submitter, "SELECT pgjobs.submit_delete('local_rows', '1')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["done"] == 31
    assert scalar(conn, "SELECT count(*) FROM local_rows") == 1
    options = scalar(conn, "SELECT options FROM pgjobs.targets "
                           "WHERE target = 'local_rows'::regclass")
    assert options["created_at_time_zone"] == "America/New_York"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", 7, None])
def test_a_bad_created_at_time_zone_is_refused(conn: Conn, zone: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        _make_local(conn, {"created_at_time_zone": zone})
    assert err.value.diag.message_hint and "pg_timezone_names" in err.value.diag.message_hint


# --- when the running transactions cannot be placed -----------------------------------


def test_a_repeatable_read_submit_after_a_running_transaction_ended_is_refused(
        conn: Conn, make_conn: MakeConn) -> None:
    t = _make(conn)
    writer = make_conn(autocommit=False)
    writer.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
    conn.execute("INSERT INTO elsewhere VALUES (0)")  # xmax moves past the writer's ID
    submitter = make_conn(autocommit=False)
    submitter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    submitter.execute("SELECT 1")  # the transaction's snapshot: the writer is running
    writer.commit()
    with pytest.raises(psycopg.errors.SerializationFailure) as err:
        submitter.execute("SELECT pgjobs.submit_delete(%s, '1')", (t.name,))
    assert "READ COMMITTED" in (err.value.diag.message_hint or "")
    submitter.rollback()
    # Nothing ended in between: a REPEATABLE READ submit works. Transaction
    # IDs are the cluster's: a transaction of any database (pg_cron's, another
    # test's) ending between the statement's snapshot and the look refuses it
    # too (found with PGJOBS_TEST_NOISE=xids), and the client submits again,
    # as the hint says.
    for _attempt in range(50):
        submitter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        try:
            job_id = scalar(submitter, "SELECT pgjobs.submit_delete(%s, '1')", (t.name,))
        except psycopg.errors.SerializationFailure:
            submitter.rollback()
            continue
        submitter.commit()
        break
    else:
        pytest.fail("50 REPEATABLE READ submits in a row refused with 40001")
    assert job(conn, job_id)["status"] == "queued"


def test_a_transaction_holding_back_too_many_ids_is_named_in_the_error(
        conn: Conn, make_conn: MakeConn) -> None:
    t = _make(conn)
    old = make_conn(autocommit=False)
    old.execute("INSERT INTO elsewhere VALUES (1)")
    old_pid = scalar(old, "SELECT pg_backend_pid()")
    # 100,001 transaction IDs (subtransactions) used and committed meanwhile.
    conn.execute("""
        DO $$ BEGIN
            FOR i IN 1..100001 LOOP
                BEGIN INSERT INTO elsewhere VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;
            END LOOP;
        END $$""")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        submit_delete(conn, t, "1")
    assert f"pid {old_pid}" in (err.value.diag.message_hint or "")
    old.rollback()
    assert submit_delete(conn, t, "1") > 0


def test_a_transaction_running_at_the_submit_never_has_its_rows_taken(
        conn: Conn, make_conn: MakeConn) -> None:
    """A writer's transactions (each a few milliseconds, dated at their
    start) commit all through 2,000 submits. A row whose inserting
    transaction the submit found running (its xmin is in the predicate's own
    running list) is never the job's: the horizon was read after the look,
    and a transaction that committed in between dated its rows before a
    horizon that no longer counted it (5 of 1,500 submits took such a row)."""
    t = _make(conn)
    writer = make_conn(autocommit=False)
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            writer.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
            time.sleep(rng.uniform(0.0, 0.008))
            writer.commit()

    thread = threading.Thread(target=write)
    thread.start()
    taken = []
    try:
        for _ in range(2000):
            job_id = scalar(conn, "SELECT pgjobs.submit_delete(%s, '1')", (t.name,))
            predicate = scalar(conn, "SELECT predicate FROM pgjobs.jobs WHERE id = %s",
                               (job_id,))
            running = re.search(r"ANY \('(\{[^']*\})'::pg_catalog\.xid\[\]\)", predicate)
            if running:
                count = scalar(conn, f"SELECT count(*) FROM {t.name} WHERE ({predicate})"
                                     " AND xmin::text = ANY (%s::text[])", (running.group(1),))
                if count:
                    taken.append((job_id, count))
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    finally:
        stop.set()
        thread.join()
    assert taken == []


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_a_repeatable_read_submit_spares_a_transaction_that_ended_after_its_snapshot(
        conn: Conn, make_conn: MakeConn, isolation: str, kind: str) -> None:
    """A REPEATABLE READ submit's snapshot is its transaction's, taken before
    pgjobs.submit_* reads the horizon. A transaction running at that snapshot
    with no transaction ID yet (so not in the snapshot's running list, nor in
    the look's) that wrote and committed before the submit call was no longer
    counted in the horizon: its rows, dated at its start, were older than the
    horizon and the job's by (b), although the submit's snapshot never saw
    them. (With an ID at the snapshot the same writer gets 40001, below.)"""
    t = _make(conn)
    writer = make_conn(autocommit=False)
    submitter = make_conn(autocommit=False)
    submits = {
        "delete": "SELECT pgjobs.submit_delete(%s, '1')",
        "backfill": "SELECT pgjobs.submit_backfill(%s, '1', '{}', '{\"label\": \"changed\"}')",
        "export": "SELECT pgjobs.submit_export(%s, '1')",
    }
    # A transaction of any database ending between the snapshot and the look
    # refuses the submit (40001, the test above): the scenario is played
    # again then, its row removed, as a client submits again.
    for _attempt in range(50):
        writer.execute("SELECT 1")  # running, dated now, no transaction ID
        submitter.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        submitter.execute("SELECT 1")  # the transaction's snapshot: the writer is running
        writer.execute(INSERT.format(t=t.name))  # type: ignore[arg-type]
        writer.commit()
        assert scalar(submitter, f"SELECT count(*) FROM {t.name} WHERE n = 4242") == 0  # type: ignore[str-format]
        try:
            job_id = scalar(submitter, submits[kind], (t.name,))
        except psycopg.errors.SerializationFailure:
            submitter.rollback()
            conn.execute(f"DELETE FROM {t.name} WHERE n = 4242")  # type: ignore[str-format]
            continue
        submitter.commit()
        break
    else:
        pytest.fail("50 REPEATABLE READ submits in a row refused with 40001")
    late = _late_keys(conn, t)
    assert len(late) == 1
    predicate = job(conn, job_id)["predicate"]
    assert scalar(conn, f"SELECT count(*) FROM {t.name} WHERE n = 4242 AND {predicate}") == 0  # type: ignore[str-format]
    if kind == "delete":
        mask = scalar(conn, "SELECT pgjobs.mask(%s, '1')", (t.name,))
        assert late <= {r[0] for r in conn.execute(
            f"SELECT id::text FROM {t.name} WHERE table_id = 1 AND {mask}")}  # type: ignore[str-format]
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        assert _late_keys(conn, t) == late


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_writer_that_turned_track_activities_off_keeps_its_rows(
        conn: Conn, make_conn: MakeConn, scenario: str) -> None:
    """A session that turned track_activities off (a superuser's SET, or one
    granted SET on it) shows state 'disabled' and no xact_start in
    pg_stat_activity: the horizon, the oldest xact_start, did not count its
    transaction, and rows it wrote before the submit (dated at its start,
    older than that horizon) were the job's by (b) although it committed
    after the submit. The horizon is -infinity then, as for a hidden one."""
    t = _make(conn)
    before, after = SCENARIOS[scenario]
    writer = make_conn(autocommit=False)
    writer.execute("SET track_activities = off")
    writer.commit()
    _run_writer(writer, before, t)
    conn.execute("INSERT INTO elsewhere VALUES (0)")
    job_id = submit_delete(conn, t, "1")
    _run_writer(writer, after, t)
    writer.commit()
    late = _late_keys(conn, t)
    assert len(late) == 1
    predicate = job(conn, job_id)["predicate"]
    assert scalar(conn, f"SELECT count(*) FROM {t.name} WHERE n = 4242 AND {predicate}") == 0  # type: ignore[str-format]
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"
    assert _late_keys(conn, t) == late
