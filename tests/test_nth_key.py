"""pgjobs._nth_key: the one routine that finds where a stretch of keys ends, for
pages, export chunks, parallel parts, previews and the field check. It returns
what each of their own OFFSET walks returned (the key cast to text after the
walk, not for every entry it passes), and no other routine builds its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Conn = psycopg.Connection[Any]
FUNCTIONS = Path(__file__).resolve().parent.parent / "sql" / "functions"


def test_no_other_routine_walks_the_keys_itself() -> None:
    walks = re.compile(r"OFFSET\s+(%\d*\$?s|\$\d)", re.IGNORECASE)
    own = sorted(path.name for path in FUNCTIONS.glob("*.sql")
                 if walks.search(path.read_text()) and path.name != "_nth_key.sql")
    assert own == [], f"use pgjobs._nth_key: {own}"
    assert walks.search((FUNCTIONS / "_nth_key.sql").read_text())


@pytest.fixture()
def keyed(conn: Conn) -> Conn:
    """Tables with bigint and text keys, three scopes interleaved."""
    conn.execute("""
        CREATE TABLE nk_int (id bigint PRIMARY KEY, tenant int NOT NULL);
        CREATE INDEX ON nk_int (tenant, id);
        INSERT INTO nk_int SELECT g * 7 % 1009, g % 3 FROM generate_series(1, 1008) g;
        CREATE TABLE nk_text (code text PRIMARY KEY, tenant int NOT NULL);
        CREATE INDEX ON nk_text (tenant, code);
        INSERT INTO nk_text
        SELECT 'k' || (g * 13 % 500) || CASE WHEN g % 5 = 0 THEN ' Z' ELSE 'a' END,
               g % 3
          FROM generate_series(1, 499) g;
        ANALYZE nk_int; ANALYZE nk_text;
    """)
    return conn


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from([("nk_int", "id", "bigint"), ("nk_text", "code", "text")]),
       tenant=st.integers(0, 3), offset=st.integers(0, 400),
       after_rank=st.one_of(st.none(), st.integers(0, 400)))
def test_the_nth_key_is_what_each_walk_returned(keyed: Conn, table: tuple[str, str, str],
                                                  tenant: int, offset: int,
                                                  after_rank: int | None) -> None:
    name, key, key_type = table
    after = None
    if after_rank is not None:
        row = keyed.execute(f"SELECT {key}::text FROM {name} WHERE tenant = %s "
                            f"ORDER BY {key} OFFSET %s LIMIT 1", (tenant, after_rank)).fetchone()
        after = row[0] if row else None
    bounds = "" if after is None else f" AND t.{key} > '{after}'::{key_type}"
    # The walk as pgjobs._run_page wrote it before: the key cast in the target list.
    old = keyed.execute(f"SELECT t.{key}::text FROM {name} t WHERE t.tenant = '{tenant}'::integer"
                        f"{bounds} ORDER BY t.{key} OFFSET {offset} LIMIT 1").fetchone()
    new = keyed.execute("SELECT pgjobs._nth_key(%s::regclass, 'tenant', %s, %s, %s, %s)",
                        (name, f"'{tenant}'::integer", key, bounds, offset)).fetchone()
    assert new == ((old[0] if old else None),)


def test_the_walk_takes_the_scope_key_index_whatever_the_costs_say(conn: Conn) -> None:
    """Never vacuumed (no page all-visible), the scope column interleaved in
    chunks and the key in heap order: costed, the primary key walked across
    every scope looks cheaper than the (scope, key) btree, and a plain
    `scope = ...` let the planner take it (issue 11: 23 ms instead of 1-2 ms
    for a 5000-key page bound after the job's ANALYZE). The bound must walk
    the (scope, key) index all the same: counted by the index scans this
    transaction started."""
    conn.execute("""
        CREATE TABLE nk_pk (id bigint PRIMARY KEY, tenant int NOT NULL, pad text);
        CREATE INDEX nk_pk_scope ON nk_pk (tenant, id);
        INSERT INTO nk_pk SELECT g, (g / 100) % 4, repeat('x', 50)
          FROM generate_series(1, 100000) g;
        ANALYZE nk_pk;
    """)
    # A bound inside the histogram, not in its first or last bucket: there the
    # planner reads the true extreme of id from an index (a scan it counts),
    # and whether 1000 fell in the first bucket depended on ANALYZE's sample.
    for bounds in ("", " AND t.id > '50000'::bigint"):
        count = ("SELECT pg_stat_get_xact_numscans('nk_pk_pkey'::regclass), "
                 "pg_stat_get_xact_numscans('nk_pk_scope'::regclass)")
        with conn.transaction():  # (pending counts: they add up until flushed)
            before = conn.execute(count).fetchone()
            key = conn.execute("SELECT pgjobs._nth_key('nk_pk', 'tenant', '1::integer', 'id', "
                               "%s, 4999)", (bounds,)).fetchone()
            after = conn.execute(count).fetchone()
        assert before is not None and after is not None
        scans = (after[0] - before[0], after[1] - before[1])
        expected = conn.execute(f"SELECT id::text FROM nk_pk t WHERE tenant = 1{bounds} "
                                "ORDER BY t.id OFFSET 4999 LIMIT 1").fetchone()
        assert key == expected
        assert scans == (0, 1), bounds
