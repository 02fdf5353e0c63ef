"""Claim and complete as one mechanism (issue 11, "Claim against a peer" and the
structure items): one routine starts an attempt for every claiming path,
`pgjobs.complete_many` completes a batch fenced per job, the expired-lease
sweep runs only when a lease has expired, and the retry policy for SQLSTATEs
is decided in one place that the Python workers ask too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs import db
from pgjobs.poller.export import _retryable, _sqlstate
from pgjobs.poller.storage import StorageError
from tests.support import (
    claim,
    drain_notifies,
    expire_lease,
    job,
    make_items,
    make_rows_target,
    make_target,
    scalar,
    seed,
    submit,
    submit_delete,
    submit_export,
    who,
)

Conn = psycopg.Connection[Any]
FUNCTIONS = Path(__file__).resolve().parent.parent / "sql" / "functions"


@pytest.fixture
def target(conn: Conn) -> str:
    return make_target(conn)


def claimed(conn: Conn, kinds: list[str], worker: str, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, worker FROM pgjobs.claim(%s, %s, '30 seconds', %s)",
                        (kinds, worker, limit)).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def complete_many(conn: Conn, pairs: list[tuple[int, str]],
                  results: list[dict[str, Any]] | None = None) -> list[int]:
    rows = conn.execute(
        "SELECT * FROM pgjobs.complete_many(%s, %s, %s::jsonb[])",
        ([p[0] for p in pairs], [p[1] for p in pairs],
         None if results is None else [json.dumps(r) for r in results])).fetchall()
    return sorted(int(r[0]) for r in rows)


# --- one routine starts an attempt ---------------------------------------------


def test_only_start_attempts_makes_a_job_running() -> None:
    """Every claiming path goes through pgjobs._start_attempts: no other routine
    sets status 'running' (the copies had drifted: only _claim_id moved run_at)."""
    setters = []
    for path in sorted(FUNCTIONS.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        if re.search(r"\bstatus\s*=\s*'running'\s*,", text, re.IGNORECASE):
            setters.append(path.name)
    # claim_export_part makes a part of a parallel export running (its own table,
    # pgjobs.export_parts), never a job: it updates no job row at all; so does
    # claim_items with the items of a fan-out job (pgjobs.job_items).
    # _items_start starts a fan-out job, which is never an attempt (its items are
    # the work): it updates only a fan-out job's row.
    assert setters == ["_items_start.sql", "_start_attempts.sql", "claim_export_part.sql",
                       "claim_items.sql"]
    for name in ("claim_export_part.sql", "claim_items.sql"):
        part_claim = re.sub(r"--[^\n]*", "", (FUNCTIONS / name).read_text())
        assert not re.search(r"UPDATE\s+pgjobs\.jobs\b", part_claim, re.IGNORECASE), name
    start = re.sub(r"--[^\n]*", "", (FUNCTIONS / "_items_start.sql").read_text())
    assert re.search(r"q\.fanout AND q\.status = 'queued'", start)
    for name in ("claim.sql", "_claim_given.sql", "_claim_id.sql"):
        assert "pgjobs._start_attempts(" in (FUNCTIONS / name).read_text(), name
    # claim_export and claim_import are one body, pgjobs._claim_given.
    for name in ("claim_export.sql", "claim_import.sql"):
        assert "pgjobs._claim_given(" in (FUNCTIONS / name).read_text(), name


def started_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": row["status"],
        "attempts": row["attempts"],
        "lease": row["lease"],
        "lease_at_heartbeat": row["lease_expires_at"] - row["heartbeat_at"],
        "run_at_not_after_start": row["run_at"] <= row["heartbeat_at"],
        "started": row["started_at"] is not None,
        "identity": bool(re.fullmatch(r"w#[0-9a-f]{16}", row["worker"])),
    }


def test_every_claiming_path_starts_an_attempt_alike(conn: Conn) -> None:
    """claim, claim_export and _claim_id (run_job) leave the same fields, for a
    job with its own lease option, including a job started before its run_at."""
    make_items(conn, rows=30)
    rows = make_rows_target(conn)
    seed(conn, rows, 30)
    options = {"lease": "45 seconds"}
    custom = submit(conn, kind="export_like", target="items", options=options)
    export = submit_export(conn, options=options)
    delete = submit_delete(conn, rows, rows.scope(1), options=options)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() + interval '1 hour' WHERE id = %s",
                 (delete,))

    assert claim(conn, "w", ["export_like"]) == [custom]
    assert conn.execute("SELECT id FROM pgjobs.claim_export(%s, 'w')", (export,)).fetchall() \
        == [(export,)]
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (delete,))

    seen = [started_fields(job(conn, i)) for i in (custom, export, delete)]
    assert seen[0] == seen[1] == seen[2]
    assert seen[0]["status"] == "running" and seen[0]["attempts"] == 1
    assert seen[0]["run_at_not_after_start"] and seen[0]["identity"]
    assert str(seen[0]["lease"]) in ("0:00:45",)


def test_claim_keeps_pick_order_and_announces_each_start(conn: Conn, make_conn: Any,
                                                         target: str) -> None:
    listener = make_conn(autocommit=True)
    listener.execute("LISTEN pgjobs")
    ids = [submit(conn, options={"priority": p}) for p in (1, 5, 3)]
    got = claimed(conn, ["custom"], "w", 10)
    assert [g[0] for g in got] == [ids[1], ids[2], ids[0]]
    events = drain_notifies(listener, 1.0)
    started = [e["id"] for e in events if e["event"] == "started"]
    assert sorted(started) == sorted(ids)


# --- complete_many -------------------------------------------------------------


def test_complete_many_completes_a_batch_in_one_call(conn: Conn, make_conn: Any,
                                                    target: str) -> None:
    listener = make_conn(autocommit=True)
    listener.execute("LISTEN pgjobs")
    ids = [submit(conn) for _ in range(5)]
    pairs = claimed(conn, ["custom"], "w", 5)
    results = [{"n": i} for i in range(5)]
    assert complete_many(conn, pairs, results) == sorted(ids)
    for (job_id, _), result in zip(pairs, results, strict=True):
        row = job(conn, job_id)
        assert row["status"] == "succeeded"
        assert row["result"] == result
        assert row["lease_expires_at"] is None and row["finished_at"] is not None
    events = drain_notifies(listener, 1.0)
    succeeded = sorted(e["id"] for e in events if e["event"] == "succeeded")
    assert succeeded == sorted(ids)  # the final event of every job is sent


def test_complete_many_fences_each_job_on_its_own(conn: Conn, target: str) -> None:
    """A batch mixing good identities with every kind of stale one completes only
    the good ones and leaves the others exactly as they were."""
    ids = [submit(conn) for _ in range(6)]
    pairs = claimed(conn, ["custom"], "w", 6)
    good, bare, other, expired, finished, wrong_job = pairs
    expire_lease(conn, expired[0])
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", finished)
    before = {i: job(conn, i) for i in ids}
    batch = [
        good,
        (bare[0], "w"),                       # the bare name, not the claim's identity
        (other[0], "w#0000000000000000"),     # a made-up identity under the same name
        expired,                              # its lease lapsed
        finished,                             # no longer running
        (wrong_job[0], good[1]),              # another job's identity
    ]
    assert complete_many(conn, batch) == [good[0]]
    for job_id in ids:
        if job_id == good[0]:
            assert job(conn, job_id)["status"] == "succeeded"
        else:
            assert job(conn, job_id) == before[job_id]


def test_complete_many_a_stale_attempt_after_a_rescue(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    (first,) = claimed(conn, ["custom"], "w", 1)
    expire_lease(conn, job_id)
    (second,) = claimed(conn, ["custom"], "w", 1)  # rescued, claimed anew
    assert second[0] == job_id and second[1] != first[1]
    assert complete_many(conn, [first]) == []
    assert job(conn, job_id)["status"] == "running"
    assert complete_many(conn, [second]) == [job_id]


@pytest.mark.parametrize(("ids", "workers", "results"), [
    ([1, 2], ["w#a"], None),
    ([1], ["w#a", "w#b"], None),
    ([1, 2], ["w#a", "w#b"], ['{}']),
    (None, ["w#a"], None),
    ([1], None, None),
])
def test_complete_many_refuses_arrays_of_different_lengths(
        conn: Conn, ids: Any, workers: Any, results: Any) -> None:
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT * FROM pgjobs.complete_many(%s::bigint[], %s::text[], %s::jsonb[])",
                     (ids, workers, results))
    assert info.value.diag.message_hint


@pytest.mark.parametrize("result", ["[]", "1", '"x"', "null", None])
def test_complete_many_refuses_a_result_that_is_not_an_object(
        conn: Conn, target: str, result: str | None) -> None:
    submit(conn)
    pairs = claimed(conn, ["custom"], "w", 1)
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT * FROM pgjobs.complete_many(%s, %s, ARRAY[%s::jsonb])",
                     ([pairs[0][0]], [pairs[0][1]], result))
    assert job(conn, pairs[0][0])["status"] == "running"


def test_complete_many_of_nothing_is_nothing(conn: Conn) -> None:
    assert conn.execute("SELECT * FROM pgjobs.complete_many('{}', '{}')").fetchall() == []


def test_python_complete_many(dsn: str, target: str, conn: Conn) -> None:
    ids = [submit(conn) for _ in range(3)]
    pairs = claimed(conn, ["custom"], "w", 3)
    with db.connect(dsn) as pconn:
        done = db.complete_many(pconn, [pairs[0], (pairs[1][0], "w"), pairs[2]])
    assert done == {ids[0], ids[2]}


# --- plans ------------------------------------------------------------------------


def plans_of(conn: Conn, run: Any, table: str = "pgjobs.jobs") -> int:
    """How many statements reading or writing `table` the server planned
    while `run(conn)` ran: debug_print_plan logs every plan it makes, nested
    PL/pgSQL statements too, and client_min_messages brings the log here."""
    relid = int(scalar(conn, "SELECT %s::regclass::oid", (table,)))
    planned: list[str] = []

    def seen(diag: Any) -> None:
        if diag.message_primary == "plan:" and re.search(rf":relid {relid}\b",
                                                       diag.message_detail or ""):
            planned.append(diag.message_detail)

    conn.add_notice_handler(seen)
    conn.execute("SET debug_print_plan = on")
    conn.execute("SET client_min_messages = log")
    try:
        run(conn)
    finally:
        conn.execute("RESET client_min_messages")
        conn.execute("RESET debug_print_plan")
        conn.remove_notice_handler(seen)
    return len(planned)


def test_claim_and_complete_plan_their_statements_once_per_session(conn: Conn,
                                                                  target: str) -> None:
    """A claim of one job and its complete plan nothing once the session has
    planned them (plan_cache_mode: PL/pgSQL kept re-planning the pick, the
    start and the completion at every call of one job, about a quarter of a
    claim's server time), and the generic plans still honour each call's
    limit and the pick order, for a batch of one and a batch of several."""
    # A queue of some size, analyzed, as in production: on a table of a few
    # rows every plan is a seq scan, generic or custom alike.
    conn.execute("""SELECT count(pgjobs.submit('other', 'items'::regclass, (g % 50)::text))
                      FROM generate_series(1, 2000) g""")
    conn.execute("ANALYZE pgjobs.jobs")
    ids = [submit(conn, options={"priority": i % 3}) for i in range(40)]
    order = sorted(ids, key=lambda i: (-(ids.index(i) % 3), i))

    def cycle(c: Conn, limit: int) -> list[int]:
        pairs = claimed(c, ["custom"], "w", limit)
        if len(pairs) == 1:
            assert scalar(c, "SELECT pgjobs.complete(%s, %s)", pairs[0])
        else:
            assert complete_many(c, pairs) == sorted(p[0] for p in pairs)
        return [p[0] for p in pairs]

    got = [i for _ in range(8) for i in cycle(conn, 1)]  # the session's first plans
    assert plans_of(conn, lambda c: got.extend(
        i for _ in range(10) for i in cycle(c, 1))) == 0
    assert plans_of(conn, lambda c: got.extend(
        i for limit in (3, 1, 5, 1) for i in cycle(c, limit))) == 0
    assert got == order[:len(got)] and len(got) == 28


def test_complete_items_plans_its_statements_once_per_session(conn: Conn,
                                                              target: str) -> None:
    """A completion of items, one or several, plans nothing once the session
    has planned it: PL/pgSQL re-planned the completing UPDATE at every call
    (a custom plan for an array of fewer than ten ids looked cheaper than the
    generic one, the same job_items_pkey scan). Claims are left out of the
    count: pgjobs.claim_items keeps custom plans (its own comment says why)."""
    jobs = [int(scalar(conn, """
        SELECT pgjobs.submit_items('thumb', 'items'::regclass, %s, %s::jsonb)""",
                       (scope, json.dumps([{"n": i} for i in range(300)]))))
            for scope in ("1", "2", "3")]
    conn.execute("ANALYZE pgjobs.jobs")
    conn.execute("ANALYZE pgjobs.job_items")

    def claimed_items(limit: int) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in conn.execute(
            "SELECT id, worker FROM pgjobs.claim_items('{thumb}', 'w', '30 seconds', %s)",
            (limit,))]

    def complete(c: Conn, pairs: list[tuple[int, str]]) -> list[int]:
        return sorted(int(r[0]) for r in c.execute(
            "SELECT * FROM pgjobs.complete_items(%s, %s)",
            ([p[0] for p in pairs], [p[1] for p in pairs])))

    for _ in range(8):  # the session's first plans
        pairs = claimed_items(1)
        assert complete(conn, pairs) == [pairs[0][0]]
    for limit in (1, 3, 1, 5, 1, 10):
        pairs = claimed_items(limit)
        done: list[int] = []
        assert plans_of(conn, lambda c, pairs=pairs, done=done: done.extend(complete(c, pairs)),
                        "pgjobs.job_items") == 0, limit
        assert done == sorted(p[0] for p in pairs)
    # 8 + 21 items done, over the three jobs (they take turns at claim_items).
    assert scalar(conn, "SELECT sum(done)::int FROM pgjobs.jobs WHERE id = ANY (%s)",
                  (jobs,)) == 29


def test_claim_and_complete_ask_for_generic_plans() -> None:
    """The setting the tests above rely on, where it is set: in the functions
    whose statements take a limit or an array of ids (a function's SET clause
    holds for the functions it calls, whose statements are lookups by key)."""
    for name in ("claim.sql", "_start_attempts.sql", "complete_many.sql",
                 "complete_items.sql"):
        text = (FUNCTIONS / name).read_text()
        assert "SET plan_cache_mode = force_generic_plan" in text, name


# --- the expired-lease sweep -----------------------------------------------------


def rescue_calls(conn: Conn) -> int:
    """Sweeps run in this transaction: calls of pgjobs._rescue_sweep, the
    UPDATE that takes expired leases back (pgjobs._rescue_expired, the probe
    before it, runs on every claim and writes nothing when none expired)."""
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_rescue_sweep'"""))


