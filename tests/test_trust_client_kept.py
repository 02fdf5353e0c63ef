"""A client cannot keep jobs without end by finishing them (h44).

Found attacking as a client: max_pending_per_client counts jobs queued,
running or paused. A finished job (canceled, failed, succeeded) keeps its
row, payload, items and import rejects until pgjobs.prune's retention (24
hours by default), so a client that submitted, canceled and submitted again
in a loop was bounded by the retention alone: with max_pending_per_client=2
it kept any number of jobs. Now every submit of every kind passes
pgjobs._require_client_kept_room (from pgjobs._insert_job_row, the path
every kind shares): at most set_defaults' max_jobs_kept_per_client jobs of
every status per submitting role (100,000 unless set); beyond it 55006 with
a hint naming the setting and pgjobs.prune, nothing written. Per client,
administrators exempt; a retry makes no new row and is not held to it.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import CLIENT_SUBMITS as SUBMITS
from tests.support.roles import scalar_as

Conn = psycopg.Connection[Any]

HOW_FINISHED = ("canceled", "failed", "succeeded")


_scopes = iter(range(1000, 10**6))


def _as(conn: Conn, role: str, call: str) -> int:
    return int(scalar_as(conn, role, call, {"scope": str(next(_scopes))}))


def _set(conn: Conn, **ceilings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(ceilings),))


def _finish(conn: Conn, role: str, how: str) -> None:
    """Every job of `role` ends as `how` (as a worker or a cancel would)."""
    if how == "canceled":
        for (job,) in conn.execute("SELECT id FROM pgjobs.jobs WHERE submitted_by = %s "
                                   "AND finished_at IS NULL", (role,)).fetchall():
            _as(conn, role, f"SELECT pgjobs.cancel({job})")
    conn.execute("UPDATE pgjobs.jobs SET status = %s, finished_at = now() "
                 "WHERE submitted_by = %s AND finished_at IS NULL", (how, role))


def _refused(conn: Conn, role: str, call: str) -> psycopg.Error:
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(errors.ObjectInUse) as info:
        _as(conn, role, call)
    hint = info.value.diag.message_hint or ""
    assert "pgjobs.set_defaults('{\"max_jobs_kept_per_client\": N}')" in hint, hint
    assert "pgjobs.prune(" in hint, hint
    assert role in (info.value.diag.message_primary or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before, "nothing is written"
    return info.value


@pytest.mark.parametrize("how", HOW_FINISHED)
@pytest.mark.parametrize("kind", sorted(SUBMITS))
def test_finished_jobs_count_toward_the_kept_ceiling(conn: Conn, client_roles: dict[str, str],
                                                     kind: str, how: str) -> None:
    """Submit, finish, submit again: the pending ceiling never answers (its
    jobs are finished), the kept one does, for every kind."""
    client = client_roles["client"]
    _set(conn, max_pending_per_client=2, max_jobs_kept_per_client=3)
    for _ in range(3):
        _as(conn, client, SUBMITS[kind])
        _finish(conn, client, how)
    error = _refused(conn, client, SUBMITS[kind])
    assert "already has 3 jobs kept" in str(error)
    # Another client is not held back, nor is an administrator.
    _as(conn, client_roles["other"], SUBMITS[kind])
    _as(conn, client_roles["admin"], SUBMITS[kind])
    # What the hint says works: a prune of the finished jobs makes room.
    conn.execute("SELECT pgjobs.prune('0')")
    _as(conn, client, SUBMITS[kind])


@pytest.mark.parametrize("last", sorted(SUBMITS))
def test_every_kind_counts_toward_every_other(conn: Conn, client_roles: dict[str, str],
                                              last: str) -> None:
    client = client_roles["client"]
    _set(conn, max_jobs_kept_per_client=len(SUBMITS))
    for kind in sorted(SUBMITS):
        _as(conn, client, SUBMITS[kind])
    _finish(conn, client, "failed")
    _refused(conn, client, SUBMITS[last])


def test_a_retry_makes_no_new_job_and_is_not_held(conn: Conn, client_roles: dict[str, str]) -> None:
    client = client_roles["client"]
    _set(conn, max_jobs_kept_per_client=1)
    job = _as(conn, client, SUBMITS["custom"])
    _finish(conn, client, "failed")
    _refused(conn, client, SUBMITS["custom"])
    _as(conn, client, f"SELECT pgjobs.retry({job})")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "queued"


def test_the_built_in_ceiling_is_a_hundred_thousand(
        conn: Conn, client_roles: dict[str, str]) -> None:
    client = client_roles["client"]
    conn.execute("INSERT INTO pgjobs.jobs (kind, target, scope, submitted_by, submitted_by_oid, "
                 "status, finished_at) "
                 "SELECT 'resize', 'user_table_rows', g::text, r.rolname, r.oid, 'canceled', "
                 "now() FROM generate_series(1, 99999) g, pg_roles r WHERE r.rolname = %s",
                 (client,))
    _as(conn, client, SUBMITS["custom"])  # the 100,000th
    error = _refused(conn, client, SUBMITS["export"])
    assert "(now 100000)" in (error.diag.message_hint or "")
