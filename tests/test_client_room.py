"""A client reads its own room under max_item_bytes_per_client, and only its
own (h146).

Before: the running total a client is held to (client_room_locks.kept_bytes)
could be read by an administrator only; a client learned its room from a
55006 after the fact. pgjobs.client_room() answers for the role the engine
counts a submit for (pgjobs._caller: the SET ROLE role, the owner of a
SECURITY DEFINER function that calls it), never for a role named by the
caller, and `pgjobs room` prints it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors
from psycopg.conninfo import make_conninfo

from pgjobs.cli.main import main
from tests.support import scalar
from tests.support.roles import CLIENT_ROOM, kept_bytes, roles_under_ceiling, row_as, submit_padded

Conn = psycopg.Connection[Any]


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    with roles_under_ceiling(conn, "cr", 100000, {"a": "client", "b": "client",
                                                   "admin": "admin",
                                                   "stranger": None}) as made:  # not a client
        yield made


def _room(conn: Conn, role: str) -> tuple[Any, ...]:
    row = row_as(conn, role, CLIENT_ROOM)
    assert row is not None
    return tuple(row)


def _big(conn: Conn, role: str, scope: str, size: int) -> int:
    return submit_padded(conn, role, "cr_kind", scope, size)


def test_a_client_sees_its_own_total_change_as_it_submits_and_prunes(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    assert _room(conn, a) == (a, 0, 100000, 100000, 0, True)
    first = _big(conn, a, "1", 3000)
    kept = kept_bytes(conn, a)
    assert kept > 3000
    assert _room(conn, a) == (a, kept, 100000, 100000 - kept, 1, True)
    assert row_as(conn, a, "SELECT pgjobs.submit('cr_kind', 'user_table_rows', '2', '{}')")
    assert _room(conn, a)[1:] == (kept, 100000, 100000 - kept, 1, True)  # small: nothing
    items = row_as(conn, a, "SELECT pgjobs.submit_items('cr_items', 'user_table_rows', '1', "
                            "%s::jsonb)", (json.dumps(["i" * 500] * 10),))
    assert items is not None
    kept = kept_bytes(conn, a)
    assert _room(conn, a)[1:] == (kept, 100000, 100000 - kept, 2, True)
    # Pruned, the first job's bytes come back.
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days' WHERE id = %s", (first,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    kept = kept_bytes(conn, a)
    assert _room(conn, a)[1:] == (kept, 100000, 100000 - kept, 1, True)
    # A ceiling lowered below the total: no room, never a negative one.
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 10}')")
    assert _room(conn, a)[1:] == (kept, 10, 0, 1, True)


def test_what_the_room_says_is_what_a_submit_is_refused_past(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    _big(conn, a, "1", 3000)
    room = _room(conn, a)[3]
    with pytest.raises(errors.ObjectInUse) as caught:
        _big(conn, a, "2", room + 1)
    assert f", {room} left)" in (caught.value.diag.message_primary or "")


def test_a_client_never_sees_another_clients_room(conn: Conn, roles: dict[str, str]) -> None:
    a, b = roles["a"], roles["b"]
    _big(conn, a, "1", 5000)
    assert _room(conn, b) == (b, 0, 100000, 100000, 0, True)
    # Naming another role is refused: the body answers its entry point only.
    for role in (b, roles["admin"]):
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            row_as(conn, role, "SELECT * FROM pgjobs._client_room_as(%s)", (a,))
        assert "may only be called by pgjobs.client_room" in str(caught.value)
        assert caught.value.diag.message_hint
    # Under SET ROLE, the SET role's room, whoever logged in.
    conn.execute(f"SET ROLE {b}")
    try:
        assert scalar(conn, "SELECT kept_bytes FROM pgjobs.client_room()") == 0
    finally:
        conn.execute("RESET ROLE")


def test_a_definer_function_reads_the_room_of_its_owner(
        conn: Conn, roles: dict[str, str]) -> None:
    """The role the engine would count a submit for: the owner of a SECURITY
    DEFINER function that calls it, not the session's role."""
    a, b = roles["a"], roles["b"]
    _big(conn, a, "1", 4000)
    conn.execute("CREATE FUNCTION public.cr_room() RETURNS bigint LANGUAGE sql "
                 "SECURITY DEFINER SET search_path = pg_catalog AS "
                 "$f$ SELECT kept_bytes FROM pgjobs.client_room() $f$")
    conn.execute(f"ALTER FUNCTION public.cr_room() OWNER TO {a}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION public.cr_room() TO {b}")
    row = row_as(conn, b, "SELECT public.cr_room()")
    assert row is not None and row[0] == kept_bytes(conn, a) > 0


def test_an_administrator_gets_its_own_room_not_held(conn: Conn, roles: dict[str, str]) -> None:
    admin = roles["admin"]
    assert _room(conn, admin) == (admin, 0, 100000, 100000, 0, False)


def test_a_role_that_is_not_a_client_may_not_call_it(conn: Conn, roles: dict[str, str]) -> None:
    """PostgreSQL's own refusal, as for every pgjobs function: no USAGE on
    schema pgjobs (the command line adds the hint naming the grant)."""
    with pytest.raises(errors.InsufficientPrivilege,
                       match="permission denied for schema pgjobs"):
        row_as(conn, roles["stranger"], CLIENT_ROOM)


def test_the_command_line_prints_the_room(conn: Conn, dsn: str,
                                          roles: dict[str, str]) -> None:
    a = roles["a"]
    _big(conn, a, "1", 3000)
    kept = kept_bytes(conn, a)
    as_client = make_conninfo(dsn, options=f"-c role={a}")
    result = CliRunner().invoke(main, ["--dsn", as_client, "room", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "role": a, "kept_bytes": kept, "max_item_bytes_per_client": 100000,
        "room_bytes": 100000 - kept, "jobs_keeping_bytes": 1, "held": True}
    result = CliRunner().invoke(main, ["--dsn", as_client, "room"])
    assert result.exit_code == 0, result.output
    assert f"role {a} keeps {kept} bytes of 100000 (max_item_bytes_per_client)" \
        in result.stdout, result.stdout
    assert f"{100000 - kept} left" in result.stdout and "1 job" in result.stdout
    stranger = make_conninfo(dsn, options=f"-c role={roles['stranger']}")
    result = CliRunner().invoke(main, ["--dsn", stranger, "room"])
    assert result.exit_code != 0 and "42501" in result.output, result.output
    assert "GRANT pgjobs_client TO" in result.output, result.output
