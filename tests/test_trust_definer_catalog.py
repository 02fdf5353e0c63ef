"""Every SECURITY DEFINER routine of schema pgjobs, attacked as a class (h180).

A SECURITY DEFINER routine runs as pgjobs' owner, whatever role calls it.
The list is read from pg_proc when the test runs: a definer routine that
has no entry in DEFINERS below (how a client reaches it, or that it is the
engine's alone) fails test_every_definer_routine_has_an_entry until it is
reviewed and given one. For each routine:

1. Its configuration pins search_path to pg_catalog, pg_temp, and PUBLIC
   may not execute it.
2. Called directly by three roles, a pgjobs_client member, a role with no
   pgjobs grant, and a role with only SELECT on the target table: the last
   two are refused (42501) by PostgreSQL itself; the client is refused by
   pgjobs._enter (a body pgjobs._*_as) or the privilege check (the engine's
   routines), except pgjobs._visible_page, which answers NULL for a table
   the session's role may not SELECT.
3. Shadowing: the client owns a schema ahead of pg_catalog in its
   search_path holding a function for every overload of the pg_catalog
   functions pgjobs' bodies call and an operator for every comparison,
   containment and concatenation operator of the common types, and temporary
   views named after every relation of schema pgjobs. Each of them writes
   a row to a log when it runs. Reached through its client entry point
   (the DDL fence's through the client's own DDL), every routine answers
   as it did before the shadows, and nothing of the client's ran: the log
   is empty.
4. A client confined to tenant 1 gets the same answer (SQLSTATE, message,
   hint) about tenant 2 (rows, fields, another role's job) as about a
   tenant with nothing: 42501 from every scope-taking call.
5. Look-alike targets: every client function that takes a target, given a
   table of the client's own schema with the registered table's name, a
   view over it, names with a dot, quotes or another case, or a temporary
   table of the same name, answers as for a table pgjobs never saw, and no
   job or row of the registered table changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import CLIENT_SOURCE_PREFIX, drop_role, make_role

Conn = psycopg.Connection[Any]
T = "user_table_rows"
SUBMIT = f"pgjobs.submit('resize', '{T}', '1')"
ITEMS = f"pgjobs.submit_items('resize', '{T}', '1', '[{{\"a\": 1}}]')"
LAST = "(SELECT max(id) FROM pgjobs.jobs)"

# Every SECURITY DEFINER routine: the SQL that reaches it as the client (its
# answer normalized: ids and times vary), or None for a routine the engine
# alone runs (no role but pgjobs_admin may execute it).
DEFINERS: dict[str, str | None] = {
    "_submit_as": f"SELECT {SUBMIT} IS NOT NULL",
    "_submit_delete_as": f"SELECT pgjobs.submit_delete('{T}', '1', '{{\"n\": 1}}') IS NOT NULL",
    "_submit_backfill_as": f"SELECT pgjobs.submit_backfill('{T}', '1', '{{\"n\": 1}}', "
                           "'{\"label\": \"x\"}') IS NOT NULL",
    "_submit_export_as": f"SELECT pgjobs.submit_export('{T}', '1') IS NOT NULL",
    "_submit_import_as": f"SELECT pgjobs.submit_import('{T}', '1', "
                         f"'{CLIENT_SOURCE_PREFIX}/a.csv') IS NOT NULL",
    "_submit_items_as": f"SELECT {ITEMS} IS NOT NULL",
    "_add_items_as": f"SELECT pgjobs.add_items({ITEMS}, '[{{\"a\": 2}}]')",
    "_cancel_as": f"SELECT pgjobs.cancel({SUBMIT})",
    "_pause_as": f"SELECT pgjobs.pause({SUBMIT})",
    "_resume_as": f"SELECT pgjobs.pause({SUBMIT}); SELECT pgjobs.resume({LAST})",
    "_retry_as": f"SELECT pgjobs.cancel({SUBMIT}); SELECT pgjobs.retry({LAST})",
    "_mask_as": f"SELECT pgjobs.mask('{T}', '1')",
    "_visible_as": f"SELECT count(*) FROM pgjobs.visible('{T}', '1')",
    "_visible_count_as": f"SELECT pgjobs.visible_count('{T}', '1')",
    "_visible_page": f"SELECT pgjobs._visible_page('{T}', '1', NULL, 100) IS NOT NULL",
    "_channel_as": f"SELECT pgjobs.channel('{T}', '1')",
    "_canonical_scope_as": f"SELECT pgjobs.canonical_scope('{T}', ' 01')",
    "_controllable_as": f"SELECT pgjobs.controllable(ARRAY[{SUBMIT}, 999999999])",
    "_client_room_as": "SELECT role FROM pgjobs.client_room()",
    "_preview_as": f"SELECT pgjobs.preview('{T}', '1', '{{\"n\": 1}}') "
                   "OPERATOR(pg_catalog.-) 'elapsed_ms'",
    "_confined_targets_as": "SELECT pgjobs._confined_targets(current_user)",
    "_row_security_confines_as": f"SELECT pgjobs._row_security_confines('{T}', current_user)",
    "_column_read_targets_as": "SELECT pgjobs._column_read_targets()",
    "_allowed_scope_keys_as": "SELECT pg_catalog.set_config('pgjobs.allowed_scopes', '01', true); "
                              "SELECT pgjobs._allowed_scope_keys()",
    "_engine_wait_as": "SELECT pgjobs._engine_wait()",
    # The DDL fence: its event trigger and the commit trigger of its mark
    # run for every role's DDL, the client's own included.
    "_ddl_fence_mark": "CREATE TABLE h180_evil.ddl_probe (); DROP TABLE h180_evil.ddl_probe; "
                       "SELECT true",
    "_ddl_fence_commit": "CREATE TABLE h180_evil.ddl_probe (); DROP TABLE h180_evil.ddl_probe; "
                         "SELECT true",
    "_health": None,  # the throttle's sample, a runner's (pgjobs_admin)
    "_scope_allowed": None,  # the tenancy rule: bodies ask it, never a client
}
CLIENT_EXECUTES = {name for name, sql in DEFINERS.items()
                   if sql is not None and not name.startswith("_ddl_fence")}

DEFINER_ROUTINES = """
    SELECT p.proname, p.oid::regprocedure::text, p.proconfig, p.proargtypes::regtype[]::text[]
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prosecdef
     ORDER BY 1"""

# What the shadows imitate: the pg_catalog functions pgjobs' bodies call by
# name, and the operators they compare with.
FUNCTIONS = ["format", "format_type", "quote_ident", "quote_literal", "quote_nullable",
             "to_jsonb", "jsonb_build_object", "jsonb_build_array", "jsonb_typeof",
             "jsonb_array_length", "jsonb_object_keys", "current_setting", "set_config",
             "has_table_privilege", "has_column_privilege", "has_function_privilege",
             "pg_has_role", "string_to_array", "array_to_string", "starts_with", "encode",
             "sha256", "convert_to", "lower", "upper", "left", "right", "substr", "length",
             "strpos", "ltrim", "rtrim", "btrim", "replace", "split_part", "now",
             "clock_timestamp", "pg_backend_pid", "txid_current", "pg_current_xact_id",
             "array_length", "cardinality", "age", "row_security_active", "to_regclass",
             "nextval", "hashtext", "md5", "concat", "concat_ws", "regexp_replace",
             "pg_notify", "pg_advisory_xact_lock", "pg_try_advisory_xact_lock"]
OPERATORS = ["=", "<>", "<", ">", "<=", ">=", "@>", "<@", "?", "->", "->>", "#>>", "||", "~",
             "!~", "~~", "+", "-"]
COMMON_TYPES = ["integer", "bigint", "smallint", "text", "name", "oid", "regclass", "jsonb",
                "boolean", "timestamp with time zone", "numeric", "interval", "text[]",
                "bigint[]", "integer[]", "xid8", "character varying", "double precision"]

SHADOWS = """
DO $shadows$
DECLARE
    p record;
    v_args text;
    v_call text;
