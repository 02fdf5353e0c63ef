"""Pause, resume, retry (issue 10 item 5) against real PostgreSQL: every state x
verb, the events, who may, a pause honoured where a cancel is (engine page,
heartbeat, release, fail, lease rescue), a paused writer holding its scope and
its mask, a retry's place in the writer queue, and the exact rows of deletes and
backfills paused mid-page, resumed on another runner and retried after a
failure mid-job."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import errors

from tests.support import (
    Conn,
    Target,
    claim,
    cutoff_of,
    drain_notifies,
    expire_lease,
    insert_row,
    job,
    job_rows,
    make_rows_target,
    make_target,
    run_job,
    scalar,
    seed,
    snapshot,
    submit,
    submit_backfill,
    submit_delete,
    wait_for,
)

MakeConn = Callable[..., Conn]
STATES = ["queued", "running", "paused", "succeeded", "failed", "canceled"]
KINDS = ["custom", "delete"]


@pytest.fixture
def rows(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t)
    return t


def verb(conn: Conn, name: str, job_id: int) -> bool:
    return bool(scalar(conn, f"SELECT pgjobs.{name}(%s)", (job_id,)))


def new_job(conn: Conn, kind: str, **options: Any) -> int:
    if kind == "delete":
        return scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', "
                            "%s::jsonb)", (json.dumps(options),))
    return submit(conn, kind="custom", options=options)


def claim_one(conn: Conn, job_id: int, kind: str, worker: str = "w") -> str:
    """Claim job_id (the only queued one of its kind); returns the claim's identity."""
    assert claim(conn, worker, kinds=[kind]) == [job_id]
    return str(job(conn, job_id)["worker"])


def job_in(conn: Conn, kind: str, state: str) -> int:
    """A job of `kind` in `state`, made through the public functions."""
    job_id = new_job(conn, kind, max_attempts=1)
    if state == "paused":
        assert verb(conn, "pause", job_id)
    elif state == "canceled":
        assert verb(conn, "cancel", job_id)
    elif state != "queued":
        identity = claim_one(conn, job_id, kind)
        if state == "succeeded":
            assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, identity))
        elif state == "failed":
            assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom', false)", (job_id, identity))
    assert job(conn, job_id)["status"] == state
    return job_id


@pytest.fixture
def kind(request: pytest.FixtureRequest, conn: Conn) -> str:
    if request.param == "delete":
        make_rows_target(conn)
    else:
        make_target(conn)
    return str(request.param)


ALLOWED = {("pause", "queued"): "paused", ("pause", "running"): "running",
           ("resume", "paused"): "queued",
           ("retry", "failed"): "queued", ("retry", "canceled"): "queued"}


@pytest.mark.parametrize("kind", KINDS, indirect=True)
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", ["pause", "resume", "retry"])
def test_every_state_and_verb(conn: Conn, kind: str, state: str, name: str) -> None:
    job_id = job_in(conn, kind, state)
    before = job(conn, job_id)
    if (name, state) in ALLOWED:
        assert verb(conn, name, job_id) is True
        after = job(conn, job_id)
        assert after["status"] == ALLOWED[name, state]
        if name == "pause" and state == "running":
            assert after["pause_requested_at"] is not None
        if name == "retry":
            assert after["attempts"] == 0 and after["error"] is None
            assert after["finished_at"] is None and after["cancel_requested_at"] is None
    elif name == "pause" and state == "paused":
        assert verb(conn, name, job_id) is False  # already: nothing changes
        assert job(conn, job_id) == before
    else:
        with pytest.raises(errors.ObjectNotInPrerequisiteState) as exc:
            verb(conn, name, job_id)
        assert exc.value.diag.message_hint
        assert job(conn, job_id) == before


@pytest.mark.parametrize("name", ["pause", "resume", "retry"])
def test_unknown_job(conn: Conn, name: str) -> None:
    with pytest.raises(errors.NoDataFound) as exc:
        verb(conn, name, 424242)
    assert exc.value.diag.message_hint


