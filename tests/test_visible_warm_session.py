"""What a read of a warm session may keep between reads (issue 11).

pgjobs.visible keeps no plan of its page between reads: every call builds
the page's statement with the scope and the cursor as literals and plans it.
A kept plan (a prepared statement per session, tried on an unmerged branch)
must answer as that does, and these are its class tests, written so that
they hold on the code as it is and fail on a cache that answers from a
stale world:

* between two reads of a warm session (both the first page's and a
  cursor's read 9 times), each change a kept statement could outlive, made
  by another session or the reader's own: the next read, with and without
  a cursor, answers as written and as the full way does (a delete
  submitted, paused, canceled, run to its end; SET ROLE, a REVOKE, row
  security, pgjobs.allowed_scopes, a hostile search_path, DISCARD ALL,
  DEALLOCATE ALL; the target registered again, a column added or dropped);
* on a table of two tenants, one 1% of the rows, every page is the walk of
  the (scope, key) index, after many pages of the big tenant: a generic
  plan (scope and cursor unknown) walks the primary key there;
* a read in an older snapshot (a cursor's) reads in that snapshot.
(tests/test_partitioned.py: a warm session's reads lock no other scope's
partition, which a generic plan of a partitioned table does.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import drop_role, session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_warm_reader_{PID}"
OTHER = f"pgjobs_warm_other_{PID}"
PAGE = "SELECT coalesce(array_agg((v->>'id')::int ORDER BY (v->>'id')::int), '{}') " \
       "FROM pgjobs.visible('t_kept', %s, '{}', %s, 100) v"
SCOPE_1 = list(range(2, 41, 2))


def _drop_roles(conn: Conn) -> None:
    for role in (READER, OTHER):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            drop_role(conn, role)


@pytest.fixture
def admin(conn: Conn) -> Iterator[Conn]:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {OTHER} NOLOGIN IN ROLE pgjobs_client")
    # scope: 1 for even ids, 2 for odd; alt: 1 for ids up to 10, else 3
    conn.execute("""
        CREATE TABLE t_kept (id bigint PRIMARY KEY, scope int NOT NULL, alt int NOT NULL,
                             data jsonb,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON t_kept (scope, id);
        CREATE INDEX ON t_kept (alt, id);
        INSERT INTO t_kept (id, scope, alt, data)
        SELECT i, 1 + i % 2, CASE WHEN i <= 10 THEN 1 ELSE 3 END, '{"k": 1}'
          FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('t_kept', 'id', 'scope', 'created_at', 'data');""")
    conn.execute(f"GRANT SELECT ON t_kept TO {READER}")
    yield conn
    _drop_roles(conn)


def _page(session: Conn, scope: str = "1", after: str | None = None) -> list[int]:
    return list(scalar(session, PAGE, (scope, after)))  # type: ignore[call-overload]


def _warm(session: Conn, after: str | None = None) -> None:
    """Nine reads, each the same rows (past the five custom plans after
    which PostgreSQL may take a prepared statement's generic one)."""
    for _ in range(9):
        assert _page(session, after=after) == [i for i in SCOPE_1 if after is None
                                               or i > int(after)]


def _reader(make_conn: Callable[[], Conn]) -> Conn:
    return session_as(make_conn, READER)


def test_every_page_walks_the_scope_key_index_on_a_skewed_table(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    # Two tenants, one of them 1% of the rows: a generic plan of the page
    # (scope and cursor unknown) walks the primary key and filters on the
    # scope, which for the small tenant reads a hundred rows for each it
    # returns (for a smaller one, the whole table after the cursor). Every
    # page a session reads, after many of the big tenant's, must be the
    # walk of the (scope, key) index, whatever plan is kept between reads.
    admin.execute("""
        CREATE TABLE t_skew (id bigint PRIMARY KEY, scope int NOT NULL, data jsonb,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        INSERT INTO t_skew (id, scope)
        SELECT i, CASE WHEN i % 100 = 0 THEN 2 ELSE 1 END FROM generate_series(1, 20000) i;
        CREATE INDEX t_skew_scope_id ON t_skew (scope, id);
        SELECT pgjobs.register_target('t_skew', 'id', 'scope', 'created_at', 'data')""")
    admin.execute("VACUUM ANALYZE t_skew")
    admin.execute(f"GRANT SELECT ON t_skew TO {READER}")
    reader = session_as(make_conn, READER, before=(
        "LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_format = json",
        "SET auto_explain.log_level = notice"))
    page = "SELECT count(*) FROM pgjobs.visible('t_skew', %s, '{}', %s, 100)"
    for after in range(0, 9000, 1000):  # the big tenant's pages
        assert scalar(reader, page, ("1", str(after))) == 100
    plans: list[dict[str, Any]] = []

    def captured(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message[message.index("{"):]))

    reader.add_notice_handler(captured)
    for after, rows in (("0", 100), ("5000", 100), ("19000", 10)):  # the small tenant's
        assert scalar(reader, page, ("2", after)) == rows
    reader.remove_notice_handler(captured)
    scans = [node for plan in plans for node in _nodes(plan["Plan"])
             if node.get("Relation Name") == "t_skew"]
    assert len(scans) >= 3, plans
    assert {(node["Node Type"], node.get("Index Name")) for node in scans} \
        == {("Index Scan", "t_skew_scope_id")}, scans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


# The class test of the kept plan's soundness: each change below is made
# between two reads of a warm session (its page on the generic plan, with
# and without a cursor: two kept statements), by another session or by the
# reader's own, and the next read must answer as pgjobs.visible's full way
# (pgjobs._visible_as, which keeps nothing: the same page through a filter
# every row matches) does, and as written here: the ids, or the SQLSTATE of
# its refusal. Pass on main too (nothing was kept there): they guard the
# cache against every change a kept statement could outlive.
FULL_WAY = '{"id": {"$gt": -1}}'
FILTERED = ("SELECT coalesce(array_agg((v->>'id')::int ORDER BY (v->>'id')::int), '{}')"
            " FROM pgjobs.visible('t_kept', '1', %s, %s, 100) v")
MASKED = list(range(12, 41, 2))  # scope 1 past the delete of ids below 11
DELETE = "SELECT pgjobs.submit_delete('t_kept', '1', '{\"id\": {\"$lt\": 11}}')"
HOSTILE = f"s_kept_hostile_{PID}"


def _delete(admin: Conn, then: str | None = None) -> None:
    """A delete of ids below 11 in scope 1, submitted by the administrator's
    session, then paused, canceled or run to its end."""
    job = scalar(admin, DELETE)
    if then == "run":
        admin.execute("CALL pgjobs.run_job(%s)", (job,))
        assert scalar(admin, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) \
            == "succeeded"
    elif then is not None:
        assert scalar(admin, f"SELECT pgjobs.{then}(%s)", (job,)) is True


# name: (the change, made by the administrator's session and the reader's,
# the next read's answer)
CHANGES: dict[str, tuple[Callable[[Conn, Conn], object], list[int] | str]] = {
    # a delete of another session, at each point of its life
    "delete_submitted": (lambda admin, _reader: _delete(admin), MASKED),
    "delete_paused": (lambda admin, _reader: _delete(admin, "pause"), MASKED),
    "delete_canceled": (lambda admin, _reader: _delete(admin, "cancel"), SCOPE_1),
    "delete_finished": (lambda admin, _reader: _delete(admin, "run"), MASKED),
    # who reads, and what the reader's session says of itself
    "another_role": (lambda _admin, reader: reader.execute(f"SET ROLE {OTHER}"), "42501"),
    "revoke": (lambda admin, _reader: admin.execute(f"REVOKE SELECT ON t_kept FROM {READER}"),
               "42501"),
    "row_security_on": (lambda admin, _reader: admin.execute(
        "ALTER TABLE t_kept ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY p ON t_kept USING (id < 10)"), "42501"),
    "allowed_scopes_other": (lambda _admin, reader: reader.execute(
        "SET pgjobs.allowed_scopes = '2'"), "42501"),
    "allowed_scopes_this": (lambda _admin, reader: reader.execute(
        "SET pgjobs.allowed_scopes = '2,1'"), SCOPE_1),
    "hostile_search_path": (lambda _admin, reader: reader.execute(
        f"SET search_path = {HOSTILE}, pg_catalog, public"), SCOPE_1),
    "discard_all": (lambda _admin, reader: (reader.execute("DISCARD ALL"),
                                            reader.execute(f"SET ROLE {READER}")), SCOPE_1),
    "deallocate_all": (lambda _admin, reader: reader.execute("DEALLOCATE ALL"), SCOPE_1),
    # the target
    "registered_again": (lambda admin, _reader: admin.execute(
        "SELECT pgjobs.unregister_target('t_kept');"
        " SELECT pgjobs.register_target('t_kept', 'id', 'alt', 'created_at', 'data')"),
        list(range(1, 11))),
    "column_added": (lambda admin, _reader: admin.execute(
        "ALTER TABLE t_kept ADD COLUMN note text DEFAULT 'new'"), SCOPE_1),
    "column_dropped": (lambda admin, _reader: admin.execute(
        "ALTER TABLE t_kept DROP COLUMN data"), SCOPE_1),
}
# the page's rows have the table's columns as they are now
COLUMNS = {"column_added": ["alt", "created_at", "data", "id", "note", "scope"],
           "column_dropped": ["alt", "created_at", "id", "scope"]}


@pytest.fixture
def hostile(admin: Conn) -> Iterator[None]:
    """A schema the reader may put first in its search_path, whose = on
    integers matches every pair (a plan resolved under it reads every scope)."""
    admin.execute(f"""
        DROP SCHEMA IF EXISTS {HOSTILE} CASCADE;
        CREATE SCHEMA {HOSTILE};
        CREATE FUNCTION {HOSTILE}.eq(integer, integer) RETURNS boolean
            LANGUAGE sql IMMUTABLE AS 'SELECT true';
        CREATE OPERATOR {HOSTILE}.= (LEFTARG = integer, RIGHTARG = integer,
                                     FUNCTION = {HOSTILE}.eq);
        GRANT USAGE ON SCHEMA {HOSTILE} TO {READER};
        GRANT EXECUTE ON FUNCTION {HOSTILE}.eq(integer, integer) TO {READER}""")
    yield
    admin.execute(f"DROP SCHEMA {HOSTILE} CASCADE")


def _read(session: Conn, after: str | None, filter_: str = "{}") -> list[int] | str:
    """The ids of the page of scope 1 after the cursor, or the SQLSTATE of
    the read's refusal."""
    try:
        return list(scalar(session, FILTERED, (filter_, after)))  # type: ignore[call-overload]
    except psycopg.DatabaseError as refused:
        assert refused.sqlstate is not None, refused
        return refused.sqlstate


@pytest.mark.usefixtures("hostile")
@pytest.mark.parametrize("after", [None, "1"], ids=["first_page", "after_a_cursor"])
@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_change_between_two_reads_of_a_warm_session_is_seen(
        make_conn: Callable[[], Conn], admin: Conn, how: str, after: str | None) -> None:
    reader = _reader(make_conn)
    for cursor in (None, "1"):  # the first page's and a cursor's, each read 9 times
        _warm(reader, cursor)
    change, want = CHANGES[how]
    change(admin, reader)
    if not isinstance(want, str):
        want = [i for i in want if after is None or i > int(after)]
    got = _read(reader, after)
    assert got == want, (how, got)
    assert got == _read(reader, after, FULL_WAY), how  # as the full way answers
    if how in COLUMNS:
        keys = scalar(reader, "SELECT array_agg(DISTINCT k ORDER BY k) FROM pgjobs.visible("
                              "'t_kept', '1', '{}', %s, 100) v, jsonb_object_keys(v) k", (after,))
        assert keys == COLUMNS[how], keys


def test_a_read_in_an_older_snapshot_reads_in_it(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    _warm(reader)
    with reader.transaction():
        reader.execute("DECLARE c NO SCROLL CURSOR FOR SELECT coalesce(array_agg("
                       "(v->>'id')::int ORDER BY (v->>'id')::int), '{}')"
                       " FROM pgjobs.visible('t_kept', '1', '{}', NULL, 100) v")
        # committed after the cursor's snapshot: not for it to see, nor the
        # delete submitted since (which the kept plan's own snapshot sees)
        admin.execute("INSERT INTO t_kept (id, scope, alt) VALUES (100, 1, 3)")
        admin.execute("SELECT pgjobs.submit_delete('t_kept', '1', '{\"id\": {\"$lt\": 11}}')")
        row = reader.execute("FETCH ALL FROM c").fetchone()
        assert row is not None and list(row[0]) == SCOPE_1, row
    assert _page(reader) == [i for i in SCOPE_1 if i > 10] + [100]
