"""The running total of the bytes a client keeps stays exact over its jobs'
lives, and keeping it makes prune wait for no client (review of h135's
running total, max_item_bytes_per_client).

Found:
* prune deleted a client's row of pgjobs.client_room_locks once its role
  was gone, while its jobs, still kept, counted bytes: their bytes were
  never given back, and a role created under the reused oid started from
  0 beside jobs that count;
* prune locked the finished jobs it deletes, then (its delete trigger)
  their clients' totals: a client's transaction holding its total (a large
  submit) that then touched one of those jobs (retry, cancel) deadlocked
  with it (40P01), and any client holding its total stalled prune.
The invariant every test checks: each client's total is the sum of what
its kept jobs count, after any sequence of submits, additions, rollbacks,
cancels, retries, prunes, deletes and dropped roles.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, scalar_as

Conn = psycopg.Connection[Any]

MISMATCHES = """
SELECT coalesce(j.oid, l.oid), j.bytes, l.bytes
  FROM (SELECT submitted_by_oid AS oid, sum(kept_bytes) AS bytes FROM pgjobs.jobs
         WHERE kept_bytes <> 0 GROUP BY 1) j
  FULL JOIN (SELECT submitter_oid AS oid, kept_bytes AS bytes FROM pgjobs.client_room_locks
              WHERE kept_bytes <> 0) l ON l.oid = j.oid
 WHERE j.bytes IS DISTINCT FROM l.bytes