BEGIN
    -- A function for every plain overload of each name (no pseudo-types, no
    -- sets, not variadic): logs, then answers what pg_catalog's answers.
    FOR p IN SELECT pr.oid, pr.proname, pr.proargtypes::oid[] AS types,
                    pg_catalog.format_type(pr.prorettype, NULL) AS ret
               FROM pg_catalog.pg_proc pr
              WHERE pr.pronamespace = 'pg_catalog'::regnamespace AND pr.prokind = 'f'
                AND pr.proname = ANY (@functions@) AND NOT pr.proretset
                AND pr.provariadic = 0
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_type t
                                 WHERE t.typtype = 'p'
                                   AND (t.oid = ANY (pr.proargtypes::oid[])
                                        OR t.oid = pr.prorettype))
    LOOP
        SELECT coalesce(string_agg(format('a%s %s', i, pg_catalog.format_type(t, NULL)), ', '
                                   ORDER BY i), ''),
               coalesce(string_agg(format('a%s', i), ', ' ORDER BY i), '')
          INTO v_args, v_call
          FROM unnest(p.types) WITH ORDINALITY AS a(t, i);
        EXECUTE format('CREATE FUNCTION h180_evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS '
                       '$f$BEGIN INSERT INTO h180_evil.calls VALUES (%L, current_user); '
                       'RETURN pg_catalog.%I(%s); END$f$',
                       p.proname, v_args, p.ret, p.proname, p.proname, v_call);
    END LOOP;
    -- An operator for every binary operator of those names on the common types.
    FOR p IN SELECT o.oid, o.oprname, pg_catalog.format_type(o.oprleft, NULL) AS l,
                    pg_catalog.format_type(o.oprright, NULL) AS r,
                    pg_catalog.format_type(o.oprresult, NULL) AS ret
               FROM pg_catalog.pg_operator o
              WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind = 'b'
                AND o.oprname = ANY (@operators@)
                AND pg_catalog.format_type(o.oprleft, NULL) = ANY (@types@)
                AND pg_catalog.format_type(o.oprright, NULL) = ANY (@types@)
    LOOP
        EXECUTE format('CREATE FUNCTION h180_evil.op_%s(a %s, b %s) RETURNS %s '
                       'LANGUAGE plpgsql AS $f$BEGIN INSERT INTO h180_evil.calls '
                       'VALUES (%L, current_user); RETURN a OPERATOR(pg_catalog.%s) b; END$f$',
                       p.oid, p.l, p.r, p.ret, p.oprname, p.oprname);
        EXECUTE format('CREATE OPERATOR h180_evil.%s (LEFTARG = %s, RIGHTARG = %s, '
                       'FUNCTION = h180_evil.op_%s)', p.oprname, p.l, p.r, p.oid);
    END LOOP;
    -- A temporary view named after every relation of schema pgjobs: a body
    -- that named one without its schema would read it (pg_temp is on every
    -- pinned search_path, after pg_catalog).
    FOR p IN SELECT c.relname FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind IN ('r', 'v', 'p')
    LOOP
        EXECUTE format('CREATE TEMPORARY VIEW %I AS SELECT h180_evil.logged(%L) AS x',
                       p.relname, p.relname);
    END LOOP;
