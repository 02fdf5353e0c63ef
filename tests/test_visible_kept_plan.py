"""pgjobs.visible's short way runs its page from a plan the session keeps (issue 11).

pgjobs._visible_prepared prepares the page pgjobs._visible_page builds once per
session (pgjobs_visible_<md5 of its text>, the scope and the cursor its
parameters) and executes it on later reads, instead of planning the page
on every call. Counted, never timed: the statement's executions and plans
in pg_prepared_statements.

What the kept plan must never do is answer from a stale world. Each change
below is made between two reads of one warm session (on the kept generic
plan) and the next read must see it: another role,
a REVOKE, row security turned on, the target registered again on another
scope column, a delete submitted, a column added. These pass on main too
(nothing was kept there): they guard the cache. And the session cannot
steer it: a statement of the same name and other text, or of the same text
prepared under a hostile search_path, is never what a read runs; a read in
an older snapshot (a cursor's) reads in that snapshot; a SECURITY DEFINER
function's owner leaves no statement in its caller's session; a session
keeps at most 32 of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import drop_role, session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_kept_reader_{PID}"
OTHER = f"pgjobs_kept_other_{PID}"
PAGE = "SELECT coalesce(array_agg((v->>'id')::int ORDER BY (v->>'id')::int), '{}') " \
       "FROM pgjobs.visible('t_kept', %s, '{}', %s, 100) v"
KEPT = ("SELECT count(*), coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
        " FROM pg_prepared_statements WHERE name LIKE 'pgjobs\\_visible\\_%'")
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
    """Reads enough for the kept plan to be run a few times, each the same
    rows."""
    for _ in range(9):
        assert _page(session, after=after) == [i for i in SCOPE_1 if after is None
                                               or i > int(after)]


def _reader(make_conn: Callable[[], Conn]) -> Conn:
    return session_as(make_conn, READER)


def _kept(session: Conn, after: str | None) -> tuple[int, int]:
    """(generic plans, custom plans) of the kept statement of the page read
    with or without a cursor, (0, 0) while there is none."""
    row = session.execute(KEPT.replace("%", "%%") + " AND (statement LIKE %s) = %s",
                          ("% AND t.id > $2::bigint %", after is not None)).fetchone()
    return (0, 0) if row is None or not row[0] else (int(row[1]), int(row[2]))


def _read_until(session: Conn, after: str | None, done: Callable[[int, int], bool]) -> None:
    """Reads (each the same rows) until the kept statement's counts are done:
    a read that had to renew its 1 s trust verdict first ran no statement."""
    deadline = time.monotonic() + 30
    while not done(*_kept(session, after)):
        assert time.monotonic() < deadline, _kept(session, after)
        assert _page(session, after=after) == [i for i in SCOPE_1 if after is None
                                               or i > int(after)]


@pytest.mark.parametrize("rows", [40, 20040], ids=["small_scope", "big_scope"])
def test_the_page_is_planned_once_and_run_from_the_kept_plan(
        make_conn: Callable[[], Conn], admin: Conn, rows: int) -> None:
    # On a big scope the generic plan's estimate (scope and cursor unknown)
    # is above the custom plans', and PostgreSQL's own rule planned the page
    # at every read: the kept plan is the generic one from the first.
    admin.execute("INSERT INTO t_kept (id, scope, alt) SELECT i, 1 + i %% 2, 3"
                  " FROM generate_series(41, %s) i", (rows,))
    admin.execute("DELETE FROM t_kept WHERE id > 40 AND scope = 1")  # scope 1 as it was
    admin.execute("ANALYZE t_kept")
    reader = _reader(make_conn)
    for after in ("7", None):
        _read_until(reader, after, lambda generic, custom: generic + custom >= 3)
        generic, custom = _kept(reader, after)
        assert custom == 0, (after, generic, custom)
        # every read runs it: no plan made but the one
        _read_until(reader, after, lambda more, _custom, seen=generic: more > seen)
        assert _kept(reader, after) == (generic + 1, 0)
    # one statement per page text (with a cursor, and without)
    assert scalar(reader, KEPT) == 2


@pytest.mark.parametrize("children", ["partitions", "inheritance"])
def test_a_table_with_children_keeps_no_statement(
        make_conn: Callable[[], Conn], admin: Conn, children: str) -> None:
    # A generic plan holds (and locks, at every run) every partition or
    # child: such a table's page is planned with the scope's value, pruned
    # to its partitions (tests/test_partitioned.py: a warm session's reads
    # lock no other scope's partition).
    table = "t_kept"
    if children == "partitions":
        table = "t_kept_parts"
        admin.execute("""
            CREATE TABLE t_kept_parts (id bigint NOT NULL, scope int NOT NULL, data jsonb,
                                       created_at timestamptz NOT NULL
                                           DEFAULT now() - interval '1 day')
                PARTITION BY LIST (scope);
            CREATE TABLE t_kept_parts_1 PARTITION OF t_kept_parts FOR VALUES IN (1);
            CREATE TABLE t_kept_parts_2 PARTITION OF t_kept_parts FOR VALUES IN (2);
            CREATE INDEX ON t_kept_parts (scope, id);
            INSERT INTO t_kept_parts (id, scope) SELECT id, scope FROM t_kept;
            SELECT pgjobs.register_target('t_kept_parts', 'id', 'scope', 'created_at',
                                          'data')""")
        admin.execute(f"GRANT SELECT ON t_kept_parts TO {READER}")
    else:
        admin.execute("CREATE TABLE t_kept_child () INHERITS (t_kept)")
    reader = _reader(make_conn)
    for _ in range(9):
        ids = scalar(reader, PAGE.replace("'t_kept'", f"'{table}'"), ("1", None))
        assert list(ids) == SCOPE_1  # type: ignore[call-overload]
    assert scalar(reader, KEPT) == 0


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
    for cursor in (None, "1"):  # both statements kept, on their generic plans
        _read_until(reader, cursor, lambda generic, _custom: generic >= 1)
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
    if how == "hostile_search_path":  # and it was read from the kept statement
        _read_until(reader, after, lambda generic, _custom: generic >= 2)


def test_a_statement_of_the_same_name_and_other_text_is_never_run(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    _warm(reader)
    (name, text), = reader.execute("SELECT name, statement FROM pg_prepared_statements"
                                   " WHERE name LIKE 'pgjobs\\_visible\\_%'").fetchall()
    # the same name, reading every scope (and, below, with other parameter types)
    reader.execute(f"DEALLOCATE {name}")
    reader.execute(f"PREPARE {name}(text, text, text) AS SELECT ARRAY(SELECT to_jsonb(t.*)"
                   " FROM public.t_kept t ORDER BY t.id)")
    assert _page(reader) == SCOPE_1
    reader.execute(f"DEALLOCATE {name}")
    reader.execute(text.replace("(text, text, text)", "(text, text, varchar)", 1))
    assert _page(reader) == SCOPE_1
    # each time, the read put back its own statement
    again = scalar(reader, "SELECT statement FROM pg_prepared_statements WHERE name = %s",
                   (name,))
    assert again == text


def test_the_same_text_prepared_under_a_hostile_search_path_resolves_as_pgjobs(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    # An operator int = text that would match every row, in a schema the
    # reader puts first: the statement's text is pgjobs' own, but a plan made
    # under that path would compare with it.
    admin.execute(f"""
        DROP SCHEMA IF EXISTS s_hostile_{PID} CASCADE;
        CREATE SCHEMA s_hostile_{PID};
        CREATE FUNCTION s_hostile_{PID}.eq(integer, integer) RETURNS boolean
            LANGUAGE sql IMMUTABLE AS 'SELECT true';
        CREATE OPERATOR s_hostile_{PID}.= (LEFTARG = integer, RIGHTARG = integer,
                                           FUNCTION = s_hostile_{PID}.eq);
        GRANT USAGE ON SCHEMA s_hostile_{PID} TO {READER};
        GRANT EXECUTE ON FUNCTION s_hostile_{PID}.eq(integer, integer) TO {READER}""")
    try:
        reader = _reader(make_conn)
        _warm(reader)
        (name, text), = reader.execute("SELECT name, statement FROM pg_prepared_statements"
                                       " WHERE name LIKE 'pgjobs\\_visible\\_%'").fetchall()
        reader.execute(f"DEALLOCATE {name}")
        reader.execute(f"SET search_path = s_hostile_{PID}, pg_catalog, public")
        reader.execute(text)  # the very text, resolved under the hostile path
        hostile = reader.execute(f"EXECUTE {name}('1', NULL, pg_current_snapshot()::text)"
                                 ).fetchone()
        assert hostile is not None and len(hostile[0]) == 40  # every row: the trap is set
        for _ in range(7):
            assert _page(reader) == SCOPE_1
    finally:
        admin.execute(f"DROP SCHEMA s_hostile_{PID} CASCADE")


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


def test_the_kept_plan_is_the_snapshots_own(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    _warm(reader)
    (name, page), = reader.execute(
        "SELECT name, substring(statement FROM 'THEN \\((.*)\\) END$')"
        " FROM pg_prepared_statements WHERE name LIKE 'pgjobs\\_visible\\_%'").fetchall()
    # given another snapshot than its own it reads nothing (NULL)
    assert scalar(reader, "SELECT pgjobs._visible_prepared('t_kept', %s, '1', NULL, '1:1:')",
                  (page,)) is None
    rows = scalar(reader, "SELECT pgjobs._visible_prepared('t_kept', %s, '1', NULL,"
                          " pg_current_snapshot()::text)", (page,))
    assert rows is not None and len(rows) == len(SCOPE_1)  # type: ignore[arg-type]


def test_a_definer_function_leaves_no_statement_in_its_callers_session(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.execute(f"GRANT SELECT ON t_kept TO {OTHER}")
    admin.execute(f"""
        CREATE FUNCTION public.kept_wrapper() RETURNS integer
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
        AS $$ SELECT count(*)::integer FROM pgjobs.visible('public.t_kept', '1', '{{}}', NULL,
                                                               100) $$;
        ALTER FUNCTION public.kept_wrapper() OWNER TO {OTHER};
        GRANT EXECUTE ON FUNCTION public.kept_wrapper() TO {READER}""")
    reader = _reader(make_conn)
    for _ in range(9):
        assert scalar(reader, "SELECT public.kept_wrapper()") == len(SCOPE_1)
    assert reader.execute(KEPT).fetchone() == (0, 0, 0)


def test_a_session_keeps_at_most_32_pages(make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    _warm(reader)
    for limit in range(1, 41):
        for _ in range(2):  # (the second past a verdict the first may have renewed)
            rows = scalar(reader, "SELECT count(*) FROM pgjobs.visible('t_kept', '1', '{}',"
                                  " NULL, %s)", (limit,))
            assert rows == min(limit, len(SCOPE_1))
        count = scalar(reader, KEPT)
        assert 1 <= count <= 32, (limit, count)  # type: ignore[operator]
