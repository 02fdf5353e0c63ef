"""A statement_timeout on the engine's session ends no job's attempt.

statement_timeout times a whole CALL, its COMMITs included: a page's own
SET of it does not re-arm the timer. With one set on the role or database
the engine runs as (pg_cron runs a job as its owner), each `CALL
pgjobs.run('50 seconds')` was canceled when it ran out, in the middle of a
page, and that page failed its job's attempt (57014, retried with
backoff): a job longer than the timeout failed for good after
max_attempts runs, half done, saying only `canceling statement due to
statement timeout`. pgjobs.run now stops before the timer (its budget cut
to it, with a WARNING that says why and what to set) and releases the job
with its cursor, counting no attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed, submit_delete

Conn = psycopg.Connection[Any]


def slow_delete(conn: Conn, page_size: int = 50, per_row: float = 0.002) -> int:
    """A delete of 3000 rows' scope whose pages take a while each (a
    trigger sleeps per_row seconds a row, 2 ms; pages of 50 keys)."""
    target = make_rows_target(conn)
    seed(conn, target, 3000)
    conn.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
                 f" $$ BEGIN PERFORM pg_sleep({per_row}); RETURN OLD; END $$")
    conn.execute("CREATE TRIGGER slow BEFORE DELETE ON user_table_rows"
                 " FOR EACH ROW EXECUTE FUNCTION slow()")
    return submit_delete(conn, target, "1", options={"page_size": page_size})


def run_with(make_conn: Callable[..., Conn], timeout: str | None,
             budget: str) -> list[tuple[str, str]]:
    """CALL pgjobs.run(budget) in a new session, with statement_timeout set
    there (None: the role's); the WARNINGs it raised."""
    runner = make_conn()
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    if timeout is not None:
        runner.execute(f"SET statement_timeout = '{timeout}'")
    runner.execute("CALL pgjobs.run(%s::interval)", (budget,))
    return seen


@pytest.mark.parametrize("where", ["session", "role"])
def test_a_run_under_a_shorter_statement_timeout_releases_its_job(
        conn: Conn, make_conn: Callable[..., Conn], where: str) -> None:
    """The run stops claiming and releases its job before the session's
    statement_timeout (set in the session or on its role) ends the call:
    the job keeps its cursor and every attempt, has no error, and a
    WARNING names the setting and the ALTER ROLE that lifts it. (5 ms a row:
    the scope's 1500 rows outlast the 4 s the run gets; the timer's margin,
    a fifth of it, outlasts a page of 50 on a loaded machine.)"""
    job_id = slow_delete(conn, per_row=0.005)
    if where == "role":
        role = scalar(conn, "SELECT current_user")
        conn.execute(f"ALTER ROLE {role} IN DATABASE {conn.info.dbname}"
                     " SET statement_timeout = '5s'")
        seen = run_with(make_conn, None, "15 seconds")  # a new session takes the role's
        conn.execute(f"ALTER ROLE {role} IN DATABASE {conn.info.dbname}"
                     " RESET statement_timeout")
    else:
        seen = run_with(make_conn, "5s", "15 seconds")
    status, attempts, done, error = conn.execute(
        "SELECT status, attempts, done, error FROM pgjobs.jobs WHERE id = %s",
        (job_id,)).fetchone() or (None, None, None, None)
    assert error is None, error
    assert (status, attempts) == ("queued", 0)
    assert done > 0
    assert len(seen) == 1, seen
    message, hint = seen[0]
    assert "budget 00:00:15 cut to" in message and "statement_timeout (5s)" in message, message
    assert "SET statement_timeout = 0" in hint, hint
    # The next run goes on from the cursor.
    run_with(make_conn, "0", "2 seconds")
    assert scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)) > done


@pytest.mark.parametrize("timeout", ["0", "1h"])
def test_a_run_within_its_statement_timeout_is_not_cut(
        conn: Conn, make_conn: Callable[..., Conn], timeout: str) -> None:
    """No statement_timeout, or one well past the budget: no warning, the
    budget as given."""
    job_id = slow_delete(conn)
    seen = run_with(make_conn, timeout, "1 second")
    assert seen == []
    assert scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,)) is None


def test_a_page_a_statement_timeout_ends_says_which_setting(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A page longer than the call's whole statement_timeout (here the first
    page, 1000 keys at 5 ms, under 3 s: the CALL's own work before the page,
    most of a second under load, stays inside the timer) is still canceled
    by it, which fails
    the attempt (retryably), and the job's error says which settings end a
    page and what to set; it said only 'canceling statement due to
    statement timeout'. (run_job's pages were 50 keys here: run_job now
    hands its job back before the timer, below, so the page is made longer
    than the timeout to reach the message.)"""
    job_id = slow_delete(conn, page_size=1000, per_row=0.005)
    runner = make_conn()
    runner.execute("SET statement_timeout = '3s'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job_id,)).fetchone() or (None, None)
    assert status == "queued", status  # retried with backoff
    assert error.startswith("canceling statement due to statement timeout: "), error
    assert "ALTER ROLE ... SET statement_timeout = 0" in error and "(SQLSTATE 57014)" in error


def run_job_with(make_conn: Callable[..., Conn], job_id: int,
                 timeout: str) -> list[tuple[str, str]]:
    """CALL pgjobs.run_job(job_id) in a new session under statement_timeout;
    the WARNINGs it raised."""
    runner = make_conn()
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    runner.execute(f"SET statement_timeout = '{timeout}'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    return seen


def test_run_job_hands_its_job_back_before_the_statement_timeout(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """run_job has no budget of its own; the session's statement_timeout,
    which times the whole CALL, is its budget: the call hands the job back
    with its cursor before the timer (no attempt counted, no error, due at
    once) and returns, a WARNING saying so and what to set. The timer
    canceled the page in flight instead, which failed the attempt: retried
    after a backoff, and failed for good after max_attempts such calls.
    (5 ms a row, as above.)"""
    job_id = slow_delete(conn, per_row=0.005)
    seen = run_job_with(make_conn, job_id, "5s")
    status, attempts, done, error, due = conn.execute(
        "SELECT status, attempts, done, error, run_at <= now() FROM pgjobs.jobs WHERE id = %s",
        (job_id,)).fetchone() or (None, None, None, None, None)
    assert error is None, error
    assert (status, attempts, due) == ("queued", 0, True)
    assert done > 0
    assert len(seen) == 1, seen
    message, hint = seen[0]
    assert f"job {job_id} handed back" in message and "statement_timeout (5s)" in message
    assert f"pgjobs.run_job({job_id})" in hint and "statement_timeout = 0" in hint, hint
    # The next call goes on from the cursor, and one without a timeout ends it.
    assert run_job_with(make_conn, job_id, "0") == []
    status, total, done_now = conn.execute(
        "SELECT status, total, done FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone() \
        or (None, None, None)
    assert status == "succeeded" and done_now == total and done_now > done


def test_run_job_within_its_statement_timeout_runs_to_the_end(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    job_id = slow_delete(conn, page_size=1000)
    assert run_job_with(make_conn, job_id, "1h") == []
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
