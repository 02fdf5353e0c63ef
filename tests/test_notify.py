"""NOTIFY events on channel `pgjobs`: sequence, shape, size, throttling,
and a stuck listener that must never fail a job."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support import (
    claim,
    drain_notifies,
    make_rows_target,
    make_target,
    run_job,
    run_pages,
    scalar,
    seed,
    submit,
    submit_delete,
    who,
)

Conn = psycopg.Connection[Any]
# The shared channel carries no target or scope (issue 9, item 13; see
# tests/test_trust_notify.py); a job's own channel (pgjobs.channel) does.
KEYS = {"id", "kind", "event", "status", "done", "total"}
FULL_KEYS = KEYS | {"target", "scope"}


def job_channel(conn: Conn, target: str, scope: str) -> str:
    """The per-(target, scope) channel, as pgjobs.channel names it (the target
    need not be registered for pgjobs._channel_name)."""
    return str(scalar(conn, "SELECT pgjobs._channel_name(%s::regclass, %s)", (target, scope)))


def test_event_sequence_and_payload_shape(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    full = make_conn()
    full.execute(f"LISTEN {job_channel(conn, 'items', 'tenant-7')}")
    job_id = submit(conn, scope="tenant-7")
    claim(conn, "w")
    conn.execute("SELECT pgjobs.heartbeat(%s, %s, 5)", (job_id, who(conn, job_id, 'w')))
    conn.execute("SELECT pgjobs.fail(%s, %s, 'flaky')", (job_id, who(conn, job_id, 'w')))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    claim(conn, "w")
    conn.execute("SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w')))
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    assert [e["event"] for e in events] == [
        "submitted", "started", "progress", "retrying", "started", "succeeded"]
    for event in events:
        assert set(event) == KEYS
        assert event["id"] == job_id
        assert event["kind"] == "custom"
    full_events = drain_notifies(full, until=lambda e: e["event"] == "succeeded")
    assert [{k: e[k] for k in KEYS} for e in full_events] == events
    for event in full_events:
        assert set(event) == FULL_KEYS
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
    conn.execute("SELECT pgjobs.fail(%s, %s, 'no', false)", (a, who(conn, a, 'w')))
    b = submit(conn)
    conn.execute("SELECT pgjobs.cancel(%s)", (b,))
    # Until the last one sent (events come in commit order), not for a fixed
    # half second: a busy machine may deliver them later.
    events = [(e["id"], e["event"]) for e in drain_notifies(
        listener, timeout=30, until=lambda e: (e["id"], e["event"]) == (b, "canceled"))]
    assert (a, "failed") in events
    assert (b, "canceled") in events


def test_payload_stays_under_1kb(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    conn.execute('CREATE TABLE "a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx" '
                 "(id int)")
    listener = make_conn()
    listener.execute(f"""LISTEN {job_channel(
        conn, '"a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx"', "é" * 1000)}""")
    submit(conn, target='"a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx"',
           scope="é" * 1000)
    (n,) = list(listener.notifies(timeout=30, stop_after=1))
    assert len(n.payload.encode()) < 1024
    assert json.loads(n.payload)["scope"] == "é" * 200


def test_progress_events_are_throttled(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener = make_conn()
    job_id = submit(conn)
    claim(conn, "w")
    listener.execute("LISTEN pgjobs")
    began = scalar(conn, "SELECT clock_timestamp()")
    for done in range(1, 201):
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, %s)",
                      (job_id, who(conn, job_id, 'w'), done))
    ended = scalar(conn, "SELECT clock_timestamp()")
    conn.execute("SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w')))
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    progress = [e for e in events if e["event"] == "progress"]
    # One event per 250 ms at most, on the server's clock (the throttle's), however
    # long the 200 heartbeats took: a count fixed in advance (say 10) would only
    # hold on a machine fast enough to send them within 2.5 s.
    assert 1 <= len(progress) <= 1 + (ended - began).total_seconds() / 0.25
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
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, %s)",
                      (job_id, who(conn, job_id, 'w'), done))
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w')))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    stuck.rollback()


# --- a nearly full queue ----------------------------------------------------------
# The real queue holds 8 GB, too much to fill in a test, so these tests replace
# pgjobs._notification_queue_usage (the one place _notify reads the usage) in
# their own database.


def _set_queue_usage(conn: Conn, usage: float) -> None:
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgjobs._notification_queue_usage()"
        " RETURNS double precision LANGUAGE sql VOLATILE"
        f" SET search_path = pg_catalog, pg_temp AS $$ SELECT {usage}::double precision $$")


def _custom_job_with_pages(conn: Conn, observer: Conn) -> int:
    """submit, claim, 20 heartbeats with done and a checkpoint, complete;
    each heartbeat's progress is visible to another session at once."""
    job_id = submit(conn)
    assert claim(conn, "w") == [job_id]
    for done in range(1, 21):
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, %s, %s::jsonb)",
                      (job_id, who(conn, job_id, 'w'), done, json.dumps({"page": done})))
        assert observer.execute("SELECT done, checkpoint FROM pgjobs.jobs WHERE id = %s",
                                (job_id,)).fetchone() == (done, {"page": done})
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w')))
    return job_id


def _delete_job(conn: Conn, observer: Conn) -> tuple[int, int]:
    """A real delete job, one page (one transaction) at a time; returns the job
    id and how many rows it had to delete."""
    target = make_rows_target(conn)
    seed(conn, target, 300)
    want = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                        " AND created_at <= now()")
    job_id = submit_delete(conn, target, "1", options={"page_size": 20})
    done: list[int] = []
    run_pages(conn, job_id, each=lambda _state: done.append(
        scalar(observer, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,))))
    assert done == sorted(done) and len(set(done)) > 3  # committed page by page
    return job_id, int(want)


