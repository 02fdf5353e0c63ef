"""A client cannot fill its scope's writer queue (set_defaults'
max_pending_writers; docs/operations.md "Fairness").

Found attacking as a client: a writing job (delete, backfill, import) that
waits behind its scope's gate stays in the claims' queue, and every claim of
every tenant asks the gate about each writer ahead of the job it hands out.
A client that queued 20,000 deletes of its own scope (no quota) made each
claim of the runner, for any tenant, take about 3 s. Now every path that
queues a writer (a writing submit of any kind, a retry) refuses, with 55006
and a hint, a client's writer beyond the ceiling of its (target, scope):
queued, running and paused writers count; exports and custom kinds do not
(they never wait behind the gate); administrators are not held to it. The
check is made under the scope's gate lock, so two submits cannot both take
the last place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed, wait_for
from tests.support.roles import drop_role, make_role, scalar_as

Conn = psycopg.Connection[Any]

SOURCE_PREFIX = "file:///srv/pgjobs-room"

# One writing submit of each kind, as a client may make it; {scope} is filled in.
WRITERS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', %(scope)s, '{\"n\": 1}')",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', %(scope)s, '{\"n\": 1}', "
                "'{\"label\": \"x\"}')",
    "import": "SELECT pgjobs.submit_import('user_table_rows', %(scope)s, "
              f"'{SOURCE_PREFIX}/a.csv')",
}


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (SOURCE_PREFIX,))
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "rclient", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "radmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "admin": admin}
    drop_role(conn, client)
    drop_role(conn, admin)


def _as(conn: Conn, role: str, call: str, scope: str = "1") -> int:
    """Run a call as `role` (SET ROLE inside a transaction, as a tier does)."""
    return int(scalar_as(conn, role, call, {"scope": scope}))


def _ceiling(conn: Conn, value: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(jsonb_build_object('max_pending_writers', %s::int))",
                 (value,))


def _refused(conn: Conn, role: str, call: str, scope: str = "1") -> psycopg.Error:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.ObjectInUse) as info:
        _as(conn, role, call, scope)
    assert "max_pending_writers" in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before, "nothing is written"
    return info.value


def test_the_built_in_ceiling_is_a_thousand(conn: Conn) -> None:
    assert scalar(conn, "SELECT pgjobs._max_pending_writers()") == 1000
    _ceiling(conn, 7)
    assert scalar(conn, "SELECT pgjobs._max_pending_writers()") == 7
    _ceiling(conn, None)
    assert scalar(conn, "SELECT pgjobs._max_pending_writers()") == 1000


@pytest.mark.parametrize("last", sorted(WRITERS))
@pytest.mark.parametrize("first", sorted(WRITERS))
def test_every_writing_kind_counts_and_is_refused(conn: Conn, roles: dict[str, str],
                                                   first: str, last: str) -> None:
    _ceiling(conn, 2)
    _as(conn, roles["client"], WRITERS[first])
    _as(conn, roles["client"], WRITERS[first])
    error = _refused(conn, roles["client"], WRITERS[last])
    assert "user_table_rows scope 1" in str(error)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_other_scopes_and_administrators_are_not_held(conn: Conn, roles: dict[str, str],
                                                      kind: str) -> None:
    _ceiling(conn, 1)
    _as(conn, roles["client"], WRITERS[kind])
    _refused(conn, roles["client"], WRITERS[kind])
    _as(conn, roles["client"], WRITERS[kind], scope="2")  # its own ceiling
    _as(conn, roles["admin"], WRITERS[kind])              # administrators are not held
    _refused(conn, roles["client"], WRITERS[kind], scope="01")  # the same scope, canonical
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE scope = '1'") == 2


@pytest.mark.parametrize("call", [
    "SELECT pgjobs.submit_export('user_table_rows', %(scope)s)",
    "SELECT pgjobs.submit('custom', 'user_table_rows', %(scope)s)",
    "SELECT pgjobs.submit_items('custom', 'user_table_rows', %(scope)s, '[{\"a\": 1}]')",
])
def test_jobs_that_never_wait_at_the_gate_do_not_count(conn: Conn, roles: dict[str, str],
                                                       call: str) -> None:
    _ceiling(conn, 1)
    _as(conn, roles["client"], call)
    _as(conn, roles["client"], call)
    _as(conn, roles["client"], WRITERS["delete"])
    _refused(conn, roles["client"], WRITERS["delete"])


def test_a_paused_writer_counts(conn: Conn, roles: dict[str, str]) -> None:
    _ceiling(conn, 2)
    first = _as(conn, roles["client"], WRITERS["delete"])
    _as(conn, roles["client"], f"SELECT pgjobs.pause({first})")
    _as(conn, roles["client"], WRITERS["backfill"])
    _refused(conn, roles["client"], WRITERS["delete"])
    _as(conn, roles["client"], f"SELECT pgjobs.cancel({first})")
    _as(conn, roles["client"], WRITERS["delete"])  # a canceled one holds no place


def test_a_retry_is_refused_when_the_scope_is_full(conn: Conn, roles: dict[str, str]) -> None:
    _ceiling(conn, 2)
    first = _as(conn, roles["client"], WRITERS["delete"])
    _as(conn, roles["client"], f"SELECT pgjobs.cancel({first})")
    _as(conn, roles["client"], WRITERS["delete"])
    _as(conn, roles["client"], WRITERS["backfill"])
    status = scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (first,))
    _refused(conn, roles["client"], f"SELECT pgjobs.retry({first})")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (first,)) == status
    _as(conn, roles["admin"], f"SELECT pgjobs.retry({first})")  # an administrator may
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (first,)) == "queued"


def test_two_submits_cannot_both_take_the_last_place(
        conn: Conn, roles: dict[str, str], make_conn: Callable[..., Conn]) -> None:
    _ceiling(conn, 1)
    holder, other = make_conn(), make_conn()
    holder.execute("BEGIN")
    holder.execute(f"SET LOCAL ROLE {roles['client']}")
    holder.execute(WRITERS["delete"], {"scope": "1"})  # takes the last place, uncommitted
    other_pid = scalar(other, "SELECT pg_backend_pid()")
    outcome: list[BaseException | int] = []

    def submit() -> None:
        try:
            outcome.append(_as(other, roles["client"], WRITERS["backfill"]))
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=submit)
    thread.start()
    wait_for(lambda: scalar(conn, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                  "WHERE pid = %s", (other_pid,)),
             what="the second submit to wait for the scope's gate lock")
    holder.execute("COMMIT")
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], errors.ObjectInUse), outcome
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE writes") == 1


@pytest.mark.parametrize("value", ["0", "1000001", "-1", "1.5", "\"10\"", "true", "[]"])
def test_a_bad_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_pending_writers"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_pending_writers": {value}}}',))
    assert "max_pending_writers" not in scalar(conn, "SELECT pgjobs._defaults()")


def test_every_path_that_queues_a_writer_checks_the_room() -> None:
    """Whatever takes the scope's gate lock queues a writer: it must ask for room."""
    from pathlib import Path

    functions = Path(__file__).resolve().parent.parent / "sql" / "functions"
    lockers = [path.name for path in sorted(functions.glob("*.sql"))
               if "pgjobs._lock_scope(" in path.read_text() and path.name != "_lock_scope.sql"]
    assert lockers == ["_insert_job_row.sql", "_retry_as.sql"], lockers
    for name in lockers:
        assert "pgjobs._require_queue_room(" in (functions / name).read_text(), name
