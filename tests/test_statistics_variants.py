"""The churn cliff, attacked with variants (issue 11): a job refreshes its
target's statistics a bounded number of times, never once per page.

tests/test_engine_statistics.py counts the ANALYZEs of whole-relation,
half-relation and filtered deletes. These vary the target and what else
touches it: the share of the relation a delete or a backfill touches (20%,
50%, 100%), autovacuum on or off, a partitioned target (statistics per
leaf), extended statistics, a backfill that grows its rows past TOAST's
threshold, and another session holding the lock an ANALYZE needs (a
concurrent ANALYZE or VACUUM) while the job runs. Counts only:
pg_stat_user_tables.analyze_count (the manual ANALYZEs, the job's; an
autovacuum's are autoanalyze_count) and the job's checkpoint, never a
timing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import job, scalar

Conn = Any
ROWS = 30000
PAGE = '{"page_size": 200}'
CAP = 4


def _table(conn: Conn, share: int, autovacuum: bool = False, partitioned: bool = False) -> None:
    """`hot`: ROWS rows, a `share` percent of them tenant 1's (interleaved),
    the rest tenants 2 and 3's; list-partitioned by tenant when asked."""
    conn.execute(f"""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY,
                          table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{{}}',
                          note text, created_at timestamptz NOT NULL DEFAULT now(),
                          PRIMARY KEY ({'table_id, ' if partitioned else ''}id))
        {'PARTITION BY LIST (table_id)' if partitioned else
         f'WITH (autovacuum_enabled = {str(autovacuum).lower()})'}
    """)
    if partitioned:
        for tenant in (1, 2, 3):
            conn.execute(f"CREATE TABLE hot_{tenant} PARTITION OF hot FOR VALUES IN ({tenant}) "
                         f"WITH (autovacuum_enabled = {str(autovacuum).lower()})")
    conn.execute(f"""
        INSERT INTO hot (table_id, data)
        SELECT CASE WHEN i % 100 < {share} THEN 1 ELSE 2 + i % 2 END,
               jsonb_build_object('k', i % 2)
          FROM generate_series(1, {ROWS}) i;
        CREATE INDEX hot_scope_key ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at', 'data',
                                      p_options => '{{"tune_autovacuum": false}}');
    """)


def _analyzes(conn: Conn) -> dict[str, int]:
    """Manual ANALYZEs so far of `hot` and of each of its partitions."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT relname, analyze_count FROM pg_stat_user_tables WHERE relname LIKE 'hot%'")}


def _run_counted(conn: Conn, sql: str,
                 params: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, int]]:
    """Runs the job `sql` submits (run_job); its row and the ANALYZEs it made."""
    before = _analyzes(conn)
    job_id = scalar(conn, sql, params)
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    after = _analyzes(conn)
    return row, {rel: n - before.get(rel, 0) for rel, n in after.items()}


def _delete(conn: Conn, filter_: str = "{}") -> tuple[dict[str, Any], dict[str, int]]:
    return _run_counted(
        conn, "SELECT pgjobs.submit_delete('hot', '1', %s::jsonb, '{}', %s::jsonb)",
        (filter_, PAGE))


def _backfill(conn: Conn, set_: str) -> tuple[dict[str, Any], dict[str, int]]:
    return _run_counted(
        conn, "SELECT pgjobs.submit_backfill('hot', '1', '{}', %s::jsonb, %s::jsonb)",
        (set_, PAGE))


@pytest.mark.parametrize("autovacuum", [False, True], ids=["autovacuum-off", "autovacuum-on"])
@pytest.mark.parametrize("share", [20, 50, 100])
def test_a_delete_of_any_share_analyzes_a_bounded_number_of_times(
        conn: Conn, share: int, autovacuum: bool) -> None:
    _table(conn, share, autovacuum=autovacuum)
    row, analyzed = _delete(conn)
    assert row["done"] == ROWS * share // 100
    assert row["checkpoint"]["pages"] >= 30  # many pages past the first fifth
    assert analyzed["hot"] <= CAP, (row["checkpoint"], analyzed)
    assert analyzed["hot"] == row["checkpoint"].get("analyzes", 0)
    if share >= 50:  # the statistics followed the delete
        assert analyzed["hot"] >= 1, (row["checkpoint"], analyzed)


@pytest.mark.parametrize("share", [20, 50, 100])
def test_a_backfill_of_any_share_never_analyzes(conn: Conn, share: int) -> None:
    _table(conn, share)
    row, analyzed = _backfill(conn, '{"k": 7}')
    assert row["done"] == ROWS * share // 100
    assert analyzed == {"hot": 0}, analyzed


def test_a_backfill_that_grows_its_rows_past_toast_never_analyzes(conn: Conn) -> None:
    """Every row of the scope grows by a value TOAST stores out of line."""
    _table(conn, 100)
    big = '{"blob": "' + "x" * 4000 + '"}'
    row, analyzed = _backfill(conn, big)
    assert row["done"] == ROWS
    assert scalar(conn, "SELECT pg_total_relation_size(reltoastrelid) FROM pg_class "
                        "WHERE relname = 'hot'") > 0
    assert analyzed.get("hot", 0) == 0, analyzed


def test_a_partitioned_target_analyzes_only_the_scopes_leaf_and_boundedly(conn: Conn) -> None:
    """Statistics per partition: the scope's leaf, a bounded number of times;
    no other tenant's leaf, nor the parent (which would sample them all)."""
    _table(conn, 50, partitioned=True)
    row, analyzed = _delete(conn)
    assert row["done"] == ROWS // 2
    assert 1 <= analyzed["hot_1"] <= CAP, (row["checkpoint"], analyzed)
    assert analyzed["hot_2"] == analyzed["hot_3"] == 0, analyzed
    assert analyzed.get("hot", 0) == 0, analyzed


