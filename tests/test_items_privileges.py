"""Fan-out jobs: privileges and tenancy as for custom kinds (issue 16).

Submitting and appending need UPDATE on the target (the custom kinds' rule) and
a scope in pgjobs.allowed_scopes; the item calls are the engine's (pgjobs_admin
only); a client reads the items of exactly the jobs it may read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_target, scalar
from tests.support.roles import make_role

Conn = psycopg.Connection[Any]

SUBMIT = "SELECT pgjobs.submit_items('doc', 'items'::regclass, %s, %s::jsonb)"


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    make_target(conn)
    made = {
        "writer": make_role(conn, "iwriter", "GRANT pgjobs_client TO {role}",
                        "GRANT SELECT, UPDATE ON items TO {role}"),
        "other": make_role(conn, "iother", "GRANT pgjobs_client TO {role}",
                       "GRANT UPDATE ON items TO {role}"),
        "reader": make_role(conn, "ireader", "GRANT pgjobs_client TO {role}",
                        "GRANT SELECT ON items TO {role}"),
        "nobody": make_role(conn, "inobody", "GRANT pgjobs_client TO {role}"),
    }
    yield made
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("who", ["reader", "nobody"])
def test_submit_items_needs_update_on_the_target(conn: Conn, roles: dict[str, str],
                                                 who: str) -> None:
    conn.execute(f"SET ROLE {roles[who]}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(SUBMIT, ("1", "[1]"))
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_allowed_scopes_hold_for_submit_items(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    conn.execute("SET pgjobs.allowed_scopes = '7'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(SUBMIT, ("8", "[1]"))
    assert scalar(conn, SUBMIT, ("7", "[1]")) > 0


@pytest.mark.parametrize("call", [
    "SELECT * FROM pgjobs.claim_items(ARRAY['doc'], 'w')",
    "SELECT pgjobs.complete_item(1, 'w#0')",
    "SELECT pgjobs.complete_items(ARRAY[1]::bigint[], ARRAY['w#0'])",
    "SELECT pgjobs.fail_item(1, 'w#0', 'x')",
    "SELECT pgjobs.heartbeat_item(1, 'w#0')",
    "SELECT pgjobs._submit_items_as(current_user, 'doc', 'items', '1', '[1]', '{}')",
    "SELECT pgjobs._add_items_as(current_user, 1, '[1]')",
    "SELECT pgjobs._items_add(1, '[1]')",
    "SELECT pgjobs._items_add(1, '[1]', true)",
    "SELECT pgjobs._items_stop(1, 'canceled')",
    "UPDATE pgjobs.job_items SET status = 'succeeded'",
    "INSERT INTO pgjobs.job_items (job_id, payload) VALUES (1, '1')",
])
def test_clients_cannot_act_as_workers_or_write_items(conn: Conn, roles: dict[str, str],
                                                      call: str) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    scalar(conn, SUBMIT, ("1", "[1]"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(call)


def test_clients_read_the_items_of_the_jobs_they_may_read(conn: Conn,
                                                          roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    mine = scalar(conn, SUBMIT, ("1", json.dumps(["a", "b"])))
    conn.execute(f"SET ROLE {roles['other']}")  # UPDATE only: sees its own jobs only
    theirs = scalar(conn, SUBMIT, ("2", json.dumps(["c"])))
    assert conn.execute("SELECT job_id, payload FROM pgjobs.job_items").fetchall() == [
        (theirs, "c")]
    with pytest.raises(psycopg.errors.NoDataFound):  # not even a hint that it exists
        conn.execute("SELECT pgjobs.add_items(%s, '[1]')", (mine,))
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT pgjobs.cancel(%s)", (mine,))
    conn.execute(f"SET ROLE {roles['writer']}")  # SELECT on the target: every job there
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items") == 3
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    assert {r[0] for r in conn.execute("SELECT job_id FROM pgjobs.job_items")} == {mine}
    conn.execute("RESET pgjobs.allowed_scopes")
    assert scalar(conn, "SELECT pgjobs.add_items(%s, '[\"d\"]')", (mine,)) == 1
    conn.execute(f"SET ROLE {roles['nobody']}")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items") == 0


def test_admin_worker_serves_a_clients_job(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    job_id = scalar(conn, SUBMIT, ("1", "[1]"))
    conn.execute("RESET ROLE")
    worker = make_role(conn, "iworker", "GRANT pgjobs_admin TO {role}")
    try:
        conn.execute(f"SET ROLE {worker}")
        [(item, identity)] = conn.execute(
            "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w')").fetchall()
        assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, identity))
        conn.execute(f"SET ROLE {roles['writer']}")
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)) == "succeeded"
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {worker}")