def test_claim_sweeps_only_when_a_lease_expired(make_conn: Any, target: str, conn: Conn) -> None:
    """The sweep is out of the common claim, and still rescues."""
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    first, second, third = (submit(tx) for _ in range(3))
    assert claim(tx, "w") == [first]
    assert claim(tx, "w") == [second]
    assert rescue_calls(tx) == 0
    expire_lease(tx, first)
    assert claim(tx, "w", limit=5) == [first, third]  # rescued, then claimed again
    assert rescue_calls(tx) == 1
    assert job(tx, first)["attempts"] == 2
    tx.rollback()


def calls(conn: Conn) -> dict[str, int]:
    """Calls of each pgjobs function so far in this transaction (track_functions)."""
    rows = conn.execute("""
        SELECT funcname, sum(calls) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' GROUP BY funcname""").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def test_a_claim_checks_one_submitter_once_and_looks_it_up_once(make_conn: Any,
                                                                target: str) -> None:
    """Jobs of one claim that share submitter, target and kind share one check
    of the submitter (pgjobs._start_attempts), whatever their scopes; and that
    check looks the role up once (pgjobs._submitter_identity_problem, by oid
    and name), never again by name (pgjobs._role_problem)."""
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    ids = [submit(tx, scope=str(s)) for s in range(1, 6)]
    before = calls(tx)
    assert claim(tx, "w", limit=5) == ids
    after = calls(tx)
    ran = {f: after.get(f, 0) - before.get(f, 0) for f in after}
    assert ran.get("_may_start_attempt") == 1
    assert ran.get("_submitter_identity_problem") == 1
    assert ran.get("_grant_problem") == 1
    assert ran.get("_role_problem", 0) == 0
    tx.rollback()


