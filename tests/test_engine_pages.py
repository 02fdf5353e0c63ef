"""The page loop of delete and backfill jobs after issue 11's cuts of a job's
fixed costs: one loop for `run` and `run_job`, the rows a range walk cannot
see still swept at the end (now through a plain index scan), the first
call's total exact for a small job, and the job's ANALYZE on a small sample
that leaves the session's settings as they were. No timings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support import job, scalar, who

Conn = Any


def _table(conn: Conn, rows: int = 600) -> None:
    """`r`: keys 1..rows, even keys in scope 1, odd ones in scope 2, created a
    day ago; a document with k = key % 3."""
    conn.execute(f"""
        CREATE TABLE r (id bigint NOT NULL, table_id int NOT NULL, data jsonb NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        INSERT INTO r (id, table_id, data)
        SELECT g, 1 + g % 2, jsonb_build_object('k', g % 3) FROM generate_series(1, {rows}) g;
        CREATE INDEX r_scope_key ON r (table_id, id);
        ANALYZE r;
        SELECT pgjobs.register_target('r', 'id', 'table_id', 'created_at', 'data');
    """)


def _keys(conn: Conn, scope: int) -> set[int]:
    return {r[0] for r in conn.execute("SELECT id FROM r WHERE table_id = %s", (scope,))}


def _page(conn: Conn, job_id: int, identity: str) -> str:
    return str(scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity)))


# --- one page loop -------------------------------------------------------------------


def test_run_and_run_job_share_one_page_loop(conn: Conn) -> None:
    """Both procedures hand a claimed job to pgjobs._run_claimed; neither pages itself."""
    bodies = dict(conn.execute(
        "SELECT p.proname, p.prosrc FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace "
        "AND p.proname IN ('run', 'run_job', '_run_claimed')").fetchall())
    assert set(bodies) == {"run", "run_job", "_run_claimed"}
    for name in ("run", "run_job"):
        code = re.sub(r"--[^\n]*", "", bodies[name])
        assert "CALL pgjobs._run_claimed(" in code, name
        assert "_run_step" not in code and "_run_page" not in code, name
    assert "pgjobs._run_step(" in bodies["_run_claimed"]


def test_a_caught_error_ends_the_attempt_in_one_place(conn: Conn) -> None:
    """Which SQLSTATEs retry, and which collected addresses a failed attempt
    keeps, are written once (pgjobs._fail_attempt): the typo guard's walk's
    error ending was a copy of the page's own, to be kept in step by hand."""
    bodies = dict(conn.execute(
        "SELECT p.proname::text, regexp_replace(p.prosrc, '--[^\n]*', '', 'g') "
        "FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace").fetchall())
    pairing = sorted(name for name, code in bodies.items()
                     if "pgjobs.fail(" in code and "retryable_sqlstate(" in code)
    assert pairing == ["_fail_attempt"], pairing
    keeping = sorted(name for name, code in bodies.items()
                     if re.search(r"job_batches\s+b\s+WHERE[^;]*NOT\s+EXISTS", code))
    assert keeping == ["_fail_attempt"], keeping
    assert bodies["_run_page"].count("pgjobs._fail_attempt(") == 2


@pytest.mark.parametrize("runner", ["run", "run_job"])
@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_both_runners_finish_a_job_through_the_shared_loop(conn: Conn, runner: str,
                                                           kind: str) -> None:
    _table(conn)
    if kind == "delete":
        job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{\"k\": 1}', '{}', "
                              "'{\"page_size\": 25}')")
    else:
        job_id = scalar(conn, "SELECT pgjobs.submit_backfill('r', '1', '{\"k\": 1}', "
                              "'{\"flag\": true}', '{\"page_size\": 25}')")
    if runner == "run":
        conn.execute("CALL pgjobs.run('30 seconds')")
    else:
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    matching = {k for k in range(2, 601, 2) if k % 3 == 1}
    assert done["done"] == len(matching)
    if kind == "delete":
        assert _keys(conn, 1) == set(range(2, 601, 2)) - matching
    else:
        flagged = {r[0] for r in conn.execute("SELECT id FROM r WHERE data ? 'flag'")}
        assert flagged == matching
    assert _keys(conn, 2) == set(range(1, 601, 2))
    # run_job of the finished job leaves it as it is (nothing claimed, no page).
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"


# --- rows the walk cannot see ----------------------------------------------------------


@pytest.mark.parametrize("filter_", [{}, {"k": 1}], ids=["whole scope", "filtered"])
def test_rows_that_appear_behind_the_cursor_are_swept_at_the_end(conn: Conn,
                                                                 filter_: dict[str, Any]) -> None:
    """Every way a matching row can appear behind the cursor mid-job (inserted
    with an old created_at, moved into the scope, its key moved back) is found
    by the final check and deleted; a row created after the cutoff survives."""
    _table(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', %s::jsonb, '{}', "
                          "'{\"page_size\": 25, \"strategy\": \"range\"}')",
                    (json.dumps(filter_),))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    assert _page(conn, job_id, identity) == "more"  # the first call counts
    for _ in range(8):  # 200 keys of scope 1 walked: the cursor is past key 400
        assert _page(conn, job_id, identity) == "more"
    assert int(job(conn, job_id)["checkpoint"]["after"]) >= 400
    k = 1 if filter_ else 0  # data that matches the filter (k = 1), or anything
    doc = json.dumps({"k": k})
    for statement in (
            "INSERT INTO r (id, table_id, data) VALUES (10001, 1, %(d)s), (-5, 1, %(d)s)",
            "INSERT INTO r (id, table_id, data, created_at) "
            "VALUES (-6, 1, %(d)s, now() + interval '1 hour')",
            "UPDATE r SET table_id = 1, data = %(d)s WHERE id = 101",
            "UPDATE r SET id = -7, data = %(d)s WHERE id = 598"):
        conn.execute(statement, {"d": doc})
    states = []
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        states.append(state)
    assert state == "done"
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    left = _keys(conn, 1)
    assert {10001, -5, 101, -7} & left == set()  # seen by the walk or swept
    assert -6 in left  # after the cutoff: not the job's
    assert all(not filter_ or r[0] != 1 for r in conn.execute(
        "SELECT (data ->> 'k')::int FROM r WHERE table_id = 1 AND created_at <= now()"))
    assert done["done"] == done["total"] == done["result"]["deleted"]
    assert _keys(conn, 2) == set(range(1, 601, 2)) - {101}


def test_the_final_check_reads_the_scope_index_in_order(conn: Conn) -> None:
    """The end-of-scope check's plan: the (scope, key) index, in its order, no
    sequential scan of the relation, no bitmap (which cannot mark dead entries
    for later reads), and not the primary key, whatever its costs: the scope
    goes in as a one-element ANY and the predicate inside coalesce(), so no
    equality lets another index deliver the order."""
    _table(conn)
    conn.execute("ALTER TABLE r ADD PRIMARY KEY (id)")
    body = scalar(conn, "SELECT prosrc FROM pg_proc WHERE oid = "
                        "'pgjobs._run_page(bigint, text)'::regprocedure")
    statement = re.search(r"'SELECT coalesce\(\(SELECT true FROM %1\$s t WHERE t\.%3\$I = ANY "
                          r"\(ARRAY\[%5\$s\]\) '\s*'AND coalesce\(\(%2\$s\), false\) "
                          r"ORDER BY t\.%3\$I, t\.%4\$I LIMIT 1\), false\)'", body)
    assert statement is not None
    conn.execute("DELETE FROM r WHERE table_id = 1")
    for key_range in ("", " AND t.id > 100 AND t.id <= 300"):
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                         "SET LOCAL enable_indexscan = on; SET LOCAL enable_sort = off; "
                         "SET LOCAL enable_incremental_sort = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT coalesce((SELECT true FROM r t WHERE t.table_id = ANY (ARRAY[1])"
                f"{key_range} AND coalesce((table_id = 1 AND created_at <= now()), false) "
                "ORDER BY t.table_id, t.id LIMIT 1), false)"))
        assert "Index Scan using r_scope_key" in plan, plan
        assert "Seq Scan" not in plan and "Bitmap" not in plan and "Sort" not in plan, plan


