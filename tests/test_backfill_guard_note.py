"""A backfill's rows left out by the set guard, counted exactly however the
page and the submit find them.

A backfill page leaves out of its UPDATE the rows whose document holds no
object where the set merges fields in (pgjobs._set_guard), and counts them.
It counted them with a second read of the page's keys whenever the page set
fewer rows than its range holds keys, which is every page of a filtered
backfill (2.2x a plain UPDATE where 20% of the scope matched). The UPDATE
now notes such a row as it passes it (pgjobs.guard_missed) and the page
counts only then. These tests hold the count to the rows themselves on
every path a row can take past the UPDATE: a page that sets fewer than its
keys (a filter) and one that sets them all, the middle pages and the last,
rows outside the filter that hold no object (never counted), a table with
a BEFORE UPDATE trigger (the page locks its rows first), and a row turned
into no object by another transaction while the page waits for its lock
(the UPDATE re-reads it).

The submit reads the scope for such rows (pgjobs._set_blocked_rows): a
scope of at most pgjobs.field_check_rows rows is read whole in any order,
a larger one's first field_check_rows rows in key order. Both name the
first blocked row by key and count exactly what they read.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import Conn, build_target, job, run_pages, scalar

FILTER_COLUMN = {"n": {"$lt": 2}}  # keys with n = key % 10 below 2: 20% of each page


@pytest.fixture
def docs(conn: Conn) -> str:
    """Scope 1: keys 1..200, n = key % 10, every document an object; scope 2
    alike; inserted in descending key order (heap order is not key order)."""
    build_target(conn, "gdocs", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 n integer, created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 data jsonb""", scope="table_id", document="data")
    conn.execute("""INSERT INTO gdocs (id, table_id, n, data)
                    SELECT g + s * 1000, s, g % 10, jsonb_build_object('k', g)
                      FROM generate_series(200, 1, -1) g, generate_series(1, 2) s""")
    conn.execute("ANALYZE gdocs")
    return "gdocs"


def _submit(conn: Conn, filter_: dict[str, Any], set_: dict[str, Any],
            options: dict[str, Any] | None = None, scope: str = "1") -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('gdocs', %s, %s::jsonb, %s::jsonb, "
                      "%s::jsonb)", (scope, json.dumps(filter_), json.dumps(set_),
                                     json.dumps(options or {}))))


def _matching(key: int) -> bool:
    return (key - 1000) % 10 < 2


def _turn(conn: Conn, keys: list[int], doc: str = '"text"') -> None:
    conn.execute("UPDATE gdocs SET data = %s::jsonb WHERE id = ANY (%s)", (doc, keys))


def _data(conn: Conn) -> dict[int, Any]:
    return dict(conn.execute("SELECT id, data FROM gdocs").fetchall())


@pytest.mark.parametrize("page_size", [7, 50, 1000])
@pytest.mark.parametrize("trigger", [False, True], ids=["plain", "before-update-trigger"])
@pytest.mark.parametrize("filtered", [True, False], ids=["filtered", "whole-scope"])
def test_rows_left_out_are_counted_on_every_page_and_only_those(
        conn: Conn, docs: str, page_size: int, trigger: bool, filtered: bool) -> None:
    if trigger:
        conn.execute("""CREATE FUNCTION gdocs_touch() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN NEW.n := NEW.n; RETURN NEW; END $$;
                        CREATE TRIGGER touch BEFORE UPDATE ON gdocs
                            FOR EACH ROW EXECUTE FUNCTION gdocs_touch()""")
    filter_ = FILTER_COLUMN if filtered else {}
    # Rows of the filter and rows outside it, on the first, middle and last
    # pages, turn into no object after the submit; keys past the filter
    # must never count.
    job_id = _submit(conn, filter_, {"flag": 1}, {"page_size": page_size})
    turned = [1001, 1010, 1011, 1055, 1060, 1061, 1102, 1150, 1191, 1199, 1200]
    _turn(conn, turned)
    _turn(conn, [1071], "[1, 2]")
    turned.append(1071)
    before = _data(conn)
    states = run_pages(conn, job_id)
    assert states[-1] == "done"
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    selected = [k for k in range(1001, 1201) if not filtered or _matching(k)]
    left_out = sorted(k for k in turned if k in selected)
    assert done["result"]["updated"] == len(selected) - len(left_out)
    assert done["result"]["skipped"] == len(left_out)
    first = done["result"]["skipped_first"]
    assert first["key"] == str(left_out[0]) and first["path"] == ""
    assert first["type"] == "string"
    after = _data(conn)
    for key, doc in before.items():
        if key in selected and key not in left_out:
            assert after[key] == {**doc, "flag": 1}, key
        else:
            assert after[key] == doc, key


