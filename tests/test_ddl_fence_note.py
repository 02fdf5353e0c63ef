"""A job blocked by the DDL fence says why.

A transaction that holds the DDL fence past its commit (a DDL transaction
that ran SET CONSTRAINTS ALL IMMEDIATE and stays open, or a prepared DDL
transaction) blocks every delete and backfill page of the database until it
ends. Doctor named the holder (engine.ddl_fence_held), but the job itself
said nothing: found on main, it stayed `running` with no progress, nothing
in its row, its events or `pgjobs status` (pgjobs.run retried its page every
50 ms to its deadline; pgjobs.run_job retried it for ever).

Now the runner hands it back as it does a job behind its table's lock
(released, the attempt not counted, due again after a back-off) with
checkpoint.throttled saying it waits for the DDL fence, in words that name
no session (a client reads its own job's row, and may not see the holder);
the runner's warning and doctor name the holder. Once the holder ends, the
next page runs, the note is gone, and the job finishes with exactly its rows.

Synchronised on state only: `run_at` is set to now() to stand for the
back-off having passed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support import (
    drain_notifies,
    make_rows_target,
    scalar,
    seed,
    submit_backfill,
    submit_delete,
)
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

REASON = ("waiting for the DDL fence: a transaction holds it past its commit"
          " (doctor: engine.ddl_fence_held)")


def _prepared_ok(conn: Conn) -> None:
    if int(scalar(conn, "SHOW max_prepared_transactions")) == 0:
        pytest.skip("max_prepared_transactions is 0 on this server (the throwaway test "
                    "cluster sets 10: tests/support/pgcluster.py)")


class Holder:
    """A transaction of another session holding the DDL fence past its DDL:
    `words` is what names it (a pid, a gid), `end` ends it."""

    def __init__(self, conn: Conn, make_conn: Callable[..., Conn], how: str) -> None:
        self.conn = conn
        self.how = how
        self.table = f"fence_held_{how}_{os.getpid()}"
        if how == "set_constraints":
            self.session = make_conn(autocommit=False)
            self.session.execute(f"CREATE TABLE {self.table} (id bigint);"
                                 " SET CONSTRAINTS ALL IMMEDIATE")
            self.words = f"pid {scalar(self.session, 'SELECT pg_backend_pid()')} "
        else:
            _prepared_ok(conn)
            self.gid = f"pgjobs_fence_note_{os.getpid()}"
            self.session = make_conn()
            self.session.execute(f"BEGIN; CREATE TABLE {self.table} (id bigint);"
                                 f" PREPARE TRANSACTION '{self.gid}'")
            self.words = f"prepared transaction '{self.gid}'"
        self.ended = False

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.how == "set_constraints":
            self.session.rollback()
        elif scalar(self.conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s",
                    (self.gid,)):
            self.conn.execute(f"COMMIT PREPARED '{self.gid}'")  # the DDL lands
            self.conn.execute(f"DROP TABLE {self.table}")


HOLDERS = ("set_constraints", "prepared")
KINDS = ("delete", "backfill")


@pytest.fixture
def holding(conn: Conn, make_conn: Callable[..., Conn]) -> Iterator[Callable[[str], Holder]]:
    made: list[Holder] = []

    def make(how: str) -> Holder:
        made.append(Holder(conn, make_conn, how))
        return made[-1]

    yield make
    for holder in made:
        holder.end()


def submit(conn: Conn, kind: str, target: Any) -> int:
    options = {"page_size": 10}
    if kind == "delete":
        return submit_delete(conn, target, "1", options=options)
    return submit_backfill(conn, target, "1", {}, {"label": "set"}, options)


def expected_rows(conn: Conn, job_id: int) -> int:
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows t, pgjobs.jobs j"
                            " WHERE j.id = %s AND t.table_id::text = j.scope"
                            " AND t.created_at <= j.cutoff", (job_id,)))


def started(conn: Conn, kind: str) -> tuple[int, int]:
    """A job of the kind that ran its first pages and went back to the queue
    (a runner's budget ran out): started, rows done, rows left."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    job_id = submit(conn, kind, target)
    want = expected_rows(conn, job_id)
    worker = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "more"
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, worker)) is True
    return job_id, want


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        got = cur.execute(
            "SELECT status, attempts, error, lease_expires_at AS lease, run_at > now() AS later,"
            "       checkpoint -> 'throttled' AS throttled, done, result, started_at"
            "  FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert got is not None
    return got


def due_now(conn: Conn, job_id: int) -> None:
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s AND status = 'queued'",
                 (job_id,))