# --- the first call's total -----------------------------------------------------------


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "never analyzed"])
def test_a_small_job_total_is_exact_whatever_the_statistics_say(conn: Conn,
                                                                analyzed: bool) -> None:
    """Under 100000 rows the first call counts: exact, not marked estimated,
    with fresh statistics, none, or statistics that say the scope is empty."""
    conn.execute("""
        CREATE TABLE s (id bigint NOT NULL, table_id int NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')
        WITH (autovacuum_enabled = false);
        CREATE INDEX ON s (table_id, id);
        SELECT pgjobs.register_target('s', 'id', 'table_id', 'created_at');
    """)
    if analyzed:
        conn.execute("ANALYZE s")  # empty: the planner thinks scope 1 has no rows
    conn.execute("INSERT INTO s (id, table_id) SELECT g, 1 + g % 3 FROM generate_series(1, 3000) g")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('s', '2', '{}', '{}', "
                          "'{\"page_size\": 400}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    assert _page(conn, job_id, identity) == "more"
    first = job(conn, job_id)
    assert first["total"] == 1000
    assert "total_estimated" not in first["checkpoint"]
    while _page(conn, job_id, identity) == "more":
        pass
    assert job(conn, job_id)["done"] == 1000


# --- statistics ---------------------------------------------------------------------


def test_the_jobs_analyze_samples_small_and_restores_the_setting(conn: Conn) -> None:
    """The job's ANALYZE uses statistics target 10 (3000 sampled rows, a
    tenth of the default's pages), leaves the session's
    default_statistics_target as it was, and honours a column's own target."""
    conn.execute("""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          table_id int NOT NULL,
                          created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')
        WITH (autovacuum_enabled = false);
        INSERT INTO hot (table_id) SELECT CASE WHEN i % 2 = 0 THEN 1 ELSE 2 + i % 300 END
          FROM generate_series(1, 60000) i;
        CREATE INDEX ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at',
                                      p_options => '{"tune_autovacuum": false}');
    """)
    conn.execute("SET default_statistics_target = 100")

    def stats_size() -> int:
        return int(scalar(conn, "SELECT coalesce(cardinality(most_common_vals::text::text[]), 0)"
                                " + coalesce(cardinality(histogram_bounds::text::text[]), 0) "
                                "FROM pg_stats WHERE tablename = 'hot' AND attname = 'table_id'"))

    assert stats_size() > 30  # the full-size ANALYZE: 300 tenants, many kept
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('hot', '1', '{}', '{}', "
                          "'{\"page_size\": 2000}')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    done = job(conn, job_id)
    assert done["status"] == "succeeded" and done["checkpoint"]["analyzes"] >= 1
    assert stats_size() <= 22  # target 10: at most 10 common values and 11 bounds
    assert scalar(conn, "SHOW default_statistics_target") == "100"
    # A column with its own target keeps it.
    conn.execute("ALTER TABLE hot ALTER COLUMN table_id SET STATISTICS 200")
    conn.execute("INSERT INTO hot (table_id) SELECT CASE WHEN i % 2 = 0 THEN 1 ELSE 2 + i % 300 "
                 "END FROM generate_series(1, 60000) i")
    conn.execute("ANALYZE hot")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('hot', '1', '{}', '{}', "
                          "'{\"page_size\": 2000}')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["checkpoint"]["analyzes"] >= 1
    assert stats_size() > 30


# --- page sizes -------------------------------------------------------------------------


def _big(conn: Conn, rows: int) -> None:
    """`b`: keys 1..rows, every one in scope 1 but each 4th (scope 2)."""
    conn.execute(f"""
        CREATE TABLE b (id bigint PRIMARY KEY, table_id int NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')
        WITH (autovacuum_enabled = false);
        INSERT INTO b (id, table_id)
        SELECT g, CASE WHEN g % 4 = 0 THEN 2 ELSE 1 END FROM generate_series(1, {rows}) g;
        CREATE INDEX b_scope_key ON b (table_id, id);
    """)
    conn.execute("VACUUM ANALYZE b")
    conn.execute("SELECT pgjobs.register_target('b', 'id', 'table_id', 'created_at', "
                 "p_options => '{\"tune_autovacuum\": false}')")


def _calls(conn: Conn, job_id: int, identity: str | None = None) -> list[dict[str, Any]]:
    """The job run call by call, as a runner does (each call its own
    transaction): the job row after each call (claimed here, unless the
    attempt's identity is given)."""
    if identity is None:
        conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
        identity = who(conn, job_id, "w")
    rows = []
    while True:
        state = _page(conn, job_id, identity)
        rows.append({**job(conn, job_id), "state": state})
        if state not in ("more", "retry"):
            return rows


def test_the_step_after_the_first_page_goes_by_its_time_not_4x(conn: Conn) -> None:
    """The first page has 1000 keys; the next is sized from that page's time
    up to 16x larger, not at most 4x: a job of 7500 keys ends
    in its second page. (It took three: 1000, 4000, then the rest; the 1000
    keys would have to take over a second of the 10 s page_ms for a third.)"""
    _big(conn, 10000)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('b', '1', '{}', '{}', "
                          "'{\"page_ms\": 10000}')")
    calls = _calls(conn, job_id)
    first = calls[1]
    assert first["done"] == 1000 and first["checkpoint"]["pages"] == 1
    assert first["checkpoint"]["page_size"] > 4 * 1000
    assert calls[2]["done"] == 7500 and calls[2]["checkpoint"]["pages"] == 2
    # The calls after the walk are the end-of-scope check's: no page among them.
    assert all(c["done"] == 7500 and c["checkpoint"]["pages"] == 2 for c in calls[3:])
    assert calls[-1]["state"] == "done" and calls[-1]["result"]["pages"] == 2


@pytest.mark.parametrize("behind", [False, True], ids=["quiet", "a row behind the cursor"])
def test_a_scope_of_two_pages_is_checked_in_its_last_page(conn: Conn, behind: bool) -> None:
    """A whole-scope delete whose rows fit in two pages' keys (150 keys,
    page_size 100) runs the end-of-scope look in its last page's transaction:
    three calls (count, two pages), no calls of the check's own. A matching
    row that appeared behind the cursor meanwhile is still found there and
    swept, and a row created after the cutoff is still left."""
    _table(conn, 300)  # 150 keys in scope 1
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 100}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    states = [_page(conn, job_id, identity), _page(conn, job_id, identity)]
    assert states == ["more", "more"] and job(conn, job_id)["done"] == 100
    if behind:
        conn.execute("INSERT INTO r (id, table_id, data) VALUES (-5, 1, '{}')")
        conn.execute("INSERT INTO r (id, table_id, data, created_at) "
                     "VALUES (-6, 1, '{}', now() + interval '1 hour')")
    checkpoints = []
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        states.append(state)
        checkpoints.append(job(conn, job_id)["checkpoint"])
    assert state == "done"
    assert not any("check_after" in cp for cp in checkpoints)  # no check calls
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    assert _keys(conn, 1) == ({-6} if behind else set())
    assert done["done"] == done["total"] == done["result"]["deleted"] == 150 + behind
    # The row behind the cursor is deleted by the last page's look at the
    # keys of the page before it (checked_to), no sweep page after it.
    assert done["result"]["pages"] == 2
    if not behind:
        assert len(states) == 2  # then the last page: 3 calls in all
    assert _keys(conn, 2) == set(range(1, 301, 2))


def test_a_scope_of_more_than_two_pages_checks_in_calls_of_its_own(conn: Conn) -> None:
    """The bound of the look in the last page: 201 keys with page_size 100 (two
    pages' keys and one) take the check's own calls, so no last page walks
    more than about two pages' worth of dead entries."""
    _table(conn, 402)  # 201 keys in scope 1
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 100}')")
    calls = _calls(conn, job_id)
    assert calls[-1]["state"] == "done" and calls[-1]["done"] == 201
    assert any("check_after" in c["checkpoint"] for c in calls if c["state"] == "more")
    assert _keys(conn, 1) == set()


def test_no_page_is_larger_than_the_time_rule_allows(conn: Conn) -> None:
    """Every page deletes at most the size the checkpoint held before it, and
    that size follows the previous page's time: that page's size times
    page_ms / its time (within the rounding of last_page_ms), kept within
    0.5x..4x (16x after the first page) and 100..50000 keys. A call that
    analyzes runs no page."""
    _big(conn, 80000)  # 60000 rows of scope 1: the job analyzes (a fifth of the table)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('b', '1', '{}', '{}', "
                          "'{\"page_ms\": 5}')")
    calls = _calls(conn, job_id)
    assert calls[-1]["status"] == "succeeded" and calls[-1]["done"] == 60000
    before = calls[0]  # the first call counts: 1000 keys for the first page
    assert before["done"] == 0 and before["checkpoint"]["page_size"] == 1000
    pages = analyzes = 0
    for after in calls[1:]:
        cp, prev = after["checkpoint"] if after["state"] == "more" else None, before["checkpoint"]
        if "check_after" in prev:  # a call of the end-of-scope check: no page
            assert after["done"] == before["done"]
            assert cp is None or cp["pages"] == prev["pages"]
            before = after
            continue
        if cp is not None and cp["pages"] == prev["pages"]:  # an ANALYZE, nothing else
            assert cp["analyzes"] == prev.get("analyzes", 0) + 1
            assert after["done"] == before["done"] and cp["page_size"] == prev["page_size"]
            analyzes += 1
            before = after
            continue
        pages += 1
        assert after["done"] - before["done"] <= prev["page_size"]
        if cp is None:
            break
        if after["done"] - before["done"] == prev["page_size"]:  # a full page
            size, ms = prev["page_size"], float(cp["last_page_ms"])
            step = 16 if prev["pages"] == 0 else 4
            assert 100 <= cp["page_size"] <= 50000
            ratio = max(0.5, 5 / max(ms - 0.05, 1.0))  # shrinking: at most 2x at once
            assert cp["page_size"] <= max(100, size * min(step, ratio) + 1)
            assert cp["page_size"] >= min(50000, size // 2)
        before = after
    assert analyzes >= 1 and pages == calls[-1]["result"]["pages"]



# --- the end-of-scope check -------------------------------------------------------------


def _as_previous_release(conn: Conn, job_id: int, identity: str) -> None:
    """Run the job's first call and first page, then make its checkpoint what
    the release before the trailing look (checked_to) wrote: the walk's
    segments instead. Such a job goes on checking in segments after its last
    page (the calls of the check's own), which the tests below cover."""
    assert _page(conn, job_id, identity) == "more"  # the first call counts
    assert _page(conn, job_id, identity) == "more"  # the first page
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint - 'checked_to' || "
                 "jsonb_build_object('check_bounds', '[]'::jsonb, 'check_spans', '[]'::jsonb, "
                 "'check_span', (checkpoint ->> 'page_size')::bigint) WHERE id = %s", (job_id,))


