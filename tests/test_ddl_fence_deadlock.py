"""Operator safety of the DDL fence (h87): a migration's COMMIT never fails
with "deadlock detected" because a delete page is in flight.

A page holds pgjobs.ddl_fence IN ROW SHARE MODE to its commit and then its
statement locks the tables it reaches (the target IN ROW EXCLUSIVE MODE, a
cascading foreign key's child, a table a rule writes into). A DDL
transaction that holds one of those tables (ACCESS EXCLUSIVE for ALTER
TABLE, SHARE for CREATE INDEX and SHARE ROW EXCLUSIVE for ADD FOREIGN
KEY on the referenced table, which the page's ACCESS SHARE of
the target does not wait for) and then commits wants the fence IN EXCLUSIVE
MODE: a lock cycle. The page gives up its wait after its 200 ms
(lock_timeout), but the deadlock check runs in whichever session has waited
its deadlock_timeout first: with a deadlock_timeout under 200 ms (an
operator's setting, 10 ms here) that was the DDL's commit, which failed.

Found, on the old code (main a3e58da): every case below failed the
migration's COMMIT with 40P01. Now pgjobs._ddl_fence_commit waits for the
fence with a deadlock_timeout of its own far above any page's, so a cycle
is always found (or timed out) on the page's side: the page gives up, the
DDL commits and the epoch moves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import scalar, who
from tests.support.waiting import wait_for
from tests.test_trust_ddl_fence import world  # noqa: F401  (fixture)

Conn = psycopg.Connection[Any]

# tenant.rows and its rule into tenant.mine (test_trust_ddl_fence's world).
pytestmark = pytest.mark.usefixtures("world")

# Trusted (the superuser's) tables a delete page of tenant.rows reaches,
# next to the world's rule into tenant.mine.
REACHED = ("CREATE TABLE tenant.kid (n bigint REFERENCES tenant.rows (id) ON DELETE CASCADE);"
           " INSERT INTO tenant.kid SELECT id FROM tenant.rows")

# What a migration holds open while a page runs, on a table the page's
# DELETE locks after taking the fence.
HELD = {
    "create_index_on_the_target": "CREATE INDEX ON tenant.rows (note)",
    "alter_cascade_child": "ALTER TABLE tenant.kid ADD COLUMN x int",
    "create_index_on_cascade_child": "CREATE INDEX ON tenant.kid (n)",
    "foreign_key_to_the_target": "CREATE TABLE tenant.kid2 (n bigint);"
                                 " ALTER TABLE tenant.kid2 ADD FOREIGN KEY (n)"
                                 " REFERENCES tenant.rows (id)",
    "alter_table_a_rule_writes": "ALTER TABLE tenant.mine ADD COLUMN x int",
}


def _waiting(conn: Conn, pid: int) -> bool:
    return scalar(conn, "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock'"
                        " FROM pg_stat_activity WHERE pid = %s", (pid,)) is True


@pytest.mark.parametrize("held", sorted(HELD))
def test_a_migration_commit_never_deadlocks_with_a_page(
        conn: Conn, make_conn: Callable[..., Conn], held: str) -> None:
    conn.execute(REACHED)
    job = int(scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', '1', '{}', '{}',"
                           " '{\"page_size\": 1}')"))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
    worker = who(conn, job, "w")
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
    epoch = int(scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence"))

    migration = make_conn(autocommit=False)
    runner = make_conn()
    runner_pid = scalar(runner, "SELECT pg_backend_pid()")
    migration.execute(HELD[held])
    # Many operators lower it; any value under a page's 200 ms made the
    # DDL's commit the session that found the cycle.
    migration.execute("SET LOCAL deadlock_timeout = '10ms'")
    outcome: list[Any] = []

    def page() -> None:
        try:
            outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        except psycopg.Error as exc:  # reported below
            outcome.append(exc.sqlstate)

    thread = threading.Thread(target=page)
    thread.start()
    committed: object = None
    try:
        wait_for(lambda: _waiting(conn, runner_pid) or outcome,
                 what="the page waits for the migration's table or ends", timeout=20)
        try:
            migration.commit()
            committed = True
        except psycopg.Error as exc:
            committed = exc.sqlstate
    finally:
        migration.rollback()
        thread.join()
    assert committed is True, (committed, outcome)
    assert int(scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence")) == epoch + 1, outcome
    # The page gave up its wait (handed back, nothing deleted) or, if it got
    # the table after the commit, checked in full and went on.
    assert outcome and outcome[0] in ("blocked", "retry", "more", "40P01", "55P03"), outcome


# A migration that fires the fence's commit trigger before its COMMIT holds
# pgjobs.ddl_fence IN EXCLUSIVE MODE from there to its end (Django's
# schema editor runs SET CONSTRAINTS ALL IMMEDIATE after an UPDATE with a
# default, then goes on with its ALTERs).
EARLY = {
    "set_constraints_all_immediate": "SET CONSTRAINTS ALL IMMEDIATE",
    "set_constraints_named_immediate":
        "SET CONSTRAINTS pgjobs.ddl_fence_marks_commit IMMEDIATE",
}


@pytest.mark.parametrize("early", sorted(EARLY))
def test_a_page_never_holds_the_target_while_waiting_for_the_fence(
        conn: Conn, make_conn: Callable[..., Conn], early: str) -> None:
    """The page holds its target (ACCESS SHARE, pgjobs._hold_target) when it
    asks for the fence: waiting there, behind a migration that took the
    fence early, it held the target for the migration's whole remainder,
    and the migration's next ALTER TABLE of the target closed a lock cycle:
    on the old code the page failed with 40P01 at its deadlock check (it
    waited first; the migration, held up meanwhile, would have been the one
    failed with a shorter deadlock_timeout of its own). Now the page does
    not wait for the fence: 'blocked', the step tries it again later."""
    job = int(scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', '1', '{}', '{}',"
                           " '{\"page_size\": 1}')"))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
    worker = who(conn, job, "w")
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
    done = int(scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)))

    migration = make_conn(autocommit=False)
    runner = make_conn()
    runner.execute("SET lock_timeout = '5s'")  # a worker connection's
    runner_pid = scalar(runner, "SELECT pg_backend_pid()")
    migration.execute("CREATE TABLE tenant.early (id bigint)")
    migration.execute(EARLY[early])
    outcome: list[Any] = []

    def page() -> None:
        try:
            outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
        except psycopg.Error as exc:  # reported below
            outcome.append(exc.sqlstate)

    thread = threading.Thread(target=page)
    thread.start()
    committed: object = None
    try:
        wait_for(lambda: _waiting(conn, runner_pid) or outcome,
                 what="the page waits for the fence or ends", timeout=20)
        try:
            migration.execute("ALTER TABLE tenant.rows ADD COLUMN early int")
            migration.commit()
            committed = True
        except psycopg.Error as exc:
            committed = exc.sqlstate
    finally:
        migration.rollback()
        thread.join()
    assert committed is True, (committed, outcome)
    assert outcome == ["blocked"], outcome
    assert int(scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,))) == done
    # The next page runs, after a full check (the epoch moved).
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"


def test_pages_that_start_while_a_ddl_commit_waits_do_not_pass_it(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """Several runners: a DDL commit waits for the page in flight; a page of
    another job that starts meanwhile is refused (the fence's queued
    EXCLUSIVE request conflicts), so overlapping pages cannot starve a
    commit. (A guard: the old code queued that page instead, also without
    starving the commit.)"""
    jobs = []
    for scope in (1, 2):
        job = int(scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', %s, '{}', '{}',"
                               " '{\"page_size\": 1}')", (str(scope),)))
        conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
        worker = who(conn, job, "w")
        while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
            assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
        jobs.append((job, worker))
    first = make_conn(autocommit=False)
    assert scalar(first, "SELECT pgjobs._run_page(%s, %s)", jobs[0]) == "more"
    ddl = make_conn()
    ddl_pid = scalar(ddl, "SELECT pg_backend_pid()")
    events: list[str] = []
    thread = threading.Thread(target=lambda: (
        ddl.execute("CREATE TABLE tenant.elsewhere (id bigint)"), events.append("ddl committed")))
    thread.start()
    try:
        wait_for(lambda: _waiting(conn, ddl_pid) or events, what="the DDL's commit waits",
                 timeout=20)
        second = make_conn()
        events.append(scalar(second, "SELECT pgjobs._run_page(%s, %s)", jobs[1]))
        events.append("first page committed")
        first.commit()
    finally:
        first.rollback()
        thread.join()
    assert events == ["blocked", "first page committed", "ddl committed"], events


def test_two_pages_whose_triggers_run_ddl_do_not_wait_out_the_long_deadlock_check(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A page whose target's trigger runs DDL (a table made on the fly) is a
    DDL transaction: at its commit it wants the fence EXCLUSIVE while holding
    its ROW SHARE. Two such pages wait for each other; the 10 min
    deadlock_timeout the commit trigger waits with (for a migration's sake)
    must not apply to a page, or both hang that long: one of them fails at
    the session's deadlock check, and the other commits."""
    conn.execute("CREATE FUNCTION tenant.make() RETURNS trigger LANGUAGE plpgsql AS $$"
                 " BEGIN EXECUTE format('CREATE TABLE IF NOT EXISTS tenant.made_%s (id bigint)',"
                 " pg_backend_pid()); RETURN old; END $$;"
                 " CREATE TRIGGER make BEFORE DELETE ON tenant.rows"
                 " FOR EACH ROW EXECUTE FUNCTION tenant.make()")
    jobs = []
    for scope in (1, 2):
        job = int(scalar(conn, "SELECT pgjobs.submit_delete('tenant.rows', %s, '{}', '{}',"
                               " '{\"page_size\": 1}')", (str(scope),)))
        conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
        worker = who(conn, job, "w")
        while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
            assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
        jobs.append((job, worker))
    runners = [make_conn(autocommit=False) for _ in jobs]
    for runner, job in zip(runners, jobs, strict=True):
        assert scalar(runner, "SELECT pgjobs._run_page(%s, %s)", job) == "more"
    outcome: list[object] = []

    def commit(runner: Conn) -> None:
        try:
            runner.commit()
            outcome.append("committed")
        except psycopg.Error as exc:  # reported below
            outcome.append(exc.sqlstate)

    threads = [threading.Thread(target=commit, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(outcome) == 2, what="both pages' commits end", timeout=60)
    finally:
        if len(outcome) < 2:
            for runner in runners:
                scalar(conn, "SELECT pg_cancel_backend(%s)", (runner.info.backend_pid,))
        for thread in threads:
            thread.join()
    assert sorted(map(str, outcome)) == ["40P01", "committed"], outcome