def warnings_of(runner: Conn) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    return seen


def assert_waits_for_the_fence(conn: Conn, job_id: int, holder: Holder) -> dict[str, Any]:
    state = row(conn, job_id)
    assert state["status"] == "queued", state
    assert state["attempts"] == 0 and state["error"] is None and state["lease"] is None, state
    assert state["later"], state  # a back-off, not a busy loop
    assert state["started_at"] is not None, state  # its place in the scope's gate
    throttled = state["throttled"]
    assert isinstance(throttled, dict), state
    assert throttled["reason"].startswith(REASON), throttled
    assert throttled["waits_for"] == "ddl_fence" and throttled.get("since"), throttled
    assert_names_no_session(throttled, holder)
    return state


def assert_names_no_session(note: Any, holder: Holder) -> None:
    words = str(note)
    assert holder.words.strip() not in words and "pg_terminate_backend" not in words, words
    assert holder.table not in words and " pid " not in f" {words}", words


def assert_finished(conn: Conn, job_id: int, kind: str, want: int) -> None:
    state = row(conn, job_id)
    assert state["status"] == "succeeded", state
    assert state["attempts"] == 1 and state["throttled"] is None, state
    assert state["done"] == want, (state, want)
    if kind == "delete":
        assert state["result"]["deleted"] == want
        assert scalar(conn, "SELECT count(*) FROM user_table_rows t, pgjobs.jobs j"
                            " WHERE j.id = %s AND t.table_id = 1"
                            " AND t.created_at <= j.cutoff", (job_id,)) == 0
    else:
        assert state["result"]["updated"] == want
        assert scalar(conn, "SELECT count(*) FROM user_table_rows t, pgjobs.jobs j"
                            " WHERE j.id = %s AND t.table_id = 1 AND t.label = 'set'"
                            " AND t.created_at <= j.cutoff", (job_id,)) == want


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", HOLDERS)
def test_a_job_blocked_by_the_fence_says_why_and_finishes_after(
        conn: Conn, make_conn: Callable[..., Conn], holding: Callable[[str], Holder],
        how: str, kind: str) -> None:
    """pgjobs.run behind the holder: the job is handed back each time with the
    fence's reason (one spell: `since` kept, one `throttled` event), the
    runner warns once naming the holder; `pgjobs status` shows the reason.
    Once the holder ends the job finishes with exactly its rows, the note gone."""
    from cli.progress import note
    from pgjobs import queries

    job_id, want = started(conn, kind)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    holder = holding(how)
    runner = make_conn()
    seen = warnings_of(runner)
    first = None
    for _ in range(3):
        runner.execute("CALL pgjobs.run('5 seconds')")
        state = assert_waits_for_the_fence(conn, job_id, holder)
        first = first or state["throttled"]["since"]
        assert state["throttled"]["since"] == first, state
        due_now(conn, job_id)
    assert state["throttled"]["handbacks"] == 3, state
    assert len(seen) == 1, seen
    message, hint = seen[0]
    assert f"job {job_id} left for now" in message and holder.words in message, message
    assert "engine.ddl_fence_held" in hint, hint
    with conn.cursor(row_factory=dict_row) as cur:
        job = cur.execute(queries.GET_JOB, {"id": job_id}).fetchone()
    assert job is not None
    said = note(job) or ""
    assert said.startswith("throttled since ") and REASON in said, said
    events = drain_notifies(listener)
    assert sum(e["event"] == "throttled" for e in events if e["id"] == job_id) == 1, events
    holder.end()
    runner.execute("CALL pgjobs.run('30 seconds')")
    assert_finished(conn, job_id, kind, want)


