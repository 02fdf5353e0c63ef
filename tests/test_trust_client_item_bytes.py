"""One tenant cannot fill the database's disk with fan-out items (an
attacker's pass on the shared resources, h124).

Found: the ceilings on a client's items were per job only
(max_item_bytes_per_job, 64 MiB), while a client may keep
max_jobs_kept_per_client jobs (100,000) until pgjobs.prune: a role granted
only pgjobs_client, looping pgjobs.submit_items (or add_items to its jobs,
or canceling each job and submitting the next), could keep TBs of
pgjobs.job_items. pgjobs._items_add, the one function every item entry point
passes, now also holds the job's submitter (when the caller is not an
administrator) to set_defaults' max_item_bytes_per_client (1 GiB unless
set) over the item_bytes of all its kept jobs, finished ones too: 55006
with a hint naming the setting, nothing written. The table: every way to
add (a new job, add_items to a job of one's own, another client's add_items
to it, refused since h158 whatever the room), a finished job still counting
until it is pruned, another client keeping its own room, administrators not
held, the built-in value, bad settings refused.
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
HINT = 'pgjobs.set_defaults(\'{"max_item_bytes_per_client": N}\')'


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "ibclient", "GRANT pgjobs_client TO {role}", grant)
    other = make_role(conn, "ibother", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "ibadmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "other": other, "admin": admin}
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    for role in (client, other, admin):
        drop_role(conn, role)


_scopes = iter(range(1000, 10**6))


def _as(conn: Conn, role: str, call: str, **params: Any) -> Any:
    params.setdefault("scope", str(next(_scopes)))
    return scalar_as(conn, role, call, params)


def _set(conn: Conn, **settings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(settings),))


def _forge_kept(conn: Conn, job: int, kept: int) -> None:
    """Make job keep `kept` bytes toward its client's running total (as if
    it had been given them), without writing them."""
    conn.execute("UPDATE pgjobs.client_room_locks l SET kept_bytes = l.kept_bytes + %s "
                 "- coalesce(j.kept_bytes, 0) FROM pgjobs.jobs j "
                 "WHERE j.id = %s AND l.submitter_oid = j.submitted_by_oid", (kept, job))
    conn.execute("UPDATE pgjobs.jobs SET item_bytes = %s, kept_bytes = %s WHERE id = %s",
                 (kept, kept, job))


def _sized(n: int, width: int) -> str:
    """An array of n items whose JSON text is exactly n * width bytes."""
    text = "[" + ", ".join(json.dumps("x" * (width - 4)) for _ in range(n)) + "]"
    assert len(text) == n * width
    return text


def _written(conn: Conn) -> tuple[int, int]:
    return (int(scalar(conn, "SELECT count(*) FROM pgjobs.job_items")),
            int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs")))


def _refused(conn: Conn, role: str, call: str, **params: Any) -> None:
    before = _written(conn)
    with pytest.raises(errors.ObjectInUse) as info:
        _as(conn, role, call, **params)
    assert "at most 500 bytes of items over all its jobs" in (
        info.value.diag.message_primary or "")
    assert HINT in (info.value.diag.message_hint or "")
    assert _written(conn) == before


WAYS = ["new job", "add to own job", "another client adds to its job"]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("first_state", ["queued", "canceled"])
def test_a_clients_items_over_all_its_jobs_have_a_ceiling(
        conn: Conn, roles: dict[str, str], way: str, first_state: str) -> None:
    """Per job each call is under max_item_bytes_per_job; the client's total
    over its jobs, a finished one too until it is pruned, is what is held."""
    _set(conn, max_item_bytes_per_client=500)
    client = roles["client"]
    first = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(2, 100)))      # 200
    if first_state == "canceled":
        _as(conn, client, "SELECT pgjobs.cancel(%(job)s)", job=first)
    second = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(2, 100)))     # 400
    call, role, params = {
        "new job": (SUBMIT_ITEMS, client, {"items": _sized(2, 100)}),
        "add to own job": (ADD_ITEMS, client, {"job": second, "items": _sized(2, 100)}),
        "another client adds to its job": (ADD_ITEMS, roles["other"],
                                           {"job": second, "items": _sized(2, 100)}),
    }[way]
    if way == "another client adds to its job":
        # Refused before the ceiling is asked (h158): only the submitter or an
        # administrator makes a job keep bytes; nothing written either way.
        before = _written(conn)
        with pytest.raises(errors.InsufficientPrivilege, match="submitted by another role"):
            _as(conn, role, call, **params)
        assert _written(conn) == before
    else:
        _refused(conn, role, call, **params)
    # Up to the ceiling exactly is allowed.
    assert _as(conn, client, ADD_ITEMS, job=second, items=_sized(1, 100)) == 1  # 500
    _refused(conn, client, ADD_ITEMS, job=second, items="[1]")
    # Another client has its own room; administrators are not held.
    int(_as(conn, roles["other"], SUBMIT_ITEMS, items=_sized(4, 100)))
    int(_as(conn, roles["admin"], SUBMIT_ITEMS, items=_sized(9, 100)))
    _as(conn, roles["admin"], ADD_ITEMS, job=second, items=_sized(1, 100))
    # Room comes back when the client's finished jobs are pruned.
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days' WHERE submitted_by = %s", (client,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    assert int(_as(conn, client, SUBMIT_ITEMS, items=_sized(4, 100))) > 0


def test_the_built_in_client_ceiling_is_1_gib(conn: Conn, roles: dict[str, str]) -> None:
    client = roles["client"]
    job = int(_as(conn, client, SUBMIT_ITEMS, items=_sized(1, 100)))
    # A client that kept 1 GiB less 100 bytes of items in earlier jobs.
    _forge_kept(conn, job, 2**30 - 100)
    assert _as(conn, client, SUBMIT_ITEMS, items=_sized(1, 100)) > 0           # exactly 1 GiB
    with pytest.raises(errors.ObjectInUse, match="at most 1073741824 bytes") as info:
        _as(conn, client, SUBMIT_ITEMS, items="[1]")
    assert HINT in (info.value.diag.message_hint or "")


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "\"10\"", "true", "[]", "2147483648"])
def test_a_bad_client_item_bytes_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_item_bytes_per_client"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_item_bytes_per_client": {value}}}',))
    assert "max_item_bytes_per_client" not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, max_item_bytes_per_client=5)
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'max_item_bytes_per_client'") == "5"
    _set(conn, max_item_bytes_per_client=None)
    assert "max_item_bytes_per_client" not in scalar(conn, "SELECT pgjobs._defaults()")


# Review of h124: the same class, bytes a client keeps beside its jobs without
# another bound. A delete's exclude list of more than 100 keys is kept in
# pgjobs.job_exclusions, up to 100,000 keys of any length a job, and a client
# may keep 100,000 jobs: TBs again, past max_item_bytes_per_client. It is now
# held to the same ceiling, with the client's items, before anything is written.

# The keys name no row on purpose (the bytes are what is counted), so the
# exclude-key guard is told so (allow_unknown_keys).
SUBMIT_DELETE = ("SELECT pgjobs.submit_delete('text_rows', %(scope)s, '{}'::jsonb, "
                 "%(exclude)s::text[], '{\"allow_unknown_keys\": true}')")


@pytest.fixture
def deleter(conn: Conn, roles: dict[str, str]) -> str:
    make_rows_target(conn, "text_rows", key_type="text")
    conn.execute(f"GRANT SELECT, DELETE ON text_rows TO {roles['client']}, {roles['other']}")
    return roles["client"]


def _keys(n: int, width: int, tag: str = "k") -> list[str]:
    return [f"{tag}{i:06d}".ljust(width, "x") for i in range(n)]


def _exclusions(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.job_exclusions"))


def test_a_deletes_exclude_list_counts_toward_the_clients_ceiling(
        conn: Conn, roles: dict[str, str], deleter: str) -> None:
    _set(conn, max_item_bytes_per_client=5000)
    job = int(_as(conn, deleter, SUBMIT_DELETE, exclude=_keys(150, 30)))      # 4500 bytes
    assert scalar(conn, "SELECT item_bytes FROM pgjobs.jobs WHERE id = %s", (job,)) == 4500
    before = (_exclusions(conn), _written(conn))
    with pytest.raises(errors.ObjectInUse) as info:
        _as(conn, deleter, SUBMIT_DELETE, exclude=_keys(150, 30, "j"))
    assert "at most 5000 bytes of items over all its jobs" in (
        info.value.diag.message_primary or "")
    assert HINT in (info.value.diag.message_hint or "")
    assert "filter" in (info.value.diag.message_hint or "")
    assert (_exclusions(conn), _written(conn)) == before
    # Items and exclude lists share the one ceiling.
    with pytest.raises(errors.ObjectInUse):
        _as(conn, deleter, SUBMIT_ITEMS, items=_sized(6, 100))
    # A short list stays in the job row, where it is kept three times (the
    # payload, the predicate, the survivors): counted there past the 4096
    # bytes a job keeps uncounted, toward the same ceiling; a few keys count
    # nothing. Another client has its own room; administrators are not held.
    with pytest.raises(errors.ObjectInUse, match="payload"):
        _as(conn, deleter, SUBMIT_DELETE, exclude=_keys(100, 30))
    assert int(_as(conn, deleter, SUBMIT_DELETE, exclude=_keys(10, 30))) > 0
    assert int(_as(conn, roles["other"], SUBMIT_DELETE, exclude=_keys(150, 30))) > 0
    conn.execute(f"GRANT SELECT, DELETE ON text_rows TO {roles['admin']}")
    assert int(_as(conn, roles["admin"], SUBMIT_DELETE, exclude=_keys(300, 30))) > 0
    # Room comes back when the client's finished jobs are pruned.
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days' WHERE submitted_by = %s", (deleter,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    assert int(_as(conn, deleter, SUBMIT_DELETE, exclude=_keys(150, 30, "j"))) > 0


def test_long_exclude_keys_are_counted_by_their_bytes(
        conn: Conn, roles: dict[str, str], deleter: str) -> None:
    """101 keys of 2,000 bytes: 202,000 bytes of job_exclusions, held by the
    built-in ceiling as any other bytes."""
    job = int(_as(conn, deleter, SUBMIT_DELETE, exclude=_keys(101, 2000)))
    assert scalar(conn, "SELECT item_bytes FROM pgjobs.jobs WHERE id = %s", (job,)) == 202000
    _forge_kept(conn, job, 2**30 - 1000)
    with pytest.raises(errors.ObjectInUse, match="at most 1073741824 bytes"):
        _as(conn, deleter, SUBMIT_DELETE, exclude=_keys(101, 2000, "j"))
