"""Trust, the window between checks (h74, h80): a reach change committed
between two pages of a running delete or backfill.

A running job checked trust in full at its attempt's first page and then at
most once a second; the pages in between ran on that verdict. A trusted
role's DDL committed between two pages (a rule on the target writing into a
client's table, REFERENCES or TRIGGER granted to a client who then adds a
cascading foreign key or a trigger, a reached table given to a client, a
policy reading a client's view) let the client's trigger run as the engine's
role on the next pages until the next check.

Found, on the old code (main): in every shape below the page after the
change ran on the old verdict ('more'); in the rule, foreign key, trigger
and owner shapes the client's trigger ran as the superuser running the job
(and created a role). Now (migration 0091) an event trigger marks every DDL
transaction (a row of pgjobs.ddl_fence_marks, no lock anyone needs), and
the mark's deferred constraint trigger bumps pgjobs.ddl_fence.epoch at its
commit, under an EXCLUSIVE lock of that table; each page holds it IN ROW
SHARE MODE and checks in full when the epoch moved: the very next page
fails the job, and nothing of the client's ran. h74's fence bumped the
epoch at the DDL itself and held the row to the commit, so an open
migration transaction stalled every table's pages: the tests here also
hold a DDL transaction open while pages run.

Pages are driven one at a time (pgjobs._run_page), no timing: the change
lands between two calls; the two-connection tests order a DDL and a page by
their locks (pg_stat_activity says who waits).

Also the reach path that had no test: an ON UPDATE CASCADE fired by a
backfill (it may set a column a foreign key references; its key, scope and
created_at columns it may not).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import reach, scalar
from tests.support.roles import acting_as
from tests.support.waiting import wait_for
from tests.test_trust_reached_tables import CLIENT, GRABBED

Conn = psycopg.Connection[Any]

# Each reach change: (what a trusted role, the test's superuser, commits;
# what the client does after it). Both land between two pages.
CHANGES = {
    "rule_into_clients_table": (
        "CREATE RULE reach_d AS ON DELETE TO tenant.rows"
        " DO ALSO INSERT INTO tenant.audit (id) VALUES (old.id);"
        " CREATE RULE reach_u AS ON UPDATE TO tenant.rows"
        " DO ALSO INSERT INTO tenant.audit (id) VALUES (old.id)", ""),
    "cascading_fk_after_references_granted": (
        "GRANT SELECT, REFERENCES ON tenant.rows TO {client}",
        "CREATE TABLE tenant.child (n bigint, note text, FOREIGN KEY (n, note)"
        " REFERENCES tenant.rows (id, note) ON DELETE CASCADE ON UPDATE CASCADE);"
        " INSERT INTO tenant.child SELECT id, note FROM tenant.rows;"
        " CREATE TRIGGER grab AFTER DELETE OR UPDATE ON tenant.child"
        " FOR EACH ROW EXECUTE FUNCTION tenant.grab()"),
    "trigger_after_trigger_granted_on_reached_table": (
        "GRANT TRIGGER ON tenant.mine TO {client}",
        "CREATE TRIGGER grab AFTER INSERT ON tenant.mine"
        " FOR EACH ROW EXECUTE FUNCTION tenant.grab()"),
    "trigger_after_reached_table_given_away": (
        "ALTER TABLE tenant.mine OWNER TO {client}",
        "CREATE TRIGGER grab AFTER INSERT ON tenant.mine"
        " FOR EACH ROW EXECUTE FUNCTION tenant.grab()"),
    "policy_reading_clients_view": (
        "ALTER TABLE tenant.mine ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY p ON tenant.mine WITH CHECK"
        " (id IN (SELECT id FROM tenant.peek) OR true)", ""),
}

KINDS = reach.KINDS
_changed = reach.changed


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    with reach.trusted_world(conn):
        yield


def _start(conn: Conn, kind: str) -> tuple[int, str]:
    """A job of one row a page, claimed, run until a page changed a row (its
    first call counts the rows; each page after a full check within 1 s)."""
    job, worker = reach.start_job(conn, kind)
    assert _changed(conn, kind) == 1
    return job, worker


def _change(conn: Conn, name: str) -> None:
    by_trusted, by_client = CHANGES[name]
    conn.execute(by_trusted.format(client=CLIENT))
    if by_client:
        with acting_as(conn, CLIENT):
            conn.execute(by_client)


def _nothing_of_the_clients_ran(conn: Conn) -> None:
    assert conn.execute("SELECT who, su, what FROM tenant.log").fetchall() == []
    assert scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (GRABBED,)) == 0


def _untouched_after_first_page(conn: Conn, kind: str) -> None:
    assert _changed(conn, kind) == 1


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_reach_change_between_two_pages_fails_the_job_at_the_next(
        conn: Conn, world: None, kind: str, change: str) -> None:
    job, worker = _start(conn, kind)
    _change(conn, change)
    state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker))
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job,)).fetchone() or (None, None)
    _nothing_of_the_clients_ran(conn)
    assert (state, status) == ("failed", "failed"), (state, status, error)
    assert "refuses target tenant.rows" in error and CLIENT in error, error
    _untouched_after_first_page(conn, kind)


def _waiting(conn: Conn, pid: int) -> bool:
    return scalar(conn, "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock'"
                        " FROM pg_stat_activity WHERE pid = %s", (pid,)) is True


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_ddl_waits_for_the_page_in_flight_and_the_next_page_sees_it(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str) -> None:
    """A page's transaction is open (its statements done, not committed): a
    GRANT TRIGGER on a table it reaches, which takes no lock the page holds,
    used to commit there and then; now it waits for the page's commit, so
    nothing it enables can be taken up by the page (a table reached is
    opened when the statement gets to it, with the catalogs as they are
    then). The next page sees it."""
    job, worker = _start(conn, kind)
    runner = make_conn(autocommit=False)
    assert scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
    ddl = make_conn()
    ddl_pid = scalar(ddl, "SELECT pg_backend_pid()")
    events: list[str] = []
    thread = threading.Thread(target=lambda: (
        ddl.execute(f"GRANT TRIGGER ON tenant.mine TO {CLIENT}"), events.append("granted")))
    thread.start()
    try:
        wait_for(lambda: _waiting(conn, ddl_pid) or events, what="the GRANT waits or ends",
                 timeout=20)
        events.append("page committed")
        runner.commit()
    finally:
        thread.join()
    assert events == ["page committed", "granted"], events
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute(CHANGES["trigger_after_trigger_granted_on_reached_table"][1])
    conn.execute("RESET ROLE")
    assert scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "failed"
    runner.commit()
    _nothing_of_the_clients_ran(conn)


def _epoch(conn: Conn) -> int:
    return int(scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence"))


# DDL a migration leaves open while pages run: on the target (it holds the
# target: the page is handed back, as before the fence), on a table the
# target reaches (no lock the page takes), elsewhere.
OPEN_DDL = {
    "rule_on_the_target": CHANGES["rule_into_clients_table"][0],
    "trigger_granted_on_a_reached_table": "GRANT TRIGGER ON tenant.mine TO {client}",
    "reached_table_given_away": "ALTER TABLE tenant.mine OWNER TO {client}",
    "table_elsewhere": "CREATE TABLE tenant.elsewhere (id bigint);"
                       " ALTER TABLE tenant.elsewhere ADD COLUMN x int",
}


def _page_in_thread(runner: Conn, job: int, worker: str,
                    outcome: list[Any]) -> threading.Thread:
    def page() -> None:
        try:
            outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=page)
    thread.start()
    return thread


@pytest.mark.parametrize("ddl", sorted(OPEN_DDL))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_open_ddl_transaction_holds_up_no_page_and_its_commit_is_seen_by_the_next(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str, ddl: str) -> None:
    """A DDL transaction is open (not committed): pages of the job run on
    meanwhile, unless the DDL holds a table the page locks (the target: the
    page waits for it, as it always did, and checks after the commit; a
    reached table: the page's statement gives up after its 200 ms,
    'retry', nothing changed, as before the fence); the DDL's commit is
    seen by the very next page, which checks in full."""
    job, worker = _start(conn, kind)
    epoch = _epoch(conn)
    open_ddl = make_conn(autocommit=False)
    runner = make_conn()
    runner_pid = scalar(runner, "SELECT pg_backend_pid()")
    outcome: list[Any] = []
    try:
        open_ddl.execute(OPEN_DDL[ddl].format(client=CLIENT))
        if ddl == "rule_on_the_target":
            thread = _page_in_thread(runner, job, worker, outcome)
            try:
                wait_for(lambda: _waiting(conn, runner_pid) or outcome,
                         what="the page waits or ends", timeout=20)
                outcome.append("ddl committed")
                open_ddl.commit()
            finally:
                thread.join()
            # The page woken by the commit may ask for the DDL fence before
            # the committing backend has released it (its locks go one by
            # one): 'blocked', nothing read or changed, and pgjobs._run_step
            # tries the page again (a commit under way is not named). The
            # next page that runs is the one that checks in full.
            for _ in range(50):
                if outcome[-1] != "blocked":
                    break
                outcome.pop()
                outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        else:
            # Two pages while the DDL transaction stays open: neither waits
            # for it (but for a table it holds, as any page would).
            expected = ({"blocked", "retry"} if ddl == "reached_table_given_away"
                        else {"more"})
            for _ in range(2):
                assert scalar(runner, "SELECT pgjobs._run_page(%s, %s)",
                              (job, worker)) in expected
            assert _epoch(conn) == epoch
            open_ddl.commit()
            outcome.append("ddl committed")
    finally:
        open_ddl.rollback()
    assert _epoch(conn) == epoch + 1
    assert scalar(conn, "SELECT count(*) FROM pgjobs.ddl_fence_marks") == 0
    if ddl in ("trigger_granted_on_a_reached_table", "reached_table_given_away"):
        conn.execute(f"SET ROLE {CLIENT}")
        conn.execute(CHANGES["trigger_after_trigger_granted_on_reached_table"][1])
        conn.execute("RESET ROLE")
    if ddl != "rule_on_the_target":
        outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
    _nothing_of_the_clients_ran(conn)
    if ddl == "table_elsewhere":
        # Checked in full (the epoch moved), found nothing: the job goes on.
        assert outcome == ["ddl committed", "more"], outcome
        verified = scalar(conn, "SELECT checkpoint -> 'verified' FROM pgjobs.jobs WHERE id = %s",
                          (job,))
        assert verified["epoch"] == epoch + 1, verified
    else:
        assert outcome == ["ddl committed", "failed"], outcome


def test_a_backfill_that_sets_a_referenced_column_cascades_and_is_covered(
        conn: Conn, world: None) -> None:
    """ON UPDATE CASCADE fired by a backfill: it may set a column a foreign
    key references (note, with id, here), and the cascade then runs (an
    engine-owned child: its rows follow); a client-owned child's makes the
    target untrusted (the cascade's AFTER triggers would run as the engine)."""
    conn.execute("CREATE TABLE tenant.kin (n bigint, note text, FOREIGN KEY (n, note)"
                 " REFERENCES tenant.rows (id, note) ON UPDATE CASCADE)")
    conn.execute("INSERT INTO tenant.kin SELECT id, note FROM tenant.rows")
    job = int(scalar(conn, KINDS["backfill"]))
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM tenant.kin WHERE note = 'x'") == 20
    conn.execute("ALTER TABLE tenant.kin OWNER TO " + CLIENT)
    assert conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles('tenant.rows')"
                        ).fetchall() == [(CLIENT, "owns table tenant.kin")]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(KINDS["backfill"])
    # Its key, scope and created_at columns a backfill may not set at all.
    conn.execute("ALTER TABLE tenant.kin OWNER TO CURRENT_USER")
    for column in ("id", "scope", "created_at"):
        with pytest.raises(psycopg.errors.Error, match="backfill cannot set"):
            conn.execute("SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}', %s)",
                         (f'{{"{column}": 1}}',))


