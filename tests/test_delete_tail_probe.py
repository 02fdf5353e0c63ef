"""A filtered range delete's page starts at the first key past its cursor
that matches the predicate (pgjobs._run_page): stretches of the scope with
no match, and the tail past the last match, cost no pages of their own.
The job deletes exactly the rows a plain DELETE of the predicate would,
whatever the layout of the matches, and each page starts at a match.

(Issue 11: a 5,000-row filtered delete of the first tenth of a 50,000-row
scope walked the other 45,000 keys a page at a time, each page reading
every row of its range.)"""

from __future__ import annotations

import pytest

from tests.support import (
    Conn,
    filtered_range_pages,
    job,
    make_rows_target,
    scalar,
    submit_delete,
    who,
)

SCOPE_ROWS = 3000
PAGE = 50

# name -> the scope keys (1-based positions in the scope) whose row matches
LAYOUTS = {
    "none": set(),
    "one in the middle": {1500},
    "first tenth": set(range(1, 301)),
    "middle tenth": set(range(1500, 1800)),
    "last tenth": set(range(2701, 3001)),
    "two clusters": set(range(200, 260)) | set(range(2500, 2530)),
    "every 7th": set(range(7, 3001, 7)),
    "first and last": {1, 3000},
}


def run_to_end(conn: Conn, job_id: int) -> dict[str, object]:
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    worker = who(conn, job_id, "w")
    calls = 0
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) in ("more", "retry"):
        calls += 1
        assert calls < 10_000
    return job(conn, job_id)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("interleaved", [False, True], ids=["contiguous", "interleaved"])
def test_a_filtered_range_delete_skips_keys_without_a_match(
        conn: Conn, layout: str, interleaved: bool) -> None:
    t = make_rows_target(conn)
    matches = LAYOUTS[layout]
    # Scope 1's rows are the keys 1..SCOPE_ROWS of the scope; interleaved,
    # each sits between two rows of scope 2 in the heap and in key order.
    step = 2 if interleaved else 1
    conn.execute("INSERT INTO user_table_rows (id, table_id, n, data, created_at) "
                 "SELECT g * %s, 1, g, jsonb_build_object('m', g = ANY (%s)), "
                 "now() - interval '1 day' FROM generate_series(1, %s) g",
                 (step, sorted(matches), SCOPE_ROWS))
    conn.execute("INSERT INTO user_table_rows (id, table_id, n, data, created_at) "
                 "SELECT g * 2 + 1, 2, g, '{\"m\": true}', now() - interval '1 day' "
                 "FROM generate_series(1, %s) g", (SCOPE_ROWS,))
    conn.execute(f"VACUUM ANALYZE {t.name}")
    expected = {int(r[0]) for r in conn.execute(
        "SELECT id FROM user_table_rows WHERE table_id = 1 AND data @> '{\"m\": true}'")}
    others = {int(r[0]) for r in conn.execute(
        "SELECT id FROM user_table_rows WHERE NOT (table_id = 1 AND data @> '{\"m\": true}')")}
    job_id = submit_delete(conn, t, "1", {"m": True},
                           options={"strategy": "range", "page_size": PAGE})
    finished = run_to_end(conn, job_id)
    assert finished["status"] == "succeeded", finished
    assert finished["checkpoint"]["strategy"] == "range"
    assert finished["done"] == len(expected)
    assert finished["result"]["deleted"] == len(expected)
    left = {int(r[0]) for r in conn.execute("SELECT id FROM user_table_rows")}
    assert left == others  # exactly the matching rows went, nothing else
    # Each page starts at the next match and holds PAGE keys; a look that
    # finds no match ends the job. (Without the skip, a job walked every key
    # of the scope, SCOPE_ROWS / PAGE + 1 pages (61), whatever matched.)
    keys = [g * step for g in range(1, SCOPE_ROWS + 1)]
    pages = filtered_range_pages(keys, expected, PAGE)
    assert pages < SCOPE_ROWS // PAGE + 1
    assert finished["result"]["pages"] == pages


def test_a_row_that_comes_to_match_ahead_of_the_cursor_is_deleted(conn: Conn) -> None:
    """The look for the next match is made at each page, not once: a row
    updated into the filter past the cursor while the job runs is deleted
    as the walk reaches it."""
    t = make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (id, table_id, n, data, created_at) "
                 "SELECT g, 1, g, jsonb_build_object('m', g <= 100), now() - interval '1 day' "
                 "FROM generate_series(1, %s) g", (SCOPE_ROWS,))
    conn.execute(f"VACUUM ANALYZE {t.name}")
    job_id = submit_delete(conn, t, "1", {"m": True},
                           options={"strategy": "range", "page_size": PAGE})
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    worker = who(conn, job_id, "w")
    for _ in range(2):  # the first call, then the first page (keys 1..50)
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "more"
    conn.execute("UPDATE user_table_rows SET data = '{\"m\": true}' WHERE id IN (2000, 2999)")
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) in ("more", "retry"):
        pass
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded", finished
    assert finished["done"] == 102
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE data @> '{\"m\": true}'") == 0
