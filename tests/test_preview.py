"""pgjobs.preview: what a delete (or backfill) submitted now would do, writing
nothing. Checked against the job itself: the predicate is the one the submit
stores, matches is what the job then deletes, the sample its first 10 keys;
and against the trust rules of the submits (privileges, allowed_scopes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, run_pages, scalar, seed

Conn = psycopg.Connection[Any]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    seed(conn, target, 3600)  # 1,200 rows a scope; every 23rd after any cutoff
    return conn


def preview(conn: Conn, scope: str = "1", filter_: dict[str, Any] | None = None,
            exclude: list[str] | None = None, options: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    value: dict[str, Any] = scalar(
        conn, "SELECT pgjobs.preview('user_table_rows', %s, %s::jsonb, %s::text[], %s::jsonb)",
        (scope, json.dumps(filter_ or {}), exclude or [], json.dumps(options or {})))
    return value


def state(conn: Conn) -> Any:
    return (scalar(conn, "SELECT count(*) FROM pgjobs.jobs"),
            scalar(conn, "SELECT md5(string_agg(t::text, ',' ORDER BY id))"
                         " FROM user_table_rows t"))


@pytest.mark.parametrize("filter_, exclude", [
    ({}, []),
    ({"k": 1}, []),
    ({"nest.a": {"$gt": 0}, "n": {"$lt": 5}}, ["3", "6", "9"]),
    ({"$or": [{"k": 2}, {"name": {"$contains": "11"}}]}, []),
    ({"k": 99}, []),
])
def test_preview_is_what_the_delete_does(rows: Conn, filter_: dict[str, Any],
                                         exclude: list[str]) -> None:
    before = state(rows)
    seen = preview(rows, "1", filter_, exclude)
    assert state(rows) == before  # wrote nothing
    assert seen["exact"] is True and seen["unknown_fields"] == []
    assert seen["scope_rows"] == scalar(rows, "SELECT count(*) FROM user_table_rows"
                                              " WHERE table_id = 1")
    keys = [str(k) for k, in rows.execute(
        f"SELECT id FROM user_table_rows WHERE {seen['predicate']} ORDER BY id").fetchall()]
    assert seen["matches"] == len(keys)
    assert seen["sample"] == keys[:10]
    job_id = scalar(rows, "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb,"
                          " %s::text[])", (json.dumps(filter_), exclude))
    run_pages(rows, job_id)
    assert scalar(rows, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)) \
        == seen["matches"]
    # Nothing of the sample is left.
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE id::text = ANY (%s)",
                  (seen["sample"],)) == 0


def horizon_of(predicate: str) -> str:
    """The horizon literal of a predicate's cutoff (pgjobs._cutoff_clause: the
    start of the oldest other transaction of the database)."""
    found = re.search(r"created_at OPERATOR\(pg_catalog\.<\) ('[^']*')", predicate)
    assert found, predicate
    return found.group(1)


def test_the_predicate_is_the_one_a_submit_stores(rows: Conn) -> None:
    """"Submitted now" is one snapshot: the predicate's cutoff names the
    snapshot's next transaction ID and its running ones, and transaction IDs
    are the cluster's, so in READ COMMITTED any commit anywhere between the
    two statements (a pg_cron tick of another database) moves them. A
    REPEATABLE READ transaction gives the preview and the submit the same
    snapshot; it refuses with 40001 (and the hint to submit again) when a
    transaction of that snapshot ended between them, and then the pair is
    taken again.

    The cutoff's horizon is read at each statement from pg_stat_activity (not
    a snapshot): when a transaction of another session of this database that
    began before this one (autovacuum's ANALYZE, found with
    PGJOBS_TEST_NOISE=analyze: 19 of 30 pairs) ends between the two, the
    submit's horizon is later. The pair is then taken again too; the
    predicates of a pair with one horizon are compared whole."""
    for _attempt in range(200):
        try:
            with rows.transaction():
                rows.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # (Key 6 is a row of scope 1: a key of no row is refused.)
                seen = preview(rows, "01", {"k": {"$in": [1, 2]}}, ["6"])
                job_id = scalar(rows, """SELECT pgjobs.submit_delete('user_table_rows', '01',
                                         '{"k": {"$in": [1, 2]}}', '{6}')""")
                stored = scalar(rows, "SELECT predicate FROM pgjobs.jobs WHERE id = %s",
                                (job_id,))
        except psycopg.errors.SerializationFailure:
            continue
        if horizon_of(seen["predicate"]) == horizon_of(stored):
            break
    else:
        pytest.fail("200 REPEATABLE READ pairs in a row refused with 40001 or saw the "
                    "horizon move")
    assert seen["predicate"] == stored
    assert seen["scope"] == "1" and seen["kind"] == "delete"


def test_preview_runs_in_a_read_only_transaction(rows: Conn) -> None:
    with rows.transaction():
        rows.execute("SET TRANSACTION READ ONLY")
        assert preview(rows, "2", {"k": 3})["matches"] > 0


def test_rows_a_pending_delete_removes_are_not_counted(rows: Conn) -> None:
    everything = preview(rows, "1")["matches"]
    scalar(rows, """SELECT pgjobs.submit_delete('user_table_rows', '1', '{"k": 0}')""")
    left = preview(rows, "1")
    k0 = scalar(rows, """SELECT count(*) FROM user_table_rows WHERE table_id = 1
                         AND (data ->> 'k')::int = 0 AND created_at <= now()""")
    assert left["matches"] == everything - k0
    assert left["scope_rows"] == preview(rows, "1")["scope_rows"]


def test_past_the_time_limit_the_count_is_an_estimate(rows: Conn) -> None:
    exact = preview(rows, "1", {"k": 1})
    # time_limit_ms 0: the first range (1,000 rows) is counted, the rest
    # estimated from a sample of the table's blocks: all of them on a table
    # this small, so the estimate is the count.
    quick = preview(rows, "1", {"k": 1}, options={"time_limit_ms": 0})
    assert quick["exact"] is False and quick["counted_rows"] == 1000
    assert quick["matches"] == exact["matches"]
    assert quick["scope_rows"] == exact["scope_rows"]
    assert quick["sample"] == exact["sample"]
    small = preview(rows, "1", {"k": 1}, options={"time_limit_ms": 0, "kind": "backfill"})
    assert small["kind"] == "backfill" and small["exact"] is False


def test_unknown_fields_are_listed_not_refused(rows: Conn) -> None:
    seen = preview(rows, "1", {"stauts": {"$ne": "keep"}, "nest.a": 1,
                                "$or": [{"nest.zz": 1}, {"n": 1}]})
    assert seen["unknown_fields"] == ["stauts", "nest.zz"] or \
        sorted(seen["unknown_fields"]) == ["nest.zz", "stauts"]
    assert seen["unknown_fields_exact"] is True
    assert preview(rows, "77", {"stauts": 1})["unknown_fields"] == []  # empty scope
    assert preview(rows, "77")["scope_rows"] == 0


@pytest.mark.parametrize("options, exclude, match", [
    ({"nope": 1}, [], "unknown option"),
    ({"kind": "export"}, [], '"kind"'),
    ({"time_limit_ms": -1}, [], "time_limit_ms"),
    ({"time_limit_ms": "1s"}, [], "time_limit_ms"),
    ({"allow_unknown_fields": "yes"}, [], "allow_unknown_fields"),
    ({"kind": "backfill"}, ["1"], "exclude"),
    ({}, ["not-a-key"], "exclude"),
])
def test_bad_options(rows: Conn, options: dict[str, Any], exclude: list[str], match: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=match):
        preview(rows, "1", {}, exclude, options)


@pytest.mark.parametrize("scope, filter_", [("x", {}), ("1", {"k": {"$bad": 1}}),
                                             ("1", {"$or": 1})])
def test_bad_scope_or_filter(rows: Conn, scope: str, filter_: dict[str, Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        preview(rows, scope, filter_)


@pytest.fixture
def client(rows: Conn) -> Iterator[str]:
    role = "pgjobs_preview_client"
    rows.execute(f"DROP ROLE IF EXISTS {role}")
    rows.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    yield role
    rows.execute("RESET ROLE")
    rows.execute(f"DROP OWNED BY {role}")
    rows.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("grants, kind, allowed", [
    ("SELECT, DELETE", "delete", True),
    ("SELECT, UPDATE", "backfill", True),
    ("DELETE", "delete", False),       # the preview reads rows: SELECT too
    ("SELECT", "delete", False),       # a delete needs DELETE
    ("SELECT, DELETE", "backfill", False),
    ("SELECT, UPDATE", "delete", False),
])
def test_privileges_are_the_jobs(rows: Conn, client: str, grants: str, kind: str,
                                 allowed: bool) -> None:
    rows.execute(f"GRANT {grants} ON user_table_rows TO {client}")
    rows.execute(f"SET ROLE {client}")
    if allowed:
        assert preview(rows, "1", {"k": 1}, options={"kind": kind})["matches"] > 0
    else:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            preview(rows, "1", {"k": 1}, options={"kind": kind})


def test_allowed_scopes_apply(rows: Conn, client: str) -> None:
    rows.execute(f"GRANT SELECT, DELETE ON user_table_rows TO {client}")
    rows.execute(f"SET ROLE {client}")
    rows.execute("SET pgjobs.allowed_scopes = '2'")
    assert preview(rows, "02")["scope_rows"] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="allowed_scopes"):
        preview(rows, "1", {"stauts": 1})


def test_only_the_entry_point_may_call_the_body(rows: Conn, client: str) -> None:
    rows.execute(f"GRANT SELECT, DELETE ON user_table_rows TO {client}")
    rows.execute(f"SET ROLE {client}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgjobs.preview"):
        rows.execute("SELECT pgjobs._preview_as('postgres', 'user_table_rows', '1', '{}', '{}',"
                     " '{}')")
