"""Job-level helpers: submit and claim a generic job, read a job row, read one
value, identify a claim (`who`), expire a lease, hold a job with an old open
transaction, collect NOTIFY payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support.waiting import wait_for


def submit(conn: psycopg.Connection[Any], kind: str = "custom", target: str = "items",
           scope: str = "1", payload: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None) -> int:
    """A job of `kind` with this payload. `import` (a writing kind an outside
    worker claims, as the gate tests need it) is made by pgjobs._insert_job, the
    one place every submit passes, as an administrator: pgjobs.submit refuses the
    kinds pgjobs runs itself."""
    function = ("(pgjobs._insert_job(%s, %s::regclass, %s, %s::jsonb, %s::jsonb)).id"
                if kind == "import"
                else "pgjobs.submit(%s, %s::regclass, %s, %s::jsonb, %s::jsonb)")
    row = conn.execute(
        f"SELECT {function}",
        (kind, target, scope, json.dumps(payload or {}), json.dumps(options or {})),
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(conn: psycopg.Connection[Any], worker: str, kinds: list[str] | None = None,
          limit: int = 1, lease: str = "30 seconds") -> list[int]:
    rows = conn.execute(
        "SELECT id FROM pgjobs.claim(%s, %s, %s::interval, %s)",
        (kinds or ["custom"], worker, lease, limit),
    ).fetchall()
    return [r[0] for r in rows]


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """The job row (every column of pgjobs.jobs) as a dict: the suite's one
    job-row reader."""
    cur = conn.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,))
    row = cur.fetchone()
    assert row is not None, f"job {job_id} missing"
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def old_transaction(conn: psycopg.Connection[Any],
                    make_conn: Callable[..., psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
    """A new session (``make_conn``) with a transaction left open, returned once
    ``conn`` sees it open for more than 1.2 s: a job under max_xact_age
    1 second is held until the caller rolls it back."""
    idle = make_conn(autocommit=False)
    idle.execute("SELECT 1")  # a transaction left open
    pid = idle.info.backend_pid
    wait_for(lambda: scalar(conn, "SELECT clock_timestamp() - xact_start > interval '1.2 s'"
                                  " FROM pg_stat_activity WHERE pid = %s", (pid,)),
             what="the open transaction older than max_xact_age")
    return idle


def expire_lease(conn: psycopg.Connection[Any], job_id: int) -> None:
    """Make a running job's lease lapse now (as if its worker hung)."""
    conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )


def drain_notifies(conn: psycopg.Connection[Any], timeout: float = 1.0,
                   until: Any = None) -> list[dict[str, Any]]:
    """Collect pgjobs NOTIFY payloads on a LISTENing connection: every one sent
    before the call, then those that come within `timeout` seconds, until one
    satisfies `until`. A round trip first: the server sends every notification
    committed before a statement ahead of its reply, so what the test already
    did is all there, however loaded the machine (a timeout alone once let a
    late event through, or cut one off)."""
    events: list[dict[str, Any]] = []
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT")
    for n in conn.notifies(timeout=0):
        events.append(json.loads(n.payload))
        if until is not None and until(events[-1]):
            return events
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in conn.notifies(timeout=max(0.01, deadline - time.monotonic()), stop_after=1):
            events.append(json.loads(n.payload))
            if until is not None and until(events[-1]):
                return events
    return events


def who(conn: psycopg.Connection[Any], job_id: int, name: str) -> str:
    """The identity of the claim of job_id made under worker name `name` (the job
    row's `worker`, name#token, when its latest claim was by `name`), else `name`
    itself: the bare name of a caller that never learnt the identity, which every
    fenced call refuses."""
    row = conn.execute("SELECT worker FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    worker = row[0] if row else None
    if worker is not None and str(worker).rsplit("#", 1)[0] == name:
        return str(worker)
    return name


def unpin_everywhere(conn: psycopg.Connection[Any], setting: str) -> None:
    """Force what pinning prevents in every routine of schema pgjobs that
    pins `setting`, not only in the ones known to print a cursor today: a
    test that named them had to learn that the bound moved into
    pgjobs._nth_key, and would miss the next routine that prints one."""
    routines = [r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        " WHERE p.pronamespace = 'pgjobs'::regnamespace "
        "   AND EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE %s)",
        (setting + "=%",))]
    assert routines, setting
    for routine in routines:
        conn.execute(f"ALTER FUNCTION {routine} RESET {setting}")
