"""The bound a worker walks ahead (pgjobs.export_chunk_bound, the exporter's
queries.EXPORT_CHUNK_BOUND on its control connection) is export_chunk_sql's
next_after for the same arguments, after the same checks, without the work
only the chunk's COPY needs: the mask of pending deletes, the columns'
expressions, the COPY's text. Counted in the statement's own transaction
(pg_stat_xact_user_functions), never timed.

Every per-chunk guarantee stays the chunk's: a delete submitted, a grant
revoked, the target made untrusted or altered after the bound was walked is
still seen by the chunk that is given that bound (p_next), and by the next
bound walked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs import db, queries
from tests.support import make_items, scalar, submit_export

Conn = psycopg.Connection[Any]
PID = os.getpid()
OWNER = f"pgjobs_bound_owner_{PID}"
READER = f"pgjobs_bound_reader_{PID}"
MASK = ("mask", "_mask_as", "_mask")
COPY_ONLY = ("_array_bounds_test", "_parquet_column")


def _counted(conn: Conn, sql: str, params: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """The statement's first value, and how often each pgjobs function ran in it
    (its own transaction, rolled back: nothing it does is kept). The session's
    counts not yet flushed to the shared statistics show too: the difference
    around the statement is its own."""
    counts = ("SELECT funcname::text, calls::int FROM pg_catalog.pg_stat_xact_user_functions "
              "WHERE schemaname = 'pgjobs'")
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL track_functions = 'all'")
        before = dict(conn.execute(counts).fetchall())
        row = conn.execute(sql, params).fetchone()
        after = dict(conn.execute(counts).fetchall())
    assert row is not None
    return row[0], {f: n - before.get(f, 0) for f, n in after.items() if n > before.get(f, 0)}


def _bound(conn: Conn, job_id: int, after: str | None, limit: int,
           until: str | None = None) -> str | None:
    value = scalar(conn, queries.EXPORT_CHUNK_BOUND,
                   {"id": job_id, "after": after, "limit": limit, "until": until})
    return None if value is None else str(value)


def _chunk(conn: Conn, job_id: int, after: str | None, limit: int, nxt: str | None = None,
           until: str | None = None) -> tuple[str, str | None]:
    row = conn.execute("SELECT copy_sql, next_after FROM pgjobs.export_chunk_sql(%s, %s, %s, "
                       "%s, %s)", (job_id, after, limit, until, nxt)).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_walk_ahead_runs_the_checks_but_not_the_mask_nor_the_copy(
        conn: Conn, fmt: str) -> None:
    make_items(conn, rows=120)
    job_id = submit_export(conn, "1", {}, {"format": fmt, "chunk_rows": 7})
    conn.execute("SELECT pgjobs.submit_delete('items', '1', '{}')")  # a mask to skip
    params = {"id": job_id, "after": None, "limit": 7, "until": None}
    bound, calls = _counted(conn, queries.EXPORT_CHUNK_BOUND, params)
    assert bound == _chunk(conn, job_id, None, 7)[1]
    assert not {f: n for f, n in calls.items() if f in MASK + COPY_ONLY}, calls
    # ... after the chunk's checks, each once: the target's trust, the
    # submitter's rights (the verdict), the columns, and the one walk.
    for check in ("_target_recent", "_require_same_columns", "_verdict_fresh", "_nth_key"):
        assert calls.get(check, 0) >= 1, (check, calls)
    assert calls["_nth_key"] == 1
    # The chunk given that bound walks nothing and evaluates its own mask, once.
    params["next"] = bound
    row, calls = _counted(conn, queries.EXPORT_CHUNK_SQL, params)
    assert "NOT coalesce" in row, row  # the pending delete's mask is in the COPY
    assert calls.get("_nth_key", 0) == 0 and calls.get("mask") == 1, calls


def test_every_bound_is_the_chunks_bound_parts_and_ends_included(conn: Conn) -> None:
    make_items(conn, rows=200)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 7})
    keys = [str(k) for (k,) in conn.execute(
        "SELECT id FROM items WHERE tenant = 1 ORDER BY id").fetchall()]
    assert len(keys) > 20
    until_choices = [None, keys[20], keys[-1]]
    for until in until_choices:
        for after in [None, *keys[:25]]:
            for limit in (1, 3, 7, 500):
                expected = _chunk(conn, job_id, after, limit, until=until)[1]
                assert _bound(conn, job_id, after, limit, until) == expected, (after, limit, until)


def test_bad_arguments_are_refused_as_the_chunk_refuses_them(conn: Conn) -> None:
    make_items(conn, rows=30)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 7})
    delete_id = scalar(conn, "SELECT pgjobs.submit_delete('items', '1', '{}')")
    cases: list[tuple[Any, Any, Any, Any, type[Exception]]] = [
        (job_id, "not a key", 7, None, errors.InvalidParameterValue),
        (job_id, None, 0, None, errors.InvalidParameterValue),
        (job_id, None, 7, "not a key", errors.InvalidParameterValue),
        (None, None, 7, None, errors.InvalidParameterValue),
        (delete_id, None, 7, None, errors.InvalidParameterValue),
        (10 ** 12, None, 7, None, errors.NoDataFound),
    ]
    for job, after, limit, until, error in cases:
        for sql in ("SELECT pgjobs.export_chunk_bound(%s, %s, %s, %s)",
                    "SELECT next_after FROM pgjobs.export_chunk_sql(%s, %s, %s, %s)"):
            with pytest.raises(error), conn.transaction():
                conn.execute(sql, (job, after, limit, until))


def test_a_delete_submitted_after_the_walk_is_masked_in_the_chunk(conn: Conn) -> None:
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 10})
    first = _chunk(conn, job_id, None, 10)[1]
    walked = _bound(conn, job_id, first, 10)
    assert walked is not None
    conn.execute("SELECT pgjobs.submit_delete('items', '1', '{}')")
    copy_sql, next_after = _chunk(conn, job_id, first, 10, walked)
    assert next_after == walked
    copied = bytearray()
    db.copy_out(conn, copy_sql, copied.extend)
    assert copied == b""


def test_a_column_changed_after_the_walk_fails_the_chunk_and_the_next_walk(conn: Conn) -> None:
    make_items(conn, rows=100)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 10, "columns": ["id", "tenant", "note"]})
    first = _chunk(conn, job_id, None, 10)[1]
    walked = _bound(conn, job_id, first, 10)
    conn.execute("ALTER TABLE items RENAME COLUMN note TO note_renamed")
    for call in (lambda: _chunk(conn, job_id, first, 10, walked),
                 lambda: _bound(conn, job_id, walked, 10)):
        with pytest.raises((errors.UndefinedColumn, errors.DatatypeMismatch)), \
                conn.transaction():
            call()


def _drop_roles(conn: Conn) -> None:
    for role in (OWNER, READER):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def roles(conn: Conn) -> Iterator[None]:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    yield
    conn.execute("RESET ROLE")
    _drop_roles(conn)


@pytest.mark.parametrize("change", [
    "REVOKE SELECT ON items FROM {reader}",
    "ALTER TABLE items OWNER TO {owner}",
    "GRANT TRIGGER ON items TO PUBLIC",
])
def test_a_grant_revoked_or_trust_lost_after_the_walk_is_refused(
        conn: Conn, make_conn: Any, roles: None, change: str) -> None:
    # The worker's two sessions, as the exporter has them: the bound is walked
    # on the control session, the chunk read on the data session (each keeps a
    # verdict of its own; a new one checks in full at its first statement).
    make_items(conn, rows=100)
    conn.execute(f"GRANT SELECT ON items TO {READER}")
    conn.execute(f"SET ROLE {READER}")
    job_id = scalar(conn, "SELECT pgjobs.submit_export('items', '1', '{}', %s)",
                    ('{"chunk_rows": 10}',))
    conn.execute("RESET ROLE")
    control = make_conn()
    first = _chunk(control, job_id, None, 10)[1]
    walked = _bound(control, job_id, first, 10)
    assert walked is not None
    conn.execute(change.format(reader=READER, owner=OWNER))
    with pytest.raises(errors.InsufficientPrivilege):
        _chunk(make_conn(), job_id, first, 10, walked)
    with pytest.raises(errors.InsufficientPrivilege):
        _bound(make_conn(), job_id, walked, 10)