@pytest.mark.parametrize("how", HOLDERS)
def test_run_job_behind_the_fence_returns_and_the_note_clears_at_the_next_page(
        conn: Conn, make_conn: Callable[..., Conn], holding: Callable[[str], Holder],
        how: str) -> None:
    """pgjobs.run_job retried a page blocked by the fence to its deadline (for
    ever without one); it now returns at once, the job handed back with the
    reason, and again at the next call. The first page after the holder ends
    removes the note while the job still runs."""
    job_id, want = started(conn, "delete")
    holder = holding(how)
    runner = make_conn()
    # Without one (no deadline) this CALL never returned on main; with one it
    # gave the job back at its deadline, no reason in the row.
    runner.execute("SET statement_timeout = '20s'")
    seen = warnings_of(runner)
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert_waits_for_the_fence(conn, job_id, holder)
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))  # early: run_job takes it now
    state = assert_waits_for_the_fence(conn, job_id, holder)
    assert state["throttled"]["handbacks"] == 2, state
    assert len(seen) == 1 and holder.words in seen[0][0], seen  # once a spell
    holder.end()
    worker = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'w2')).worker", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, worker)) == "more"
    state = row(conn, job_id)
    assert state["status"] == "running" and state["throttled"] is None, state
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, worker)) is True
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert_finished(conn, job_id, "delete", want)


def test_a_page_blocked_mid_run_is_handed_back_with_the_reason(
        conn: Conn, holding: Callable[[str], Holder]) -> None:
    """The fence taken between two steps of one claim (not only at a claim):
    the step hands the job back, the reason in its row."""
    job_id, _ = started(conn, "delete")
    worker = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)", (job_id, worker)) == "more"
    holder = holding("set_constraints")
    assert scalar(conn, "SELECT pgjobs._run_step(%s, %s, NULL, 'more')", (job_id, worker)) is None
    assert_waits_for_the_fence(conn, job_id, holder)


@pytest.mark.parametrize("how", HOLDERS)
def test_a_client_reading_its_own_job_sees_the_reason_and_no_session(
        conn: Conn, holding: Callable[[str], Holder], how: str) -> None:
    """A client's job behind another role's fence holder: the client's read
    of its row and `pgjobs status`'s note give the reason and whom to ask,
    no pid, gid or statement; the administrator's doctor names the holder."""
    from cli.progress import note
    from pgjobs import queries

    target = make_rows_target(conn)
    seed(conn, target, 60)
    client = make_role(conn, "fence_client", "GRANT pgjobs_client TO {role}",
                       "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    try:
        conn.execute(f"SET ROLE {client}")
        job_id = submit_delete(conn, target, "1")
        conn.execute("RESET ROLE")
        holder = holding(how)
        conn.execute("CALL pgjobs.run('5 seconds')")
        detail = scalar(conn, "SELECT detail FROM pgjobs.doctor()"
                              " WHERE check_name = 'engine.ddl_fence_held'")
        assert holder.words in detail, detail
        conn.execute(f"SET ROLE {client}")
        with conn.cursor(row_factory=dict_row) as cur:
            job = cur.execute(queries.GET_JOB, {"id": job_id}).fetchone()
            checkpoint = scalar(conn, "SELECT checkpoint FROM pgjobs.jobs WHERE id = %s",
                                (job_id,))
        conn.execute("RESET ROLE")
        assert job is not None and job["status"] == "queued", job
        said = note(job) or ""
        assert REASON in said and "administrator" in said, said
        assert_names_no_session(said, holder)
        assert_names_no_session(checkpoint, holder)
        holder.end()
        due_now(conn, job_id)
        conn.execute("CALL pgjobs.run('30 seconds')")
        assert row(conn, job_id)["status"] == "succeeded"
        assert row(conn, job_id)["throttled"] is None
    finally:
        drop_role(conn, client)