def _until(conn: Conn, job_id: int, identity: str, done: Any) -> dict[str, Any]:
    """Run calls until done(checkpoint) holds; the job row then."""
    for _ in range(1000):
        assert _page(conn, job_id, identity) == "more"
        row = job(conn, job_id)
        if done(row["checkpoint"]):
            return row
    raise AssertionError("the condition never held")


def _check_step(checkpoint: dict[str, Any]) -> bool:
    """Mid-way through the check: past two segments, not yet at the end."""
    return checkpoint.get("check_next") is not None and checkpoint["check_next"] >= 2


def test_the_end_of_scope_check_runs_in_bounded_calls_of_its_own(conn: Conn) -> None:
    """After the last page, the check of a range delete walks the scope a
    segment of the walk per call (its own transaction, no page counted), each
    at most 4 pages' keys (page_size 50: 200), then looks at the whole scope
    once: bounded by what the job deleted, not a walk of every dead entry of
    the scope in the last page's transaction (issue 11)."""
    _table(conn, 2000)  # 1000 keys in scope 1
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 50}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    _as_previous_release(conn, job_id, identity)
    calls = _calls(conn, job_id, identity)
    assert calls[-1]["state"] == "done" and calls[-1]["status"] == "succeeded"
    assert calls[-1]["done"] == calls[-1]["result"]["deleted"] == 1000
    assert calls[-1]["result"]["pages"] == 21  # the 21st finds no key after the cursor
    walked = next(i for i, c in enumerate(calls) if "check_after" in c["checkpoint"])
    assert calls[walked]["done"] == 1000 and calls[walked]["checkpoint"]["pages"] == 21
    spans = calls[walked]["checkpoint"]["check_spans"] + [calls[walked]["checkpoint"]["check_span"]]
    assert sum(spans) == 21 * 50 and max(spans) <= 4 * 50
    steps = [c["checkpoint"] for c in calls[walked + 1:] if c["state"] == "more"]
    assert len(steps) >= 1000 // 200
    assert all(0 < step["check_keys"] <= 4 * 50 for step in steps)
    assert [step["check_steps"] for step in steps] == list(range(1, len(steps) + 1))
    assert all(step["pages"] == 21 for step in steps)
    assert _keys(conn, 1) == set()


