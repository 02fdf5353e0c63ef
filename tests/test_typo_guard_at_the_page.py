"""The deferred typo guard of a delete or backfill is its page's, never its claim's.

A job submitted on a scope with no rows carries the document paths its
submit could not judge (payload `unchecked_fields`). They used to be judged
inside the claim (pgjobs._may_start_attempt) as well as at every page: on a
1M-row scope that lacks the path, the walk reads pgjobs.field_check_rows rows
(0.3-1 s a job), and the claim held every job row it had picked (a claim of
several kept the others from every other claimer), and its runner, that long;
a claim that failed one such job picked the next and judged that too (one
claim of limit 1: 3.4 s over five jobs, bench/typo_guard.py). Now a claim
(pgjobs.claim, run's, run_job's) never reads the target for it, and the
job's page judges the paths before it reads a row, the table held: a missing
path fails the job before any row changes, however the job was claimed,
paused, handed back or re-claimed. An export keeps its check at the claim
(its worker reads chunks with no engine page in between).

The walk itself is bounded per page: 100,000 rows a call, the place kept in
the payload (`unchecked_walk`), pages that change nothing until it ends; one
page walked it whole (0.4-1.1 s at 1M rows, the job's row and table held).

And a page whose judgment could not read the target (its 200 ms lock wait)
went on with the page, the paths unjudged: it now returns 'blocked'.

Synchronised on locks and state, never on time: a hook around
pgjobs._unknown_fields_from (the walk) counts its calls and can wait on an
advisory lock the test holds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import job, make_rows_target, scalar, seed, wait_for

Conn = psycopg.Connection[Any]

EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"
GATE = 4242  # the advisory lock the hooked walk takes when asked to
SIGNATURE = "pgjobs.target_registry, text, text[], text, bigint, bigint"
TYPOS = [
    {"stauts": {"$ne": "keep"}},
    {"stauts": None},
    {"stauts": {"$exists": False}},
    {"$not": {"stauts": "keep"}},
    {"k.x": {"$ne": 1}},
]


@pytest.fixture
def rows(conn: Conn) -> Iterator[Conn]:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    # The walk, hooked: counts its calls in the session (test.walks) and,
    # while test.gate is on, first waits for advisory lock GATE.
    _hook_walk(conn, "_unknown_fields_walk", f"""
            PERFORM set_config('test.walks', (coalesce(nullif(current_setting('test.walks',
                true), ''), '0')::int + 1)::text, false);
            IF current_setting('test.gate', true) = 'on' THEN
                PERFORM pg_advisory_xact_lock({GATE});
            END IF;
            SELECT * INTO p_missing, p_rows_read, p_last, p_state
              FROM pgjobs._unknown_fields_walk(p_reg, p_scope, p_paths, p_after, p_read,
                                               p_budget);""")
    yield conn


def _hook_walk(conn: Conn, rename_to: str, body: str) -> None:
    """Renames the walk (pgjobs._unknown_fields_from) to `rename_to` and puts
    in its place a function of its signature that runs the PL/pgSQL `body`."""
    conn.execute(f"ALTER FUNCTION pgjobs._unknown_fields_from({SIGNATURE}) "
                 f"RENAME TO {rename_to}")
    conn.execute(f"""
        CREATE FUNCTION pgjobs._unknown_fields_from(p_reg pgjobs.target_registry,
            p_scope text, p_paths text[], p_after text, p_read bigint, p_budget bigint,
            OUT p_missing text[], OUT p_rows_read bigint, OUT p_last text, OUT p_state text)
        LANGUAGE plpgsql AS $$
        BEGIN
            {body}
        END $$""")


def walks(conn: Conn) -> int:
    return int(scalar(conn, "SELECT coalesce(nullif(current_setting('test.walks', true), ''),"
                            " '0')::int"))


def arrive(conn: Conn, scope: str = EMPTY, count: int = 5) -> None:
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT %s::int, 1, 'keep', '{\"status\": \"keep\", \"k\": 1, "
                 "\"nest\": {\"a\": 1}}', %s::timestamptz FROM generate_series(1, %s)",
                 (scope, OLD, count))


def submit(conn: Conn, kind: str, filter_: dict[str, Any], scope: str = EMPTY,
           options: dict[str, Any] | None = None) -> int:
    opts = json.dumps({"page_size": 2, **(options or {})})
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, json.dumps(filter_), opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb,"
                            " '{\"label\": \"changed\"}', %s::jsonb)",
                      (scope, json.dumps(filter_), opts)))


def untouched(conn: Conn, job_id: int, count: int = 5) -> None:
    """The job failed on its misspelt path and no row of its scope changed."""
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "allow_unknown_fields" in row["error"] and row["done"] == 0, row
    assert [r[0] for r in conn.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))] == ["keep"] * count


CLAIMS: dict[str, Callable[[Conn, int], None]] = {
    "claim": lambda c, j: c.execute(
        "SELECT pgjobs.claim(ARRAY['delete', 'backfill'], 'w', '30 seconds', 10)").fetchall(),
    "run_job's claim": lambda c, j: c.execute("SELECT pgjobs._claim_id(%s, 'w')", (j,)).fetchall(),
    "run's claim": lambda c, j: c.execute(
        "SELECT pgjobs._run_next('w', now() + interval '1 minute')").fetchall(),
}


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("how", list(CLAIMS))
def test_no_claim_judges_and_the_first_page_does(rows: Conn, kind: str, how: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    rows.execute("SET test.walks = 0")  # the submit's own walk (the empty scope) not counted
    CLAIMS[how](rows, typo)
    assert walks(rows) == 0  # the claim read nothing of the target
    row = job(rows, typo)
    assert row["status"] == "running" and row["payload"]["unchecked_fields"] == ["stauts"], row
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, row["worker"])) == "failed"
    assert walks(rows) == 1  # its first page judged it, once
    untouched(rows, typo)


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("filter_", TYPOS, ids=json.dumps)
def test_the_runner_fails_a_missing_path_before_any_row_changes(
        rows: Conn, kind: str, filter_: dict[str, Any]) -> None:
    typo = submit(rows, kind, filter_)
    arrive(rows, count=9)  # pages of 2: several pages' worth
    rows.execute("CALL pgjobs.run('1 minute')")
    untouched(rows, typo, 9)


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_paused_job_is_judged_when_it_resumes(rows: Conn, kind: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "more"  # empty
    rows.execute("SELECT pgjobs.pause(%s)", (typo,))
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "paused"
    arrive(rows)  # while it was paused
    rows.execute("SELECT pgjobs.resume(%s)", (typo,))
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    untouched(rows, typo)


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_job_released_before_its_page_is_judged_at_the_next_claims_page(
        rows: Conn, kind: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs.release(%s, %s)", (typo, worker)) is True  # budget spent
    assert job(rows, typo)["payload"]["unchecked_fields"] == ["stauts"]
    rows.execute("CALL pgjobs.run('1 minute')")
    untouched(rows, typo)


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_job_handed_back_for_a_held_table_is_judged_when_it_comes_back(
        rows: Conn, make_conn: Any, kind: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    holder = make_conn(autocommit=False)
    holder.execute("LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE")
    try:
        runner = make_conn()
        runner.execute("SET statement_timeout = '60s'")  # the hang, as a failure
        [(worker,)] = runner.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                                     (kind,)).fetchall()  # reads nothing of the table
        runner.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (typo, worker))
    finally:
        holder.rollback()
    row = job(rows, typo)
    assert row["status"] == "queued" and row["payload"]["unchecked_fields"] == ["stauts"], row
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    untouched(rows, typo)


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_judgment_that_cannot_read_the_table_reads_no_row(rows: Conn, kind: str) -> None:
    # The walk gave up on a lock (55P03 within its 200 ms): the page went on
    # unjudged, and the page after its first deleted or changed every row.
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    rows.execute("""CREATE OR REPLACE FUNCTION pgjobs._unknown_fields_from(p_reg
        pgjobs.target_registry, p_scope text, p_paths text[], p_after text, p_read bigint,
        p_budget bigint, OUT p_missing text[], OUT p_rows_read bigint, OUT p_last text,
        OUT p_state text) LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'held' USING ERRCODE = '55P03'; END $$""")
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    for _ in range(3):
        assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "blocked"
    row = job(rows, typo)
    assert row["status"] == "running" and row["done"] == 0, row
    assert row["payload"]["unchecked_fields"] == ["stauts"]
    assert [r[0] for r in rows.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))] == ["keep"] * 5


def waiting_on_gate(conn: Conn, pid: int) -> bool:
    return bool(scalar(conn, "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND "
                             "locktype = 'advisory' AND objid = %s AND NOT granted)",
                       (pid, GATE)))


def test_a_judgment_in_progress_holds_no_other_jobs_claim(rows: Conn, make_conn: Any) -> None:
    """A walk in progress (held here on an advisory lock) delays its own page
    only. It ran inside the claim: a claim of several that picked the
    misspelt job held the jobs picked with it (FOR UPDATE) until the walk
    ended, and every other claimer skipped them."""
    typo = submit(rows, "delete", {"stauts": {"$ne": "keep"}})
    arrive(rows)
    other = submit(rows, "delete", {"k": 1}, scope="1")  # judged at the submit
    gate = make_conn(autocommit=False)
    gate.execute("SELECT pg_advisory_xact_lock(%s)", (GATE,))
    first = make_conn()
    first.execute("SET test.gate = 'on'")
    first.execute("SET statement_timeout = '60s'")  # the hang, as a failure
    pid = int(scalar(first, "SELECT pg_backend_pid()"))
    outcome: dict[str, Any] = {}

    def claim_and_page() -> None:
        try:
            claimed = first.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['delete'], 'w',"
                                    " '30 seconds', 10)").fetchall()
            outcome["claimed"] = [c[0] for c in claimed]
            worker = dict(claimed)[typo]
            outcome["page"] = scalar(first, "SELECT pgjobs._run_page(%s, %s)", (typo, worker))
        except BaseException as error:  # reported below
            outcome["error"] = error

    thread = threading.Thread(target=claim_and_page)
    thread.start()
    try:
        # Either the claim ended, or it is waiting inside the walk.
        wait_for(lambda: "claimed" in outcome or "error" in outcome
                 or waiting_on_gate(rows, pid), what="the claim to end or wait in the walk")
        assert "claimed" in outcome, "the claim waits inside the typo guard's walk"
        assert sorted(outcome["claimed"]) == sorted([typo, other])
        # The page is the one waiting now; the other job is free meanwhile.
        wait_for(lambda: waiting_on_gate(rows, pid) or "error" in outcome,
                 what="the page to wait in the walk")
        assert "page" not in outcome and "error" not in outcome, outcome
        assert job(rows, other)["status"] == "running"
        peer = make_conn()
        peer.execute("SET statement_timeout = '60s'")
        assert peer.execute("SELECT id FROM pgjobs.jobs WHERE id = %s FOR UPDATE SKIP LOCKED",
                            (other,)).fetchall() == [(other,)]  # not held by the walk
    finally:
        gate.rollback()
        thread.join()
    assert "error" not in outcome, outcome
    assert outcome["page"] == "failed"
    untouched(rows, typo)


BIG = 250_000  # rows: a walk of more than two pages' 100,000


def fill(conn: Conn, count: int = BIG, last: str = "{}") -> None:
    """`count` rows of scope EMPTY without the misspelt field (the last one's
    document: `last`), dated before every job's cutoff."""
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT %s::int, 1, 'keep', CASE WHEN g = %s THEN %s::jsonb "
                 "ELSE '{\"status\": \"keep\"}' END, %s::timestamptz "
                 "FROM generate_series(1, %s) g", (EMPTY, count, last, OLD, count))
    conn.execute("ANALYZE user_table_rows")


