"""Delete jobs against real PostgreSQL: the exact row set (scope, filter,
cutoff, exclusions) against a Python reference, key and scope types, the
runner (run_job, run, pages, crash and resume, cancel, lock waits, budget),
the gate, concurrent inserts, bad arguments, and `pgjobs delete`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors

from pgjobs.cli.main import main
from tests.support import (
    Conn,
    Row,
    Target,
    crash_runner_mid_job,
    cutoff_of,
    expire_lease,
    insert_row,
    job,
    job_rows,
    make_rows_target,
    run_job,
    run_pages,
    scalar,
    seed,
    slow_deletes,
    snapshot,
    submit_backfill,
    submit_delete,
    wait_for,
    who,
)

MakeConn = Callable[..., Conn]


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t)
    return t






# --- the row set --------------------------------------------------------------

CASES = [
    # key, scope, document, filter, Python reference of the filter
    ("bigint", "int", True, {"k": 2}, lambda r: r["data"].get("k") == 2),
    ("text", "text", True, {"k": {"$in": [1, 3]}, "n": {"$lt": 5}},
     lambda r: r["data"].get("k") in (1, 3) and r["n"] < 5),
    ("uuid", "int", True, {"nest.a": 1}, lambda r: r["data"]["nest"].get("a") == 1),
    ("bigint", "text", False, {"n": {"$gte": 3}}, lambda r: r["n"] >= 3),
    ("uuid", "text", False, {}, lambda r: True),
    ("text", "int", False, {"label": {"$contains": "1"}}, lambda r: "1" in r["label"]),
]


@pytest.mark.parametrize(("key_type", "scope_type", "document", "filter_", "match"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'doc' if c[2] else 'nodoc'}" for c in CASES])
def test_delete_removes_exactly_the_reference_rows(
        conn: Conn, key_type: str, scope_type: str, document: bool, filter_: dict[str, Any],
        match: Callable[[Row], bool]) -> None:
    t = make_rows_target(conn, key_type=key_type, scope_type=scope_type, document=document)
    seed(conn, t)
    scope = t.scope(2)
    before = snapshot(conn, t)
    in_scope = sorted(k for k, r in before.items() if r["table_id"] == scope and match(r))
    exclude = in_scope[:3] + in_scope[-2:]
    job_id = submit_delete(conn, t, scope, filter_, exclude, {"page_size": 37})
    cutoff = cutoff_of(conn, job_id)
    # Rows inserted after the submit survive, even when they match.
    late = [insert_row(conn, t, scope, n=i, data={"k": 2, "nest": {"a": 1}}, key=f"late-{i}")
            for i in range(3)]

    run_job(conn, job_id)

    doomed = job_rows(before, scope, cutoff, match, frozenset(exclude))
    assert doomed, "the case must delete something"
    assert any(r["created_at"] > cutoff and r["table_id"] == scope and match(r)
               for r in before.values()), "the case must have matching rows after the cutoff"
    after = snapshot(conn, t)
    assert set(after) == (set(before) - doomed) | set(late)
    for key, row in before.items():
        if key not in doomed:
            assert after[key] == row  # other scopes and spared rows untouched
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["total"] == finished["done"] == len(doomed)
    assert finished["result"]["deleted"] == len(doomed)
    assert finished["attempts"] == 1


def test_two_deletes_of_one_scope_and_a_delete_of_another(conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    first = submit_delete(conn, target, "1", {"k": 1})
    second = submit_delete(conn, target, "1", {"n": 2})
    other = submit_delete(conn, target, "3", {"k": {"$ne": 1}})
    conn.execute("CALL pgjobs.run('30 seconds')")
    cut = {i: cutoff_of(conn, i) for i in (first, second, other)}
    doomed = (job_rows(before, "1", cut[first], lambda r: r["data"]["k"] == 1)
              | job_rows(before, "1", cut[second], lambda r: r["n"] == 2)
              | job_rows(before, "3", cut[other], lambda r: r["data"]["k"] != 1))
    assert set(snapshot(conn, target)) == set(before) - doomed
    assert {job(conn, i)["status"] for i in (first, second, other)} == {"succeeded"}


def test_adaptive_page_size_covers_every_row(conn: Conn, target: Target) -> None:
    seed(conn, target, 4000, start=10_000)
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "1", {"k": {"$in": [0, 4]}})
    run_job(conn, job_id)
    doomed = job_rows(before, "1", cutoff_of(conn, job_id), lambda r: r["data"]["k"] in (0, 4))
    assert set(snapshot(conn, target)) == set(before) - doomed
    done = job(conn, job_id)
    assert done["done"] == len(doomed)
    assert 100 <= done["checkpoint"]["page_size"] <= 50000
    assert done["checkpoint"]["last_page_ms"] >= 0


def test_upper_bound_follows_key_order_not_text_order(conn: Conn) -> None:
    """Keys 1..2000 sort differently as text ('10' < '9'): pages must hold
    exactly page_size keys in key order."""
    t = make_rows_target(conn)
    seed(conn, t, 2000)
    scope_rows = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")
    job_id = submit_delete(conn, t, "1", {"k": 3}, options={"page_size": 10})
    checkpoints: list[dict[str, Any]] = []
    run_pages(conn, job_id, each=lambda _: checkpoints.append(job(conn, job_id)["checkpoint"]))
    afters = [int(c["after"]) for c in checkpoints[1:-1]]
    assert afters == sorted(afters)
    assert job(conn, job_id)["result"]["pages"] == scope_rows // 10 + 1


def test_large_scope_total_is_estimated_then_exact(conn: Conn) -> None:
    """From 100000 rows on, total starts as a block-sample estimate (marked in
    the checkpoint), never trails done, and equals done at the end."""
    # Autovacuum off: its ANALYZE or VACUUM of the 220,000 new rows sets
    # relpages back to the table's own (found with PGJOBS_TEST_NOISE=analyze:
    # no estimate, KeyError 'total_estimated').
    conn.execute("CREATE TABLE big (id bigint NOT NULL, table_id int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')"
                 " WITH (autovacuum_enabled = false)")
    conn.execute("INSERT INTO big (id, table_id) SELECT g, 1 + g % 2 FROM "
                 "generate_series(1, 220000) g")
    conn.execute("CREATE INDEX ON big (table_id, id)")
    conn.execute("SELECT pgjobs.register_target('big', 'id', 'table_id', 'created_at')")
    conn.execute("ANALYZE big")
    # As if the table were big enough for a sample to pay off.
    conn.execute("UPDATE pg_class SET relpages = 10000000 WHERE oid = 'big'::regclass")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('big', '1', '{}', '{}', "
                          "'{\"page_size\": 40000}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    first = job(conn, job_id)
    assert first["checkpoint"]["total_estimated"] is True
    assert first["total"] is not None
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                 (job_id, who(conn, job_id, 'w'))) == "more":
        page = job(conn, job_id)
        assert page["total"] >= page["done"]
        assert page["checkpoint"]["total_estimated"] is True
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["total"] == done["done"] == 110000
    assert scalar(conn, "SELECT count(*) FROM big WHERE table_id = 1") == 0


# --- the runner -------------------------------------------------------------


def test_first_call_counts_then_pages_advance_the_cursor(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "2", options={"page_size": 50})
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    counted = job(conn, job_id)
    expected = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2 "
                            "AND created_at <= %s", (counted["cutoff"],))
    assert counted["total"] == expected
    assert counted["done"] == 0
    assert counted["checkpoint"]["after"] is None
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    page = job(conn, job_id)
    assert page["checkpoint"]["pages"] == 1
    assert 0 < page["done"] <= 50
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2 AND id <= %s",
                  (int(page["checkpoint"]["after"]),)) == 50 - page["done"]
    # Another worker is fenced off: nothing changes.
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'intruder'))) == "lost"
    assert job(conn, job_id)["checkpoint"] == page["checkpoint"]


def test_crash_mid_job_resumes_from_the_cursor(conn: Conn, make_conn: MakeConn,
                                                target: Target) -> None:
    slow_deletes(conn, target, 0.005)
    before = snapshot(conn, target)
    match = lambda r: r["data"]["k"] != 0  # noqa: E731 - rows stay below the cursor
    job_id = submit_delete(conn, target, "1", {"k": {"$ne": 0}}, options={"page_size": 10})
    at_crash = crash_runner_mid_job(conn, make_conn, job_id, pages=2)
    assert at_crash["status"] == "running"  # until its lease expires
    assert at_crash["checkpoint"]["after"] is not None
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND id <= %s AND data->>'k' <> '0' AND created_at <= %s",
                  (int(at_crash["checkpoint"]["after"]), at_crash["cutoff"])) == 0

    expire_lease(conn, job_id)
    conn.execute("CALL pgjobs.run('10 seconds')")

    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    doomed = job_rows(before, "1", done["cutoff"], match)
    assert set(snapshot(conn, target)) == set(before) - doomed
    assert done["done"] == done["total"] == len(doomed)
    # Resumed, not restarted: the walk took exactly the pages of one run.
    scope_rows = sum(1 for r in before.values() if r["table_id"] == "1")
    assert done["result"]["pages"] == scope_rows // 10 + 1


def test_cancel_mid_run_stops_at_the_next_page(conn: Conn, make_conn: MakeConn,
                                                target: Target) -> None:
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "1", options={"page_size": 20})
    other = make_conn()

    def cancel_after_three_pages(state: str) -> None:
        if state == "more" and job(conn, job_id)["checkpoint"]["pages"] == 3:
            assert scalar(other, "SELECT pgjobs.cancel(%s)", (job_id,))

    states = run_pages(conn, job_id, each=cancel_after_three_pages)
    assert states[-1] == "canceled"
    canceled = job(conn, job_id)
    assert canceled["status"] == "canceled"
    assert canceled["checkpoint"]["pages"] == 3
    deleted = set(before) - set(snapshot(conn, target))
    assert 0 < len(deleted) == canceled["done"] <= 60
    # The rest of the scope is back in every read.
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == scalar(
        conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")


def test_lock_wait_retries_the_page_instead_of_failing(conn: Conn, make_conn: MakeConn,
                                                       target: Target) -> None:
    job_id = submit_delete(conn, target, "1", options={"page_size": 10})
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    holder = make_conn(autocommit=False)
    first = scalar(holder, "SELECT min(id) FROM user_table_rows WHERE table_id = 1")
    holder.execute("SELECT 1 FROM user_table_rows WHERE id = %s FOR UPDATE", (first,))

    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "retry"
    waiting = job(conn, job_id)
    assert waiting["status"] == "running"
    assert waiting["done"] == 0
    assert waiting["checkpoint"]["after"] is None
    assert waiting["checkpoint"]["lock_waits"] == 1
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE id = %s", (first,)) == 1

    holder.rollback()
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    assert "lock_waits" not in job(conn, job_id)["checkpoint"]
    run_pages_rest(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE id = %s", (first,)) == 0


def run_pages_rest(conn: Conn, job_id: int, worker: str = "w") -> None:
    identity = who(conn, job_id, worker)
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity)) in ("more", "retry"):
        pass


def test_run_releases_an_unfinished_job_without_counting_an_attempt(
        conn: Conn, target: Target) -> None:
    slow_deletes(conn, target, 0.005)
    job_id = submit_delete(conn, target, "1", options={"page_size": 5})
    conn.execute("CALL pgjobs.run('300 milliseconds')")
    released = job(conn, job_id)
    assert released["status"] == "queued"
    assert released["attempts"] == 0
    assert 0 < released["done"] < released["total"]
    assert released["checkpoint"]["pages"] >= 1
    # Still pending, still masked.
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") != "true"

    conn.execute("CALL pgjobs.run('60 seconds')")
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["done"] == done["total"]
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND created_at <= %s", (done["cutoff"],)) == 0


def test_failure_lifts_the_mask_and_keeps_what_was_done(conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    victim = scalar(conn, "SELECT id FROM user_table_rows WHERE table_id = 1 "
                          "ORDER BY id OFFSET 100 LIMIT 1")
    conn.execute(f"""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.id = {victim} THEN
                RAISE EXCEPTION 'row {victim} is protected' USING ERRCODE = '22012';
            END IF;
            RETURN OLD;
        END $$;
        CREATE TRIGGER refuse BEFORE DELETE ON user_table_rows
            FOR EACH ROW EXECUTE FUNCTION refuse();""")
    job_id = submit_delete(conn, target, "1", options={"page_size": 30})
    states = run_pages(conn, job_id)
    assert states[-1] == "failed"
    failed = job(conn, job_id)
    assert failed["status"] == "failed"  # a data error is not retried
    assert "protected" in failed["error"] and "22012" in failed["error"]
    deleted = set(before) - set(snapshot(conn, target))
    assert 0 < len(deleted) == failed["done"]  # the pages before the victim's stay done
    assert max(int(k) for k in deleted) < victim
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE id = %s", (victim,)) == 1
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"
    remaining = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == remaining


def test_retryable_failure_keeps_the_mask_while_queued(conn: Conn, target: Target) -> None:
    conn.execute("""
        CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'try again' USING ERRCODE = '40001'; END $$;
        CREATE TRIGGER flaky BEFORE DELETE ON user_table_rows
            FOR EACH ROW EXECUTE FUNCTION flaky();""")
    job_id = submit_delete(conn, target, "1", options={"max_attempts": 2})
    assert run_pages(conn, job_id)[-1] == "failed"
    assert job(conn, job_id)["status"] == "queued"
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") != "true"
    conn.execute("DROP TRIGGER flaky ON user_table_rows")
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    conn.execute("CALL pgjobs.run('30 seconds')")
    assert job(conn, job_id)["status"] == "succeeded"
    assert job(conn, job_id)["attempts"] == 2


# --- the gate and concurrency -------------------------------------------------


def test_gate_runs_writers_of_a_scope_in_order_and_other_scopes_in_parallel(
        conn: Conn, make_conn: MakeConn, target: Target) -> None:
    before = snapshot(conn, target)
    delete1 = submit_delete(conn, target, "1", {"k": 1})
    backfill1 = submit_backfill(conn, target, "1", {}, {"label": "filled"})
    delete2 = submit_delete(conn, target, "2", {"k": 1})

    claimed = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['delete', 'backfill'], 'a', '30 seconds', 10)")]
    assert claimed == [delete1, delete2]
    with pytest.raises(errors.ObjectInUse):  # 55006
        run_job(conn, backfill1)
    assert job(conn, backfill1)["status"] == "queued"

    # Scope 2 runs to the end while scope 1's delete is still running.
    other = make_conn()
    run_pages_rest(other, delete2, "a")
    assert job(other, delete2)["status"] == "succeeded"
    assert job(conn, delete1)["status"] == "running"
    assert job(conn, backfill1)["status"] == "queued"

    run_pages_rest(conn, delete1, "a")
    conn.execute("CALL pgjobs.run('30 seconds')")
    d1, b1 = job(conn, delete1), job(conn, backfill1)
    assert (d1["status"], b1["status"]) == ("succeeded", "succeeded")
    assert b1["started_at"] >= d1["finished_at"]
    after = snapshot(conn, target)
    doomed = (job_rows(before, "1", d1["cutoff"], lambda r: r["data"]["k"] == 1)
              | job_rows(before, "2", job(conn, delete2)["cutoff"],
                         lambda r: r["data"]["k"] == 1))
    assert set(after) == set(before) - doomed
    filled = job_rows(before, "1", b1["cutoff"], lambda r: True) - doomed
    assert {k for k, r in after.items() if r["label"] == "filled"} == filled
    assert b1["done"] == len(filled)


def test_on_conflict_reject(conn: Conn, target: Target) -> None:
    first = submit_delete(conn, target, "1", options={"on_conflict": "reject"})
    count = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.ObjectInUse) as info:  # 55006
        submit_delete(conn, target, "1", {"k": 1}, options={"on_conflict": "reject"})
    assert info.value.sqlstate == "55006"
    with pytest.raises(errors.ObjectInUse):
        submit_backfill(conn, target, "1", {}, {"n": 1}, {"on_conflict": "reject"})
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == count
    # Another scope is free; so is this one once the job ended.
    submit_delete(conn, target, "2", options={"on_conflict": "reject"})
    run_job(conn, first)
    submit_delete(conn, target, "1", options={"on_conflict": "reject"})


def test_rows_inserted_during_the_job_survive(conn: Conn, make_conn: MakeConn,
                                              target: Target) -> None:
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "1", {"k": 2}, options={"page_size": 7})
    inserter = make_conn()
    inserted: list[str] = []
    stop = threading.Event()

    def insert() -> None:
        i = 0
        while not stop.is_set() or len(inserted) < 20:
            inserted.append(insert_row(inserter, target, "1", n=i, data={"k": 2}))
            i += 1
            time.sleep(0.002)

    thread = threading.Thread(target=insert)
    thread.start()
    try:
        wait_for(lambda: len(inserted) >= 5)
        run_pages(conn, job_id)
    finally:
        stop.set()
        thread.join(timeout=30)
    doomed = job_rows(before, "1", cutoff_of(conn, job_id), lambda r: r["data"]["k"] == 2)
    assert set(snapshot(conn, target)) == (set(before) - doomed) | set(inserted)
    assert job(conn, job_id)["done"] == len(doomed)


# --- bad arguments ------------------------------------------------------------

DELETE_SQL = "SELECT pgjobs.submit_delete(%s::regclass, %s, %s::jsonb, %s::text[], %s::jsonb)"
BAD_DELETES = [
    ("user_table_rows", "one", {}, [], {}, "22023"),            # scope not an integer
    ("user_table_rows", None, {}, [], {}, "22023"),             # null scope
    ("user_table_rows", "1", {}, ["x"], {}, "22023"),           # exclude not a bigint
    ("user_table_rows", "1", {}, ["1", None], {}, "22023"),     # null in exclude
    ("user_table_rows", "1", {}, [], {"bogus": 1}, "22023"),    # unknown option
    ("user_table_rows", "1", {}, [], {"page_size": 0}, "22023"),
    ("user_table_rows", "1", {}, [], {"page_size": "10"}, "22023"),
    ("user_table_rows", "1", {}, [], {"page_size": 1.5}, "22023"),
    ("user_table_rows", "1", {}, [], {"page_size": 100001}, "22023"),
    ("user_table_rows", "1", {}, [], {"page_ms": 1}, "22023"),
    ("user_table_rows", "1", {}, [], {"handler": "f"}, "22023"),  # a backfill option
    ("user_table_rows", "1", {}, [], {"on_conflict": "wait"}, "22023"),
    ("user_table_rows", "1", {"$bogus": 1}, [], {}, "22023"),
    ("user_table_rows", "1", {"k": {"$in": 5}}, [], {}, "22023"),
    ("unregistered", "1", {}, [], {}, "22023"),
    ("no_such_table", "1", {}, [], {}, "42P01"),
]


@pytest.mark.parametrize(("table", "scope", "filter_", "exclude", "options", "sqlstate"),
                         BAD_DELETES)
def test_bad_delete_arguments_write_nothing(conn: Conn, target: Target, table: str,
                                            scope: str | None, filter_: Any, exclude: list[Any],
                                            options: dict[str, Any], sqlstate: str) -> None:
    make_rows_target(conn, "unregistered", register=False)
    with pytest.raises(psycopg.Error) as info:
        conn.execute(DELETE_SQL, (table, scope, json.dumps(filter_), exclude,
                                  json.dumps(options)))
    assert info.value.sqlstate == sqlstate, info.value
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize(("sql", "params"), [
    ("SELECT * FROM pgjobs.visible('user_table_rows', 'x')", None),
    ("SELECT * FROM pgjobs.visible('user_table_rows', '1', '{}', 'abc')", None),
    ("SELECT * FROM pgjobs.visible('user_table_rows', '1', '{}', NULL, 0)", None),
    ("SELECT * FROM pgjobs.visible('user_table_rows', '1', '{}', NULL, 10001)", None),
    ("SELECT * FROM pgjobs.visible('user_table_rows', '1', '{\"$or\": 1}')", None),
    ("SELECT * FROM pgjobs.visible('unregistered', '1')", None),
    ("SELECT pgjobs.visible_count('user_table_rows', 'x')", None),
    ("SELECT pgjobs.visible_count('user_table_rows', '1', '[]')", None),
    ("SELECT pgjobs.visible_count('unregistered', '1')", None),
])
def test_bad_read_arguments(conn: Conn, target: Target, sql: str, params: Any) -> None:
    make_rows_target(conn, "unregistered", register=False)
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    assert info.value.sqlstate == "22023", info.value


def test_unknown_table_in_reads_is_42p01(conn: Conn, target: Target) -> None:
    for sql in ("SELECT * FROM pgjobs.visible('nope', '1')",
                "SELECT pgjobs.visible_count('nope', '1')", "SELECT pgjobs.mask('nope', '1')"):
        with pytest.raises(errors.UndefinedTable):
            conn.execute(sql)


# --- command line ---------------------------------------------------------------


def test_cli_delete_run(dsn: str, conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "delete", "user_table_rows", "--scope", "2", "--filter", '{"k": 4}',
        "--exclude", min(k for k, r in before.items()
                         if r["table_id"] == "2" and r["data"]["k"] == 4),
        "--page-size", "25", "--run"])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["options"] == {"page_size": 25}
    assert len(done["payload"]["exclude"]) == 1
    doomed = job_rows(before, "2", done["cutoff"], lambda r: r["data"]["k"] == 4,
                      frozenset(done["payload"]["exclude"]))
    assert set(snapshot(conn, target)) == set(before) - doomed


def test_cli_delete_without_run_prints_the_id(dsn: str, conn: Conn, target: Target) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows",
                                       "--scope", "1"])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip())
    assert job(conn, job_id)["status"] == "queued"


def test_cli_backfill_run(dsn: str, conn: Conn, target: Target) -> None:
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "backfill", "user_table_rows", "--scope", "3", "--filter", '{"k": 0}',
        "--set", '{"label": "cli", "extra.by": "cli"}', "--run"])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["done"] == scalar(
        conn, "SELECT count(*) FROM user_table_rows WHERE label = 'cli' "
              "AND data->'extra'->>'by' = 'cli' AND table_id = 3")
    assert done["done"] > 0


@pytest.mark.parametrize("args", [
    ["delete", "user_table_rows", "--scope", "1", "--filter", "{not json"],
    ["delete", "user_table_rows", "--scope", "x"],
    ["delete", "user_table_rows", "--scope", "1", "--filter", '{"$bogus": 1}'],
    ["delete", "no_such_table", "--scope", "1"],
    ["delete", "user_table_rows", "--scope", "1", "--exclude", "abc"],
    ["delete", "user_table_rows", "--scope", "1", "--options", '{"bogus": 1}'],
    ["backfill", "user_table_rows", "--scope", "1", "--filter", "{}", "--set", "[1]"],
    ["backfill", "user_table_rows", "--scope", "1", "--filter", "{}", "--set", '{"id": 1}'],
    ["backfill", "user_table_rows", "--scope", "1", "--filter", "{}", "--set", '{"n": "x"}'],
])
def test_cli_bad_input_is_one_line_exit_2(dsn: str, conn: Conn, target: Target,
                                          args: list[str]) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("options", [{}, {"page_size": 100000}])
def test_a_mass_delete_refreshes_the_scope_statistics(conn: Any, options: dict[str, Any]) -> None:
    """After one tenant's mass delete, stale statistics made the planner walk the
    primary key across every tenant for a keyset page of the survivors (76 ms
    instead of 0.7 ms in the load suite). The runner analyzes the target once a
    fifth of it changed, so reads plan on the (scope, key) index again; also
    when the page that crosses that fifth is the job's last (one page of the
    whole scope here: the ANALYZE due before a next page has none to precede)."""
    conn.execute("""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          table_id int NOT NULL, created_at timestamptz NOT NULL DEFAULT now())
        WITH (autovacuum_enabled = false);
        INSERT INTO hot (table_id)
        SELECT CASE WHEN i % 4 = 0 THEN 1 ELSE 2 + i % 50 END FROM generate_series(1, 200000) i;
        CREATE INDEX hot_scope_key ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at',
                                      p_options => '{"tune_autovacuum": false}');
    """)
    job_id = conn.execute("SELECT pgjobs.submit_delete('hot', '1', '{}', "
                          "ARRAY(SELECT id::text FROM hot WHERE table_id = 1 LIMIT 300), %s)",
                          (json.dumps(options),)).fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    # The planner's row count follows the delete (200,000 before; 150,300 after).
    reltuples = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'hot'").fetchone()
    assert reltuples is not None and reltuples[0] < 170000
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT * FROM hot WHERE table_id = 1 AND id > 0 ORDER BY id LIMIT 100"))
    assert "hot_scope_key" in plan, plan
