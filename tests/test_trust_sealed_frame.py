"""The one SPI frame pgjobs._enter and pgjobs._entered let in (trust, h83).

After an error escaped an entry point's call of its body (or a body's call
of pgjobs._enter), PL/pgSQL evaluates that expression through SPI for the
rest of the transaction, and PG_CONTEXT holds one more line:
'SQL expression "pgjobs._mask_as(current_user, p_target, p_scope) AS
sealed_call"' between the body's frame and the entry point's (or
'PL/pgSQL assignment "p_caller := pgjobs._enter(''mask'', p_caller) AS
sealed_call"' between _enter's and the body's). pgjobs._sealed_frame lets
in exactly that line. Its text is a statement's, and a role may write a
statement that begins with it; such a statement is refused because the
next line must still be the entry point's (the body's) real frame, and a
statement that goes on past the closing quote of the line, to imitate that
frame, is a syntax error (the alias sealed_call ends the text). Every
carrier here tries that, as a client and as an administrator (who may call
pgjobs._enter itself), and is refused: 42501, or 42601 when the forged
statement does not parse.

Also here: the call after an error acts for its client (pgjobs._entered
finds the call through the same frame: were it to miss it, pgjobs._caller
inside the SECURITY DEFINER body would name the body's owner), the
sealed-frame check line by line, and every entry point and body written in
the sealed shape.

On the code before h83 (no pgjobs._sealed_frame, no alias) 27 of the 42
cases fail: the 6 calls after an error (42501: the frame is refused), the
17 line checks and the sealed-shape check (neither exists there), the two
exact-text forgeries (refused there too, but they also ask
pgjobs._sealed_frame whether the line they printed is the sealed one) and
the direct body call (it leaves the body's call of _enter busy, and the
next pgjobs.mask was refused). The 15 other forgeries are guards: the old
code refused every extra frame.
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
CLIENT = f"pgjobs_sealed_client_{PID}"
ADMIN = f"pgjobs_sealed_admin_{PID}"
VICTIM = f"pgjobs_sealed_victim_{PID}"
SEALED = "pgjobs._mask_as(current_user, p_target, p_scope) AS sealed_call"
ENTER = "p_caller := pgjobs._enter('mask', p_caller) AS sealed_call"
# the frames a real call of pgjobs.mask shows beneath the body
FAKE_ENTRY = "PL/pgSQL function pgjobs.mask(regclass,text) line 24 at RETURN"
FAKE_BODY = "PL/pgSQL function pgjobs._mask_as(name,regclass,text) line 29 at assignment"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    """CLIENT and VICTIM (pgjobs_client), ADMIN (pgjobs_admin), all with
    SELECT on public.mine (registered, integer scope), and CREATE on
    schema public; pgjobs.probe(p_fail) -> pgjobs._probe_as -> _enter, made
    by the tests' superuser in pgjobs' own sealed shape, answering
    pgjobs._caller() (or raising when p_fail)."""
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {VICTIM} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {ADMIN} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute("""
        CREATE TABLE public.mine (id bigint NOT NULL, s int NOT NULL,
                                  created_at timestamptz NOT NULL DEFAULT now(),
                                  PRIMARY KEY (s, id));
        SELECT pgjobs.register_target('public.mine', 'id', 's', 'created_at');""")
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
            TO {CLIENT};""")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"GRANT SELECT, DELETE ON public.mine TO {role}")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    yield
    conn.execute("RESET ROLE")
    conn.execute("DROP FUNCTION pgjobs.probe(boolean), pgjobs._probe_as(name, boolean)")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _fails(conn: Conn, statement: str) -> str:
    """Runs statement inside a savepoint; returns the SQLSTATE it raised."""
    conn.execute("SAVEPOINT s")
    try:
        conn.execute(statement)
    except psycopg.Error as e:
        conn.execute("ROLLBACK TO SAVEPOINT s")
        return str(e.sqlstate)
    raise AssertionError(f"did not fail: {statement}")


# What leaves a sealed call busy: the entry point's call of the body raised
# (form 1), a direct call of the body was refused (form 2: the body's call
# of pgjobs._enter raised), or both.
BUSY = {
    "entry": ["SELECT pgjobs.probe(true)"],
    "body": [f"SELECT pgjobs._probe_as('{VICTIM}', false)"],
    "both": ["SELECT pgjobs.probe(true)", f"SELECT pgjobs._probe_as('{VICTIM}', false)"],
}


