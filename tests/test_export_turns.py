"""Turns between tenants for exports. An export runs to its end once claimed
(no budget hands it back, as the runner's jobs are), and claims go by
priority, then queued_at: a tenant that queued a burst of exports held every
worker slot until the burst was done, and another tenant's export waited
behind all of it. An export submitted while exports of its (target, scope)
are pending queues an hour after the latest of them, so the tenants' exports
take turns. No timings: the claim order alone is asserted."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import make_items, scalar, submit_export

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def items(conn: Conn) -> None:
    make_items(conn, rows=60, tenants=4)


def _claim_all(conn: Conn) -> list[int]:
    """Claim exports one at a time (a worker with one slot) until none is left."""
    order: list[int] = []
    while row := conn.execute("SELECT id FROM pgjobs.claim(ARRAY['export'], 'w', "
                              "'30 seconds', 1)").fetchone():
        order.append(int(row[0]))
    return order


def test_another_tenants_export_goes_after_the_first_of_a_burst_not_the_last(
        conn: Conn) -> None:
    burst = [submit_export(conn, "1") for _ in range(5)]
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]


def test_bursts_of_three_tenants_take_turns(conn: Conn) -> None:
    jobs = {scope: [submit_export(conn, scope) for _ in range(3)] for scope in ("1", "2", "3")}
    assert _claim_all(conn) == [jobs[s][k] for k in range(3) for s in ("1", "2", "3")]


def test_one_tenant_alone_keeps_its_order_and_a_running_export_counts(conn: Conn) -> None:
    first = submit_export(conn, "1")
    assert _claim_all(conn) == [first]  # running now
    rest = [submit_export(conn, "1") for _ in range(3)]
    fresh = submit_export(conn, "2")
    # Behind the running one: the tenant's next export waits an hour, a new
    # tenant's does not.
    assert _claim_all(conn) == [fresh, *rest]


def test_priority_still_wins_and_a_scheduled_export_pushes_nothing(conn: Conn) -> None:
    later = int(scalar(conn, "SELECT pgjobs.submit_export('items', '1', '{}', %s::jsonb)",
                       (json.dumps({"run_at": "2999-01-01T00:00:00Z"}),)))
    burst = [submit_export(conn, "1") for _ in range(2)]
    urgent = submit_export(conn, "2", options={"priority": 5})
    # The scheduled export is not due: it did not push the burst behind it.
    assert scalar(conn, "SELECT queued_at <= now() FROM pgjobs.jobs WHERE id = %s",
                  (burst[0],))
    assert _claim_all(conn) == [urgent, *burst]
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (later,)) == "queued"


def test_an_export_handed_back_queues_again_from_now(conn: Conn) -> None:
    burst = [submit_export(conn, "1") for _ in range(3)]
    [(first, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['export'], "
                                     "'w', '30 seconds', 1)").fetchall()
    assert first == burst[0]
    other = submit_export(conn, "2")
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (first, worker)) is True
    # The released export queues anew (now): behind the other tenant's, which
    # waited meanwhile, and ahead of its own tenant's later turns.
    assert _claim_all(conn) == [other, first, *burst[1:]]


def test_a_worker_with_one_slot_serves_the_tenants_by_turns(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """End to end: `pgjobs worker --concurrency 1` runs the exports; the other
    tenant's ends second, not after the whole burst."""
    from pgjobs.poller.worker import Worker

    conn.execute("SELECT pgjobs.allow_storage(%s)", (local_dir,))
    burst = [submit_export(conn, "1") for _ in range(4)]
    other = submit_export(conn, "2")
    Worker(dsn, local_dir, concurrency=1, once=True, poll=0.1).run()
    ended = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.jobs WHERE id = ANY (%s) AND status = 'succeeded' "
        "ORDER BY finished_at, id", ([*burst, other],))]
    assert ended == [burst[0], other, *burst[1:]]


def test_a_retried_burst_takes_turns_as_its_submit_did(conn: Conn) -> None:
    """A tenant's burst of exports that failed (here canceled) and is
    retried all at once queues by turns again, not all at now() ahead of the
    other tenant's export submitted after the retries (pgjobs._tenant_turn)."""
    burst = [submit_export(conn, "1") for _ in range(3)]
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s) "
                        "AND status = 'canceled'", (burst,)) == 3
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]


def test_a_paused_and_resumed_burst_takes_turns_as_its_submit_did(conn: Conn) -> None:
    """Pausing a tenant's queued burst and resuming it does not queue it all
    at now(), ahead of the other tenant's export submitted after the resumes."""
    burst = [submit_export(conn, "1") for _ in range(3)]
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY (%s) "
                        "AND status = 'paused'", (burst,)) == 3
    for job_id in burst:
        assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    other = submit_export(conn, "2")
    assert _claim_all(conn) == [burst[0], other, *burst[1:]]
