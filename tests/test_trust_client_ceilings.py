"""A client's ceilings hold as a class: each is exact under concurrency, and
fan-out jobs have a ceiling on their items (h36).

* max_items_per_job (pgjobs.set_defaults): pgjobs.submit_items and
  pgjobs.add_items took any number of items, one call or many, each a row of
  pgjobs.job_items; a client made a job of a million items with one call.
  Both pass pgjobs._items_add, which now refuses a client past the ceiling
  with 55006 and a hint naming the setting, nothing written.
* max_pending_per_client, max_kinds_per_client: pgjobs._require_client_room
  counted without a lock, so two sessions of one client, each in a
  transaction not yet committed, did not see each other's jobs and together
  passed the ceiling. It now writes the client's row of pgjobs.client_locks
  first (migration 0050): the client's submitting transactions count one
  after the other. The tests below use real sessions (threads with their own
  connections) and order events by what the server reports (the second
  session waiting on a lock, or done), never by time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

SUBMIT_ITEMS = ("SELECT pgjobs.submit_items('resize', 'user_table_rows', %(scope)s, "
                "%(items)s::jsonb)")
ADD_ITEMS = "SELECT pgjobs.add_items(%(job)s, %(items)s::jsonb)"


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "hclient", "GRANT pgjobs_client TO {role}", grant)
    other = make_role(conn, "hother", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "hadmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "other": other, "admin": admin}
    for role in (client, other, admin):
        drop_role(conn, role)


_scopes = iter(range(1000, 10**6))


def _as(conn: Conn, role: str, call: str, **params: Any) -> Any:
    params.setdefault("scope", str(next(_scopes)))
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        return scalar(conn, call, params)


def _set(conn: Conn, **settings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(settings),))


def _items(n: int) -> str:
    return json.dumps([{"n": i} for i in range(n)])


def _item_rows(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.job_items"))


# How a client may bring one fan-out job to n items: (submit with, then add
# these batches). Each way reaches 3 items, the ceiling below.
WAYS = {
    "one_submit": (3, []),
    "submit_then_add": (1, [2]),
    "many_adds": (1, [1, 1]),
}


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("over", ["submit_items", "add_items"])
def test_a_fan_out_jobs_items_have_a_ceiling(conn: Conn, roles: dict[str, str],
                                            way: str, over: str) -> None:
    _set(conn, max_items_per_job=3)
    client = roles["client"]
    first, adds = WAYS[way]
    job = int(_as(conn, client, SUBMIT_ITEMS, items=_items(first)))
    for n in adds:
        assert _as(conn, client, ADD_ITEMS, job=job, items=_items(n)) == n
    assert scalar(conn, "SELECT total FROM pgjobs.jobs WHERE id = %s", (job,)) == 3  # at it
    before = _item_rows(conn), scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    call, params = ((SUBMIT_ITEMS, {"items": _items(4)}) if over == "submit_items"
                    else (ADD_ITEMS, {"job": job, "items": _items(1)}))
    with pytest.raises(errors.ObjectInUse) as info:     # one over
        _as(conn, client, call, **params)
    assert "at most 3 items" in (info.value.diag.message_primary or "")
    assert 'pgjobs.set_defaults(\'{"max_items_per_job": N}\')' in (
        info.value.diag.message_hint or "")
    assert (_item_rows(conn), scalar(conn, "SELECT count(*) FROM pgjobs.jobs")) == before
    _as(conn, roles["admin"], call, **params)            # administrators are not held
    _set(conn, max_items_per_job=4)                      # the operator raises it
    if over == "submit_items":
        _as(conn, client, call, **params)
    else:
        job = int(_as(conn, client, SUBMIT_ITEMS, items=_items(3)))
        _as(conn, client, ADD_ITEMS, job=job, items=_items(1))
    _set(conn, max_items_per_job=None)                   # back to the built-in 100,000
    assert "max_items_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


def test_the_built_in_item_ceiling_is_a_hundred_thousand(conn: Conn,
                                                         roles: dict[str, str]) -> None:
    client = roles["client"]
    many = json.dumps([1] * 100000)
    job = int(_as(conn, client, SUBMIT_ITEMS, items=many))
    with pytest.raises(errors.ObjectInUse, match="at most 100000 items"):
        _as(conn, client, ADD_ITEMS, job=job, items="[1]")


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "\"10\"", "true", "[]", "100000001"])
def test_a_bad_item_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_items_per_job"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_items_per_job": {value}}}',))
    assert "max_items_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, max_items_per_job=5)  # a good one is stored, and null resets it
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'max_items_per_job'") == "5"
    _set(conn, max_items_per_job=None)
    assert "max_items_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


# -- exact under concurrency ------------------------------------------------

# The ceiling, what the first session submits and leaves uncommitted, and
# what a second session of the same client then does.
RACES = {
    "max_pending_per_client": ("SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)",
                               "SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)"),
    "max_kinds_per_client": ("SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)",
                             "SELECT pgjobs.submit('k2', 'user_table_rows', %(scope)s)"),
}


def _race(conn: Conn, make_conn: Callable[..., Conn], role: str, first: str, second: str,
          end: str) -> BaseException | None:
    """The first session submits and holds its transaction open; a second
    session of `role` submits meanwhile (a thread with its own connection).
    Once the server shows the second waiting on a lock, or it is done, the
    first ends (`end`: commit or rollback). Returns the second's error."""
    holder = make_conn(autocommit=False)
    holder.execute(f"SET ROLE {role}")
    holder.execute(first, {"scope": str(next(_scopes))})
    second_conn = make_conn()
    pid = second_conn.info.backend_pid
    outcome: dict[str, BaseException | None] = {}
    started = threading.Barrier(2)

    def run() -> None:
        started.wait()
        try:
            _as(second_conn, role, second)
            outcome["error"] = None
        except psycopg.Error as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    started.wait()
    # Wait for an event, not a time: the second is done, or blocked on a lock.
    while "error" not in outcome and not scalar(
            conn, "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity "
                  "WHERE pid = %s", (pid,)):
        thread.join(0.01)
    getattr(holder, end)()
    thread.join()
    return outcome["error"]


