"""No pgjobs call waits silently forever for a lock that any role can take,
and a wait that gives up says for what and who holds it.

Advisory locks need no privilege: any role that can connect may take any
key, and hold it outside any transaction, where no idle timeout ends it.
register_target and unregister_target (key 'pgjobs.register:' || the
table's oid), pgjobs.schedule (hashtext('pgjobs.schedule')) and `pgjobs
migrate` (hashtext('pgjobs.migrate')) waited for such a session for good,
printing nothing: an operator's migrate or registration just hung. They now
wait at most the caller's lock_timeout (else 10 s; migrate 60 s), then raise
55P03 naming the holding session's pid and role, with a hint.

A runner that gives up after its 1 s wait for a job's row or table leaves
the job with a WARNING that says which of the two it waited for (the table:
pgjobs._hold_target, behind an ALTER TABLE or LOCK TABLE), naming the
table's holder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from cli.main import main
from pgjobs.errors import PgjobsError
from pgjobs.migrate import migrate
from tests.support import make_rows_target, scalar, seed, submit_delete, wait_for

Conn = psycopg.Connection[Any]

NOBODY = f"pgjobs_test_lockholder_{os.getpid()}"


@pytest.fixture
def nobody(conn: Conn) -> Iterator[str]:
    """A role with no pgjobs grant at all: it can still take any advisory key."""
    conn.execute(f"DROP ROLE IF EXISTS {NOBODY}")
    conn.execute(f"CREATE ROLE {NOBODY} NOLOGIN")
    yield NOBODY
    conn.execute(f"DROP ROLE IF EXISTS {NOBODY}")


def hold(make_conn: Callable[..., Conn], role: str, key_sql: str) -> tuple[int, str]:
    """A session of `role` that takes the advisory key and does nothing else
    (not even in a transaction); returns its pid and login role (the role
    pg_stat_activity shows)."""
    holder = make_conn()
    holder.execute(f"SET application_name = 'squatter'; SET ROLE {role}")
    holder.execute(f"SELECT pg_advisory_lock({key_sql})")
    row = holder.execute("SELECT pg_backend_pid(), session_user::text").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def assert_names_holder(err: psycopg.Error | PgjobsError, holder: tuple[int, str]) -> None:
    pid, role = holder
    sqlstate = err.sqlstate
    text = str(err) if isinstance(err, PgjobsError) else err.diag.message_primary or ""
    hint = err.hint if isinstance(err, PgjobsError) else err.diag.message_hint
    assert sqlstate == "55P03"
    assert f"pid {pid} (role {role}, application squatter" in text, text
    assert hint and "pg_terminate_backend" in hint, hint


REGISTRATION_CALLS = {
    "register_target": "SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                       " 'created_at', 'data')",
    "register_target_new": "SELECT pgjobs.register_target('other_rows', 'id', 'table_id',"
                           " 'created_at')",
    "unregister_target": "SELECT pgjobs.unregister_target('user_table_rows')",
}


@pytest.mark.parametrize("call", sorted(REGISTRATION_CALLS))
def test_a_held_registration_key_fails_the_call_naming_its_holder(
        conn: Conn, make_conn: Callable[..., Conn], nobody: str, call: str) -> None:
    """A role with no pgjobs grant holds the key; the registration (of a
    registered table, of a new one, the unregistration) fails with 55P03
    naming that session, and the caller's lock_timeout is as it was."""
    make_rows_target(conn)
    conn.execute("CREATE TABLE other_rows (id bigint NOT NULL, table_id int NOT NULL,"
                 " created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE INDEX ON other_rows (table_id, id)")
    table = "other_rows" if call.endswith("_new") else "user_table_rows"
    oid = scalar(conn, "SELECT %s::regclass::oid", (table,))
    held = hold(make_conn, nobody, f"hashtext('pgjobs.register:' || {oid})")
    admin = make_conn()
    admin.execute("SET lock_timeout = '1s'")
    with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
        admin.execute(REGISTRATION_CALLS[call])
    assert_names_holder(caught.value, held)
    assert f"registrations of public.{table}" in (caught.value.diag.message_primary or "")
    assert scalar(admin, "SHOW lock_timeout") == "1s"


