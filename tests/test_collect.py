"""Delete jobs on the 'collect' strategy (docs/engine.md, "Selective filters"):
the first call stores the addresses of the matching rows found through an
index, pages delete the rows at those addresses, a sweep ends the job. The
row set must equal the range strategy's (a Python reference), with a crash
and resume mid-job, with rows updated, moved and inserted meanwhile, and
with the read mask checked at every page boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

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
    scalar,
    seed,
    slow_deletes,
    snapshot,
    submit_backfill,
    submit_delete,
    visible_keys,
    who,
)

MakeConn = Callable[..., Conn]


def add_document_index(conn: Conn, target: Target) -> None:
    """The btree_gin (scope, document jsonb_path_ops) index that serves
    document equality per scope (btree_gin is in the test template)."""
    conn.execute(f"CREATE INDEX ON {target.name} USING gin (table_id, data jsonb_path_ops)")
    conn.execute(f"ANALYZE {target.name}")


def batches(conn: Conn, job_id: int) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.job_batches WHERE job_id = %s",
                      (job_id,)))


def visible_count(conn: Conn, target: Target, scope: str) -> int:
    return int(scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s)",
                      (target.name, scope)))


def masked_keys(conn: Conn, target: Target, scope: str) -> set[str]:
    mask = scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (target.name, scope))
    return {r[0] for r in conn.execute(
        f"SELECT id::text FROM {target.name} WHERE table_id = %s AND ({mask})", (scope,))}






# --- the strategy chosen ----------------------------------------------------------


def first_call(conn: Conn, job_id: int) -> dict[str, Any]:
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"
    checkpoint: dict[str, Any] = job(conn, job_id)["checkpoint"]
    return checkpoint


def seed_clustered(conn: Conn, target: Target) -> None:
    """6000 rows over three scopes, then 400 rows of scope 1 with k = 7,
    inserted together: the matches of {"k": 7} fill a few heap pages of the
    ~100 that hold scope 1."""
    seed(conn, target, 6000)
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT 1, g % 7, 'clustered', jsonb_build_object('k', 7, 'nest', '{}'::jsonb), "
                 "now() - interval '1 hour' FROM generate_series(1, 400) g")
    add_document_index(conn, target)


def test_auto_collects_when_an_index_narrows_the_filter_to_few_pages(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed_clustered(conn, t)
    # Pages of fewer rows than match: a job whose matches fit one page
    # deletes them in its first call instead of collecting them
    # (tests/test_collect_first_call.py).
    job_id = submit_delete(conn, t, "1", {"k": 7}, options={"page_size": 100})
    checkpoint = first_call(conn, job_id)
    assert checkpoint["strategy"] == "collect"
    expected = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                            "AND data @> '{\"k\": 7}' AND created_at <= %s",
                      (cutoff_of(conn, job_id),))
    assert expected == 400
    assert checkpoint["collected"] == job(conn, job_id)["total"] == expected
    assert checkpoint["after"] == 0
    assert batches(conn, job_id) == (expected + 999) // 1000


@pytest.mark.parametrize(("filter_", "options", "gin"), [
    ({}, {}, True),                             # no filter: the whole scope
    ({"n": 3}, {}, True),                       # no index on n
    ({"k": 7}, {}, False),                      # no document index
    ({"k": {"$in": [0, 1, 2]}}, {}, True),      # 60% of the scope's rows
    ({"k": 7}, {"strategy": "range"}, True),    # asked for
])
def test_auto_walks_ranges_otherwise(conn: Conn, filter_: dict[str, Any],
                                     options: dict[str, Any], gin: bool) -> None:
    t = make_rows_target(conn)
    if gin:
        seed_clustered(conn, t)
    else:
        seed(conn, t, 6000)
        conn.execute("ANALYZE user_table_rows")
    job_id = submit_delete(conn, t, "1", filter_, options=options)
    assert first_call(conn, job_id)["strategy"] == "range"
    assert batches(conn, job_id) == 0


def test_backfill_walks_ranges(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 3000)
    add_document_index(conn, t)
    job_id = submit_backfill(conn, t, "1", {"k": 2}, {"label": "x"})
    assert first_call(conn, job_id)["strategy"] == "range"


@pytest.mark.parametrize("value", ["fast", 1, None, ["collect"]])
def test_bad_strategy_is_22023(conn: Conn, value: Any) -> None:
    t = make_rows_target(conn)
    with pytest.raises(psycopg.Error) as info:
        submit_delete(conn, t, "1", {"k": 1}, options={"strategy": value})
    assert info.value.sqlstate == "22023"
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


# --- the row set ------------------------------------------------------------------

CASES = [
    # key, scope, filter, Python reference of the filter, with a document index
    ("bigint", "int", {"k": 2}, lambda r: r["data"].get("k") == 2, True),
    ("text", "text", {"k": {"$in": [1, 3]}, "n": {"$lt": 5}},
     lambda r: r["data"].get("k") in (1, 3) and r["n"] < 5, True),
    ("uuid", "int", {"nest.a": 1}, lambda r: r["data"]["nest"].get("a") == 1, True),
    # Forced without an index that narrows it: still exact, just slower.
    ("bigint", "text", {"n": {"$gte": 3}}, lambda r: r["n"] >= 3, False),
]


@pytest.mark.parametrize(("key_type", "scope_type", "filter_", "match", "gin"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'gin' if c[4] else 'nogin'}" for c in CASES])
@pytest.mark.parametrize("page_size", [None, 23])
def test_collect_deletes_exactly_the_reference_rows(
        conn: Conn, key_type: str, scope_type: str, filter_: dict[str, Any],
        match: Callable[[Row], bool], gin: bool, page_size: int | None) -> None:
    t = make_rows_target(conn, key_type=key_type, scope_type=scope_type)
    seed(conn, t, 1500)
    if gin:
        add_document_index(conn, t)
    scope = t.scope(2)
    before = snapshot(conn, t)
    in_scope = sorted(k for k, r in before.items() if r["table_id"] == scope and match(r))
    exclude = in_scope[:3] + in_scope[-2:]
    options: dict[str, Any] = {"strategy": "collect"}
    if page_size:
        options["page_size"] = page_size
    job_id = submit_delete(conn, t, scope, filter_, exclude, options)
    cutoff = cutoff_of(conn, job_id)
    late = [insert_row(conn, t, scope, n=i, data={"k": 2, "nest": {"a": 1}}, key=f"late-{i}")
            for i in range(3)]

    run_job(conn, job_id)

    doomed = job_rows(before, scope, cutoff, match, frozenset(exclude))
    assert doomed
    after = snapshot(conn, t)
    assert set(after) == (set(before) - doomed) | set(late)
    for key, row in before.items():
        if key not in doomed:
            assert after[key] == row
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["checkpoint"]["strategy"] == "collect"
    assert finished["total"] == finished["done"] == finished["result"]["deleted"] == len(doomed)
    if page_size:
        # One page per page_size addresses, then one sweep that finds nothing.
        assert finished["result"]["pages"] == -(-len(doomed) // page_size) + 1
    assert batches(conn, job_id) == 0  # removed with the last page


# --- concurrent changes -----------------------------------------------------------


def test_rows_changed_after_the_collection_end_as_the_mask_showed(
        conn: Conn, make_conn: MakeConn) -> None:
    """Collected rows updated (new addresses) or moved out of the filter,
    rows updated into the filter, a backdated insert, a row created after
    the cutoff: at every page boundary the reads equal the final state, and
    the final state is exactly 'nothing that matches the job remains'."""
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    other = make_conn()
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 20, "strategy": "collect"})
    cutoff = cutoff_of(conn, job_id)

    def keys_where(condition: str) -> list[str]:
        return [r[0] for r in conn.execute(
            f"SELECT id::text FROM user_table_rows WHERE table_id = 1 AND created_at <= %s "
            f"AND {condition} ORDER BY id DESC LIMIT 4", (cutoff,))]

    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "more"  # collects
    assert job(conn, job_id)["checkpoint"]["strategy"] == "collect"

    # The last collected addresses go stale or stop matching; others start to.
    still = keys_where("data @> '{\"k\": 2}'")
    other.execute("UPDATE user_table_rows SET label = 'touched', n = n + 100 "
                  "WHERE id::text = ANY (%s)", (still[:2],))
    other.execute("UPDATE user_table_rows SET data = data || '{\"k\": 9}' "
                  "WHERE id::text = ANY (%s)", (still[2:],))
    joined = keys_where("NOT data @> '{\"k\": 2}'")
    other.execute("UPDATE user_table_rows SET data = data || '{\"k\": 2}' "
                  "WHERE id::text = ANY (%s)", (joined,))
    backdated = scalar(other, "INSERT INTO user_table_rows (table_id, n, label, data, "
                              "created_at) VALUES (1, 1, 'backdated', '{\"k\": 2}', "
                              "%s - interval '1 hour') RETURNING id::text", (cutoff,))
    late = insert_row(other, t, "1", data={"k": 2})

    current = snapshot(conn, t)
    doomed = job_rows(current, "1", cutoff, lambda r: r["data"].get("k") == 2)
    assert set(still[:2]) | set(joined) | {backdated} <= doomed
    assert not set(still[2:]) & doomed and late not in doomed
    final = {k for k, r in current.items() if r["table_id"] == "1"} - doomed

    def check(_: str) -> None:
        assert set(visible_keys(conn, t, "1", limit=200)) == final
        assert visible_count(conn, t, "1") == len(final)
        assert masked_keys(conn, t, "1") == final

    check("collected")
    while True:
        state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, who(conn, job_id, 'w')))
        check(state)
        if state != "more":
            break
    assert state == "done"
    assert set(snapshot(conn, t)) == set(current) - doomed
    finished = job(conn, job_id)
    assert finished["done"] == finished["total"] == len(doomed)


def test_a_reused_address_holds_a_row_the_job_does_not_cover(conn: Conn) -> None:
    """A page deletes the row at a collected address only if it still matches
    the job: here every collected row is gone, the table vacuumed down to
    nothing and refilled in the same order, so each collected address holds
    a new row of the scope: half outside the filter, half matching it but
    created after the cutoff. The mask shows them all and the job deletes
    none (without the page's re-check of the predicate it deleted them all)."""
    t = make_rows_target(conn)
    seed(conn, t, 600)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 7, "strategy": "collect"})
    first_call(conn, job_id)
    collected = [r[0] for r in conn.execute(
        "SELECT unnest(tids)::text FROM pgjobs.job_batches WHERE job_id = %s", (job_id,))]
    assert len(collected) == job(conn, job_id)["total"] > 20

    conn.execute("CREATE TEMP TABLE saved AS SELECT ctid AS address, * FROM user_table_rows")
    conn.execute("DELETE FROM user_table_rows")
    conn.execute("VACUUM user_table_rows")  # truncates it: the addresses are free again
    conn.execute("""
        INSERT INTO user_table_rows (id, table_id, n, label, data, created_at)
        SELECT id, table_id, n, label,
               CASE WHEN data @> '{"k": 2}' AND id % 2 = 0 THEN data || '{"k": 9}'
                    ELSE data END,
               CASE WHEN data @> '{"k": 2}' AND id % 2 = 1 THEN now() ELSE created_at END
          FROM saved ORDER BY address""")
    reused = snapshot(conn, t)
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND ctid::text = ANY (%s)", (collected,)) == len(collected)
    assert not job_rows(reused, "1", cutoff_of(conn, job_id), lambda r: r["data"].get("k") == 2)
    in_scope = {k for k, r in reused.items() if r["table_id"] == "1"}
    assert visible_count(conn, t, "1") == len(in_scope)

    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                 (job_id, who(conn, job_id, 'w'))) == "more":
        pass
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["done"] == finished["result"]["deleted"] == 0
    assert snapshot(conn, t) == reused