@pytest.mark.parametrize("filtered", [True, False], ids=["filtered", "whole-scope"])
def test_a_job_whose_rows_all_hold_objects_reports_no_skip(
        conn: Conn, docs: str, filtered: bool) -> None:
    # Rows outside the filter hold no object: the filtered job neither sets
    # nor counts them.
    _turn(conn, [k for k in range(1001, 1201) if not _matching(k)][::3])
    if not filtered:
        conn.execute("UPDATE gdocs SET data = '{}' WHERE table_id = 1")
    job_id = _submit(conn, FILTER_COLUMN if filtered else {}, {"flag": 1}, {"page_size": 9})
    run_pages(conn, job_id)
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert "skipped" not in done["result"]
    assert "skipped" not in (done["checkpoint"] or {})
    assert done["result"]["updated"] == (40 if filtered else 200)


def test_a_row_turned_while_the_page_waits_for_it_is_counted(
        conn: Conn, docs: str, make_conn: Any) -> None:
    """The page's UPDATE reads row 1050 as an object, waits for the
    transaction that holds it, then re-reads the row that transaction
    committed: no object. The UPDATE leaves it out and the page counts it."""
    job_id = _submit(conn, {"n": 0}, {"flag": 1}, {"page_size": 1000})
    holder: psycopg.Connection[Any] = make_conn(autocommit=False)
    holder.execute("UPDATE gdocs SET data = '\"text\"' WHERE id = 1050")
    runner: psycopg.Connection[Any] = make_conn(autocommit=False)
    identity = scalar(runner, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    runner.commit()
    pid = scalar(runner, "SELECT pg_backend_pid()")
    outcome: list[Any] = []

    def page() -> None:
        try:
            while not outcome or outcome[-1] in ("more", "retry"):
                outcome.append(scalar(runner, "SELECT pgjobs._run_page(%s, %s)",
                                      (job_id, identity)))
                runner.commit()
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=page)
    thread.start()
    deadline = time.monotonic() + 30
    while scalar(conn, "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' "
                       "FROM pg_stat_activity WHERE pid = %s", (pid,)) is not True:
        assert time.monotonic() < deadline, "the page never waited for row 1050"
        assert thread.is_alive(), outcome
        time.sleep(0.02)
    holder.commit()
    thread.join(30)
    assert outcome and outcome[-1] == "done", outcome
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["skipped"] == 1
    assert done["result"]["skipped_first"]["key"] == "1050"
    assert done["result"]["updated"] == 19
    assert scalar(conn, "SELECT data FROM gdocs WHERE id = 1050") == "text"


# --- the submit's read -----------------------------------------------------------------