def test_a_registration_without_lock_timeout_still_stops_waiting(
        conn: Conn, make_conn: Callable[..., Conn], nobody: str) -> None:
    """No lock_timeout at all (the default): the call gives up on its own
    (10 s) instead of hanging, and leaves lock_timeout at 0."""
    make_rows_target(conn)
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    held = hold(make_conn, nobody, f"hashtext('pgjobs.register:' || {oid})")
    admin = make_conn()
    admin.execute("SET statement_timeout = '60s'")  # 57014, not 55P03, if it waited on
    with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
        admin.execute(REGISTRATION_CALLS["unregister_target"])
    assert_names_holder(caught.value, held)
    assert "waited 10s" in (caught.value.diag.message_primary or "")
    assert scalar(admin, "SHOW lock_timeout") == "0"


def test_a_registration_waits_for_a_key_let_go_in_time(
        conn: Conn, make_conn: Callable[..., Conn], nobody: str) -> None:
    """The bounded wait is still a wait: a holder that lets go within it
    lets the registration through, which then holds the key to its commit."""
    make_rows_target(conn)
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    holder = make_conn(autocommit=False)
    holder.execute("SELECT pg_advisory_xact_lock(hashtext('pgjobs.register:' || %s))", (oid,))
    admin = make_conn(autocommit=False)
    admin.execute("SET statement_timeout = '60s'")  # no lock_timeout: its 10 s bound
    done: list[Exception | None] = []

    def register() -> None:
        try:
            admin.execute(REGISTRATION_CALLS["register_target"])
            done.append(None)
        except Exception as exc:  # noqa: BLE001 - reported below
            done.append(exc)

    thread = threading.Thread(target=register)
    thread.start()
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                  " AND NOT granted") == 1)
    holder.rollback()
    thread.join()
    assert done == [None]
    assert scalar(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND granted") == 1  # the registration's, to its commit
    # The rest of the caller's transaction waits as it did (not 10 s).
    assert scalar(admin, "SHOW lock_timeout") == "0"
    admin.commit()


def test_a_held_schedule_key_fails_schedule_naming_its_holder(
        cron_dsn: str, nobody_in_cron: tuple[str, Callable[..., Conn]]) -> None:
    """pgjobs.schedule's key, held by a role with no pgjobs grant: the call
    fails with 55P03 naming that session instead of hanging."""
    role, make = nobody_in_cron
    held = hold(make, role, "hashtext('pgjobs.schedule')")
    admin = make()
    admin.execute("SET lock_timeout = '1s'")
    with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
        admin.execute("SELECT pgjobs.schedule()")
    assert_names_holder(caught.value, held)


@pytest.fixture
def nobody_in_cron(cron_dsn: str) -> Iterator[tuple[str, Callable[..., Conn]]]:
    conns: list[Conn] = []

    def make() -> Conn:
        c = psycopg.connect(cron_dsn, autocommit=True)
        conns.append(c)
        return c

    admin = make()
    admin.execute(f"DROP ROLE IF EXISTS {NOBODY}")
    admin.execute(f"CREATE ROLE {NOBODY} NOLOGIN")
    yield NOBODY, make
    for c in conns:
        c.close()
    with psycopg.connect(cron_dsn, autocommit=True) as c:
        c.execute("SELECT pgjobs.unschedule()")
        c.execute(f"DROP ROLE IF EXISTS {NOBODY}")


def with_lock_timeout(dsn: str, timeout: str) -> str:
    return make_conninfo(dsn, options=f"-c lock_timeout={timeout}")


def test_a_held_migrate_key_fails_migrate_naming_its_holder(
        dsn: str, make_conn: Callable[..., Conn], nobody: str) -> None:
    """`pgjobs migrate` behind a session of any role holding its key: 55P03
    naming it (PgjobsError: one line with the hint), not a wait for good."""
    held = hold(make_conn, nobody, "hashtext('pgjobs.migrate')")
    with pytest.raises(PgjobsError) as caught:
        migrate(with_lock_timeout(dsn, "1s"))
    assert_names_holder(caught.value, held)


def test_the_cli_migrate_behind_a_held_key_exits_1_with_one_line(
        dsn: str, make_conn: Callable[..., Conn], nobody: str) -> None:
    pid, login = hold(make_conn, nobody, "hashtext('pgjobs.migrate')")
    result = CliRunner().invoke(main, ["--dsn", with_lock_timeout(dsn, "1s"), "migrate"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"pid {pid} (role {login}" in result.output and "[55P03]" in result.output


def test_migrate_after_a_killed_migrate_is_not_locked_out(dsn: str, conn: Conn) -> None:
    """A migrate killed (SIGKILL, a lost connection) while yoyo applied a
    migration left yoyo's lock row behind, and every later `pgjobs migrate`
    failed after 10 s: 'Process N has locked this database (run yoyo
    break-lock ...)'. Under pgjobs' own migrate lock such a row is a dead
    run's, and is cleared."""
    conn.execute("INSERT INTO pgjobs.yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    summary = migrate(dsn)
    assert summary["migrations_applied"] == []
    assert scalar(conn, "SELECT count(*) FROM pgjobs.yoyo_lock") == 0


# --- the runner's 1 s wait: which lock ------------------------------------------------


def run_job_warnings(make_conn: Callable[..., Conn], job_id: int) -> list[tuple[str, str]]:
    runner = make_conn()
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    return seen


TABLE_HOLDS = {
    "lock_table": "LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE",
    "alter_table": "ALTER TABLE user_table_rows ADD COLUMN extra integer",
    "rename": "ALTER TABLE user_table_rows RENAME COLUMN label TO title",
}


@pytest.mark.parametrize("hold_sql", sorted(TABLE_HOLDS))
def test_a_job_left_behind_its_tables_lock_says_so_and_names_the_holder(
        conn: Conn, make_conn: Callable[..., Conn], hold_sql: str) -> None:
    """Another transaction holds the target in a mode a page waits for (an
    ALTER TABLE, LOCK TABLE, CREATE INDEX not yet committed): the runner
    leaves the job after its 1 s wait with a warning naming the table and
    the holding session, not 'its row'."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'squatter'")
    holder.execute(TABLE_HOLDS[hold_sql])
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    warnings = run_job_warnings(make_conn, job_id)
    holder.rollback()
    assert len(warnings) == 1, warnings
    message, hint = warnings[0]
    assert f"job {job_id} left for now" in message
    assert "its table public.user_table_rows" in message and f"pid {pid} (role " in message, message
    assert "its row" not in message
    assert "pg_terminate_backend" in hint


def test_a_job_left_behind_its_row_says_its_row(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A client's transaction holds the job's row (a pause not yet
    committed): the warning says its row, as before."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    runner = make_conn()
    seen: list[str] = []
    runner.add_notice_handler(lambda d: seen.append(d.message_primary or "")
                              if d.severity_nonlocalized == "WARNING" else None)
    # The first page runs (the claim, the count); then a client pauses in a
    # transaction it leaves open, and the next step waits for the row.
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) == "more"
    holder = make_conn(autocommit=False)
    holder.execute("SELECT pgjobs.pause(%s)", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) is None
    holder.rollback()
    assert len(seen) == 1, seen
    assert f"job {job_id} left for now: waited 1 s for its row" in seen[0], seen


def test_an_export_worker_left_behind_a_lock_says_which(
        conn: Conn, make_conn: Callable[..., Conn], tmp_path: Any) -> None:
    """The worker's control statements wait 5 s for a lock, then leave the job
    ('lost'). Its reason, a fixed 'another transaction holds the job's row',
    now comes from the SQL the runner's warning uses
    (pgjobs._lock_wait_problem), which tells the row from the table and names
    the table's holder."""
    from pgjobs.poller.export import Exporter

    make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (table_id, n) "
                 "SELECT 1, g FROM generate_series(1, 50) g")
    folder = tmp_path / "store"
    folder.mkdir()
    own = int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1')"))
    worker = str(scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'w', '1 hour')",
                        (own,)))
    holder = make_conn(autocommit=False)
    holder.execute("SELECT pgjobs.pause(%s)", (own,))  # and the transaction stays open
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(
        Exporter(conn.info.dsn, own, worker, f"file://{folder}").run()), daemon=True)
    thread.start()
    thread.join(120)
    stuck = thread.is_alive()
    holder.rollback()
    thread.join(60)
    assert not stuck, "the worker waited for the other transaction"
    assert outcome[0].status == "lost", outcome
    why = outcome[0].error or ""
    assert "waited 5s for its row, which another transaction holds" in why, why