@pytest.mark.parametrize("filter_", [{}, {"k": 1}], ids=["whole scope", "filtered"])
def test_rows_that_appear_while_the_check_is_mid_way_are_deleted(conn: Conn,
                                                                filter_: dict[str, int]) -> None:
    """Rows of the job that appear behind the walk's cursor while the check is
    mid-way are deleted, whether ahead of the check's cursor (its segment
    finds it) or behind it (the whole-scope look at the end finds it, and
    the sweep deletes it); the job does not end before the check covered
    the whole scope, and done, total and the result agree."""
    _table(conn, 2000)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', %s::jsonb, '{}', "
                          "'{\"page_size\": 50, \"strategy\": \"range\"}')",
                    (json.dumps(filter_),))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    if not filter_:  # the check's calls of segments: a job of the previous release
        _as_previous_release(conn, job_id, identity)
    if filter_:  # a filtered job checks at its last page, as before
        _until(conn, job_id, identity, lambda cp: cp.get("after") is not None)
    else:
        mid = _until(conn, job_id, identity, _check_step)["checkpoint"]
        assert int(mid["check_after"]) < 1501  # the check is behind key 1501
    doc = json.dumps({"k": 1})
    conn.execute("INSERT INTO r (id, table_id, data) VALUES (-3, 1, %s)", (doc,))
    conn.execute("UPDATE r SET table_id = 1, data = %s WHERE id = 1501", (doc,))
    conn.execute("INSERT INTO r (id, table_id, data, created_at) "
                 "VALUES (-4, 1, %s, now() + interval '1 hour')", (doc,))
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        pass
    assert state == "done"
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    left = _keys(conn, 1)
    assert {-3, 1501} & left == set()
    assert -4 in left  # after the cutoff: not the job's
    assert done["done"] == done["total"] == done["result"]["deleted"]
    assert done["done"] == (1000 if not filter_ else 333) + 2


