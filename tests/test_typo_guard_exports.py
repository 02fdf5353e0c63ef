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
  SQLSTATE; failed once the attempts are spent.
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
from typing import Any

import psycopg
import pytest

from pgjobs.poller.export import Exporter
from tests.support import drain_notifies, job, make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]

EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"
SIGNATURE = "pgjobs.target_registry, text, text[], text, bigint, bigint"
TRANSIENT = ["53200", "40P01", "57014", "58030", "55006", "08006"]
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


def test_a_parallel_export_reads_no_row_unjudged_either(
        rows: Conn, dsn: str, local_dir: str) -> None:
    # Its parts are split after the claim, and each part reads its own chunks:
    # a part that cannot read fails (after its own retries, which do not
    # judge) and fails the job, having read nothing; pgjobs.retry and the
    # claim after it judge the fields. (Not retried as a whole export: a
    # known limit, docs/exports.md.)
    typo = submit(rows, {"stauts": {"$ne": "keep"}}, {"parallel": 2})
    [(_, worker)] = rows.execute(CLAIMS["claim_export"], (typo,)).fetchall()
    arrive(rows, 40)
    outcome = Exporter(dsn, typo, worker, local_dir).run()
    assert outcome.status == "failed", outcome
    row = job(rows, typo)
    assert row["done"] == 0 and "cannot read rows yet" in row["error"], row
    assert f"pgjobs.retry({typo})" in row["error"] or "stauts" in row["error"], row
    assert scalar(rows, "SELECT pgjobs.retry(%s)", (typo,))
    assert rows.execute(CLAIMS["claim_export"], (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")
