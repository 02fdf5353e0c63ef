"""Session settings that pgjobs' own checks read (trust, h42).

Any role may `SET pgjobs.caller = ...` or call set_config on any `pgjobs.*`
setting. pgjobs._enter keeps the role a client call acts for, and its
entry point, for pgjobs._caller and pgjobs._require_entry to read. Before
h42 they were the settings pgjobs.caller and pgjobs.entry, which outlived
the call (transaction-local, for the session outside a transaction block)
and were honoured whatever set them: after a client's call, the same
transaction's engine code acted for the client; after a client's own
`SET pgjobs.caller`, for whomever it named. Now the call is kept in
pgjobs.call_<depth>, counted only while the call's _as frame stands at
that depth on the call stack (pgjobs._entered), and cleared as the call
returns (pgjobs._leave), as is pgjobs.compiled_columns after a submit. No
function SET clause names a placeholder setting: those need the SET
privilege on it, which a database owner without superuser lacks
(tests/test_migrate_privileges.py).

Every case below fails on the code before h42, except three groups that
guard the new mechanism itself and pass on either code: the presets of
the new per-depth settings (call_depths), a client's presets before its own
call (its pgjobs._enter overwrote them then as now), and
test_a_failed_call_leaves_no_setting_behind (the error path, which the
(sub)transaction abort undoes on either code: the clearing needs no more).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

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
    "visible": "(SELECT count(*) FROM pgjobs.visible('public.mine', '1'))::text",
    "mask": "pgjobs.mask('public.mine', '1')",
    "channel": "pgjobs.channel('public.mine', '1')",
}
# The settings a client may set itself to name a victim: the old names and
# the new per-depth ones (every depth a short stack reaches).
PRESETS = {
    "caller": ["pgjobs.caller"],
    "caller_and_entry": ["pgjobs.caller", "pgjobs.entry"],
    "call_depths": [f"pgjobs.call_{depth}" for depth in range(1, 16)],
}


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


# Every pgjobs setting a client call keeps (pg_settings lists no
# placeholder setting, so each is read by name).
KEPT = ["pgjobs.caller", "pgjobs.entry", "pgjobs.compiled_columns",
        *(f"pgjobs.call_{depth}" for depth in range(1, 41))]


def settings(conn: Conn) -> dict[str, str]:
    """Every setting a client call keeps that has a value."""
    rows = conn.execute("SELECT name, current_setting(name, true) FROM unnest(%s::text[]) name "
                        "WHERE coalesce(current_setting(name, true), '') <> ''",
                        (KEPT,)).fetchall()
    return dict(rows)


def me(conn: Conn) -> Any:
    return conn.execute("SELECT current_user").fetchone()


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("order", ["admin_then_client", "client_then_superuser"])
def test_a_client_call_leaves_no_setting_behind(
        conn: Conn, world: None, entry: str, order: str) -> None:
    """One transaction: a role calls an entry point, then the transaction
    goes on as another role; the pgjobs settings are as before the call
    (no role a call acted for, no entry, no compiled columns)."""
    first, then = (ADMIN, CLIENT) if order == "admin_then_client" else (CLIENT, None)
    with conn.transaction():
        before = settings(conn)
        conn.execute(f"SET ROLE {first}")
        conn.execute(f"SELECT {ENTRIES[entry]}")
        conn.execute(f"SET ROLE {then}" if then else "RESET ROLE")
        conn.execute("RESET ROLE")
        assert settings(conn) == before


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_engine_code_after_a_client_call_acts_for_its_own_role(
        conn: Conn, world: None, entry: str) -> None:
    """One transaction: CLIENT calls an entry point, then the superuser's
    own engine code runs: it acts for the superuser, not for CLIENT (which
    has no right on public.other)."""
    with conn.transaction():
        mine = me(conn)
        conn.execute(f"SET ROLE {CLIENT}")
        conn.execute(f"SELECT {ENTRIES[entry]}")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT pgjobs._caller()").fetchone() == mine
        # the registry's door checks the caller's privileges: none for CLIENT
        conn.execute("SELECT pgjobs._target('public.other')")
        conn.execute("SELECT pgjobs._require_entry('public.other')")


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("scope", ["session", "local"])
def test_a_clients_own_setting_names_no_one(
        conn: Conn, world: None, preset: str, scope: str) -> None:
    """A client sets the settings itself (a pooled connection keeps them):
    code that runs afterwards as another role in the same session acts for
    that role, not for the one the client named."""
    with conn.transaction():
        mine = me(conn)
        conn.execute(f"SET ROLE {CLIENT}")
        local = "true" if scope == "local" else "false"
        for name in PRESETS[preset]:
            value = {"pgjobs.caller": VICTIM, "pgjobs.entry": "mask"}.get(
                name, f"mask/{VICTIM}")
            conn.execute("SELECT set_config(%s, %s, %s::boolean)", (name, value, local))
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT pgjobs._caller()").fetchone() == mine
        conn.execute("SELECT pgjobs._target('public.other')")
        conn.execute("SELECT pgjobs._require_entry('public.other')")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_clients_own_setting_does_not_change_whom_its_call_acts_for(
        conn: Conn, world: None, preset: str) -> None:
    """The client names VICTIM before its own call: the call acts for the
    client (CLIENT may delete from public.mine; VICTIM may not)."""
    conn.execute(f"SET ROLE {CLIENT}")
    for name in PRESETS[preset]:
        value = {"pgjobs.caller": VICTIM, "pgjobs.entry": "mask"}.get(name, f"mask/{VICTIM}")
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    job = conn.execute("SELECT pgjobs.submit_delete('public.mine', '1', '{}', '{}', "
                       "'{\"run_at\": \"2999-01-01T00:00:00Z\"}')").fetchone()
    conn.execute("RESET ROLE")
    assert job is not None
    assert conn.execute("SELECT submitted_by FROM pgjobs.jobs WHERE id = %s",
                        (job[0],)).fetchone() == (CLIENT,)


@pytest.fixture
def nested(conn: Conn, world: None) -> Iterator[None]:
    """A trigger on pgjobs.jobs (test only) that runs inside a submit: it
    calls VICTIM's SECURITY DEFINER function, which makes a client call of
    its own (pgjobs.mask as VICTIM), and then records whom the submit acts
    for."""
    conn.execute(f"""
        GRANT SELECT ON public.other TO {VICTIM};
        CREATE TABLE public.seen (caller name);
        CREATE FUNCTION public.victim_reads() RETURNS text LANGUAGE sql SECURITY DEFINER
            SET search_path = pg_catalog AS $$ SELECT pgjobs.mask('public.other', '1') $$;
        ALTER FUNCTION public.victim_reads() OWNER TO {VICTIM};
        CREATE FUNCTION public.nested_call() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM public.victim_reads();
            INSERT INTO public.seen VALUES (pgjobs._caller());
            RETURN NULL;
        END $$;
        CREATE TRIGGER nested_call AFTER INSERT ON pgjobs.jobs
            FOR EACH ROW EXECUTE FUNCTION public.nested_call();""")
    yield
    conn.execute("DROP TRIGGER nested_call ON pgjobs.jobs")
    conn.execute("DROP FUNCTION public.nested_call(), public.victim_reads()")
    conn.execute("DROP TABLE public.seen")


@pytest.mark.parametrize("entry", sorted(e for e in ENTRIES if e.startswith("submit")))
def test_a_call_made_inside_a_call_leaves_the_outer_call_acting_for_its_caller(
        conn: Conn, nested: None, entry: str) -> None:
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute(f"SELECT {ENTRIES[entry]}")
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT caller FROM public.seen").fetchall() == [(CLIENT,)]
    assert settings(conn) == {}


@pytest.mark.parametrize("how", ["savepoint", "exception_block"])
def test_a_failed_call_leaves_no_setting_behind(conn: Conn, world: None, how: str) -> None:
    """A call that fails after pgjobs._enter (CLIENT may not delete from
    public.other) is undone with its subtransaction, settings included."""
    with conn.transaction():
        mine = me(conn)
        before = settings(conn)
        conn.execute(f"SET ROLE {CLIENT}")
        if how == "savepoint":
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute("SELECT pgjobs.submit_delete('public.other', '1')")
        else:
            conn.execute("""DO $$ BEGIN
                                PERFORM pgjobs.submit_delete('public.other', '1');
                            EXCEPTION WHEN insufficient_privilege THEN NULL;
                            END $$""")
        conn.execute("RESET ROLE")
        assert settings(conn) == before
        assert conn.execute("SELECT pgjobs._caller()").fetchone() == mine
