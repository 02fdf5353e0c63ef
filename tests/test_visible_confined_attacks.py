"""An attacker's review of `visible`'s short way for confined sessions.

A session confined by pgjobs.allowed_scopes (a tenant's) now reads its
own scopes the short way (pgjobs._visible_page builds the page, which
pgjobs.visible runs as the caller). The class of bug this guards: a
confined session that reads, counts or learns anything of a scope outside
its list, or whose answer differs from the full way's (rows, or SQLSTATE,
message and hint), in the variants of how the list is set and how the
read is made that tests/test_visible_as_caller.py does not try: a
savepoint rolled back, a prepared statement and a PL/pgSQL function whose
plans outlive a change of the list, a cursor, a view and an inlined SQL
function, SET SESSION AUTHORIZATION, spellings of the list and of the
scope (JSON, arrays, duplicates, empty entries, a huge list, uuids), a
delete pending inside or outside the list; and the builder's call-stack
check against functions that imitate pgjobs.visible's frame by name.
Which way was taken is counted (track_functions), never timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests import test_visible_as_caller as base
from tests.support import scalar
from tests.test_visible_as_caller import FULL_PAGE, PAGE, _answer, _reader, _short_ways, _ways

admin = base.admin  # the fixture: roles, tables s_caller.t (int scopes 1, 2) and s_caller.u

Conn = psycopg.Connection[Any]
READER = base.READER
FULL = base.FULL
SHORT = base.SHORT
COUNT = "SELECT coalesce(pg_stat_get_xact_function_calls(%s::regprocedure), 0)"


def _read(session: Conn, scope: str, allowed: bool, target: str = "s_caller.t") -> Any:
    """One page of scope both ways: equal answers; an allowed scope read the
    short way (asked again while the 1 s verdict was not fresh), any other
    refused by the full way's own 42501 while the short way was open to it."""
    args = (target, scope, None, 100)
    usual, full, calls = _short_ways(session, args) if allowed else _refused_ways(session, args)
    assert usual == full, (scope, usual, full)
    if allowed:
        assert usual[0] == "ok" and usual[1] and calls == [0, 1], (scope, usual, calls)
    else:
        assert usual[0] == "42501" and "allowed_scopes" in str(usual[1]), (scope, usual)
        assert calls[1] == 1, (scope, calls)
    return usual


def _via(session: Conn, sql: str, args: tuple[object, ...] | None = None) -> tuple[
        tuple[object, ...], list[int]]:
    """The answer of sql and how often it ran the full body and the builder."""
    with session.transaction():
        before = [int(scalar(session, COUNT, (f,))) for f in (FULL, SHORT)]
        answer = _answer(session, sql, args or ())
        after = [int(scalar(session, COUNT, (f,))) for f in (FULL, SHORT)]
    return answer, [a - b for a, b in zip(after, before, strict=True)]


def _refused_ways(session: Conn, args: tuple[object, ...]) -> tuple[
        tuple[object, ...], tuple[object, ...], list[int]]:
    """_ways for a page the short way must not read, asked while the session's
    trust verdict is fresh (so the short way was open to it): a fresh read
    before, and one after that still takes the short way, else again (up to
    five times: the verdict lasts 1 s)."""
    for _ in range(5):
        _fresh(session)
        usual, full, calls = _ways(session, args)
        with session.transaction():  # (the list restored: a savepoint keeps SET LOCAL)
            saved = scalar(session, "SELECT current_setting('pgjobs.allowed_scopes', true)")
            session.execute("SELECT set_config('pgjobs.allowed_scopes', '', true)")
            after = _via(session, PAGE, (args[0], "1" if args[0] == "s_caller.t" else A,
                                          None, 1))[1]
            session.execute("SELECT set_config('pgjobs.allowed_scopes', %s, true)",
                            (saved or "",))
        if after == [0, 1]:
            return usual, full, calls
    raise AssertionError("the session's verdict never read as fresh")