def unchanged(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = %s::int "
                            "AND label = 'keep'", (EMPTY,)))


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_long_walk_is_spread_over_pages_that_change_nothing(rows: Conn, kind: str) -> None:
    # The whole walk in one page: 0.4-1.1 s on a 1M-row scope, the job's row
    # and table held all along (bench/typo_guard.py).
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}}, options={"page_size": 50_000})
    fill(rows)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    states, walked = [], []
    while (state := scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker))) == "more":
        states.append(state)
        walked.append(job(rows, typo)["payload"]["unchecked_walk"]["rows"])
        assert unchanged(rows) == BIG and job(rows, typo)["checkpoint"] is None
    assert state == "failed" and len(states) == 2, states
    assert walked == sorted(walked) and walked[0] <= 200_000 and walked[-1] < BIG, walked
    row = job(rows, typo)
    assert row["done"] == 0 and '"stauts"' in row["error"], row
    assert unchanged(rows) == BIG


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_path_the_walk_meets_late_clears_the_job_which_then_runs(rows: Conn,
                                                                   kind: str) -> None:
    right = submit(rows, kind, {"rare": 1}, options={"page_size": 50_000})
    fill(rows, last='{"rare": 1}')
    rows.execute("CALL pgjobs.run_job(%s)", (right,))
    row = job(rows, right)
    assert (row["status"], row["done"]) == ("succeeded", 1), row
    assert "unchecked_fields" not in row["payload"] and "unchecked_walk" not in row["payload"]
    assert unchanged(rows) == BIG - 1


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_walk_paused_or_handed_back_goes_on_where_it_was(rows: Conn, kind: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}}, options={"page_size": 50_000})
    fill(rows)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "more"
    first = job(rows, typo)["payload"]["unchecked_walk"]
    rows.execute("SELECT pgjobs.pause(%s)", (typo,))
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "paused"
    rows.execute("SELECT pgjobs.resume(%s)", (typo,))
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "more"
    assert job(rows, typo)["payload"]["unchecked_walk"]["rows"] > first["rows"]
    assert scalar(rows, "SELECT pgjobs.release(%s, %s)", (typo, worker)) is True
    rows.execute("CALL pgjobs.run('1 minute')")
    row = job(rows, typo)
    assert row["status"] == "failed" and row["done"] == 0 and '"stauts"' in row["error"], row
    assert unchanged(rows) == BIG


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_retry_after_the_rows_were_fixed_walks_from_the_start(rows: Conn, kind: str) -> None:
    # The failed walk's place stayed in the payload, and the retry's walk went
    # on from there: the field added to the scope's first row was never read.
    typo = submit(rows, kind, {"stauts": "x"}, options={"page_size": 50_000})
    fill(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    assert job(rows, typo)["status"] == "failed"
    assert "unchecked_walk" not in job(rows, typo)["payload"]
    rows.execute("UPDATE user_table_rows SET data = '{\"stauts\": \"x\"}' WHERE id = "
                 "(SELECT min(id) FROM user_table_rows WHERE table_id = %s::int)", (EMPTY,))
    rows.execute("SELECT pgjobs.retry(%s)", (typo,))
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    row = job(rows, typo)
    assert (row["status"], row["done"]) == ("succeeded", 1), row


def _cancel_mid_walk(conn: Conn, job_id: int, worker: str) -> None:
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "canceled"


def _fail_mid_walk(conn: Conn, job_id: int, worker: str) -> None:
    # Any failure that is not the walk's own verdict: a runner's error, a lease
    # lost for the last time, an unregistration fixed since.
    conn.execute("SELECT pgjobs.fail(%s, %s, 'runner died', false)", (job_id, worker))


ENDS: dict[str, Callable[[Conn, int, str], None]] = {
    "canceled": _cancel_mid_walk, "failed otherwise": _fail_mid_walk}


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("end", list(ENDS))
def test_a_retry_of_a_job_ended_mid_walk_walks_from_the_start(rows: Conn, kind: str,
                                                                end: str) -> None:
    # 8b0259b dropped the walk's place when the walk itself failed the job; a
    # job canceled or failed for another reason mid-walk kept it, and its retry
    # went on from there: the rows before it (fixed meanwhile) were never read,
    # and the retried job failed on a field its scope now has.
    typo = submit(rows, kind, {"stauts": "x"}, options={"page_size": 50_000})
    fill(rows)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "more"
    assert "unchecked_walk" in job(rows, typo)["payload"]
    ENDS[end](rows, typo, worker)
    rows.execute("UPDATE user_table_rows SET data = '{\"stauts\": \"x\"}' WHERE id = "
                 "(SELECT min(id) FROM user_table_rows WHERE table_id = %s::int)", (EMPTY,))
    rows.execute("SELECT pgjobs.retry(%s)", (typo,))
    assert "unchecked_walk" not in job(rows, typo)["payload"]
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    row = job(rows, typo)
    assert (row["status"], row["done"]) == ("succeeded", 1), row


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_every_page_of_a_walk_extends_the_lease(rows: Conn, kind: str) -> None:
    # A page that only walks (returns 'more', no row read for the page) did not
    # call pgjobs.heartbeat: a walk of pgjobs.field_check_rows rows spread over
    # ten pages ran on the claim's lease alone, and a slow scope (large
    # documents, cold cache) lost it mid-walk, an attempt counted each time.
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}},
                  options={"page_size": 50_000, "lease": "1 hour"})
    fill(rows)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    pages = 0
    while True:
        # The lease nearly spent (no clock involved: set, then read back).
        rows.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() + interval '10 minutes'"
                     " WHERE id = %s", (typo,))
        state = scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker))
        if state != "more":
            break
        pages += 1
        assert scalar(rows, "SELECT lease_expires_at > now() + interval '30 minutes' "
                            "FROM pgjobs.jobs WHERE id = %s", (typo,)) is True, pages
        assert job(rows, typo)["done"] == 0
    assert state == "failed" and pages == 2, (state, pages)
    assert unchanged(rows) == BIG


