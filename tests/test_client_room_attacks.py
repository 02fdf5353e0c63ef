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

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]
ROOM = ("SELECT role, kept_bytes, max_item_bytes_per_client, room_bytes, jobs_keeping_bytes,"
        " held FROM pgjobs.client_room()")
GRANT = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
CEILING = 100000


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    made = {name: make_role(conn, f"cra{name}", "GRANT pgjobs_client TO {role}", GRANT)
            for name in ("a", "b")}
    conn.execute(f"GRANT {made['b']} TO {made['a']}")  # a may act as b (INHERIT)
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_item_bytes_per_client": CEILING}),))
    yield made
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    for role in made.values():
        drop_role(conn, role)


def _as(conn: Conn, role: str, sql: str, params: Any = None) -> Any:
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        row = conn.execute(sql, params).fetchone()
        return None if row is None else tuple(row)


def _kept(conn: Conn, role: str) -> int:
    """What the engine counts for the role, read as an administrator."""
    return int(scalar(conn, "SELECT coalesce(sum(kept_bytes), 0) FROM pgjobs.jobs "
                            "WHERE submitted_by = %s", (role,)))


def _big_items(conn: Conn, role: str, scope: str) -> int:
    row = _as(conn, role, "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, "
                          "%s::jsonb)", (scope, json.dumps(["i" * 700] * 10)))
    assert row is not None
    return int(row[0])


def test_a_member_of_another_client_reads_its_own_room_not_the_others(
        conn: Conn, roles: dict[str, str]) -> None:
    a, b = roles["a"], roles["b"]
    _big_items(conn, b, "1")
    assert _kept(conn, b) > 0
    assert _as(conn, a, ROOM) == (a, 0, CEILING, CEILING, 0, True)
    # Its own SECURITY INVOKER wrapper changes nothing: still a.
    conn.execute("CREATE FUNCTION public.cra_room() RETURNS bigint LANGUAGE sql "
                 "SET search_path = pg_catalog AS "
                 "$f$ SELECT kept_bytes FROM pgjobs.client_room() $f$")
    conn.execute(f"ALTER FUNCTION public.cra_room() OWNER TO {b}")
    assert _as(conn, a, "SELECT public.cra_room()") == (0,)
    # Only by acting as b (which a may, and then submits as b) does a see b's.
    assert _as(conn, b, ROOM) == (b, _kept(conn, b), CEILING, CEILING - _kept(conn, b), 1,
                                  True)


def test_client_room_writes_nothing(conn: Conn, roles: dict[str, str]) -> None:
    """It answers in a read-only transaction, and the counters it reads are
    the same after it (no row written, no lock kept)."""
    a = roles["a"]
    _big_items(conn, a, "1")
    locks_before = conn.execute("SELECT * FROM pgjobs.client_room_locks ORDER BY 1").fetchall()
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(f"SET LOCAL ROLE {a}")
        row = conn.execute(ROOM).fetchone()
        assert row is not None and row[1] == _kept(conn, a)
    assert conn.execute("SELECT * FROM pgjobs.client_room_locks ORDER BY 1").fetchall() \
        == locks_before


def test_the_room_is_exact_after_add_items_and_cancel(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    job = _big_items(conn, a, "1")
    first = _kept(conn, a)
    assert _as(conn, a, ROOM)[1:] == (first, CEILING, CEILING - first, 1, True)
    assert _as(conn, a, "SELECT pgjobs.add_items(%s, %s::jsonb)",
               (job, json.dumps(["j" * 900] * 5)))
    second = _kept(conn, a)
    assert second > first
    assert _as(conn, a, ROOM)[1:] == (second, CEILING, CEILING - second, 1, True)
    # Canceled, the job is kept until pruned: its bytes still count.
    assert _as(conn, a, "SELECT pgjobs.cancel(%s)", (job,))
    assert _as(conn, a, ROOM)[1:] == (second, CEILING, CEILING - second, 1, True)
    assert scalar(conn, "SELECT kept_bytes FROM pgjobs.client_room_locks l "
                        "JOIN pg_roles r ON r.oid = l.submitter_oid WHERE r.rolname = %s",
                  (a,)) == second


def test_a_role_created_again_under_a_name_learns_nothing_of_its_namesake(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    _big_items(conn, a, "1")
    assert _kept(conn, a) > 0
    conn.execute(f"REASSIGN OWNED BY {a} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {a}")
    conn.execute(f"DROP ROLE {a}")
    conn.execute(f"CREATE ROLE {a} NOLOGIN")
    conn.execute(f"GRANT pgjobs_client TO {a}")
    assert _as(conn, a, ROOM) == (a, 0, CEILING, CEILING, 0, True)