def test_crash_mid_job_resumes_from_the_collected_cursor(
        conn: Conn, make_conn: MakeConn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    slow_deletes(conn, t, 0.005)
    before = snapshot(conn, t)
    match = lambda r: r["data"]["k"] in (1, 2)  # noqa: E731
    job_id = submit_delete(conn, t, "1", {"k": {"$in": [1, 2]}},
                           options={"page_size": 10, "strategy": "collect"})
    at_crash = crash_runner_mid_job(conn, make_conn, job_id, pages=3)
    assert at_crash["status"] == "running"
    checkpoint = at_crash["checkpoint"]
    assert checkpoint["strategy"] == "collect" and 0 < checkpoint["after"] < checkpoint["collected"]
    # Committed pages are gone, the page in flight was rolled back whole.
    assert at_crash["done"] == checkpoint["after"] == len(before) - len(snapshot(conn, t))
    assert batches(conn, job_id) > 0

    expire_lease(conn, job_id)
    conn.execute("CALL pgjobs.run('30 seconds')")

    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    doomed = job_rows(before, "1", done["cutoff"], match)
    assert set(snapshot(conn, t)) == set(before) - doomed
    assert done["done"] == done["total"] == len(doomed)
    # Resumed, not restarted: one page per 10 addresses, then the sweep.
    assert done["result"]["pages"] == -(-len(doomed) // 10) + 1
    assert batches(conn, job_id) == 0


def test_cancel_removes_the_collected_addresses_and_lifts_the_mask(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 10, "strategy": "collect"})
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    for _ in range(3):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                      (job_id, who(conn, job_id, 'w'))) == "more"
    assert batches(conn, job_id) == 1
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "canceled"
    assert batches(conn, job_id) == 0
    canceled = job(conn, job_id)
    assert canceled["status"] == "canceled" and canceled["done"] == 20
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"


