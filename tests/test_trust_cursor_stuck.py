"""Every keyset walk checks that its cursor moves (pgjobs._cursor_stuck).

A walk finds each step's upper key as text (pgjobs._nth_key) and starts the
next step after it. A key whose text does not read back as itself prints a
bound that reads back as the cursor: the next step starts there again. A
page of a delete or backfill failed the job then, naming the key column and
type; the typo guard's walk (pgjobs._unknown_fields_from) had no such check:
its next chunk read no row, and the one after it, forever, inside a submit,
an export's claim or a delete's page (and a preview's count read the same
rows again until its deadline). Now the walks share the page's check: the
walk raises 22000 naming the key column and type, which fails a job for
good (a retry would walk the same keys) and refuses a submit.

Forced as tests/test_trust_settings.py forces it: extra_float_digits
unpinned from every routine and the session printing floats with no extra
digit, so that keys 1 + 1e-12 * g all print as '1'. 100,000 keys: the walk's
chunks grow to 100,000 keys, where the unchecked walk looped for good (a
statement_timeout only bounds the test when the check is missing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import job, scalar, unpin_everywhere

Conn = psycopg.Connection[Any]
MakeConn = Callable[..., Conn]

KEYS = 100_000
TABLE = """
CREATE TABLE f (k double precision NOT NULL, s int NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                d jsonb, PRIMARY KEY (s, k));
SELECT pgjobs.register_target('f', 'k', 's', 'created_at', 'd');
"""
ROWS = ("INSERT INTO f (k, s, d) SELECT 1 + 1e-12 * g, %s, '{\"status\": \"keep\"}' "
        "FROM generate_series(1, %s) g")
TYPO = {"stauts": {"$ne": "keep"}}


@pytest.fixture
def lossy(conn: Conn, make_conn: MakeConn) -> Conn:
    """The table, and a session whose keys all print as '1' (bounded in time:
    the missing check looped)."""
    conn.execute(TABLE)
    unpin_everywhere(conn, "extra_float_digits")
    session = make_conn()
    session.execute("SET extra_float_digits = -15")
    session.execute("SET statement_timeout = '60s'")
    assert scalar(session, "SELECT (1 + 1e-12)::float8::text") == "1"
    return session


def stuck(error: str) -> None:
    assert "does not advance" in error and "double precision" in error, error
    assert " k " in error, error


def test_a_submit_whose_walk_does_not_advance_is_refused(conn: Conn, lossy: Conn) -> None:
    conn.execute(ROWS, (1, KEYS))
    with pytest.raises(psycopg.errors.DataException) as exc:
        lossy.execute("SELECT pgjobs.submit_delete('f', '1', %s::jsonb)", (json.dumps(TYPO),))
    stuck(str(exc.value))
    assert exc.value.diag.message_hint and "allow_unknown_fields" in exc.value.diag.message_hint


@pytest.mark.parametrize("kind", ["delete", "backfill", "export"])
def test_a_deferred_walk_that_does_not_advance_fails_the_job(
        conn: Conn, lossy: Conn, kind: str) -> None:
    # Submitted on an empty scope: its rows arrive after, judged at the start.
    submits = {
        "delete": "SELECT pgjobs.submit_delete('f', '1', %s::jsonb)",
        "backfill": "SELECT pgjobs.submit_backfill('f', '1', %s::jsonb, '{\"x\": 1}')",
        "export": "SELECT pgjobs.submit_export('f', '1', %s::jsonb)",
    }
    job_id = scalar(lossy, submits[kind], (json.dumps(TYPO),))
    assert job(conn, job_id)["payload"]["unchecked_fields"] == ["stauts"]
    conn.execute(ROWS, (1, KEYS))
    if kind == "export":
        assert lossy.execute("SELECT id FROM pgjobs.claim_export(%s, 'w')",
                             (job_id,)).fetchall() == []
    else:
        lossy.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    stuck(row["error"])
    assert "22000" in row["error"] and row["done"] == 0
    assert scalar(conn, "SELECT count(*) FROM f") == KEYS


def test_a_preview_count_whose_cursor_does_not_advance_raises(
        conn: Conn, lossy: Conn) -> None:
    # The count walks key ranges when the planner expects more rows than it
    # may count in its time limit: made so (the table's size in pg_class:
    # about 9e8 rows expected), with a limit of 100 s (1e8 rows), so that the
    # walk never stops on its clock before the check.
    conn.execute(ROWS, (1, 20_000))
    conn.execute("UPDATE pg_class SET reltuples = 1e9, relpages = 1 WHERE oid = 'f'::regclass")
    with pytest.raises(psycopg.errors.DataException) as exc:
        lossy.execute("SELECT pgjobs._preview_count(r, '1', 'true', 'true', 100000) "
                      "FROM pgjobs.target_registry r WHERE r.target = 'f'::regclass")
    stuck(str(exc.value))