# --- retry policy in one place -----------------------------------------------------


@pytest.mark.parametrize(("state", "retry"), [
    ("40001", True), ("40P01", True), ("53100", True), ("53200", True), ("55P03", True),
    ("55006", True), ("57014", True), ("57P01", True), ("58030", True), ("08006", True),
    ("XX000", False), ("XX001", False), ("XX002", False),
    ("22012", False), ("23505", False), ("42501", False), ("42P01", False), ("P0001", False),
    ("", False), (None, False), ("40", False), ("xx000", False),
])
def test_the_retry_policy(conn: Conn, state: str | None, retry: bool) -> None:
    assert scalar(conn, "SELECT pgjobs.retryable_sqlstate(%s)", (state,)) is retry


def test_python_keeps_no_sqlstate_list_of_its_own() -> None:
    """A database error's retry is the database's decision; Python decides only
    what has no SQLSTATE (storage errors, its own bugs)."""
    assert _retryable(errors.lookup("XX000")()) is None
    assert _sqlstate(errors.SerializationFailure()) == "40001"
    assert _retryable(StorageError("x", retryable=True)) is True
    assert _retryable(StorageError("x", retryable=False)) is False
    assert _retryable(ValueError("bug")) is False
    assert _retryable(OSError("reset")) is True
    root = Path(__file__).resolve().parent.parent
    for path in [*(root / "poller").glob("*.py"), *(root / "pgjobs").glob("*.py"),
                 *(root / "cli").glob("*.py")]:
        text = path.read_text()
        # (connection_lost's "08"/"57P" decides reconnecting, not retrying)
        assert not re.search(r"""["'](40|53|55|58|XX)["']""", text), path


