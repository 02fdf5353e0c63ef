"""Fan-out jobs: every event of the job carries its item count.

The job row is written before its items are counted; the `submitted` event must
still carry the total (and done), as must every later event: started, progress,
paused, the end, canceled, and the `submitted` of a retry."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support import drain_notifies, make_target, scalar

Conn = psycopg.Connection[Any]


def listen(make_conn: Callable[..., Conn], conn: Conn) -> tuple[Conn, Conn]:
    """A listener on the shared channel and one on the job's own channel."""
    shared = make_conn()
    shared.execute("LISTEN pgjobs")
    own = make_conn()
    channel = scalar(conn, "SELECT pgjobs._channel_name('items'::regclass, '1')")
    own.execute(f'LISTEN "{channel}"')
    return shared, own


def submit(conn: Conn, n: int) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, '1',"
                            " %s::jsonb)", (json.dumps(list(range(n))),)))


def claim(conn: Conn, n: int) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w',"
                        " '30 seconds', %s)", (n,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def events_of(listener: Conn, job_id: int, until: str) -> list[dict[str, Any]]:
    got = drain_notifies(listener, timeout=30,
                         until=lambda e: e["id"] == job_id and e["event"] == until)
    return [e for e in got if e["id"] == job_id]


def test_submitted_event_carries_the_item_count(conn: Conn,
                                                make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    shared, own = listen(make_conn, conn)
    job_id = submit(conn, 7)
    for listener in (shared, own):
        (event,) = events_of(listener, job_id, "submitted")
        assert (event["event"], event["status"], event["done"], event["total"]) == (
            "submitted", "queued", 0, 7)


def test_every_later_event_carries_total_and_done(conn: Conn,
                                                  make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    shared, own = listen(make_conn, conn)
    job_id = submit(conn, 3)
    scalar(conn, "SELECT pgjobs.add_items(%s, '[3, 4]'::jsonb)", (job_id,))
    items = claim(conn, 5)
    scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", items[0])
    scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
    for item, worker in items[1:4]:
        scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, worker))
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'boom', false)", items[4])
    for listener in (shared, own):
        events = events_of(listener, job_id, "failed")
        assert events[0]["event"] == "submitted" and events[0]["total"] == 3
        assert events[-1]["event"] == "failed"
        later = events[1:]
        assert [e["total"] for e in later] == [5] * len(later), later
        assert {e["event"] for e in later} >= {"started", "failed"}
        dones = [e["done"] for e in later]
        assert dones == sorted(dones) and dones[-1] == 5, later
        assert all(isinstance(e["done"], int) for e in events)


def test_retry_submitted_event_carries_total_and_what_stays_done(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    job_id = submit(conn, 4)
    items = claim(conn, 4)
    for item, worker in items[:3]:
        scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, worker))
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'boom', false)", items[3])
    shared, own = listen(make_conn, conn)
    scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    for listener in (shared, own):
        (event,) = events_of(listener, job_id, "submitted")
        assert (event["status"], event["done"], event["total"]) == ("queued", 3, 4)


def test_canceled_event_carries_total(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    job_id = submit(conn, 6)
    items = claim(conn, 2)
    scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", items[0])
    shared, own = listen(make_conn, conn)
    scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    for listener in (shared, own):
        events = events_of(listener, job_id, "canceled")
        assert events and events[-1]["event"] == "canceled"
        assert (events[-1]["done"], events[-1]["total"]) == (1, 6)
