"""What the dashboard's ?scope= filter costs, counted (never timed): with 50
registered targets a list request is one statement for the list (the scope
read as each target stores it, pgjobs.canonical_scope, in the same statement
as the jobs) whatever the number of targets, canonical_scope runs once per
target the role may read within it (not once per reference to its result),
and a live event (/events) sends no canonical_scope at all: the page's live
filter reads the keys the list gave it."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import db, queries
from tests.support import scalar, wait_for
from tests.support.roles import function_calls_as
from tests.support.ui import EventStream, request, serving

Conn = psycopg.Connection[Any]
TARGETS = 50


@pytest.fixture
def many_targets(conn: Conn) -> list[str]:
    names = [f"tenant_rows_{i:02d}" for i in range(TARGETS)]
    for name in names:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, scope int NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"CREATE INDEX ON {name} (scope, id)")
        conn.execute("SELECT pgjobs.register_target(%s, 'id', 'scope', 'created_at')", (name,))
    return names


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every statement the dashboard sends (pgjobs.db.rows_async, its one way
    to the database), counted by its text."""
    counted: Counter[str] = Counter()
    plain = db.rows_async

    async def counting(conn: Any, sql: str, params: Any = None) -> Any:
        counted[sql] += 1
        return await plain(conn, sql, params)

    monkeypatch.setattr(db, "rows_async", counting)
    yield counted


@pytest.mark.parametrize("path", ["/?scope=01", "/api/jobs?scope=01", "/?scope=%EF%BC%91",
                                  "/api/jobs?scope=%201&status=queued"])
def test_a_scope_filtered_list_is_one_statement_whatever_the_targets(
        conn: Conn, dsn: str, many_targets: list[str], sent: Counter[str], path: str) -> None:
    job = int(scalar(conn, "SELECT pgjobs.submit_delete(%s, '1')", (many_targets[7],)))
    with serving(dsn) as base:
        sent.clear()
        status, _, body = request(base, "GET", path)
        assert status == 200, body[:300]
        listing = {sql: n for sql, n in sent.items() if sql != queries.STATS}
        assert listing == {queries.UI_JOBS: 1}, listing
        if "%EF%BC%91" not in path:
            assert f"job-{job}" in body.decode() or f'"id": {job}' in body.decode()


def test_canonical_scope_runs_once_per_readable_target_in_the_list(
        conn: Conn, many_targets: list[str]) -> None:
    role = f"pgjobs_ui_counted_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    readable = many_targets[:20]
    for name in readable:
        conn.execute(f"GRANT SELECT ON {name} TO {role}")
    params = {"before": None, "kind": None, "status": None, "target": None, "scope": "01",
              "limit": 51}
    listing = psycopg.ClientCursor(conn).mogrify(queries.UI_JOBS, params)
    try:
        admin = str(scalar(conn, "SELECT current_user::text"))
        for who, targets in ((role, len(readable)), (admin, TARGETS)):
            calls = function_calls_as(conn, who, listing)
            assert calls.get("canonical_scope") == targets, (who, calls)
        unfiltered = psycopg.ClientCursor(conn).mogrify(queries.UI_JOBS,
                                                        params | {"scope": None})
        assert "canonical_scope" not in function_calls_as(conn, role, unfiltered)
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_live_event_sends_no_canonical_scope(conn: Conn, dsn: str,
                                               many_targets: list[str],
                                               sent: Counter[str]) -> None:
    with serving(dsn) as base:
        wait_for(lambda: request(base, "GET", "/healthz")[0] == 200, what="LISTEN")
        stream = EventStream(base)
        assert request(base, "GET", "/?scope=01")[0] == 200
        sent.clear()
        jobs = [int(scalar(conn, "SELECT pgjobs.submit_delete(%s, '01')", (name,)))
                for name in many_targets[:5]]
        seen = stream.events_until(lambda e: e["id"] == jobs[-1])
        stream.close()
        assert {e["id"] for e in seen} == set(jobs)
        assert set(sent) == {queries.UI_EVENT_JOBS}, sent
        assert sent[queries.UI_EVENT_JOBS] <= len(jobs)


def test_a_scope_filter_with_a_target_casts_the_scope_for_that_target_only(
        conn: Conn, many_targets: list[str]) -> None:
    """?target=X&scope=abc: the list reads the scope as X stores it, and its
    empty page names X alone as unfit (it cast the scope for every readable
    target, and named each one it did not fit)."""
    # as this session prints it (the dashboard's prints it schema-qualified)
    target = str(scalar(conn, "SELECT %s::regclass::text", (many_targets[3],)))
    params = {"before": None, "kind": None, "status": None, "target": target,
              "scope": "abc", "limit": 51}
    listing = psycopg.ClientCursor(conn).mogrify(queries.UI_JOBS, params)
    admin = str(scalar(conn, "SELECT current_user::text"))
    assert function_calls_as(conn, admin, listing).get("canonical_scope") == 1
    [row] = conn.execute(queries.UI_JOBS, params).fetchall()
    assert row[1] == [f"{target} (integer)"], row[1]  # scope_unfit