END
$shadows$"""


@pytest.fixture
def roles(conn: Conn, client_roles: dict[str, str]) -> Iterator[dict[str, str]]:
    """client_roles' client; a role with no pgjobs grant; a role with only
    SELECT on the target. The client owns schema h180_evil and its log."""
    nobody = make_role(conn, "h180none")
    reader = make_role(conn, "h180read", f"GRANT SELECT ON {T} TO {{role}}")
    client = client_roles["client"]
    conn.execute(f"CREATE SCHEMA h180_evil AUTHORIZATION {client}")
    conn.execute(f"SET ROLE {client}")
    conn.execute("CREATE TABLE h180_evil.calls (what text, who name)")
    conn.execute("GRANT USAGE ON SCHEMA h180_evil TO PUBLIC")
    conn.execute("GRANT INSERT ON h180_evil.calls TO PUBLIC")
    conn.execute("""CREATE FUNCTION h180_evil.logged(p text) RETURNS text LANGUAGE plpgsql
                    AS $f$BEGIN INSERT INTO h180_evil.calls VALUES (p, current_user);
                    RETURN p; END$f$""")
    conn.execute("RESET ROLE")
    yield {"client": client, "nobody": nobody, "reader": reader}
    conn.execute("RESET ROLE")
    conn.execute("DROP SCHEMA h180_evil CASCADE")
    for role in (nobody, reader):
        drop_role(conn, role)


def _array(texts: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + t.replace("'", "''") + "'" for t in texts) + "]::text[]"


def _answer(conn: Conn, sql: str, role: str, path: str = "DEFAULT") -> tuple[str, str]:
    """('ok', the last statement's rows) or (SQLSTATE, message), run as
    ``role`` under search_path ``path``, digits of four or more and times
    normalized; every queued or paused job canceled afterwards (as the
    superuser, on the default path), so no call sees another's job."""
    conn.execute(f"SET ROLE {role}")
    conn.execute(f"SET search_path = {path}")
    try:
        with conn.transaction():
            cur = conn.execute(sql)
            while cur.nextset():
                pass
            got = ("ok", repr(cur.fetchall()))
    except psycopg.Error as exc:
        got = (str(exc.sqlstate), exc.diag.message_primary or "")
    conn.execute("RESET ROLE")
    conn.execute("RESET search_path")
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                 "WHERE status IN ('queued', 'paused')")
    text = re.sub(r"\d{4}-\d\d-\d\d[T ][0-9:.]+(Z|[+-]\d\d(:\d\d)?)?", "<time>", got[1])
    return got[0], re.sub(r"\b\d{4,}\b", "<n>", text)