def test_the_lock_wait_problem_names_a_tables_holder(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """The one description both use, for a table held by an ALTER TABLE not
    yet committed: the table and the holding session, not the row."""
    make_rows_target(conn)
    own = int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1')"))
    holder = make_conn(autocommit=False)
    holder.execute("ALTER TABLE user_table_rows ADD COLUMN extra integer")
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    row = conn.execute("SELECT message, hint FROM pgjobs._lock_wait_problem(%s, '5s')",
                       (own,)).fetchone()
    holder.rollback()
    assert row is not None
    assert row[0].startswith(f"waited 5s for its table public.user_table_rows, which pid {pid} ")
    assert "pg_terminate_backend" in row[1]


# --- the worker's data statements: an export's chunk, an import's batch -----------------

WORKER_KINDS = {
    "export": ("SELECT pgjobs.submit_export('user_table_rows', '1')", "claim_export"),
    "export_parquet": ("SELECT pgjobs.submit_export('user_table_rows', '1', '{}',"
                       " '{\"format\": \"parquet\"}')", "claim_export"),
    "import": ("SELECT pgjobs.submit_import('user_table_rows', '1', %(source)s)",
               "claim_import"),
}


def start_worker_behind_a_table_lock(conn: Conn, make_conn: Callable[..., Conn], tmp_path: Any,
                                     kind: str, hold_sql: str
                                     ) -> tuple[int, int, Conn, threading.Thread, list[Any]]:
    """A claimed export or import of user_table_rows' scope 1 (50 rows, or a
    50-record source), its worker started in a thread while another
    transaction holds the table (hold_sql, left open). Returns the job, the
    holder's pid, the holder, the thread and the box of its outcome."""
    from pgjobs.poller.export import Exporter
    from pgjobs.poller.importer import Importer
    from tests.support import allow

    make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (table_id, n) "
                 "SELECT 1, g FROM generate_series(1, 50) g")
    folder = tmp_path / "store"
    folder.mkdir()
    allow(conn, f"file://{tmp_path}")
    source = tmp_path / "in.csv"
    source.write_text("n\n" + "".join(f"{i}\n" for i in range(1000, 1050)))
    submit, claim = WORKER_KINDS[kind]
    job_id = int(scalar(conn, submit, {"source": f"file://{source}"}))
    worker = str(scalar(conn, f"SELECT worker FROM pgjobs.{claim}(%s, 'w', '30 seconds')",
                        (job_id,)))
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'squatter'")
    holder.execute(hold_sql)
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    runner = Importer if kind == "import" else Exporter
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(
        runner(conn.info.dsn, job_id, worker, f"file://{folder}").run()), daemon=True)
    thread.start()
    return job_id, pid, holder, thread, outcome


