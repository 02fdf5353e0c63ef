"""A page run on a verdict dated in the page's own statement.

A page trusts the verdict in its job's checkpoint for 1 s (pgjobs._run_page:
``verified.at`` between its start, by clock_timestamp(), and 1 s before). A
test that dates the verdict in one statement and runs the page in the next
left the client's round trips in between, and a loaded machine can stall a
session for a second between two statements: the page then checked in full,
which the design asks of a verdict 1 s old, and the test that meant a page on
a fresh verdict failed (or a full check failed its job). Dated inside the
statement that runs the page, the verdict is as old as the page wants it,
however slow the machine.
"""

from __future__ import annotations

from typing import Any

import psycopg

DATED_PAGE = """
CREATE FUNCTION public.dated_page(p_job bigint, p_worker text, p_age double precision,
                                  p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_at jsonb;
BEGIN
    UPDATE pgjobs.jobs
       SET checkpoint = jsonb_set(checkpoint, '{verified,at}',
                                  to_jsonb(extract(epoch FROM clock_timestamp()) - p_age))
     WHERE id = p_job
    RETURNING checkpoint -> 'verified' -> 'at' INTO v_at;
    IF p_role IS NOT NULL THEN
        PERFORM set_config('role', p_role, true);  -- the page runs as the runner's role
    END IF;
    RETURN jsonb_build_array(pgjobs._run_page(p_job, p_worker), v_at);
END $$"""
"""Created by a superuser before the job is submitted (a CREATE FUNCTION is
DDL: it moves the DDL fence's epoch, which would make the next page check in
full)."""


def install_dated_page(conn: psycopg.Connection[Any]) -> None:
    conn.execute(DATED_PAGE)


def dated_page(runner: psycopg.Connection[Any], job: int, worker: str, *,
               age: float = 0.0, role: str | None = None) -> tuple[str, Any]:
    """The next page of ``job`` on ``runner`` (whose session user installed
    the function; role: the role the page runs as, restored after), its
    verdict dated ``age`` seconds before, in the same statement. Returns the
    page's state and the date written. The transaction is committed."""
    if role is not None:
        runner.execute("RESET ROLE")
    row = runner.execute("SELECT public.dated_page(%s, %s, %s, %s)",
                         (job, worker, age, role)).fetchone()
    assert row is not None
    state, at = row[0]
    runner.commit()
    if role is not None:
        runner.execute(f"SET ROLE {role}")
        runner.commit()
    return str(state), at