def test_prune_removes_collected_addresses_with_the_job(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 10, "strategy": "collect"})
    first_call(conn, job_id)
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'operator gave up', false)",
                  (job_id, who(conn, job_id, 'w')))
    assert batches(conn, job_id) == 1  # ended outside the runner: kept until pruned
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' WHERE id = %s",
                 (job_id,))
    assert scalar(conn, "SELECT pgjobs.prune('1 day')")["deleted"] == 1
    assert batches(conn, job_id) == 0


def test_lock_wait_retries_a_collected_page(conn: Conn, make_conn: MakeConn) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 10, "strategy": "collect"})
    first_call(conn, job_id)
    holder = make_conn(autocommit=False)
    # A row of the first page: its 10 addresses are the first of batch 0
    # (which holds the last 1000 addresses, here all of them, in heap order).
    holder.execute("SELECT 1 FROM user_table_rows WHERE ctid = (SELECT b.tids[10] "
                   "FROM pgjobs.job_batches b WHERE b.job_id = %s AND b.batch = 0) "
                   "FOR UPDATE", (job_id,))

    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "retry"
    waiting = job(conn, job_id)
    assert (waiting["done"], waiting["checkpoint"]["after"]) == (0, 0)
    assert waiting["checkpoint"]["lock_waits"] == 1

    holder.rollback()
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                 (job_id, who(conn, job_id, 'w'))) in ("more", "retry"):
        pass
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert "lock_waits" not in done["checkpoint"]
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND data @> '{\"k\": 2}' AND created_at <= %s", (done["cutoff"],)) == 0


