"""Call-stack lines a role writes itself (trust, h52).

pgjobs._entered finds the client call running by reading PG_CONTEXT: the
innermost pgjobs._<x>_as frame called by pgjobs.<x>, whose setting
pgjobs.call_<depth> names the role the call acts for. PG_CONTEXT joins its
lines with newlines, and text a role controls is printed in it verbatim
and may hold newlines: the text of an SQL statement (a comment, a string
literal, an EXECUTE'd string, a DO block's), a PL/pgSQL function's quoted
name and its argument types' names (63 bytes each: one line apiece), a bind
parameter's value (with log_parameter_max_length_on_error). Such text can form whole lines that
imitate a body and its entry point. Before h52, with the matching
pgjobs.call_<depth> set by the role itself, engine code run beneath that
text outside a client call (here: an administrator's SECURITY DEFINER
function granted to the client, reading pgjobs._caller()) acted for the
role the setting named. Now _enter seals the setting with the engine's
secret (pgjobs._call_seal) and _entered honours only a sealed one: the
imitated frames over a self-set setting are refused (42501), and in no
case name the victim.

Also here: code running inside a live call that rewrites the call's
setting (a role's code run by a body; no client path runs any today, see
docs "Roles") no longer makes the rest of the call act for another role;
and a client calling a body directly under imitated lines is refused (a
guard: _enter reads only lines 1-3, whose starts are always real; it passes
on the old code too).

On the code before h52 the 8 other cases fail (the 6 carriers answered the
victim; the 2 rewrites inside a call made it act for the victim or another
name); the 4 guards pass there by design
(test_an_administrators_call_without_imitation_acts_for_the_administrator,
test_a_client_calling_a_body_directly_under_imitated_lines_is_refused).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_forge_client_{PID}"
ADMIN = f"pgjobs_forge_admin_{PID}"
VICTIM = f"pgjobs_forge_victim_{PID}"

# The lines a real call of pgjobs.mask shows beneath the body's checks.
FAKE = ("\nPL/pgSQL function pgjobs._mask_as(name,regclass,text) line 19 at PERFORM"
        "\nPL/pgSQL function pgjobs.mask(regclass,text) line 17 at RETURN\n")
DEPTHS = range(1, 25)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def preset(value: str) -> str:
    """PL/pgSQL statements that set every slot a short stack reaches."""
    return (f"FOR d IN {DEPTHS.start}..{DEPTHS.stop - 1} LOOP "
            f"PERFORM set_config('pgjobs.call_' || d, {literal(value)}, true); END LOOP;")


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    """CLIENT, VICTIM (pgjobs_client), ADMIN (pgjobs_admin) owning
    public.who(), a SECURITY DEFINER function granted to CLIENT that
    answers pgjobs._caller(): engine code run with an administrator's
    rights beneath the client's text, outside any client call; and
    public.context(), the same answering PG_CONTEXT."""
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {VICTIM} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {ADMIN} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {CLIENT}")
    conn.execute("""
        CREATE FUNCTION public.who() RETURNS name LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog AS $f$ BEGIN RETURN pgjobs._caller(); END $f$;
        CREATE FUNCTION public.context() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog AS $f$ DECLARE c text; BEGIN
        GET DIAGNOSTICS c = PG_CONTEXT; RETURN c; END $f$""")
    conn.execute(f"ALTER FUNCTION public.who() OWNER TO {ADMIN}")
    conn.execute(f"ALTER FUNCTION public.context() OWNER TO {ADMIN}")
    conn.execute("REVOKE ALL ON FUNCTION public.who(), public.context() FROM PUBLIC")
    conn.execute(f"GRANT EXECUTE ON FUNCTION public.who(), public.context() TO {CLIENT}")
    yield
    conn.execute("RESET ROLE")
    conn.execute("RESET ALL")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


# Each way a client's own text reaches PG_CONTEXT with newlines, beneath
# its call of public.who(). Each is run by CLIENT in one transaction after
# it set every pgjobs.call_<depth> to name VICTIM as mask's caller.
def _in_function_comment(conn: Conn, fn: str) -> Any:
    conn.execute(f"""CREATE FUNCTION public.forge() RETURNS text LANGUAGE plpgsql AS $f$
        DECLARE r text; BEGIN {preset(f'mask/{VICTIM}')}
        SELECT public.{fn}() /*{FAKE}*/ INTO r; RETURN r; END $f$""")
    return conn.execute("SELECT public.forge()").fetchone()[0]


def _in_string_literal(conn: Conn, fn: str) -> Any:
    conn.execute(f"""CREATE FUNCTION public.forge() RETURNS text LANGUAGE plpgsql AS $f$
        DECLARE r text; BEGIN {preset(f'mask/{VICTIM}')}
        SELECT public.{fn}() INTO r WHERE {literal(FAKE)} <> ''; RETURN r; END $f$""")
    return conn.execute("SELECT public.forge()").fetchone()[0]


def _in_execute(conn: Conn, fn: str) -> Any:
    conn.execute(f"""CREATE FUNCTION public.forge() RETURNS text LANGUAGE plpgsql AS $f$
        DECLARE r text; BEGIN {preset(f'mask/{VICTIM}')}
        EXECUTE 'SELECT public.{fn}() /*' || {literal(FAKE)} || '*/' INTO r; RETURN r; END $f$""")
    return conn.execute("SELECT public.forge()").fetchone()[0]


def _in_do_block(conn: Conn, fn: str) -> Any:
    conn.execute(f"""DO $d$ DECLARE r text; BEGIN {preset(f'mask/{VICTIM}')}
        SELECT public.{fn}() /*{FAKE}*/ INTO r;
        PERFORM set_config('forge.answer', r, true); END $d$""")
    return conn.execute("SELECT current_setting('forge.answer')").fetchone()[0]


def _in_plpgsql_name(conn: Conn, fn: str) -> Any:
    # A name holds 63 bytes: the function's name one imitated line, its
    # argument's type name (printed in the frame's signature) the next.
    name = sql.Identifier("x\nPL/pgSQL function pgjobs._mask_as(")
    domain = sql.Identifier("\nPL/pgSQL function pgjobs.mask(")
    conn.execute(sql.SQL("CREATE DOMAIN public.{} AS int").format(domain))
    conn.execute(sql.SQL("""CREATE FUNCTION public.{}(p public.{}) RETURNS text LANGUAGE plpgsql
        AS $f$ BEGIN RETURN public.{}(); END $f$""").format(name, domain, sql.Identifier(fn)))
    conn.execute(f"DO $d$ BEGIN {preset(f'mask/{VICTIM}')} END $d$")
    return conn.execute(sql.SQL("SELECT public.{}(1)").format(name)).fetchone()[0]


def _in_bind_parameter(conn: Conn, fn: str) -> Any:
    conn.execute(f"DO $d$ BEGIN {preset(f'mask/{VICTIM}')} END $d$")
    conn.execute("SET LOCAL log_parameter_max_length_on_error = -1")
    return conn.execute(f"SELECT public.{fn}() WHERE %s::text <> ''", (FAKE,),
                        prepare=False).fetchone()[0]


CARRIERS = {
    "statement_comment": _in_function_comment,
    "string_literal": _in_string_literal,
    "execute_string": _in_execute,
    "do_block": _in_do_block,
    "plpgsql_function_name": _in_plpgsql_name,
    "bind_parameter": _in_bind_parameter,
}


def forged(conn: Conn, carrier: str, fn: str = "who") -> Any:
    """What public.<fn>() answers under CLIENT's imitated frames, or the
    SQLSTATE it raised."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {CLIENT}")
            return CARRIERS[carrier](conn, fn)
    except psycopg.Error as e:
        return e.sqlstate


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_imitated_frames_over_a_self_set_slot_name_no_one(
        conn: Conn, world: None, carrier: str) -> None:
    """Engine code beneath a client's text acts for the role it runs as,
    never for the role a self-set pgjobs.call_<depth> names: the
    imitated frames are refused (42501) as a changed setting is."""
    # The carrier really puts whole imitated lines in PG_CONTEXT (the
    # transaction is undone: the next one makes its function again).
    context = forged(conn, carrier, "context")
    assert isinstance(context, str), context
    lines = context.split("\n")
    assert any(a.startswith("PL/pgSQL function pgjobs._mask_as(")
               and b.startswith("PL/pgSQL function pgjobs.mask(")
               for a, b in zip(lines, lines[1:], strict=False)), context
    answer = forged(conn, carrier)
    assert answer != VICTIM
    assert answer in (ADMIN, "42501")


