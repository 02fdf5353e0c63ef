"""The deferred typo guard of an export: transient errors, and rows that come
after its claim.

An export submitted on a scope with no rows carries the document paths its
submit could not judge (payload `unchecked_fields`), judged at its claim
(pgjobs._may_start_attempt: its worker reads chunks with no engine page in
between). Two gaps the delete's page-side guard had closed:

* A transient error in that walk (out of memory, a deadlock, a statement
  canceled, an I/O error: what pgjobs.retryable_sqlstate retries) failed the
  export for good, where the same error in a delete's walk fails the attempt
  and the job is retried. And 57014 (query_canceled is not one of PL/pgSQL's
  OTHERS) left the whole claim: the claim failed, and every claim that picked
  the job after it. Now it fails the attempt only: counted, queued again
  after a backoff (event `retrying`), the error naming the walk and the
  SQLSTATE; failed once the attempts are spent. A 57014 counts so only when
  it is the statement_timeout's (pgjobs._statement_timed_out, by time): a
  user's cancel (pg_cancel_backend, a client's cancel request) ends the
  claim with it, the job or part left as it was, no attempt counted. It was
  swallowed, counted as a transient error and the claim went on.
* A claim on a scope still empty leaves the paths pending, and the worker's
  chunks read whatever the scope holds when they run: rows that arrived
  between the claim and the first chunk (a restore, an import carrying
  created_at) were exported unjudged, and a misspelt
  `{"stauts": {"$ne": "keep"}}` exported every one of them. Now a chunk that
  would read a row while the paths are pending ends the attempt (55000,
  retried), and the next claim judges them.

Synchronised on state, never on time: a hook over pgjobs._unknown_fields_from
raises the error.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import psycopg
import psycopg.rows
import pytest

from pgjobs.poller.export import Exporter
from tests.support import drain_notifies, job, make_rows_target, scalar, seed, wait_for

Conn = psycopg.Connection[Any]

EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"
SIGNATURE = "pgjobs.target_registry, text, text[], text, bigint, bigint"
# Raised at once by the walk; a 57014 raised so is a user's cancel, and a
# statement_timeout's is a real one (test_a_statement_timeout_in_...).
TRANSIENT = ["53200", "40P01", "58030", "55006", "08006"]
# Every way an export can be claimed: the one-job claim of `pgjobs export` and
# a worker's claim of its kinds.
CLAIMS = {
    "claim_export": "SELECT id, worker FROM pgjobs.claim_export(%s, 'w')",
    "claim": "SELECT id, worker FROM pgjobs.claim(ARRAY['export'], 'w', '30 seconds', 10)"
             " WHERE %s::bigint IS NOT NULL",
}
# Misspelt filters, and a misspelt column, that take rows lacking the field.
TYPOS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"stauts": {"$ne": "keep"}}, {}),
    ({"stauts": None}, {}),
    ({"$not": {"stauts": "keep"}}, {}),
    ({}, {"columns": ["id", "stauts"]}),
]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    return conn


def arrive(conn: Conn, count: int = 5) -> None:
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT %s::int, 1, 'keep', '{\"status\": \"keep\"}', %s::timestamptz "
                 "FROM generate_series(1, %s)", (EMPTY, OLD, count))


def submit(conn: Conn, filter_: dict[str, Any], options: dict[str, Any] | None = None) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb, "
                            "%s::jsonb)", (EMPTY, json.dumps(filter_), json.dumps(options or {}))))


def hook_raising(conn: Conn, sqlstate: str) -> None:
    """The walk raises `sqlstate`."""
    conn.execute(f"ALTER FUNCTION pgjobs._unknown_fields_from({SIGNATURE}) "
                 "RENAME TO _unknown_fields_walk")
    conn.execute(f"""
        CREATE FUNCTION pgjobs._unknown_fields_from(p_reg pgjobs.target_registry,
            p_scope text, p_paths text[], p_after text, p_read bigint, p_budget bigint,
            OUT p_missing text[], OUT p_rows_read bigint, OUT p_last text, OUT p_state text)
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the walk met an error' USING ERRCODE = '{sqlstate}';
        END $$""")


def hook_sleeping(conn: Conn) -> None:
    """The walk sleeps (until a timeout or a cancel ends it)."""
    conn.execute(f"ALTER FUNCTION pgjobs._unknown_fields_from({SIGNATURE}) "
                 "RENAME TO _unknown_fields_walk")
    conn.execute("""
        CREATE FUNCTION pgjobs._unknown_fields_from(p_reg pgjobs.target_registry,
            p_scope text, p_paths text[], p_after text, p_read bigint, p_budget bigint,
            OUT p_missing text[], OUT p_rows_read bigint, OUT p_last text, OUT p_state text)
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_sleep(60);
        END $$""")


def cancel_when_sleeping(make_conn: Any, pid: int) -> threading.Thread:
    """A thread that cancels backend `pid` once it sleeps in the walk
    (pg_cancel_backend, as an operator would): synchronised on its state."""
    def run() -> None:
        other = make_conn()
        wait_for(lambda: bool(scalar(other, "SELECT wait_event = 'PgSleep' "
                                     "FROM pg_stat_activity WHERE pid = %s", (pid,))),
                 timeout=30)
        other.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def users_cancel(conn: Conn, make_conn: Any, how: str, statement: str,
                 args: tuple[Any, ...]) -> None:
    """Runs `statement` while the walk meets a user's cancel, `how`: a real
    pg_cancel_backend, or a 57014 raised at once with statement_timeout off
    or far ahead; it must end with QueryCanceled."""
    if how == "pg_cancel_backend":
        hook_sleeping(conn)
        thread = cancel_when_sleeping(make_conn, conn.info.backend_pid)
    else:
        hook_raising(conn, "57014")
        conn.execute(f"SET statement_timeout = '{how.removeprefix('timeout ')}'")
        thread = None
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute(statement, args)
    if thread is not None:
        thread.join(30)
    conn.execute("RESET statement_timeout")
    unhook(conn)


CANCELS = ["pg_cancel_backend", "timeout 0", "timeout 1h"]


def unhook(conn: Conn) -> None:
    conn.execute(f"DROP FUNCTION pgjobs._unknown_fields_from({SIGNATURE})")
    conn.execute(f"ALTER FUNCTION pgjobs._unknown_fields_walk({SIGNATURE}) "
                 "RENAME TO _unknown_fields_from")


def failed_on(conn: Conn, job_id: int, path: str) -> None:
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert f'"{path}"' in row["error"] and "allow_unknown_fields" in row["error"], row["error"]


def due_now(conn: Conn, job_id: int) -> None:
    """The backoff over (set, not waited for)."""
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))


@pytest.mark.parametrize("claim", list(CLAIMS))
@pytest.mark.parametrize("sqlstate", TRANSIENT)
def test_a_transient_error_in_the_claims_walk_fails_the_attempt_only(
        rows: Conn, make_conn: Any, claim: str, sqlstate: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    hook_raising(rows, sqlstate)
    assert rows.execute(CLAIMS[claim], (typo,)).fetchall() == []
    row = job(rows, typo)
    assert (row["status"], row["attempts"]) == ("queued", 1), row
    assert "walk" in row["error"] and f"SQLSTATE {sqlstate}" in row["error"], row["error"]
    assert row["payload"]["unchecked_fields"] == ["stauts"], row
    assert scalar(rows, "SELECT run_at > now() FROM pgjobs.jobs WHERE id = %s", (typo,))
    events = [e["event"] for e in drain_notifies(listener, 0.0) if e["id"] == typo]
    assert events == ["retrying"], events
    # The error gone, the next claim judges the paths against the rows.
    unhook(rows)
    due_now(rows, typo)
    assert rows.execute(CLAIMS[claim], (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_a_statement_timeout_in_the_claims_walk_fails_the_attempt_only(
        rows: Conn, claim: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    hook_sleeping(rows)
    # The real timer, fired in the walk (which sleeps): 3 s, not 300 ms, so the
    # claim's own work before the walk (most of a second under load) cannot
    # reach it outside the walk's handler, where it ends the claim with 57014.
    rows.execute("SET statement_timeout = '3s'")
    assert rows.execute(CLAIMS[claim], (typo,)).fetchall() == []
    rows.execute("RESET statement_timeout")
    row = job(rows, typo)
    assert (row["status"], row["attempts"]) == ("queued", 1), row
    assert "walk" in row["error"] and "SQLSTATE 57014" in row["error"], row["error"]
    unhook(rows)
    due_now(rows, typo)
    assert rows.execute(CLAIMS[claim], (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")


@pytest.mark.parametrize("claim", list(CLAIMS))
@pytest.mark.parametrize("how", CANCELS)
def test_a_users_cancel_of_the_claims_walk_ends_the_claim_and_leaves_the_job(
        rows: Conn, make_conn: Any, claim: str, how: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    before = job(rows, typo)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    users_cancel(rows, make_conn, how, CLAIMS[claim], (typo,))
    row = job(rows, typo)
    # Rolled back with the claim: no attempt, no error, no event, no backoff.
    assert (row["status"], row["attempts"], row["error"]) == ("queued", 0, None), row
    assert row["run_at"] == before["run_at"] and row["worker"] is None, row
    assert row["payload"]["unchecked_fields"] == ["stauts"], row
    assert [e for e in drain_notifies(listener, 0.0) if e["id"] == typo] == []
    # The next claim judges the paths against the rows.
    assert rows.execute(CLAIMS[claim], (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")


def test_an_export_whose_walk_keeps_failing_fails_when_its_attempts_are_spent(
        rows: Conn) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    rows.execute("UPDATE pgjobs.jobs SET max_attempts = 2 WHERE id = %s", (typo,))
    arrive(rows)
    hook_raising(rows, "53200")
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    assert job(rows, typo)["status"] == "queued"
    due_now(rows, typo)
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    row = job(rows, typo)
    assert (row["status"], row["attempts"]) == ("failed", 2), row
    assert "SQLSTATE 53200" in row["error"]


def test_an_error_retrying_cannot_fix_still_fails_the_export(rows: Conn) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    hook_raising(rows, "42501")
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    row = job(rows, typo)
    assert row["status"] == "failed" and "42501" in row["error"], row
    assert "allow_unknown_fields" in row["error"]


@pytest.mark.parametrize(("filter_", "options"), TYPOS, ids=json.dumps)
def test_rows_that_arrive_after_the_claim_are_not_exported_unjudged(
        rows: Conn, dsn: str, local_dir: str, filter_: dict[str, Any],
        options: dict[str, Any]) -> None:
    typo = submit(rows, filter_, options)
    [(claimed, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    assert claimed == typo
    assert job(rows, typo)["payload"]["unchecked_fields"] == ["stauts"]  # still empty
    arrive(rows)
    # A chunk (in the worker's REPEATABLE READ transaction) refuses to read.
    with psycopg.connect(dsn, autocommit=True) as chunk:
        chunk.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as exc:
            chunk.execute("SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 1000)",
                          (typo,))
        assert '"stauts"' in str(exc.value)
        assert exc.value.diag.message_hint and "retried" in exc.value.diag.message_hint
    # The worker: the attempt ends, nothing exported; the next claim judges.
    outcome = Exporter(dsn, typo, worker, local_dir).run()
    assert outcome.status == "retrying", outcome
    row = job(rows, typo)
    assert (row["status"], row["done"]) == ("queued", 0), row
    assert "55000" in row["error"] or "cannot read rows yet" in row["error"], row["error"]
    due_now(rows, typo)
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")


def test_a_scope_still_empty_at_the_chunk_exports_nothing(
        rows: Conn, dsn: str, local_dir: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    outcome = Exporter(dsn, typo, worker, local_dir).run()
    assert outcome.status == "succeeded", outcome
    assert job(rows, typo)["done"] == 0


def test_fields_judged_at_the_claim_let_the_chunks_read(
        rows: Conn, dsn: str, local_dir: str) -> None:
    right = submit(rows, {"status": {"$ne": "gone"}})
    arrive(rows)
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (right,)).fetchall()
    assert "unchecked_fields" not in job(rows, right)["payload"]
    outcome = Exporter(dsn, right, worker, local_dir).run()
    assert outcome.status == "succeeded", outcome
    assert job(rows, right)["done"] == 5


@pytest.mark.parametrize(("sqlstate", "status"), [("XX000", "failed"), ("53200", "queued")])
def test_an_error_after_the_walk_is_judged_by_its_sqlstate(
        rows: Conn, sqlstate: str, status: str) -> None:
    # The walk found the path missing; naming the likely field reads the scope
    # again, outside the walk's own handler. Its error escaped the claim (which
    # failed, and every claim that picked the job after it); now it is the
    # job's: failed for good, or the attempt retried when transient.
    typo = submit(rows, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    rows.execute(f"""
        CREATE OR REPLACE FUNCTION pgjobs._field_guess(p_reg pgjobs.target_registry,
            p_scope text, p_path text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the guess met an error' USING ERRCODE = '{sqlstate}';
        END $$""")
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    row = job(rows, typo)
    assert row["status"] == status and f"SQLSTATE {sqlstate}" in row["error"], row
    assert rows.execute(CLAIMS["claim"], (typo,)).fetchall() == []  # claims go on


PARTS = {"parallel": 2, "chunk_rows": 5}


def parts_of(conn: Conn, job_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT part, status, attempts, done, error FROM pgjobs.export_parts "
                           "WHERE job_id = %s ORDER BY part", (job_id,)).fetchall()


def split(conn: Conn, job_id: int, worker: str) -> int:
    return int(scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, worker)))


def claim_part(conn: Conn, job_id: int) -> list[Any]:
    return conn.execute("SELECT part, worker FROM pgjobs.claim_export_part(%s, 'h')",
                        (job_id,)).fetchall()


@pytest.mark.parametrize(("filter_", "options"), TYPOS, ids=json.dumps)
def test_a_parallel_export_judges_its_fields_at_a_parts_claim(
        rows: Conn, dsn: str, local_dir: str, filter_: dict[str, Any],
        options: dict[str, Any]) -> None:
    # The scope empty at the job's claim, its rows there when the parts are
    # split: the parts' claims judge the fields, and the job fails for good
    # naming the unknown one, with the guard's hint, having read nothing.
    typo = submit(rows, filter_, {**options, **PARTS})
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    arrive(rows, 40)
    outcome = Exporter(dsn, typo, worker, local_dir).run()
    assert outcome.status == "failed", outcome
    failed_on(rows, typo, "stauts")
    row = job(rows, typo)
    assert row["done"] == 0 and row["error"].count("[22023]") == 1, row
    assert all(p["done"] == 0 for p in parts_of(rows, typo))
    assert [f for _, _, fs in os.walk(local_dir) for f in fs] == []


@pytest.mark.parametrize("columns", [None, ["id", "status"]])
def test_a_parallel_export_whose_fields_are_right_reads_the_rows_that_came(
        rows: Conn, dsn: str, local_dir: str, columns: list[str] | None) -> None:
    right = submit(rows, {"status": {"$ne": "gone"}},
                   {**PARTS, **({"columns": columns} if columns else {})})
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (right,)).fetchall()
    assert job(rows, right)["payload"]["unchecked_fields"]  # still empty at the claim
    arrive(rows, 40)
    outcome = Exporter(dsn, right, worker, local_dir).run()
    assert outcome.status == "succeeded", outcome
    assert job(rows, right)["done"] == 40
    assert "unchecked_fields" not in job(rows, right)["payload"]
    assert len(parts_of(rows, right)) == 2


@pytest.mark.parametrize("right", [False, True], ids=["typo", "right"])
def test_a_part_whose_chunk_meets_rows_unjudged_is_retried_alone(
        rows: Conn, dsn: str, local_dir: str, right: bool) -> None:
    # Parts split on rows, the rows gone at a part's claim (the list stays
    # pending) and back before its chunk: the chunk refuses (55000), the
    # part is retried alone (the job and the other part untouched), and its
    # next claim judges the fields.
    job_id = submit(rows, {"status" if right else "stauts": {"$ne": "keep"}}, PARTS)
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (job_id,)).fetchall()
    arrive(rows, 40)
    assert split(rows, job_id, worker) == 2
    rows.execute("CREATE TABLE held AS SELECT * FROM user_table_rows WHERE table_id = %s::int",
                 (EMPTY,))
    rows.execute("DELETE FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))
    [(part, part_worker)] = claim_part(rows, job_id)
    assert job(rows, job_id)["payload"]["unchecked_fields"]  # the scope empty: pending
    rows.execute("INSERT INTO user_table_rows SELECT * FROM held")
    with psycopg.connect(dsn, autocommit=True) as chunk:
        chunk.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as exc:
            chunk.execute("SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 5)", (job_id,))
        hint = exc.value.diag.message_hint or ""
        assert "a parallel export's part" in hint and "retried" in hint, hint
    # What the part's worker does with a retryable SQLSTATE (PartExporter._fail).
    assert scalar(rows, "SELECT pgjobs.export_part_finish(%s, %s, %s, 'retry', NULL, %s)",
                  (job_id, part, part_worker, "cannot read rows yet [55000]")) == "queued"
    assert job(rows, job_id)["status"] == "running"
    claimed = claim_part(rows, job_id)
    if right:
        assert [p for p, _ in claimed] == [part]
        assert "unchecked_fields" not in job(rows, job_id)["payload"]
        return
    assert claimed == []
    first = parts_of(rows, job_id)[part - 1]
    assert (first["status"], first["attempts"]) == ("failed", 2), first
    assert '"stauts"' in first["error"] and "allow_unknown_fields" in first["error"]
    assert first["error"].count("[22023]") == 1


def test_the_whole_flow_of_a_part_that_meets_rows_at_its_chunk(
        rows: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Through the worker: the scope empty at the split (one part) and at the
    # part's claim; rows arrive right after it. The part's chunk refuses, the
    # part is retried, its claim judges, and the job fails naming the field
    # (not the 55000 of the chunk, and no retry of the whole job needed).
    from pgjobs.poller import parallel

    typo = submit(rows, {"stauts": {"$ne": "keep"}}, PARTS)
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    claim = parallel._claim
    claims: list[Any] = []

    def claim_then_rows(*args: Any) -> Any:
        row = claim(*args)
        claims.append(row)
        if len(claims) == 1:
            arrive(rows, 40)
        return row

    monkeypatch.setattr(parallel, "_claim", claim_then_rows)
    outcome = Exporter(dsn, typo, worker, local_dir).run()
    assert outcome.status == "failed", outcome
    failed_on(rows, typo, "stauts")
    assert job(rows, typo)["attempts"] == 1  # the part was retried, not the job
    [first] = parts_of(rows, typo)
    assert first["attempts"] == 2 and first["done"] == 0, first


@pytest.mark.parametrize("sqlstate", ["53200", "40P01"])
def test_a_transient_error_in_a_parts_walk_retries_that_part_only(
        rows: Conn, sqlstate: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}}, {**PARTS, "max_attempts": 2})
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    arrive(rows, 40)
    assert split(rows, typo, worker) == 2
    hook_raising(rows, sqlstate)
    assert claim_part(rows, typo) == []
    first, second = parts_of(rows, typo)
    assert (first["status"], first["attempts"]) == ("queued", 1), first
    assert first["error"].count(f"[{sqlstate}]") == 1 and "walk" in first["error"], first
    assert (second["status"], second["attempts"]) == ("queued", 0), second
    assert job(rows, typo)["status"] == "running"
    assert job(rows, typo)["payload"]["unchecked_fields"] == ["stauts"]
    # Its attempts spent, the part fails (and through the worker, the job).
    assert claim_part(rows, typo) == []
    assert parts_of(rows, typo)[0]["status"] == "failed"
    # The error gone, the other part's claim judges the fields.
    unhook(rows)
    assert claim_part(rows, typo) == []
    second = parts_of(rows, typo)[1]
    assert second["status"] == "failed" and '"stauts"' in second["error"], second


def test_a_statement_timeout_in_a_parts_walk_retries_that_part_only(rows: Conn) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}}, PARTS)
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    arrive(rows, 40)
    assert split(rows, typo, worker) == 2
    hook_sleeping(rows)
    rows.execute("SET statement_timeout = '3s'")  # in the walk, as above
    assert claim_part(rows, typo) == []
    rows.execute("RESET statement_timeout")
    first, second = parts_of(rows, typo)
    assert (first["status"], first["attempts"]) == ("queued", 1), first
    assert "[57014]" in first["error"] and "walk" in first["error"], first
    assert (second["status"], second["attempts"]) == ("queued", 0), second
    unhook(rows)


@pytest.mark.parametrize("how", CANCELS)
def test_a_users_cancel_of_a_parts_walk_ends_the_claim_and_leaves_the_part(
        rows: Conn, make_conn: Any, how: str) -> None:
    typo = submit(rows, {"stauts": {"$ne": "keep"}}, PARTS)
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    arrive(rows, 40)
    assert split(rows, typo, worker) == 2
    before = parts_of(rows, typo)
    users_cancel(rows, make_conn, how,
                 "SELECT part, worker FROM pgjobs.claim_export_part(%s, 'h')", (typo,))
    assert parts_of(rows, typo) == before  # no attempt, no error: rolled back
    assert job(rows, typo)["status"] == "running"
    assert job(rows, typo)["payload"]["unchecked_fields"] == ["stauts"]
    # The next part's claim judges the fields: the part fails naming the path.
    assert claim_part(rows, typo) == []
    assert parts_of(rows, typo)[0]["status"] == "failed"
    assert '"stauts"' in parts_of(rows, typo)[0]["error"]