def _hook_raising(conn: Conn, sqlstate: str) -> None:
    """The hooked walk raises `sqlstate` (a hook over the fixture's hook)."""
    _hook_walk(conn, "_unknown_fields_hooked",
               f"RAISE EXCEPTION 'the walk met a transient error' USING ERRCODE = '{sqlstate}';")


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("sqlstate", ["53200", "40P01", "57014", "58030", "55006"])
def test_a_transient_error_in_the_walk_retries_the_job(rows: Conn, kind: str,
                                                        sqlstate: str) -> None:
    # The walk's errors all failed the job for good (its EXCEPTION WHEN OTHERS,
    # meant for a claimer that may not read the target): an out-of-memory, a
    # deadlock or an I/O error of one page ended a job that a page's own error
    # of the same SQLSTATE retries (pgjobs.retryable_sqlstate, the one policy).
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    _hook_raising(rows, sqlstate)
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "failed"
    row = job(rows, typo)
    assert row["status"] == "queued" and sqlstate in row["error"], row
    assert row["payload"]["unchecked_fields"] == ["stauts"], row
    assert unchanged_rows(rows) == 5


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_walk_the_claimer_may_not_run_still_fails_for_good(rows: Conn, kind: str) -> None:
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    _hook_raising(rows, "42501")
    [(worker,)] = rows.execute("SELECT worker FROM pgjobs.claim(ARRAY[%s], 'w')",
                               (kind,)).fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "failed"
    row = job(rows, typo)
    assert row["status"] == "failed" and "42501" in row["error"], row
    assert "allow_unknown_fields" in row["error"], row


