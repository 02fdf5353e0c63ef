"""A job handed back to wait says so everywhere, once.

Found on main: a delete or backfill handed back because another session
holds its table (pgjobs._table_hand_back) or because the DDL fence is held
past a commit (pgjobs._fence_hand_back) is `queued` with
`checkpoint.throttled` saying why, and `pgjobs status` showed that note, but
`pgjobs.stats()` listed under `throttled` only running jobs: the dashboard's
throttled count and `/metrics` (pgjobs_throttled_jobs) said nothing waited
while the job was behind a migration. API.md promises stats lists throttled
jobs, and that a job held is "running (or handed back without counting an
attempt)".

Also found on main: a started job whose table is partitioned, one leaf held
(an operator's CREATE INDEX on a partition: the claim's look-up reads the
parent only), began a new spell at every claim: pgjobs._throttle dropped the
hand-back's note before the page, the page was blocked again, and the
hand-back found no note: a second `throttled` event and a new `since` for
one wait. The contract (API.md, docs/events.md) is one event per spell.

Synchronised on state only: `run_at` is set to now() for the back-off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import drain_notifies, scalar, submit_backfill, submit_delete
from tests.test_ddl_fence_note import Holder
from tests.test_ddl_fence_note import started as started_job
from tests.test_lock_handback import HOLDS, due_now, hold, row

Conn = psycopg.Connection[Any]


def stats(conn: Conn) -> dict[str, Any]:
    value = scalar(conn, "SELECT pgjobs.stats()")
    assert isinstance(value, dict)
    return value


def listed(conn: Conn, job_id: int) -> dict[str, Any] | None:
    return next((t for t in stats(conn)["throttled"] if t["id"] == job_id), None)


@pytest.fixture
def holding(conn: Conn, make_conn: Callable[..., Conn]) -> Iterator[Callable[[], Holder]]:
    """A session holding the DDL fence past its DDL, made when the test asks
    (after its table: every DDL waits for the fence), ended after."""
    made: list[Holder] = []

    def make() -> Holder:
        made.append(Holder(conn, make_conn, "set_constraints"))
        return made[-1]

    yield make
    for holder in made:
        holder.end()


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_stats_lists_a_job_handed_back_for_its_table(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    job_id, _ = started_job(conn, kind)
    holder, pid = hold(make_conn, HOLDS["alter_table"])
    try:
        make_conn().execute("CALL pgjobs.run('5 seconds')")
        state = row(conn, job_id)
        assert state["status"] == "queued" and isinstance(state["throttled"], dict), state
        got = listed(conn, job_id)
        assert got is not None, stats(conn)["throttled"]
        assert got["status"] == "queued" and got["kind"] == kind, got
        assert got["reason"] == state["throttled"]["reason"] and f"pid {pid}" in got["reason"]
        assert got["since"] == state["throttled"]["since"], got
    finally:
        holder.rollback()
    due_now(conn, job_id)
    make_conn().execute("CALL pgjobs.run('30 seconds')")
    assert row(conn, job_id)["status"] == "succeeded"
    assert listed(conn, job_id) is None  # the note went with the first page


def test_stats_lists_a_job_handed_back_for_the_ddl_fence(
        conn: Conn, make_conn: Callable[..., Conn], holding: Callable[[], Holder]) -> None:
    job_id, _ = started_job(conn, "delete")
    fence_holder = holding()
    make_conn().execute("CALL pgjobs.run('5 seconds')")
    state = row(conn, job_id)
    assert state["status"] == "queued", state
    got = listed(conn, job_id)
    assert got is not None, stats(conn)["throttled"]
    assert got["status"] == "queued" and got["reason"].startswith("waiting for the DDL fence")
    fence_holder.end()
    due_now(conn, job_id)
    make_conn().execute("CALL pgjobs.run('30 seconds')")
    assert row(conn, job_id)["status"] == "succeeded" and listed(conn, job_id) is None


def test_stats_lists_a_held_running_job_with_its_status(conn: Conn) -> None:
    """The running side as before: a job held by a signal, now with `status`."""
    job_id, _ = started_job(conn, "delete")
    worker = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    assert worker
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint || "
                 "'{\"throttled\": {\"reason\": \"replica lag\", \"since\": \"x\"}}' "
                 "WHERE id = %s", (job_id,))
    got = listed(conn, job_id)
    assert got is not None and got["status"] == "running" and got["reason"] == "replica lag"


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_started_job_behind_a_held_partition_sends_one_throttled_event(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """Three hand-backs of one wait for a leaf of its table: one spell (its
    `since` kept, the hand-backs counted), one `throttled` event."""
    from tests.test_partitioned import make_partitioned

    target = make_partitioned(conn, "hash")
    options = {"page_size": 10}
    if kind == "delete":
        job_id = submit_delete(conn, target, "1", options=options)
    else:
        job_id = submit_backfill(conn, target, "1", {}, {"label": "set"}, options)
    worker = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "more"
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, worker)) is True
    leaf = scalar(conn, "SELECT tableoid::regclass::text FROM user_table_rows"
                        " WHERE table_id = 1 LIMIT 1")
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    drain_notifies(listener, timeout=0)
    holder, _ = hold(make_conn, f"CREATE INDEX ON {leaf} (n)")
    try:
        since = None
        for _ in range(3):
            make_conn().execute("CALL pgjobs.run('5 seconds')")
            state = row(conn, job_id)
            assert state["status"] == "queued" and isinstance(state["throttled"], dict), state
            assert f"(on its partition public.{leaf})" in state["throttled"]["reason"], state
            since = since or state["throttled"]["since"]
            assert state["throttled"]["since"] == since, state
            due_now(conn, job_id)
        assert state["throttled"]["handbacks"] == 3, state
        events = drain_notifies(listener)
        assert sum(e["event"] == "throttled" for e in events if e["id"] == job_id) == 1, events
    finally:
        holder.rollback()
    make_conn().execute("CALL pgjobs.run('30 seconds')")
    state = row(conn, job_id)
    assert state["status"] == "succeeded" and state["throttled"] is None, state


@pytest.mark.parametrize("how", ["cancel, retry", "pause, resume"])
def test_a_job_queued_again_is_not_listed_as_waiting_for_its_old_hand_back(
        conn: Conn, make_conn: Callable[..., Conn], how: str) -> None:
    """A hand-back's note stays for the job's next page (one wait, one spell).
    A job canceled or paused while it waited, then retried or resumed, waits
    for nothing: stats() must not list it as throttled by a holder long gone
    (with the old `since`) until a page of it runs, behind other jobs maybe
    for hours."""
    job_id, _ = started_job(conn, "delete")
    holder, _pid = hold(make_conn, HOLDS["alter_table"])
    try:
        make_conn().execute("CALL pgjobs.run('5 seconds')")
        assert row(conn, job_id)["status"] == "queued" and listed(conn, job_id) is not None
    finally:
        holder.rollback()
    if how == "cancel, retry":
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is not None
        assert row(conn, job_id)["status"] == "canceled"
        assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    else:
        scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
        assert row(conn, job_id)["status"] == "paused"
        scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
    state = row(conn, job_id)
    assert state["status"] == "queued" and state["throttled"] is None, state
    assert listed(conn, job_id) is None, stats(conn)["throttled"]