@pytest.mark.parametrize("hold_sql", sorted(TABLE_HOLDS))
@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_a_worker_behind_its_tables_lock_says_who_holds_it_and_goes_on(
        conn: Conn, make_conn: Callable[..., Conn], tmp_path: Any,
        caplog: pytest.LogCaptureFixture, kind: str, hold_sql: str) -> None:
    """An export's chunk read and an import's batch waited without limit
    behind an ALTER TABLE or LOCK TABLE not yet committed on their table,
    saying nothing (the job `running`, its worker's slot lost). Each now
    gives up after 5 s, logs what it waited for and who holds it (the
    runner's words: pgjobs._lock_wait_problem) with what to do, keeps the
    lease and tries again: once the holder lets go, the job finishes with
    every row."""
    import logging

    caplog.set_level(logging.WARNING, logger="pgjobs")
    job_id, pid, holder, thread, outcome = start_worker_behind_a_table_lock(
        conn, make_conn, tmp_path, kind, TABLE_HOLDS[hold_sql])
    try:
        said = wait_for(lambda: [r.getMessage() for r in list(caplog.records)
                                 if f"job {job_id}: waited" in r.getMessage()],
                        timeout=60, what="the worker's lock-wait warning")
    finally:
        holder.rollback()
    thread.join(120)
    assert not thread.is_alive()
    message = said[0]
    assert f"waited 5s for its table public.user_table_rows, which pid {pid} (role " in message
    assert "application squatter" in message and "pg_terminate_backend" in message, message
    assert outcome[0].status == "succeeded", outcome
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    if kind == "import":
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE n >= 1000") == 50
    else:
        assert outcome[0].result["rows"] == 50


