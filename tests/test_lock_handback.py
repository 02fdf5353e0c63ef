"""A long migration on a target does not cost the jobs queued on it.

Found by the operator pass of stop 33: behind an uncommitted `ALTER TABLE`
(another session holding the target ACCESS EXCLUSIVE), each `CALL
pgjobs.run` left the delete or backfill after its 1 s wait with its lease
still held; the lease's expiry counted a failed attempt, and after 5 of them
(about 2.5 minutes) the job ended `failed` with "lease expired", nothing
about the lock. A page behind a SHARE lock (LOCK TABLE ... IN SHARE MODE, a
CREATE INDEX) kept its runner retrying it for the runner's whole budget and
failed the attempt after 1000 waits.

Now a page that cannot get its table is handed back at once (lease
released, the attempt not counted, its place in the scope's gate kept), due
again a few seconds later, with checkpoint.throttled naming the table and
the holding session; it finishes, every row, once the holder ends. These
tests synchronise on state only (pg_locks, the job's row), never on time:
`run_at` is set to now() to stand for the back-off having passed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import (
    drain_notifies,
    make_rows_target,
    scalar,
    seed,
    submit_backfill,
    submit_delete,
    wait_for,
)
from tests.support.cli import cli_env

Conn = psycopg.Connection[Any]

# Sessions that hold the target in a mode a page cannot work under, left open.
HOLDS = {
    "alter_table": "ALTER TABLE user_table_rows ADD COLUMN x integer",
    "access_exclusive": "LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE",
    "exclusive": "LOCK TABLE user_table_rows IN EXCLUSIVE MODE",
    "share": "LOCK TABLE user_table_rows IN SHARE MODE",
    "share_row_exclusive": "LOCK TABLE user_table_rows IN SHARE ROW EXCLUSIVE MODE",
    "create_index": "CREATE INDEX ON user_table_rows (n)",
}

KINDS = ("delete", "backfill")


def submit(conn: Conn, kind: str, target: Any, scope: str = "1") -> int:
    if kind == "delete":
        return submit_delete(conn, target, scope)
    return submit_backfill(conn, target, scope, {}, {"label": "set"})


def expected_rows(conn: Conn, job_id: int) -> int:
    """The rows the job must touch: its scope's rows dated at or before its cutoff."""
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows t, pgjobs.jobs j"
                            " WHERE j.id = %s AND t.table_id::text = j.scope"
                            " AND t.created_at <= j.cutoff", (job_id,)))


def warnings_of(runner: Conn) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append((diag.message_primary or "", diag.message_hint or ""))

    runner.add_notice_handler(keep)
    return seen


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    got = conn.execute(
        "SELECT status, attempts, error, lease_expires_at, worker, run_at > now() AS later,"
        "       checkpoint -> 'throttled' AS throttled, done, result, started_at"
        "  FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert got is not None
    keys = ("status", "attempts", "error", "lease", "worker", "later", "throttled", "done",
            "result", "started_at")
    return dict(zip(keys, got, strict=True))


def hold(make_conn: Callable[..., Conn], sql: str) -> tuple[Conn, int]:
    holder = make_conn(autocommit=False)
    holder.execute("SET application_name = 'migration'")
    holder.execute(sql)
    return holder, int(scalar(holder, "SELECT pg_backend_pid()"))


def due_now(conn: Conn, job_id: int) -> None:
    """The back-off has passed (what a few seconds would do)."""
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s AND status = 'queued'",
                  (job_id,))


def assert_handed_back(conn: Conn, job_id: int, pid: int) -> dict[str, Any]:
    state = row(conn, job_id)
    assert state["status"] == "queued", state
    assert state["attempts"] == 0, state  # no attempt counted
    assert state["lease"] is None and state["error"] is None, state
    assert state["later"], state  # a back-off, not a busy loop
    assert state["started_at"] is not None, state  # its place in the gate: started
    throttled = state["throttled"]
    assert isinstance(throttled, dict), state
    reason = throttled["reason"]
    assert "its table public.user_table_rows" in reason, reason
    assert f"pid {pid} (role " in reason and "application migration" in reason, reason
    assert "pg_terminate_backend" in reason, reason
    assert throttled.get("since"), throttled
    return state