def _fresh(session: Conn) -> None:
    """A full read that keeps the trust verdict, unconfined, list untouched."""
    with session.transaction():
        saved = scalar(session, "SELECT current_setting('pgjobs.allowed_scopes', true)")
        session.execute("SELECT set_config('pgjobs.allowed_scopes', '', true)")
        assert _answer(session, FULL_PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
        session.execute("SELECT set_config('pgjobs.allowed_scopes', %s, true)", (saved or "",))


def test_a_list_rolled_back_to_a_savepoint_confines_as_before_it(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """SET LOCAL inside a savepoint widened or changed the list; ROLLBACK TO
    SAVEPOINT (and a failed subtransaction) restores the list as it was,
    and the next read is judged by it."""
    reader = _reader(make_conn)
    reader.execute("SET pgjobs.allowed_scopes = '2'")
    with reader.transaction():
        reader.execute("SAVEPOINT widen")
        reader.execute("SET LOCAL pgjobs.allowed_scopes = '1, 2'")
        _read(reader, "1", True)
        reader.execute("ROLLBACK TO SAVEPOINT widen")
        _read(reader, "1", False)
        _read(reader, "2", True)
        reader.execute("SAVEPOINT unset")
        reader.execute("RESET pgjobs.allowed_scopes")
        _read(reader, "1", True)
        reader.execute("ROLLBACK TO SAVEPOINT unset")
        _read(reader, "1", False)
        with pytest.raises(psycopg.errors.DivisionByZero), reader.transaction():
            reader.execute("SELECT set_config('pgjobs.allowed_scopes', '1', true)")
            reader.execute("SELECT 1 / 0")
        _read(reader, "1", False)
    _read(reader, "1", False)
    _read(reader, "2", True)


def test_a_prepared_statement_and_a_cached_plpgsql_plan_judge_the_list_at_each_call(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A generic plan prepared while the list allowed a scope, and a PL/pgSQL
    function's cached plan, read that scope only while the list still allows
    it; after a change they refuse it as the full way does."""
    admin.execute(f"""
        CREATE FUNCTION public.tenant_page(p_scope text, p_filter jsonb) RETURNS jsonb[]
            LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS
            $f$ DECLARE v jsonb[];
                BEGIN SELECT coalesce(array_agg(r), '{{}}') INTO v
                        FROM pgjobs.visible('s_caller.t', p_scope, p_filter) r;
                      RETURN v; END $f$;
        GRANT EXECUTE ON FUNCTION public.tenant_page(text, jsonb) TO {READER};""")
    reader = _reader(make_conn)
    reader.execute("SET plan_cache_mode = force_generic_plan")
    reader.execute("PREPARE tenant(text) AS SELECT coalesce(array_agg(v), '{}') "
                   "FROM pgjobs.visible('s_caller.t', $1) v")
    full_filter = '{"created_at": {"$lt": "infinity"}}'
    reader.execute("SET pgjobs.allowed_scopes = '1'")
    for _ in range(3):  # plans kept across calls
        for sql in ("EXECUTE tenant('1')", "SELECT public.tenant_page('1', '{}')"):
            answer = None
            for _ in range(5):  # the verdict lasts 1 s
                _fresh(reader)
                answer, calls = _via(reader, sql)
                if calls == [0, 1]:
                    break
            assert answer is not None and answer[0] == "ok" and calls == [0, 1], (sql, calls)
            assert answer == _answer(reader, "SELECT public.tenant_page(%s, %s)",
                                     ("1", full_filter))
    reader.execute("SET pgjobs.allowed_scopes = '2'")
    for sql in ("EXECUTE tenant('1')", "SELECT public.tenant_page('1', '{}')"):
        _fresh(reader)
        answer, calls = _via(reader, sql)
        assert answer == _answer(reader, "SELECT public.tenant_page(%s, %s)", ("1", full_filter))
        assert answer[0] == "42501" and "scope '1' is not in" in str(answer[1]), (sql, answer)


def test_a_cursor_is_judged_by_the_list_as_it_is_when_first_fetched(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """DECLARE over pgjobs.visible while the list allows the scope, then the
    list narrowed before the first FETCH: refused as the full way's cursor
    is; a cursor declared outside the list and fetched after it allows the
    scope reads the same rows either way."""
    reader = _reader(make_conn)
    answers: list[tuple[object, ...]] = []
    for flt in ("{}", '{"created_at": {"$lt": "infinity"}}'):
        try:
            with reader.transaction():
                reader.execute("SET LOCAL pgjobs.allowed_scopes = '1'")
                reader.execute("DECLARE c CURSOR FOR SELECT v FROM "
                               "pgjobs.visible('s_caller.t', '1', %s::jsonb) v", (flt,))
                reader.execute("SET LOCAL pgjobs.allowed_scopes = '2'")
                answers.append(("ok", reader.execute("FETCH ALL FROM c").fetchall()))
        except psycopg.Error as exc:
            answers.append((exc.sqlstate, exc.diag.message_primary, exc.diag.message_hint))
    assert answers[0] == answers[1] and answers[0][0] == "42501", answers
    rows = []
    for flt in ("{}", '{"created_at": {"$lt": "infinity"}}'):
        with reader.transaction():
            _fresh(reader)
            reader.execute("SET LOCAL pgjobs.allowed_scopes = '2'")
            reader.execute("DECLARE c CURSOR FOR SELECT v FROM "
                           "pgjobs.visible('s_caller.t', '1', %s::jsonb) v", (flt,))
            reader.execute("SET LOCAL pgjobs.allowed_scopes = '01'")
            rows.append(reader.execute("FETCH 3 FROM c").fetchall()
                        + reader.execute("FETCH ALL FROM c").fetchall())
    assert rows[0] == rows[1] and len(rows[0]) == 20, rows


def test_a_view_and_an_inlined_sql_function_confine_alike(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A view over pgjobs.visible (owned by a superuser) and an SQL function
    the planner inlines into the caller's query: the reader's list decides,
    the allowed scope the short way, another refused as the full way."""
    admin.execute(f"""
        CREATE FUNCTION public.rows_of(p_scope text) RETURNS SETOF jsonb
            LANGUAGE sql STABLE AS
            $f$ SELECT v FROM pgjobs.visible('s_caller.t', p_scope) v $f$;
        CREATE VIEW public.tenant_rows AS
            SELECT v FROM pgjobs.visible('s_caller.t', current_setting('app.scope')) v;
        GRANT SELECT ON public.tenant_rows TO {READER};
        GRANT EXECUTE ON FUNCTION public.rows_of(text) TO {READER};""")
    reader = _reader(make_conn)
    reader.execute("SET pgjobs.allowed_scopes = '2'")
    full = {s: _answer(reader, FULL_PAGE, ("s_caller.t", s, None, 100)) for s in ("1", "2")}
    for scope, allowed in (("2", True), ("1", False)):
        for sql in ("SELECT coalesce(array_agg(v), '{}') FROM public.rows_of(%s) v",
                    "SELECT coalesce(array_agg(v), '{}') FROM public.tenant_rows "
                    "WHERE %s::text IS NOT NULL"):
            answer: tuple[object, ...] = ()
            calls: list[int] = []
            for _ in range(5):
                reader.execute("SELECT set_config('app.scope', %s, false)", (scope,))
                _fresh(reader)
                answer, calls = _via(reader, sql, (scope,))
                if not allowed or calls == [0, 1]:
                    break
            assert answer == full[scope], (sql, scope, answer, full[scope])
            assert calls == [0, 1] if allowed else calls[1] == 1, (sql, scope, calls)


# (list, scope, allowed): spellings of the list an application or an
# attacker may send, against integer scopes 1 and 2.
SPELLINGS: list[tuple[str | None, str, bool]] = [
    (None, "1", True),                   # set_config(..., NULL): no list at all
    ("1,1", "1", True),                  # duplicates
    ("1,,2", "2", True),                 # an empty entry between
    ("1,,", "2", False),
    ('["2"]', "2", False),               # JSON is one entry, no value of the column
    ("{2}", "2", False),                 # an array literal likewise
    ("{1,2}", "2", False),
    ('1, "2"', "2", True),
    ('"2 "', "2", True),                 # int4 input allows the blanks
    ('""', "1", False),                  # the empty tenant: no integer
    ("1e0", "1", False),                 # no integer either
    ("2", "2.0", False),                 # the scope no integer
    ("2", "0002", True),
    ("-0", "0", True),                   # the same integer: an empty page, the short way
    ("1", "1;2", False),
    ("1", "1,2", False),                 # the scope is one value, never a list
    ("1", "'1' OR true", False),
]


@pytest.mark.parametrize("case", SPELLINGS, ids=[f"{c[0]}-{c[1]}" for c in SPELLINGS])
def test_spellings_of_the_list_and_the_scope_answer_as_the_full_way(
        make_conn: Callable[[], Conn], admin: Conn, case: tuple[str | None, str, bool]) -> None:
    listed, scope, allowed = case
    reader = _reader(make_conn)
    reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
    current = scalar(reader, "SELECT current_setting('pgjobs.allowed_scopes')")
    assert (current or "") == (listed or ""), current
    args = ("s_caller.t", scope, None, 100)
    usual, full, calls = _short_ways(reader, args) if allowed else _refused_ways(reader, args)
    assert usual == full, (usual, full)
    if allowed:
        assert usual[0] == "ok" and calls == [0, 1], (usual, calls)
    else:
        assert usual[0] in ("42501", "22023"), usual
        assert calls[1] <= 1, calls


def test_a_huge_list_allows_its_last_entry_only_and_the_short_way_reads_it(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    listed = ",".join([f"t{i}" for i in range(20000)] + ["2"])
    reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
    rows = _read(reader, "2", True)[1]
    assert sorted(r["scope"] for r in rows) == [2] * 20, rows
    # (a scope outside it is compared with every entry: a shorter list, so
    # the refusal ends within the verdict's second that shows it was fresh)
    listed = ",".join([f"t{i}" for i in range(200)] + ["2"])
    reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
    _read(reader, "1", False)


@pytest.fixture
def uuid_scopes(admin: Conn) -> Conn:
    """Table s_caller.w, scoped by uuid: two tenants, 5 rows each."""
    admin.execute(f"""
        CREATE TABLE s_caller.w (id bigint NOT NULL, tenant uuid NOT NULL,
                                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON s_caller.w (tenant, id);
        INSERT INTO s_caller.w (id, tenant)
        SELECT i, CASE WHEN i % 2 = 0 THEN 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid
                       ELSE 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'::uuid END
          FROM generate_series(1, 10) i;
        SELECT pgjobs.register_target('s_caller.w', 'id', 'tenant', 'created_at');
        GRANT SELECT ON s_caller.w TO {READER};""")
    return admin


A = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
UUIDS = [
    (A, A.upper(), True),
    (A.upper(), A, True),
    ("{" + A + "}", A, True),
    (A.replace("-", ""), A, True),
    (A, "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", False),
    (A[:-1] + "2", A, False),
    (A + "0", A, False),
]


@pytest.mark.parametrize("case", UUIDS, ids=[f"{i}" for i in range(len(UUIDS))])
def test_uuid_scopes_spelt_otherwise_read_one_tenant_as_the_full_way(
        make_conn: Callable[[], Conn], uuid_scopes: Conn, case: tuple[str, str, bool]) -> None:
    listed, scope, allowed = case
    reader = _reader(make_conn)
    _fresh(reader)
    reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
    answer = _read(reader, scope, allowed, "s_caller.w")
    if allowed:
        rows = answer[1]
        assert {r["tenant"] for r in rows} == {A} and len(rows) == 5, answer


def test_a_delete_pending_outside_the_list_changes_no_answer(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """Whether a delete is pending on a scope outside the list is no oracle:
    the refusal is the same before and after it is submitted, and its rows
    stay unread; one pending inside the list masks as the full way."""
    reader = _reader(make_conn)
    reader.execute("SET pgjobs.allowed_scopes = '1'")
    before = {s: _refused_ways(reader, ("s_caller.t", s, None, 100))[0]
              for s in ("2", "02", "3")}
    admin.execute("SELECT pgjobs.submit_delete('s_caller.t', '2', '{\"id\": {\"$lt\": 11}}')")
    admin.execute("SELECT pgjobs.submit_delete('s_caller.t', '3', '{}')")
    after = {s: _refused_ways(reader, ("s_caller.t", s, None, 100))[0]
             for s in ("2", "02", "3")}
    assert before == after and {a[0] for a in after.values()} == {"42501"}, (before, after)
    _read(reader, "1", True)
    admin.execute("SELECT pgjobs.submit_delete('s_caller.t', '1', '{\"id\": {\"$lt\": 11}}')")
    usual, full, calls = _ways(reader, ("s_caller.t", "1", None, 100))
    assert usual == full and calls == [1, 1], (usual, calls)
    rows: Any = usual[1]
    assert [r["id"] for r in rows] == list(range(12, 41, 2)), usual


def test_session_authorization_and_role_changes_keep_the_list(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """The list belongs to the session, whatever role it acts as: set before
    SET SESSION AUTHORIZATION, kept across SET ROLE and RESET ROLE."""
    session = make_conn()
    session.execute("SET track_functions = 'all'")
    session.execute("SET pgjobs.allowed_scopes = '2'")
    session.execute(f"SET ROLE {READER}")
    _read(session, "2", True)
    _read(session, "1", False)
    session.execute(f"SET ROLE {base.OWNER}")  # may not read the table
    usual, full, _ = _ways(session, ("s_caller.t", "2", None, 100))
    assert usual == full and usual[0] == "42501", (usual, full)
    session.execute("RESET ROLE")
    _read(session, "1", False)  # a superuser confined by the list too
    session.execute(f"SET SESSION AUTHORIZATION {READER}")
    _read(session, "2", True)
    _read(session, "1", False)
    session.execute("RESET SESSION AUTHORIZATION")
    _read(session, "2", True)


# Functions that imitate pgjobs.visible's frame by name and ask the builder.
SPOOFS = {
    "visible_on_path": ("public", "visible"),
    "schema_named_like_it": ('"pgjobs.visible("', "x"),
    "schema_pgjobs_dot": ('"pgjobs.visible"', "x"),
    "function_named_like_it": ("public", '"pgjobs.visible("'),
}


@pytest.mark.parametrize("listed", ["", "1"], ids=["unconfined", "confined"])
def test_functions_named_like_visible_get_nothing_from_the_builder(
        make_conn: Callable[[], Conn], admin: Conn, listed: str) -> None:
    """A function the reader owns named visible on its search_path, in a
    schema or with a name that spells "pgjobs.visible(", or a DO block: each
    asks the builder, for a scope its list allows, while the reader's
    verdict is fresh, and gets NULL."""
    for schema, name in SPOOFS.values():
        if schema != "public":
            admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {READER}")
        admin.execute(f"""
            CREATE FUNCTION {schema}.{name}(p_target regclass, p_scope text, p_filter jsonb,
                                            p_after text, p_limit integer) RETURNS text
                LANGUAGE plpgsql AS
                $f$ DECLARE v text;
                    BEGIN v := pgjobs._visible_page(p_target, p_scope, p_after, p_limit);
                          RETURN v; END $f$;
            ALTER FUNCTION {schema}.{name}(regclass, text, jsonb, text, integer)
                OWNER TO {READER};""")
    reader = _reader(make_conn)
    reader.execute("SET search_path = public, pg_catalog")
    reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (listed,))
    asked = False
    for _ in range(5):
        _fresh(reader)
        told = {key: scalar(reader, f"SELECT {schema}.{name}('s_caller.t', '1', '{{}}', NULL, 10)")
                for key, (schema, name) in SPOOFS.items()}
        told["unqualified"] = scalar(reader, "SELECT visible('s_caller.t', '1', '{}', NULL, 10)")
        reader.execute("""
            DO $d$ BEGIN
                PERFORM set_config('h147.told', coalesce(
                    pgjobs._visible_page('s_caller.t', '1', NULL, 10), 'NULL'), false);
            END $d$""")
        told["do_block"] = scalar(reader, "SELECT nullif(current_setting('h147.told'), 'NULL')")
        _, calls = _via(reader, PAGE, ("s_caller.t", "1", None, 10))
        if calls == [0, 1]:  # still fresh after: fresh as they asked
            assert set(told.values()) == {None}, told
            asked = True
            break
    assert asked, "the reader's verdict never read as fresh"


def test_a_list_set_by_alter_role_in_database_confines_the_login(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """ALTER ROLE ... IN DATABASE ... SET: the list a login starts with (this
    test's database only) confines it and the role it sets, as the full way."""
    database = scalar(admin, "SELECT current_database()")
    admin.execute(f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" '
                  "SET pgjobs.allowed_scopes = '2'")
    try:
        reader = _reader(make_conn)
    finally:
        admin.execute(f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" '
                      "RESET pgjobs.allowed_scopes")
    assert scalar(reader, "SELECT current_setting('pgjobs.allowed_scopes')") == "2"
    _read(reader, "2", True)
    _read(reader, "1", False)


def test_a_revoke_inside_the_verdicts_second_refuses_a_confined_read_at_once(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """The trust verdict lasts 1 s, the caller's privilege is judged every
    call: a REVOKE right after a confined short-way read refuses the next
    read of the allowed scope as the full way refuses it."""
    reader = _reader(make_conn)
    reader.execute("SET pgjobs.allowed_scopes = '1'")
    _read(reader, "1", True)
    admin.execute(f"REVOKE SELECT ON s_caller.t FROM {READER}")
    usual, full, calls = _ways(reader, ("s_caller.t", "1", None, 100))
    # (the builder is not even asked; a call that raises is not counted)
    assert usual == full and usual[0] == "42501" and calls == [0, 0], (usual, full, calls)
    assert "allowed_scopes" not in str(usual[1]), usual  # the privilege, checked first
