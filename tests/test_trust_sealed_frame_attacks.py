"""Attacks on the one SPI frame pgjobs._enter and pgjobs._entered let in
(trust review h85 of h83; tests/test_trust_sealed_frame.py has the
carriers h83 tried).

The sealed line ('SQL expression "pgjobs._probe_as(current_user, p_fail)
AS sealed_call"', 'PL/pgSQL assignment "p_caller := pgjobs._enter(...) AS
sealed_call"') is let in only as a whole line, so a role that writes the
same text in its own code must go on past the closing quote, on a new line,
to imitate the frame that has to follow it. Here, as a client (calling the
body) and as an administrator (calling pgjobs._enter, which it may, with a
variable naming the victim), every kind of token that may follow a column
alias in SQL is tried there: each try is a syntax error (42601: the
closing quote opens a quoted identifier right after the alias) or refused
(42501), never an answer. Also: the one construct PL/pgSQL writes an alias
into itself (the named arguments of OPEN cursor(...)); the slots
pgjobs._enter writes are undone with a failed call's subtransaction (a
stale slot cannot be reused); inside the body, pgjobs._caller() names the
client (never the body's owner, its fallback) for a call after an error
through every carrier (EXECUTE, DO, SQL functions, BEGIN ATOMIC,
procedures, cursors fetched later, triggers); and the entry point called
with another current_user (a SECURITY DEFINER wrapper, SET ROLE) acts for
that current_user, never for the victim or the body's owner.

On the code before h83 (e940fc5: every extra frame refused) 25 of the 94
cases fail: the calls after an error (the 19 carriers after a failed or
refused call, the 4 next calls after a failed call in
test_a_failed_call_leaves_no_slot, 2 wrapper calls), refused there with
42501. The 69 others (every forgery, the settings, the cursor argument,
the premise on schema pgjobs) pass there too: they guard the acceptance
path h83 added (a looser pgjobs._sealed_frame or _enter fails them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_attack_client_{PID}"
ADMIN = f"pgjobs_attack_admin_{PID}"
VICTIM = f"pgjobs_attack_victim_{PID}"
NL = "\n"
SEALED = "pgjobs._probe_as(current_user, p_fail) AS sealed_call"
ENTER = "p_caller := pgjobs._enter('probe', p_caller) AS sealed_call"
FAKE_ENTRY = "PL/pgSQL function pgjobs.probe(boolean) line 3 at RETURN"
FAKE_BODY = "PL/pgSQL function pgjobs._probe_as(name,boolean) line 3 at assignment"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture
def world(conn: Conn) -> Iterator[str]:
    """CLIENT, VICTIM (pgjobs_client), ADMIN (pgjobs_admin), CREATE on
    schema public; pgjobs.probe(p_fail) -> pgjobs._probe_as -> _enter in
    pgjobs' sealed shape, answering pgjobs._caller() (raising after _enter
    when p_fail). Yields the owner of the body."""
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {VICTIM} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {ADMIN} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute(f"""
        CREATE FUNCTION pgjobs._probe_as(p_caller name, p_fail boolean) RETURNS name
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
        BEGIN
            p_caller := pgjobs._enter('probe', p_caller) AS sealed_call;
            IF p_fail THEN RAISE EXCEPTION 'probe failed' USING ERRCODE = '22023'; END IF;
            RETURN pgjobs._leave(pgjobs._caller());
        END $f$;
        CREATE FUNCTION pgjobs.probe(p_fail boolean DEFAULT false) RETURNS name
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
        BEGIN
            RETURN pgjobs._probe_as(current_user, p_fail) AS sealed_call;
        END $f$;
        GRANT EXECUTE ON FUNCTION pgjobs.probe(boolean), pgjobs._probe_as(name, boolean)
            TO {CLIENT}, {VICTIM}, {ADMIN};""")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    owner = conn.execute("SELECT current_user").fetchone()[0]
    yield str(owner)
    conn.execute("RESET ROLE")
    conn.execute("DROP FUNCTION pgjobs.probe(boolean), pgjobs._probe_as(name, boolean)")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _outcome(conn: Conn, query: sql.Composable | str) -> str:
    """A SQLSTATE, or 'answered <row>'; inside a savepoint."""
    conn.execute("SAVEPOINT t")
    try:
        cursor = conn.execute(query)
        answer = cursor.fetchone() if cursor.description else None
    except psycopg.Error as e:
        conn.execute("ROLLBACK TO SAVEPOINT t")
        return str(e.sqlstate)
    conn.execute("RELEASE SAVEPOINT t")
    return f"answered {answer}"


# What may follow a column alias in SQL, put on the line after the sealed
# text's closing quote (where the imitated frame has to start): the quote
# itself opens a quoted identifier, so none of them parses.
FOLLOWERS = {
    "from": "FROM (SELECT 1) x",
    "where": "WHERE true",
    "union": "UNION SELECT 'x'",
    "cast": "::text",
    "subscript": "[1]",
    "field": ".x",
    "call": "(1)",
    "operator": "|| 'x'",
    "collate": 'COLLATE "C"',
    "is": "IS NOT NULL",
    "at_time_zone": "AT TIME ZONE 'UTC'",
    "over": "OVER ()",
    "filter": "FILTER (WHERE true)",
    "within_group": "WITHIN GROUP (ORDER BY 1)",
    "line_comment": "-- x",
    "block_comment": "/* x */",
    "comma": ", 1",
    "group_by": "GROUP BY 1",
    "order_by": "ORDER BY 1",
    "limit": "LIMIT 1",
}


def _forgery(role: str, follower: str) -> str:
    """The role's PL/pgSQL statement: the sealed text, the closing quote,
    the imitated frame(s) on the next lines, and then the follower."""
    if role == ADMIN:
        return (f'{ENTER}"{NL}{FAKE_BODY}{NL}{FAKE_ENTRY}{NL}" {follower}; '
                "RETURN p_caller;")
    return f'RETURN {SEALED}"{NL}{FAKE_ENTRY}{NL}" {follower};'


def _try_twice(conn: Conn, statement: str) -> list[str]:
    """Creates the role's function around statement and calls it twice in
    the transaction (the first, refused, call leaves the expression busy, so
    the second runs it through SPI and prints the sealed text's line)."""
    declare = (f"DECLARE p_fail boolean := false; p_caller name := {literal(VICTIM)}; ")
    created = _outcome(conn, sql.SQL("CREATE FUNCTION public.forge() RETURNS text "
                                     "LANGUAGE plpgsql AS ")
                       + sql.Literal(f"{declare} BEGIN {statement} END"))
    if created != "answered None":
        return [created]
    return [_outcome(conn, "SELECT public.forge()") for _ in range(2)]


@pytest.mark.parametrize("follower", sorted(FOLLOWERS))
@pytest.mark.parametrize("role", ["client", "admin"])
def test_nothing_parses_after_the_sealed_alias_and_its_quote(
        conn: Conn, world: str, role: str, follower: str) -> None:
    who = CLIENT if role == "client" else ADMIN
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {who}")
        outcomes = _try_twice(conn, _forgery(who, FOLLOWERS[follower]))
    assert outcomes and set(outcomes) <= {"42501", "42601"}, outcomes


# The settings a client can change itself that might change how a frame or
# a statement reads: each set before the forgery, which still fails.
SETTINGS = {
    "standard_conforming_strings": "SET LOCAL standard_conforming_strings = off",
    "client_encoding": "SET LOCAL client_encoding = 'LATIN1'",
    "extra_errors": "SET LOCAL plpgsql.extra_errors = 'all'",
    "extra_warnings": "SET LOCAL plpgsql.extra_warnings = 'all'",
    "print_strict_params": "SET LOCAL plpgsql.print_strict_params = on",
    "backslash_quote": "SET LOCAL backslash_quote = on",
    "search_path": "SET LOCAL search_path = pgjobs, public",
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("role", ["client", "admin"])
def test_a_client_setting_changes_no_frame(conn: Conn, world: str, role: str,
                                           setting: str) -> None:
    """The exact sealed text in the role's own code, under a setting the
    role may change: the line is let in, the frame after it is the role's
    own, refused; the imitation after the quote still does not parse."""
    who = CLIENT if role == "client" else ADMIN
    exact = f"{ENTER}; RETURN p_caller;" if who == ADMIN else f"RETURN {SEALED};"
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {who}")
        conn.execute("DO $d$ BEGIN END $d$")  # loads PL/pgSQL: its settings exist
        conn.execute(SETTINGS[setting])
        assert _try_twice(conn, exact) == ["42501", "42501"]
        conn.execute("DROP FUNCTION public.forge()")
        outcomes = _try_twice(conn, _forgery(who, "FROM (SELECT 1) x"))
        assert outcomes and set(outcomes) <= {"42501", "42601"}, outcomes


# OPEN cursor(name := value) is the one construct in which PL/pgSQL writes
# 'AS <name>' into an expression itself: a cursor parameter named
# sealed_call turns the client's argument into the sealed text exactly
# (and, with a second parameter, goes on with ', ...').
CURSORS = {
    "one_parameter": ("c CURSOR (sealed_call name) FOR SELECT sealed_call;",
                      "OPEN c(sealed_call := pgjobs._probe_as(current_user, p_fail));"),
    "victim_first": ("c CURSOR (sealed_call name) FOR SELECT sealed_call;",
                     f"OPEN c(sealed_call := pgjobs._probe_as({literal(VICTIM)}, p_fail));"),
    "second_parameter_on_a_new_line": (
        "c CURSOR (sealed_call name, x text) FOR SELECT sealed_call;",
        f"OPEN c(sealed_call := pgjobs._probe_as(current_user, p_fail), x := {NL}"
        f"{literal(FAKE_ENTRY)});"),
}


@pytest.mark.parametrize("cursor", sorted(CURSORS))
def test_a_cursor_argument_named_like_the_alias_is_refused(
        conn: Conn, world: str, cursor: str) -> None:
    declare, statement = CURSORS[cursor]
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        created = _outcome(conn, sql.SQL("CREATE FUNCTION public.forge() RETURNS text "
                                         "LANGUAGE plpgsql AS ")
                           + sql.Literal(f"DECLARE p_fail boolean := false; {declare} "
                                         f"BEGIN {statement} RETURN 'opened'; END"))
        assert created == "answered None"
        assert _outcome(conn, "SELECT public.forge()") == "42501"
        # the second call runs the argument through SPI: its frame prints
        conn.execute("SAVEPOINT t")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("SELECT public.forge()")
        conn.execute("ROLLBACK TO SAVEPOINT t")
    lines = (refused.value.diag.context or "").split(NL)
    if cursor == "one_parameter":  # PL/pgSQL wrote the sealed line itself
        assert f'SQL expression "{SEALED}"' in lines, lines


def _slots(conn: Conn) -> list[str]:
    """Every pgjobs.call_<depth> slot that holds a value (depths 1-40)."""
    return [str(row[0]) for row in conn.execute(
        "SELECT d FROM generate_series(1, 40) d "
        "WHERE coalesce(current_setting('pgjobs.call_' || d, true), '') <> ''")]


FAILURES = {
    "entry_point_failed": "SELECT pgjobs.probe(true)",
    "body_called_directly": f"SELECT pgjobs._probe_as('{VICTIM}', false)",
    "enter_called_by_administrator": f"SELECT pgjobs._enter('probe', '{VICTIM}')",
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("through", ["savepoint", "exception_block"])
def test_a_failed_call_leaves_no_slot(conn: Conn, world: str, failure: str,
                                      through: str) -> None:
    """pgjobs._enter writes its slot with set_config(..., true) before the
    body fails: the slot is undone with the failed (sub)transaction, so no
    stale slot stays for another body at that depth, and the next call
    acts for its own client."""
    role = ADMIN if failure == "enter_called_by_administrator" else CLIENT
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {role}")
        assert _slots(conn) == []
        statement = FAILURES[failure]
        if through == "savepoint":
            assert _outcome(conn, statement) in ("22023", "42501")
        else:
            conn.execute(f"""DO $d$ BEGIN
                BEGIN PERFORM * FROM ({statement}) x; RAISE EXCEPTION 'did not fail';
                EXCEPTION WHEN others THEN IF SQLERRM = 'did not fail' THEN RAISE; END IF;
                END; END $d$""")
        assert _slots(conn) == []
        assert conn.execute("SELECT pgjobs.probe()").fetchone() == (role,)
        assert _slots(conn) == []


# Carriers of a client's call of the entry point, each run after a failed
# call made both sealed calls busy (so they go through SPI): the body's
# pgjobs._caller() must find the call (the client), never fall back to
# current_user (the body's owner).
CALLERS = {
    "select": "SELECT pgjobs.probe()",
    "execute": """DO $d$ DECLARE r name; BEGIN
                    EXECUTE 'SELECT pgjobs.probe()' INTO r;
                    PERFORM set_config('attack.answer', r, true); END $d$""",
    "do_expression": """DO $d$ DECLARE r name; BEGIN r := pgjobs.probe();
                         PERFORM set_config('attack.answer', r, true); END $d$""",
    "sql_function": "SELECT public.via_sql()",
    "begin_atomic": "SELECT public.via_atomic()",
    "procedure": "CALL public.via_procedure(NULL)",
    "nested_in_its_own_argument": "SELECT pgjobs.probe(pgjobs.probe() IS NULL)",
    "cursor_fetched_after_an_error": """DO $d$ DECLARE c refcursor; r name; BEGIN
            OPEN c FOR SELECT pgjobs.probe();
            BEGIN PERFORM pgjobs.probe(true); EXCEPTION WHEN others THEN NULL; END;
            FETCH c INTO r; PERFORM set_config('attack.answer', r, true); END $d$""",
    "trigger": "INSERT INTO public.probe_log VALUES (NULL)",
}
HELPERS = """
    CREATE FUNCTION public.via_sql() RETURNS name LANGUAGE sql AS
        'SELECT pgjobs.probe()';
    CREATE FUNCTION public.via_atomic() RETURNS name LANGUAGE sql
        BEGIN ATOMIC SELECT pgjobs.probe(); END;
    CREATE PROCEDURE public.via_procedure(INOUT r name) LANGUAGE plpgsql AS
        $p$ BEGIN r := pgjobs.probe(); PERFORM set_config('attack.answer', r, true); END $p$;
    CREATE TABLE public.probe_log (who name);
    CREATE FUNCTION public.log_probe() RETURNS trigger LANGUAGE plpgsql AS
        $t$ BEGIN NEW.who := pgjobs.probe();
                 PERFORM set_config('attack.answer', NEW.who, true); RETURN NEW; END $t$;
    CREATE TRIGGER probe_log BEFORE INSERT ON public.probe_log
        FOR EACH ROW EXECUTE FUNCTION public.log_probe();
"""


@pytest.mark.parametrize("carrier", sorted(CALLERS))
@pytest.mark.parametrize("busy", ["entry_point_failed", "body_called_directly", "none"])
def test_the_body_names_the_client_never_its_owner(
        conn: Conn, world: str, carrier: str, busy: str) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        conn.execute(HELPERS)
        if busy != "none":
            assert _outcome(conn, FAILURES[busy]) in ("22023", "42501")
        for _ in range(2):  # the second time through the busy (SPI) paths
            conn.execute("SELECT set_config('attack.answer', '', true)")
            cursor = conn.execute(CALLERS[carrier])
            answer = cursor.fetchone()[0] if cursor.description else None
            if answer is None:
                answer = conn.execute("SELECT current_setting('attack.answer')").fetchone()[0]
            assert answer == CLIENT, (answer, world)
        assert _slots(conn) == []


@pytest.mark.parametrize("busy", ["entry_point_failed", "body_called_directly", "none"])
def test_a_wrapper_acts_for_its_owner_not_the_victim_nor_the_body_owner(
        conn: Conn, world: str, busy: str) -> None:
    """The entry point on the stack under another current_user: the
    client's SECURITY DEFINER wrapper, called by the victim, acts for the
    client (SET ROLE is the session user's, checked by PostgreSQL)."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        conn.execute("""CREATE FUNCTION public.wrapper(p_fail boolean) RETURNS name
                        LANGUAGE plpgsql SECURITY DEFINER AS
                        $w$ BEGIN RETURN pgjobs.probe(p_fail); END $w$""")
        conn.execute(f"GRANT EXECUTE ON FUNCTION public.wrapper(boolean) TO {VICTIM}")
        conn.execute("RESET ROLE")
        conn.execute(f"SET LOCAL ROLE {VICTIM}")
        if busy == "entry_point_failed":
            assert _outcome(conn, "SELECT public.wrapper(true)") == "22023"
        elif busy == "body_called_directly":
            assert _outcome(conn, FAILURES[busy]) == "42501"
        for _ in range(2):
            assert conn.execute("SELECT public.wrapper(false)").fetchone() == (CLIENT,)
        assert conn.execute("SELECT pgjobs.probe()").fetchone() == (VICTIM,)
        assert _slots(conn) == []


def test_no_role_but_the_owner_may_create_in_schema_pgjobs(conn: Conn, world: str) -> None:
    """The premise of every frame check: a line starting 'pgjobs.<entry>('
    can only be the frame of pgjobs' own function (a role's function is
    printed under its own schema, a chosen name in quotes). So no role but
    the schema's owner holds CREATE on schema pgjobs, and neither a client
    nor an administrator may create a function there."""
    grantees = conn.execute("""
        SELECT coalesce(array_agg(a.grantee::regrole::text ORDER BY 1), '{}')
          FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE n.nspname = 'pgjobs' AND a.privilege_type = 'CREATE'
           AND a.grantee <> n.nspowner""").fetchone()[0]
    assert grantees == []
    for role in (CLIENT, ADMIN):
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {role}")
            assert _outcome(conn, "CREATE FUNCTION pgjobs.probe(p_x text) RETURNS name "
                                  "LANGUAGE sql AS 'SELECT current_user'") == "42501"
