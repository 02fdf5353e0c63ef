"""A job acts on the columns it was submitted against (lead's review, round 31).

A job is compiled at its submit: its predicate names the scope, created_at and
filter columns, a backfill's SET list and an export's column list name columns,
an import maps its fields onto columns. All by name. A column renamed (and
another given its old name), dropped and added again, or retyped while the job
was pending made it act on other columns: a whole-tenant delete of tenant 1,
after `tenant` was renamed away and `region` renamed to `tenant`, ended
`succeeded` having deleted region 1's rows, of every tenant. Now a job records
its target's columns at submit (pgjobs.jobs.target_columns, migration 0036) and
every page, export chunk and import batch compares them under a lock that holds
them to its commit: a job whose columns changed fails for good, naming the
change, before it touches a row. A column added since changes nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    claim_import,
    job,
    make_people,
    run_export,
    scalar,
    submit_import,
    who,
)

Conn = psycopg.Connection[Any]

KINDS = ["delete", "backfill", "export", "import"]

# Each change, as DDL, and what the job's error says of it.
CHANGES = {
    # The scope column swapped with another: the predicate's `tenant = 1` would
    # test region.
    "scope_swapped": ("ALTER TABLE people RENAME COLUMN tenant TO tenant_old; "
                      "ALTER TABLE people RENAME COLUMN region TO tenant",
                      "column tenant of public.people was renamed to tenant_old"),
    # A written or exported column dropped and added again under its name.
    "name_recreated": ("ALTER TABLE people DROP COLUMN name; "
                       "ALTER TABLE people ADD COLUMN name text DEFAULT 'recreated'",
                       "column name of public.people was dropped"),
    # A column retyped.
    "age_retyped": ("ALTER TABLE people ALTER COLUMN age TYPE bigint",
                    "column age of public.people changed type from integer to bigint"),
    # The created_at column swapped with another timestamptz column.
    "created_at_swapped": ("ALTER TABLE people RENAME COLUMN created_at TO created_old; "
                           "ALTER TABLE people RENAME COLUMN seen_at TO created_at",
                           "column created_at of public.people was renamed to created_old"),
}


@pytest.fixture
def people(conn: Conn) -> None:
    """`people` with a `region` beside `tenant` that differs from it, and a
    `seen_at` in the future, where created_at is in the past."""
    make_people(conn)
    conn.execute("ALTER TABLE people ADD COLUMN region integer NOT NULL DEFAULT 0, "
                 "ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now() + interval '1 day'")
    conn.execute("INSERT INTO people (tenant, region, name, age, created_at) "
                 "SELECT i % 3, (i + 1) % 3, 'p' || i, i, now() - interval '1 hour' "
                 "FROM generate_series(1, 30) i")


def snapshot(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT to_jsonb(p) - 'name' FROM people p ORDER BY id").fetchall()


def submit(conn: Conn, kind: str, src: Path) -> int:
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', %s::jsonb)",
                          (json.dumps({"age": {"$gte": 0}}),)))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                          (json.dumps({"age": 7}),)))
    if kind == "export":
        return int(scalar(conn, "SELECT pgjobs.submit_export('people', '1', '{}', %s::jsonb)",
                          (json.dumps({"columns": ["id", "name", "age"]}),)))
    path = src / "in.csv"
    path.write_bytes(b"name,age\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(50)))
    return submit_import(conn, f"file://{path}")


def run(conn: Conn, dsn: str, kind: str, job_id: int, src: Path) -> None:
    if kind in ("delete", "backfill"):
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    elif kind == "export":
        run_export(dsn, job_id, f"file://{src}/store")
    else:
        Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_column_changed_under_a_pending_job_fails_it_before_it_touches_a_row(
        conn: Conn, dsn: str, people: None, tmp_path: Path, kind: str, change: str) -> None:
    """Before: the delete and the backfill ended succeeded on other rows or
    columns (scope_swapped: region 1's rows), the export wrote other rows or
    values, the import put its values into the new columns."""
    src = allowed_folder(conn, tmp_path)
    job_id = submit(conn, kind, src)
    ddl, said = CHANGES[change]
    conn.execute(ddl)
    before = snapshot(conn)
    run(conn, dsn, kind, job_id, src)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert said in row["error"] and f"since job {job_id} was submitted" in row["error"], \
        row["error"]
    assert row["attempts"] == 1, row  # for good: every attempt would find the same
    assert snapshot(conn) == before
    if kind == "export":
        assert not [p for p in (src / "store").rglob("*") if p.is_file()] \
            if (src / "store").exists() else True


@pytest.mark.parametrize("kind", KINDS)
def test_a_column_added_under_a_pending_job_changes_nothing(
        conn: Conn, dsn: str, people: None, tmp_path: Path, kind: str) -> None:
    src = allowed_folder(conn, tmp_path)
    job_id = submit(conn, kind, src)
    conn.execute("ALTER TABLE people ADD COLUMN note text")
    run(conn, dsn, kind, job_id, src)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["target_columns"] is not None


def test_a_delete_stops_at_the_page_after_the_change(
        conn: Conn, people: None, make_conn: Callable[..., Conn]) -> None:
    """Mid-job: pages committed before the rename stay, the page after it fails
    the job, and no row of another tenant goes."""
    conn.execute("INSERT INTO people (tenant, region, name, created_at) "
                 "SELECT 1, 2, 'q' || i, now() - interval '1 hour' "
                 "FROM generate_series(1, 3000) i")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}', '{}', "
                              "'{\"page_size\": 100}')"))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    worker = who(conn, job_id, "w")
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "more"
    first = scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,))
    others = scalar(conn, "SELECT count(*) FROM people WHERE tenant <> 1")
    conn.execute(CHANGES["scope_swapped"][0])
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and "renamed to tenant_old" in row["error"]
    assert row["done"] == first
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant_old <> 1") == others


def test_a_rename_waits_for_the_page_that_checked_the_columns(
        conn: Conn, people: None, make_conn: Callable[..., Conn]) -> None:
    """The check holds the table to the page's commit: a rename issued after it
    waits (here: times out), so the page's statements resolve the columns the
    check compared."""
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
    pager = make_conn(autocommit=False)
    pager.execute("SELECT pgjobs._columns_changed('people'::regclass, "
                  "(SELECT target_columns FROM pgjobs.jobs WHERE id = %s))", (job_id,))
    pager.execute("SELECT pgjobs._hold_target('people'::regclass)")
    other = make_conn()
    other.execute("SET lock_timeout = '200ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        other.execute("ALTER TABLE people RENAME COLUMN name TO name_old")
    pager.rollback()
    other.execute("ALTER TABLE people RENAME COLUMN name TO name_old")  # free again


def test_jobs_of_the_previous_release_have_no_columns_and_run_as_before(
        conn: Conn, people: None) -> None:
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
    conn.execute("UPDATE pgjobs.jobs SET target_columns = NULL WHERE id = %s", (job_id,))
    conn.execute("ALTER TABLE people ALTER COLUMN age TYPE bigint")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == 0


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("filtered", [False, True])
def test_reads_stop_hiding_rows_for_a_delete_whose_columns_changed(
        conn: Conn, people: None, change: str, filtered: bool) -> None:
    """The read mask applies a pending delete's predicate to reads: after the
    change it named other columns (scope_swapped: it hid region 1's rows from
    tenant 1's reads). Such a delete deletes nothing more (its next page fails
    it), so it hides nothing: reads show every row of the scope."""
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', %s::jsonb)",
                        (json.dumps({"age": {"$gte": 0}} if filtered else {}),)))
    assert scalar(conn, "SELECT pgjobs.visible_count('people', '1')") == 0
    conn.execute(CHANGES[change][0])
    rows = scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1")
    assert rows > 0
    assert scalar(conn, "SELECT pgjobs.visible_count('people', '1')") == rows
    assert len(conn.execute("SELECT * FROM pgjobs.visible('people', '1', '{}', NULL, 1000)")
               .fetchall()) == rows
    assert scalar(conn, "SELECT pgjobs.mask('people', '1')") == "true"
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == rows


@pytest.mark.parametrize("verb", ["retry", "resume"])
def test_a_job_whose_columns_changed_is_not_queued_again(conn: Conn, people: None,
                                                         verb: str) -> None:
    """Retried or resumed, it would fail at its first page again: refused, with
    the change named, and left as it was."""
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
    if verb == "resume":
        conn.execute("SELECT pgjobs.pause(%s)", (job_id,))
    else:
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    status = job(conn, job_id)["status"]
    conn.execute(CHANGES["scope_swapped"][0])
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        conn.execute(f"SELECT pgjobs.{verb}(%s)", (job_id,))
    assert "renamed to tenant_old since it was submitted" in str(err.value)
    assert "submit it again" in (err.value.diag.message_hint or "")
    assert job(conn, job_id)["status"] == status


def test_a_column_changed_while_a_job_is_compiled_fails_the_submit(
        conn: Conn, people: None) -> None:
    """A submit notes the columns before it compiles the job and compares them
    with those it records: changed in between (here: in the same transaction,
    between the note and the insert), the submit fails (40001) instead of
    recording columns the job was not compiled against. A submit does not
    lock the table: it goes through while another transaction holds it."""
    conn.execute("BEGIN")
    reg = conn.execute("SELECT pgjobs._target('people')").fetchone()
    conn.execute("SELECT pgjobs._compiling_against('people')")
    conn.execute(CHANGES["scope_swapped"][0])
    with pytest.raises(psycopg.errors.SerializationFailure) as err:
        conn.execute("SELECT pgjobs._insert_job_row('delete', 'people', '1', '{}', '{}', "
                     "'{}', 'true', NULL, %s)", reg)
    assert "changed while the job was being submitted" in str(err.value)
    conn.execute("ROLLBACK")


def test_a_submit_does_not_wait_for_a_lock_on_the_table(
        conn: Conn, people: None, make_conn: Callable[..., Conn]) -> None:
    locker = make_conn()
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE people IN ACCESS EXCLUSIVE MODE")
    conn.execute("SET lock_timeout = '2s'")
    try:
        assert scalar(conn, "SELECT pgjobs.submit_delete('people', '1')") is not None
    finally:
        locker.execute("ROLLBACK")


def _waiting_for_a_lock(conn: Conn, pid: int) -> None:
    for _ in range(3000):
        if scalar(conn, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                  (pid,)) == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


# A check that waited for the table's lock behind an ALTER TABLE, in a
# snapshot taken before the ALTER committed: an export chunk (its REPEATABLE
# READ transaction), an import batch's check (a STABLE function reads with its
# calling statement's snapshot) and a page run in REPEATABLE READ.
WAITERS = {
    "export_chunk": ("REPEATABLE READ",
                     "SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 1000)"),
    "import_check": ("READ COMMITTED",
                     "SELECT pgjobs._require_same_columns(j) FROM pgjobs.jobs j WHERE j.id = %s"),
    "page": ("REPEATABLE READ", "SELECT pgjobs._run_page(%s, %s)"),
}


@pytest.mark.parametrize("change", ["scope_swapped", "name_recreated"])
@pytest.mark.parametrize("waiter", sorted(WAITERS))
def test_a_check_that_waited_behind_the_change_does_not_pass_on_an_old_snapshot(
        conn: Conn, people: None, make_conn: Callable[..., Conn], waiter: str,
        change: str) -> None:
    """Before: the chunk, batch or page waited for the ALTER TABLE's lock, then
    compared the columns as its snapshot (older than the ALTER's commit) still
    showed them, found no change, and ran statements that resolved the new
    columns: a chunk behind the tenant/region swap exported region 1's rows as
    tenant 1's. Now it raises 40001 (retried: the next transaction sees the
    change and fails the job for good), and nothing is read or written."""
    isolation, sql = WAITERS[waiter]
    if waiter == "export_chunk":
        job_id = int(scalar(conn, "SELECT pgjobs.submit_export('people', '1', '{}', %s::jsonb)",
                            (json.dumps({"columns": ["id", "tenant", "name"]}),)))
        params: tuple[Any, ...] = (job_id,)
    elif waiter == "import_check":
        job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
        params = (job_id,)
    else:
        job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
        conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
        params = (job_id, who(conn, job_id, "w"))
    before = scalar(conn, "SELECT count(*) FROM people")
    alter = make_conn()
    alter.execute("BEGIN")
    alter.execute(CHANGES[change][0])
    checker = make_conn(autocommit=False)
    checker.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    outcome: dict[str, Any] = {}

    def check() -> None:
        try:
            outcome["result"] = checker.execute(sql, params).fetchone()
            checker.commit()
        except psycopg.Error as exc:
            outcome["error"] = exc
            checker.rollback()

    thread = threading.Thread(target=check)
    thread.start()
    try:
        _waiting_for_a_lock(conn, checker.info.backend_pid)
    finally:
        alter.execute("COMMIT")
        thread.join()
    assert isinstance(outcome.get("error"), psycopg.errors.SerializationFailure), outcome
    assert "changed after this transaction's snapshot" in str(outcome["error"])
    assert scalar(conn, "SELECT count(*) FROM people") == before
    # Anew, the check sees the change (a page fails the job for good).
    with pytest.raises(psycopg.errors.UndefinedColumn):
        if waiter == "page":
            assert scalar(conn, sql, params) == "failed"
            raise psycopg.errors.UndefinedColumn(job(conn, job_id)["error"])
        conn.execute(sql, params)


# A column of an enum type, or of an array of it: the filter names a value by
# its label, which every page reads again.
ENUM_COLUMNS = {
    "enum": "mood",
    "enum_array": "mood[]",
}


@pytest.fixture
def moods(conn: Conn, people: None) -> None:
    conn.execute("CREATE TYPE mood AS ENUM ('calm', 'angry')")


@pytest.mark.parametrize("reads", [False, True])
@pytest.mark.parametrize("column", sorted(ENUM_COLUMNS))
def test_enum_labels_swapped_under_a_pending_delete_fail_it(
        conn: Conn, moods: None, column: str, reads: bool) -> None:
    """Before: after 'angry' was renamed to 'x' and 'calm' to 'angry', the
    delete of tenant 1's angry rows deleted its calm ones and ended
    succeeded (shown with two connections' worth of DDL, no lock involved:
    ALTER TYPE ... RENAME VALUE takes none on the table), and reads hid the
    calm rows meanwhile. Now the recorded labels
    (by the values' oids) differ: the job fails for good, naming the value,
    and reads stop hiding rows for it."""
    array = column == "enum_array"
    calm, angry = ("'{calm}'", "'{angry}'") if array else ("'calm'", "'angry'")
    conn.execute(f"ALTER TABLE people ADD COLUMN m {ENUM_COLUMNS[column]} NOT NULL "
                 f"DEFAULT {calm}")
    conn.execute(f"UPDATE people SET m = {angry} WHERE id % 2 = 0")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', %s::jsonb)",
                        (json.dumps({"m": "{angry}" if array else "angry"}),)))
    conn.execute("ALTER TYPE mood RENAME VALUE 'angry' TO 'x'")
    conn.execute("ALTER TYPE mood RENAME VALUE 'calm' TO 'angry'")
    rows = scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1")
    if reads:
        assert scalar(conn, "SELECT pgjobs.visible_count('people', '1')") == rows
        assert scalar(conn, "SELECT pgjobs.mask('people', '1')") == "true"
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "value 'calm' of type public.mood of column m of public.people was renamed to " \
        "'angry'" in row["error"], row["error"]
    assert row["attempts"] == 1
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == rows
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))


def test_an_enum_value_added_under_a_pending_delete_changes_nothing(
        conn: Conn, moods: None) -> None:
    conn.execute("ALTER TABLE people ADD COLUMN m mood NOT NULL DEFAULT 'calm'")
    conn.execute("UPDATE people SET m = 'angry' WHERE id % 2 = 0")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', %s::jsonb)",
                        (json.dumps({"m": "angry"}),)))
    conn.execute("ALTER TYPE mood ADD VALUE 'sad'")
    assert scalar(conn, "SELECT pgjobs.mask('people', '1')") != "true"
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1 AND m = 'angry'") == 0
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1 AND m = 'calm'") > 0


@pytest.mark.parametrize("waiter", sorted(WAITERS))
def test_a_check_that_waited_behind_a_rolled_back_change_goes_on(
        conn: Conn, people: None, make_conn: Callable[..., Conn], waiter: str) -> None:
    """The ALTER TABLE it waited for rolled back: its column rows keep the
    aborted transaction's xmax, which is no change; the chunk, batch check
    or page goes on."""
    isolation, sql = WAITERS[waiter]
    if waiter == "export_chunk":
        job_id = int(scalar(conn, "SELECT pgjobs.submit_export('people', '1', '{}', %s::jsonb)",
                            (json.dumps({"columns": ["id", "tenant", "name"]}),)))
        params: tuple[Any, ...] = (job_id,)
    else:
        job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')"))
        params = (job_id,)
        if waiter == "page":
            conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
            params = (job_id, who(conn, job_id, "w"))
    alter = make_conn()
    alter.execute("BEGIN")
    alter.execute(CHANGES["scope_swapped"][0])
    checker = make_conn(autocommit=False)
    checker.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    outcome: dict[str, Any] = {}

    def check() -> None:
        try:
            outcome["result"] = checker.execute(sql, params).fetchone()
            checker.commit()
        except psycopg.Error as exc:
            outcome["error"] = exc
            checker.rollback()

    thread = threading.Thread(target=check)
    thread.start()
    try:
        _waiting_for_a_lock(conn, checker.info.backend_pid)
    finally:
        alter.execute("ROLLBACK")
        thread.join()
    assert "error" not in outcome, outcome
    assert job(conn, job_id)["status"] != "failed"
    # The rows the check looked up the commit status of.
    assert scalar(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'people'::regclass "
                        "AND attnum > 0 AND xmax <> '0'::xid") > 0


def test_the_read_masks_copies_of_the_column_test_match_the_function() -> None:
    """pgjobs._mask and pgjobs._mask_candidates spell out pgjobs._columns_same's
    test (a call per read costs more than the test): the three must be alike,
    or a read would hide rows by a delete its page check has failed."""
    import re

    root = Path(__file__).resolve().parent.parent / "sql" / "functions"

    def body(name: str) -> str:
        text = (root / f"{name}.sql").read_text()
        text = re.sub(r"--[^\n]*", "", text)
        start = text.rindex("NOT EXISTS (", 0, text.index("jsonb_to_recordset"))
        end = text.index("enumlabel = l.value::name)", start)
        words = " ".join(text[start:end].split())
        return words.replace("p_recorded", "RECORDED").replace("j.target_columns", "RECORDED")

    function = body("_columns_same")
    assert "pg_attribute" in function and "pg_enum" in function
    assert body("_mask") == function
    assert body("_mask_candidates") == function
