"""No client spends another client's room, nor keeps bytes outside its own
(an attacker's pass over the client-facing surface, h158).

Found: the bytes a job keeps (fan-out items, exclude lists, payloads past
4 KiB) count toward its submitter's max_item_bytes_per_client
(pgjobs._keep_client_bytes), whoever makes the call. A client that may
control another client's fan-out job (every right on a shared target, no
pgjobs.allowed_scopes) could add_items to it: the bytes counted for the
submitter, not for the caller. So the attacker (1) filled a victim's room,
after which every submit_items, long exclude list and large payload of
the victim, on any table, was refused with 55006 until its jobs were
pruned; (2) kept bytes beyond its own ceiling, 1 GiB per other client
whose jobs it can reach, the disk the ceiling is there to bound; (3) read
the victim's room, which pgjobs.client_room() shows to the client itself
only, in the 55006 refusal ("it keeps N bytes now, M left"); and (4) on a
job whose submitter was dropped, kept bytes that counted for no one.

Now pgjobs._keep_client_bytes, the one count of the ceiling, refuses a
caller that is neither the job's submitter (the very role, by oid) nor an
administrator: 42501, before anything is counted or written, naming no
figure of anyone's room. Cancel, pause, resume and retry of such a job,
which keep no bytes, are unchanged; an administrator's additions still
count for the client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, scalar_as

Conn = psycopg.Connection[Any]

GRANT = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
SUBMIT_ITEMS = "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, %s::jsonb)"
ADD_ITEMS = "SELECT pgjobs.add_items(%s, %s::jsonb)"
LATER = '{"run_at": "2999-01-01T00:00:00Z"}'
CEILING = 5000
MESSAGE = ("job {job} was submitted by another role: only its submitter or an "
           "administrator may add fan-out items to it (they count toward the "
           "submitter's max_item_bytes_per_client)")
HINT = ("Submit them as a job of your own (they count toward your own room: "
        "pgjobs.client_room()), or ask the job's submitter or an administrator to add them.")


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    """`victim` and `attacker`, two clients with every right on the shared
    user_table_rows (each sees and may control the other's jobs there);
    `member`, a client that is an INHERIT member of the victim; `admin`."""
    seed(conn, make_rows_target(conn), 30)
    made = {name: make_role(conn, f"orm{name}", f"GRANT pgjobs_{kind} TO {{role}}", GRANT)
            for name, kind in (("victim", "client"), ("attacker", "client"),
                               ("member", "client"), ("admin", "admin"))}
    conn.execute(f"GRANT {made['victim']} TO {made['member']}")
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_item_bytes_per_client": CEILING}),))
    yield made
    conn.execute("RESET ROLE")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    for role in made.values():
        drop_role(conn, role)


def _items(n: int, width: int = 100) -> str:
    """n items whose JSON text is n * width bytes."""
    text = "[" + ", ".join(json.dumps("x" * (width - 4)) for _ in range(n)) + "]"
    assert len(text) == n * width
    return text


def _state(conn: Conn) -> tuple[Any, ...]:
    """Everything the engine counts or keeps: the running totals, the jobs'
    totals and kept bytes, the items."""
    return (scalar(conn, "SELECT coalesce(array_agg(array[submitter_oid::bigint, kept_bytes] "
                         "ORDER BY submitter_oid), '{}') FROM pgjobs.client_room_locks"),
            scalar(conn, "SELECT coalesce(array_agg(array[id, total, kept_bytes, item_bytes] "
                         "ORDER BY id), '{}') FROM pgjobs.jobs"),
            scalar(conn, "SELECT count(*) FROM pgjobs.job_items"))


def _room(conn: Conn, role: str) -> int:
    return int(scalar_as(conn, role, "SELECT room_bytes FROM pgjobs.client_room()"))


def _refused(conn: Conn, role: str, job: int, items: str) -> None:
    before = _state(conn)
    with pytest.raises(errors.InsufficientPrivilege) as info:
        scalar_as(conn, role, ADD_ITEMS, (job, items))
    assert info.value.diag.message_primary == MESSAGE.format(job=job)
    assert info.value.diag.message_hint == HINT
    assert _state(conn) == before


@pytest.mark.parametrize("who", ["attacker", "member"])
def test_a_client_adds_nothing_to_a_job_it_did_not_submit(
        conn: Conn, roles: dict[str, str], who: str) -> None:
    """The attacker may see and cancel the victim's job, not make it keep
    bytes: neither at once (room spent) nor at the ceiling (the 55006 would
    quote the victim's room). An INHERIT member of the victim is another
    role too (it reads its own room, pgjobs.client_room)."""
    victim = roles["victim"]
    job = int(scalar_as(conn, victim, SUBMIT_ITEMS + ", %s::jsonb", ("1", _items(10), LATER)))
    room = _room(conn, victim)
    assert room == CEILING - 1000
    _refused(conn, roles[who], job, _items(1))
    _refused(conn, roles[who], job, _items(room // 100 + 1))   # past the victim's room
    _refused(conn, roles[who], job, "[]")
    assert _room(conn, victim) == room
    assert _room(conn, roles[who]) == CEILING
    # It still sees the job, and may control it: those keep no bytes.
    assert scalar_as(conn, roles[who], "SELECT count(*) FROM pgjobs.jobs WHERE id = %s",
                     (job,)) == 1
    scalar_as(conn, roles[who], "SELECT pgjobs.pause(%s)", (job,))
    scalar_as(conn, roles[who], "SELECT pgjobs.resume(%s)", (job,))
    # Acting as the victim (SET ROLE) is the victim, and counts for it.
    assert scalar_as(conn, victim, ADD_ITEMS, (job, _items(1))) == 1
    assert _room(conn, victim) == room - 100
    # An administrator still adds to it, for the victim.
    assert scalar_as(conn, roles["admin"], ADD_ITEMS, (job, _items(2))) == 2
    assert _room(conn, victim) == room - 300


def test_a_client_cannot_escape_its_own_ceiling_through_others_jobs(
        conn: Conn, roles: dict[str, str]) -> None:
    """With its own room spent, the attacker keeps nothing more through the
    victim's job (it would count for the victim, whose room is free)."""
    attacker, victim = roles["attacker"], roles["victim"]
    int(scalar_as(conn, attacker, SUBMIT_ITEMS, ("2", _items(CEILING // 100))))
    assert _room(conn, attacker) == 0
    job = int(scalar_as(conn, victim, SUBMIT_ITEMS + ", %s::jsonb", ("1", _items(1), LATER)))
    _refused(conn, attacker, job, _items(10))
    assert _room(conn, victim) == CEILING - 100


def test_a_job_whose_submitter_is_gone_takes_no_bytes_that_count_for_no_one(
        conn: Conn, roles: dict[str, str]) -> None:
    """The submitter dropped: bytes added to its job would count for no role."""
    gone = make_role(conn, "ormgone", "GRANT pgjobs_client TO {role}", GRANT)
    job = int(scalar_as(conn, gone, SUBMIT_ITEMS + ", %s::jsonb", ("1", _items(1), LATER)))
    drop_role(conn, gone)
    _refused(conn, roles["attacker"], job, _items(10))
    # An administrator may: the job is an administrator's to finish or drop.
    assert scalar_as(conn, roles["admin"], ADD_ITEMS, (job, _items(1))) == 1