def test_without_the_fence_the_runner_keeps_the_one_second_window(
        conn: Conn, world: None) -> None:
    """The event triggers disabled (as an install by a role that may not
    create them has none): DDL moves no epoch, pages run on the 1 s verdict
    as before, and doctor says so, with the statements that restore it."""
    def doctor() -> list[Any]:
        return conn.execute("SELECT status, fix FROM pgjobs.doctor()"
                            " WHERE check_name = 'engine.ddl_fence'").fetchall()

    assert [r[0] for r in doctor()] == ["ok"]
    assert scalar(conn, "SELECT pgjobs._ddl_fence_installed()") is True
    for trigger in ("pgjobs_ddl_fence", "pgjobs_ddl_fence_drop"):
        conn.execute(f"ALTER EVENT TRIGGER {trigger} DISABLE")
        try:
            epoch = scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence")
            conn.execute("CREATE TABLE tenant.unfenced (id bigint); DROP TABLE tenant.unfenced")
            # (The other event trigger still marks its half: one bump.)
            assert scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence") == epoch + 1
            row = doctor()
            assert row and row[0][0] == "warn" and "CREATE EVENT TRIGGER" in row[0][1], row
        finally:
            conn.execute(f"ALTER EVENT TRIGGER {trigger} ENABLE ALWAYS")
    conn.execute("ALTER TABLE pgjobs.ddl_fence_marks DISABLE TRIGGER ddl_fence_marks_commit")
    try:
        assert doctor()[0][0] == "warn"
    finally:
        conn.execute("ALTER TABLE pgjobs.ddl_fence_marks ENABLE ALWAYS TRIGGER"
                     " ddl_fence_marks_commit")
    assert [r[0] for r in doctor()] == ["ok"]
    # Its functions owned by a role that may not write its tables (owners
    # changed one object at a time): a DDL commits all the same, with a
    # warning, unfenced, and doctor says so; never every DDL failing.
    for function in ("_ddl_fence_mark()", "_ddl_fence_commit()"):
        conn.execute(f"ALTER FUNCTION pgjobs.{function} OWNER TO {CLIENT}")
        try:
            epoch = scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence")
            conn.execute("CREATE TABLE tenant.unfenced (id bigint)")
            conn.execute("DROP TABLE tenant.unfenced")
            assert scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence") == epoch
            assert doctor()[0][0] == "warn"
        finally:
            conn.execute(f"ALTER FUNCTION pgjobs.{function} OWNER TO CURRENT_USER")
        assert [r[0] for r in doctor()] == ["ok"]
        # A mark left behind meanwhile is swept by the next fenced commit.
        conn.execute("CREATE TABLE tenant.unfenced (id bigint); DROP TABLE tenant.unfenced")
        assert scalar(conn, "SELECT count(*) FROM pgjobs.ddl_fence_marks") == 0