"""


def _exact(conn: Conn) -> None:
    """Every client's running total is what its kept jobs count, and no job
    counts a negative number of bytes."""
    assert conn.execute(MISMATCHES).fetchall() == []
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE kept_bytes < 0") == 0


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 5)
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    made = {name: make_role(conn, f"kt{name}", "GRANT pgjobs_client TO {role}", grant)
            for name in ("a", "b", "gone")}
    made["admin"] = make_role(conn, "ktadmin", "GRANT pgjobs_admin TO {role}", grant)
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 40000}')")
    yield made
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    for role in made.values():
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            drop_role(conn, role)


_scopes = iter(range(5000, 10**6))


def _big(conn: Conn, role: str, size: int) -> int:
    """A custom job whose payload keeps about `size` bytes past the
    allowance, multibyte text included (counted in octets)."""
    return int(scalar_as(conn, role,
                         "SELECT pgjobs.submit('kt_kind', 'user_table_rows', %s, %s::jsonb)",
                         (str(next(_scopes)), json.dumps({"pad": "é" * (2048 + size // 2)}))))


def _finish_long_ago(conn: Conn, job: int) -> None:
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days' WHERE id = %s", (job,))


def test_a_dropped_roles_total_is_kept_while_its_jobs_count_bytes(
        conn: Conn, roles: dict[str, str]) -> None:
    gone = roles["gone"]
    job = _big(conn, gone, 3000)
    oid = scalar(conn, "SELECT oid FROM pg_roles WHERE rolname = %s", (gone,))
    drop_role(conn, gone)
    conn.execute("SELECT pgjobs.prune('1 day')")  # the job is kept (not old enough)
    _exact(conn)
    assert scalar(conn, "SELECT kept_bytes FROM pgjobs.client_room_locks "
                        "WHERE submitter_oid = %s", (oid,)) > 3000
    _finish_long_ago(conn, job)
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")
    assert summary["deleted"] == 1
    _exact(conn)
    summary = scalar(conn, "SELECT pgjobs.prune('1 day')")  # now of no use: deleted
    assert scalar(conn, "SELECT count(*) FROM pgjobs.client_room_locks "
                        "WHERE submitter_oid = %s", (oid,)) == 0


def test_prune_waits_for_no_client_holding_its_total(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    """A client's transaction holds its total (a large submit) and then
    retries one of its finished jobs: prune, meanwhile, deletes the other
    finished jobs and leaves that client's counted ones for its next call,
    instead of waiting for the total while holding the job (a deadlock)."""
    a, b = roles["a"], roles["b"]
    old = _big(conn, a, 2000)
    small = int(scalar_as(conn, a, "SELECT pgjobs.submit('kt_kind', 'user_table_rows', %s, '{}')",
                          (str(next(_scopes)),)))
    other = _big(conn, b, 2000)
    for job in (old, small, other):
        _finish_long_ago(conn, job)
    holder = make_conn(autocommit=False)
    holder.execute(f"SET ROLE {a}")
    _big(holder, a, 1000)  # holds a's total to the end of its transaction
    pruner = make_conn(autocommit=True)
    pruner.execute("SET lock_timeout = '20s'")  # a safety net: prune must not wait at all
    summary = scalar(pruner, "SELECT pgjobs.prune('1 day')")
    assert summary["deleted"] == 2  # b's and a's uncounted one
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s)",
                  ([old, small, other],)) == 1
    holder.execute("SELECT pgjobs.retry(%s)", (old,))  # the job prune left: no deadlock
    holder.commit()
    _exact(conn)
    _finish_long_ago(conn, old)
    assert scalar(pruner, "SELECT pgjobs.prune('1 day')")["deleted"] == 1
    _exact(conn)


@pytest.mark.parametrize("seed_", [1, 2, 3])
def test_the_total_is_what_the_jobs_keep_after_any_sequence(
        conn: Conn, roles: dict[str, str], seed_: int) -> None:
    """Property: a random sequence of the operations that add or give back
    bytes, and the invariant after each one."""
    rng = random.Random(seed_)
    clients = [roles["a"], roles["b"], roles["gone"]]
    jobs: list[int] = []

    def big() -> None:
        role = rng.choice(clients + [roles["admin"]])
        with contextlib.suppress(errors.ObjectInUse):  # past the ceiling: nothing kept
            jobs.append(_big(conn, role, rng.choice([0, 100, 5000, 20000])))

    def items() -> None:
        role = rng.choice(clients)
        try:
            job = int(scalar_as(conn, role,
                                "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                "%s, %s::jsonb)",
                                (str(next(_scopes)), json.dumps(["ü" * rng.randint(1, 3000)]))))
            jobs.append(job)
            scalar_as(conn, rng.choice([role, roles["admin"]]),
                      "SELECT pgjobs.add_items(%s, %s::jsonb)",
                      (job, json.dumps(["x" * rng.randint(1, 4000)] * rng.randint(1, 3))))
        except errors.ObjectInUse:
            pass

    def excluded() -> None:
        role = rng.choice(clients)
        keys = [str(100000 + i) for i in range(rng.randint(150, 400))]
        with contextlib.suppress(errors.ObjectInUse):
            jobs.append(int(scalar_as(conn, role,
                                      "SELECT pgjobs.submit_delete('user_table_rows', %s, "
                                      "'{}'::jsonb, %s, "
                                      "'{\"allow_unknown_keys\": true}'::jsonb)",
                                      (str(next(_scopes)), keys))))

    def rolled_back() -> None:
        with conn.transaction():
            try:
                with conn.transaction():
                    _big(conn, rng.choice(clients), 3000)
                    raise RuntimeError("undo")
            except RuntimeError:
                pass

    def alive() -> list[int]:
        return [r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs WHERE id = ANY(%s) "
                                           "ORDER BY id", (jobs,))]

    def cancel() -> None:
        queued = [r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs WHERE id = ANY(%s) "
                                             "AND finished_at IS NULL ORDER BY id", (jobs,))]
        if queued:
            conn.execute("SELECT pgjobs.cancel(%s)", (rng.choice(queued),))

    def age_and_prune() -> None:
        kept = alive()
        for job in rng.sample(kept, min(len(kept), 3)):
            _finish_long_ago(conn, job)
        conn.execute("SELECT pgjobs.prune('1 day')")

    def retry() -> None:
        finished = [r[0] for r in conn.execute(
            "SELECT id FROM pgjobs.jobs WHERE status IN ('canceled', 'failed') AND id = ANY(%s) "
            "ORDER BY id",
            (jobs,))]
        if finished:
            conn.execute("SELECT pgjobs.retry(%s)", (rng.choice(finished),))

    def admin_delete() -> None:
        kept = alive()
        conn.execute("DELETE FROM pgjobs.jobs WHERE id = ANY(%s)",
                     (rng.sample(kept, min(len(kept), 2)),))

    def drop_gone() -> None:
        if roles["gone"] in clients and scalar(
                conn, "SELECT count(*) FROM pgjobs.jobs WHERE submitted_by = %s",
                (roles["gone"],)):
            drop_role(conn, roles["gone"])
            clients.remove(roles["gone"])
            conn.execute("SELECT pgjobs.prune('1 day')")  # its jobs are kept, not its total

    steps = [big, big, items, excluded, rolled_back, cancel, age_and_prune, retry,
             admin_delete, drop_gone]
    for _ in range(60):
        step = rng.choice(steps)
        step()
        assert conn.execute(MISMATCHES).fetchall() == [], step.__name__
        _exact(conn)
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days'")
    conn.execute("SELECT pgjobs.prune('1 day')")
    _exact(conn)
    assert scalar(conn, "SELECT coalesce(sum(kept_bytes), 0) FROM pgjobs.client_room_locks") == 0


STORED = """
SELECT octet_length(payload::text) + coalesce(octet_length(options::text), 0)
       + coalesce(octet_length(predicate), 0) + coalesce(octet_length(assignments), 0)
       + coalesce(octet_length(survivors::text), 0)
  FROM pgjobs.jobs WHERE id = %s