@pytest.mark.parametrize("hold_name", sorted(HOLDS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_job_behind_its_tables_lock_is_handed_back_and_finishes_after(
        conn: Conn, make_conn: Callable[..., Conn], kind: str, hold_name: str) -> None:
    """Runs of the engine behind the holder: the job is handed back each time
    (no attempt, no lease, no error, due later), its reason names the
    holder, and the runner warns once per spell, naming it; once the holder
    ends, the job finishes with exactly its rows."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    job_id = submit(conn, kind, target)
    want = expected_rows(conn, job_id)
    holder, pid = hold(make_conn, HOLDS[hold_name])
    runner = make_conn()
    seen = warnings_of(runner)
    try:
        for _ in range(3):
            runner.execute("CALL pgjobs.run('5 seconds')")
            assert_handed_back(conn, job_id, pid)
            due_now(conn, job_id)
        assert seen, "no warning"
        message, hint = seen[0]
        assert f"job {job_id}" in message and f"pid {pid} (role " in message, message
        assert "pg_terminate_backend" in hint, hint
    finally:
        holder.rollback()
    runner.execute("CALL pgjobs.run('30 seconds')")
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
        assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                            " AND label = 'set'") == want


@pytest.mark.parametrize("kind", KINDS)
def test_run_job_behind_its_tables_lock_hands_the_job_back(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """pgjobs.run_job returns after its wait, the job handed back the same
    way (it was left with its lease held, to expire into a failed attempt);
    run_job again after the holder commits finishes it."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    job_id = submit(conn, kind, target)
    want = expected_rows(conn, job_id)
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    runner = make_conn()
    seen = warnings_of(runner)
    try:
        runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
        assert_handed_back(conn, job_id, pid)
        runner.execute("CALL pgjobs.run_job(%s)", (job_id,))  # early: run_job takes it now
        assert_handed_back(conn, job_id, pid)
    finally:
        holder.commit()  # the migration lands: the job goes on
    assert len(seen) == 2 and f"job {job_id} left for now" in seen[0][0], seen
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    state = row(conn, job_id)
    assert state["status"] == "succeeded" and state["done"] == want, (state, want)


def test_a_lease_lapse_no_longer_fails_a_job_behind_a_migration(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """The reported sequence: five runs behind an open ALTER TABLE, each
    followed by what the lapse of a lease would do (the rescue). The job is
    still queued with no attempt counted; it used to end `failed`, 'lease
    expired'."""
    target = make_rows_target(conn)
    seed(conn, target, 60)
    job_id = submit(conn, "delete", target)
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    runner = make_conn()
    try:
        for _ in range(6):
            runner.execute("CALL pgjobs.run('5 seconds')")
            conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 s'"
                         " WHERE id = %s AND status = 'running'", (job_id,))
            conn.execute("SELECT pgjobs.prune()")
            due_now(conn, job_id)
        runner.execute("CALL pgjobs.run('5 seconds')")
        assert_handed_back(conn, job_id, pid)
        assert row(conn, job_id)["throttled"]["handbacks"] == 7
    finally:
        holder.rollback()


@pytest.mark.parametrize("kind", KINDS)
def test_the_scopes_next_writer_does_not_overtake_a_job_handed_back(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """While the first writer of a scope waits handed back, a second writer
    of the same scope (submitted after it) never starts: the gate holds its
    place. A job of another table and scope runs meanwhile."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    other = make_rows_target(conn, "other_rows")
    conn.execute("INSERT INTO other_rows (table_id, n) SELECT 7, g FROM generate_series(1, 40) g")
    first = submit(conn, kind, target)
    second = submit_delete(conn, target, "1")
    elsewhere = submit_delete(conn, other, "7")
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    runner = make_conn()
    try:
        for _ in range(3):
            runner.execute("CALL pgjobs.run('5 seconds')")
            assert_handed_back(conn, first, pid)
            assert row(conn, second)["started_at"] is None
            due_now(conn, first)
        assert row(conn, elsewhere)["status"] == "succeeded"
        assert scalar(conn, "SELECT count(*) FROM other_rows") == 0
    finally:
        holder.rollback()
    runner.execute("CALL pgjobs.run('30 seconds')")
    assert row(conn, first)["status"] == "succeeded"
    assert row(conn, second)["status"] == "succeeded"


@pytest.mark.parametrize("verb", ["cancel", "pause"])
@pytest.mark.parametrize("kind", KINDS)
def test_cancel_and_pause_act_on_a_job_waiting_for_its_table(
        conn: Conn, make_conn: Callable[..., Conn], kind: str, verb: str) -> None:
    """While a step waits for the table (the holder came after the claim's
    first step) the verb waits at most for that step, and the job ends
    canceled or paused, lease released; while it is handed back the verbs
    act at once."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    job_id = submit(conn, kind, target)
    runner = make_conn()
    warnings_of(runner)
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) == "more"  # the first call: the count
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    try:
        thread = threading.Thread(target=lambda: runner.execute(
            "SELECT pgjobs._run_step(%s, %s, NULL, 'more')", (job_id, identity)), daemon=True)
        thread.start()
        # The step's wait for the table (or, if this look came too late, its
        # hand-back after it: the verb acts on the job either way).
        wait_for(lambda: not thread.is_alive() or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE NOT granted"
                  " AND relation = 'user_table_rows'::regclass") > 0,
                 timeout=60, what="the step waiting for the table")
        assert scalar(conn, f"SELECT pgjobs.{verb}(%s)", (job_id,)) is True
        thread.join(120)
        assert not thread.is_alive()
        state = row(conn, job_id)
        want = "canceled" if verb == "cancel" else "paused"
        assert state["status"] == want and state["lease"] is None, state
        if verb == "pause":
            assert state["attempts"] == 0, state
            assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
            due_now(conn, job_id)
            runner.execute("CALL pgjobs.run('5 seconds')")
            assert_handed_back(conn, job_id, pid)
            # Handed back: the verbs act at once.
            assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
            assert row(conn, job_id)["status"] == "paused"
            assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
            assert row(conn, job_id)["status"] == "canceled"
    finally:
        holder.rollback()


def test_the_status_note_says_the_job_waits_for_the_holder(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """`pgjobs status` (the job's note) shows a job handed back as waiting
    for its table, naming the session; the spell sent one `throttled`."""
    from cli.progress import note
    from pgjobs import queries

    target = make_rows_target(conn)
    seed(conn, target, 60)
    job_id = submit(conn, "delete", target)
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    try:
        make_conn().execute("CALL pgjobs.run('5 seconds')")
        due_now(conn, job_id)
        make_conn().execute("CALL pgjobs.run('5 seconds')")
        from psycopg.rows import dict_row
        with conn.cursor(row_factory=dict_row) as cur:
            job = cur.execute(queries.GET_JOB, {"id": job_id}).fetchone()
        assert job is not None
        said = note(job) or ""
        assert said.startswith("throttled since "), said
        assert f"pid {pid} (role " in said and "public.user_table_rows" in said, said
        events = drain_notifies(listener)
        assert sum(e["event"] == "throttled" for e in events) == 1, events
    finally:
        holder.rollback()


def test_the_run_loop_cli_waits_out_a_migration_and_finishes_the_job(
        dsn: str, conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """`pgjobs run --loop` (real back-off, no run_at nudged): behind an open
    ALTER TABLE the delete is handed back again and again without an attempt,
    a job of another table runs meanwhile, and once the migration commits the
    delete finishes with every row, on its first attempt."""
    import signal
    import subprocess
    import sys

    target = make_rows_target(conn)
    seed(conn, target, 120)
    other = make_rows_target(conn, "other_rows")
    conn.execute("INSERT INTO other_rows (table_id, n) SELECT 7, g FROM generate_series(1, 40) g")
    job_id = submit(conn, "delete", target)
    want = expected_rows(conn, job_id)
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, "run",
                             "--loop", "--budget", "5s", "--idle", "0.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_for(lambda: (row(conn, job_id)["throttled"] or {}).get("handbacks", 0) >= 2,
                     timeout=120, what="two hand-backs")
            elsewhere = submit_delete(conn, other, "7")
            wait_for(lambda: row(conn, elsewhere)["status"] == "succeeded", timeout=120,
                     what="the other table's job")
            state = row(conn, job_id)
            assert state["status"] in ("queued", "running") and state["attempts"] <= 1, state
            assert state["error"] is None, state
        finally:
            holder.commit()
        wait_for(lambda: row(conn, job_id)["status"] not in ("queued", "running"),
                 timeout=120, what="the job to end")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    state = row(conn, job_id)
    assert state["status"] == "succeeded" and state["attempts"] == 1, state
    assert state["done"] == want and state["throttled"] is None, (state, want)
    assert pid > 0


@pytest.mark.parametrize("kind", KINDS)
def test_an_alter_table_queued_behind_a_long_query_hands_the_job_back_too(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """An ALTER TABLE waiting for a long query (which holds the table only
    ACCESS SHARE) holds up every later request for the table, the page's
    too, and no session holds a lock that conflicts with the page: the job
    was left with its lease held ('its row or its table'). The queued
    request counts as a holder: handed back, the reason naming the ALTER's
    session and whom it waits behind; once both end, the job finishes."""
    target = make_rows_target(conn)
    seed(conn, target, 120)
    job_id = submit(conn, kind, target)
    want = expected_rows(conn, job_id)
    reader = make_conn(autocommit=False)
    reader.execute("SELECT count(*) FROM user_table_rows")  # and the transaction stays open
    reader_pid = int(scalar(reader, "SELECT pg_backend_pid()"))
    migrator = make_conn()
    migrator.execute("SET application_name = 'migration'")
    alter_pid = int(scalar(migrator, "SELECT pg_backend_pid()"))
    thread = threading.Thread(target=lambda: migrator.execute(HOLDS["alter_table"]), daemon=True)
    thread.start()
    try:
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_locks WHERE NOT granted"
                                      " AND pid = %s", (alter_pid,)) > 0,
                 timeout=60, what="the ALTER TABLE queued behind the reader")
        runner = make_conn()
        warnings_of(runner)
        runner.execute("CALL pgjobs.run('5 seconds')")
        state = assert_handed_back(conn, job_id, alter_pid)
        assert f"queued behind pid {reader_pid}" in state["throttled"]["reason"], state
    finally:
        reader.rollback()
    thread.join(60)
    assert not thread.is_alive()
    due_now(conn, job_id)
    make_conn().execute("CALL pgjobs.run('30 seconds')")
    state = row(conn, job_id)
    assert state["status"] == "succeeded" and state["attempts"] == 1, state
    assert state["done"] == want, (state, want)


@pytest.mark.parametrize("kind", KINDS)
def test_a_rate_limited_job_handed_back_before_its_first_page_still_counts_its_rows(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """A job handed back at its claim's look-up, before its first page, has a
    checkpoint that holds only the note. pgjobs._throttle took that for a
    started job: with max_rows_per_second it wrote page_size into it, and the
    first page then took {"page_size"} for a cursor: no count (total stayed
    NULL: no progress, no ETA), no strategy chosen. The first step after the
    holder ends counts the rows as any first step does."""
    target = make_rows_target(conn)
    seed(conn, target, 6000)
    options = {"max_rows_per_second": 500}
    if kind == "delete":
        job_id = submit_delete(conn, target, "1", options=options)
    else:
        job_id = submit_backfill(conn, target, "1", {}, {"label": "set"}, options)
    want = expected_rows(conn, job_id)
    holder, pid = hold(make_conn, HOLDS["share"])
    runner = make_conn()
    warnings_of(runner)
    try:
        runner.execute("CALL pgjobs.run('5 seconds')")
        assert_handed_back(conn, job_id, pid)
        due_now(conn, job_id)
    finally:
        holder.rollback()
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert scalar(runner, "SELECT pgjobs._run_step(%s, %s, NULL, NULL)",
                  (job_id, identity)) == "more"
    got = conn.execute("SELECT done, total, checkpoint FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert got is not None
    done, total, checkpoint = got
    assert done == 0 and total == want, got  # the first step counts, nothing else
    assert checkpoint.get("strategy") in ("range", "collect") and "throttled" not in checkpoint, got


PARTITION_HOLDS = {
    "create_index": "CREATE INDEX ON {leaf} (n)",
    "lock_share": "LOCK TABLE {leaf} IN SHARE MODE",
    "alter_table": "ALTER TABLE {leaf} ADD CONSTRAINT c CHECK (n > -1) NOT VALID",
}


@pytest.mark.parametrize("hold_name", sorted(PARTITION_HOLDS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_job_behind_a_partition_of_its_table_is_handed_back(
        conn: Conn, make_conn: Callable[..., Conn], kind: str, hold_name: str) -> None:
    """A partitioned target whose leaf holding the scope another session
    holds (an operator's CREATE INDEX or ALTER TABLE on one partition): the
    page waits on the leaf, and the look-up on the parent found nobody, so
    the page was retried like one behind rows: the runner's whole budget
    each run, the holder unnamed, the attempt failed after 1000 waits. It is
    handed back like a job behind the table itself, the leaf and the holder
    named; it finishes once the holder ends."""
    from tests.test_partitioned import make_partitioned

    target = make_partitioned(conn, "hash")
    leaf = scalar(conn, "SELECT tableoid::regclass::text FROM user_table_rows"
                        " WHERE table_id = 1 LIMIT 1")
    job_id = submit(conn, kind, target)
    want = expected_rows(conn, job_id)
    holder, pid = hold(make_conn, PARTITION_HOLDS[hold_name].format(leaf=leaf))
    runner = make_conn()
    seen = warnings_of(runner)
    try:
        runner.execute("CALL pgjobs.run('60 seconds')")  # returns at the hand-back
        state = assert_handed_back(conn, job_id, pid)
        assert f"(on its partition public.{leaf})" in state["throttled"]["reason"], state
        assert seen and f"pid {pid} (role " in seen[0][0], seen
    finally:
        holder.rollback()
    due_now(conn, job_id)
    runner.execute("CALL pgjobs.run('30 seconds')")
    state = row(conn, job_id)
    assert state["status"] == "succeeded" and state["attempts"] == 1, state
    assert state["done"] == want and state["throttled"] is None, (state, want)


def test_a_partition_held_that_the_scope_does_not_touch_holds_nothing(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """The other side: a leaf of another scope held (LIST by scope) does not
    hand the job back; it runs to the end."""
    from tests.test_partitioned import make_partitioned

    target = make_partitioned(conn, "list")
    job_id = submit(conn, "delete", target)
    want = expected_rows(conn, job_id)
    holder, _ = hold(make_conn, "LOCK TABLE rows_2 IN ACCESS EXCLUSIVE MODE")
    try:
        make_conn().execute("CALL pgjobs.run('30 seconds')")
        state = row(conn, job_id)
    finally:
        holder.rollback()
    assert state["status"] == "succeeded" and state["done"] == want, state