WHO = {
    "trusted": "",
    "client": f"SET LOCAL ROLE {CLIENT};",
}


@pytest.mark.parametrize("who", sorted(WHO))
def test_every_committed_ddl_bumps_once_and_nothing_else_does(
        conn: Conn, world: None, make_conn: Callable[..., Conn], who: str) -> None:
    """Any role's DDL (a client's too: one that gained TRIGGER on a reached
    table brings its trigger in by DDL of its own) bumps the epoch once per
    transaction, at its commit, and leaves no mark behind; a rolled back
    transaction, a DDL in a savepoint rolled back and temporary objects
    bump nothing."""
    other = make_conn(autocommit=False)
    epoch = _epoch(conn)
    role = WHO[who]
    # Three DDL commands in one transaction: one bump, at the commit.
    other.execute(f"{role} CREATE TABLE tenant.t_{who} (id bigint);"
                  f" ALTER TABLE tenant.t_{who} ADD COLUMN x int;"
                  f" CREATE INDEX ON tenant.t_{who} (x)")
    assert _epoch(conn) == epoch
    other.commit()
    assert _epoch(conn) == epoch + 1
    # A DROP (sql_drop): a bump too.
    other.execute(f"{role} DROP TABLE tenant.t_{who}")
    other.commit()
    assert _epoch(conn) == epoch + 2
    # Rolled back: none.
    other.execute(f"{role} CREATE TABLE tenant.gone_{who} (id bigint)")
    other.rollback()
    # A savepoint rolled back, the rest of the transaction DML only: none.
    other.execute(f"{role} SAVEPOINT s; CREATE TABLE tenant.gone_{who} (id bigint);"
                  " ROLLBACK TO SAVEPOINT s; INSERT INTO tenant.log VALUES ('x', false, 'x')")
    other.commit()
    # Temporary objects only: none.
    other.execute(f"{role} CREATE TEMP TABLE scratch (id bigint);"
                  " ALTER TABLE scratch ADD COLUMN x int; DROP TABLE scratch")
    other.commit()
    conn.execute("DELETE FROM tenant.log")
    assert _epoch(conn) == epoch + 2
    assert scalar(conn, "SELECT count(*) FROM pgjobs.ddl_fence_marks") == 0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_repeatable_read_page_whose_snapshot_predates_a_ddl_is_tried_again(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str) -> None:
    """A page in REPEATABLE READ (a default_transaction_isolation) whose
    snapshot was taken before a DDL committed reads the old epoch, while the
    catalogs, read afresh, show the DDL: it runs nothing ('blocked', 40001
    inside) and the page in a new transaction checks in full and fails."""
    job, worker = _start(conn, kind)
    runner = make_conn(autocommit=False)
    states: list[str] = []
    try:
        runner.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        runner.execute("SELECT count(*) FROM pgjobs.jobs")  # the snapshot
        _change(conn, "rule_into_clients_table")
        states.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        runner.commit()
        runner.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        states.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        runner.commit()
    finally:
        runner.rollback()
    _nothing_of_the_clients_ran(conn)
    assert states == ["blocked", "failed"], states
    _untouched_after_first_page(conn, kind)


