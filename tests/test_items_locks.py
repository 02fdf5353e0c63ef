"""Fan-out jobs: the lock order (the job row, then its items) under two connections.

The last two items finishing at once end the job exactly once; a cancel racing a
completion neither deadlocks nor loses the completion; a claim never waits for a
transaction that holds the job row."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import drain_notifies, job, make_target, scalar

Conn = psycopg.Connection[Any]


def setup_job(conn: Conn, items: int) -> tuple[int, list[tuple[int, str]]]:
    make_target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, '1', %s::jsonb)",
                    (json.dumps(list(range(items))),))
    claimed = conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w',"
                           " '30 seconds', %s)", (items,)).fetchall()
    return job_id, [(r[0], r[1]) for r in claimed]


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # surfaced by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def blocked(watch: Conn, pid: int) -> bool:
    """Wait (up to 60 s: a thread's first statement on a loaded machine may take
    seconds to reach the server) until backend `pid` waits for a lock; False if
    it never does."""
    for _ in range(1200):
        if scalar(watch, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity"
                         " WHERE pid = %s", (pid,)):
            return True
        watch.execute("SELECT pg_sleep(0.05)")
    return False


def test_last_two_items_finishing_at_once_end_the_job_once(make_conn: Any) -> None:
    a, b, watch = make_conn(), make_conn(), make_conn()
    watch.execute("LISTEN pgjobs")
    job_id, [(one, w1), (two, w2)] = setup_job(a, 2)
    a.execute("BEGIN")
    assert scalar(a, "SELECT pgjobs.complete_item(%s, %s)", (one, w1))
    thread, out = in_thread(lambda: scalar(b, "SELECT pgjobs.complete_item(%s, %s)", (two, w2)))
    assert blocked(watch, b.info.backend_pid)  # waits for the job row, not a guess
    assert job(watch, job_id)["status"] == "running"
    a.execute("COMMIT")
    thread.join(timeout=30)
    assert out == [True]
    parent = job(watch, job_id)
    assert (parent["status"], parent["done"]) == ("succeeded", 2)
    finals = [e["event"] for e in drain_notifies(watch)]
    assert finals.count("succeeded") == 1


def test_cancel_waits_for_a_completion_in_flight_and_keeps_it(make_conn: Any) -> None:
    a, b, watch = make_conn(), make_conn(), make_conn()
    job_id, [(one, w1), (two, w2)] = setup_job(a, 2)
    a.execute("BEGIN")
    assert scalar(a, "SELECT pgjobs.complete_item(%s, %s)", (one, w1))
    thread, out = in_thread(lambda: scalar(b, "SELECT pgjobs.cancel(%s)", (job_id,)))
    assert blocked(watch, b.info.backend_pid)
    a.execute("COMMIT")
    thread.join(timeout=30)
    assert out == [True]
    assert dict(watch.execute("SELECT id, status FROM pgjobs.job_items").fetchall()) == {
        one: "succeeded", two: "canceled"}
    assert scalar(watch, "SELECT pgjobs.complete_item(%s, %s)", (two, w2)) is False
    parent = job(watch, job_id)
    assert (parent["status"], parent["done"]) == ("canceled", 1)


@pytest.mark.parametrize("call", [
    "SELECT pgjobs.complete_item(%(item)s, %(worker)s)",
    "SELECT pgjobs.fail_item(%(item)s, %(worker)s, 'x', false)",
    "SELECT count(*) = 1 FROM pgjobs.complete_items(ARRAY[%(item)s]::bigint[], ARRAY[%(worker)s])",
])
def test_completion_behind_a_cancel_in_flight_is_refused(make_conn: Any, call: str) -> None:
    a, b, watch = make_conn(), make_conn(), make_conn()
    job_id, [(one, w1), _] = setup_job(a, 2)
    a.execute("BEGIN")
    assert scalar(a, "SELECT pgjobs.cancel(%s)", (job_id,))
    thread, out = in_thread(lambda: scalar(b, call, {"item": one, "worker": w1}))
    assert blocked(watch, b.info.backend_pid)
    a.execute("COMMIT")
    thread.join(timeout=30)
    assert out == [False]
    parent = job(watch, job_id)
    assert (parent["status"], parent["done"], parent["result"]["canceled"]) == ("canceled", 0, 2)


def test_a_claim_does_not_wait_for_a_transaction_holding_the_job(make_conn: Any) -> None:
    a, b = make_conn(), make_conn()
    make_target(a)
    job_id = scalar(a, "SELECT pgjobs.submit_items('doc', 'items'::regclass, '1', '[1, 2, 3]')")
    a.execute("BEGIN")
    a.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (job_id,))
    b.execute("SET lock_timeout = '2s'")
    got = b.execute("SELECT id FROM pgjobs.claim_items(ARRAY['doc'], 'b', '30 seconds', 2)"
                    ).fetchall()
    assert len(got) == 2  # taken without waiting; the job starts at a later claim
    a.execute("COMMIT")
    assert len(b.execute("SELECT id FROM pgjobs.claim_items(ARRAY['doc'], 'b')").fetchall()) == 1
    assert job(b, job_id)["status"] == "running"
