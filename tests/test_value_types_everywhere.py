"""The value-type check holds at every entry point that judges a job's filter.

`{"k": {"$ne": "3"}}` on a field that holds numbers excludes no row that
has the field (tests/test_adversarial_filters.py). pgjobs._require_value_types
refused such a filter at the submit of a delete and a backfill on a scope
with rows only: an export's filter, a preview, and any job submitted on a
scope with no rows yet (the typo guard defers its judgment to the job's
start) went unchecked, and a delete submitted before its scope's rows
arrived (a restore, an import) took every one of them. The filter is now
judged in one place (pgjobs._judge_filter at a submit, then
pgjobs._unchecked_fields_problem at a deferred judgment: a delete's or
backfill's page, an export's claim; pgjobs.preview asks the same check).

Every entry point, immediate and deferred, refuses each refused filter
(22023 and a hint; a deferred job fails for good saying so, nothing read or
written) and takes each accepted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import job, make_rows_target, scalar, seed
from tests.test_adversarial_filters import ACCEPTED, REFUSED, article

Conn = psycopg.Connection[Any]

FULL = "1"
EMPTY = "99"
OLD = "2001-01-01T00:00:00Z"
KINDS = ["delete", "backfill", "export"]

# A few of each (the class itself is tests/test_adversarial_filters.py's).
REFUSED_HERE = [REFUSED[i] for i in (0, 1, 2, 4, 9, 11, 13, 15)]
ACCEPTED_HERE = [ACCEPTED[i] for i in (0, 1, 2, 3, 7, 9, 12)]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    seed(conn, target, 90)
    conn.execute("UPDATE user_table_rows SET data = data || '{\"tags\": [\"a\", \"b\"]}'")
    return conn


def arrive(conn: Conn) -> None:
    """Rows of the seed's shape come to the empty scope, dated before any
    job's cutoff (a restore)."""
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "SELECT %s::int, 1, 'keep', d.data, %s::timestamptz "
                 "FROM user_table_rows d WHERE d.table_id = 1 LIMIT 5", (EMPTY, OLD))


def submit(conn: Conn, kind: str, scope: str, filter_: dict[str, Any],
           options: dict[str, Any] | None = None) -> int:
    opts = json.dumps(options or {})
    flt = json.dumps(filter_)
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, flt, opts)))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, "
                                "%s::jsonb, '{\"label\": \"x\"}', %s::jsonb)",
                          (scope, flt, opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb, "
                            "%s::jsonb)", (scope, flt, opts)))


def preview(conn: Conn, kind: str, filter_: dict[str, Any],
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    result = scalar(conn, "SELECT pgjobs.preview('user_table_rows', %s, %s::jsonb, '{}', "
                          "%s::jsonb)", (FULL, json.dumps(filter_),
                                         json.dumps({"kind": kind, **(options or {})})))
    assert isinstance(result, dict)
    return result


IMMEDIATE: dict[str, Callable[[Conn, dict[str, Any], dict[str, Any] | None], object]] = {
    "submit_delete": lambda c, f, o: submit(c, "delete", FULL, f, o),
    "submit_backfill": lambda c, f, o: submit(c, "backfill", FULL, f, o),
    "submit_export": lambda c, f, o: submit(c, "export", FULL, f, o),
    "preview delete": lambda c, f, o: preview(c, "delete", f, o),
    "preview backfill": lambda c, f, o: preview(c, "backfill", f, o),
}


def start(conn: Conn, kind: str, job_id: int) -> None:
    """The job's start, where its deferred judgment is made: a delete's or
    backfill's page (run_job), an export's claim."""
    if kind == "export":
        conn.execute("SELECT pgjobs.claim_export(%s, 'w')", (job_id,)).fetchall()
    else:
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))