def test_a_job_walked_partly_by_the_previous_release_still_ends_exact(conn: Conn) -> None:
    """A job that walked part of its scope under a release without the check's
    segments (its checkpoint has none) records them from its cursor on; its
    check covers the part before in one step, and every row is found, a row
    inserted behind the cursor included."""
    _table(conn, 2000)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 50}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    for _ in range(7):  # the first call, then 6 pages: 300 keys
        assert _page(conn, job_id, identity) == "more"
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint - "
                 "'{check_bounds,check_spans,check_span,checked_to}'::text[] WHERE id = %s",
                 (job_id,))
    cursor = job(conn, job_id)["checkpoint"]["after"]
    conn.execute("INSERT INTO r (id, table_id, data) VALUES (-3, 1, '{}'), (301, 1, '{}')")
    walked = _until(conn, job_id, identity, lambda cp: "check_after" in cp)["checkpoint"]
    assert walked["check_bounds"][0] == cursor and walked["check_spans"][0] is None
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        pass
    assert state == "done"
    done = job(conn, job_id)
    assert _keys(conn, 1) == set()
    assert done["done"] == done["total"] == done["result"]["deleted"] == 1002


def test_a_pause_mid_check_keeps_it_and_a_stale_runner_changes_nothing(conn: Conn) -> None:
    """The check's calls are fenced like pages: a pause requested mid-check
    ends the attempt paused with the check's cursor kept, the resumed job
    goes on from it; the previous attempt's runner is 'lost'."""
    _table(conn, 2000)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 50}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    _as_previous_release(conn, job_id, identity)
    mid = _until(conn, job_id, identity, _check_step)["checkpoint"]
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    assert _page(conn, job_id, identity) == "paused"
    paused = job(conn, job_id)
    assert paused["status"] == "paused"
    assert paused["checkpoint"]["check_after"] == mid["check_after"]
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w2')", (job_id,))
    second = who(conn, job_id, "w2")
    assert _page(conn, job_id, identity) == "lost"
    assert job(conn, job_id)["checkpoint"]["check_after"] == mid["check_after"]
    steps = []
    while (state := _page(conn, job_id, second)) in ("more", "retry"):
        steps.append(job(conn, job_id)["checkpoint"].get("check_steps"))
    assert state == "done" and steps[0] == mid["check_steps"] + 1
    assert job(conn, job_id)["result"]["deleted"] == 1000 and _keys(conn, 1) == set()