@pytest.mark.parametrize("through", ["savepoint", "exception_block"])
@pytest.mark.parametrize("busy", sorted(BUSY))
def test_the_call_after_an_error_acts_for_its_client(
        conn: Conn, world: None, busy: str, through: str) -> None:
    """The next call is let in and acts for the client: pgjobs._entered
    finds it through the SPI frame (missing it, pgjobs._caller in the
    SECURITY DEFINER body would name the body's owner)."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        for statement in BUSY[busy]:
            if through == "savepoint":
                assert _fails(conn, statement) in ("22023", "42501")
            else:
                conn.execute(f"""DO $d$ BEGIN
                    BEGIN PERFORM * FROM ({statement}) x; RAISE EXCEPTION 'did not fail';
                    EXCEPTION WHEN others THEN
                        IF SQLERRM = 'did not fail' THEN RAISE; END IF;
                    END; END $d$""")
        assert conn.execute("SELECT pgjobs.probe()").fetchone() == (CLIENT,)
        # and a real submit after its own failure: submitted by the client
        assert _fails(conn, "SELECT pgjobs.submit_delete('public.mine', 'zz')") != "42501"
        job = conn.execute("""SELECT pgjobs.submit_delete('public.mine', '1', '{}', '{}',
                              '{"run_at": "2999-01-01T00:00:00Z"}')""")
        job_id = job.fetchone()[0]
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT submitted_by FROM pgjobs.jobs WHERE id = %s",
                            (job_id,)).fetchone() == (CLIENT,)


# pgjobs._sealed_frame, line by line: only the exact frame of the entry
# point's call (expression) or of the body's call of _enter (assignment).
LINES = {
    ("expression", f'SQL expression "{SEALED}"'): True,
    ("assignment", f'PL/pgSQL assignment "{ENTER}"'): True,
    ("expression", f'SQL expression "{SEALED}" '): False,
    ("expression", f'SQL expression "{SEALED}"x'): False,
    ("expression", f'SQL expression "{SEALED}, 1"'): False,
    ("expression", f'SQL expression "{SEALED.replace(" AS sealed_call", "")}"'): False,
    ("expression", f'SQL expression "{SEALED.replace("current_user", "p_caller")}"'): False,
    ("expression", f'SQL expression "{SEALED.replace("p_target", chr(34) + "p_target")}"'):
        False,
    ("expression", f'SQL expression "{SEALED.replace("p_scope", "p_scope /**/")}"'): False,
    ("expression", f'SQL expression "{SEALED.replace("_mask_as", "_channel_as")}"'): False,
    ("expression", f'SQL statement "{SEALED}"'): False,
    ("expression", f'PL/pgSQL assignment "{SEALED}"'): False,
    ("expression", f'SQL expression "SELECT {SEALED}"'): False,
    ("assignment", f'SQL expression "{ENTER}"'): False,
    ("assignment", f'PL/pgSQL assignment "{ENTER.replace("mask", "channel")}"'): False,
    ("assignment", f'PL/pgSQL assignment "{ENTER.replace(" AS sealed_call", "")}"'): False,
    ("assignment", f'PL/pgSQL assignment "{ENTER}" --"'): False,
}


@pytest.mark.parametrize(("mode", "line"), sorted(LINES), ids=range(len(LINES)))
def test_only_the_exact_frame_is_sealed(conn: Conn, mode: str, line: str) -> None:
    assert conn.execute("SELECT pgjobs._sealed_frame(%s, %s, 'mask')",
                        (line, mode)).fetchone() == (LINES[(mode, line)],)


def test_every_entry_point_and_body_is_written_sealed(conn: Conn) -> None:
    """Each body calls pgjobs._enter, and its entry point calls the body, in
    the exact shape pgjobs._sealed_frame lets in: else its call after an
    error stays refused (the frames are checked as the server prints
    them: the tests of tests/test_trust_entry_after_error.py)."""
    rows = conn.execute(r"""
        SELECT b.proname, x.entry, b.prosrc, e.prosrc
          FROM pg_proc b
         CROSS JOIN LATERAL (SELECT substring(b.prosrc FROM
                                 'p_caller := pgjobs\._enter\(''([a-z_]+)''') AS entry) x
          LEFT JOIN pg_proc e ON e.pronamespace = b.pronamespace AND e.proname = x.entry
         WHERE b.pronamespace = 'pgjobs'::regnamespace AND b.prosecdef
           AND b.prosrc LIKE '%p_caller := pgjobs._enter(%'""").fetchall()
    assert len(rows) >= 20
    for body, entry, body_src, entry_src in rows:
        assert entry is not None and entry_src is not None, body
        assert f"p_caller := pgjobs._enter('{entry}', p_caller) AS sealed_call;" in body_src, body
        calls = [line for line in entry_src.split("\n") if f"pgjobs.{body}(" in line]
        assert len(calls) == 1, (body, calls)
        text = calls[0].strip().removeprefix("RETURN ").removeprefix("FOREACH v_row IN ARRAY ")
        text = text.removesuffix(";").removesuffix(" LOOP")
        line = f'SQL expression "{text}"'
        assert conn.execute("SELECT pgjobs._sealed_frame(%s, 'expression', %s)",
                            (line, entry)).fetchone() == (True,), (body, line)


# A role's own code with the sealed text (a client calling pgjobs._mask_as,
# an administrator calling pgjobs._enter, which it may), tried twice in one
# transaction: the first try, refused, leaves the expression busy, so the
# second goes through SPI and prints the very line pgjobs._sealed_frame lets
# in (or tries to go on past it into imitated frames).
NL = "\n"
IMITATION = f'"{NL}{FAKE_ENTRY}{NL}"'  # after the closing quote: the entry's frame
SEALED_BARE = SEALED.removesuffix(" AS sealed_call")


def _in_args(old: str, new: str) -> str:
    return f"RETURN {SEALED.replace(old, new)};"


# carrier: (role, the PL/pgSQL statement, how it runs: "function", a
# function named like the entry's frame, "do" (a DO block trying twice))
CARRIERS: dict[str, tuple[str, str, str]] = {
    # the sealed text itself in the role's own code: the line is let in,
    # the next one is the role's frame, not pgjobs.mask's
    "exact_text": (CLIENT, f"RETURN {SEALED};", "function"),
    "exact_text_named_like_the_entry": (CLIENT, f"RETURN {SEALED};", "name"),
    "exact_text_in_do_block": (CLIENT, f"FOREACH r IN ARRAY {SEALED} LOOP END LOOP;", "do"),
    # going on after the closing quote, imitating the entry's frame (and
    # calling the body for the victim): a syntax error after the alias
    "quoted_identifier": (CLIENT, f"RETURN {SEALED}{IMITATION};", "function"),
    "quoted_identifier_then_victim": (
        CLIENT, f"RETURN {SEALED}{IMITATION}, pgjobs._mask_as({literal(VICTIM)}, "
                "p_target, p_scope);", "function"),
    "quoted_identifier_in_do_block": (
        CLIENT, f"FOREACH r IN ARRAY {SEALED}{IMITATION} LOOP END LOOP;", "do"),
    # without the alias the text can go on (a quoted alias): not the line
    "no_alias_quoted_identifier": (CLIENT, f"RETURN {SEALED_BARE}{IMITATION};", "function"),
    # newlines inside the call's text: never the whole line
    "block_comment": (CLIENT, _in_args("p_scope", f"p_scope /*{NL}{FAKE_ENTRY}{NL}*/"),
                      "function"),
    "string_literal": (CLIENT, _in_args("p_scope", literal(NL + FAKE_ENTRY) + "::text"),
                       "function"),
    "dollar_quote": (CLIENT, _in_args("p_scope", f"$q${NL}{FAKE_ENTRY}$q$::text"), "function"),
    "escape_string": (CLIENT, _in_args("p_scope", "E" + literal("\\n" + FAKE_ENTRY) + "::text"),
                      "function"),
    "unicode_identifier": (CLIENT, _in_args("p_target", 'U&"p_target\\000a"'), "function"),
    "variable_named_with_a_newline": (CLIENT, _in_args("p_target", f'"p_target{NL}{FAKE_ENTRY}"'),
                                      "function"),
    # EXECUTE: an SQL statement's frame, never an expression's
    "execute": (CLIENT, "EXECUTE 'SELECT " + SEALED.replace("p_target, p_scope", "$1, $2")
                + "' INTO r USING p_target, p_scope; RETURN r;", "function"),
    # the body's sealed call of _enter, naming the victim
    "enter_exact_text": (ADMIN, f"{ENTER}; RETURN p_caller;", "function"),
    "enter_quoted_identifier": (
        ADMIN, f'{ENTER}"{NL}{FAKE_BODY}{NL}{FAKE_ENTRY}{NL}"; RETURN p_caller;', "function"),
    "enter_variable_named_with_a_newline": (
        ADMIN, ENTER.replace("p_caller)", f'"p_caller{NL}{FAKE_BODY}{NL}{FAKE_ENTRY}")')
        + "; RETURN p_caller;", "function"),
}
DECLARE = (f"DECLARE p_target regclass := 'public.mine'; p_scope text := '1'; "
           f"p_caller name := {literal(VICTIM)}; r text; "
           f'"p_target{NL}" regclass := \'public.mine\'; '
           f'"p_target{NL}{FAKE_ENTRY}" regclass := \'public.mine\'; '
           f'"p_caller{NL}{FAKE_BODY}{NL}{FAKE_ENTRY}" name := {literal(VICTIM)}; ')


def _tries(conn: Conn, statement: str, how: str) -> tuple[list[str], list[str]]:
    """The outcome of each try (a SQLSTATE, or what it answered) and the
    error contexts."""
    outcomes: list[str] = []
    contexts: list[str] = []

    def run(query: sql.Composable | str) -> None:
        conn.execute("SAVEPOINT t")
        try:
            cursor = conn.execute(query)
            answer = cursor.fetchone() if cursor.description else None
            outcomes.append(f"answered {answer}")
        except psycopg.Error as e:
            conn.execute("ROLLBACK TO SAVEPOINT t")
            outcomes.append(str(e.sqlstate))
            contexts.append(e.diag.context or "")

    if how == "do":
        run(sql.SQL("DO ") + sql.Literal(
            f"{DECLARE} BEGIN FOR i IN 1..2 LOOP BEGIN {statement} "
            "EXCEPTION WHEN insufficient_privilege THEN IF i = 2 THEN RAISE; END IF; END; "
            "END LOOP; END"))
        return outcomes, contexts
    name = sql.Identifier("x" + NL + FAKE_ENTRY if how == "name" else "forge")
    run(sql.SQL("CREATE FUNCTION public.{}() RETURNS text LANGUAGE plpgsql AS ").format(name)
        + sql.Literal(f"{DECLARE} BEGIN {statement} END"))
    if outcomes == ["answered None"]:
        outcomes.clear()
        for _ in range(2):
            run(sql.SQL("SELECT public.{}()").format(name))
    return outcomes, contexts


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_a_forged_sealed_frame_is_refused(conn: Conn, world: None, carrier: str) -> None:
    """Each try refused: 42501 (the frame after the sealed line is not the
    entry point's, or the body's) or 42601 (the forged text does not
    parse); never a mask, never the victim's call."""
    role, statement, how = CARRIERS[carrier]
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {role}")
        outcomes, contexts = _tries(conn, statement, how)
    assert outcomes and set(outcomes) <= {"42501", "42601"}, outcomes
    if how != "do" and "exact_text" in carrier:
        # the second try printed exactly the sealed line, and was refused
        mode, sealed = (("expression", f'SQL expression "{SEALED}"') if role == CLIENT
                        else ("assignment", f'PL/pgSQL assignment "{ENTER}"'))
        assert outcomes == ["42501", "42501"], outcomes
        assert sealed in contexts[1].split(NL), contexts[1]
        assert conn.execute("SELECT pgjobs._sealed_frame(%s, %s, 'mask')",
                            (sealed, mode)).fetchone() == (True,)


def test_a_body_called_directly_stays_refused_through_the_sealed_line(
        conn: Conn, world: None) -> None:
    """The client's own function named like nothing special calls the body
    with the sealed text after making it busy, then pgjobs.mask works and
    acts for the client, and the client's body call is refused again."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        conn.execute(f"""CREATE FUNCTION public.forge() RETURNS text LANGUAGE plpgsql AS $f$
            DECLARE p_target regclass := 'public.mine'; p_scope text := '1';
            BEGIN RETURN {SEALED}; END $f$""")
        assert _fails(conn, "SELECT public.forge()") == "42501"
        assert _fails(conn, "SELECT public.forge()") == "42501"
        assert conn.execute("SELECT pgjobs.mask('public.mine', '1')").fetchone()[0] is not None
        assert _fails(conn, f"SELECT pgjobs._mask_as('{VICTIM}', 'public.mine', '1')") == "42501"
