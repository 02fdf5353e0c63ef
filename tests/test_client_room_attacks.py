"""An attacker's variants on pgjobs.client_room() (h148, a review of h146's
1c2fb9d): a client reads its own room and nothing else, changes nothing,
and the answer is exact.

Tried beyond the author's tests: a client that is a member of another
client (inheriting its privileges, without SET ROLE), its own SECURITY
INVOKER wrapper, a read-only transaction (nothing written), a role dropped
and created again under the name of one that kept bytes (the newcomer
starts from 0 and learns nothing of its namesake), and the total after
add_items and cancel compared with what the engine counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import CLIENT_ROOM, kept_bytes, roles_under_ceiling, row_as

Conn = psycopg.Connection[Any]
CEILING = 100000


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    with roles_under_ceiling(conn, "cra", CEILING, {"a": "client", "b": "client"}) as made:
        conn.execute(f"GRANT {made['b']} TO {made['a']}")  # a may act as b (INHERIT)
        yield made


def _big_items(conn: Conn, role: str, scope: str) -> int:
    row = row_as(conn, role, "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, "
                             "%s::jsonb)", (scope, json.dumps(["i" * 700] * 10)))
    assert row is not None
    return int(row[0])


def test_a_member_of_another_client_reads_its_own_room_not_the_others(
        conn: Conn, roles: dict[str, str]) -> None:
    a, b = roles["a"], roles["b"]
    _big_items(conn, b, "1")
    assert kept_bytes(conn, b) > 0
    assert row_as(conn, a, CLIENT_ROOM) == (a, 0, CEILING, CEILING, 0, True)
    # Its own SECURITY INVOKER wrapper changes nothing: still a.
    conn.execute("CREATE FUNCTION public.cra_room() RETURNS bigint LANGUAGE sql "
                 "SET search_path = pg_catalog AS "
                 "$f$ SELECT kept_bytes FROM pgjobs.client_room() $f$")
    conn.execute(f"ALTER FUNCTION public.cra_room() OWNER TO {b}")
    assert row_as(conn, a, "SELECT public.cra_room()") == (0,)
    # Only by acting as b (which a may, and then submits as b) does a see b's.
    assert row_as(conn, b, CLIENT_ROOM) == (b, kept_bytes(conn, b), CEILING,
                                            CEILING - kept_bytes(conn, b), 1, True)


def test_client_room_writes_nothing(conn: Conn, roles: dict[str, str]) -> None:
    """It answers in a read-only transaction, and the counters it reads are
    the same after it (no row written, no lock kept)."""
    a = roles["a"]
    _big_items(conn, a, "1")
    locks_before = conn.execute("SELECT * FROM pgjobs.client_room_locks ORDER BY 1").fetchall()
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(f"SET LOCAL ROLE {a}")
        row = conn.execute(CLIENT_ROOM).fetchone()
        assert row is not None and row[1] == kept_bytes(conn, a)
    assert conn.execute("SELECT * FROM pgjobs.client_room_locks ORDER BY 1").fetchall() \
        == locks_before


def test_the_room_is_exact_after_add_items_and_cancel(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    job = _big_items(conn, a, "1")
    first = kept_bytes(conn, a)
    assert row_as(conn, a, CLIENT_ROOM)[1:] == (first, CEILING, CEILING - first, 1, True)
    assert row_as(conn, a, "SELECT pgjobs.add_items(%s, %s::jsonb)",
                  (job, json.dumps(["j" * 900] * 5)))
    second = kept_bytes(conn, a)
    assert second > first
    assert row_as(conn, a, CLIENT_ROOM)[1:] == (second, CEILING, CEILING - second, 1, True)
    # Canceled, the job is kept until pruned: its bytes still count.
    assert row_as(conn, a, "SELECT pgjobs.cancel(%s)", (job,))
    assert row_as(conn, a, CLIENT_ROOM)[1:] == (second, CEILING, CEILING - second, 1, True)
    assert scalar(conn, "SELECT kept_bytes FROM pgjobs.client_room_locks l "
                        "JOIN pg_roles r ON r.oid = l.submitter_oid WHERE r.rolname = %s",
                  (a,)) == second


def test_a_role_created_again_under_a_name_learns_nothing_of_its_namesake(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    _big_items(conn, a, "1")
    assert kept_bytes(conn, a) > 0
    conn.execute(f"REASSIGN OWNED BY {a} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {a}")
    conn.execute(f"DROP ROLE {a}")
    conn.execute(f"CREATE ROLE {a} NOLOGIN")
    conn.execute(f"GRANT pgjobs_client TO {a}")
    assert row_as(conn, a, CLIENT_ROOM) == (a, 0, CEILING, CEILING, 0, True)
