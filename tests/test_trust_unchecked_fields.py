"""The typo guard on a scope that had no rows at the submit.

The guard refuses a filter naming a document path no row of the scope has,
because a misspelt `{"stauts": {"$ne": "keep"}}` selects every row. It let an
empty scope pass ("a job there changes nothing"), but a job judges rows by
their created_at, and rows dated before its cutoff can reach the scope before
it runs: an import queued ahead of it in the gate whose source carries
created_at (found in the hW trust pass), or an application restoring rows. The
misspelt delete then deleted every imported row and reported success.

Such a job now carries the paths it could not judge (payload
`unchecked_fields`) and its first attempt judges them against the scope as it
is then (pgjobs._may_start_attempt): a path no row has fails the job before it
reads a row. A scope still empty, a path some row has, or the option
`allow_unknown_fields` run as before. And a claim of several jobs of one
submitter no longer lets the first job's check stand for the others' own
(this deferred guard, and the import-after check): pgjobs._start_attempts.

The list stays until a judgment meets rows (found in the h3 trust pass): a
first claim on a scope still empty counted as judged, so rows that came after
it (before a later attempt, or before the first page) were read unjudged.
Every claim of an export and every page of a delete or backfill judges a
pending list; a judgment against rows clears it. A delete's or backfill's
claim no longer judges (tests/test_typo_guard_at_the_page.py): on a large
scope lacking the path the walk held the claim for up to a second. And the
submit judges or defers on the walk that reads the scope, not on a probe
before it (pgjobs._judge_fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    claim_import,
    job,
    make_people,
    make_rows_target,
    scalar,
    seed,
    submit_import,
)

Conn = psycopg.Connection[Any]

EMPTY = "99"  # a scope of user_table_rows with no row at the submit
OLD = "2001-01-01T00:00:00Z"  # before any job's cutoff

# Every shape of a misspelt field that selects rows which lack it.
TYPOS = [
    {"stauts": {"$ne": "keep"}},
    {"stauts": None},
    {"stauts": {"$exists": False}},
    {"stauts": {"$nin": ["keep"]}},
    {"$not": {"stauts": "keep"}},
    {"$or": [{"stauts": None}, {"k": 99}]},
    {"$and": [{"k": 1}, {"nest.b": {"$ne": 1}}]},
    {"k.x": {"$ne": 1}},
]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    seed(conn, target, 30)  # scopes 1..3; EMPTY has none
    return conn


def arrive(conn: Conn, scope: str = EMPTY, count: int = 5) -> None:
    """Rows dated before every job's cutoff reach `scope` (as an import or a
    restore would write them), with the fields the filters above misspell."""
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT %s::int, 1, 'keep', '{\"status\": \"keep\", \"k\": 1, "
                 "\"nest\": {\"a\": 1}}', %s::timestamptz FROM generate_series(1, %s)",
                 (scope, OLD, count))


def submit(conn: Conn, kind: str, filter_: dict[str, Any], scope: str = EMPTY,
           options: dict[str, Any] | None = None, set_: dict[str, Any] | None = None) -> int:
    opts = json.dumps(options or {})
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, json.dumps(filter_), opts)))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb,"
                                " %s::jsonb, %s::jsonb)",
                          (scope, json.dumps(filter_), json.dumps(set_ or {"label": "changed"}),
                           opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb,"
                            " %s::jsonb)", (scope, json.dumps(filter_), opts)))


def labels(conn: Conn, scope: str = EMPTY) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int ORDER BY id", (scope,))]


def failed_on(conn: Conn, job_id: int, path: str) -> None:
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert f'"{path}"' in row["error"] and "allow_unknown_fields" in row["error"], row["error"]
    assert row["done"] == 0


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("filter_", TYPOS, ids=json.dumps)
def test_a_misspelt_field_on_a_scope_filled_after_the_submit_fails_the_job(
        rows: Conn, kind: str, filter_: dict[str, Any]) -> None:
    job_id = submit(rows, kind, filter_)
    assert job(rows, job_id)["status"] == "queued"  # the submit still takes it
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    [path] = [p for p in job(rows, job_id)["payload"]["unchecked_fields"]
              if p not in ("k", "status", "nest.a")]
    failed_on(rows, job_id, path)
    assert labels(rows) == ["keep"] * 5  # not one row deleted or changed


def test_a_backfill_set_slip_on_a_scope_filled_after_the_submit_fails_the_job(
        rows: Conn) -> None:
    # "Label" for the column label: written as a new document field in every row.
    job_id = submit(rows, "backfill", {}, set_={"Label": "x"})
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    failed_on(rows, job_id, "Label")
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE data ? 'Label'") == 0


@pytest.mark.parametrize("options", [{"columns": ["id", "stauts"]}, {}])
def test_an_export_is_judged_at_its_claim(rows: Conn, options: dict[str, Any]) -> None:
    filter_ = {} if options else {"stauts": {"$ne": "keep"}}
    job_id = submit(rows, "export", filter_, options=options)
    arrive(rows)
    claimed = rows.execute("SELECT id FROM pgjobs.claim_export(%s, 'w')", (job_id,)).fetchall()
    assert claimed == []
    failed_on(rows, job_id, "stauts")


def test_the_first_attempt_judges_a_retry_again(rows: Conn) -> None:
    job_id = submit(rows, "delete", {"stauts": {"$ne": "keep"}})
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    failed_on(rows, job_id, "stauts")
    assert scalar(rows, "SELECT pgjobs.retry(%s)", (job_id,))
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    failed_on(rows, job_id, "stauts")
    assert labels(rows) == ["keep"] * 5


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_what_the_guard_lets_through_still_runs(rows: Conn, kind: str) -> None:
    # Still empty at the start: the job reads nothing, and succeeds.
    still = submit(rows, kind, {"stauts": {"$ne": "keep"}}, scope="98")
    rows.execute("CALL pgjobs.run_job(%s)", (still,))
    assert job(rows, still)["status"] == "succeeded"
    # A field the rows that arrived have: the job does its work.
    right = submit(rows, kind, {"status": "keep"})
    assert job(rows, right)["payload"]["unchecked_fields"] == ["status"]
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (right,))
    assert (job(rows, right)["status"], job(rows, right)["done"]) == ("succeeded", 5)
    # The option says the field is meant to be absent: nothing deferred.
    meant = submit(rows, kind, {"absent": None}, scope="97",
                   options={"allow_unknown_fields": True})
    assert "unchecked_fields" not in job(rows, meant)["payload"]
    arrive(rows, "97", 2)
    rows.execute("CALL pgjobs.run_job(%s)", (meant,))
    assert (job(rows, meant)["status"], job(rows, meant)["done"]) == ("succeeded", 2)
    # A scope with rows was judged at the submit: nothing deferred.
    judged = submit(rows, kind, {"k": 1}, scope="1")
    assert "unchecked_fields" not in job(rows, judged)["payload"]


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_one_claim_judges_each_job_on_its_own(rows: Conn, kind: str) -> None:
    # Same submitter, target and kind, two scopes: the first job's check passed
    # and was reused for the second, whose misspelt field it never judged.
    # (A delete or backfill is judged at its page, changed on purpose: both
    # are claimed, and the misspelt one fails at its first page.)
    clean = submit(rows, kind, {"k": 1}, scope="1")
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    arrive(rows)
    claimed = dict(rows.execute(
        "SELECT id, worker FROM pgjobs.claim(ARRAY[%s], 'w', '30 seconds', 10)",
        (kind,)).fetchall())
    if kind == "export":
        assert list(claimed) == [clean]
    else:
        assert list(claimed) == [clean, typo]
        rows.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (typo, claimed[typo]))
        assert labels(rows) == ["keep"] * 5
    failed_on(rows, typo, "stauts")


def test_one_claim_judges_each_job_against_imports_on_its_own(conn: Conn, dsn: str,
                                                              tmp_path: Path) -> None:
    # The import-after check (pgjobs._import_after) is the job's own too: a
    # delete not yet due held no place in its scope's gate, an import submitted
    # after it ran first; claimed beside another delete of the same submitter,
    # it was started on that one's check.
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    clean = scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}')")
    later = scalar(conn, "SELECT pgjobs.submit_delete('people', '2', '{}', '{}', "
                         "'{\"run_at\": \"2999-01-01T00:00:00Z\"}')")
    (tmp_path / "in.csv").write_text(f"name,created_at\nimported,{OLD}\n")
    imported = submit_import(conn, f"file://{tmp_path}/in.csv", "2")
    outcome = Importer(dsn, imported, claim_import(dsn, imported),
                       f"file://{tmp_path}/store").run()
    assert outcome.status == "succeeded", outcome
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (later,))  # now due
    claimed = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['delete'], 'w', '30 seconds', 10)")]
    assert claimed == [clean]
    assert job(conn, later)["status"] == "failed"
    assert f"import job {imported}" in job(conn, later)["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 2") == 1


def test_an_import_ahead_in_the_gate_no_longer_feeds_a_misspelt_delete(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    # The way pgjobs itself fills an empty scope before a delete behind it runs.
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    (tmp_path / "in.csv").write_text(
        "name,status,created_at\n" + "".join(f"p{i},keep,{OLD}\n" for i in range(5)))
    imported = submit_import(conn, f"file://{tmp_path}/in.csv", "5")
    delete = scalar(conn, "SELECT pgjobs.submit_delete('people', '5', %s::jsonb)",
                    (json.dumps({"stauts": {"$ne": "keep"}}),))
    backfill = scalar(conn, "SELECT pgjobs.submit_backfill('people', '5', %s::jsonb, "
                            "'{\"age\": 7}')", (json.dumps({"stauts": None}),))
    outcome = Importer(dsn, imported, claim_import(dsn, imported),
                       f"file://{tmp_path}/store").run()
    assert outcome.status == "succeeded", outcome
    for job_id in (delete, backfill):
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        failed_on(conn, job_id, "stauts")
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 5 AND age IS NULL") == 5


def test_a_check_that_cannot_run_fails_the_job_not_every_claim(rows: Conn) -> None:
    # The document column dropped under a queued job: judging its paths raises
    # (42703). Raised from the claim, it failed that claim and every later one
    # that picked the job; the job fails instead, naming the error. (An export:
    # a delete's claim no longer judges, changed on purpose; its page fails it
    # on the dropped column, below.)
    typo = submit(rows, "export", {"stauts": {"$ne": "keep"}})
    rows.execute("ALTER TABLE user_table_rows DROP COLUMN data")
    assert rows.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['export'], 'w', '30 seconds', 10)").fetchall() == []
    row = job(rows, typo)
    assert row["status"] == "failed" and "42703" in row["error"], row
    assert "pgjobs.retry" in row["error"]


def test_a_delete_whose_document_column_went_fails_at_its_page(rows: Conn) -> None:
    typo = submit(rows, "delete", {"stauts": {"$ne": "keep"}})
    rows.execute("ALTER TABLE user_table_rows DROP COLUMN data")
    [(worker,)] = rows.execute(
        "SELECT worker FROM pgjobs.claim(ARRAY['delete'], 'w', '30 seconds', 10)").fetchall()
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (typo, worker)) == "failed"
    row = job(rows, typo)
    assert row["status"] == "failed" and "data" in row["error"] and row["done"] == 0, row


def test_a_custom_kinds_payload_cannot_ask_for_the_check(rows: Conn) -> None:
    # A custom kind's payload is its client's: a list there is no deferred
    # guard, and the target (its code) is not judged for it at a claim.
    custom = scalar(rows, "SELECT pgjobs.submit('custom', 'user_table_rows', %s, %s::jsonb)",
                    (EMPTY, json.dumps({"unchecked_fields": ["stauts"]})))
    arrive(rows)
    claimed = [r[0] for r in rows.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['custom'], 'w', '30 seconds', 10)")]
    assert claimed == [custom]


def test_preview_names_the_paths_a_job_would_judge_at_its_start(rows: Conn) -> None:
    def preview(scope: str, options: dict[str, Any] | None = None) -> Any:
        return scalar(rows, "SELECT pgjobs.preview('user_table_rows', %s, %s::jsonb, '{}', "
                            "%s::jsonb)", (scope, json.dumps({"stauts": {"$ne": "keep"}}),
                                           json.dumps(options or {})))

    assert preview(EMPTY)["unchecked_fields"] == ["stauts"]
    assert preview(EMPTY, {"allow_unknown_fields": True})["unchecked_fields"] == []
    assert preview("1")["unchecked_fields"] == []  # judged now: unknown_fields
    assert preview("1")["unknown_fields"] == ["stauts"]


def test_a_lock_on_the_target_never_holds_the_claim(rows: Conn, make_conn: Any) -> None:
    # Judging the paths reads the target inside the claim: a client allowed to
    # delete may LOCK the table (ACCESS EXCLUSIVE) in a transaction it leaves
    # open, and the claim, with it the runner and every tenant's jobs behind
    # it, waited as long as it liked. The check waits a bounded time, then
    # leaves the job queued (its place in the gate kept) and the claim goes
    # on. It used to fail the job (55P03 in its error): a lock says nothing
    # about the job, and any client that may LOCK a shared table failed every
    # other tenant's job on a new scope that way (changed on purpose: the
    # job's status after the locked claim was asserted `failed`). A delete's
    # claim no longer reads the target at all (changed on purpose: it was left
    # queued by the claim); its page, under the lock, hands it back.
    typo = submit(rows, "delete", {"stauts": {"$ne": "keep"}})
    holder = make_conn(autocommit=False)
    holder.execute("LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE")
    try:
        claimer = make_conn()
        claimer.execute("SET statement_timeout = '60s'")  # the hang, as a failure
        [(claimed, worker)] = claimer.execute(
            "SELECT id, worker FROM pgjobs.claim(ARRAY['delete'], 'w', '30 seconds', 10)"
        ).fetchall()
        assert claimed == typo
        claimer.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (typo, worker))
    finally:
        holder.rollback()
    row = job(rows, typo)
    assert row["status"] == "queued" and row["done"] == 0, row
    assert row["payload"]["unchecked_fields"] == ["stauts"]
    # Judged once the table is free: rows came, none has the path.
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    failed_on(rows, typo, "stauts")
    assert labels(rows) == ["keep"] * 5


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_a_lock_on_a_shared_target_fails_no_tenants_job(rows: Conn, make_conn: Any,
                                                        kind: str) -> None:
    """Any session holding the shared table past the check's wait (a client's
    LOCK TABLE, an ALTER TABLE queued behind a long read) failed every job of
    every tenant whose scope had no rows at its submit, each at its first
    claim, right or wrong. The job now waits, the claim hands out the jobs
    behind it (a claim of several never picks the left job again: it picked it
    again and again, and never ended), and it runs once the table is free."""
    arrive(rows, "98")
    right = submit(rows, kind, {"status": "keep"}, scope="97")  # no rows yet
    other = submit(rows, kind, {"k": 1}, scope="98")  # judged at the submit
    arrive(rows, "97")
    holder = make_conn(autocommit=False)
    holder.execute("LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE")
    try:
        claimer = make_conn()
        claimer.execute("SET statement_timeout = '60s'")  # the hang, as a failure
        claimed = dict(claimer.execute(
            "SELECT id, worker FROM pgjobs.claim(%s, 'w', '30 seconds', 10)",
            ([kind],)).fetchall())
        if kind != "export":
            # Changed on purpose: the claim of a delete or backfill reads
            # nothing of the table, so both are claimed; the page under the
            # lock hands the job back (pgjobs._table_hand_back), unjudged.
            claimer.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (right, claimed[right]))
        else:
            assert claimer.execute("SELECT * FROM pgjobs.claim_export(%s, 'w')",
                                   (right,)).fetchall() == []
    finally:
        holder.rollback()
    assert list(claimed) == ([other] if kind == "export" else [right, other])
    row = job(rows, right)
    assert row["status"] == "queued" and row["done"] == 0, row
    if kind == "export":
        assert row["started_at"] is None, row
    else:
        rows.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (right,))  # back-off
    again = [r[0] for r in rows.execute(
        "SELECT id FROM pgjobs.claim(%s, 'w', '30 seconds', 10)", ([kind],))]
    assert again == [right]
    assert job(rows, right)["status"] == "running"


def test_a_job_left_queued_by_a_lock_keeps_its_place_in_the_gate(rows: Conn,
                                                                 make_conn: Any) -> None:
    # Left queued, not failed and not put off: a later writer of its scope
    # still waits behind it, and it runs first once the table is free.
    first = submit(rows, "delete", {"status": "gone"}, scope="97")  # no rows yet
    arrive(rows, "97")
    later = submit(rows, "backfill", {"status": "keep"}, scope="97")  # judged at the submit
    # (Changed on purpose: the claim hands the job out, reading nothing of the
    # table, and its page under the lock hands it back.)
    holder = make_conn(autocommit=False)
    holder.execute("LOCK TABLE user_table_rows IN ACCESS EXCLUSIVE MODE")
    try:
        claimer = make_conn()
        claimer.execute("SET statement_timeout = '60s'")  # the hang, as a failure
        [(claimed, worker)] = claimer.execute(
            "SELECT id, worker FROM pgjobs.claim(ARRAY['delete', 'backfill'], 'w',"
            " '30 seconds', 10)").fetchall()
        assert claimed == first
        claimer.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (first, worker))
    finally:
        holder.rollback()
    assert [job(rows, j)["status"] for j in (first, later)] == ["queued", "queued"]
    rows.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (first,))  # back-off
    assert [r[0] for r in rows.execute("SELECT id FROM pgjobs.claim(ARRAY['delete', "
                                       "'backfill'], 'w', '30 seconds', 10)")] == [first]


def expire(conn: Conn, job_id: int) -> None:
    """The runner that claimed `job_id` died (its lease ran out)."""
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (job_id,))


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("filter_", TYPOS, ids=json.dumps)
def test_a_first_attempt_on_a_still_empty_scope_leaves_the_check_pending(
        rows: Conn, kind: str, filter_: dict[str, Any]) -> None:
    # The deferred guard ran once, at the first claim, and took an empty scope
    # as judged: the claim committed (started_at set), the runner died before
    # a page, rows dated before the cutoff arrived, and the next attempt (no
    # longer a first one) read them all unjudged.
    typo = submit(rows, kind, filter_)
    claimed = [r[0] for r in rows.execute(
        "SELECT id FROM pgjobs.claim(%s, 'w', '30 seconds', 10)", ([kind],))]
    assert claimed == [typo]
    expire(rows, typo)
    arrive(rows)
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    [path] = [p for p in job(rows, typo)["payload"]["unchecked_fields"]
              if p not in ("k", "status", "nest.a")]
    failed_on(rows, typo, path)
    assert labels(rows) == ["keep"] * 5


def test_an_export_claimed_on_a_still_empty_scope_is_judged_again(rows: Conn) -> None:
    typo = submit(rows, "export", {"stauts": {"$ne": "keep"}})
    assert [r[0] for r in rows.execute(
        "SELECT id FROM pgjobs.claim_export(%s, 'w')", (typo,))] == [typo]
    expire(rows, typo)
    arrive(rows)
    assert rows.execute("SELECT id FROM pgjobs.claim_export(%s, 'w')", (typo,)).fetchall() == []
    failed_on(rows, typo, "stauts")


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_check_passed_on_rows_is_not_paid_again(rows: Conn, kind: str) -> None:
    # Judged against rows that have the field: the job is cleared, and a
    # later attempt (after a lost lease) does not walk the scope again.
    # (Cleared by the first page now, not the claim: changed on purpose.)
    right = submit(rows, kind, {"status": "keep"})
    arrive(rows)
    [(claimed, worker)] = rows.execute(
        "SELECT id, worker FROM pgjobs.claim(%s, 'w', '30 seconds', 10)", ([kind],)).fetchall()
    assert claimed == right
    assert scalar(rows, "SELECT pgjobs._run_page(%s, %s)", (right, worker)) == "more"
    assert "unchecked_fields" not in job(rows, right)["payload"]
    expire(rows, right)
    rows.execute("CALL pgjobs.run_job(%s)", (right,))
    assert (job(rows, right)["status"], job(rows, right)["done"]) == ("succeeded", 5)


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_the_submit_defers_on_the_look_that_judged(rows: Conn, kind: str) -> None:
    # The submit asked "does the scope have rows?" (one look) and then walked
    # the scope for the paths (a second look). An application emptying the
    # scope between the two left a job neither judged nor deferred, and rows
    # refilled later were read unjudged. Here the first look is made to see
    # rows the walk does not (as a concurrent DELETE committed between them).
    rows.execute("CREATE OR REPLACE FUNCTION pgjobs._fields_unchecked(p_reg "
                 "pgjobs.target_registry, p_scope text, p_paths text[], p_options jsonb) "
                 "RETURNS text[] LANGUAGE sql AS 'SELECT NULL::text[]'")
    typo = submit(rows, kind, {"stauts": {"$ne": "keep"}})
    assert job(rows, typo)["payload"]["unchecked_fields"] == ["stauts"]
    arrive(rows)
    if kind == "export":
        assert rows.execute("SELECT id FROM pgjobs.claim_export(%s, 'w')",
                            (typo,)).fetchall() == []
    else:
        rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    failed_on(rows, typo, "stauts")
    assert labels(rows) == ["keep"] * 5


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("filter_", TYPOS, ids=json.dumps)
def test_rows_that_arrive_after_the_claim_are_judged_at_the_first_page(
        rows: Conn, kind: str, filter_: dict[str, Any]) -> None:
    # The claim judged an empty scope; rows dated before the cutoff came
    # between the claim and the first page (a restore while the job ran).
    # The page judges what is still pending, before it reads a row.
    typo = submit(rows, kind, filter_)
    [(claimed, worker)] = rows.execute(
        "SELECT id, worker FROM pgjobs.claim(%s, 'w', '30 seconds', 10)", ([kind],)).fetchall()
    assert claimed == typo
    arrive(rows)
    rows.execute("CALL pgjobs._run_claimed(%s, %s, NULL)", (typo, worker))
    [path] = [p for p in job(rows, typo)["payload"]["unchecked_fields"]
              if p not in ("k", "status", "nest.a")]
    failed_on(rows, typo, path)
    assert labels(rows) == ["keep"] * 5