def test_events(conn: Conn, make_conn: MakeConn) -> None:
    make_target(conn)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    job_id = submit(conn)
    drain_notifies(listener, 0.2)
    verb(conn, "pause", job_id)
    verb(conn, "resume", job_id)
    identity = claim_one(conn, job_id, "custom")
    verb(conn, "pause", job_id)  # running: requested, no event yet
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, identity)) is False
    verb(conn, "cancel", job_id)
    verb(conn, "retry", job_id)
    events = [(e["id"], e["event"], e["status"]) for e in drain_notifies(listener, 1.0)]
    assert events == [(job_id, "paused", "paused"), (job_id, "resumed", "queued"),
                      (job_id, "started", "running"), (job_id, "paused", "paused"),
                      (job_id, "canceled", "canceled"), (job_id, "submitted", "queued")]


# --- who may --------------------------------------------------------------------


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs_client role with SELECT and DELETE (not UPDATE) on the rows target."""
    role = f"pgjobs_test_pause_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    make_rows_target(conn)
    conn.execute(f"GRANT SELECT, DELETE ON user_table_rows TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_a_client_controls_what_it_may_cancel(conn: Conn, client: str) -> None:
    conn.execute(f"SET ROLE {client}")
    own = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    assert verb(conn, "pause", own) and verb(conn, "resume", own)
    assert verb(conn, "cancel", own) and verb(conn, "retry", own)
    conn.execute("RESET ROLE")
    # Another role's backfill: the client lacks UPDATE, so it may not cancel it,
    # nor pause, resume or retry it.
    other = scalar(conn, """SELECT pgjobs.submit_backfill('user_table_rows', '2', '{}',
                                                          '{"n": 1}')""")
    conn.execute(f"SET ROLE {client}")
    for name in ["cancel", "pause"]:
        with pytest.raises(errors.InsufficientPrivilege):
            verb(conn, name, other)
    conn.execute("RESET ROLE")
    verb(conn, "pause", other)
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        verb(conn, "resume", other)
    conn.execute("RESET ROLE")
    verb(conn, "cancel", other)
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        verb(conn, "retry", other)
    # A job of a table the client cannot read does not exist for it.
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT, DELETE ON user_table_rows FROM {client}")
    conn.execute(f"SET ROLE {client}")
    for name in ["pause", "resume", "retry"]:
        with pytest.raises(errors.NoDataFound):
            verb(conn, name, other)
    # And the internals refuse a direct call naming another role.
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs._pause_as('postgres', %s)", (other,))
    conn.execute("RESET ROLE")


def test_allowed_scopes_bound_the_verbs(conn: Conn) -> None:
    make_rows_target(conn)
    job_id = new_job(conn, "delete")
    conn.execute("SET pgjobs.allowed_scopes = '2'")
    for name in ["pause", "resume", "retry"]:
        with pytest.raises(errors.InsufficientPrivilege):
            verb(conn, name, job_id)
    conn.execute("RESET pgjobs.allowed_scopes")


# --- a pause reaches the owner wherever a cancel does ---------------------------------


def test_external_worker_learns_the_pause_at_its_heartbeat(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    identity = claim_one(conn, job_id, "custom")
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 5, '{\"at\": 5}')", (job_id, identity))
    assert verb(conn, "pause", job_id)
    assert verb(conn, "pause", job_id) is False  # requested already
    assert job(conn, job_id)["status"] == "running"
    # The worker's next heartbeat reports progress and learns it must stop.
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 7, '{\"at\": 7}')",
                  (job_id, identity)) is False
    paused = job(conn, job_id)
    assert (paused["status"], paused["done"], paused["checkpoint"], paused["attempts"]) == \
        ("paused", 7, {"at": 7}, 0)
    assert paused["lease_expires_at"] is None and paused["finished_at"] is None
    assert paused["pause_requested_at"] is None
    # Fenced off: the stopped worker changes nothing any more.
    for sql in ["SELECT pgjobs.heartbeat(%s, %s)", "SELECT pgjobs.complete(%s, %s)",
                "SELECT pgjobs.fail(%s, %s, 'x')", "SELECT pgjobs.release(%s, %s)"]:
        assert scalar(conn, sql, (job_id, identity)) is False
    assert claim(conn, "w2") == []  # never handed out while paused
    assert verb(conn, "resume", job_id)
    identity = claim_one(conn, job_id, "custom", "w2")
    resumed = job(conn, job_id)
    assert (resumed["attempts"], resumed["done"], resumed["checkpoint"]) == (1, 7, {"at": 7})
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, identity))


@pytest.mark.parametrize("ending", ["release", "fail retryable", "fail permanent",
                                    "lease lapses", "cancel too", "resume first"])
def test_a_pending_pause_at_every_ending(conn: Conn, ending: str) -> None:
    make_target(conn)
    job_id = submit(conn, options={"max_attempts": 1})
    identity = claim_one(conn, job_id, "custom")
    verb(conn, "pause", job_id)
    if ending == "release":
        assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, identity))
        expected = ("paused", 0)
    elif ending == "fail retryable":
        # The worker stopping for the pause may report it as a failure; attempts
        # used up or not, the job pauses and the attempt is not counted.
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'stopped', true)", (job_id, identity))
        expected = ("paused", 0)
    elif ending == "fail permanent":
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'bad', false)", (job_id, identity))
        expected = ("failed", 1)
    elif ending == "lease lapses":
        expire_lease(conn, job_id)
        assert scalar(conn, "SELECT pgjobs.prune()")["rescued"]["paused"] == 1
        expected = ("paused", 0)
    elif ending == "cancel too":
        assert verb(conn, "cancel", job_id)
        with pytest.raises(errors.ObjectNotInPrerequisiteState):
            verb(conn, "pause", job_id)  # a cancel is pending: it wins
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, identity)) is False
        expected = ("canceled", 1)
    else:
        assert verb(conn, "resume", job_id)  # withdrawn before the worker saw it
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, identity)) is True
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, identity))
        expected = ("succeeded", 1)
    after = job(conn, job_id)
    assert (after["status"], after["attempts"]) == expected
    assert after["pause_requested_at"] is None


def test_cancel_ends_a_paused_job(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    verb(conn, "pause", job_id)
    assert verb(conn, "cancel", job_id)
    assert job(conn, job_id)["status"] == "canceled"


def test_run_job_refuses_a_paused_job(conn: Conn, rows: Target) -> None:
    job_id = submit_delete(conn, rows, "1")
    verb(conn, "pause", job_id)
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as exc:
        run_job(conn, job_id)
    assert "resume" in (exc.value.diag.message_hint or "")


# --- the engine: pause while a page runs, resume on another runner -----------------------


def claim_for_pages(conn: Conn, job_id: int, worker: str) -> str:
    identity = scalar(conn, "SELECT (pgjobs._claim_id(%s, %s)).worker", (job_id, worker))
    assert identity
    return str(identity)


def page(conn: Conn, job_id: int, identity: str) -> str:
    return str(scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity)))


def wait_until_blocked(conn: Conn, pid: int) -> None:
    wait_for(lambda: bool(scalar(conn, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                       "WHERE pid = %s", (pid,))))


@pytest.mark.parametrize("strategy", ["range", "collect"])
@pytest.mark.parametrize("kind_", ["delete", "backfill"])
def test_pause_while_a_page_runs_then_resume_on_another_runner(
        conn: Conn, make_conn: MakeConn, rows: Target, strategy: str, kind_: str) -> None:
    if kind_ == "backfill" and strategy == "collect":
        pytest.skip("backfills always walk ranges")
    before = snapshot(conn, rows)
    flt = {"k": {"$in": [1, 2]}}
    if kind_ == "delete":
        job_id = submit_delete(conn, rows, "1", flt,
                               options={"page_size": 20, "strategy": strategy})
    else:
        job_id = submit_backfill(conn, rows, "1", flt, {"label": "paused"},
                                 options={"page_size": 20})
    cutoff = cutoff_of(conn, job_id)
    expected = job_rows(before, "1", cutoff,
                        lambda r: r["data"].get("k") in (1, 2))
    assert 0 < len(expected) < 150

    runner = make_conn()
    identity = claim_for_pages(runner, job_id, "runner-1")
    assert page(runner, job_id, identity) == "more"  # counts (or collects)
    assert page(runner, job_id, identity) == "more"
    # A page in flight: its transaction holds the job row. The pause waits for it.
    runner.execute("BEGIN")
    assert page(runner, job_id, identity) == "more"
    pauser = make_conn()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(verb(pauser, "pause", job_id)))
    thread.start()
    wait_until_blocked(conn, pauser.info.backend_pid)
    runner.execute("COMMIT")
    thread.join(60)
    assert result == [True]
    # The next page call parks it, with the cursor of the page that committed.
    during = job(conn, job_id)
    assert page(runner, job_id, identity) == "paused"
    paused = job(conn, job_id)
    assert paused["status"] == "paused" and paused["attempts"] == 0
    assert paused["checkpoint"] == during["checkpoint"] and paused["done"] == during["done"]
    assert 0 < paused["done"] < len(expected)
    changed = _changed(conn, rows, before, kind_)
    assert len(changed) == paused["done"] and changed <= expected

    if kind_ == "delete":
        # Its rows stay masked while paused: a read returns what it will after it.
        assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == \
            sum(1 for r in before.values() if r["table_id"] == "1") - len(expected)
        assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") != "true"
    # A later writer of the scope waits behind the paused one; other scopes do not.
    later = submit_backfill(conn, rows, "1", {}, {"label": "later"},
                            options={"on_conflict": "queue"})
    other = submit_backfill(conn, rows, "2", {"n": 3}, {"label": "other"})
    assert claim(conn, "w", kinds=["delete", "backfill"], limit=10) == [other]
    with pytest.raises(errors.ObjectInUse):
        run_job(conn, later)
    with pytest.raises(errors.ObjectInUse):
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', "
                     "'{\"on_conflict\": \"reject\"}')")
    # Resumed, another runner finishes it from its cursor: exactly the job's rows.
    assert verb(conn, "resume", job_id)
    assert job(conn, job_id)["checkpoint"] == paused["checkpoint"]
    run_job(make_conn(), job_id)
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1 and done["done"] == len(expected)
    assert _changed(conn, rows, before, kind_) == expected
    run_job(conn, later)
    assert job(conn, later)["status"] == "succeeded"


def _changed(conn: Conn, target: Target, before: dict[str, Any], kind_: str) -> set[str]:
    now = snapshot(conn, target)
    if kind_ == "delete":
        return set(before) - set(now)
    return {key for key, row in now.items() if row["label"] == "paused"}


def test_engine_run_honours_a_pause_and_moves_on(conn: Conn, make_conn: MakeConn,
                                                 rows: Target) -> None:
    """pgjobs.run (the pg_cron loop) parks a paused job and runs the next one."""
    job_id = submit_delete(conn, rows, "1", options={"page_size": 10})
    runner = make_conn()
    identity = claim_for_pages(runner, job_id, "runner")
    page(runner, job_id, identity)
    verb(conn, "pause", job_id)
    other = submit_delete(conn, rows, "2", {"k": 0})
    conn.execute("CALL pgjobs.run('5 seconds')")
    assert job(conn, job_id)["status"] == "running"  # the runner-held lease
    assert page(runner, job_id, identity) == "paused"
    conn.execute("CALL pgjobs.run('5 seconds')")
    assert job(conn, other)["status"] == "succeeded"
    assert job(conn, job_id)["status"] == "paused"


# --- retry --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["range", "collect"])
@pytest.mark.parametrize("how", ["failed", "canceled"])
def test_retry_after_a_failure_mid_job_deletes_exactly_its_rows(
        conn: Conn, make_conn: MakeConn, rows: Target, strategy: str, how: str) -> None:
    before = snapshot(conn, rows)
    flt = {"k": {"$ne": 4}}
    job_id = submit_delete(conn, rows, "1", flt, options={"page_size": 25, "strategy": strategy,
                                                         "max_attempts": 2})
    cutoff = cutoff_of(conn, job_id)
    expected = job_rows(before, "1", cutoff, lambda r: r["data"].get("k") != 4)
    poison = sorted(expected, key=int)[len(expected) // 2]
    if how == "failed":
        # A data error on a row in the middle: the job fails for good there.
        conn.execute(f"""
            CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF OLD.id = {poison} THEN
                    RAISE EXCEPTION 'poisoned row' USING ERRCODE = '22012';
                END IF;
                RETURN OLD;
            END $$;
            CREATE TRIGGER poison BEFORE DELETE ON user_table_rows
                FOR EACH ROW EXECUTE FUNCTION poison()""")
        run_job(make_conn(), job_id)
    else:
        runner = make_conn()
        identity = claim_for_pages(runner, job_id, "r")
        for _ in range(4):
            assert page(runner, job_id, identity) == "more"
        verb(conn, "cancel", job_id)
        assert page(runner, job_id, identity) == "canceled"
    ended = job(conn, job_id)
    assert ended["status"] == how, ended
    deleted = set(before) - set(snapshot(conn, rows))
    assert 0 < len(deleted) < len(expected) and deleted <= expected
    # The mask is lifted while it is failed: the rows it left are visible again.
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"
    # A row created after the submission matches the filter but is not the job's.
    newcomer = insert_row(conn, rows, "1", data={"k": 1})

    if how == "failed":
        conn.execute("DROP TRIGGER poison ON user_table_rows")
    assert verb(conn, "retry", job_id)
    queued = job(conn, job_id)
    assert (queued["status"], queued["attempts"], queued["error"], queued["finished_at"]) == \
        ("queued", 0, None, None)
    assert queued["done"] == ended["done"] and queued["cutoff"] == ended["cutoff"]
    # Masked again from the retry on: a read sees what the job will leave.
    remaining = {k for k, r in before.items() if r["table_id"] == "1"} - expected
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == \
        len(remaining) + 1
    run_job(make_conn(), job_id)
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1
    assert set(before) - set(snapshot(conn, rows)) == expected
    assert newcomer in snapshot(conn, rows)
    assert done["result"]["deleted"] == len(expected) == done["done"]


def test_retry_queues_behind_the_writers_submitted_before_it(conn: Conn, rows: Target) -> None:
    first = submit_delete(conn, rows, "1", {"k": 0}, options={"max_attempts": 1})
    identity = claim_one(conn, first, "delete")
    scalar(conn, "SELECT pgjobs.fail(%s, %s, 'x', false)", (first, identity))
    backfill = submit_backfill(conn, rows, "1", {"k": 1}, {"label": "b"})
    assert verb(conn, "retry", first)
    after_retry = submit_backfill(conn, rows, "1", {"k": 2}, {"label": "c"},
                                  options={"on_conflict": "queue"})
    # Submission order of the queue: the backfill submitted before the retry, the
    # retried delete, the backfill submitted after it; one at a time.
    order = []
    for _ in range(3):
        claimed = claim(conn, "w", kinds=["delete", "backfill"], limit=10)
        assert len(claimed) == 1
        order.append(claimed[0])
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)",
                      (claimed[0], job(conn, claimed[0])["worker"]))
    assert order == [backfill, first, after_retry]


def test_retry_of_a_job_that_never_started(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    verb(conn, "cancel", job_id)
    verb(conn, "retry", job_id)
    assert claim(conn, "w") == [job_id]
    assert job(conn, job_id)["checkpoint"] is None


def test_paused_jobs_are_never_pruned_and_hold_their_target(conn: Conn, rows: Target) -> None:
    job_id = submit_delete(conn, rows, "1")
    verb(conn, "pause", job_id)
    conn.execute("UPDATE pgjobs.jobs SET updated_at = now() - interval '1 year', "
                 "created_at = now() - interval '1 year' WHERE id = %s", (job_id,))
    scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert job(conn, job_id)["status"] == "paused"
    with pytest.raises(errors.ObjectInUse):
        conn.execute("SELECT pgjobs.unregister_target('user_table_rows')")


def test_doctor_reports_a_paused_writer_that_holds_others_back(conn: Conn, rows: Target) -> None:
    def paused_finding() -> dict[str, Any]:
        found = conn.execute("SELECT status, detail, fix FROM pgjobs.doctor() "
                             "WHERE check_name = 'jobs.paused'").fetchall()
        assert len(found) == 1
        return dict(zip(["status", "detail", "fix"], found[0], strict=True))

    paused = submit_delete(conn, rows, "1")
    verb(conn, "pause", paused)
    assert paused_finding()["status"] == "ok"  # nobody waits behind it
    later = submit_backfill(conn, rows, "1", {}, {"label": "x"})
    finding = paused_finding()
    assert finding["status"] == "warn" and str(paused) in finding["detail"]
    conn.execute(finding["fix"])
    assert job(conn, paused)["status"] == "queued"
    assert job(conn, later)["status"] == "queued"
    assert paused_finding()["status"] == "ok"
