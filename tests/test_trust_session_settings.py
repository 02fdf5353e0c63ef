"""Session settings that pgjobs' own checks read (trust, h39).

Any role may `SET pgjobs.caller = ...` or call set_config on any `pgjobs.*`
setting. pgjobs._enter puts the role a client call acts for in
pgjobs.caller and its entry point in pgjobs.entry; pgjobs._caller and
pgjobs._require_entry read them. Before h39 the two settings outlived the
call (transaction-local, and the internals' SET clauses did not name them),
and the readers honoured whatever value was there: after a client's call,
the same transaction's engine code acted for the client; after a client's
own `SET pgjobs.caller`, for whomever it named. Now every internal restores
both (and pgjobs.compiled_columns) on return, and pgjobs._entered honours
them only while the entry point and its internal are on the call stack.

Every case below fails on the code before h39.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_sess_client_{PID}"
ADMIN = f"pgjobs_sess_admin_{PID}"
VICTIM = f"pgjobs_sess_victim_{PID}"

# Each client entry point, called by CLIENT on public.mine (which it may
# read, delete and update).
ENTRIES = {
    "submit_delete": "pgjobs.submit_delete('public.mine', '1')::text",
    "submit_backfill": """pgjobs.submit_backfill('public.mine', '1', '{}', '{"v": 7}')::text""",
    "submit_export": "pgjobs.submit_export('public.mine', '1')::text",
    "submit": "pgjobs.submit('purge', 'public.mine', '1')::text",
    "preview": "pgjobs.preview('public.mine', '1')::text",
    "visible_count": "pgjobs.visible_count('public.mine', '1')::text",
    "mask": "pgjobs.mask('public.mine', '1')",
    "channel": "pgjobs.channel('public.mine', '1')",
}
# What the entry points left behind on the old code (compiled_columns: the
# submits that compile against the target's columns).
SETTINGS = ["pgjobs.caller", "pgjobs.entry", "pgjobs.compiled_columns"]
COMPILES = {"submit_delete", "submit_backfill", "submit_export"}


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    """public.mine (registered; CLIENT may SELECT, DELETE, UPDATE it),
    public.other (registered; only the superuser may touch it), a client
    role CLIENT, an admin role ADMIN, a client role VICTIM with no rights."""
    for table in ("mine", "other"):
        conn.execute(f"""
            CREATE TABLE public.{table} (id bigint NOT NULL, s int NOT NULL, v int,
                                         created_at timestamptz NOT NULL
                                             DEFAULT now() - interval '1 hour',
                                         PRIMARY KEY (s, id));
            INSERT INTO public.{table} (id, s) SELECT g, 1 + g % 2 FROM generate_series(1, 10) g;
            SELECT pgjobs.register_target('public.{table}', 'id', 's', 'created_at');""")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {VICTIM} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {ADMIN} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute(f"GRANT SELECT, DELETE, UPDATE ON public.mine TO {CLIENT}, {ADMIN}")
    yield
    conn.execute("RESET ROLE")
    conn.execute("RESET ALL")
    for role in (CLIENT, ADMIN, VICTIM):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def setting(conn: Conn, name: str) -> str:
    row = conn.execute("SELECT coalesce(current_setting(%s, true), '')", (name,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(("entry", "name"), [
    (entry, name) for entry in sorted(ENTRIES) for name in SETTINGS
    if name != "pgjobs.compiled_columns" or entry in COMPILES])
@pytest.mark.parametrize("order", ["admin_then_client", "client_then_superuser"])
def test_a_client_call_leaves_no_setting_behind(
        conn: Conn, world: None, entry: str, name: str, order: str) -> None:
    """One transaction: a role calls an entry point, then the transaction
    goes on as another role; the settings are as before the call."""
    first, then = (ADMIN, CLIENT) if order == "admin_then_client" else (CLIENT, None)
    with conn.transaction():
        conn.execute(f"SET ROLE {first}")
        conn.execute(f"SELECT {ENTRIES[entry]}")
        conn.execute(f"SET ROLE {then}" if then else "RESET ROLE")
        assert setting(conn, name) == ""


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_engine_code_after_a_client_call_acts_for_its_own_role(
        conn: Conn, world: None, entry: str) -> None:
    """One transaction: CLIENT calls an entry point, then the superuser's
    own engine code runs: it acts for the superuser, not for CLIENT (which
    has no right on public.other)."""
    with conn.transaction():
        me = conn.execute("SELECT current_user").fetchone()
        conn.execute(f"SET ROLE {CLIENT}")
        conn.execute(f"SELECT {ENTRIES[entry]}")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT pgjobs._caller()").fetchone() == me
        # the registry's door checks the caller's privileges: none for CLIENT
        conn.execute("SELECT pgjobs._target('public.other')")


@pytest.mark.parametrize("entry", ["", *sorted(ENTRIES)])
@pytest.mark.parametrize("scope", ["session", "local"])
def test_a_clients_own_setting_names_no_one(
        conn: Conn, world: None, entry: str, scope: str) -> None:
    """A client sets pgjobs.caller (and pgjobs.entry) itself, as a pooled
    connection keeps them: code that runs afterwards as another role in the
    same session acts for that role, not for the one the client named."""
    with conn.transaction():
        me = conn.execute("SELECT current_user").fetchone()
        conn.execute(f"SET ROLE {CLIENT}")
        local = "true" if scope == "local" else "false"
        conn.execute(f"SELECT set_config('pgjobs.caller', '{VICTIM}', {local})")
        if entry:
            conn.execute(f"SELECT set_config('pgjobs.entry', '{entry}', {local})")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT pgjobs._caller()").fetchone() == me
        conn.execute("SELECT pgjobs._target('public.other')")
        conn.execute("SELECT pgjobs._require_entry('public.other')")