def _blocked(conn: Conn, filter_: dict[str, Any], set_: dict[str, Any]) -> dict[str, Any]:
    predicate = scalar(conn, "SELECT pgjobs.preview('gdocs', '1', %s::jsonb, '{}', "
                             "%s::jsonb) ->> 'predicate'",
                       (json.dumps(filter_), json.dumps({"kind": "backfill", "set": set_})))
    row = conn.execute("SELECT b.* FROM pgjobs._set_blocked_rows((SELECT r FROM "
                       "pgjobs.target_registry r WHERE r.target = 'gdocs'::regclass), '1', "
                       "%s, %s::jsonb) b", (predicate, json.dumps(set_))).fetchone()
    assert row is not None
    return dict(zip(["rows", "key", "path", "json_type", "rows_read"], row, strict=True))


@pytest.mark.parametrize("bound", [None, "1000", "5"], ids=["default", "1000", "below-minimum"])
def test_the_submit_counts_and_names_what_it_reads(conn: Conn, docs: str,
                                                   bound: str | None) -> None:
    """Scope 1's keys 1001..1200 lie on the heap in descending order; any
    bound (at least 1,000 rows) reads the scope whole. Blocked for a flat
    set: 1030, 1120 and 1180 in the filter, 1003 outside it; 1041 holds an
    object whose k is a number, blocked only for a set through k."""
    if bound is not None:
        conn.execute("SELECT set_config('pgjobs.field_check_rows', %s, false)", (bound,))
    _turn(conn, [1003, 1030, 1120, 1180])
    conn.execute("""UPDATE gdocs SET data = '{"k": 5}' WHERE id = 1041""")
    got = _blocked(conn, FILTER_COLUMN, {"flag": 1})
    assert got == {"rows": 3, "key": "1030", "path": "", "json_type": "string",
                   "rows_read": 200}, got
    # A set through k: every row of the scope is blocked, most at k (a
    # number), the turned ones at the document itself.
    nested = _blocked(conn, {}, {"k.x": 1})
    assert nested == {"rows": 200, "key": "1001", "path": "k", "json_type": "number",
                      "rows_read": 200}, nested
    turned_first = _blocked(conn, {"id": {"$gte": 1100}}, {"k.x": 1})
    assert turned_first["rows"] == 101 and turned_first["key"] == "1100"
    assert _blocked(conn, {"id": 1120}, {"k.x": 1})["path"] == ""


def test_a_bound_below_the_scope_reads_its_first_keys_only(conn: Conn, docs: str) -> None:
    """Scope 1 holds 1,500 rows (keys 1001..2500, the newest 1,300 inserted
    first); a bound of 1,000 reads keys 1001..2000: a blocked row past it is
    not seen, one before it is, named by key."""
    conn.execute("DELETE FROM gdocs WHERE table_id = 2")
    conn.execute("""INSERT INTO gdocs (id, table_id, n, data)
                    SELECT g, 1, g % 10, '{}' FROM generate_series(2500, 1201, -1) g""")
    conn.execute("SELECT set_config('pgjobs.field_check_rows', '1000', false)")
    _turn(conn, [2400])
    got = _blocked(conn, {}, {"flag": 1})
    assert (got["rows"], got["key"], got["rows_read"]) == (0, None, 1000)
    _turn(conn, [1990, 1500])
    got = _blocked(conn, {}, {"flag": 1})
    assert (got["rows"], got["key"], got["rows_read"]) == (2, "1500", 1000)
    with pytest.raises(errors.InvalidParameterValue, match="key 1500"):
        _submit(conn, {}, {"flag": 1})
    conn.execute("RESET pgjobs.field_check_rows")
    got = _blocked(conn, {}, {"flag": 1})
    assert (got["rows"], got["key"], got["rows_read"]) == (3, "1500", 1500)


def test_the_submit_refuses_naming_the_least_key_of_a_scope_read_whole(
        conn: Conn, docs: str) -> None:
    _turn(conn, [1190, 1100, 1020, 1003])
    with pytest.raises(errors.InvalidParameterValue) as info:
        _submit(conn, FILTER_COLUMN, {"flag": 1})
    message = str(info.value)
    assert "which 3 of the rows it selects in scope 1" in message, message
    assert "the first, key 1020, holds a string" in message, message
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