def test_every_definer_routine_has_an_entry(conn: Conn) -> None:
    found = {row[0] for row in conn.execute(DEFINER_ROUTINES).fetchall()}
    assert found == set(DEFINERS), (
        f"new, unreviewed: {sorted(found - set(DEFINERS))}; "
        f"no longer SECURITY DEFINER: {sorted(set(DEFINERS) - found)}")


@pytest.mark.parametrize("name", sorted(DEFINERS))
def test_a_definer_routine_is_pinned_and_refused_to_whom_it_is_not_for(
        conn: Conn, roles: dict[str, str], name: str) -> None:
    rows = [r for r in conn.execute(DEFINER_ROUTINES).fetchall() if r[0] == name]
    assert len(rows) == 1, rows
    _, signature, config, types = rows[0]
    assert "search_path=pg_catalog, pg_temp" in (config or []), (signature, config)
    executable = {role: scalar(conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                               (role, signature))
                  for role in ("public", *roles.values())}
    assert executable == {"public": False, roles["nobody"]: False, roles["reader"]: False,
                          roles["client"]: name in CLIENT_EXECUTES}, executable
    if name.startswith("_ddl_fence"):
        return  # a trigger function: PostgreSQL refuses any direct call
    # Called directly, every argument of the caller's choosing (the
    # superuser's name where a role goes, the target, NULL elsewhere).
    args = ", ".join("'postgres'::name" if t == "name" else
                     f"'{T}'::regclass" if t == "regclass" else f"NULL::{t}" for t in types)
    answers = {}
    for label, role in roles.items():
        answers[label] = _answer(conn, f"SELECT pgjobs.{name}({args})", role)
    assert answers["nobody"][0] == answers["reader"][0] == "42501", answers
    if name == "_visible_page":
        assert answers["client"][0] == "ok", answers  # the statement the client then runs
    else:
        assert answers["client"][0] == "42501", answers