# --- the end-of-scope check trailing the walk -------------------------------------------


def test_each_page_looks_at_the_keys_the_pages_before_it_deleted(conn: Conn) -> None:
    """A whole-scope delete checks as it walks: every page also looks at the
    keys from the last look (checked_to) up to its own cursor, so checked_to
    follows the cursor a page behind, and after the last page one call of
    the check is left (the whole-scope look), not a call per segment of the
    walk read back from cold buffers (issue 11)."""
    _table(conn, 2000)  # 1000 keys in scope 1
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 50}')")
    calls = _calls(conn, job_id)
    assert calls[-1]["state"] == "done" and calls[-1]["status"] == "succeeded"
    assert calls[-1]["done"] == calls[-1]["result"]["deleted"] == calls[-1]["total"] == 1000
    pages = [(before["checkpoint"], after["checkpoint"])
             for before, after in zip(calls, calls[1:], strict=False)
             if after["state"] == "more" and "check_after" not in after["checkpoint"]
             and after["checkpoint"]["pages"] > before["checkpoint"]["pages"]]
    assert len(pages) >= 19
    for before, after in pages:
        assert "checked_to" in after and "check_bounds" not in after
        assert after["checked_to"] == before["after"]  # NULL after the first page
    checks = [c for c in calls[1:] if "check_after" in c["checkpoint"]]
    assert len(checks) == 1 and checks[0]["checkpoint"]["check_next"] is None
    assert calls[-1]["result"]["pages"] == 21
    assert _keys(conn, 1) == set()