def test_a_nearly_full_queue_drops_every_event_and_fails_nothing(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener, observer = make_conn(), make_conn()
    listener.execute("LISTEN pgjobs")
    stuck = make_conn(autocommit=False)
    stuck.execute("LISTEN pgjobs")
    stuck.commit()
    stuck.execute("SELECT 1")  # idle in transaction: the queue cannot drain past it
    _set_queue_usage(conn, 0.95)

    custom = _custom_job_with_pages(conn, observer)
    delete, rows = _delete_job(conn, observer)
    run = submit_delete(conn, make_rows_target(conn, "more_rows"), "2")
    run_job(conn, run)

    assert dict(conn.execute("SELECT id, status FROM pgjobs.jobs").fetchall()) == {
        custom: "succeeded", delete: "succeeded", run: "succeeded"}
    assert scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (delete,)) == rows
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                        " AND created_at <= now() - interval '1 minute'") == 0
    assert drain_notifies(listener, timeout=0.5) == []
    stuck.rollback()


def test_a_half_full_queue_drops_progress_but_sends_the_rest(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    make_target(conn)
    listener, observer = make_conn(), make_conn()
    listener.execute("LISTEN pgjobs")
    _set_queue_usage(conn, 0.6)

    custom = _custom_job_with_pages(conn, observer)
    delete, _rows = _delete_job(conn, observer)
    canceled = submit(conn)
    conn.execute("SELECT pgjobs.cancel(%s)", (canceled,))

    events = [(e["id"], e["event"]) for e in drain_notifies(
        listener, until=lambda e: e["id"] == canceled and e["event"] == "canceled")]
    assert events == [(custom, "submitted"), (custom, "started"), (custom, "succeeded"),
                      (delete, "submitted"), (delete, "started"), (delete, "succeeded"),
                      (canceled, "submitted"), (canceled, "canceled")]


def test_the_real_usage_function_reads_the_server(conn: Conn) -> None:
    assert 0 <= scalar(conn, "SELECT pgjobs._notification_queue_usage()") < 0.5


def test_a_batch_names_every_jobs_channel_at_once(conn: Conn,
                                                  make_conn: Callable[..., Conn]) -> None:
    """The events of a batch go to each job's own channel, scopes interleaved
    as a claim picks them, and the batch names those channels with one call
    (pgjobs._channel_names reads the secret once, not a call and a lookup per
    job): a claim of five jobs, then their completion, make one call each."""
    make_target(conn)
    scopes = ["a", "b", "a", "c", "b"]
    listeners = {}
    for scope in sorted(set(scopes)):
        listeners[scope] = make_conn()
        listeners[scope].execute(f"LISTEN {job_channel(conn, 'items', scope)}")
    ids = [submit(conn, scope=s) for s in scopes]
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    pairs = tx.execute("SELECT id, worker FROM pgjobs.claim('{custom}', 'w', '30 s', 5)").fetchall()
    assert [p[0] for p in pairs] == ids
    done = tx.execute("SELECT * FROM pgjobs.complete_many(%s, %s)",
                      ([p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    assert len(done) == 5
    calls = dict(tx.execute("""
        SELECT funcname, calls FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs'
           AND funcname IN ('_notify_many', '_channel_names', '_channel_name')""").fetchall())
    tx.commit()
    assert calls == {"_notify_many": 2, "_channel_names": 2}
    for scope, listener in listeners.items():
        mine = [i for i, s in zip(ids, scopes, strict=True) if s == scope]
        events = drain_notifies(listener, timeout=5.0,
                                until=lambda e, last=mine[-1]: (e["id"], e["event"])
                                == (last, "succeeded"))
        assert [(e["id"], e["event"]) for e in events] == [
            (i, event) for event in ("submitted", "started", "succeeded") for i in mine]
        assert {e["scope"] for e in events} == {scope}


def test_a_batch_names_each_pair_as_one_pair_alone(conn: Conn) -> None:
    """pgjobs._channel_names gives every pair of a batch the name of that pair
    alone, in the batch's order: pairs repeated and interleaved, a NULL target
    or scope (NULL), one pair, none. The contract a faster naming must keep."""
    make_target(conn)
    conn.execute("CREATE TABLE rows (id bigint)")  # a second target; naming needs no more
    secret = scalar(conn, "SELECT value #>> '{}' FROM pgjobs.settings "
                          "WHERE key = 'channel_name_secret'")
    oids = {t: int(scalar(conn, "SELECT %s::regclass::oid", (t,))) for t in ("items", "rows")}

    def name(target: str | None, scope: str | None) -> str | None:
        if target is None or scope is None:
            return None
        key = f"{secret}:{oids[target]}:{scope}".encode()
        return "pgjobs_" + hashlib.sha256(key).hexdigest()[:40]

    pairs: list[tuple[str | None, str | None]] = [
        ("items", "a"), ("rows", "a"), ("items", "a"), (None, "a"), ("items", "b"),
        ("items", None), ("rows", "a"), ("items", "a")]
    for batch in (pairs, pairs[:1], pairs[3:4], []):
        got = scalar(conn, "SELECT pgjobs._channel_names(%s::regclass[], %s::text[])",
                     ([t for t, _ in batch], [s for _, s in batch]))
        assert got == [name(t, s) for t, s in batch]
    assert scalar(conn, "SELECT pgjobs._channel_names(NULL, NULL)") == []