def test_no_shadow_of_the_callers_runs_inside_a_definer_routine(
        conn: Conn, roles: dict[str, str]) -> None:
    client = roles["client"]
    before = {name: _answer(conn, sql, client) for name, sql in sorted(DEFINERS.items()) if sql}
    conn.execute(f"SET ROLE {client}")
    conn.execute(SHADOWS.replace("@functions@", _array(FUNCTIONS))
                 .replace("@operators@", _array(OPERATORS))
                 .replace("@types@", _array(COMMON_TYPES)))
    shadows = scalar(conn, """SELECT count(*) FROM pg_catalog.pg_proc
                               WHERE pronamespace = 'h180_evil'::regnamespace""")
    assert shadows > 200, shadows  # the shadows were made
    path = "h180_evil, pg_catalog, public"
    conn.execute(f"SET search_path = {path}")
    assert scalar(conn, "SELECT 1 = 1") is True
    conn.execute("RESET search_path")
    assert scalar(conn, "SELECT count(*) FROM h180_evil.calls") == 1  # the shadow ran
    conn.execute("DELETE FROM h180_evil.calls")
    conn.execute("RESET ROLE")
    after = {name: _answer(conn, sql, client, path)
             for name, sql in sorted(DEFINERS.items()) if sql}
    calls = conn.execute("SELECT what, who FROM h180_evil.calls").fetchall()
    assert calls == [], calls
    changed = {name: (before[name], after[name]) for name in before
               if before[name] != after[name]}
    assert changed == {}, changed
    refused = {name: a for name, a in before.items() if a[0] != "ok"}
    assert refused == {}, refused  # every routine was reached, not refused


# Tables a client may name in place of the registered public.user_table_rows:
# its own of the same name in its schema (ahead in its search_path), a view
# over it, names with a dot, quotes or another case. (name as created, the
# regclass text the call passes)
LOOK_ALIKES = {
    "own schema": ("h180_evil.user_table_rows", "h180_evil.user_table_rows"),
    "view": ("public.utr_view", "public.utr_view"),
    "dotted name": ('public."public.user_table_rows"', '"public.user_table_rows"'),
    "quoted case": ('public."User_Table_Rows"', 'public."User_Table_Rows"'),
    "quote inside": ('public."user_table_rows""x"', 'public."user_table_rows""x"'),
    # the session's temporary table: pg_temp comes first for the caller's names
    "temporary table": ("pg_temp.user_table_rows", "user_table_rows"),
}


def test_a_look_alike_of_the_target_is_a_table_pgjobs_never_saw(
        conn: Conn, roles: dict[str, str]) -> None:
    """Each client function that takes a target, given a table that looks
    like the registered one, answers as for a plain table pgjobs never saw
    (so the look-alike reached nothing of the registered one), and no job
    or row of the registered table changes."""
    from tests.test_trust_definer_surface import TARGET_CALLS

    client = roles["client"]
    columns = f"(LIKE public.{T} INCLUDING DEFAULTS)"
    conn.execute(f"CREATE TABLE public.h180_plain {columns}")
    for name, _ in LOOK_ALIKES.values():
        if name == "public.utr_view":
            conn.execute(f"CREATE VIEW {name} AS SELECT * FROM {T}")
        elif name.startswith("pg_temp."):
            conn.execute(f"CREATE TEMPORARY TABLE {name} {columns}")
        else:
            conn.execute(f"CREATE TABLE {name} {columns}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {client}")
        conn.execute(f"INSERT INTO {name} SELECT * FROM public.{T}")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.h180_plain TO {client}")
    conn.execute(f"INSERT INTO public.h180_plain SELECT * FROM {T}")
    state = (f"SELECT (SELECT count(*) FROM public.{T}), "
             f"(SELECT count(*) FROM pgjobs.jobs WHERE target = 'public.{T}'::regclass)")
    before = conn.execute(state).fetchone()
    path = "h180_evil, public, pg_catalog"
    wrong = {}
    for entry, sql in sorted(TARGET_CALLS.items()):
        plain = _answer(conn, sql.format(t="'public.h180_plain'"), client, path)
        plain = (plain[0], plain[1].replace("public.h180_plain", "T"))
        for label, (name, spelled) in LOOK_ALIKES.items():
            got = _answer(conn, sql.format(t="'" + spelled.replace("'", "''") + "'"),
                          client, path)
            shown = name.split(".", 1)[1].strip('"').replace('""', '"')
            got = (got[0], re.sub(r"pg_temp_\d+\.", "", got[1]).replace(name, "T")
                   .replace("public.", "").replace(shown, "T").replace('"T"', "T")
                   .replace("utr_view", "T"))
            if entry in ("submit", "submit_items"):  # a custom kind: any table, a new id
                got, plain = (got[0], re.sub(r"\d+", "<id>", got[1])), \
                    (plain[0], re.sub(r"\d+", "<id>", plain[1]))
            if got != plain:
                wrong[f"{entry} {label}"] = (got, plain)
    assert wrong == {}
    assert conn.execute(state).fetchone() == before


