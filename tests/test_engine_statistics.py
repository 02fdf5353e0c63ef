"""Statistics refresh during a mass delete: a bounded number of ANALYZEs per
job, never one per page.

`ANALYZE t (col)` does not reset n_mod_since_analyze, so a rule on that
counter alone analyzed before every page once a fifth of the table had
changed (issue 11: 12k rows/s instead of 490k rows/s for the rest of a
3M-row delete). These tests count ANALYZEs over many small pages, for every
way a delete walks the table, and no timings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import job, scalar

Conn = Any


def _table(conn: Conn, rows: int = 60000, scope_share: int = 1) -> None:
    """`hot`: rows of tenant 1 every `scope_share`-th row (1: all of them),
    autovacuum off (only the runner analyzes)."""
    conn.execute(f"""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{{}}',
                          created_at timestamptz NOT NULL DEFAULT now())
        WITH (autovacuum_enabled = false);
        INSERT INTO hot (table_id, data)
        SELECT CASE WHEN i % {scope_share} = 0 THEN 1 ELSE 2 END,
               jsonb_build_object('k', i % 2)
          FROM generate_series(1, {rows}) i;
        CREATE INDEX hot_scope_key ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at', 'data',
                                      p_options => '{{"tune_autovacuum": false}}');
    """)


def _analyze_count(conn: Conn) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # flushes this backend's counters
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(scalar(conn, "SELECT analyze_count FROM pg_stat_user_tables "
                            "WHERE relname = 'hot'"))


def _run(conn: Conn, filter_: str, options: str) -> dict[str, Any]:
    before = _analyze_count(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('hot', '1', %s::jsonb, '{}', %s::jsonb)",
                    (filter_, options))
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    row["analyzed"] = _analyze_count(conn) - before
    return row


@pytest.mark.parametrize(("scope_share", "filter_", "options", "deleted"), [
    # the whole table is the scope: a delete of 100% of the relation
    (1, "{}", '{"page_size": 200}', 60000),
    # half the relation, interleaved
    (2, "{}", '{"page_size": 200}', 30000),
    # a filtered delete on the range walk: 50% of the scope
    (1, '{"k": 1}', '{"page_size": 200, "strategy": "range"}', 30000),
    # a filtered delete on collected addresses
    (1, '{"k": 1}', '{"page_size": 200, "strategy": "collect"}', 30000),
], ids=["whole-relation", "half-relation", "filtered-range", "filtered-collect"])
def test_a_mass_delete_analyzes_a_bounded_number_of_times(
        conn: Conn, scope_share: int, filter_: str, options: str, deleted: int) -> None:
    _table(conn, scope_share=scope_share)
    row = _run(conn, filter_, options)
    assert row["done"] == deleted
    assert row["checkpoint"]["pages"] >= 100  # many pages past the 20% mark
    # At least once (the statistics follow the delete), at most the cap.
    assert 1 <= row["analyzed"] <= 4, row
    assert row["checkpoint"]["analyzes"] == row["analyzed"]
    # The planner's row count followed the delete.
    reltuples = scalar(conn, "SELECT reltuples FROM pg_class WHERE relname = 'hot'")
    assert reltuples <= 60000 - deleted * 0.5


def test_jobs_one_after_another_each_stay_bounded(conn: Conn) -> None:
    """A second and third job on a table whose n_mod_since_analyze is already
    past a fifth (column-list ANALYZEs never reset it) analyze only on their
    own churn: a small job not at all."""
    _table(conn, rows=60000, scope_share=1)
    conn.execute("INSERT INTO hot (table_id) SELECT 3 FROM generate_series(1, 200)")
    first = _run(conn, "{}", '{"page_size": 500}')
    assert 1 <= first["analyzed"] <= 4
    conn.execute("SELECT pg_stat_force_next_flush()")
    assert scalar(conn, "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                        "WHERE relname = 'hot'") > 0.2 * 200
    small = scalar(conn, "SELECT pgjobs.submit_delete('hot', '3', '{}', '{}', "
                         "'{\"page_size\": 10}')")
    before = _analyze_count(conn)
    conn.execute("CALL pgjobs.run_job(%s)", (small,))
    assert job(conn, small)["status"] == "succeeded"
    assert job(conn, small)["checkpoint"]["pages"] >= 20
    assert _analyze_count(conn) - before == 0


def test_a_backfill_does_not_analyze(conn: Conn) -> None:
    """A backfill does not change which scope a row is in."""
    _table(conn, scope_share=1)
    before = _analyze_count(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_backfill('hot', '1', '{}', "
                          "'{\"k\": 5}'::jsonb, '{\"page_size\": 500}')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded", job(conn, job_id)
    assert _analyze_count(conn) - before == 0
