"""A client's ceiling on items over all its jobs (max_item_bytes_per_client)
holds when its sessions add items at once (review of h124).

Found: pgjobs._items_add counted the client's item bytes without a lock and
counted again under the client's lock (pgjobs._lock_client_room) only
within a tenth of the ceiling (pgjobs._near_ceiling), the margin the count
ceilings use, where a call adds one job. A call adds up to
max_item_bytes_per_job (64 MiB) of items, and a tenth of 1 GiB is not two
such calls: sessions of one client that each saw room a little under the
margin each passed without the lock, and together passed the ceiling (three
sessions at once sufficed; a hundred, 6 GiB). The margin now also covers ten
calls of the size being added. The interleavings are forced with one
connection a session: a session adds and holds its transaction open, the
next adds in a thread, the test waits until it waits on a lock or has ended.
No timing is asserted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, seed
from tests.support.roles import drop_role, item_bytes, make_role, scalar_as
from tests.support.waiting import waits_on_lock_or_ends

Conn = psycopg.Connection[Any]

SUBMIT_ITEMS = "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, %s::jsonb)"
ADD_ITEMS = "SELECT pgjobs.add_items(%s, %s::jsonb)"


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    seed(conn, make_rows_target(conn), 3)
    role = make_role(conn, "irclient", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 1000}')")
    yield role
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    drop_role(conn, role)


def _sized(n: int, width: int) -> str:
    text = "[" + ", ".join(json.dumps("x" * (width - 4)) for _ in range(n)) + "]"
    assert len(text) == n * width
    return text


def _jobs(conn: Conn, role: str, sizes: list[int]) -> list[int]:
    """Jobs of the client, committed, each with items of `size` bytes."""
    ids = []
    for scope, size in enumerate(sizes, start=1):
        ids.append(int(scalar_as(conn, role, SUBMIT_ITEMS, (str(scope), _sized(1, size)))))
    return ids


def _add_at_once(conn: Conn, make_conn: Callable[..., Conn], role: str,
                 adds: list[tuple[int, str]]) -> list[str]:
    """Each add in its own session and transaction, all at once: the first
    adds and holds its transaction open; each next one adds (then commits)
    in a thread, and the test goes on once it waits on a lock or has ended;
    then the first commits. The outcome of each: "added" or the SQLSTATE."""
    outcomes = ["" for _ in adds]
    sessions = []
    for _ in adds:
        session = make_conn(autocommit=False)
        session.execute(f"SET ROLE {role}")
        session.commit()
        sessions.append(session)

    def run(i: int) -> None:
        try:
            sessions[i].execute(ADD_ITEMS, adds[i])
            sessions[i].commit()
            outcomes[i] = "added"
        except psycopg.Error as exc:
            sessions[i].rollback()
            outcomes[i] = exc.sqlstate or "?"

    sessions[0].execute(ADD_ITEMS, adds[0])
    threads = []
    for i in range(1, len(adds)):
        done = threading.Event()

        def target(i: int = i, done: threading.Event = done) -> None:
            try:
                run(i)
            finally:
                done.set()

        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)
        waits_on_lock_or_ends(conn, sessions[i].info.backend_pid, done)
    sessions[0].commit()
    outcomes[0] = "added"
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return outcomes


def test_two_sessions_just_under_the_ceiling_count_one_after_the_other(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """Each sees 900 kept bytes of 1000 with room for its own call: the
    second waits for the first's transaction, then counts it and is refused."""
    first, second = _jobs(conn, client, [400, 400])
    outcomes = _add_at_once(conn, make_conn, client,
                            [(first, _sized(1, 100)), (second, _sized(1, 150))])
    assert outcomes == ["added", "55006"]
    assert item_bytes(conn, client) == 900


@pytest.mark.parametrize("sessions", [3, 5])
def test_sessions_far_from_the_ceiling_do_not_pass_it_together(
        conn: Conn, make_conn: Callable[..., Conn], client: str, sessions: int) -> None:
    """Each call alone leaves the client under the old margin (800 kept, 90
    more is 890 of 1000); together they would keep 800 + 90 * sessions."""
    jobs = _jobs(conn, client, [800 // sessions] * sessions)
    base = item_bytes(conn, client)
    outcomes = _add_at_once(conn, make_conn, client, [(job, _sized(1, 90)) for job in jobs])
    assert item_bytes(conn, client) <= 1000
    added = outcomes.count("added")
    assert added == (1000 - base) // 90
    assert outcomes.count("55006") == sessions - added
