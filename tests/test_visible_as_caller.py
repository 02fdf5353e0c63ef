"""`visible`'s short way: a plain page read as the caller (issue 11).

A page with no filter, no delete pending on the scope, no row-level
security on the table and no column whose type may hold an array is read
by pgjobs.visible itself, as its caller, from the statement
pgjobs._visible_page builds: PostgreSQL checks the caller's privileges on
every call, and the door, the role checks and the full body
(pgjobs._visible_as) are skipped. Anything else, and any error of the short
way, takes the full way.

The class of bug this guards: a short way that answers otherwise than the
full way. Each case below is read both ways (the full way forced by a
filter every row passes, which the short way never takes) and must give
the same rows or the same error, in the caller's DateStyle too; every
change between two reads of one warm session is honoured by the next;
whether the short way was taken is counted (track_functions), never timed. And the definer that
builds the statement tells a direct caller nothing of a table the
session's role may not read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_caller_reader_{PID}"
OWNER = f"pgjobs_caller_owner_{PID}"
ROLES = (READER, OWNER)
FULL = "pgjobs._visible_as(name, regclass, text, jsonb, text, integer)"
SHORT = "pgjobs._visible_page(regclass, text, text, integer)"
PAGE = "SELECT coalesce(array_agg(v), '{}') FROM pgjobs.visible(%s, %s, '{}', %s, %s) v"


def _drop_roles(conn: Conn) -> None:
    for role in ROLES:
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def admin(conn: Conn) -> Iterator[Conn]:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN IN ROLE pgjobs_client")
    conn.execute("""
        CREATE SCHEMA s_caller;
        CREATE TABLE s_caller.t (id bigint NOT NULL, scope int NOT NULL, name text,
                                 data jsonb, j json, at timestamptz, amount numeric,
                                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON s_caller.t (scope, id);
        INSERT INTO s_caller.t (id, scope, name, data, j, at, amount)
        SELECT i, 1 + i % 2, 'n' || i, jsonb_build_object('k', i), '{"a": [1, 2]}',
               '2026-01-02 03:04:05.678+00'::timestamptz + i * interval '1 hour', i / 3.0
          FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('s_caller.t', 'id', 'scope', 'created_at', 'data');
        CREATE TABLE s_caller.u (k uuid NOT NULL, tenant text NOT NULL, v real,
                                 created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON s_caller.u (tenant, k);
        INSERT INTO s_caller.u (k, tenant, v)
        SELECT md5(i::text)::uuid, 'acme', i / 7.0 FROM generate_series(1, 30) i;
        SELECT pgjobs.register_target('s_caller.u', 'k', 'tenant', 'created_at');""")
    conn.execute(f"GRANT USAGE ON SCHEMA s_caller TO {READER}, {OWNER}")
    conn.execute(f"GRANT SELECT ON s_caller.t, s_caller.u TO {READER}")
    yield conn
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def _reader(make_conn: Callable[[], Conn], role: str = READER) -> Conn:
    # track_functions is a superuser's setting, kept under SET ROLE.
    return session_as(make_conn, role, before=("SET track_functions = 'all'",))


def _answer(session: Conn, sql: str, args: tuple[object, ...]) -> tuple[object, ...]:
    """The rows, or the error's SQLSTATE, message and hint."""
    try:
        with session.transaction():
            return ("ok", scalar(session, sql, args))
    except psycopg.Error as exc:
        return (exc.sqlstate, exc.diag.message_primary, exc.diag.message_hint)


# The same page the full way: a filter that holds for every row (each
# table's created_at is NOT NULL), which the short way never takes.
FULL_PAGE = ("SELECT coalesce(array_agg(v), '{}') FROM pgjobs.visible(%s, %s,"
             " '{\"created_at\": {\"$lt\": \"infinity\"}}', %s, %s) v")


def _ways(session: Conn, args: tuple[object, ...]) -> tuple[
        tuple[object, ...], tuple[object, ...], list[int]]:
    """The page (target, scope, after, limit) the usual way, then the full
    way, and how often the usual call ran the full body and the short
    way's definer (one transaction's counts)."""
    count = "SELECT coalesce(pg_stat_get_xact_function_calls(%s::regprocedure), 0)"
    with session.transaction():
        before = [int(scalar(session, count, (f,))) for f in (FULL, SHORT)]
        usual = _answer(session, PAGE, args)
        after = [int(scalar(session, count, (f,))) for f in (FULL, SHORT)]
    full = _answer(session, FULL_PAGE, args)
    return usual, full, [a - b for a, b in zip(after, before, strict=True)]


def _short_ways(session: Conn, args: tuple[object, ...]) -> tuple[
        tuple[object, ...], tuple[object, ...], list[int]]:
    """_ways, asked again (up to five times) while the usual call did not take
    the short way: the trust verdict it needs lasts 1 s (pgjobs._verdict_fresh),
    and a loaded machine can pause a session longer than that between the
    read that kept it and the next. Each _ways ends with a full read that
    keeps it again, so the next asks within milliseconds. Callers still
    assert the counts: a short way never taken fails five times."""
    for _ in range(5):
        usual, full, calls = _ways(session, args)
        assert usual == full, (usual, full)
        if calls == [0, 1]:
            break
    return usual, full, calls


# (target, scope, after, limit): pages, cursors and inputs the short way
# must answer as the full way does, rows or error.
CASES = [
    ("s_caller.t", "1", None, 100),
    ("s_caller.t", "2", "7", 5),
    ("s_caller.t", "1", "40", 10),
    ("s_caller.t", "01", "3", 3),            # a scope spelt otherwise: canonical
    ("s_caller.t", "1", "x", 10),            # a cursor not of the key's type: 22023
    ("s_caller.t", "1", "99999999999999999999", 10),
    ("s_caller.t", "x", None, 10),           # a scope not of its column's type: 22023
    ("s_caller.t", None, None, 10),
    ("s_caller.t", "1", None, 0),            # limits out of range: 22023
    ("s_caller.t", "1", None, 10001),
    ("s_caller.t", "1", None, None),
    ("s_caller.u", "acme", None, 7),
    ("s_caller.u", "acme", "8f14e45f-ceea-167a-5a36-dedd4bea2543", 4),
    ("s_caller.u", "acme", "not-a-uuid", 4),
    ("s_caller.u", "nobody", None, 4),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CASES])
def test_the_short_way_answers_as_the_full_way(make_conn: Callable[[], Conn], admin: Conn,
                                               case: tuple[Any, ...]) -> None:
    target, scope, after, limit = case
    reader = _reader(make_conn)
    good = {"s_caller.t": "1", "s_caller.u": "acme"}[target]
    for warm in range(3):  # cold (no trust verdict yet), then warm
        if warm:
            # a read that succeeds first: the trust verdict the short way
            # needs (a call that fails rolls back the one it kept)
            assert _answer(reader, PAGE, (target, good, None, 1))[0] == "ok"
        usual, full, (full_calls, short_calls) = (_short_ways if warm else _ways)(
            reader, (target, scope, after, limit))
        assert usual == full, (warm, usual, full)
        if warm and usual[0] == "ok":
            # the page was read the short way: the full body never ran
            assert (full_calls, short_calls) == (0, 1), usual
    if case == CASES[0]:
        assert len(usual[1]) == 20 and usual[1][0]["id"] == 2  # type: ignore[index]


@pytest.mark.parametrize("style", ["ISO, YMD", "SQL, DMY", "German", "Postgres, MDY"])
def test_a_date_keyed_page_parses_as_the_full_way_in_the_callers_style(
        make_conn: Callable[[], Conn], admin: Conn, style: str) -> None:
    """The scope (pgjobs._canonical_scope) and the cursor are parsed in the
    caller's DateStyle, the short way as the full way."""
    admin.execute(f"""
        CREATE TABLE s_caller.d (at timestamptz NOT NULL, day date NOT NULL,
                                 created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON s_caller.d (day, at);
        INSERT INTO s_caller.d (at, day)
        SELECT '2026-03-04 05:00+00'::timestamptz + i * interval '1 day', '2026-03-04'
          FROM generate_series(1, 12) i;
        SELECT pgjobs.register_target('s_caller.d', 'at', 'day', 'created_at');
        GRANT SELECT ON s_caller.d TO {READER};""")
    reader = _reader(make_conn)
    reader.execute(f"SET DateStyle = '{style}'")
    reader.execute("SET TimeZone = 'UTC'")
    for scope, after in (("03/04/2026", "05/03/2026 05:00"), ("2026-03-04", "2026-03-08 05:00"),
                         ("04.03.2026", None), ("13/13/2026", None), ("2026-03-04", "soon")):
        for _ in range(2):
            assert _answer(reader, PAGE, ("s_caller.d", "2026-03-04", None, 1))[0] == "ok"
            usual, full, _calls = _ways(reader, ("s_caller.d", scope, after, 5))
            assert usual == full, (style, scope, after, usual, full)


@pytest.mark.parametrize(("column", "value"), [("text[]", "[0:1]={a,b}"),
                                               ("int[]", "{1,2}"),
                                               ("ints_caller", "[2:2]={7}")])
def test_a_column_that_may_hold_an_array_reads_as_the_full_way_gives_it(
        make_conn: Callable[[], Conn], admin: Conn, column: str, value: str) -> None:
    """Such a column's values are tested for lower bounds other than 1 (the
    full way's, pgjobs._array_bounds_row); the short way never reads them."""
    admin.execute("CREATE DOMAIN ints_caller AS int[]")
    admin.execute(f"ALTER TABLE s_caller.t ADD COLUMN arr {column}")
    admin.execute("UPDATE s_caller.t SET arr = %s WHERE id = 6", (value,))
    reader = _reader(make_conn)
    for _ in range(2):
        usual, full, _calls = _ways(reader, ("s_caller.t", "1", None, 100))
        assert usual == full and usual[0] == "ok", (usual, full)
    [read] = [r["arr"] for r in usual[1] if r["id"] == 6]  # type: ignore[union-attr]
    assert read == (value if value.startswith("[") else [1, 2]), read


@pytest.mark.parametrize("value", ['{"a": "\\u0000"}', '"\\ud800"', '{"a": 1e200000}'])
def test_a_json_value_jsonb_refuses_reads_as_the_full_way_gives_it(
        make_conn: Callable[[], Conn], admin: Conn, value: str) -> None:
    admin.execute("UPDATE s_caller.t SET j = %s WHERE id = 6", (value,))
    reader = _reader(make_conn)
    for _ in range(2):
        usual, full, _calls = _ways(reader, ("s_caller.t", "1", None, 100))
        assert usual == full and usual[0] == "ok", (usual, full)
    rows = usual[1]
    assert [r["j"] for r in rows if r["id"] == 6] == [value]  # type: ignore[union-attr]


def _refused(session: Conn) -> tuple[object, ...]:
    answer = _answer(session, PAGE, ("s_caller.t", "1", None, 100))
    assert answer[0] == "42501" and answer[2], answer  # pgjobs' own message and hint
    return answer


# Each change between two reads of a warm session: (statements, whether the
# next read is refused). The short way keeps nothing: PostgreSQL or the
# full way decides each call.
CHANGES = {
    "revoke": (f"REVOKE SELECT ON s_caller.t FROM {READER}", True),
    # SELECT on every column reads the table as a table grant does (h146):
    # the short way refuses it, the full way answers the same rows.
    "columns_only": (f"REVOKE SELECT ON s_caller.t FROM {READER};"
                     f" GRANT SELECT ON s_caller.t TO {OWNER};"  # (not READER's)
                     f" GRANT SELECT (id, scope, name, data, j, at, amount, created_at)"
                     f" ON s_caller.t TO {READER}", False),
    # ... but one column short, refused as a role with no SELECT.
    "columns_but_one": (f"REVOKE SELECT ON s_caller.t FROM {READER};"
                        f" GRANT SELECT ON s_caller.t TO {OWNER};"  # (not READER's)
                        f" GRANT SELECT (id, scope, name, data, j, at, created_at)"
                        f" ON s_caller.t TO {READER}", True),
    "row_security_on": ("ALTER TABLE s_caller.t ENABLE ROW LEVEL SECURITY;"
                        " CREATE POLICY p ON s_caller.t USING (id < 10)", True),
    "policy_forced_on_owner": (f"ALTER TABLE s_caller.t OWNER TO {READER};"
                               " ALTER TABLE s_caller.t ENABLE ROW LEVEL SECURITY;"
                               " ALTER TABLE s_caller.t FORCE ROW LEVEL SECURITY;"
                               " CREATE POLICY p ON s_caller.t USING (id < 10)", True),
    "schema_usage_revoked": (f"REVOKE USAGE ON SCHEMA s_caller FROM {READER}", False),
    "delete_pending": ("SELECT pgjobs.submit_delete('s_caller.t', '1', "
                       "'{\"id\": {\"$lt\": 11}}')", False),
}


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_a_change_between_two_reads_is_honoured_by_the_next(
        make_conn: Callable[[], Conn], admin: Conn, how: str) -> None:
    reader = _reader(make_conn)
    for _ in range(3):  # warm: plans cached, the trust verdict kept
        rows = _answer(reader, PAGE, ("s_caller.t", "1", None, 100))
        assert rows[0] == "ok" and len(rows[1]) == 20, rows  # type: ignore[arg-type]
    statements, refused = CHANGES[how]
    for statement in statements.split(";"):
        admin.execute(statement)
    # the next read, and one the full way, give the same answer (the table
    # named by its oid: naming it needs USAGE on its schema, reading it not)
    oid = str(scalar(admin, "SELECT 's_caller.t'::regclass::oid"))
    usual, full, _calls = _ways(reader, (oid, "1", None, 100))
    assert usual == full, (usual, full)
    if refused:
        _refused(reader)
    else:
        assert usual[0] == "ok", usual
        ids = sorted(r["id"] for r in usual[1])  # type: ignore[union-attr]
        assert ids == ([i for i in range(12, 41, 2)] if how == "delete_pending"
                       else list(range(2, 41, 2))), ids


def test_policy_dropped_and_row_security_off_read_again(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.execute("ALTER TABLE s_caller.t ENABLE ROW LEVEL SECURITY")
    admin.execute("CREATE POLICY p ON s_caller.t USING (id < 10)")
    reader = _reader(make_conn)
    _refused(reader)
    admin.execute("DROP POLICY p ON s_caller.t")
    _refused(reader)  # row security with no policy confines as much (nothing read)
    admin.execute("ALTER TABLE s_caller.t DISABLE ROW LEVEL SECURITY")
    for _ in range(2):  # the first keeps the trust verdict the refusals never reached
        usual, full, calls = _short_ways(reader, ("s_caller.t", "1", None, 100))
        assert usual == full and len(usual[1]) == 20, usual  # type: ignore[arg-type]
    assert calls == [0, 1]


def test_a_definer_wrapper_reads_for_its_owner_either_way(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """pgjobs.visible acts for its current_user: the owner of a SECURITY
    DEFINER function that calls it, whatever the session's role may read."""
    admin.execute(f"""
        CREATE FUNCTION public.caller_page() RETURNS jsonb[] LANGUAGE sql SECURITY DEFINER
        SET search_path = pg_catalog AS
        $f$ SELECT coalesce(array_agg(v), '{{}}') FROM pgjobs.visible('s_caller.t', '1') v $f$;
        ALTER FUNCTION public.caller_page() OWNER TO {OWNER};
        GRANT EXECUTE ON FUNCTION public.caller_page() TO {READER};""")
    reader = _reader(make_conn)
    call = "SELECT public.caller_page() WHERE %s::int IS NOT NULL"
    # the owner may not read, the session's role may: refused
    answer = _answer(reader, call, (1,))
    assert answer[0] == "42501" and OWNER in str(answer[1]), answer
    # the owner holds SELECT on every column but one, not on the table:
    # refused as the full way refuses it
    admin.execute(f"GRANT SELECT (id, scope, name, data, j, at, created_at)"
                  f" ON s_caller.t TO {OWNER}")
    for _ in range(2):
        # (the session's own read first: the trust verdict the short way needs)
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
        answer = _answer(reader, call, (1,))
        assert answer[0] == "42501" and "lacks SELECT on s_caller.t" in str(answer[1]), answer
    # on every column: read for the owner (the full way; h146: PostgreSQL
    # lets it read the table, so pgjobs does)
    admin.execute(f"GRANT SELECT (amount) ON s_caller.t TO {OWNER}")
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
        answer = _answer(reader, call, (1,))
        assert answer[0] == "ok" and len(answer[1]) == 20, answer  # type: ignore[arg-type]
    admin.execute(f"REVOKE SELECT (id, scope, name, data, j, at, amount, created_at)"
                  f" ON s_caller.t FROM {OWNER}")
    # the owner may read, the session's role may not: read (for the owner)
    admin.execute(f"GRANT SELECT ON s_caller.t TO {OWNER}")
    admin.execute(f"REVOKE SELECT ON s_caller.t FROM {READER}")
    for _ in range(2):
        answer = _answer(reader, call, (1,))
        assert answer[0] == "ok" and len(answer[1]) == 20, answer  # type: ignore[arg-type]


def test_the_statement_builder_tells_a_direct_caller_nothing_of_unreadable_tables(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """pgjobs._visible_page, called directly by a role that may not read the
    table, answers NULL, whether the table is registered or not, even in a
    session whose trust verdict on it is fresh; a role that may gets NULL
    too (it answers only pgjobs.visible's own call), while its
    pgjobs.visible takes the short way."""
    admin.execute("CREATE TABLE s_caller.plain (id bigint, scope int)")
    reader = _reader(make_conn)
    direct = "SELECT pgjobs._visible_page(%s, '1', NULL, 10)"
    for _ in range(2):  # the second with the verdict kept by a read
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
        assert scalar(reader, direct, ("s_caller.t",)) is None
    usual, full, calls = _short_ways(reader, ("s_caller.t", "1", None, 10))
    assert usual == full and calls == [0, 1], (usual, calls)
    admin.execute(f"REVOKE SELECT ON s_caller.t FROM {READER}")
    assert scalar(reader, direct, ("s_caller.t",)) is None
    assert scalar(reader, direct, ("s_caller.plain",)) is None
    # a SET ROLE session is judged by its role, not by its (superuser) login
    assert scalar(make_conn(), "SELECT session_user::text") != READER


# Settings a caller may change that shape how a value prints or how a scope
# or cursor parses: the short way reads in the caller's session as the
# full way does (both pin only search_path, standard_conforming_strings and
# extra_float_digits), so each must give the same rows, the short way taken.
CALLER_SETTINGS = [
    ("IntervalStyle", "sql_standard"), ("IntervalStyle", "iso_8601"),
    ("IntervalStyle", "postgres_verbose"), ("bytea_output", "escape"),
    ("TimeZone", "Asia/Kathmandu"), ("TimeZone", "America/St_Johns"),
    ("extra_float_digits", "-15"), ("extra_float_digits", "0"),
    ("DateStyle", "SQL, DMY"), ("DateStyle", "German"), ("lc_monetary", "C"),
    ("standard_conforming_strings", "off"), ("search_path", "pg_temp, public"),
]


@pytest.mark.parametrize(("setting", "value"), CALLER_SETTINGS,
                         ids=[f"{s}={v}" for s, v in CALLER_SETTINGS])
def test_every_column_prints_as_the_full_way_in_the_callers_settings(
        make_conn: Callable[[], Conn], admin: Conn, setting: str, value: str) -> None:
    admin.execute(f"""
        CREATE TABLE s_caller.v (k interval NOT NULL, scope timestamptz NOT NULL,
                                 b bytea, ts timestamp, tz timetz, d date, f8 float8,
                                 f4 real, m money, n numeric, iv interval,
                                 created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON s_caller.v (scope, k);
        INSERT INTO s_caller.v (k, scope, b, ts, tz, d, f8, f4, m, n, iv)
        SELECT i * interval '1 day 2 hours 3.5 seconds' - interval '1 month',
               '2026-03-04 05:06:07+00', convert_to('a\\' || i, 'UTF8'),
               '2026-01-02 03:04:05.678', '04:05:06+05:30', '2026-12-31',
               i / 3.0, i / 7.0, i * 1.25, i / 9.0, make_interval(years => i, secs => -i)
          FROM generate_series(1, 9) i;
        SELECT pgjobs.register_target('s_caller.v', 'k', 'scope', 'created_at');
        GRANT SELECT ON s_caller.v TO {READER};""")
    reader = _reader(make_conn)
    reader.execute("SELECT set_config(%s, %s, false)", (setting, value))
    scope = scalar(reader, "SELECT '2026-03-04 05:06:07+00'::timestamptz::text")
    cursor = scalar(reader, "SELECT (interval '3 days 6 hours 10.5 seconds' - interval '1 month')"
                            "::text")
    sizes = []
    for after in (None, cursor, "-27 2:00:00", "P-25D", "@ 23 days ago"):
        assert _answer(reader, PAGE, ("s_caller.v", scope, None, 1))[0] == "ok"
        usual, full, calls = _short_ways(reader, ("s_caller.v", scope, after, 5))
        assert usual == full and usual[0] == "ok", (after, usual, full)
        assert calls == [0, 1], (after, calls)  # the short way read it
        sizes.append(len(usual[1]))  # type: ignore[arg-type]
    assert sizes[:2] == [5, 5] and sizes[-1] < 5, sizes


# Errors of the session, not of the page: raised by the short way itself,
# never tried again the full way (which would wait out the lock again).
SESSION_ERRORS = [("lock_timeout", "55P03"), ("statement_timeout", "57014")]


@pytest.mark.parametrize(("setting", "sqlstate"), SESSION_ERRORS,
                         ids=[s for s, _ in SESSION_ERRORS])
def test_an_error_of_the_session_on_the_short_way_reaches_the_caller_once(
        make_conn: Callable[[], Conn], admin: Conn, setting: str, sqlstate: str) -> None:
    reader = _reader(make_conn)
    locker = make_conn()
    # Up to five times while the full way was entered: the trust verdict the
    # short way needs lasts 1 s (pgjobs._verdict_fresh), and a loaded machine
    # can pause longer than that between the warm read and the locked one.
    for _ in range(5):
        for _ in range(2):
            assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
        with locker.transaction():
            locker.execute("LOCK TABLE s_caller.t IN ACCESS EXCLUSIVE MODE")
            try:
                with reader.transaction():
                    reader.execute(f"SET LOCAL {setting} = '200ms'")
                    reader.execute(PAGE, ("s_caller.t", "1", None, 100))
            except psycopg.Error as exc:
                error = exc
            else:
                pytest.fail("a page of a locked table was read")
        assert error.sqlstate == sqlstate, (error.sqlstate, error)
        context = error.diag.context or ""
        if "_visible_as" not in context:
            break
    # raised where the short way waited, the full body never entered
    assert "pgjobs.visible(" in context and "_visible_as" not in context, context


def _tenant_page(session: Conn, scope: str, full: bool = False) -> tuple[object, ...]:
    return _answer(session, FULL_PAGE if full else PAGE, ("s_caller.t", scope, None, 100))


# However pgjobs.allowed_scopes came to be set (at login, for the session,
# for the transaction, in the middle of one, by a function's SET clause),
# after a warm read that kept the trust verdict: another tenant's scope,
# however spelt, is refused as the full way refuses it.
TENANCY = ["database", "session", "set_local", "set_config_local", "function_setting"]


@pytest.mark.parametrize("how", TENANCY)
def test_a_scope_outside_allowed_scopes_is_refused_however_the_list_was_set(
        make_conn: Callable[[], Conn], admin: Conn, how: str) -> None:
    page = PAGE
    if how == "database":
        database = scalar(admin, "SELECT current_database()")
        admin.execute(f"ALTER DATABASE \"{database}\" SET pgjobs.allowed_scopes = '1'")
    if how == "function_setting":
        admin.execute(f"""
            CREATE FUNCTION public.tenant_page(regclass, text, text, int) RETURNS jsonb[]
            LANGUAGE sql SET pgjobs.allowed_scopes = '1' AS
            $f$ SELECT coalesce(array_agg(v), '{{}}')
                  FROM pgjobs.visible($1, $2, '{{}}', $3, $4) v $f$;
            GRANT EXECUTE ON FUNCTION public.tenant_page(regclass, text, text, int) TO {READER};""")
        page = "SELECT public.tenant_page(%s, %s, %s, %s)"
    reader = _reader(make_conn)
    if how == "database":
        admin.execute(f"ALTER DATABASE \"{database}\" RESET pgjobs.allowed_scopes")
    if how == "session":
        reader.execute("SET pgjobs.allowed_scopes = '1'")
    with reader.transaction():
        for _ in range(2):
            assert _answer(reader, page, ("s_caller.t", "1", None, 100))[0] == "ok"
            if how == "set_local":
                reader.execute("SET LOCAL pgjobs.allowed_scopes = '1'")
            if how == "set_config_local":
                reader.execute("SELECT set_config('pgjobs.allowed_scopes', '1', true)")
            for scope in ("2", "02", " 2", "+2", "2 "):
                answer = _answer(reader, page, ("s_caller.t", scope, None, 100))
                assert answer[0] == "42501", (scope, answer)
                assert "allowed_scopes" in str(answer[1]), answer
                if page == PAGE:
                    assert answer == _tenant_page(reader, scope, full=True), scope
            for scope in ("1", "01", " 1"):
                answer = _answer(reader, page, ("s_caller.t", scope, None, 100))
                assert answer[0] == "ok" and len(answer[1]) == 20, (scope, answer)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["queued", "running", "paused", "succeeded", "failed",
                                    "canceled"])
def test_a_delete_in_each_status_masks_as_the_full_way_masks(
        make_conn: Callable[[], Conn], admin: Conn, status: str) -> None:
    """Whether the short way may read (no delete pending) is asked of the
    same jobs the full way's mask reads, in every status a job can have."""
    job = scalar(admin, "SELECT pgjobs.submit_delete('s_caller.t', '01', "
                        "'{\"id\": {\"$lt\": 11}}')")
    admin.execute("UPDATE pgjobs.jobs SET status = %s,"
                  " lease_expires_at = CASE WHEN %s = 'running' THEN now() + interval '1 h' END,"
                  " worker = coalesce(worker, 'w'),"
                  " finished_at = CASE WHEN %s IN ('succeeded', 'failed', 'canceled')"
                  " THEN now() END WHERE id = %s", (status, status, status, job))
    reader = _reader(make_conn)
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "2", None, 100))[0] == "ok"
        usual, full, calls = _short_ways(reader, ("s_caller.t", "1", None, 100))
        assert usual == full and usual[0] == "ok", (usual, full)
    ids = sorted(r["id"] for r in usual[1])  # type: ignore[union-attr]
    pending = status in ("queued", "running", "paused")
    assert ids == list(range(12 if pending else 2, 41, 2)), ids
    assert calls == ([1, 1] if pending else [0, 1]), calls


def test_a_delete_submitted_in_the_readers_own_transaction_masks_its_next_read(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.execute(f"GRANT DELETE ON s_caller.t TO {READER}")
    reader = _reader(make_conn)
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
    with reader.transaction():
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
        reader.execute("SELECT pgjobs.submit_delete('s_caller.t', ' 1', '{\"id\": {\"$lt\": 11}}')")
        usual = _answer(reader, PAGE, ("s_caller.t", "1", None, 100))
        assert usual == _answer(reader, FULL_PAGE, ("s_caller.t", "1", None, 100))
        ids = sorted(r["id"] for r in usual[1])  # type: ignore[union-attr]
        assert ids == list(range(12, 41, 2)), ids
        # (the read is one statement: its own snapshot for the probe and the page)
        rows = scalar(reader, "SELECT count(*) FROM pgjobs.visible('s_caller.t', '1') v,"
                              " pgjobs.visible('s_caller.t', '1') w WHERE v = w")
        assert rows == 15, rows


def test_the_statement_builder_tells_a_tenant_or_a_column_reader_nothing(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """pgjobs._visible_page called directly: under pgjobs.allowed_scopes it
    answers NULL for every scope, its own or another tenant's, a delete
    pending on it or not (no oracle of another tenant's jobs); a role that
    may SELECT some columns only gets NULL too."""
    admin.execute("SELECT pgjobs.submit_delete('s_caller.t', '2', '{\"id\": {\"$lt\": 11}}')")
    reader = _reader(make_conn)
    direct = "SELECT pgjobs._visible_page('s_caller.t', %s, NULL, 10)"
    assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
    answers = {scope: scalar(reader, direct, (scope,)) for scope in ("1", "2")}
    # (pending on 2; only pgjobs.visible's own call is answered)
    assert answers == {"1": None, "2": None}, answers
    reader.execute("SET pgjobs.allowed_scopes = '1'")
    assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
    for scope in ("1", "2", "3"):
        assert scalar(reader, direct, (scope,)) is None, scope
    reader.execute("RESET pgjobs.allowed_scopes")
    admin.execute(f"REVOKE SELECT ON s_caller.t FROM {READER}")
    admin.execute(f"GRANT SELECT (id, scope, name, data, j, at, amount, created_at)"
                  f" ON s_caller.t TO {READER}")
    for scope in ("1", "2"):
        assert scalar(reader, direct, (scope,)) is None, scope


def test_shadows_in_the_callers_temporary_schema_change_nothing(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """The page's statement runs in the caller's session: a temporary
    function, operator, type or table of the caller's named as the
    statement's own are never taken for them (pgjobs.visible's pinned
    search_path; pg_temp is never searched for functions or operators)."""
    reader = _reader(make_conn)
    expected = _ways(reader, ("s_caller.t", "1", "7", 5))[1]
    reader.execute("""
        CREATE TEMP TABLE t (id bigint, scope int);
        INSERT INTO pg_temp.t VALUES (9, 1);
        CREATE FUNCTION pg_temp.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
            AS $f$ SELECT '"shadowed"'::jsonb $f$;
        CREATE FUNCTION pg_temp.always(bigint, bigint) RETURNS boolean LANGUAGE sql
            AS $f$ SELECT true $f$;
        CREATE FUNCTION pg_temp.always_int(integer, integer) RETURNS boolean LANGUAGE sql
            AS $f$ SELECT true $f$;
        CREATE OPERATOR pg_temp.> (LEFTARG = bigint, RIGHTARG = bigint,
                                   FUNCTION = pg_temp.always);
        CREATE OPERATOR pg_temp.= (LEFTARG = integer, RIGHTARG = integer,
                                   FUNCTION = pg_temp.always_int);
        CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (false);
        SET search_path = pg_temp, public;""")
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
        usual, full, calls = _short_ways(reader, ("s_caller.t", "1", "7", 5))
        assert usual == full == expected and calls == [0, 1], (usual, full, calls)
        usual, full, calls = _ways(reader, ("s_caller.u", "acme", None, 3))
        assert usual == full and usual[0] == "ok" and len(usual[1]) == 3, usual  # type: ignore[arg-type]
    assert [r["id"] for r in expected[1]] == [8, 10, 12, 14, 16]  # type: ignore[union-attr]


# Changes to the table after its registration, between two reads of a warm
# session: the short way looks each column up by name as the full way does,
# reads an inheritance child's rows as the full way does (through the
# parent: the child's own grants and row security are not the parent's),
# and answers the same rows or the same error.
TABLE_CHANGES = {
    "key_renamed_and_replaced": ["ALTER TABLE s_caller.t RENAME id TO id_old",
                                 "ALTER TABLE s_caller.t ADD COLUMN id text"],
    "key_and_name_swapped": ["ALTER TABLE s_caller.t RENAME id TO tmp",
                             "ALTER TABLE s_caller.t RENAME name TO id",
                             "ALTER TABLE s_caller.t RENAME tmp TO name"],
    "scope_retyped": ["ALTER TABLE s_caller.t ALTER scope TYPE text"],
    "key_retyped_collated": ["ALTER TABLE s_caller.t ALTER id TYPE text COLLATE \"C\""],
    "key_dropped": ["ALTER TABLE s_caller.t DROP COLUMN id"],
    "array_added": ["ALTER TABLE s_caller.t ADD COLUMN arr int[] DEFAULT '[0:0]={1}'"],
    "child_with_row_security": [
        "CREATE TABLE s_caller.c (extra int) INHERITS (s_caller.t)",
        "INSERT INTO s_caller.c (id, scope, name) VALUES (3, 1, 'child'), (100, 1, 'c')",
        "ALTER TABLE s_caller.c ENABLE ROW LEVEL SECURITY"],
}


@pytest.mark.parametrize("how", sorted(TABLE_CHANGES))
def test_a_table_changed_after_registration_reads_as_the_full_way(
        make_conn: Callable[[], Conn], admin: Conn, how: str) -> None:
    reader = _reader(make_conn)
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
    for statement in TABLE_CHANGES[how]:
        admin.execute(statement)
    pages: tuple[object, ...] = ()
    for after in (None, "5", "'x"):
        for _ in range(2):  # the second in a session whose verdict is fresh
            _answer(reader, PAGE, ("s_caller.t", "2", None, 1))
            usual, full, _calls = _ways(reader, ("s_caller.t", "1", after, 100))
            assert usual == full, (after, usual, full)
            pages = pages if after else usual
    if how == "child_with_row_security":
        assert [r["id"] for r in pages[1]][:3] == [2, 3, 4], pages  # type: ignore[index]


# A session confined by pgjobs.allowed_scopes (the list) reading one scope:
# (list, target, scope, whether the full way reads it). A scope the list
# allows, however either is spelt, takes the short way; anything else (a
# scope outside the list, a malformed or empty list, an entry or a scope
# that is no value of the column) is refused by the full way, with its own
# SQLSTATE, message and hint.
CONFINED = [
    ("1", "s_caller.t", "1", True),
    ("1", "s_caller.t", "01", True),
    ("1", "s_caller.t", " 1", True),
    ("01 , 2", "s_caller.t", "+1", True),
    ('"1"', "s_caller.t", "1", True),
    ('2, "01"', "s_caller.t", "1", True),
    ("x, 1", "s_caller.t", "1", True),
    ("acme", "s_caller.u", "acme", True),
    (' "acme" ', "s_caller.u", "acme", True),
    ("1.0", "s_caller.n", "1.0", True),
    ("1.0", "s_caller.n", "1.00", True),     # equal numerics, spelt otherwise
    ("1", "s_caller.n", "1.0", True),
    ("1.0", "s_caller.n", "1", True),
    ("1.5, 2", "s_caller.n", "1.0", False),
    ("1", "s_caller.t", "2", False),
    ("1", "s_caller.t", "x", False),
    ("1", "s_caller.t", None, False),
    ("x", "s_caller.t", "1", False),
    ("ACME", "s_caller.u", "acme", False),
    ("acme", "s_caller.u", "ACME", False),
    ('"acme "', "s_caller.u", "acme", False),
    ('" acme"', "s_caller.u", "acme", False),
    ('"1', "s_caller.t", "1", False),        # malformed: a quote never closed
    ('"1" 2', "s_caller.t", "1", False),     # malformed: text after a closing quote
    (",", "s_caller.t", "1", False),         # entries all empty: allows nothing
    (" , ,", "s_caller.t", "1", False),
]


@pytest.fixture
def numeric_scopes(admin: Conn) -> Conn:
    """Table s_caller.n, scoped by numeric: rows of 1, 1.0 and 1.00, equal
    as numerics, so one tenant however its scope is spelt."""
    admin.execute(f"""
        CREATE TABLE s_caller.n (id bigint NOT NULL, scope numeric NOT NULL,
                                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON s_caller.n (scope, id);
        INSERT INTO s_caller.n (id, scope)
        SELECT i, (ARRAY['1', '1.0', '1.00'])[1 + i % 3]::numeric FROM generate_series(1, 12) i;
        SELECT pgjobs.register_target('s_caller.n', 'id', 'scope', 'created_at');
        GRANT SELECT ON s_caller.n TO {READER};""")
    return admin


def _confined_ways(session: Conn, args: tuple[object, ...], short: bool) -> tuple[
        tuple[object, ...], tuple[object, ...], list[int]]:
    """_ways, or _short_ways where the page is expected to take the short way."""
    return _short_ways(session, args) if short else _ways(session, args)


@pytest.mark.parametrize("case", CONFINED, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONFINED])
def test_a_confined_session_reads_its_scopes_the_short_way_as_the_full_way(
        make_conn: Callable[[], Conn], numeric_scopes: Conn, case: tuple[Any, ...]) -> None:
    listed, target, scope, readable = case
    reader = _reader(make_conn)
    good = (target, {"s_caller.u": "acme"}.get(target, "1"), None, 1)
    fresh = False
    for _ in range(5):  # the verdict (1 s) must be fresh as the confined page is read
        reader.execute("RESET pgjobs.allowed_scopes")
        assert _answer(reader, FULL_PAGE, good)[0] == "ok"  # keeps the trust verdict
        reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
        usual, full, calls = _confined_ways(reader, (target, scope, None, 100), readable)
        reader.execute("RESET pgjobs.allowed_scopes")
        # still fresh after, so fresh as the page was read: the short way was open to it
        if _ways(reader, good)[2] == [0, 1]:
            fresh = True
            break
    assert fresh, "the reader's verdict never read as fresh"
    assert usual == full, (usual, full)
    if readable:
        assert usual[0] == "ok" and usual[1] and calls == [0, 1], (usual, calls)
    else:
        # refused by the full way itself (a call that raises is not counted)
        assert usual[0] == "42501" and "allowed_scopes" in str(usual[1]), usual
        assert calls[1] == 1, calls


def test_a_confined_list_changed_between_reads_is_honoured_by_the_next(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """One warm session, its list changed by SET, SET LOCAL, set_config and
    RESET between two reads and inside a transaction: each read is judged
    by the list as it is then, the allowed ones the short way."""
    reader = _reader(make_conn)

    def read(scope: str, allowed: bool) -> None:
        usual, full, calls = _confined_ways(reader, ("s_caller.t", scope, None, 100), allowed)
        assert usual == full, (scope, usual, full)
        assert (usual[0] == "ok") is allowed, (scope, usual)
        assert calls == [0, 1] if allowed else calls[1] == 1, (scope, calls)

    reader.execute("SET pgjobs.allowed_scopes = '1'")
    read("1", True)
    read("2", False)
    reader.execute("SET pgjobs.allowed_scopes = '2'")
    read("1", False)
    read("2", True)
    reader.execute("RESET pgjobs.allowed_scopes")
    read("1", True)
    with reader.transaction():
        reader.execute("SET LOCAL pgjobs.allowed_scopes = '2'")
        read("1", False)
        read("2", True)
        reader.execute("SELECT set_config('pgjobs.allowed_scopes', '1', true)")
        read("2", False)
        read("1", True)
        reader.execute("SET LOCAL pgjobs.allowed_scopes = ','")  # allows nothing
        read("1", False)
        reader.execute("RESET pgjobs.allowed_scopes")
        read("2", True)
    reader.execute("SET pgjobs.allowed_scopes = '2'")
    with reader.transaction():
        reader.execute("SET LOCAL pgjobs.allowed_scopes = '1'")
        read("1", True)
    read("1", False)  # the transaction's list is gone with it
    read("2", True)


def test_a_list_set_before_set_role_or_by_a_definer_function_confines_alike(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A list set by the login role before SET ROLE confines the role's
    reads, and one set by a function's SET clause confines the reads the
    function makes (a SECURITY DEFINER function owned by the reader): the
    allowed scope the short way, another refused as the full way refuses it."""
    session = make_conn()
    session.execute("SET track_functions = 'all'")
    session.execute("SET pgjobs.allowed_scopes = '2'")
    session.execute(f"SET ROLE {READER}")
    usual, full, calls = _short_ways(session, ("s_caller.t", "2", None, 100))
    assert usual == full and usual[0] == "ok" and calls == [0, 1], (usual, calls)
    usual, full, calls = _ways(session, ("s_caller.t", "1", None, 100))
    assert usual == full and usual[0] == "42501" and calls[1] == 1, (usual, calls)
    session.execute("RESET ROLE")
    session.execute("RESET pgjobs.allowed_scopes")
    admin.execute(f"""
        CREATE FUNCTION public.confined_page(p_scope text, p_filter jsonb) RETURNS jsonb[]
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
            SET pgjobs.allowed_scopes = '1' AS
            $f$ BEGIN RETURN (SELECT coalesce(array_agg(v), '{{}}')
                                FROM pgjobs.visible('s_caller.t', p_scope, p_filter) v); END $f$;
        ALTER FUNCTION public.confined_page(text, jsonb) OWNER TO {READER};
        GRANT EXECUTE ON FUNCTION public.confined_page(text, jsonb) TO {READER};""")
    # (run by a session whose role may read the table: the builder judges it)
    caller = _reader(make_conn)
    usual_sql = "SELECT public.confined_page(%s, '{}')"
    full_sql = "SELECT public.confined_page(%s, '{\"created_at\": {\"$lt\": \"infinity\"}}')"
    count = "SELECT coalesce(pg_stat_get_xact_function_calls(%s::regprocedure), 0)"
    for scope, allowed in (("01", True), ("2", False)):
        for _ in range(5):  # the verdict lasts 1 s: asked again while the full way ran
            with caller.transaction():
                before = int(scalar(caller, count, (FULL,)))
                usual = _answer(caller, usual_sql, (scope,))
                ran_full = int(scalar(caller, count, (FULL,))) - before
            full = _answer(caller, full_sql, (scope,))
            assert usual == full, (scope, usual, full)
            if not allowed or ran_full == 0:
                break
        # (a refused call raises, and is not counted)
        assert (usual[0] == "ok") is allowed and ran_full == 0, (scope, usual, ran_full)
        assert "allowed_scopes" in str(usual[1]) or allowed, usual
