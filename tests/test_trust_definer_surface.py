"""What a client role can learn through the functions it may execute (BQ).

Every SECURITY DEFINER function in schema pgjobs runs as pgjobs' owner, who
reads the registry (pgjobs.target_registry), every tenant's jobs and the
settings. A client role (granted pgjobs_client) may call some of them with
arguments of its choosing. Found: pgjobs._allowed_scope_keys() listed every
registered target, pgjobs._confined_targets(role) and
pgjobs._row_security_confines(target, role) told which tables were
registered with ignore_row_security, for any role, and
pgjobs._scope_allowed(target, scope) whether a table was registered; every
target-taking entry point said "not registered" (22023) for one table and
"lacks SELECT" (42501) for a registered one the client may not touch.

1. The surface: every client-executable SECURITY DEFINER function is on the
   allow-list below with the reason it may be; a new one fails here until it
   is reviewed. Nothing is executable by PUBLIC.
2. Every SECURITY DEFINER body pgjobs._*_as refuses a direct call (42501).
3. No privilege on a table, nothing learnt: each client function that takes
   a target answers the same for a registered table (with or without
   ignore_row_security) as for one pgjobs never saw.
4. A role argument names the caller only: asking about another role is
   refused, whether that role exists or not.
5. A job of another role is an unknown id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_surface_client_{PID}"
OTHER = f"pgjobs_surface_other_{PID}"

# Every SECURITY DEFINER function a pgjobs_client role may execute, with why.
ALLOWED_DEFINERS = {
    "_submit_as": "body of pgjobs.submit; pgjobs._enter refuses any other caller",
    "_submit_delete_as": "body of pgjobs.submit_delete; pgjobs._enter",
    "_submit_backfill_as": "body of pgjobs.submit_backfill; pgjobs._enter",
    "_submit_export_as": "body of pgjobs.submit_export; pgjobs._enter",
    "_submit_import_as": "body of pgjobs.submit_import; pgjobs._enter",
    "_submit_items_as": "body of pgjobs.submit_items; pgjobs._enter",
    "_add_items_as": "body of pgjobs.add_items; pgjobs._enter, P0002 for a job it may not see",
    "_cancel_as": "body of pgjobs.cancel; pgjobs._enter, P0002 for a job it may not see",
    "_pause_as": "body of pgjobs.pause; pgjobs._enter, P0002 for a job it may not see",
    "_resume_as": "body of pgjobs.resume; pgjobs._enter, P0002 for a job it may not see",
    "_retry_as": "body of pgjobs.retry; pgjobs._enter, P0002 for a job it may not see",
    "_mask_as": "body of pgjobs.mask; pgjobs._enter",
    "_visible_as": "body of pgjobs.visible; pgjobs._enter",
    "_visible_count_as": "body of pgjobs.visible_count; pgjobs._enter",
    "_channel_as": "body of pgjobs.channel; pgjobs._enter",
    "_canonical_scope_as": "body of pgjobs.canonical_scope; pgjobs._enter, the scope unchanged "
                           "for a table the caller may not read (as for an unknown one)",
    "_controllable_as": "body of pgjobs.controllable; pgjobs._enter, only about the caller's "
                        "rights (pgjobs._control_allowed), a job it may not see left out as "
                        "an unknown id (tests/test_ui_actions_allowed.py)",
    "_client_room_as": "body of pgjobs.client_room; pgjobs._enter, only about the caller "
                       "(tests/test_client_room.py)",
    "_preview_as": "body of pgjobs.preview; pgjobs._enter",
    "_confined_targets_as": "policy jobs_client_read's confinement list; pgjobs._enter, "
                            "only about the caller (pgjobs._require_self)",
    "_row_security_confines_as": "view pgjobs.targets' confinement test; pgjobs._enter, "
                                 "only about the caller",
    "_column_read_targets_as": "policy jobs_client_read's and view pgjobs.targets' list of "
                               "the tables the caller reads through column grants; "
                               "pgjobs._enter, only about the caller, catalogs only",
    "_allowed_scope_keys_as": "policy jobs_client_read's tenancy keys; pgjobs._enter, only "
                              "targets the caller may read or has jobs on",
    "_visible_page": "pgjobs.visible's short way: the statement of a plain page, which the "
                     "caller then runs as itself; NULL unless the session's role (SET ROLE, "
                     "or login) may SELECT the table (a direct call learns nothing more)",
    "_engine_wait_as": "body of pgjobs._engine_wait; pgjobs._enter, which calls it only for a "
                       "caller that sees a due queued delete or backfill: one fixed sentence",
}

# Each client function that takes a target ({t}), called as CLIENT.
TARGET_CALLS = {
    "submit": "SELECT pgjobs.submit('custom', {t}, '1')",
    "submit_delete": "SELECT pgjobs.submit_delete({t}, '1')",
    "submit_backfill": """SELECT pgjobs.submit_backfill({t}, '1', '{{}}', '{{"v": 1}}')""",
    "submit_export": "SELECT pgjobs.submit_export({t}, '1')",
    "submit_import": "SELECT pgjobs.submit_import({t}, '1', 'file:///nowhere/x.csv')",
    "submit_items": """SELECT pgjobs.submit_items('custom', {t}, '1', '[{{"n": 1}}]')""",
    "visible": "SELECT count(*) FROM pgjobs.visible({t}, '1')",
    "visible_count": "SELECT pgjobs.visible_count({t}, '1')",
    "_visible_page": "SELECT pgjobs._visible_page({t}, '1', NULL, 100)",
    "mask": "SELECT pgjobs.mask({t}, '1')",
    "preview": "SELECT pgjobs.preview({t}, '1')",
    "channel": "SELECT pgjobs.channel({t}, '1')",
    "canonical_scope": "SELECT pgjobs.canonical_scope({t}, '01')",
    "_gate_holder": "SELECT pgjobs._gate_holder({t}, '1', 0)",
    "_row_security_confines": "SELECT pgjobs._row_security_confines({t}, current_user)",
}

# Each client function that takes a role ({r}), called as CLIENT.
ROLE_CALLS = {
    "_confined_targets": "SELECT pgjobs._confined_targets({r})",
    "_row_security_confines": "SELECT pgjobs._row_security_confines('public.surf_mine', {r})",
}

# Each client function that takes a job id ({j}), called as CLIENT.
JOB_CALLS = {
    "cancel": "SELECT pgjobs.cancel({j})",
    "pause": "SELECT pgjobs.pause({j})",
    "resume": "SELECT pgjobs.resume({j})",
    "retry": "SELECT pgjobs.retry({j})",
    "add_items": """SELECT pgjobs.add_items({j}, '[{{"n": 2}}]')""",
}

# A registered table and one pgjobs never saw, then the same two with row
# security (the registered one with ignore_row_security): CLIENT has no
# privilege on any of them. surf_mine it may read.
HIDDEN = ("public.surf_reg", "public.surf_unreg", "public.surf_rls_reg", "public.surf_rls_unreg")

CLIENT_EXECUTABLE = """
    SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), p.prosecdef,
           p.proargtypes::regtype[]::text[]
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pgjobs'::regnamespace
       AND (pg_catalog.has_function_privilege(%s, p.oid, 'EXECUTE')
            OR pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE'))
     ORDER BY 1, 2"""


@pytest.fixture
def world(conn: Conn) -> Iterator[int]:
    """The tables above, CLIENT and OTHER (both pgjobs_client), a queued
    items job of OTHER on surf_reg. Yields its id."""
    for role in (CLIENT, OTHER):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    for table in (*HIDDEN, "public.surf_mine"):
        conn.execute(f"""
            CREATE TABLE {table} (id bigint NOT NULL, s int NOT NULL, v int, data jsonb,
                                  created_at timestamptz NOT NULL DEFAULT now());
            CREATE INDEX ON {table} (s, id);
            INSERT INTO {table} (id, s, data) SELECT g, 1 + g % 2, '{{"k": 1}}'
              FROM generate_series(1, 10) g;""")
    for table in ("public.surf_rls_reg", "public.surf_rls_unreg"):
        conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY p ON {table} USING (s = 1)")
    for table, options in (("public.surf_reg", "{}"), ("public.surf_mine", "{}"),
                           ("public.surf_rls_reg", '{"ignore_row_security": true}')):
        conn.execute("SELECT pgjobs.register_target(%s, 'id', 's', 'created_at', 'data', %s)",
                     (table, options))
    conn.execute(f"GRANT SELECT, UPDATE, DELETE ON public.surf_reg, public.surf_rls_reg "
                 f"TO {OTHER}")
    conn.execute(f"GRANT SELECT ON public.surf_mine TO {CLIENT}")
    conn.execute(f"SET ROLE {OTHER}")
    job = int(scalar(conn, """SELECT pgjobs.submit_items('custom', 'public.surf_reg', '1',
                                  '[{"n": 1}]', '{"run_at": "2999-01-01T00:00:00Z"}')"""))
    conn.execute("RESET ROLE")
    yield job
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    for role in (CLIENT, OTHER):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _answer(conn: Conn, sql: str, names: dict[str, str]) -> tuple[str, ...]:
    """The SQLSTATE, message and hint of sql's error (or its rows), with the
    names in `names` replaced by their placeholders."""
    try:
        with conn.transaction():
            parts: tuple[str, ...] = ("ok", repr(conn.execute(sql).fetchall()))
    except psycopg.Error as exc:
        parts = (str(exc.sqlstate), exc.diag.message_primary or "", exc.diag.message_hint or "")
    out = [parts[0]]  # the SQLSTATE as it is
    for part in parts[1:]:
        for name, placeholder in names.items():
            part = re.sub(rf"(?<![\w.]){re.escape(name)}\b", placeholder, part)
        out.append(re.sub(r"\b\d{4,}\b", "<oid>", part))
    return tuple(out)


def test_every_client_executable_security_definer_function_is_reviewed(
        conn: Conn, world: int) -> None:
    rows = conn.execute(CLIENT_EXECUTABLE, (CLIENT,)).fetchall()
    definers = {name for name, _args, definer, _types in rows if definer}
    assert definers == set(ALLOWED_DEFINERS), (
        f"new, unreviewed: {sorted(definers - set(ALLOWED_DEFINERS))}; "
        f"no longer client-executable: {sorted(set(ALLOWED_DEFINERS) - definers)}")
    public = conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert public == []


def test_every_security_definer_body_refuses_a_direct_call(conn: Conn, world: int) -> None:
    """Each pgjobs._*_as, called as the client naming the superuser, every
    other argument NULL: refused by pgjobs._enter before anything is read.
    (One test, every body: a database per body took a second each.)"""
    rows = conn.execute(CLIENT_EXECUTABLE, (CLIENT,)).fetchall()
    bodies = {name: types for name, _args, definer, types in rows
              if definer and name.endswith("_as")}
    assert len(bodies) >= 19, bodies
    conn.execute(f"SET ROLE {CLIENT}")
    answers = {}
    for name, types in sorted(bodies.items()):
        args = ["'postgres'::name"] + [f"NULL::{t}" for t in types[1:]]
        answers[name] = _answer(conn, f"SELECT pgjobs.{name}({', '.join(args)})", {})
    conn.execute("RESET ROLE")
    wrong = {name: a for name, a in answers.items()
             if a[0] != "42501" or "may only be called by" not in a[1]}
    assert wrong == {}, wrong


def test_every_client_function_taking_a_target_or_a_role_is_probed(
        conn: Conn, world: int) -> None:
    rows = conn.execute(CLIENT_EXECUTABLE, (CLIENT,)).fetchall()
    entries = [(name, types) for name, _args, _definer, types in rows
               if not name.endswith("_as")]
    assert {n for n, types in entries if "regclass" in types} == set(TARGET_CALLS)
    assert {n for n, types in entries if "name" in types} == set(ROLE_CALLS)
    assert {n for n, types in entries
            if "bigint" in types and "regclass" not in types} == set(JOB_CALLS)


def test_no_privilege_no_difference_between_registered_and_unknown_tables(
        conn: Conn, world: int) -> None:
    """Each client function that takes a target, on the four tables CLIENT
    may not touch. (One test, every function: see above.)"""
    conn.execute(f"SET ROLE {CLIENT}")
    answers = {entry: {table: _answer(conn, sql.format(t=f"'{table}'"), {table: "T"})
                       for table in HIDDEN}
               for entry, sql in sorted(TARGET_CALLS.items())}
    conn.execute("RESET ROLE")
    # Pairs that differ only in being registered (row security on a table
    # is the catalog's, public, and may answer differently).
    differ = {entry: a for entry, a in answers.items()
              if a[HIDDEN[0]] != a[HIDDEN[1]] or a[HIDDEN[2]] != a[HIDDEN[3]]}
    assert differ == {}, differ


def test_the_policy_lists_tell_nothing_of_unreadable_tables(conn: Conn, world: int) -> None:
    """The confinement list names both row-security tables alike; the
    tenancy keys name only what the client may read."""
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    conn.execute(f"SET ROLE {CLIENT}")
    confined = set(scalar(conn, "SELECT pgjobs._confined_targets(current_user)::text[]"))
    keys = set(scalar(conn, "SELECT pgjobs._allowed_scope_keys()"))
    conn.execute("RESET ROLE")
    assert {"surf_rls_reg", "surf_rls_unreg"} <= confined, confined
    mine = scalar(conn, "SELECT 'public.surf_mine'::regclass::oid::text")
    assert keys == {f"{mine}:1"}, keys
    # ... and OTHER, who may read surf_reg and surf_rls_reg, gets theirs.
    conn.execute(f"SET ROLE {OTHER}")
    confined = set(scalar(conn, "SELECT pgjobs._confined_targets(current_user)::text[]"))
    keys = set(scalar(conn, "SELECT pgjobs._allowed_scope_keys()"))
    conn.execute("RESET ROLE")
    assert "surf_rls_reg" not in confined and "surf_rls_unreg" in confined, confined
    assert len(keys) == 2, keys


@pytest.mark.parametrize("entry", sorted(ROLE_CALLS))
def test_a_role_argument_names_the_caller_only(conn: Conn, world: int, entry: str) -> None:
    conn.execute(f"SET ROLE {CLIENT}")
    mine = _answer(conn, ROLE_CALLS[entry].format(r="current_user"), {})
    other = _answer(conn, ROLE_CALLS[entry].format(r=f"'{OTHER}'"), {})
    admin = _answer(conn, ROLE_CALLS[entry].format(r="'postgres'"), {})
    nobody = _answer(conn, ROLE_CALLS[entry].format(r="'no_such_role_at_all'"), {})
    conn.execute("RESET ROLE")
    assert mine[0] == "ok", mine
    assert other == admin == nobody, (other, admin, nobody)
    assert other[0] == "42501" and OTHER not in other[1], other


@pytest.mark.parametrize("entry", sorted(JOB_CALLS))
def test_another_roles_job_is_an_unknown_id(conn: Conn, world: int, entry: str) -> None:
    unknown = 1 + int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))
    conn.execute(f"SET ROLE {CLIENT}")
    theirs = _answer(conn, JOB_CALLS[entry].format(j=world), {str(world): "J"})
    none = _answer(conn, JOB_CALLS[entry].format(j=unknown), {str(unknown): "J"})
    conn.execute("RESET ROLE")
    assert theirs == none and theirs[0] == "P0002", (theirs, none)
