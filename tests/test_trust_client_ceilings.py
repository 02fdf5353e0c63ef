"""Fan-out jobs have a ceiling on their items, and the gate's lock rows do
not grow without end (h36).

* max_items_per_job (pgjobs.set_defaults): pgjobs.submit_items and
  pgjobs.add_items took any number of items, one call or many, each a row of
  pgjobs.job_items; a client made a job of a million items with one call.
  Both pass pgjobs._items_add, which now refuses a client past the ceiling
  with 55006 and a hint naming the setting, nothing written.
* max_item_bytes_per_job (h41): items of up to 1 MiB each times 100,000
  made a job of about 100 GB; _items_add now also holds a client to a
  ceiling on the bytes of a job's items (64 MiB unless set).
* max_rejects_per_job (h41): an import's rejects are rows of
  pgjobs.import_rejects; a client may ask at most this max_rejects (1000
  unless set), so one job keeps at most about 64 MiB of them.
* A writing submit kept one pgjobs.scope_locks row per (target, scope)
  forever: a client submitting to ever new scopes grew the table without
  end. pgjobs.prune now deletes the rows of scopes no writer holds.
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
    return scalar_as(conn, role, call, params)


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


# -- the bytes of a fan-out job's items -----------------------------------

def _sized(n: int, width: int) -> str:
    """An array of n items whose JSON text is exactly n * width bytes
    (each item ", "-separated, the brackets counted in the first)."""
    body = [json.dumps("x" * (width - 4)) for _ in range(n)]   # '"..."' + ', '
    text = "[" + ", ".join(body) + "]"
    assert len(text) == n * width
    return text


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("over", ["submit_items", "add_items"])
def test_a_fan_out_jobs_item_bytes_have_a_ceiling(conn: Conn, roles: dict[str, str],
                                                 way: str, over: str) -> None:
    """Items of up to 1 MiB each times max_items_per_job made a job of about
    100 GB; max_item_bytes_per_job bounds the bytes given to one job over
    its submit and every add_items together."""
    _set(conn, max_item_bytes_per_job=300)
    client = roles["client"]
    first, adds = WAYS[way]
    job = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(first, 100)))
    for n in adds:
        assert _as(conn, client, ADD_ITEMS, job=job, items=_sized(n, 100)) == n
    assert scalar(conn, "SELECT item_bytes FROM pgjobs.jobs WHERE id = %s", (job,)) == 300
    before = _item_rows(conn), scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    call, params = ((SUBMIT_ITEMS, {"items": _sized(1, 301)}) if over == "submit_items"
                    else (ADD_ITEMS, {"job": job, "items": _sized(1, 10)}))
    with pytest.raises(errors.ObjectInUse) as info:     # one over
        _as(conn, client, call, **params)
    assert "at most 300 bytes" in (info.value.diag.message_primary or "")
    assert 'pgjobs.set_defaults(\'{"max_item_bytes_per_job": N}\')' in (
        info.value.diag.message_hint or "")
    assert (_item_rows(conn), scalar(conn, "SELECT count(*) FROM pgjobs.jobs")) == before
    _as(conn, roles["admin"], call, **params)            # administrators are not held
    _set(conn, max_item_bytes_per_job=310)               # the operator raises it
    if over == "submit_items":
        _as(conn, client, call, **params)
    else:
        job = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(3, 100)))
        _as(conn, client, ADD_ITEMS, job=job, items=_sized(1, 10))
    _set(conn, max_item_bytes_per_job=None)              # back to the built-in 64 MiB
    assert "max_item_bytes_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


def test_the_built_in_item_bytes_ceiling_is_64_mib(conn: Conn, roles: dict[str, str]) -> None:
    client = roles["client"]
    mib = _sized(1, 1024 * 1024)                         # one item of 1 MiB - 2 bytes
    job = int(_as(conn, client, SUBMIT_ITEMS, items=mib))
    for _ in range(63):
        _as(conn, client, ADD_ITEMS, job=job, items=mib)
    assert scalar(conn, "SELECT item_bytes FROM pgjobs.jobs WHERE id = %s", (job,)) == 64 * 2**20
    with pytest.raises(errors.ObjectInUse, match="at most 67108864 bytes"):
        _as(conn, client, ADD_ITEMS, job=job, items="[1]")


def test_a_job_from_before_the_byte_count_has_its_items_counted(
        conn: Conn, roles: dict[str, str]) -> None:
    """A fan-out job made before migration 0054 has no item_bytes: its
    items are counted at its next add, not taken as none."""
    client = roles["client"]
    job = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(3, 100)))
    conn.execute("UPDATE pgjobs.jobs SET item_bytes = NULL WHERE id = %s", (job,))
    _set(conn, max_item_bytes_per_job=296)   # its items' texts: 3 * 98 bytes, + 3 is over
    with pytest.raises(errors.ObjectInUse, match="job .* has 294 bytes of items"):
        _as(conn, client, ADD_ITEMS, job=job, items="[1]")
    _set(conn, max_item_bytes_per_job=None)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "\"10\"", "true", "[]", "2147483648"])
def test_a_bad_item_bytes_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_item_bytes_per_job"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_item_bytes_per_job": {value}}}',))
    assert "max_item_bytes_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, max_item_bytes_per_job=5)  # a good one is stored, and null resets it
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'max_item_bytes_per_job'") == "5"
    _set(conn, max_item_bytes_per_job=None)
    assert "max_item_bytes_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


# -- an import's rejects ----------------------------------------------------

SOURCE_PREFIX = "file:///srv/pgjobs-client-ceilings"
SUBMIT_IMPORT = ("SELECT pgjobs.submit_import('user_table_rows', %(scope)s, "
                 f"'{SOURCE_PREFIX}/a.csv', %(options)s::jsonb)")


def _import(conn: Conn, role: str, max_rejects: int) -> Any:
    return _as(conn, role, SUBMIT_IMPORT, options=json.dumps({"max_rejects": max_rejects}))


@pytest.mark.parametrize("ceiling", [None, 0, 5])
def test_an_imports_max_rejects_has_a_ceiling(conn: Conn, roles: dict[str, str],
                                              ceiling: int | None) -> None:
    """Each reject is a row of pgjobs.import_rejects (its record up to 64 KiB
    characters) kept until the job is pruned, and max_rejects went to
    1,000,000: one client's import could keep about 64 GB in the database.
    max_rejects_per_job (1000 unless set) bounds what a client may ask."""
    conn.execute("SELECT pgjobs.allow_storage(%s)", (SOURCE_PREFIX,))
    if ceiling is not None:
        _set(conn, max_rejects_per_job=ceiling)
    limit = 1000 if ceiling is None else ceiling
    client = roles["client"]
    _import(conn, client, limit)                          # at the ceiling
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.InvalidParameterValue) as info:   # one over
        _import(conn, client, limit + 1)
    assert f"above the ceiling of {limit}" in (info.value.diag.message_primary or "")
    assert 'pgjobs.set_defaults(\'{"max_rejects_per_job": N}\')' in (
        info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before
    _import(conn, roles["admin"], limit + 1)              # administrators are not held
    _set(conn, max_rejects_per_job=limit + 1)             # the operator raises it
    _import(conn, client, limit + 1)
    _set(conn, max_rejects_per_job=None)
    assert "max_rejects_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


@pytest.mark.parametrize("value", ["-1", "1.5", "\"10\"", "true", "[]", "1000001"])
def test_a_bad_rejects_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_rejects_per_job"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_rejects_per_job": {value}}}',))
    assert "max_rejects_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, max_rejects_per_job=0)  # a good one is stored, and null resets it
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'max_rejects_per_job'") == "0"
    _set(conn, max_rejects_per_job=None)
    assert "max_rejects_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


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
    prune deletes the rows of scopes no writer is left of once it pruned the
    finished ones (within the retention they stay); the gate works as before
    when a submit makes the row again."""
    client = roles["client"]
    conn.execute("SELECT pgjobs.set_defaults('{\"max_pending_per_client\": 1}')")
    scopes = [str(s) for s in range(500, 530)]
    for scope in scopes:
        job = int(_as(conn, client, WRITERS[kind], scope=scope))
        _as(conn, client, f"SELECT pgjobs.cancel({job})")
    kept = int(_as(conn, client, WRITERS[kind], scope="531"))  # still pending
    assert scalar(conn, "SELECT count(*) FROM pgjobs.scope_locks") >= 31
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")  # the canceled stay
    assert summary["scope_locks_deleted"] == 0
    summary = scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert summary["scope_locks_deleted"] >= 30
    assert scalar(conn, "SELECT array_agg(scope) FROM pgjobs.scope_locks") == ["531"]
    _as(conn, client, f"SELECT pgjobs.cancel({kept})")
    _as(conn, client, WRITERS[kind], scope="500")  # the row is made again
    assert scalar(conn, "SELECT count(*) FROM pgjobs.scope_locks WHERE scope = '500'") == 1


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_repeatable_read_submit_is_not_failed_by_a_prune_within_the_retention(
        conn: Conn, make_conn: Any, roles: dict[str, str], kind: str) -> None:
    """A submit in a REPEATABLE READ transaction whose snapshot was taken
    before a prune deleted its scope's lock row failed with 40001 at
    pgjobs._lock_scope (h40's reproduction): prune deleted the row as soon as
    the scope's writer had finished. A scope written to within the retention
    keeps its row."""
    client = roles["client"]
    job = int(_as(conn, client, WRITERS[kind], scope="700"))
    _as(conn, client, f"SELECT pgjobs.cancel({job})")
    other = make_conn()
    other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    other.execute(f"SET LOCAL ROLE {client}")
    other.execute("SELECT count(*) FROM pgjobs.jobs")  # the snapshot
    scalar(conn, "SELECT pgjobs.prune('1 day')")
    assert scalar(other, WRITERS[kind], {"scope": "700"}) is not None
    other.execute("ROLLBACK")