@pytest.mark.parametrize("pause", [False, True], ids=["one attempt", "paused and resumed"])
def test_rows_behind_the_cursor_are_found_by_the_next_pages_look(conn: Conn,
                                                                  pause: bool) -> None:
    """Rows of the job that appear behind the cursor mid-walk are deleted,
    whether the pages' looks had passed their keys already (the whole-scope
    look at the end finds them) or not yet (the next page's look deletes
    them, in its transaction), across a pause and a new attempt too; a row
    created after the cutoff is left; done, total and the result agree."""
    _table(conn, 2000)  # keys 2, 4, ..., 2000 in scope 1
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{}', '{}', "
                          "'{\"page_size\": 50}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    cp = _until(conn, job_id, identity,
                lambda cp: cp.get("checked_to") is not None and int(cp["after"]) > 500)
    cp = cp["checkpoint"]
    looked, cursor = int(cp["checked_to"]), int(cp["after"])
    assert looked < cursor
    if pause:
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
        assert _page(conn, job_id, identity) == "paused"
        assert job(conn, job_id)["checkpoint"]["checked_to"] == cp["checked_to"]
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
        conn.execute("SELECT pgjobs._claim_id(%s, 'w2')", (job_id,))
        identity = who(conn, job_id, "w2")
    done_before = job(conn, job_id)["done"]
    conn.execute("INSERT INTO r (id, table_id, data) VALUES (-3, 1, '{}'), (%s, 1, '{}')",
                 (cursor - 1,))  # looked at already; not yet (an odd key: a new row)
    conn.execute("UPDATE r SET table_id = 1 WHERE id = %s", (looked + 1,))  # moved into scope
    conn.execute("INSERT INTO r (id, table_id, data, created_at) "
                 "VALUES (%s, 1, '{}', now() + interval '1 hour')", (cursor - 3,))
    assert _page(conn, job_id, identity) == "more"  # the next page
    after = job(conn, job_id)
    assert after["checkpoint"]["checked_to"] == cp["after"]
    assert after["done"] - done_before == 50 + 2  # its keys and the two not looked at yet
    assert {cursor - 1, looked + 1} & _keys(conn, 1) == set()
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        pass
    assert state == "done"
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    assert _keys(conn, 1) == {cursor - 3}  # after the cutoff: not the job's
    assert done["done"] == done["total"] == done["result"]["deleted"] == 1000 + 3
