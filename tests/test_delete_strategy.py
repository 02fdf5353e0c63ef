"""Which strategy `auto` gives a filtered delete (pgjobs._page_strategy) when
the matching rows sit on every heap page of the scope: 'collect' as long as
those pages stay cached between its passes (a quarter of
effective_cache_size: shared buffers and the OS page cache), 'range' when
they would not; clustered matches collect either way. Whichever it takes,
the job deletes exactly what a plain DELETE of the predicate would.

(Issue 11: the bound was a quarter of shared_buffers, so 20% of a 500k-row
scope with a match on every page walked ranges, at 2.3-3x a bulk DELETE
where collecting took 1.8x.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import (
    Conn,
    Target,
    cutoff_of,
    job,
    make_rows_target,
    scalar,
    submit_delete,
    who,
)

SPREAD = {"k": 2}  # seed(): k = g % 5, so 20% of the scope on every page
CLUSTERED = {"k": 7}


def build(conn: Conn) -> Target:
    """35,000 rows of scope 1 (and 1000 of scope 2), seven to a heap page
    (a 1000-character label): ~5100 pages, 42 MB, more than a quarter of the
    test cluster's 128 MB of shared_buffers, with k = g % 5 (20% of the
    scope on every page); then 400 rows of scope 1 with k = 7 inserted
    together (a few pages); and the btree_gin (scope, document) index that
    narrows both filters."""
    t = make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT CASE WHEN g % 36 = 0 THEN 2 ELSE 1 END, g % 7, repeat('x', 1000), "
                 "jsonb_build_object('k', g % 5), now() - interval '1 day' "
                 "FROM generate_series(1, 36000) g")
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT 1, g % 7, 'clustered', jsonb_build_object('k', 7), "
                 "now() - interval '1 hour' FROM generate_series(1, 400) g")
    conn.execute(f"CREATE INDEX ON {t.name} USING gin (table_id, data jsonb_path_ops)")
    conn.execute(f"VACUUM ANALYZE {t.name}")
    assert scalar(conn, "SELECT pg_relation_size('user_table_rows') "
                        "> pg_size_bytes(current_setting('shared_buffers')) / 4")
    return t


def first_call(conn: Conn, job_id: int) -> str:
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)",
                  (job_id, who(conn, job_id, "w"))) == "more"
    return str(job(conn, job_id)["checkpoint"]["strategy"])


def matching(conn: Conn, job_id: int, filter_: dict[str, Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                            "AND data @> %s::jsonb AND created_at <= %s",
                      (json.dumps(filter_), cutoff_of(conn, job_id))))


@pytest.mark.parametrize(("cache", "filter_", "expected"), [
    (None, SPREAD, "collect"),      # every page of the scope, cached (4GB)
    ("64MB", SPREAD, "range"),      # every page, more than a quarter of the cache
    (None, CLUSTERED, "collect"),   # a few pages: collected whatever the cache
    ("64MB", CLUSTERED, "collect"),
])
def test_spread_matches_collect_while_their_pages_stay_cached(
        conn: Conn, cache: str | None, filter_: dict[str, Any], expected: str) -> None:
    t = build(conn)
    if cache is not None:
        conn.execute(f"SET effective_cache_size = '{cache}'")
    # Pages of fewer rows than match, so that a collect job collects: one
    # whose matches fit one page deletes them in its first call instead
    # (tests/test_collect_first_call.py).
    job_id = submit_delete(conn, t, "1", filter_,
                           options={"page_size": 100 if filter_ == CLUSTERED else 1000})
    before = matching(conn, job_id, filter_)
    assert before > 0
    assert first_call(conn, job_id) == expected
    conn.execute("RESET effective_cache_size")
    # The rest of the job runs as a runner would; it deletes exactly the
    # rows the predicate matched, none of another scope's or filter's.
    others = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE NOT (table_id = 1 "
                          "AND data @> %s::jsonb)", (json.dumps(filter_),))
    worker = who(conn, job_id, "w")
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) in ("more", "retry"):
        pass
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded", finished
    assert finished["done"] == before
    assert finished["checkpoint"]["strategy"] == expected
    assert matching(conn, job_id, filter_) == 0
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE NOT (table_id = 1 "
                        "AND data @> %s::jsonb)", (json.dumps(filter_),)) == others

