"""Doctor's `jobs.paused` check asks the gate's own rule (issue 11, "one way to do
each thing").

The check kept its own version of the gate: any paused writer with a queued
writer of its scope behind it. The gate (pgjobs._gate_clause, compiled into
pgjobs._writer_may_start and pgjobs._gate_holder) says a paused writer that never
started holds nothing while it is not due, nor an import that no worker claimed
in its first 10 minutes due; doctor warned of both, and told the operator to
resume or cancel a job that kept nobody waiting.

A table of cases: a paused writer (started or not, due or not, a delete or an
import), and another job of the same target behind it, ahead of it, of another
scope, not a writer, not queued. Doctor warns exactly when the gate holds that
other writer behind the paused one, with and without doctor's target argument.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, seed, submit_delete

Conn = psycopg.Connection[Any]

# name: (UPDATE of the paused job, UPDATE of the other job, is the other one
# submitted after the paused one, does the gate hold it)
CASES: dict[str, tuple[str, str, bool, bool]] = {
    "started, due, writer behind":
        ("started_at = now()", "", True, True),
    "started, not due (backing off), writer behind":
        ("started_at = now(), run_at = now() + interval '1 day'", "", True, True),
    "never started, due, writer behind":
        ("", "", True, True),
    "never started, not due, writer behind":
        ("run_at = now() + interval '1 day'", "", True, False),
    "a backfill never started, not due, writer behind":
        ("kind = 'backfill', run_at = now() + interval '1 day'", "", True, False),
    "an import never started, due a minute ago (maybe being claimed)":
        ("kind = 'import', run_at = now() - interval '1 minute'", "", True, True),
    "an import never started, due an hour ago (nobody claims it)":
        ("kind = 'import', run_at = now() - interval '1 hour'", "", True, False),
    "an import that started, due an hour ago":
        ("kind = 'import', run_at = now() - interval '1 hour', started_at = now()", "",
         True, True),
    "started, the writer behind not due yet":
        ("started_at = now()", "run_at = now() + interval '1 day'", True, True),
    "started, the writer behind is of another scope":
        ("started_at = now()", "scope = '2'", True, False),
    "started, the job behind is not a writer":
        ("started_at = now()", "kind = 'export'", True, False),
    "started, the writer behind is paused too":
        ("started_at = now()", "status = 'paused'", True, False),
    "started, the writer behind finished":
        ("started_at = now()", "status = 'succeeded', finished_at = now()", True, False),
    "started, the queued writer is ahead of it":
        ("started_at = now()", "", False, False),
}


@pytest.mark.parametrize("by_target", [False, True], ids=["all", "by target"])
@pytest.mark.parametrize("case", list(CASES))
def test_doctor_warns_exactly_when_the_gate_holds_a_writer_behind(
        conn: Conn, case: str, by_target: bool) -> None:
    paused_set, other_set, other_behind, holds = CASES[case]
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")
    second = submit_delete(conn, target, "1", {"n": 3})
    paused, other = (first, second) if other_behind else (second, first)
    conn.execute("UPDATE pgjobs.jobs SET status = 'paused'"
                 + (f", {paused_set}" if paused_set else "") + " WHERE id = %s", (paused,))
    if other_set:
        conn.execute(f"UPDATE pgjobs.jobs SET {other_set} WHERE id = %s", (other,))

    # The gate's answer for the other job, were it to ask now.
    gate = conn.execute("""
        SELECT status = 'queued' AND writes
               AND coalesce(pgjobs._gate_holder(target, scope, coalesce(gate_order, id)) = %s,
                            false)
          FROM pgjobs.jobs WHERE id = %s""", (paused, other)).fetchone()
    assert gate is not None and gate[0] is holds, (case, gate)

    row = conn.execute("SELECT status, detail, fix FROM pgjobs.doctor(%s::regclass) "
                       "WHERE check_name = 'jobs.paused'",
                       (target.name if by_target else None,)).fetchone()
    assert row is not None
    status, detail, fix = row
    if holds:
        assert status == "warn" and f"ids {paused})" in detail, (case, row)
        assert fix is not None and str(paused) in fix
    else:
        assert (status, fix) == ("ok", None), (case, row)


def test_doctor_of_another_target_does_not_name_the_paused_job(conn: Conn) -> None:
    target = make_rows_target(conn)
    other = make_rows_target(conn, "other_rows")
    seed(conn, target, 30)
    paused = submit_delete(conn, target, "1")
    submit_delete(conn, target, "1", {"n": 3})
    conn.execute("UPDATE pgjobs.jobs SET status = 'paused', started_at = now() WHERE id = %s",
                 (paused,))
    rows = conn.execute("SELECT status FROM pgjobs.doctor(%s::regclass) "
                        "WHERE check_name = 'jobs.paused'", (other.name,)).fetchall()
    assert rows == [("ok",)]
