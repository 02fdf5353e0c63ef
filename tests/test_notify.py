"""NOTIFY events on channel `pgjobs`: sequence, shape, size, throttling,
and a stuck listener that must never fail a job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests.helpers import claim, drain_notifies, make_target, scalar, submit

Conn = psycopg.Connection[Any]
KEYS = {"id", "kind", "event", "status", "done", "total", "target", "scope"}


def test_event_sequence_and_payload_shape(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    job_id = submit(conn, scope="tenant-7")
    claim(conn, "w")
    conn.execute("SELECT pgjobs.heartbeat(%s, 'w', 5)", (job_id,))
    conn.execute("SELECT pgjobs.fail(%s, 'w', 'flaky')", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    claim(conn, "w")
    conn.execute("SELECT pgjobs.complete(%s, 'w')", (job_id,))
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    assert [e["event"] for e in events] == [
        "submitted", "started", "progress", "retrying", "started", "succeeded"]
    for event in events:
        assert set(event) == KEYS
        assert event["id"] == job_id
        assert event["kind"] == "custom"
        assert event["target"] == "public.items"  # always schema-qualified
        assert event["scope"] == "tenant-7"
    assert events[2]["done"] == 5
    assert [e["status"] for e in events] == [
        "queued", "running", "running", "queued", "running", "succeeded"]


def test_failed_and_canceled_events(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    a = submit(conn)
    claim(conn, "w")
    conn.execute("SELECT pgjobs.fail(%s, 'w', 'no', false)", (a,))
    b = submit(conn)
    conn.execute("SELECT pgjobs.cancel(%s)", (b,))
    events = [(e["id"], e["event"]) for e in drain_notifies(listener, timeout=0.5)]
    assert (a, "failed") in events
    assert (b, "canceled") in events


def test_payload_stays_under_1kb(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    conn.execute('CREATE TABLE "a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx" '
                 "(id int)")
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    submit(conn, target='"a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx"',
           scope="é" * 1000)
    (n,) = list(listener.notifies(timeout=2, stop_after=1))
    assert len(n.payload.encode()) < 1024
    assert json.loads(n.payload)["scope"] == "é" * 200


def test_progress_events_are_throttled(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener = make_conn()
    job_id = submit(conn)
    claim(conn, "w")
    listener.execute("LISTEN pgjobs")
    for done in range(1, 201):
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, 'w', %s)", (job_id, done))
    conn.execute("SELECT pgjobs.complete(%s, 'w')", (job_id,))
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    progress = [e for e in events if e["event"] == "progress"]
    # 200 heartbeats in well under a second or two: a handful of events at most.
    assert 1 <= len(progress) <= 10
    assert events[-1]["event"] == "succeeded"
    assert events[-1]["done"] == 200


def test_a_stuck_listener_never_fails_a_job(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    stuck = make_conn(autocommit=False)
    stuck.execute("LISTEN pgjobs")
    stuck.commit()
    stuck.execute("SELECT 1")  # now idle in transaction: it cannot consume the queue
    job_id = submit(conn)
    claim(conn, "w")
    for done in range(50):
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, 'w', %s)", (job_id, done))
    assert scalar(conn, "SELECT pgjobs.complete(%s, 'w')", (job_id,))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    stuck.rollback()
