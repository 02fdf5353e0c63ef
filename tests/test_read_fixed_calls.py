"""What a client read calls when no delete is pending (issue 11, `visible`'s fixed cost).

A read's helpers were each a pinned call made on every read, costs that did
not depend on the page: pgjobs._require_entry read the running call back
from the call stack (pgjobs._entered: PG_CONTEXT and a seal, ~80 us) that
pgjobs._enter had just returned, and pgjobs._mask was called (its query
planned again, ~20-40 us) when no delete of the scope was pending. Now the
internal passes the call it entered to pgjobs._target_recent, and probes
jobs_pending_writers_idx before calling pgjobs._mask.

Counted with track_functions (the transaction's own counts,
pg_stat_get_xact_function_calls), never timed: per read entry and helper,
the helper is not called at all; with a delete pending the mask still is,
and hides the rows; and every check still refuses what it refused (the
call passed on is the one pgjobs._enter checked: a role without SELECT is
refused before the registry is read, as tests/test_trust_partial_privilege.py
checks in full).

And the row of a target with json columns: the page is read as
to_jsonb(t.*) first, and only a page that raises a data exception (a json
value jsonb refuses) reads the columns and is read again with each json
column through pgjobs._json_as_jsonb: the same rows as before, for a json
column and a domain over json, and a bad cursor is still the 22023 that
names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_calls_reader_{PID}"

READS = {
    "visible": "SELECT count(*) FROM pgjobs.visible('t_calls', %s, '{}', NULL, 1000)",
    "visible_count": "SELECT pgjobs.visible_count('t_calls', %s)",
    "mask": "SELECT length(pgjobs.mask('t_calls', %s))",
}
# the rows themselves
ROWS = "SELECT array_agg(v) FROM pgjobs.visible('t_calls', %s, '{}', NULL, 1000) v"
# (read, helper) that a read with no delete pending must not call.
NOT_CALLED = [(path, "pgjobs._entered()") for path in sorted(READS)] + [
    (path, "pgjobs._mask(regclass, text, boolean)") for path in ("visible", "visible_count")] + [
    # t_calls has no column whose type may hold an array: the page needs no
    # bounds test, and pgjobs._visible_as knows it from its own column read
    ("visible", "pgjobs._array_bounds_row(regclass)")]


def _drop_role(conn: Conn) -> None:
    if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (READER,)):
        conn.execute(f"DROP OWNED BY {READER}")
        conn.execute(f"DROP ROLE {READER}")


@pytest.fixture
def admin(conn: Conn) -> Iterator[Conn]:
    _drop_role(conn)
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    conn.execute("""
        CREATE TABLE t_calls (id bigint NOT NULL, scope int NOT NULL, data jsonb,
                              created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON t_calls (scope, id);
        INSERT INTO t_calls (id, scope, data)
        SELECT i, 1 + i % 2, '{"k": 1}' FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('t_calls', 'id', 'scope', 'created_at', 'data');""")
    conn.execute(f"GRANT SELECT ON t_calls TO {READER}")
    yield conn
    _drop_role(conn)


def _reader(make_conn: Callable[[], Conn]) -> Conn:
    # track_functions is a superuser's setting, kept under SET ROLE.
    return session_as(make_conn, READER, before=("SET track_functions = 'all'",))


def _calls(session: Conn, path: str, *helpers: str) -> tuple[object, list[int]]:
    """The read's answer and how many times it called each of `helpers`: the
    transaction's pending counts (which outlive a commit until flushed) read
    before and after the read, in one transaction."""
    count = "SELECT coalesce(pg_stat_get_xact_function_calls(%s::regprocedure), 0)"
    with session.transaction():
        before = [int(scalar(session, count, (helper,))) for helper in helpers]
        answer = scalar(session, READS.get(path, ROWS), ("1",))
        after = [int(scalar(session, count, (helper,))) for helper in helpers]
    return answer, [a - b for a, b in zip(after, before, strict=True)]


FULL_CHECK = "pgjobs._target(regclass)"


@pytest.mark.parametrize(("path", "helper"), NOT_CALLED)
def test_a_read_with_no_delete_pending_skips_the_helper(
        make_conn: Callable[[], Conn], admin: Conn, path: str, helper: str) -> None:
    reader = _reader(make_conn)
    body = f"pgjobs._{path}_as(name, regclass, text" + {
        "visible": ", jsonb, text, integer)", "visible_count": ", jsonb)", "mask": ")"}[path]
    if path == "visible":
        # (the entry itself: a plain page takes the short way, which never
        # calls its body pgjobs._visible_as; tests/test_visible_as_caller.py)
        body = "pgjobs.visible(regclass, text, jsonb, text, integer)"
    for _ in range(4):  # cold and warm: the trust verdict kept after the first
        answer, (calls, full, entered) = _calls(reader, path, helper, FULL_CHECK, body)
        assert answer == {"visible": 20, "visible_count": 20, "mask": len("true")}[path]
        assert entered == 1  # the count is real: the entry's own door, once a read
        # (The full trust check, the first read's and one a second later, reads
        # the call again itself, pgjobs._target; nothing else may.)
        assert calls <= (full if helper == "pgjobs._entered()" else 0), (path, helper)


@pytest.mark.parametrize("path", ["visible", "visible_count"])
def test_a_pending_delete_is_still_read_through_the_mask(
        make_conn: Callable[[], Conn], admin: Conn, path: str) -> None:
    reader = _reader(make_conn)
    assert _calls(reader, path, "pgjobs._mask(regclass, text, boolean)") == (20, [0])
    admin.execute("SELECT pgjobs.submit_delete('t_calls', '1', '{\"k\": 1}')")
    assert _calls(reader, path, "pgjobs._mask(regclass, text, boolean)") == (0, [1])
    # Another scope's delete masks nothing here, and the probe lets it by.
    admin.execute("SELECT pgjobs.cancel(id) FROM pgjobs.jobs WHERE kind = 'delete'")
    admin.execute("SELECT pgjobs.submit_delete('t_calls', '2', '{}')")
    assert _calls(reader, path, "pgjobs._mask(regclass, text, boolean)") == (20, [0])


@pytest.mark.parametrize("path", sorted(READS))
def test_the_call_passed_on_is_still_checked(
        make_conn: Callable[[], Conn], admin: Conn, path: str) -> None:
    reader = _reader(make_conn)
    _calls(reader, path, "pgjobs._entered()")  # a verdict kept, plans cached
    admin.execute(f"REVOKE SELECT ON t_calls FROM {READER}")
    with pytest.raises(errors.InsufficientPrivilege) as refused, reader.transaction():
        scalar(reader, READS[path], ("1",))
    assert f"role {READER} lacks SELECT on public.t_calls" in str(refused.value)


ARRAY_COLUMNS = {  # a column whose type may hold an array, each kind, and a value of it
    "int[]": "'[0:1]={1,2}'",
    "int[][]": "'[0:1][1:1]={{1},{2}}'",
    "calls_holder": "ROW('[0:1]={1,2}')::calls_holder",
    "calls_ints": "'[0:1]={1,2}'",
    "calls_holders": "ARRAY[ROW('[0:1]={1,2}')::calls_holder]",
}


@pytest.mark.parametrize("column", sorted(ARRAY_COLUMNS))
def test_a_column_that_may_hold_an_array_still_gets_its_bounds_test(
        make_conn: Callable[[], Conn], admin: Conn, column: str) -> None:
    # The read skips pgjobs._array_bounds_row only on its own first test (no
    # column whose type may hold an array, read with the key's and scope's
    # types): a target with any such column still has every value tested,
    # and one whose lower bounds are not 1 reads as its text.
    admin.execute("""
        CREATE TYPE calls_holder AS (v int[]);
        CREATE DOMAIN calls_ints AS int[];
        CREATE DOMAIN calls_holders AS calls_holder[];""")
    admin.execute(f"ALTER TABLE t_calls ADD COLUMN odd {column}")
    admin.execute(f"UPDATE t_calls SET odd = {ARRAY_COLUMNS[column]} WHERE id = 2")
    reader = _reader(make_conn)
    for _ in range(2):  # the shape built, then kept: the helper answers both times
        rows, calls = _calls(reader, "rows", "pgjobs._array_bounds_row(regclass)")
        assert calls == [1], column
        odd = {row["id"]: row["odd"] for row in rows}  # type: ignore[attr-defined]
        assert isinstance(odd[2], str) and "[0:1]" in odd[2], odd[2]
        assert odd[4] is None


ODD = ['{"a": "\\u0000"}', '"\\ud800"', '{"a": 1e200000}']


@pytest.mark.parametrize("column", ["json", "json_dom"])
def test_a_json_column_page_is_read_again_only_when_it_must(conn: Conn, column: str) -> None:
    conn.execute("CREATE DOMAIN json_dom AS json")
    conn.execute(f"""
        CREATE TABLE t_json (id bigint NOT NULL, scope int NOT NULL, j {column},
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON t_json (scope, id);
        SELECT pgjobs.register_target('t_json', 'id', 'scope', 'created_at');""")
    conn.execute("INSERT INTO t_json (id, scope, j) VALUES (1, 1, '{\"a\": 1}'), (2, 1, NULL),"
                 " (3, 1, '[1, \"x\"]')")
    page = "SELECT array_agg(v ORDER BY v ->> 'id') FROM pgjobs.visible('t_json', '1', '{}', %s) v"
    clean = scalar(conn, page, (None,))
    assert [row["j"] for row in clean] == [{"a": 1}, None, [1, "x"]]
    for n, value in enumerate(ODD, start=4):
        conn.execute("INSERT INTO t_json (id, scope, j) VALUES (%s, 1, %s)", (n, value))
    rows = scalar(conn, page, (None,))
    assert rows[:3] == clean  # the same values as to_jsonb gives them
    assert [row["j"] for row in rows[3:]] == ODD  # the text of what jsonb refuses
    assert scalar(conn, page, ("3",)) == rows[3:]
    for bad in ("x", "1.5"):
        with pytest.raises(errors.InvalidParameterValue) as info, conn.transaction():
            scalar(conn, page, (bad,))
        assert "key column id" in str(info.value)