def untouched(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT label FROM user_table_rows WHERE table_id = %s::int", (EMPTY,))]


@pytest.mark.parametrize("entry", list(IMMEDIATE))
@pytest.mark.parametrize(("filter_", "path", "json_type"), REFUSED_HERE,
                         ids=[json.dumps(f) for f, _, _ in REFUSED_HERE])
def test_every_immediate_entry_refuses(rows: Conn, entry: str, filter_: dict[str, Any],
                                       path: str, json_type: str) -> None:
    before = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        IMMEDIATE[entry](rows, filter_, None)
    assert caught.value.sqlstate == "22023"
    message = caught.value.diag.message_primary or ""
    assert f'document field "{path}"' in message
    assert f"with {article(json_type)} {json_type} value" in message, message
    assert "allow_unknown_fields" in (caught.value.diag.message_hint or "")
    assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == before
    # The option lets it through, everywhere.
    assert IMMEDIATE[entry](rows, filter_, {"allow_unknown_fields": True})


@pytest.mark.parametrize("entry", list(IMMEDIATE))
@pytest.mark.parametrize("filter_", ACCEPTED_HERE, ids=[json.dumps(f) for f in ACCEPTED_HERE])
def test_every_immediate_entry_takes_a_value_the_rows_hold(rows: Conn, entry: str,
                                                           filter_: dict[str, Any]) -> None:
    assert IMMEDIATE[entry](rows, filter_, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("filter_", "path", "json_type"), REFUSED_HERE,
                         ids=[json.dumps(f) for f, _, _ in REFUSED_HERE])
def test_a_deferred_judgment_refuses(rows: Conn, kind: str, filter_: dict[str, Any],
                                     path: str, json_type: str) -> None:
    """Submitted on an empty scope (judgment deferred), started once rows
    came: the job fails for good at its start, saying what and why (SQLSTATE
    22023, the submit's hint), before it reads or writes a row."""
    job_id = submit(rows, kind, EMPTY, filter_)
    assert job(rows, job_id)["payload"].get("unchecked_fields"), "not deferred"
    arrive(rows)
    start(rows, kind, job_id)
    row = job(rows, job_id)
    assert row["status"] == "failed", row
    error = str(row["error"])
    assert "(SQLSTATE 22023)" in error, error
    assert f'document field "{path}"' in error
    assert f"with {article(json_type)} {json_type} value" in error, error
    assert "allow_unknown_fields" in error, error  # the hint
    assert row["done"] == 0, row
    assert untouched(rows) == ["keep"] * 5
    if kind == "export":
        assert row["result"] in (None, {}), row


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("filter_", ACCEPTED_HERE, ids=[json.dumps(f) for f in ACCEPTED_HERE])
def test_a_deferred_judgment_takes_a_value_the_rows_hold(rows: Conn, kind: str,
                                                         filter_: dict[str, Any]) -> None:
    job_id = submit(rows, kind, EMPTY, filter_)
    arrive(rows)
    start(rows, kind, job_id)
    row = job(rows, job_id)
    expected = "running" if kind == "export" else "succeeded"
    assert row["status"] == expected and row["error"] is None, row
    assert "unchecked_fields" not in row["payload"], row


@pytest.mark.parametrize("kind", KINDS)
def test_a_deferred_judgment_lets_the_option_through(rows: Conn, kind: str) -> None:
    """With allow_unknown_fields nothing is deferred, nor refused at the start."""
    job_id = submit(rows, kind, EMPTY, {"k": {"$ne": "3"}}, {"allow_unknown_fields": True})
    arrive(rows)
    start(rows, kind, job_id)
    assert job(rows, job_id)["status"] == ("running" if kind == "export" else "succeeded")


def test_a_scope_still_empty_at_the_start_stays_deferred(rows: Conn) -> None:
    """No row yet at the start either: nothing to judge the types by, and
    nothing to take; the job runs (its pages judge again while the scope is
    empty, as the typo guard does)."""
    job_id = submit(rows, "delete", EMPTY, {"k": {"$ne": "3"}})
    start(rows, "delete", job_id)
    row = job(rows, job_id)
    assert row["status"] == "succeeded" and row["done"] == 0, row