def test_rows_a_trigger_keeps_do_not_hold_the_sweep(conn: Conn) -> None:
    """A BEFORE DELETE trigger that returns NULL keeps some matching rows: the
    sweep finds them again and cannot delete them, so the job ends failed, not
    succeeded (issue 9 item 5: never a success with matching rows left), and
    never loops."""
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    conn.execute("""
        CREATE FUNCTION keep_some() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RETURN CASE WHEN OLD.n = 0 THEN NULL ELSE OLD END; END $$;
        CREATE TRIGGER keep BEFORE DELETE ON user_table_rows
            FOR EACH ROW EXECUTE FUNCTION keep_some();""")
    before = snapshot(conn, t)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 10, "strategy": "collect"})
    run_job(conn, job_id)
    done = job(conn, job_id)
    assert done["status"] == "failed"
    assert "trigger or rule" in done["error"] and "not deleted" in done["error"]
    doomed = job_rows(before, "1", done["cutoff"], lambda r: r["data"]["k"] == 2)
    kept = {k for k in doomed if before[k]["n"] == 0}
    assert kept and set(snapshot(conn, t)) == (set(before) - doomed) | kept
    assert done["done"] == len(doomed - kept)
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"


@pytest.mark.parametrize(("sqlstate", "status", "kept"), [
    ("40P01", "queued", True),    # transient (pgjobs.retryable_sqlstate): retried
    ("22012", "failed", False),   # a data error: failed for good
])
def test_a_page_error_keeps_the_addresses_only_for_a_retry(conn: Conn, sqlstate: str,
                                                           status: str, kept: bool) -> None:
    """A page's caught error ends the attempt through pgjobs._fail_attempt:
    the collected addresses stay while the job may run again (the retry
    resumes at its cursor) and go when it ended."""
    t = make_rows_target(conn)
    seed(conn, t, 1500)
    add_document_index(conn, t)
    job_id = submit_delete(conn, t, "1", {"k": 2},
                           options={"page_size": 10, "strategy": "collect"})
    first_call(conn, job_id)
    assert batches(conn, job_id) == 1
    conn.execute(f"""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '{sqlstate}'; END $$;
        CREATE TRIGGER refuse BEFORE DELETE ON user_table_rows
            FOR EACH ROW EXECUTE FUNCTION refuse();""")
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, 'w'))) == "failed"
    row = job(conn, job_id)
    assert row["status"] == status and f"SQLSTATE {sqlstate}" in row["error"], row
    assert row["done"] == 0 and row["checkpoint"]["after"] == 0, row
    assert batches(conn, job_id) == (1 if kept else 0)
