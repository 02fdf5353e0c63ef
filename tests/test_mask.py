"""The read path: while a delete is queued or running, pgjobs.visible,
visible_count and a query built with pgjobs.mask() return what they will
return after it, checked at every page boundary against a Python
reference; cancel and completion lift the mask."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import (
    Conn,
    Row,
    Target,
    cutoff_of,
    insert_row,
    job,
    job_rows,
    make_rows_target,
    run_pages,
    scalar,
    seed,
    snapshot,
    submit_backfill,
    submit_delete,
    visible_keys,
    who,
)


def masked_keys(conn: Conn, target: Target, scope: str, extra: str = "true") -> set[str]:
    """A client's own query with the mask: SELECT ... WHERE scope = $1 AND <mask>."""
    mask = scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (target.name, scope))
    return {r[0] for r in conn.execute(
        f"SELECT id::text FROM {target.name} WHERE table_id = %s AND ({extra}) AND ({mask})",
        (scope,))}


def visible_count(conn: Conn, target: Target, scope: str,
                  filter_: dict[str, Any] | None = None) -> int:
    return int(scalar(conn, "SELECT pgjobs.visible_count(%s::regclass, %s, %s::jsonb)",
                      (target.name, scope, json.dumps(filter_ or {}))))


CASES = [
    ("bigint", "int", True, {"k": {"$in": [1, 3]}}, lambda r: r["data"]["k"] in (1, 3)),
    ("text", "text", False, {"n": {"$ne": 4}}, lambda r: r["n"] != 4),
    ("uuid", "int", True, {}, lambda r: True),
]


@pytest.mark.parametrize(("key_type", "scope_type", "document", "filter_", "match"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'doc' if c[2] else 'nodoc'}" for c in CASES])
def test_reads_at_every_page_boundary_equal_the_final_state(
        conn: Conn, key_type: str, scope_type: str, document: bool, filter_: dict[str, Any],
        match: Callable[[Row], bool]) -> None:
    t = make_rows_target(conn, key_type=key_type, scope_type=scope_type, document=document)
    seed(conn, t, 600)
    scope, other = t.scope(1), t.scope(2)
    before = snapshot(conn, t)
    candidates = sorted(k for k, r in before.items() if r["table_id"] == scope and match(r))
    exclude = candidates[5:8]
    job_id = submit_delete(conn, t, scope, filter_, exclude, {"page_size": 17})
    doomed = job_rows(before, scope, cutoff_of(conn, job_id), match, frozenset(exclude))
    final = {k for k, r in before.items() if r["table_id"] == scope} - doomed
    # A second read filter, over a column every target has.
    small: dict[str, Any] = {"n": {"$lt": 3}}
    final_small = {k for k in final if before[k]["n"] < 3}
    other_count = sum(1 for r in before.values() if r["table_id"] == other)
    assert doomed and final

    boundaries = 0

    def check(state: str) -> None:
        nonlocal boundaries, final, final_small
        boundaries += 1
        if boundaries == 3:  # a row inserted mid-job matches the filter and stays visible
            late = insert_row(conn, t, scope, n=1, data={"k": 1}, key="late")
            final = final | {late}
            final_small = final_small | {late}
        keys = visible_keys(conn, t, scope, limit=45)
        assert len(keys) == len(set(keys)), "a key was returned twice"
        assert set(keys) == final, f"after page {boundaries} ({state})"
        if key_type == "bigint":
            assert keys == sorted(keys, key=int)
        assert visible_count(conn, t, scope) == len(final)
        assert set(visible_keys(conn, t, scope, small, limit=13)) == final_small
        assert visible_count(conn, t, scope, small) == len(final_small)
        assert masked_keys(conn, t, scope) == final
        assert masked_keys(conn, t, scope, "n < 3") == final_small
        assert visible_count(conn, t, other) == other_count

    check("queued")
    states = run_pages(conn, job_id, each=check)
    assert states[-1] == "done"
    assert boundaries > 10
    assert set(snapshot(conn, t)) == (set(before) - doomed) | (final - set(before))
    assert scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (t.name, scope)) == "true"


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t)
    return t


def test_mask_is_true_when_nothing_is_pending(conn: Conn, target: Target) -> None:
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"
    submit_backfill(conn, target, "1", {}, {"n": 0})  # backfills hide nothing
    submit_delete(conn, target, "2")  # another scope
    assert scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')") == "true"
    assert visible_count(conn, target, "1") == scalar(
        conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")


def test_mask_combines_every_pending_delete_of_the_scope(conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    first = submit_delete(conn, target, "1", {"k": 1})
    second = submit_delete(conn, target, "1", {"n": {"$gte": 5}}, options={
        "run_at": "2999-01-01T00:00:00Z"})  # queued far ahead: still masks
    doomed = (job_rows(before, "1", cutoff_of(conn, first), lambda r: r["data"]["k"] == 1)
              | job_rows(before, "1", cutoff_of(conn, second), lambda r: r["n"] >= 5))
    final = {k for k, r in before.items() if r["table_id"] == "1"} - doomed
    assert set(visible_keys(conn, target, "1", limit=100)) == final
    assert visible_count(conn, target, "1") == len(final)
    assert masked_keys(conn, target, "1") == final

    # Canceling the queued one lifts its part of the mask at once.
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (second,))
    final_first = {k for k, r in before.items() if r["table_id"] == "1"} - job_rows(
        before, "1", cutoff_of(conn, first), lambda r: r["data"]["k"] == 1)
    assert visible_count(conn, target, "1") == len(final_first)
    assert masked_keys(conn, target, "1") == final_first


def test_mask_hides_nothing_created_after_the_cutoff(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "1")
    late = insert_row(conn, target, "1", data={"k": 1})
    cutoff = cutoff_of(conn, job_id)
    expected = {k for k, r in snapshot(conn, target).items()
                if r["table_id"] == "1" and r["created_at"] > cutoff}
    assert late in expected and len(expected) > 1
    assert set(visible_keys(conn, target, "1")) == expected
    assert visible_count(conn, target, "1") == len(expected)


def test_visible_rows_are_whole_rows_in_key_order(conn: Conn, target: Target) -> None:
    rows = [r[0] for r in conn.execute(
        "SELECT v FROM pgjobs.visible('user_table_rows', '3', '{\"k\": 2}', NULL, 5) v")]
    expected = conn.execute(
        "SELECT to_jsonb(t) FROM user_table_rows t WHERE table_id = 3 AND data->'k' = '2' "
        "ORDER BY id LIMIT 5").fetchall()
    assert rows == [e[0] for e in expected]
    assert set(rows[0]) == {"id", "table_id", "n", "label", "data", "created_at"}
    after = conn.execute("SELECT v ->> 'id' FROM pgjobs.visible('user_table_rows', '3', "
                         "'{\"k\": 2}', %s, 1) v", (str(rows[2]["id"]),)).fetchall()
    assert after == [(str(rows[3]["id"]),)]


def test_failed_delete_releases_the_remaining_rows(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "1", options={"page_size": 50, "max_attempts": 1})
    total_before = visible_count(conn, target, "1")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    conn.execute("SELECT pgjobs._run_page(%s, %s)", (job_id, who(conn, job_id, 'w')))
    conn.execute("SELECT pgjobs._run_page(%s, %s)", (job_id, who(conn, job_id, 'w')))
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'operator gave up', false)",
                  (job_id, who(conn, job_id, 'w')))
    assert job(conn, job_id)["status"] == "failed"
    remaining = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")
    assert visible_count(conn, target, "1") == remaining > total_before