def _fence_held(conn: Conn) -> list[Any]:
    return conn.execute("SELECT status, detail, fix FROM pgjobs.doctor()"
                        " WHERE check_name = 'engine.ddl_fence_held'").fetchall()


@pytest.mark.parametrize("who", sorted(WHO))
def test_a_transaction_that_holds_the_fence_past_its_ddl_is_named_with_how_to_end_it(
        conn: Conn, world: None, make_conn: Callable[..., Conn], who: str) -> None:
    """Any role that may run some DDL (a client too) can fire the commit
    trigger early (SET CONSTRAINTS ALL IMMEDIATE needs no privilege) and keep
    its transaction open: the fence stays held EXCLUSIVE, and every page of
    every job returns 'blocked' (a page never waits for the fence). Pages
    cannot go on without it (the DDL would commit unfenced mid-page), so the
    operator is told who holds it and how to end it (doctor's
    engine.ddl_fence_held); ended as told, the next page runs. Found on
    main: doctor said nothing (no such check), the pages blocked silently."""
    job, worker = _start(conn, "delete")
    assert [r[0] for r in _fence_held(conn)] == ["ok"]
    holder = make_conn(autocommit=False)
    pid = scalar(holder, "SELECT pg_backend_pid()")
    holder.execute(f"{WHO[who]} CREATE TABLE tenant.held_{who} (id bigint);"
                   " SET CONSTRAINTS ALL IMMEDIATE")
    try:
        for _ in range(2):
            assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "blocked"
        row = _fence_held(conn)
        assert len(row) == 1 and row[0][0] == "warn", row
        status, detail, fix = row[0]
        assert f"pid {pid} " in detail and "idle in transaction" in detail, detail
        assert f"pg_terminate_backend({pid})" in detail and "end that transaction" in fix, row
        # The operator does what the words say.
        assert scalar(conn, "SELECT pg_terminate_backend(%s, 10000)", (pid,)) is True
    finally:
        holder.close()
    assert [r[0] for r in _fence_held(conn)] == ["ok"]
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
    assert scalar(conn, "SELECT to_regclass(%s)", (f"tenant.held_{who}",)) is None