def test_an_administrators_call_without_imitation_acts_for_the_administrator(
        conn: Conn, world: None) -> None:
    """The same self-set slots without imitated lines: no call, the
    function's owner (a guard that the fixture reads as intended)."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        conn.execute(f"DO $d$ BEGIN {preset(f'mask/{VICTIM}')} END $d$")
        assert conn.execute("SELECT public.who()").fetchone()[0] == ADMIN


@pytest.mark.parametrize("carrier", ["statement_comment", "plpgsql_function_name", "do_block"])
def test_a_client_calling_a_body_directly_under_imitated_lines_is_refused(
        conn: Conn, world: None, carrier: str) -> None:
    """pgjobs._mask_as called by the client's own code, its text imitating
    pgjobs.mask's frame right beneath the body (and slots preset): refused
    by _enter (42501). A guard: it passes on the old code too."""
    conn.execute("CREATE TABLE public.mine (id bigint NOT NULL, s int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (s, id))")
    conn.execute("SELECT pgjobs.register_target('public.mine', 'id', 's', 'created_at')")
    call = f"pgjobs._mask_as({literal(VICTIM)}, 'public.mine', '1')"
    fake = "\nPL/pgSQL function pgjobs.mask(regclass,text) line 17 at RETURN\n"
    body = {
        "statement_comment": f"SELECT {call} /*{fake}*/ INTO r;",
        "plpgsql_function_name": f"r := {call};",
        "do_block": f"SELECT {call} /*{fake}*/ INTO r;",
    }[carrier]
    name = sql.Identifier("x\nPL/pgSQL function pgjobs.mask("
                          if carrier == "plpgsql_function_name" else "forge")
    refused = pytest.raises(errors.InsufficientPrivilege,
                            match="may only be called by pgjobs.mask")
    with refused, conn.transaction():
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        if carrier == "do_block":
            conn.execute(f"DO $d$ DECLARE r text; BEGIN {preset(f'mask/{VICTIM}')} "
                         f"{body} END $d$")
        else:
            conn.execute(sql.SQL("CREATE FUNCTION public.{}() RETURNS text LANGUAGE plpgsql "
                                 "AS $f$ DECLARE r text; BEGIN ")
                         .format(name) + sql.SQL(preset(f"mask/{VICTIM}") + body
                                                 + " RETURN r; END $f$"))
            conn.execute(sql.SQL("SELECT public.{}()").format(name))


@pytest.fixture
def probe(conn: Conn, world: None) -> Iterator[None]:
    """A body and its entry point made as the tests' superuser, shaped as
    pgjobs' own (pgjobs.probe -> pgjobs._probe_as -> pgjobs._enter), whose
    body runs public.inside() (code run inside a live call: what
    pgjobs._require_trusted keeps out of the real bodies) and then answers
    pgjobs._caller()."""
    conn.execute("""
        CREATE FUNCTION public.inside() RETURNS void LANGUAGE plpgsql AS $f$
        BEGIN PERFORM set_config(current_setting('forge.slot'),
                                 current_setting('forge.value'), true); END $f$;
        CREATE FUNCTION pgjobs._probe_as(p_caller name) RETURNS name LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
        DECLARE v_name name; BEGIN
            p_caller := pgjobs._enter('probe', p_caller);
            PERFORM public.inside();
            v_name := pgjobs._caller();
            RETURN pgjobs._leave(v_name);
        END $f$;
        CREATE FUNCTION pgjobs.probe() RETURNS name LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$
        BEGIN RETURN pgjobs._probe_as(current_user); END $f$;""")
    conn.execute(f"GRANT EXECUTE ON FUNCTION pgjobs.probe(), pgjobs._probe_as(name), "
                 f"public.inside() TO {CLIENT}")
    yield
    conn.execute("DROP FUNCTION pgjobs.probe(), pgjobs._probe_as(name)")


# How code inside the call may rewrite the call's slot: name the victim in
# the old form, or keep the live value's seal with the victim as caller (a
# seal is bound to its depth, entry and caller).
REWRITES = {
    "plain": "probe/{victim}",
    "kept_seal": "probe/{victim}/{seal}",
}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_code_inside_a_call_cannot_make_it_act_for_another_role(
        conn: Conn, probe: None, rewrite: str) -> None:
    """The body's slot rewritten by code it runs: the rest of the call
    never acts for the role the rewrite names (42501 instead)."""
    # the slot's name and value as the live call wrote them
    conn.execute("""
        CREATE OR REPLACE FUNCTION public.inside() RETURNS void LANGUAGE plpgsql AS $f$
        DECLARE v_name text; BEGIN
            SELECT n INTO v_name FROM generate_series(1, 40) d,
                   LATERAL (SELECT 'pgjobs.call_' || d AS n) x
             WHERE current_setting(n, true) LIKE 'probe/%' ORDER BY d DESC LIMIT 1;
            PERFORM set_config('forge.slot', v_name, true);
            PERFORM set_config('forge.live', current_setting(v_name), true);
            IF current_setting('forge.value', true) IS NOT NULL THEN
                PERFORM set_config(v_name, replace(current_setting('forge.value'), '{seal}',
                                                   right(current_setting(v_name), 64)), true);
            END IF;
        END $f$""")
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        assert conn.execute("SELECT pgjobs.probe()").fetchone()[0] == CLIENT
    value = REWRITES[rewrite].format(victim=VICTIM, seal="{seal}")
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {CLIENT}")
            conn.execute("SELECT set_config('forge.value', %s, true)", (value,))
            answer = conn.execute("SELECT pgjobs.probe()").fetchone()[0]
    except errors.InsufficientPrivilege:
        answer = "42501"
    assert answer == "42501"


@pytest.mark.parametrize("as_client", [True, False], ids=["client", "administrator"])
def test_the_seal_enter_writes_is_call_seals(conn: Conn, probe: None, as_client: bool) -> None:
    """pgjobs._enter writes the seal with pgjobs._call_seal's formula
    written out (a call of it cost ~20-40 us of every client call), as
    pgjobs._entered checks it: the live slot's seal is exactly what
    pgjobs._call_seal makes for its depth, entry and caller, as the body's
    owner in the same backend. A guard for the copy (it passes on the code
    that called _call_seal too); every client call fails if _enter's and
    _entered's differ."""
    conn.execute("""
        CREATE OR REPLACE FUNCTION public.inside() RETURNS void LANGUAGE plpgsql AS $f$
        DECLARE v_depth integer; BEGIN
            SELECT d INTO v_depth FROM generate_series(1, 40) d
             WHERE current_setting('pgjobs.call_' || d, true) LIKE 'probe/%'
             ORDER BY d DESC LIMIT 1;
            PERFORM set_config('forge.depth', v_depth::text, false);
            PERFORM set_config('forge.live', current_setting('pgjobs.call_' || v_depth), false);
        END $f$""")
    caller = CLIENT if as_client else conn.execute("SELECT current_user").fetchone()[0]
    with conn.transaction():
        if as_client:
            conn.execute(f"SET LOCAL ROLE {CLIENT}")
        assert conn.execute("SELECT pgjobs.probe()").fetchone()[0] == caller
    depth, live = conn.execute("SELECT current_setting('forge.depth')::integer,"
                               " current_setting('forge.live')").fetchone()
    assert live.startswith(f"probe/{caller}/")
    # as the body's owner (the tests' superuser made pgjobs._probe_as)
    seal = conn.execute("SELECT pgjobs._call_seal(%s, 'probe', %s)", (depth, caller)).fetchone()
    assert seal[0] is not None and len(seal[0]) == 64
    assert live == f"probe/{caller}/{seal[0]}"
