"""The planner's statistics after a mass delete, on every kind of target.

A job that deletes a fifth of a relation or more leaves the planner counting
rows that are gone (issue 11: keyset reads of the survivors walked the primary
key across every tenant) unless it refreshes them: pgjobs._maybe_analyze
analyzes the target a bounded number of times per job. On a partitioned
target it analyzes the leaves the scope's pages read, not the parent (which
would lock and sample every tenant's partition). tests/test_engine_statistics.py
covers plain tables; these cover LIST and HASH partitioning by the scope and
RANGE partitioning by created_at, and check the statistics the planner reads
afterwards, not only that an ANALYZE ran."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import job, scalar

Conn = Any
ROWS = 24000  # per scope; two scopes


def _partitioned(conn: Conn, layout: str) -> dict[str, list[str]]:
    """`hot` partitioned per layout, scopes 1 and 2 of ROWS rows each,
    autovacuum off on every leaf (only the job analyzes), analyzed once.
    Returns {"scope": leaves holding scope 1, "other": leaves that do not}."""
    other = 2
    by = {"list": "LIST (table_id)", "hash": "HASH (table_id)",
          "range": "RANGE (created_at)"}[layout]
    conn.execute(f"""
        CREATE TABLE hot (id bigint GENERATED ALWAYS AS IDENTITY,
                          table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{{}}',
                          created_at timestamptz NOT NULL)
        PARTITION BY {by}""")
    if layout == "list":
        leaves = {"scope": ["hot_1"], "other": ["hot_2"]}
        conn.execute("CREATE TABLE hot_1 PARTITION OF hot FOR VALUES IN (1)")
        conn.execute("CREATE TABLE hot_2 PARTITION OF hot FOR VALUES IN (2)")
    elif layout == "hash":
        for r in range(2):
            conn.execute(f"CREATE TABLE hot_h{r} PARTITION OF hot "
                         f"FOR VALUES WITH (MODULUS 2, REMAINDER {r})")
        # The other tenant: the first id that hashes to another leaf than 1.
        conn.execute("INSERT INTO hot (table_id, created_at) "
                     "SELECT g, now() FROM generate_series(1, 20) g")
        scope_leaf = scalar(conn, "SELECT tableoid::regclass::text FROM hot WHERE table_id = 1")
        other, other_leaf = conn.execute(
            "SELECT table_id, tableoid::regclass::text FROM hot WHERE tableoid <> "
            "(SELECT tableoid FROM hot WHERE table_id = 1) ORDER BY table_id LIMIT 1").fetchone()
        conn.execute("DELETE FROM hot")
        leaves = {"scope": [scope_leaf], "other": [other_leaf]}
    else:
        conn.execute("CREATE TABLE hot_old PARTITION OF hot FOR VALUES FROM (MINVALUE) "
                     "TO (now() - interval '1 day')")
        conn.execute("CREATE TABLE hot_new PARTITION OF hot FOR VALUES FROM "
                     "(now() - interval '1 day') TO (MAXVALUE)")
        # The scope has rows in every leaf: all of them are the scope's.
        leaves = {"scope": ["hot_old", "hot_new"], "other": []}
    for leaf in leaves["scope"] + leaves["other"]:
        conn.execute(f"ALTER TABLE {leaf} SET (autovacuum_enabled = false)")
    conn.execute(f"""
        INSERT INTO hot (table_id, data, created_at)
        SELECT CASE WHEN i % 2 = 0 THEN 1 ELSE {other} END, jsonb_build_object('k', (i / 2) % 2),
               now() - interval '2 days' + (i % 3) * interval '1 day' - interval '1 hour'
          FROM generate_series(1, {2 * ROWS}) i;
        CREATE INDEX hot_scope_key ON hot (table_id, id);
        ANALYZE hot;
        SELECT pgjobs.register_target('hot', 'id', 'table_id', 'created_at', 'data',
                                      p_options => '{{"tune_autovacuum": false}}');
    """)
    return leaves


def _stats(conn: Conn, leaf: str) -> tuple[float, int]:
    """(reltuples, analyze_count) of a leaf, the counters flushed."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return (float(scalar(conn, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                         (leaf,))),
            int(scalar(conn, "SELECT analyze_count FROM pg_stat_user_tables "
                             "WHERE relid = %s::regclass", (leaf,))))


@pytest.mark.parametrize("layout", ["list", "hash", "range"])
@pytest.mark.parametrize("filter_", ["{}", '{"k": 1}'], ids=["whole-scope", "filtered"])
def test_a_mass_delete_leaves_fresh_statistics_on_the_scopes_leaves(
        conn: Conn, layout: str, filter_: str) -> None:
    leaves = _partitioned(conn, layout)
    before = {leaf: _stats(conn, leaf) for leaf in leaves["scope"] + leaves["other"]}
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('hot', '1', %s::jsonb, '{}', "
                          "'{\"page_size\": 300}')", (filter_,))
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    # Filtered: half the scope (k = 1), 12,000 rows, past the 10,000 minimum.
    left_in_scope = scalar(conn, "SELECT count(*) FROM hot WHERE table_id = 1")
    assert row["done"] + left_in_scope == ROWS
    assert row["done"] >= 12000  # past the threshold: max(10,000, a fifth of the rows)
    assert 1 <= row["checkpoint"]["analyzes"] <= 4, row["checkpoint"]
    for leaf in leaves["scope"]:
        reltuples, analyzed = _stats(conn, leaf)
        assert analyzed > before[leaf][1], (leaf, "not analyzed")
        # The leaf's row count followed the delete (within the first
        # analyze's lag: at most what the job deleted after it).
        live = scalar(conn, f"SELECT count(*) FROM {leaf}")
        assert reltuples < before[leaf][0], (leaf, reltuples, before[leaf][0])
        assert reltuples <= live + 0.8 * row["done"], (leaf, reltuples, live)
    for leaf in leaves["other"]:
        # Another tenant's partition is neither locked nor sampled.
        assert _stats(conn, leaf)[1] == before[leaf][1], (leaf, "analyzed")
