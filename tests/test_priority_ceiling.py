"""An administrator's ceiling on the priority clients give their jobs
(pgjobs.set_defaults' max_client_priority; docs/operations.md "Defaults").

Anyone who may submit chose any priority up to 1,000,000: a client's jobs
then went ahead of every other tenant's, always. With the ceiling set, every
submit of a role that is not an administrator (pgjobs_admin member or
superuser) above it is refused with 22023 and a hint, before anything is
written; administrators are not held to it. Unset, nothing changes. The
check is in pgjobs._insert_job_row, which every submit passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

SUBMITS = [
    "SELECT pgjobs.submit('custom', 'user_table_rows', '1', '{}', %(options)s)",
    "SELECT pgjobs.submit_delete('user_table_rows', '1', '{\"n\": 1}', '{}', %(options)s)",
    "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{\"n\": 1}', '{\"label\": \"x\"}', "
    "%(options)s)",
    "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', %(options)s)",
    "SELECT pgjobs.submit_items('custom', 'user_table_rows', '1', '[{\"a\": 1}]', %(options)s)",
]


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    client = make_role(conn, "pclient", "GRANT pgjobs_client TO {role}",
                   "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    admin = make_role(conn, "padmin", "GRANT pgjobs_admin TO {role}",
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    yield {"client": client, "admin": admin}
    drop_role(conn, client)
    drop_role(conn, admin)


def _submit(conn: Conn, call: str, priority: int) -> int:
    with conn.transaction():
        return int(scalar(conn, call, {"options": f'{{"priority": {priority}}}'}))


@pytest.mark.parametrize("call", SUBMITS)
def test_a_client_above_the_ceiling_is_refused(conn: Conn, roles: dict[str, str],
                                              call: str) -> None:
    conn.execute("SELECT pgjobs.set_defaults('{\"max_client_priority\": 10}')")
    conn.execute(f"SET ROLE {roles['client']}")
    for priority in (11, 1_000_000):
        with pytest.raises(errors.InvalidParameterValue) as info:
            _submit(conn, call, priority)
        assert "above the ceiling of 10" in str(info.value)
        assert "max_client_priority" in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    job_id = _submit(conn, call, 10)  # at the ceiling: fine, and lower too
    assert scalar(conn, "SELECT priority FROM pgjobs.jobs WHERE id = %s", (job_id,)) == 10
    conn.execute("RESET ROLE")


@pytest.mark.parametrize("who", ["admin", "superuser"])
def test_administrators_are_not_held_to_it(conn: Conn, roles: dict[str, str], who: str) -> None:
    conn.execute("SELECT pgjobs.set_defaults('{\"max_client_priority\": 0}')")
    if who == "admin":
        conn.execute(f"SET ROLE {roles['admin']}")
    for call in SUBMITS:
        job_id = _submit(conn, call, 1_000_000)
        assert scalar(conn, "SELECT priority FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)) == 1_000_000
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    conn.execute("RESET ROLE")


def test_unset_or_reset_there_is_no_ceiling(conn: Conn, roles: dict[str, str]) -> None:
    assert "max_client_priority" not in scalar(conn, "SELECT pgjobs._defaults()")
    conn.execute(f"SET ROLE {roles['client']}")
    assert _submit(conn, SUBMITS[0], 1_000_000) > 0
    conn.execute("RESET ROLE")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_client_priority\": -5}')")
    conn.execute(f"SET ROLE {roles['client']}")
    with pytest.raises(errors.InvalidParameterValue):
        _submit(conn, SUBMITS[0], 0)
    assert _submit(conn, SUBMITS[0], -5) > 0
    conn.execute("RESET ROLE")
    defaults = scalar(conn, "SELECT pgjobs.set_defaults('{\"max_client_priority\": null}')")
    assert "max_client_priority" not in defaults
    conn.execute(f"SET ROLE {roles['client']}")
    assert _submit(conn, SUBMITS[0], 1_000_000) > 0
    conn.execute("RESET ROLE")


@pytest.mark.parametrize("value", ['"10"', "1.5", "1000001", "-1000001", "true"])
def test_a_bad_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_client_priority"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_client_priority": {value}}}',))
    assert "max_client_priority" not in scalar(conn, "SELECT pgjobs._defaults()")


def test_clients_may_not_set_the_ceiling(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['client']}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.set_defaults('{\"max_client_priority\": 1000000}')")
    conn.execute("RESET ROLE")


@pytest.mark.parametrize("call", SUBMITS)
def test_a_negative_ceiling_holds_when_the_client_gives_no_priority(
        conn: Conn, roles: dict[str, str], call: str) -> None:
    # Unless given, a job's priority is 0: under a negative ceiling a client
    # that left the option out got 0, above the ceiling its "priority": 0
    # was refused at. The ceiling holds on the priority the job gets.
    conn.execute("SELECT pgjobs.set_defaults('{\"max_client_priority\": -5}')")
    conn.execute(f"SET ROLE {roles['client']}")
    with pytest.raises(errors.InvalidParameterValue) as info, conn.transaction():
        conn.execute(call, {"options": "{}"})
    assert "above the ceiling of -5" in str(info.value)
    assert "the default" in str(info.value)
    assert '{"priority": -5}' in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    job_id = _submit(conn, call, -5)
    assert scalar(conn, "SELECT priority FROM pgjobs.jobs WHERE id = %s", (job_id,)) == -5
    conn.execute("RESET ROLE")
    # An administrator leaving it out still gets the default.
    conn.execute(f"SET ROLE {roles['admin']}")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    with conn.transaction():
        job_id = int(scalar(conn, call, {"options": "{}"}))
    assert scalar(conn, "SELECT priority FROM pgjobs.jobs WHERE id = %s", (job_id,)) == 0
    conn.execute("RESET ROLE")
