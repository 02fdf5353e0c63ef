"""A client call after an earlier one failed in the same transaction (h79).

Found by review: BEGIN; SAVEPOINT a; a call of pgjobs.visible that raises (a
bad scope, a bad cursor); ROLLBACK TO a; then a good call of
pgjobs.visible is refused, 42501 "pgjobs._visible_as may only be called
by pgjobs.visible", and so is every later call of it in that transaction.
The same after the caller's own PL/pgSQL EXCEPTION block caught the error.
Drivers and ORMs wrap work in savepoints (psycopg's nested
conn.transaction(), Django's atomic, SQLAlchemy's begin_nested), so one
failed read refused every later read of the transaction.

The cause is PL/pgSQL's, not a setting left behind: an expression that
raised is marked busy (expr_simple_in_use) for the rest of the top-level
transaction (a savepoint or an exception block keeps the transaction's
local id), and PL/pgSQL then evaluates it through SPI instead of its simple
fast path. The entry point's call of its body (pgjobs.visible's
FOREACH ... IN ARRAY pgjobs._visible_as(...)) is such an expression, so the
next call's PG_CONTEXT holds a 'SQL expression "pgjobs._visible_as(..."'
frame between the body's line and the entry point's line, and
pgjobs._enter, which requires line 3 to be the entry point's own PL/pgSQL
frame, refuses it. A forged call of a body leaves the body's own call of
pgjobs._enter busy the same way. A whole ROLLBACK starts a new local
transaction id: nothing is left then (locked in below).

Fixed (h83): each of those two calls is written with a closing alias
(`... AS sealed_call`), and pgjobs._enter and pgjobs._entered let in that
call's SPI frame when the whole line is exactly it (pgjobs._sealed_frame):
text a role writes may begin with the same words, but cannot go on after
the alias into an imitation of the next frame without a syntax error
(tests/test_trust_sealed_frame.py tries). Each case also checks that a
direct call of the body is still refused in that same state.

On the code before h83 (and on the stop-49 release, cfb6bdb: the same
pgjobs._enter) the 36 savepoint, exception-block and refused-direct-call
cases fail with that 42501, the 24 others pass: the whole-rollback
lock-ins and the direct calls refused after a failed call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_after_error_client_{PID}"
TABLE = "public.after_error_kv"

# entry point: (a call that raises inside its body, a good call, the body
# called directly as the client naming the superuser).
CALLS = {
    "visible": ("SELECT count(*) FROM pgjobs.visible({t}, '1', '{{}}', 'zz')",
                "SELECT count(*) FROM pgjobs.visible({t}, '1')",
                "SELECT pgjobs._visible_as('postgres', {t}, '1', '{{}}', NULL, 10)"),
    "visible_count": ("SELECT pgjobs.visible_count({t}, 'zz')",
                      "SELECT pgjobs.visible_count({t}, '1')",
                      "SELECT pgjobs._visible_count_as('postgres', {t}, '1', '{{}}')"),
    "mask": ("SELECT pgjobs.mask({t}, 'zz')",
             "SELECT pgjobs.mask({t}, '1')",
             "SELECT pgjobs._mask_as('postgres', {t}, '1')"),
    "channel": ("SELECT pgjobs.channel({t}, 'zz')",
                "SELECT pgjobs.channel({t}, '1')",
                "SELECT pgjobs._channel_as('postgres', {t}, '1')"),
    "submit_delete": ("SELECT pgjobs.submit_delete({t}, 'zz')",
                      "SELECT pgjobs.submit_delete({t}, '2')",
                      "SELECT pgjobs._submit_delete_as('postgres', {t}, '2', '{{}}', NULL, "
                      "'{{}}')"),
    "preview": ("SELECT pgjobs.preview({t}, 'zz')",
                "SELECT pgjobs.preview({t}, '1')",
                "SELECT pgjobs._preview_as('postgres', {t}, '1', '{{}}', '{{}}', '{{}}')"),
    "submit_backfill": ("""SELECT pgjobs.submit_backfill({t}, 'zz', '{{}}', '{{"v": 1}}')""",
                        """SELECT pgjobs.submit_backfill({t}, '2', '{{}}', '{{"v": 1}}')""",
                        "SELECT pgjobs._submit_backfill_as('postgres', {t}, '2', '{{}}', "
                        """'{{"v": 1}}', '{{}}')"""),
    "submit_export": ("SELECT pgjobs.submit_export({t}, 'zz')",
                      "SELECT pgjobs.submit_export({t}, '1')",
                      "SELECT pgjobs._submit_export_as('postgres', {t}, '1', '{{}}', '{{}}')"),
    "submit_items": ("""SELECT pgjobs.submit_items('custom', {t}, 'zz', '[{{"n": 1}}]')""",
                     """SELECT pgjobs.submit_items('custom', {t}, '1', '[{{"n": 1}}]')""",
                     "SELECT pgjobs._submit_items_as('postgres', 'custom', {t}, '1', "
                     """'[{{"n": 1}}]', '{{}}')"""),
    "add_items": ("""SELECT pgjobs.add_items(-1, '[{{"n": 2}}]')""",
                  """SELECT pgjobs.add_items({j}, '[{{"n": 2}}]')""",
                  """SELECT pgjobs._add_items_as('postgres', {j}, '[{{"n": 2}}]')"""),
    "pause": ("SELECT pgjobs.pause(-1)",
              "SELECT pgjobs.pause({j})",
              "SELECT pgjobs._pause_as('postgres', {j})"),
    "cancel": ("SELECT pgjobs.cancel(-1)",
               "SELECT pgjobs.cancel({j})",
               "SELECT pgjobs._cancel_as('postgres', {j})"),
}


def _sql(text: str, job: int) -> str:
    return text.format(t=f"'{TABLE}'", j=job)


@pytest.fixture
def world(conn: Conn) -> Iterator[int]:
    """TABLE registered (integer scope s, so 'zz' is a bad scope), CLIENT
    (pgjobs_client) with every privilege on it and a queued items job of
    its own there. Yields the job's id."""
    conn.execute(f"DROP ROLE IF EXISTS {CLIENT}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"""
        CREATE TABLE {TABLE} (id bigint NOT NULL, s int NOT NULL, v int, data jsonb,
                              created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON {TABLE} (s, id);
        INSERT INTO {TABLE} (id, s, data) SELECT g, 1 + g % 2, '{{}}'
          FROM generate_series(1, 10) g;""")
    conn.execute("SELECT pgjobs.register_target(%s, 'id', 's', 'created_at', 'data', '{}')",
                 (TABLE,))
    conn.execute(f"GRANT SELECT, UPDATE, DELETE ON {TABLE} TO {CLIENT}")
    conn.execute(f"SET ROLE {CLIENT}")
    job = conn.execute(f"""SELECT pgjobs.submit_items('custom', '{TABLE}', '1', '[{{"n": 1}}]',
                           '{{"run_at": "2999-01-01T00:00:00Z"}}')""").fetchone()[0]
    conn.execute("RESET ROLE")
    yield int(job)
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {CLIENT}")
    conn.execute(f"DROP ROLE {CLIENT}")


def _direct_call_refused(conn: Conn, direct: str) -> None:
    """The body called directly is refused by pgjobs._enter, in the state
    the earlier calls left."""
    conn.execute("SAVEPOINT direct")
    with pytest.raises(errors.InsufficientPrivilege, match="may only be called by"):
        conn.execute(direct)
    conn.execute("ROLLBACK TO SAVEPOINT direct")


def _after_savepoint_rollback(conn: Conn, bad: str, good: str) -> None:
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT a")
    with pytest.raises(psycopg.Error) as failed:
        conn.execute(bad)
    assert failed.value.sqlstate != "42501", failed.value
    conn.execute("ROLLBACK TO SAVEPOINT a")
    conn.execute(good).fetchall()


def _after_exception_block(conn: Conn, bad: str, good: str) -> None:
    conn.execute("BEGIN")
    conn.execute(f"""DO $d$ BEGIN
        BEGIN PERFORM * FROM ({bad}) x; RAISE EXCEPTION 'did not fail';
        EXCEPTION WHEN insufficient_privilege THEN RAISE;
                  WHEN others THEN IF SQLERRM = 'did not fail' THEN RAISE; END IF;
        END;
        PERFORM * FROM ({good}) y;
    END $d$""")


def _after_rollback(conn: Conn, bad: str, good: str) -> None:
    conn.execute("BEGIN")
    with pytest.raises(psycopg.Error) as failed:
        conn.execute(bad)
    assert failed.value.sqlstate != "42501", failed.value
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    conn.execute(good).fetchall()


SHAPES = {
    "savepoint_rollback": pytest.param(_after_savepoint_rollback, id="savepoint_rollback"),
    "exception_block": pytest.param(_after_exception_block, id="exception_block"),
    "rollback": pytest.param(_after_rollback, id="rollback"),
}


@pytest.mark.parametrize("recover", list(SHAPES.values()))
@pytest.mark.parametrize("entry", sorted(CALLS))
def test_the_next_call_works_and_a_direct_call_is_still_refused(
        conn: Conn, world: int, entry: str, recover: Any) -> None:
    bad, good, direct = (_sql(text, world) for text in CALLS[entry])
    conn.execute(f"SET ROLE {CLIENT}")
    try:
        recover(conn, bad, good)
        _direct_call_refused(conn, direct)
    finally:
        conn.execute("ROLLBACK")
        conn.execute("RESET ROLE")


@pytest.mark.parametrize("entry", sorted(CALLS))
def test_a_direct_call_of_the_body_is_refused_after_a_failed_call(
        conn: Conn, world: int, entry: str) -> None:
    """Leftovers of the failed call (its sealed setting, a busy expression)
    never let a direct call of the body past pgjobs._enter."""
    bad, _good, direct = (_sql(text, world) for text in CALLS[entry])
    conn.execute(f"SET ROLE {CLIENT}")
    try:
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT a")
        with pytest.raises(psycopg.Error):
            conn.execute(bad)
        conn.execute("ROLLBACK TO SAVEPOINT a")
        _direct_call_refused(conn, direct)
    finally:
        conn.execute("ROLLBACK")
        conn.execute("RESET ROLE")


@pytest.mark.parametrize("entry", sorted(CALLS))
def test_a_refused_direct_call_leaves_the_next_good_call_working(
        conn: Conn, world: int, entry: str) -> None:
    """A direct call of the body, refused inside a savepoint, must not make
    the client's next legitimate call in the transaction be refused."""
    _bad, good, direct = (_sql(text, world) for text in CALLS[entry])
    conn.execute(f"SET ROLE {CLIENT}")
    try:
        conn.execute("BEGIN")
        _direct_call_refused(conn, direct)
        conn.execute(good).fetchall()
    finally:
        conn.execute("ROLLBACK")
        conn.execute("RESET ROLE")