# Every client call that takes a scope, with a filter naming a misspelt field
# and a real one, and an exclude key: %(s)s the scope, %(k)s a key of its rows.
SCOPE_CALLS = {
    "submit_delete": f"SELECT pgjobs.submit_delete('{T}', %(s)s, '{{\"nmae\": \"n1\"}}', "
                     "ARRAY[%(k)s])",
    "submit_backfill": f"SELECT pgjobs.submit_backfill('{T}', %(s)s, '{{\"k\": 1}}', "
                       "'{\"label\": \"x\"}')",
    "submit_export": f"SELECT pgjobs.submit_export('{T}', %(s)s, '{{\"name\": \"n1\"}}')",
    "submit_import": f"SELECT pgjobs.submit_import('{T}', %(s)s, '{CLIENT_SOURCE_PREFIX}/a.csv')",
    "submit": f"SELECT pgjobs.submit('resize', '{T}', %(s)s)",
    "submit_items": f"SELECT pgjobs.submit_items('resize', '{T}', %(s)s, '[{{\"a\": 1}}]')",
    "preview": f"SELECT pgjobs.preview('{T}', %(s)s, '{{\"nmae\": 1}}', ARRAY[%(k)s])",
    "mask": f"SELECT pgjobs.mask('{T}', %(s)s)",
    "visible": f"SELECT count(*) FROM pgjobs.visible('{T}', %(s)s, '{{\"k\": 1}}')",
    "visible_count": f"SELECT pgjobs.visible_count('{T}', %(s)s, '{{\"nest.a\": 1}}')",
    "channel": f"SELECT pgjobs.channel('{T}', %(s)s)",
    "canonical_scope": f"SELECT pgjobs.canonical_scope('{T}', %(s)s) IS NULL",
}


def test_a_confined_client_learns_nothing_of_another_tenant(
        conn: Conn, roles: dict[str, str], client_roles: dict[str, str]) -> None:
    """Confined to tenant 1, the client asks about tenant 2 (rows, fields,
    a queued job of another role) and about tenant 9 (nothing at all):
    every answer (SQLSTATE, message and hint, the scope and key replaced)
    is the same, so no error or hint tells it anything of tenant 2."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {client_roles['other']}")
        conn.execute(f"SELECT pgjobs.submit_delete('{T}', '2', '{{\"n\": 1}}')")
    keys = {scope: str(scalar(conn, f"SELECT min(id) FROM {T} WHERE table_id = %s", (scope,))
                       or 99999) for scope in (2, 9)}
    answers = {}
    for scope in (2, 9):
        conn.execute(f"SET ROLE {roles['client']}")
        conn.execute("SET pgjobs.allowed_scopes = '1'")
        for name, sql in SCOPE_CALLS.items():
            try:
                with conn.transaction():
                    got = ("ok", repr(conn.execute(sql, {"s": str(scope),
                                                         "k": keys[scope]}).fetchall()))
            except psycopg.Error as exc:
                got = (str(exc.sqlstate), exc.diag.message_primary or "",
                       exc.diag.message_hint or "")
            answers[name, scope] = tuple(re.sub(rf"\b({scope}|{keys[scope]})\b", "S", part)
                                         for part in got)
        conn.execute("RESET pgjobs.allowed_scopes")
        conn.execute("RESET ROLE")
    differ = {name: (answers[name, 2], answers[name, 9]) for name in SCOPE_CALLS
              if answers[name, 2] != answers[name, 9]}
    assert differ == {}, differ
    told = {name: answers[name, 2] for name in SCOPE_CALLS
            if answers[name, 2][0] not in ("42501", "ok")}
    assert told == {}, told
    refused = {name for name in SCOPE_CALLS if answers[name, 2][0] == "42501"}
    assert refused == set(SCOPE_CALLS) - {"canonical_scope"}, answers
