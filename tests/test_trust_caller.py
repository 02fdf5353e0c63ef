"""Whom a client call acts for (issue 9 review, items 8/9).

pgjobs' client entry points are SECURITY INVOKER: the role they act for is
their current_user, which is the owner while a SECURITY DEFINER function
runs and the table owner while a superuser's ANALYZE or CREATE INDEX
evaluates an index expression, whatever session_user is. Their bodies,
pgjobs._<name>_as, are SECURITY DEFINER and refuse (42501) any caller but
their own entry point (pgjobs._enter), so a client cannot name another
role. Probes: code owned by a client with no rights on a table, run by a
superuser or an admin, asks pgjobs to act on that table: refused, nothing
written. SET ROLE apps (PostgREST style) act for the SET ROLE role.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()
NOBODY = f"pgjobs_caller_nobody_{PID}"
ADMIN = f"pgjobs_caller_admin_{PID}"
WEB = f"pgjobs_caller_web_{PID}"
LOGIN = f"pgjobs_caller_login_{PID}"

# Each client entry point, called on the table the client may not touch
# (`{job}`: a delete job of the superuser on it).
PROBES = {
    "submit_delete": "pgjobs.submit_delete('public.secret_hr', '1')::text",
    "submit_backfill":
        """pgjobs.submit_backfill('public.secret_hr', '1', '{}', '{"v": 7}')::text""",
    "submit_export": "pgjobs.submit_export('public.secret_hr', '1')::text",
    "submit": "pgjobs.submit('purge', 'public.secret_hr', '1')::text",
    "cancel": "pgjobs.cancel({job})::text",
    "visible": "(SELECT count(*) FROM pgjobs.visible('public.secret_hr', '1'))::text",
    "visible_count": "pgjobs.visible_count('public.secret_hr', '1')::text",
    "mask": "pgjobs.mask('public.secret_hr', '1')",
    "channel": "pgjobs.channel('public.secret_hr', '1')",
    "preview": "pgjobs.preview('public.secret_hr', '1')::text",
}

# Each SECURITY DEFINER body, called directly, naming the superuser.
INTERNALS = {
    "submit_delete": "pgjobs._submit_delete_as('postgres', 'public.secret_hr', '1', '{}', '{}', "
                     "'{}')::text",
    "submit_backfill": """pgjobs._submit_backfill_as('postgres', 'public.secret_hr', '1', '{}',
                          '{"v": 7}', '{}')::text""",
    "submit_export": "pgjobs._submit_export_as('postgres', 'public.secret_hr', '1', '{}', "
                     "'{}')::text",
    "submit": "pgjobs._submit_as('postgres', 'purge', 'public.secret_hr', '1', '{}', '{}')::text",
    "cancel": "pgjobs._cancel_as('postgres', {job})::text",
    "visible": "pgjobs._visible_as('postgres', 'public.secret_hr', '1', '{}', NULL, 100)::text",
    "visible_count": "pgjobs._visible_count_as('postgres', 'public.secret_hr', '1', '{}')::text",
    "mask": "pgjobs._mask_as('postgres', 'public.secret_hr', '1')",
    "channel": "pgjobs._channel_as('postgres', 'public.secret_hr', '1')",
    "preview": "pgjobs._preview_as('postgres', 'public.secret_hr', '1', '{}', '{}', '{}')::text",
}


@pytest.fixture
def world(conn: Conn) -> Iterator[int]:
    """secret_hr (registered; a queued delete job of the superuser on it), a
    client role NOBODY with no rights on it that may create functions and
    tables in public, an admin role ADMIN. Yields the job id."""
    conn.execute("""
        CREATE TABLE public.secret_hr (id bigint NOT NULL, s int NOT NULL, v int,
                                       created_at timestamptz NOT NULL
                                           DEFAULT now() - interval '1 hour',
                                       PRIMARY KEY (s, id));
        INSERT INTO public.secret_hr (id, s) SELECT g, 1 + g % 2 FROM generate_series(1, 10) g;
        SELECT pgjobs.register_target('public.secret_hr', 'id', 's', 'created_at');""")
    for role in (NOBODY, ADMIN):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {NOBODY} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {ADMIN} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {NOBODY}")
    job = scalar(conn, "SELECT pgjobs.submit_delete('public.secret_hr', '2', "
                       "'{}', '{}', '{\"run_at\": \"2999-01-01T00:00:00Z\"}')")
    yield int(job)
    conn.execute("RESET ROLE")
    for role in (NOBODY, ADMIN):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def jobs_state(conn: Conn) -> list[Any]:
    return conn.execute("SELECT id, kind, status, submitted_by FROM pgjobs.jobs "
                        "ORDER BY id").fetchall()


@pytest.mark.parametrize("runner", ["superuser", "admin"])
@pytest.mark.parametrize("entry", sorted(PROBES))
def test_a_clients_security_definer_function_acts_as_the_client(
        conn: Conn, world: int, entry: str, runner: str) -> None:
    before = jobs_state(conn)
    probe = PROBES[entry].replace("{job}", str(world))
    conn.execute(f"SET ROLE {NOBODY}")
    conn.execute(f"""
        CREATE FUNCTION public.probe() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
        AS $$ BEGIN RETURN {probe}; END $$""")
    conn.execute(f"GRANT EXECUTE ON FUNCTION public.probe() TO {ADMIN}")
    conn.execute("RESET ROLE" if runner == "superuser" else f"SET ROLE {ADMIN}")
    # The check was of the client's rights: refused naming it, or, for a job
    # it may not even see (cancel), that job does not exist for it.
    refusal = errors.NoDataFound if entry == "cancel" else errors.InsufficientPrivilege
    with pytest.raises(refusal) as caught:
        conn.execute("SELECT public.probe()")
    assert entry == "cancel" or NOBODY in str(caught.value)
    conn.execute("RESET ROLE")
    assert jobs_state(conn) == before
    # The same call made by the superuser itself is allowed: only the
    # identity differs.
    if entry not in ("submit_delete", "cancel"):
        conn.execute(f"SELECT {probe}")


@pytest.mark.parametrize("command", ["ANALYZE public.mine",
                                     "CREATE INDEX mine_again ON public.mine (public.ix(v))"])
@pytest.mark.parametrize("entry", sorted(PROBES))
def test_an_index_expression_in_a_superusers_maintenance_acts_as_the_table_owner(
        conn: Conn, world: int, entry: str, command: str) -> None:
    """A security-restricted operation: current_user is the table owner,
    session_user the superuser."""
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(str(d.message_primary)))
    before = jobs_state(conn)
    probe = PROBES[entry].replace("{job}", str(world))
    conn.execute(f"SET ROLE {NOBODY}")
    conn.execute(f"""
        CREATE FUNCTION public.ix(p int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            BEGIN
                RAISE NOTICE 'probe: %', {probe};
            EXCEPTION WHEN others THEN
                RAISE NOTICE 'probe refused: % %', SQLSTATE, SQLERRM;
            END;
            RETURN p;
        END $$;
        CREATE TABLE public.mine (v int);
        INSERT INTO public.mine SELECT 1;
        CREATE INDEX ON public.mine (public.ix(v));""")
    conn.execute("RESET ROLE")
    seen.clear()
    conn.execute(command)
    assert seen, "the index expression did not run"
    if entry == "cancel":  # a job the client may not see does not exist for it
        assert all(m.startswith("probe refused: P0002") for m in seen), seen
    else:
        assert all(m.startswith("probe refused: 42501") and NOBODY in m for m in seen), seen
    assert jobs_state(conn) == before


@pytest.mark.parametrize("how", ["direct", "do block", "sql function", "plpgsql function"])
@pytest.mark.parametrize("entry", sorted(INTERNALS))
def test_a_client_may_not_call_a_body_naming_another_role(
        conn: Conn, world: int, entry: str, how: str) -> None:
    before = jobs_state(conn)
    call = INTERNALS[entry].replace("{job}", str(world))
    conn.execute(f"SET ROLE {NOBODY}")
    if how == "sql function":
        conn.execute(f"CREATE FUNCTION public.{entry}() RETURNS text LANGUAGE sql "
                     f"AS $$ SELECT {call} $$")
    elif how == "plpgsql function":
        # Named like the entry point, in another schema.
        conn.execute(f"CREATE FUNCTION public.{entry}() RETURNS text LANGUAGE plpgsql "
                     f"AS $$ BEGIN RETURN {call}; END $$")
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        if how == "direct":
            conn.execute(f"SELECT {call}")
        elif how == "do block":
            conn.execute(f"DO $$ BEGIN PERFORM {call}; END $$")
        else:
            conn.execute(f"SELECT public.{entry}()")
    assert f"call pgjobs.{entry}, not pgjobs._{entry}_as" in (caught.value.diag.message_hint
                                                              or "").lower()
    conn.execute("RESET ROLE")
    assert jobs_state(conn) == before


def test_the_caller_setting_names_no_one_after_a_call_and_a_client_cannot_preset_it(
        conn: Conn, world: int) -> None:
    conn.execute(f"SET ROLE {NOBODY}")
    conn.execute("SET pgjobs.caller = 'postgres'")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.submit_delete('public.secret_hr', '1')")
    conn.execute("RESET pgjobs.caller")
    conn.execute("RESET ROLE")
    scalar(conn, "SELECT pgjobs.visible_count('public.secret_hr', '1')")
    assert (scalar(conn, "SELECT current_setting('pgjobs.caller', true)") or "") == ""


@pytest.fixture
def web(conn: Conn, make_conn: Any) -> Iterator[Conn]:
    """PostgREST style: a login role, member of pgjobs_client and of WEB,
    that SET ROLEs to WEB per request. Only WEB has rights on secret_hr."""
    for role in (LOGIN, WEB):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {WEB} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {LOGIN} LOGIN NOINHERIT IN ROLE pgjobs_client, {WEB}")
    conn.execute(f"GRANT SELECT, UPDATE, DELETE ON public.secret_hr TO {WEB}")
    app = make_conn(user=LOGIN)
    yield app
    app.close()
    for role in (LOGIN, WEB):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_set_role_app_acts_for_the_set_role_role(conn: Conn, world: int, web: Conn) -> None:
    web.execute(f"SET ROLE {WEB}")
    assert scalar(web, "SELECT pgjobs.visible_count('public.secret_hr', '1')") == 5
    assert len(web.execute("SELECT * FROM pgjobs.visible('public.secret_hr', '1')")
               .fetchall()) == 5
    assert scalar(web, "SELECT pgjobs.mask('public.secret_hr', '2')") != "true"
    assert scalar(web, "SELECT pgjobs.channel('public.secret_hr', '1')").startswith("pgjobs_")
    job = scalar(web, "SELECT pgjobs.submit_delete('public.secret_hr', '1', '{}', '{}', "
                      "'{\"run_at\": \"2999-01-01T00:00:00Z\"}')")
    assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s", (job,)) == WEB
    backfill = scalar(web, """SELECT pgjobs.submit_backfill('public.secret_hr', '1', '{}',
                                                            '{"v": 7}')""")
    assert scalar(conn, "SELECT submitted_by FROM pgjobs.jobs WHERE id = %s",
                  (backfill,)) == WEB
    assert scalar(web, "SELECT pgjobs.cancel(%s)", (job,)) is True
    web.execute("RESET ROLE")
    assert (scalar(web, "SELECT current_setting('pgjobs.caller', true)") or "") == ""
    # Back as the login role (NOINHERIT, as PostgREST's authenticator): it
    # acts for itself, which has none of WEB's rights.
    with pytest.raises(errors.InsufficientPrivilege):
        web.execute("SELECT pgjobs.submit_delete('public.secret_hr', '1')")