"""


@pytest.mark.parametrize("call, params", [
    ("SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb, %s, "
     "'{\"allow_unknown_keys\": true}')",
     lambda pad: ({"label": {"$nin": [pad, pad + "'"]}}, [str(10**12 + n) for n in range(100)])),
    ("SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb, %s::jsonb)",
     lambda pad: ({"label": {"$ne": pad}}, {"label": pad + "'"})),
    ("SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb)",
     lambda pad: ({"label": {"$in": [pad[:200] + str(n) for n in range(100)]}},)),
])
def test_every_byte_a_job_row_keeps_of_its_inputs_counts(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str], call: str,
        params: Callable[[str], tuple[Any, ...]]) -> None:
    """Found: only the payload and options counted, while the row keeps the
    filter's and the set's values again in its predicate and assignments
    (and a delete's short exclude list in its survivors), often longer
    (quotes doubled, casts): a client kept two to three times its ceiling.
    What each kind of submit keeps is what it counts (beyond the 4096 a
    job keeps uncounted)."""
    a = roles["a"]
    pin = make_conn(autocommit=False)  # a delete's cutoff, the same for both reads
    pin.execute("SELECT 1")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 1000000}')")
    job = int(scalar_as(conn, a, call, (str(next(_scopes)),)
                        + tuple(json.dumps(p) if isinstance(p, dict) else p
                                for p in params("ü" * 4000))))
    stored = int(scalar(conn, STORED, (job,)))
    payload = int(scalar(conn, "SELECT octet_length(payload::text) + octet_length(options::text)"
                               " FROM pgjobs.jobs WHERE id = %s", (job,)))
    assert scalar(conn, "SELECT kept_bytes FROM pgjobs.jobs WHERE id = %s", (job,)) \
        == stored - 4096
    _exact(conn)
    # And the ceiling holds what is kept, not the payload alone.
    assert stored > payload
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_item_bytes_per_client": 2 * (stored - 4096) - 1}),))
    with pytest.raises(errors.ObjectInUse, match="payload"):
        scalar_as(conn, a, call, (str(next(_scopes)),)
                  + tuple(json.dumps(p) if isinstance(p, dict) else p for p in params("ü" * 4000)))
    _exact(conn)
