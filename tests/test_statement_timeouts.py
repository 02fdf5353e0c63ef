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


def slow_delete(conn: Conn) -> int:
    """A delete of 3000 rows' scope whose pages take a while each (a
    trigger sleeps 2 ms a row, pages of 50 keys)."""
    target = make_rows_target(conn)
    seed(conn, target, 3000)
    conn.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
                 " $$ BEGIN PERFORM pg_sleep(0.002); RETURN OLD; END $$")
    conn.execute("CREATE TRIGGER slow BEFORE DELETE ON user_table_rows"
                 " FOR EACH ROW EXECUTE FUNCTION slow()")
    return submit_delete(conn, target, "1", options={"page_size": 50})


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
    WARNING names the setting and the ALTER ROLE that lifts it."""
    job_id = slow_delete(conn)
    if where == "role":
        role = scalar(conn, "SELECT current_user")
        conn.execute(f"ALTER ROLE {role} IN DATABASE {conn.info.dbname}"
                     " SET statement_timeout = '2s'")
        seen = run_with(make_conn, None, "6 seconds")  # a new session takes the role's
        conn.execute(f"ALTER ROLE {role} IN DATABASE {conn.info.dbname}"
                     " RESET statement_timeout")
    else:
        seen = run_with(make_conn, "2s", "6 seconds")
    status, attempts, done, error = conn.execute(
        "SELECT status, attempts, done, error FROM pgjobs.jobs WHERE id = %s",
        (job_id,)).fetchone() or (None, None, None, None)
    assert error is None, error
    assert (status, attempts) == ("queued", 0)
    assert done > 0
    assert len(seen) == 1, seen
    message, hint = seen[0]
    assert "budget 00:00:06 cut to" in message and "statement_timeout (2s)" in message, message
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
    """run_job has no budget to cut: a session statement_timeout still ends
    its page, which fails the attempt (retryably), and the job's error now
    says which settings end a page and what to set; it said only
    'canceling statement due to statement timeout'."""
    job_id = slow_delete(conn)
    runner = make_conn()
    runner.execute("SET statement_timeout = '1s'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job_id,)).fetchone() or (None, None)
    assert status == "queued", status  # retried with backoff
    assert error.startswith("canceling statement due to statement timeout: "), error
    assert "ALTER ROLE ... SET statement_timeout = 0" in error and "(SQLSTATE 57014)" in error