@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_a_cancel_ends_a_worker_held_behind_its_tables_lock(
        conn: Conn, make_conn: Callable[..., Conn], tmp_path: Any,
        caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """The operator cancels the job while its worker waits behind the
    table's lock: the worker renews its lease between two waits, so the
    cancel ends the attempt (`canceled`) while the holder still holds the
    table, and the worker is free; it used to wait on with the job
    `running` until the holder let go."""
    import logging

    caplog.set_level(logging.WARNING, logger="pgjobs")
    job_id, _, holder, thread, outcome = start_worker_behind_a_table_lock(
        conn, make_conn, tmp_path, kind, TABLE_HOLDS["alter_table"])
    try:
        wait_for(lambda: any(f"job {job_id}: waited" in r.getMessage()
                             for r in list(caplog.records)),
                 timeout=60, what="the worker's lock-wait warning")
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
        thread.join(60)
        stuck = thread.is_alive()
    finally:
        holder.rollback()
    thread.join(60)
    assert not stuck, "the worker waited for the holder after the cancel"
    assert outcome[0].status == "canceled", outcome
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "canceled"


# --- the runner's page: its 200 ms waits, said ------------------------------------------

PAGE_HOLDS = {
    "rows_for_update": ("SELECT FROM user_table_rows WHERE table_id = 1 FOR UPDATE", "rows"),
}
# A page behind its table's lock (these two, which let the job read the table
# but not write it) was retried like one behind rows, up to 1000 times; it is
# handed back now (test_a_page_behind_its_tables_share_lock_is_handed_back,
# tests/test_lock_handback.py).
PAGE_TABLE_HOLDS = {
    "create_index": ("CREATE INDEX ON user_table_rows (n)", "200 ms"),
    "lock_table_share": ("LOCK TABLE user_table_rows IN SHARE MODE", "200 ms"),
    # The table's read waits (pgjobs._hold_target, the step's 1 s).
    "alter_table": ("ALTER TABLE user_table_rows ADD COLUMN extra integer", "1 s"),
}


def page_warnings(runner: Conn) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    return seen


@pytest.mark.parametrize("hold", sorted(PAGE_HOLDS))
def test_a_page_waiting_for_a_lock_says_for_what_and_who_holds_it(
        conn: Conn, make_conn: Callable[..., Conn], hold: str) -> None:
    """A page behind a lock that does not block the job's table read (a
    CREATE INDEX or LOCK TABLE ... SHARE not yet committed, an application's
    rows locked FOR UPDATE) gives up after 200 ms and is tried again, up to
    1000 times: that went on silently, and the failure after the last wait
    said 'gave up after 1000 lock waits on one page', neither what nor who.
    The first wait (and every 100th) now warns naming the table's holding
    session, or the page's rows; the failure says the same."""
    hold_sql, what = PAGE_HOLDS[hold]
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    runner = make_conn()
    seen = page_warnings(runner)
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) == "more"  # the count
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'squatter'")
    holder.execute(hold_sql)
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    try:
        assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                      (job_id, identity)) == "retry"
        assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, 'retry')",
                      (job_id, identity)) == "retry"
        # The last wait allowed: the attempt fails, saying for what.
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint"
                     " || '{\"lock_waits\": 1000}' WHERE id = %s", (job_id,))
        assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, 'retry')",
                      (job_id, identity)) is None
    finally:
        holder.rollback()
    assert len(seen) == 1, seen  # the first wait, not the second
    message, hint = seen[0]
    assert f"job {job_id} waits for a lock (wait 1 of at most 1000 on this page)" in message
    if what == "table":
        expected = f"its table public.user_table_rows, which pid {pid} (role "
    else:
        expected = "rows of public.user_table_rows in its page, which another transaction holds"
    assert expected in message, message
    assert "pg_terminate_backend" in hint, hint
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job_id,)).fetchone() or (None, None)
    assert status == "queued", status  # retryable: the next attempt waits again
    assert error.startswith("gave up after 1000 lock waits on one page: it waited for ")
    assert expected in error, error


