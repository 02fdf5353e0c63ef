"""Attacks on `visible`'s short way that tests/test_visible_as_caller.py
does not try: the trust verdict the short way runs on, forged or replayed
from another session or another table's slot; the statement builder
(pgjobs._visible_page) called directly with relations that are not
registered tables and with scopes and cursors that try to break out of
their literals; a registration changed between two reads of a warm
session; text keys paged under a non-C collation.

The class of bug these guard: a short way that runs on a verdict the
session did not reach itself, or builds a statement from input it does
not quote, or pages otherwise than the full way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tests import test_visible_as_caller as base
from tests.support import scalar
from tests.test_visible_as_caller import PAGE, _answer, _reader, _short_ways, _ways

admin = base.admin  # the fixture: roles, tables s_caller.t and s_caller.u

Conn = psycopg.Connection[Any]
DIRECT = "SELECT pgjobs._visible_page(%s, %s, %s, %s)"
SLOT = "SELECT 'pgjobs.verified_trusted_' || %s::regclass::oid"


def _full_ran(session: Conn, args: tuple[object, ...]) -> bool:
    """Whether pgjobs.visible's page (target, scope, after, limit) ran the
    full body (pgjobs._visible_as), counted in one transaction."""
    count = ("SELECT coalesce(pg_stat_get_xact_function_calls("
             "'pgjobs._visible_as(name, regclass, text, jsonb, text, integer)'::regprocedure), 0)")
    with session.transaction():
        before = int(scalar(session, count))
        assert _answer(session, PAGE, args)[0] == "ok", args
        return int(scalar(session, count)) > before


def test_a_verdict_forged_or_copied_from_another_session_or_slot_is_none(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A client can write the pgjobs.verified_* settings with set_config:
    a well-formed value it makes up, one copied from another session of
    the same role while still fresh there, or one copied from another
    table's slot, is no verdict (the seal binds slot, key, backend and
    time to a secret the client cannot read), so the builder answers NULL."""
    first, second = _reader(make_conn), _reader(make_conn)
    slot_t = scalar(first, SLOT, ("s_caller.t",))
    slot_u = scalar(first, SLOT, ("s_caller.u",))
    for value in (
            scalar(second, "SELECT to_char(extract(epoch FROM clock_timestamp()),"
                           " 'FM999999999990.000000') || '/' || repeat('ab', 32)"),
            scalar(second, "SELECT to_char(extract(epoch FROM clock_timestamp()),"
                           " 'FM999999999990.000000') || '/' || encode(sha256('x'), 'hex')")):
        second.execute("SELECT set_config(%s, %s, false)", (slot_t, value))
        # (the builder answers only pgjobs.visible's own call: the page is
        # read, and whether the full body ran is counted)
        assert _full_ran(second, ("s_caller.t", "1", None, 10)), value
    copied = False
    for _ in range(5):  # the copy must be fresh where it was kept: asked again until it is
        assert _answer(first, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
        assert _answer(first, PAGE, ("s_caller.u", "acme", None, 1))[0] == "ok"
        value_t = scalar(first, "SELECT current_setting(%s)", (slot_t,))
        second.execute("SELECT set_config(%s, %s, false)", (slot_t, value_t))
        in_second = _full_ran(second, ("s_caller.t", "1", None, 10))
        # another table's verdict, in the session that kept it
        first.execute("SELECT set_config(%s, %s, false)", (slot_u, value_t))
        other_slot = _full_ran(first, ("s_caller.u", "acme", None, 10))
        # the one session where value_t is a verdict, asked last: fresh then, so fresh before
        in_first = _full_ran(first, ("s_caller.t", "1", None, 10))
        if not in_first:
            assert in_second and other_slot, (in_second, other_slot)
            copied = True
            break
    assert copied, "the first session's own verdict never read as fresh"


def test_the_builder_answers_null_for_what_is_not_a_registered_table(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A NULL target, a view, a sequence, a materialized view or a
    partitioned parent that is not registered: NULL, no error, and
    pgjobs.visible answers as the full way."""
    admin.execute("""
        CREATE VIEW s_caller.v AS SELECT * FROM s_caller.t;
        CREATE SEQUENCE s_caller.seq;
        CREATE MATERIALIZED VIEW s_caller.mv AS SELECT * FROM s_caller.t;
        CREATE TABLE s_caller.p (id bigint, scope int) PARTITION BY LIST (scope);""")
    admin.execute("GRANT SELECT ON s_caller.v, s_caller.seq, s_caller.mv, s_caller.p "
                  "TO pgjobs_client")
    reader = _reader(make_conn)
    assert _answer(reader, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
    assert scalar(reader, DIRECT, (None, "1", None, 10)) is None
    for relation in ("s_caller.v", "s_caller.seq", "s_caller.mv", "s_caller.p"):
        assert scalar(reader, DIRECT, (relation, "1", None, 10)) is None, relation
        usual, full, _calls = _ways(reader, (relation, "1", None, 10))
        assert usual == full and usual[0] != "ok", (relation, usual, full)


# Scopes and cursors that try to end their literal, or that only parse in
# some settings: each stays one literal of the column's type.
HOSTILE = ["acme' OR true --", "acme\\' OR true --", "acme\\", "a'cme", "\u00e4cme\u200b",
           "acme$$ OR true $$", "E'acme'", "NaN", "infinity", "-0", "9" * 400]


def test_scopes_and_cursors_that_try_to_end_their_literal_stay_literals(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.execute("INSERT INTO s_caller.u (k, tenant) SELECT gen_random_uuid(), s "
                  "FROM unnest(%s::text[]) s", (HOSTILE,))
    reader = _reader(make_conn)
    reader.execute("SET standard_conforming_strings = off")
    for scope in HOSTILE:
        for _ in range(2):
            assert _answer(reader, PAGE, ("s_caller.u", "acme", None, 1))[0] == "ok"
            usual, full, calls = _short_ways(reader, ("s_caller.u", scope, None, 50))
            assert usual == full and usual[0] == "ok" and calls == [0, 1], (scope, usual, calls)
            assert [r["tenant"] for r in usual[1]] == [scope], (scope, usual)  # type: ignore[union-attr]
            # the page the caller itself reads with the scope bound, not spliced
            own = scalar(reader, "SELECT coalesce(array_agg(to_jsonb(t.*) ORDER BY t.k), '{}')"
                                 " FROM s_caller.u t WHERE t.tenant = %s", (scope,))
            assert list(own) == list(usual[1]), scope  # type: ignore[call-overload]
            # and the builder answers a direct call nothing
            assert scalar(reader, DIRECT, ("s_caller.u", scope, None, 50)) is None, scope
        for after in ("x' OR true --", "\\", "NaN"):
            usual, full, _calls = _ways(reader, ("s_caller.u", scope, after, 50))
            assert usual == full, (scope, after, usual, full)


def test_a_registration_changed_between_two_reads_is_honoured_by_the_next(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """Unregistered, then registered again with another key and scope,
    within the verdict's second: the next page reads the new registration
    (the builder reads the registry each call; the verdict is not the
    registration)."""
    reader = _reader(make_conn)
    for _ in range(2):
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 100))[0] == "ok"
    admin.execute("""
        SELECT pgjobs.unregister_target('s_caller.t');
        ALTER TABLE s_caller.t ALTER COLUMN name SET NOT NULL;
        CREATE UNIQUE INDEX ON s_caller.t (name);
        CREATE INDEX ON s_caller.t (id, name);
        SELECT pgjobs.register_target('s_caller.t', 'name', 'id', 'created_at', 'data');""")
    usual, full, calls = _short_ways(reader, ("s_caller.t", "7", None, 100))
    assert usual == full and usual[0] == "ok" and calls == [0, 1], (usual, calls)
    assert [r["name"] for r in usual[1]] == ["n7"], usual  # type: ignore[union-attr]
    usual, full, _calls = _ways(reader, ("s_caller.t", "99", None, 100))
    assert usual == full == ("ok", []), (usual, full)
    usual, full, _calls = _ways(reader, ("s_caller.t", "8", "n7", 100))
    assert usual == full and [r["name"] for r in usual[1]] == ["n8"], usual  # type: ignore[union-attr]


def test_text_keys_page_alike_under_a_non_c_collation(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """Text keys of a collation whose order is not the bytes' order, equal
    keys in other scopes: every page boundary the short way draws is the
    full way's, and the pages walk the scope once."""
    collation = scalar(admin, "SELECT collname FROM pg_collation WHERE collname IN "
                              "('und-x-icu', 'en_US.utf8', 'en_US') ORDER BY collname DESC "
                              "LIMIT 1")
    assert collation is not None, "no collation but C to page under"
    admin.execute(f"""
        CREATE TABLE s_caller.w (k text COLLATE "{collation}" NOT NULL, sc text NOT NULL,
                                 created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON s_caller.w (sc, k);
        INSERT INTO s_caller.w (k, sc)
        SELECT k, sc FROM unnest(ARRAY['a', 'B', 'b', 'A', '_x', 'x', '\u00e9', 'e', 'E',
                                       'Z', 'z', '10', '9', ' a']) k,
                          unnest(ARRAY['one', 'two']) sc;
        SELECT pgjobs.register_target('s_caller.w', 'k', 'sc', 'created_at');
        GRANT SELECT ON s_caller.w TO pgjobs_client;""")
    reader = _reader(make_conn)
    for scope in ("one", "two"):
        seen: list[str] = []
        after = None
        while True:
            assert _answer(reader, PAGE, ("s_caller.w", scope, None, 1))[0] == "ok"
            usual, full, calls = _short_ways(reader, ("s_caller.w", scope, after, 3))
            assert usual == full and usual[0] == "ok" and calls == [0, 1], (after, usual, calls)
            page = [r["k"] for r in usual[1]]  # type: ignore[union-attr]
            if not page:
                break
            seen += page
            after = page[-1]
        assert len(seen) == 14 and len(set(seen)) == 14, seen
        assert seen != sorted(seen), seen  # (not the bytes' order: the collation counts)
        assert seen == list(scalar(admin, "SELECT array_agg(k ORDER BY k) FROM s_caller.w "
                                          "WHERE sc = %s", (scope,))), seen


def test_a_partitioned_target_with_a_generated_scope_pages_as_the_full_way(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """A partitioned parent registered, its scope a generated column, one
    partition with row-level security on and a policy that hides its rows:
    read through the parent, as PostgreSQL reads it (the partition's own
    policies are not the parent's) and as the full way reads it."""
    admin.execute("""
        CREATE TABLE s_caller.p (id bigint NOT NULL, sc int GENERATED ALWAYS AS (id % 2) STORED,
                                 created_at timestamptz NOT NULL DEFAULT now())
            PARTITION BY RANGE (id);
        CREATE TABLE s_caller.p1 PARTITION OF s_caller.p FOR VALUES FROM (0) TO (10);
        CREATE TABLE s_caller.p2 PARTITION OF s_caller.p FOR VALUES FROM (10) TO (100);
        CREATE INDEX ON s_caller.p (sc, id);
        INSERT INTO s_caller.p (id) SELECT generate_series(1, 30);
        ALTER TABLE s_caller.p2 ENABLE ROW LEVEL SECURITY;
        CREATE POLICY none_of_it ON s_caller.p2 USING (false);
        SELECT pgjobs.register_target('s_caller.p', 'id', 'sc', 'created_at');
        GRANT SELECT ON s_caller.p TO pgjobs_client;""")
    reader = _reader(make_conn)
    assert _answer(reader, PAGE, ("s_caller.p", "1", None, 1))[0] == "ok"
    usual, full, calls = _short_ways(reader, ("s_caller.p", "1", "7", 100))
    assert usual == full and calls == [0, 1], (usual, calls)
    assert [r["id"] for r in usual[1]] == list(range(9, 31, 2)), usual  # type: ignore[union-attr]


def test_session_authorization_is_judged_as_the_role_it_makes(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """SET SESSION AUTHORIZATION after a read that kept the trust verdict:
    the builder and the page judge the new session user, not the one that
    kept it (the verdict is of the table, never of a role's rights)."""
    session = make_conn()
    session.execute("SET track_functions = 'all'")  # (counts which way was taken)
    assert _answer(session, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
    session.execute(f"SET SESSION AUTHORIZATION {base.OWNER}")
    assert scalar(session, DIRECT, ("s_caller.t", "1", None, 10)) is None
    answer = _answer(session, PAGE, ("s_caller.t", "1", None, 10))
    assert answer[0] == "42501" and base.OWNER in str(answer[1]), answer
    session.execute("RESET SESSION AUTHORIZATION")
    session.execute(f"SET SESSION AUTHORIZATION {base.READER}")
    assert _answer(session, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
    usual, full, calls = _short_ways(session, ("s_caller.t", "1", None, 10))
    assert usual == full and calls == [0, 1] and len(usual[1]) == 10, (usual, calls)  # type: ignore[arg-type]
    session.execute("RESET SESSION AUTHORIZATION")


# Ways a SECURITY DEFINER function owned by a role that may not read the
# table asks the builder: directly, through an SQL function, through
# EXECUTE, and through EXECUTE with a second line that imitates the frame
# of pgjobs.visible's own call.
IMITATION = ("PL/pgSQL function pgjobs.visible(regclass,text,jsonb,text,integer)"
             " line 30 at assignment")
SPYING = {
    "plpgsql": "RETURN pgjobs._visible_page('s_caller.t', p_scope, NULL, 10);",
    "sql_function": "RETURN public.spy_sql(p_scope);",
    "execute": "EXECUTE 'SELECT pgjobs._visible_page(''s_caller.t'', $1, NULL, 10)' "
               "INTO v USING p_scope; RETURN v;",
    "imitated_frame": "EXECUTE 'SELECT pgjobs._visible_page(''s_caller.t'', $1, NULL, 10) /*'"
                      f" || E'\\n{IMITATION}\\n*/' INTO v USING p_scope; RETURN v;",
}


def test_a_definer_whose_owner_may_not_read_learns_nothing_from_the_builder(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """The builder judges the session's role, which a SECURITY DEFINER
    function cannot change: one owned by a role without SELECT on the table,
    run by a session whose role has it, once learnt from the builder whether
    a delete was pending on each scope (NULL or a statement) and the
    registration's key and scope columns. It answers only pgjobs.visible's
    own call, so every way such a function asks gets NULL, whatever is
    pending, while the session's own pages take the short way."""
    admin.execute("SELECT pgjobs.submit_delete('s_caller.t', '2', '{\"id\": {\"$lt\": 11}}')")
    admin.execute(f"""
        CREATE FUNCTION public.spy_sql(p_scope text) RETURNS text LANGUAGE sql
            SET search_path = pg_catalog
            AS $f$ SELECT pgjobs._visible_page('s_caller.t', p_scope, NULL, 10) $f$;
        ALTER FUNCTION public.spy_sql(text) OWNER TO {base.OWNER};""")
    for name, body in SPYING.items():
        admin.execute(f"""
            CREATE FUNCTION public.spy_{name}(p_scope text) RETURNS text LANGUAGE plpgsql
                SECURITY DEFINER SET search_path = pg_catalog
                AS $f$ DECLARE v text; BEGIN {body} END $f$;
            ALTER FUNCTION public.spy_{name}(text) OWNER TO {base.OWNER};
            GRANT EXECUTE ON FUNCTION public.spy_{name}(text) TO {base.READER};""")
    reader = _reader(make_conn)
    asked = False
    for _ in range(5):  # the reader's verdict must be fresh as the spies ask
        assert _answer(reader, PAGE, ("s_caller.t", "1", None, 1))[0] == "ok"
        told = {(name, scope): scalar(reader, f"SELECT public.spy_{name}(%s)", (scope,))
                for name in SPYING for scope in ("1", "2")}
        direct = {scope: scalar(reader, DIRECT, ("s_caller.t", scope, None, 10))
                  for scope in ("1", "2")}
        # still fresh after the spies asked, so fresh as they did: the short way is taken
        if not _full_ran(reader, ("s_caller.t", "1", None, 10)):
            assert set(told.values()) == {None}, told
            assert direct == {"1": None, "2": None}, direct
            asked = True
            break
    assert asked, "the reader's own verdict never read as fresh"