@pytest.mark.parametrize(("state", "status"), [
    ("XX000", "failed"), ("XX001", "failed"), ("40001", "queued"), ("57014", "queued"),
    ("23505", "failed"),
])
def test_a_worker_failure_follows_the_policy(dsn: str, conn: Conn, target: str,
                                             state: str, status: str) -> None:
    job_id = submit(conn)
    claim(conn, "w")
    with db.connect(dsn) as pconn:
        recorded, retryable = db.fail_by_sqlstate(pconn, job_id, who(conn, job_id, "w"),
                                                  "boom", None, state)
    assert recorded and retryable is (status == "queued")
    assert job(conn, job_id)["status"] == status


def test_a_caller_decision_wins_over_the_sqlstate(dsn: str, conn: Conn, target: str) -> None:
    job_id = submit(conn)
    claim(conn, "w")
    with db.connect(dsn) as pconn:
        recorded, retryable = db.fail_by_sqlstate(pconn, job_id, who(conn, job_id, "w"),
                                                  "bad source", False, "40001")
    assert recorded and not retryable
    assert job(conn, job_id)["status"] == "failed"


def test_the_engine_pages_follow_the_policy() -> None:
    """pgjobs._run_page ends every caught error through pgjobs._fail_attempt,
    which asks the same function instead of listing classes."""
    page = (FUNCTIONS / "_run_page.sql").read_text()
    ending = (FUNCTIONS / "_fail_attempt.sql").read_text()
    assert "pgjobs._fail_attempt(" in page
    assert "pgjobs.retryable_sqlstate(p_state)" in ending
    for text in (page, ending):
        assert not re.search(r"IN \('40'", text)


@pytest.mark.parametrize("kind", ["custom", "import"])
def test_the_claim_of_a_given_job_refuses_a_missing_kind(conn: Conn, kind: str) -> None:
    """pgjobs._claim_given checks the job's kind against the one asked
    for; a NULL kind compared unknown and claimed a job of any kind (h59):
    now 22023, and the job stays queued."""
    make_target(conn)
    job_id = submit(conn, kind)
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT * FROM pgjobs._claim_given(%s, 'w1', '30 seconds', NULL)",
                     (job_id,))
    assert job(conn, job_id)["status"] == "queued"