def test_extended_statistics_do_not_change_the_count(conn: Conn) -> None:
    _table(conn, 100)
    conn.execute("CREATE STATISTICS hot_scope_time (dependencies, ndistinct) "
                 "ON table_id, created_at FROM hot")
    conn.execute("ANALYZE hot")
    row, analyzed = _delete(conn)
    assert 1 <= analyzed["hot"] <= CAP, (row["checkpoint"], analyzed)


def test_a_held_analyze_lock_is_tried_a_bounded_number_of_times(
        conn: Conn) -> None:
    """Another session holds the lock an ANALYZE takes (SHARE UPDATE
    EXCLUSIVE: a concurrent ANALYZE, VACUUM or CREATE INDEX CONCURRENTLY)
    for the whole job. Each try waits out the page's lock_timeout and is
    skipped; a job that tried again before every page paid that wait on
    every page past the first fifth. The job counts its tries in its
    checkpoint (analyze_skips): a few, like its ANALYZEs."""
    _table(conn, 100)
    dsn = conn.info.dsn
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE hot IN SHARE UPDATE EXCLUSIVE MODE")
        row, analyzed = _delete(conn)
        holder.execute("COMMIT")
    assert analyzed["hot"] == 0
    assert row["checkpoint"]["pages"] >= 100
    assert 1 <= row["checkpoint"].get("analyze_skips", 0) <= CAP, row["checkpoint"]


def test_a_partitioned_targets_shared_leaf_is_analyzed_on_its_own_churn(conn: Conn) -> None:
    """Statistics per partition: tenant 1's delete empties half of its leaf
    (which it shares with tenant 5) but a tenth of the whole table. The
    planner reads the leaf's statistics, so the leaf's churn decides: the
    threshold was a fifth of the parent's rows, which this delete never
    reached, and the leaf kept counting the deleted rows."""
    conn.execute("""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY,
                          table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{}',
                          created_at timestamptz NOT NULL DEFAULT now(),
                          PRIMARY KEY (table_id, id))
        PARTITION BY LIST (table_id);
        CREATE TABLE hot_a PARTITION OF hot FOR VALUES IN (1, 5)
            WITH (autovacuum_enabled = false);
        CREATE TABLE hot_b PARTITION OF hot FOR VALUES IN (2, 6)
            WITH (autovacuum_enabled = false);
        CREATE TABLE hot_c PARTITION OF hot FOR VALUES IN (3, 7)
            WITH (autovacuum_enabled = false);
        CREATE TABLE hot_d PARTITION OF hot FOR VALUES IN (4, 8)
            WITH (autovacuum_enabled = false);
        INSERT INTO hot (table_id) SELECT 1 + i % 8 FROM generate_series(1, 120000) i;
        CREATE INDEX hot_scope_key ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at', 'data',
                                      p_options => '{"tune_autovacuum": false}');
    """)
    row, analyzed = _delete(conn)
    assert row["done"] == 15000
    assert 1 <= analyzed["hot_a"] <= CAP, (row["checkpoint"], analyzed)
    assert analyzed["hot_b"] == analyzed["hot_c"] == analyzed["hot_d"] == 0, analyzed
    assert analyzed.get("hot", 0) == 0, analyzed
    assert scalar(conn, "SELECT reltuples FROM pg_class WHERE relname = 'hot_a'") <= 20000