@pytest.mark.parametrize("ceiling", sorted(RACES))
def test_two_open_transactions_of_a_client_cannot_pass_its_ceiling_together(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str],
        ceiling: str) -> None:
    _set(conn, **{ceiling: 1})
    client = roles["client"]
    error = _race(conn, make_conn, client, *RACES[ceiling], end="commit")
    assert isinstance(error, errors.ObjectInUse), error
    assert f'"{ceiling}": N' in (error.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s",
                  (client,)) == 1


@pytest.mark.parametrize("ceiling", sorted(RACES))
def test_a_rolled_back_submit_leaves_its_place_to_the_one_waiting(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str],
        ceiling: str) -> None:
    _set(conn, **{ceiling: 1})
    client = roles["client"]
    assert _race(conn, make_conn, client, *RACES[ceiling], end="rollback") is None
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s",
                  (client,)) == 1


def test_a_retry_racing_a_submit_cannot_pass_the_ceiling(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    client = roles["client"]
    job = int(_as(conn, client, "SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)"))
    _as(conn, client, f"SELECT pgjobs.cancel({job})")
    _set(conn, max_pending_per_client=1)
    error = _race(conn, make_conn, client, RACES["max_pending_per_client"][0],
                  f"SELECT pgjobs.retry({job})", end="commit")
    assert isinstance(error, errors.ObjectInUse), error
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "canceled"


@pytest.mark.parametrize("who", ["other", "admin"])
def test_a_clients_open_transaction_holds_no_other_role_back(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str], who: str) -> None:
    """The lock is the client's own: another client, or an administrator,
    submits while it sits in an open transaction."""
    holder = make_conn(autocommit=False)
    holder.execute(f"SET ROLE {roles['client']}")
    holder.execute(RACES["max_pending_per_client"][0], {"scope": "1"})
    other = make_conn()
    other.execute("SET lock_timeout = '5s'")  # a failure, not a hang, if it waited
    _as(other, roles[who], "SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)")
    holder.rollback()


def test_no_client_can_lock_a_clients_row(conn: Conn, roles: dict[str, str]) -> None:
    """Any role may take any advisory lock; these rows only pgjobs writes."""
    _as(conn, roles["client"], "SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)")
    for call in ("SELECT 1 FROM pgjobs.client_locks FOR UPDATE",
                 "UPDATE pgjobs.client_locks SET submitter_oid = submitter_oid"):
        with pytest.raises(errors.InsufficientPrivilege):
            _as(conn, roles["client"], call)


# -- the gate's lock rows ----------------------------------------------------

WRITERS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', %(scope)s)",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', %(scope)s, '{}', "
                "'{\"n\": 1}')",
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_prune_deletes_the_lock_rows_of_scopes_no_writer_holds(
        conn: Conn, roles: dict[str, str], kind: str) -> None:
    """A writing submit made a row of pgjobs.scope_locks per (target, scope)
    and kept it: a client writing to ever new scopes, under its ceilings at
    any one time (submit, cancel, next scope), grew the table without end.
    prune deletes the rows of scopes with no writer pending; the gate works
    as before when a submit makes the row again."""
    client = roles["client"]
    conn.execute("SELECT pgjobs.set_defaults('{\"max_pending_per_client\": 1}')")
    scopes = [str(s) for s in range(500, 530)]
    for scope in scopes:
        job = int(_as(conn, client, WRITERS[kind], scope=scope))
        _as(conn, client, f"SELECT pgjobs.cancel({job})")
    kept = int(_as(conn, client, WRITERS[kind], scope="531"))  # still pending
    assert scalar(conn, "SELECT count(*) FROM pgjobs.scope_locks") >= 31
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")
    assert summary["scope_locks_deleted"] >= 30
    assert scalar(conn, "SELECT array_agg(scope) FROM pgjobs.scope_locks") == ["531"]
    _as(conn, client, f"SELECT pgjobs.cancel({kept})")
    _as(conn, client, WRITERS[kind], scope="500")  # the row is made again
    assert scalar(conn, "SELECT count(*) FROM pgjobs.scope_locks WHERE scope = '500'") == 1