@pytest.mark.parametrize("end", ["commit", "rollback"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_prepared_ddl_transaction_holds_the_fence_until_it_ends(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str, end: str) -> None:
    """PREPARE TRANSACTION of a DDL transaction fires the commit trigger at
    the PREPARE: the fence is held EXCLUSIVE to COMMIT PREPARED or ROLLBACK
    PREPARED, pages return 'blocked' meanwhile, doctor names the prepared
    transaction and how to end it. After COMMIT PREPARED the epoch has
    moved and the next page checks in full and sees the DDL (a TRIGGER grant
    on a table the target reaches: the job fails, nothing of the client's
    ran); after ROLLBACK PREPARED the epoch has not moved, the job goes on."""
    if int(scalar(conn, "SHOW max_prepared_transactions")) == 0:
        pytest.skip("max_prepared_transactions is 0 on this server (the throwaway test "
                    "cluster sets 10: tests/support/pgcluster.py)")
    job, worker = _start(conn, kind)
    epoch = _epoch(conn)
    gid = f"pgjobs_fence_{os.getpid()}_{kind}_{end}"
    preparer = make_conn()
    preparer.execute(f"BEGIN; GRANT TRIGGER ON tenant.mine TO {CLIENT};"
                     f" PREPARE TRANSACTION '{gid}'")
    try:
        for _ in range(2):
            assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "blocked"
        assert _epoch(conn) == epoch
        row = _fence_held(conn)
        assert len(row) == 1 and row[0][0] == "warn", row
        assert f"prepared transaction '{gid}'" in row[0][1], row
        assert f"COMMIT PREPARED '{gid}'" in row[0][1], row
        conn.execute(f"{end.upper()} PREPARED '{gid}'")
    finally:
        if scalar(conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,)):
            conn.execute(f"ROLLBACK PREPARED '{gid}'")
    assert [r[0] for r in _fence_held(conn)] == ["ok"]
    assert scalar(conn, "SELECT count(*) FROM pgjobs.ddl_fence_marks") == 0
    if end == "commit":
        assert _epoch(conn) == epoch + 1
        conn.execute(f"SET ROLE {CLIENT}")
        conn.execute(CHANGES["trigger_after_trigger_granted_on_reached_table"][1])
        conn.execute("RESET ROLE")
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "failed"
        _nothing_of_the_clients_ran(conn)
        _untouched_after_first_page(conn, kind)
    else:
        assert _epoch(conn) == epoch
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
        assert _changed(conn, kind) == 2


def test_a_holder_that_keeps_running_statements_is_named_all_the_same(
        conn: Conn, world: None, make_conn: Callable[..., Conn]) -> None:
    """A holder past SET CONSTRAINTS ALL IMMEDIATE that keeps a statement
    running (here one waiting for an advisory lock; a loop of short ones
    alike) is 'active', begun a moment ago: taken for a commit under way,
    it was not named while each statement was under 1 s old, so a client
    running short statements back to back was named almost never. Only a
    COMMIT (END, PREPARE TRANSACTION) or a transaction's only statement is
    a commit under way."""
    job, worker = _start(conn, "delete")
    holder = make_conn(autocommit=False)
    pid = scalar(holder, "SELECT pg_backend_pid()")
    holder.execute(f"SET LOCAL ROLE {CLIENT}; CREATE TABLE tenant.held_busy (id bigint);"
                   " SET CONSTRAINTS ALL IMMEDIATE")
    key = 7700000 + os.getpid() % 100000
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    waiter = threading.Thread(target=lambda: holder.execute(
        "SELECT pg_advisory_xact_lock(%s)", (key,)))
    waiter.start()
    try:
        wait_for(lambda: scalar(conn, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity"
                                      " WHERE pid = %s", (pid,)) is True)
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "blocked"
        row = _fence_held(conn)
        assert len(row) == 1 and row[0][0] == "warn", row
        assert f"pid {pid} " in row[0][1] and "active" in row[0][1], row
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        waiter.join()
        holder.rollback()
        holder.close()
    assert [r[0] for r in _fence_held(conn)] == ["ok"]
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"


@pytest.mark.parametrize("trigger", ["pgjobs_ddl_fence", "pgjobs_ddl_fence_drop",
                                     "ddl_fence_marks_commit", "pgjobs_ddl_fence_by_tag"])
def test_a_fence_enabled_for_origin_sessions_only_is_no_fence(
        conn: Conn, world: None, trigger: str) -> None:
    """The migration enables the fence's triggers ALWAYS. One merely ENABLEd
    (origin sessions, 'O') fires in no session_replication_role = replica
    session, whose DDL then moves no epoch; one limited to some command tags
    misses the others. pgjobs._ddl_fence_installed and doctor's
    engine.ddl_fence counted both as a working fence (found on main: 'ok'),
    while the read path's kept shapes (pgjobs._array_bounds_row) did not."""
    def doctor() -> list[Any]:
        return conn.execute("SELECT status, detail, fix FROM pgjobs.doctor()"
                            " WHERE check_name = 'engine.ddl_fence'").fetchall()

    def replica_ddl_moves_the_epoch() -> bool:
        epoch = _epoch(conn)
        conn.execute("SET session_replication_role = replica")
        try:
            conn.execute("CREATE TABLE tenant.replicated (id bigint);"
                         " DROP TABLE tenant.replicated")
        finally:
            conn.execute("RESET session_replication_role")
        return _epoch(conn) != epoch

    assert doctor()[0][0] == "ok" and replica_ddl_moves_the_epoch()
    if trigger == "ddl_fence_marks_commit":
        conn.execute(f"ALTER TABLE pgjobs.ddl_fence_marks ENABLE TRIGGER {trigger}")
        # Marked, never counted: the epoch stands until the marks are seen.
        assert not replica_ddl_moves_the_epoch()
        conn.execute("DELETE FROM pgjobs.ddl_fence_marks")
    elif trigger == "pgjobs_ddl_fence_by_tag":
        conn.execute("DROP EVENT TRIGGER pgjobs_ddl_fence;"
                     " CREATE EVENT TRIGGER pgjobs_ddl_fence ON ddl_command_end"
                     " WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION pgjobs._ddl_fence_mark();"
                     " ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS")
    else:
        conn.execute(f"ALTER EVENT TRIGGER {trigger} ENABLE")
    try:
        assert scalar(conn, "SELECT pgjobs._ddl_fence_installed()") is False
        row = doctor()
        assert row[0][0] == "warn" and "ENABLE ALWAYS" in row[0][1], row
        assert "ENABLE ALWAYS" in row[0][2], row
    finally:
        if trigger == "ddl_fence_marks_commit":
            conn.execute(f"ALTER TABLE pgjobs.ddl_fence_marks ENABLE ALWAYS TRIGGER {trigger}")
        elif trigger == "pgjobs_ddl_fence_by_tag":
            conn.execute("DROP EVENT TRIGGER pgjobs_ddl_fence;"
                         " CREATE EVENT TRIGGER pgjobs_ddl_fence ON ddl_command_end"
                         " EXECUTE FUNCTION pgjobs._ddl_fence_mark();"
                         " ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS")
        else:
            conn.execute(f"ALTER EVENT TRIGGER {trigger} ENABLE ALWAYS")
    assert doctor()[0][0] == "ok" and replica_ddl_moves_the_epoch()


def test_a_prepared_holder_with_an_odd_gid_is_named_as_a_statement_that_ends_it(
        conn: Conn, world: None, make_conn: Callable[..., Conn]) -> None:
    """A gid is any text up to 200 bytes (quotes, a backslash, a newline):
    doctor does not fail on it, and the COMMIT PREPARED its words give, run
    as written, ends that prepared transaction and no other."""
    if int(scalar(conn, "SHOW max_prepared_transactions")) == 0:
        pytest.skip("max_prepared_transactions is 0 on this server")
    gid = f"it's \\ a\nodd; gid {os.getpid()}"
    preparer = make_conn()
    preparer.execute("BEGIN")
    preparer.execute(f"SET LOCAL ROLE {CLIENT}")
    preparer.execute("CREATE TABLE tenant.odd_gid (id bigint)")
    preparer.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(gid)))
    try:
        row = _fence_held(conn)
        assert len(row) == 1 and row[0][0] == "warn", row
        statement = row[0][1].split("(end it: ", 1)[1].split(", or ", 1)[0]
        assert statement.startswith("COMMIT PREPARED "), row
        conn.execute(statement)
    finally:
        if scalar(conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,)):
            conn.execute(psycopg.sql.SQL("ROLLBACK PREPARED {}").format(psycopg.sql.Literal(gid)))
    assert scalar(conn, "SELECT to_regclass('tenant.odd_gid') IS NOT NULL") is True
    assert [r[0] for r in _fence_held(conn)] == ["ok"]