def unchanged_rows(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = %s::int "
                            "AND label = 'keep'", (EMPTY,)))


@pytest.mark.parametrize("where", ["walk", "page"])
@pytest.mark.parametrize("call", ["CALL pgjobs.run_job(%s)", "CALL pgjobs.run('1 minute')"])
def test_an_operator_cancel_of_a_runner_ends_the_call(rows: Conn, make_conn: Any,
                                                      call: str, where: str) -> None:
    """pg_cancel_backend of a runner while a page runs (the typo guard's walk,
    or the page's own DELETE, held here in a trigger) ends the CALL with
    57014, once the job's failed attempt is committed (queued again). Both
    of the page's handlers catch query_canceled to count the attempt, and the
    CALL went on to its next page or job and returned normally: the
    operator's cancel was swallowed."""
    if where == "walk":
        typo = submit(rows, "delete", {"stauts": {"$ne": "keep"}})
        arrive(rows)
    else:
        arrive(rows)
        typo = submit(rows, "delete", {"status": "keep"})
        rows.execute(f"""
            CREATE FUNCTION public.hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('test.gate', true) = 'on' THEN
                    PERFORM pg_advisory_xact_lock({GATE});
                END IF;
                RETURN OLD;
            END $$""")
        rows.execute("CREATE TRIGGER hold BEFORE DELETE ON user_table_rows "
                      "FOR EACH ROW EXECUTE FUNCTION public.hold_delete()")
    gate = make_conn(autocommit=False)
    gate.execute("SELECT pg_advisory_xact_lock(%s)", (GATE,))
    runner = make_conn()
    runner.execute("SET test.gate = 'on'")
    pid = int(scalar(runner, "SELECT pg_backend_pid()"))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            runner.execute(call % (typo,) if "%s" in call else call)
            outcome["returned"] = True
        except BaseException as error:  # reported below
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: waiting_on_gate(rows, pid) or outcome,
                 what="the runner to wait in the walk")
        assert not outcome, outcome
        assert scalar(rows, "SELECT pg_cancel_backend(%s)", (pid,)) is True
        wait_for(lambda: outcome or waiting_on_gate(rows, pid), what="the CALL to end")
    finally:
        gate.rollback()
        thread.join()
    assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled), outcome
    row = job(rows, typo)
    assert row["status"] == "queued" and "57014" in row["error"], row
    assert row["attempts"] == 1, row
    assert unchanged_rows(rows) == 5
