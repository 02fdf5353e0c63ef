"""A client cannot fill pgjobs with jobs or kinds (set_defaults'
max_pending_per_client and max_kinds_per_client; docs/operations.md "A
ceiling on a client's pending jobs and kinds").

Found attacking as a client (h31): max_pending_writers bounds the writers of
one (target, scope) only. Exports, imports spread over scopes, custom kinds
and fan-out jobs had no bound at all, and a client could invent custom kinds
without end (`submit('k1', ...)`, `submit('k2', ...)`, ...), each a label
value of every kind series of /metrics and a group of pgjobs.stats(). Now
every submit of every kind and every retry pass one check
(pgjobs._require_client_room): at most max_pending_per_client jobs queued,
running or paused per submitting role, and jobs of at most
max_kinds_per_client distinct custom kinds; beyond either 55006 with a hint
naming the setting, nothing written. Per client: one client at its ceiling
never holds another back; administrators are not held to it. The check is
made without a lock of the client: a client's open transaction holds none
of its other submits back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import CLIENT_SUBMITS as SUBMITS
from tests.support.roles import scalar_as

Conn = psycopg.Connection[Any]

_scopes = iter(range(1000, 10**6))


def _as(conn: Conn, role: str, call: str, scope: str | None = None) -> int:
    """Run a call as `role` (SET ROLE inside a transaction, as a tier does)."""
    return int(scalar_as(conn, role, call, {"scope": scope or str(next(_scopes))}))


def _set(conn: Conn, **ceilings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(ceilings),))


def _refused(conn: Conn, role: str, call: str, setting: str) -> psycopg.Error:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.ObjectInUse) as info:
        _as(conn, role, call)
    hint = info.value.diag.message_hint or ""
    assert f'pgjobs.set_defaults(\'{{"{setting}": N}}\')' in hint, hint
    assert role in (info.value.diag.message_primary or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before, "nothing is written"
    return info.value


def test_the_built_in_ceilings_are_ten_thousand_jobs_and_a_hundred_kinds(
        conn: Conn, client_roles: dict[str, str]) -> None:
    client = client_roles["client"]
    conn.execute("INSERT INTO pgjobs.jobs (kind, target, scope, submitted_by, submitted_by_oid) "
                 "SELECT 'k' || (g %% 99), 'user_table_rows', g::text, r.rolname, r.oid "
                 "FROM generate_series(1, 9999) g, pg_roles r WHERE r.rolname = %s", (client,))
    _as(conn, client, SUBMITS["custom"])  # the 10,000th job, its 100th kind (resize)
    _refused(conn, client, SUBMITS["export"], "max_pending_per_client")
    # Room for jobs again (every k0 .. k98 still pending below scope 9001).
    conn.execute("DELETE FROM pgjobs.jobs WHERE kind LIKE 'k%%' AND scope::int > 9000")
    _refused(conn, client, "SELECT pgjobs.submit('k100', 'user_table_rows', %(scope)s)",
             "max_kinds_per_client")
    _as(conn, client, "SELECT pgjobs.submit('k1', 'user_table_rows', %(scope)s)")


@pytest.mark.parametrize("last", sorted(SUBMITS))
@pytest.mark.parametrize("first", sorted(SUBMITS))
def test_every_kind_counts_and_is_refused(conn: Conn, client_roles: dict[str, str],
                                          first: str, last: str) -> None:
    _set(conn, max_pending_per_client=2)
    _as(conn, client_roles["client"], SUBMITS[first])
    _as(conn, client_roles["client"], SUBMITS[first])
    error = _refused(conn, client_roles["client"], SUBMITS[last], "max_pending_per_client")
    assert "already has 2 jobs queued, running or paused" in str(error)


@pytest.mark.parametrize("kind", sorted(SUBMITS))
def test_one_clients_ceiling_holds_no_other_back(conn: Conn, client_roles: dict[str, str],
                                                 kind: str) -> None:
    _set(conn, max_pending_per_client=1)
    _as(conn, client_roles["client"], SUBMITS[kind])
    _refused(conn, client_roles["client"], SUBMITS[kind], "max_pending_per_client")
    _as(conn, client_roles["other"], SUBMITS[kind])   # its own ceiling
    _refused(conn, client_roles["other"], SUBMITS[kind], "max_pending_per_client")
    _as(conn, client_roles["admin"], SUBMITS[kind])   # administrators are not held
    _as(conn, client_roles["admin"], SUBMITS[kind])


def test_finished_jobs_give_their_place_back_and_paused_ones_keep_it(
        conn: Conn, client_roles: dict[str, str]) -> None:
    _set(conn, max_pending_per_client=2)
    first = _as(conn, client_roles["client"], SUBMITS["export"])
    _as(conn, client_roles["client"], f"SELECT pgjobs.pause({first})")
    _as(conn, client_roles["client"], SUBMITS["custom"])
    _refused(conn, client_roles["client"], SUBMITS["delete"], "max_pending_per_client")
    _as(conn, client_roles["client"], f"SELECT pgjobs.cancel({first})")
    _as(conn, client_roles["client"], SUBMITS["delete"])  # a canceled job holds no place


@pytest.mark.parametrize("kind", sorted(SUBMITS))
def test_a_retry_is_refused_when_the_client_is_full(conn: Conn, client_roles: dict[str, str],
                                                    kind: str) -> None:
    _set(conn, max_pending_per_client=2)
    first = _as(conn, client_roles["client"], SUBMITS[kind])
    _as(conn, client_roles["client"], f"SELECT pgjobs.cancel({first})")
    _as(conn, client_roles["client"], SUBMITS["export"])
    _as(conn, client_roles["client"], SUBMITS["custom"])
    _refused(conn, client_roles["client"], f"SELECT pgjobs.retry({first})",
             "max_pending_per_client")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (first,)) == "canceled"
    _as(conn, client_roles["admin"], f"SELECT pgjobs.retry({first})")  # an administrator may
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (first,)) == "queued"


CUSTOM = {
    "submit": "SELECT pgjobs.submit(%(kind)s, 'user_table_rows', %(scope)s)",
    "submit_items": "SELECT pgjobs.submit_items(%(kind)s, 'user_table_rows', %(scope)s, "
                    "'[{\"a\": 1}]')",
}


def _kind(conn: Conn, role: str, via: str, kind: str) -> int:
    return int(scalar_as(conn, role, CUSTOM[via], {"kind": kind, "scope": str(next(_scopes))}))


@pytest.mark.parametrize("via", sorted(CUSTOM))
def test_a_client_cannot_make_kinds_without_end(conn: Conn, client_roles: dict[str, str],
                                                via: str) -> None:
    _set(conn, max_kinds_per_client=2)
    client = client_roles["client"]
    _kind(conn, client, via, "k1")
    _kind(conn, client, via, "k2")
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.ObjectInUse) as info:
        _kind(conn, client, via, "k3")
    assert "'k3' would be one more" in str(info.value)
    assert '"max_kinds_per_client": N' in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before
    _kind(conn, client, via, "k1")             # more of a kind it has: fine
    _as(conn, client, SUBMITS["export"])       # pgjobs' own kinds do not count
    _as(conn, client, SUBMITS["delete"])
    _kind(conn, client_roles["other"], via, "k3")     # another client's kinds are its own
    _kind(conn, client_roles["admin"], via, "k4")     # administrators are not held
    for job in conn.execute("SELECT id FROM pgjobs.jobs WHERE kind = 'k2'").fetchall():
        _as(conn, client, f"SELECT pgjobs.cancel({job[0]})")
    _kind(conn, client, via, "k3")             # k2 ended: its place is free


def test_a_retry_of_a_new_kind_counts(conn: Conn, client_roles: dict[str, str]) -> None:
    _set(conn, max_kinds_per_client=1)
    client = client_roles["client"]
    first = _kind(conn, client, "submit", "k1")
    _as(conn, client, f"SELECT pgjobs.cancel({first})")
    _kind(conn, client, "submit", "k2")
    with pytest.raises(errors.ObjectInUse, match="'k1' would be one more"):
        _as(conn, client, f"SELECT pgjobs.retry({first})")


@pytest.mark.parametrize("ceiling", ["max_pending_per_client", "max_kinds_per_client"])
def test_a_clients_open_transaction_holds_none_of_its_other_submits_back(
        conn: Conn, client_roles: dict[str, str], make_conn: Callable[..., Conn],
        ceiling: str) -> None:
    """The check takes no lock of the client: a transaction of the client left
    open after a submit does not make its next submit, in another session,
    wait (tests/test_trust_advisory_locks.py asks the same of other scopes).
    Committed, the first job counts."""
    _set(conn, **{ceiling: 2})
    client = client_roles["client"]
    holder, other = make_conn(autocommit=False), make_conn()
    holder.execute(f"SET ROLE {client}")
    holder.execute(CUSTOM["submit"], {"kind": "k1", "scope": "1"})  # left uncommitted
    other.execute("SET lock_timeout = '2s'")
    _kind(other, client, "submit", "k2")   # does not wait for the holder
    holder.commit()
    with pytest.raises(errors.ObjectInUse):
        _kind(other, client, "submit", "k3")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s",
                  (client,)) == 2


@pytest.mark.parametrize("setting, value", [
    (s, v) for s in ("max_pending_per_client", "max_kinds_per_client")
    for v in ("0", "-1", "1.5", "\"10\"", "true", "[]", "100000000")])
def test_a_bad_ceiling_is_refused(conn: Conn, setting: str, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=setting):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (f'{{"{setting}": {value}}}',))
    assert setting not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, **{setting: 5})  # a good one is stored, and null resets it
    assert scalar(conn, "SELECT pgjobs._defaults() ->> %s", (setting,)) == "5"
    _set(conn, **{setting: None})
    assert setting not in scalar(conn, "SELECT pgjobs._defaults()")


def test_every_path_that_makes_a_job_pending_checks_the_client() -> None:
    """Whatever writes a job row or queues one again asks for the client's room."""
    from pathlib import Path

    functions = Path(__file__).resolve().parent.parent / "sql" / "functions"
    writers = [path.name for path in sorted(functions.glob("*.sql"))
               if "INSERT INTO pgjobs.jobs" in path.read_text()]
    assert writers == ["_insert_job_row.sql"], writers
    for name in ("_insert_job_row.sql", "_retry_as.sql"):
        assert "pgjobs._require_client_room(" in (functions / name).read_text(), name