@pytest.mark.parametrize("hold", sorted(PAGE_TABLE_HOLDS))
def test_a_page_behind_its_tables_share_lock_is_handed_back(
        conn: Conn, make_conn: Callable[..., Conn], hold: str) -> None:
    """A CREATE INDEX or LOCK TABLE ... SHARE not yet committed: the page
    gives up after 200 ms and the step hands the job back at once (queued,
    the attempt not counted, due later) with a warning naming the table's
    holder, instead of retrying the page (the runner's whole budget) and
    failing the attempt after 1000 waits. An ALTER TABLE: after the step's
    1 s wait for the table, where the job was left with its lease held.
    (Taken between two steps of one claim: a claim's first step finds the
    holder in pg_locks and waits for nothing, tests/test_lock_handback.py.)"""
    hold_sql, waited = PAGE_TABLE_HOLDS[hold]
    target = make_rows_target(conn)
    seed(conn, target, 30)
    job_id = submit_delete(conn, target, "1")
    runner = make_conn()
    seen = page_warnings(runner)
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) == "more"  # the count
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'squatter'")
    holder.execute(hold_sql)
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    try:
        assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, 'more')",
                      (job_id, identity)) is None
        state = conn.execute("SELECT status, attempts, lease_expires_at, run_at > now(), error,"
                             " checkpoint -> 'throttled' ->> 'reason' FROM pgjobs.jobs"
                             " WHERE id = %s", (job_id,)).fetchone()
    finally:
        holder.rollback()
    assert state is not None
    assert state[:5] == ("queued", 0, None, True, None), state
    assert f"its table public.user_table_rows, which pid {pid} (role " in state[5], state
    assert len(seen) == 1, seen
    message, hint = seen[0]
    assert message.startswith(f"pgjobs: job {job_id} left for now: waited {waited} for its table "
                              f"public.user_table_rows, which pid {pid} (role "), message
    assert "pg_terminate_backend" in hint, hint


# --- an operator's preview ------------------------------------------------------------

PREVIEW = "SELECT pgjobs.preview('user_table_rows', '1', '{}', '{}', %s::jsonb)"


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("hold_sql", sorted(TABLE_HOLDS))
def test_a_preview_behind_its_tables_lock_fails_naming_the_holder(
        conn: Conn, make_conn: Callable[..., Conn], hold_sql: str, kind: str) -> None:
    """A preview of a table another transaction holds (an ALTER TABLE, LOCK
    TABLE not yet committed) waited for as long as that transaction, past
    its own time limit, printing nothing: it now waits at most the
    caller's lock_timeout, then fails with 55P03 naming the holder, and
    leaves lock_timeout as it was."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'squatter'")
    holder.execute(TABLE_HOLDS[hold_sql])
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    role = str(scalar(holder, "SELECT session_user"))
    operator = make_conn()
    operator.execute("SET lock_timeout = '1s'")
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            operator.execute(PREVIEW, (f'{{"kind": "{kind}"}}',))
    finally:
        holder.rollback()
    message = caught.value.diag.message_primary or ""
    assert message.startswith("waited 1s for table public.user_table_rows: "), message
    assert f"pid {pid} (role {role}, application squatter" in message, message
    assert "pg_terminate_backend" in (caught.value.diag.message_hint or "")
    assert scalar(operator, "SHOW lock_timeout") == "1s"
    assert scalar(operator, PREVIEW, ('{}',))["matches"] > 0  # and it reads once let go


def test_a_preview_without_lock_timeout_still_stops_waiting(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """No lock_timeout at all (the default): 10 s, then 55P03; lock_timeout
    stays 0 for the rest of the caller's session."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    holder = make_conn(autocommit=False)
    holder.execute(TABLE_HOLDS["alter_table"])
    operator = make_conn()
    operator.execute("SET statement_timeout = '30s'")  # 57014, not 55P03, if it waited on
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            operator.execute(PREVIEW, ('{}',))
    finally:
        holder.rollback()
    assert "waited 10s for table public.user_table_rows" in (
        caught.value.diag.message_primary or "")
    assert scalar(operator, "SHOW lock_timeout") == "0"


def test_the_cli_dry_run_behind_a_tables_lock_exits_1_with_one_line(
        dsn: str, conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """`pgjobs delete --dry-run` (the preview `pgjobs delete` asks with on a
    terminal): one line naming the holder, exit 1, no traceback."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    holder = make_conn(autocommit=False)
    holder.execute(TABLE_HOLDS["lock_table"])
    pid = int(scalar(holder, "SELECT pg_backend_pid()"))
    try:
        result = CliRunner().invoke(main, ["--dsn", with_lock_timeout(dsn, "1s"), "delete",
                                           "user_table_rows", "--scope", "1", "--dry-run"])
    finally:
        holder.rollback()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"pid {pid} (role " in result.output and "[55P03]" in result.output, result.output
