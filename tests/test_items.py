"""Fan-out jobs (issue 16): one job, many items, claimed one by one.

Every locking claim is shown with two connections; every fenced call is shown
refused for a stale claim."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import job, make_target, scalar

Conn = psycopg.Connection[Any]


def submit_items(conn: Conn, items: list[Any], options: dict[str, Any] | None = None,
                 kind: str = "thumb", scope: str = "1") -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_items(%s, 'items'::regclass, %s, %s::jsonb,"
                            " %s::jsonb)",
                      (kind, scope, json.dumps(items), json.dumps(options or {}))))


def claim_items(conn: Conn, worker: str, limit: int = 1, kinds: list[str] | None = None,
                lease: str = "30 seconds") -> list[tuple[int, int, Any, str]]:
    """(id, job_id, payload, worker identity) of each item claimed."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT id, job_id, payload, worker FROM pgjobs.claim_items(%s, %s, %s::interval, %s)",
        (kinds or ["thumb"], worker, lease, limit))]


def complete(conn: Conn, item: int, worker: str, result: dict[str, Any] | None = None) -> bool:
    return bool(scalar(conn, "SELECT pgjobs.complete_item(%s, %s, %s::jsonb)",
                       (item, worker, json.dumps(result or {}))))


def fail(conn: Conn, item: int, worker: str, error: str = "boom",
         retryable: bool = True) -> bool:
    return bool(scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s, %s)",
                       (item, worker, error, retryable)))


def statuses(conn: Conn, job_id: int) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM pgjobs.job_items WHERE job_id = %s"
                             " GROUP BY status", (job_id,)).fetchall())


@pytest.fixture
def target(conn: Conn) -> str:
    return make_target(conn)


def test_submit_counts_items_and_claims_hand_them_out_in_order(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, [{"n": i} for i in range(5)])
    parent = job(conn, job_id)
    assert (parent["status"], parent["total"], parent["done"], parent["fanout"]) == (
        "queued", 5, 0, True)
    claimed = claim_items(conn, "w1", limit=2)
    assert [c[2] for c in claimed] == [{"n": 0}, {"n": 1}]
    assert all(c[1] == job_id and c[3].startswith("w1#") for c in claimed)
    assert job(conn, job_id)["status"] == "running"
    # The parent itself is never work for pgjobs.claim.
    assert conn.execute("SELECT * FROM pgjobs.claim(ARRAY['thumb'], 'w')").fetchall() == []


def test_progress_and_success(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, [1, 2, 3])
    for item, _, payload, worker in claim_items(conn, "w", limit=3):
        assert complete(conn, item, worker, {"double": payload * 2})
        assert job(conn, job_id)["done"] == payload
    parent = job(conn, job_id)
    assert parent["status"] == "succeeded" and parent["finished_at"] is not None
    assert parent["result"] == {"items": 3, "succeeded": 3, "failed": 0, "canceled": 0,
                                "errors": []}
    assert scalar(conn, "SELECT array_agg(result ORDER BY id) FROM pgjobs.job_items") == [
        {"double": 2}, {"double": 4}, {"double": 6}]


def test_two_connections_never_get_the_same_item(make_conn: Any, target: str) -> None:
    a, b = make_conn(), make_conn()
    submit_items(a, list(range(4)))
    a.execute("BEGIN")
    first = claim_items(a, "a", limit=2)  # locked, uncommitted
    second = claim_items(b, "b", limit=4)  # SKIP LOCKED: the other two, no wait
    a.execute("COMMIT")
    assert len(first) == 2 and len(second) == 2
    assert not {c[0] for c in first} & {c[0] for c in second}
    assert claim_items(b, "b", limit=4) == []


def test_stale_worker_is_fenced(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["x"], {"max_attempts": 3})
    [(item, _, _, first)] = claim_items(conn, "w")
    conn.execute("UPDATE pgjobs.job_items SET lease_expires_at = now() - interval '1 second'"
                 " WHERE id = %s", (item,))
    [(again, _, _, second)] = claim_items(conn, "w")  # rescued, claimed anew, same name
    assert again == item and second != first and second.startswith("w#")
    for call in ("SELECT pgjobs.complete_item(%s, %s)", "SELECT pgjobs.heartbeat_item(%s, %s)",
                 "SELECT pgjobs.fail_item(%s, %s, 'late')"):
        assert scalar(conn, call, (item, first)) is False
    assert conn.execute("SELECT pgjobs.complete_items(ARRAY[%s]::bigint[], ARRAY[%s])",
                        (item, first)).fetchall() == []
    assert scalar(conn, "SELECT attempts FROM pgjobs.job_items WHERE id = %s", (item,)) == 2
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (item, second)) is True
    assert complete(conn, item, second)
    assert job(conn, job_id)["status"] == "succeeded"


def test_killed_worker_items_are_rescued_and_finished_by_another(make_conn: Any,
                                                                 target: str) -> None:
    dead, alive = make_conn(), make_conn()
    job_id = submit_items(alive, list(range(3)))
    taken = claim_items(dead, "dead", limit=3, lease="1 second")
    dead.close()  # killed: no heartbeat, no complete
    alive.execute("UPDATE pgjobs.job_items SET lease_expires_at = now() - interval '1 second'")
    rescued = claim_items(alive, "alive", limit=3)
    assert sorted(r[0] for r in rescued) == sorted(t[0] for t in taken)
    for item, _, _, worker in rescued:
        assert complete(alive, item, worker)
    parent = job(alive, job_id)
    assert (parent["status"], parent["done"]) == ("succeeded", 3)
    assert scalar(alive, "SELECT array_agg(DISTINCT attempts) FROM pgjobs.job_items") == [2]


def test_rescue_on_last_attempt_fails_the_item(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["a"], {"max_attempts": 1})
    [(item, _, _, _)] = claim_items(conn, "w")
    conn.execute("UPDATE pgjobs.job_items SET lease_expires_at = now() - interval '1 second'")
    summary = scalar(conn, "SELECT pgjobs.prune()")
    assert summary["items_rescued"] == {"retried": 0, "failed": 1}
    parent = job(conn, job_id)
    assert parent["status"] == "failed" and parent["done"] == 1
    assert "stopped heartbeating" in parent["result"]["errors"][0]["error"]


def test_retryable_failure_backs_off_then_permanent_failure_fails_the_job(
        conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["ok", "bad"], {"max_attempts": 2})
    items = claim_items(conn, "w", limit=2)
    (ok, _, _, w_ok), (bad, _, _, w_bad) = items
    assert fail(conn, bad, w_bad, "transient")
    assert scalar(conn, "SELECT status FROM pgjobs.job_items WHERE id = %s", (bad,)) == "queued"
    assert scalar(conn, "SELECT run_at > now() FROM pgjobs.job_items WHERE id = %s", (bad,))
    assert claim_items(conn, "w") == []  # backing off
    conn.execute("UPDATE pgjobs.job_items SET run_at = now() WHERE id = %s", (bad,))
    [(again, _, _, w_again)] = claim_items(conn, "w")
    assert again == bad
    assert fail(conn, bad, w_again, "still bad")  # attempts used up: failed for good
    parent = job(conn, job_id)
    assert parent["status"] == "running" and parent["done"] == 1  # "ok" is still out
    assert parent["error"] == f"item {bad}: still bad"
    assert complete(conn, ok, w_ok)
    parent = job(conn, job_id)
    assert (parent["status"], parent["done"], parent["total"]) == ("failed", 2, 2)
    assert parent["result"]["succeeded"] == 1 and parent["result"]["failed"] == 1
    assert parent["result"]["errors"] == [{"item": bad, "error": "still bad"}]


def test_permanent_failure_not_retried(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["x"])
    [(item, _, _, w)] = claim_items(conn, "w")
    assert fail(conn, item, w, "no such document", retryable=False)
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT attempts FROM pgjobs.job_items WHERE id = %s", (item,)) == 1


def test_cancel_midway_leaves_no_item_running(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, list(range(6)))
    out = claim_items(conn, "w", limit=2)
    assert complete(conn, out[0][0], out[0][3])
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert statuses(conn, job_id) == {"succeeded": 1, "canceled": 5}
    parent = job(conn, job_id)
    assert parent["status"] == "canceled" and parent["lease_expires_at"] is None
    assert parent["result"]["canceled"] == 5 and parent["done"] == 1
    item, _, _, worker = out[1]
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (item, worker)) is False
    assert complete(conn, item, worker) is False
    assert claim_items(conn, "w", limit=10) == []
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is False


@pytest.mark.parametrize("state", ["queued", "paused"])
def test_cancel_of_a_job_not_started_cancels_its_items(conn: Conn, target: str,
                                                       state: str) -> None:
    job_id = submit_items(conn, [1, 2])
    if state == "paused":
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert statuses(conn, job_id) == {"canceled": 2}
    assert job(conn, job_id)["status"] == "canceled"


def test_pause_holds_items_and_resume_hands_them_out(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, list(range(4)))
    out = claim_items(conn, "w", limit=2)
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    assert job(conn, job_id)["status"] == "paused"
    assert claim_items(conn, "w", limit=10) == []
    # One item out finishes, the other comes back at its heartbeat, uncounted.
    assert complete(conn, out[0][0], out[0][3])
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (out[1][0], out[1][3])) is False
    assert scalar(conn, "SELECT status || attempts FROM pgjobs.job_items WHERE id = %s",
                  (out[1][0],)) == "queued0"
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is False
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,)) is True
    rest = claim_items(conn, "w", limit=10)
    assert sorted(r[0] for r in rest) == sorted([out[1][0]] + [
        r[0] for r in conn.execute("SELECT id FROM pgjobs.job_items WHERE job_id = %s"
                                   " AND status = 'running'", (job_id,))
        if r[0] != out[1][0]])
    assert len(rest) == 3
    for item, _, _, worker in rest:
        assert complete(conn, item, worker)
    assert job(conn, job_id)["status"] == "succeeded"
    assert job(conn, job_id)["done"] == 4


def test_retry_requeues_only_failed_items(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["a", "b", "c"], {"max_attempts": 1})
    (a, _, _, wa), (b, _, _, wb), (c, _, _, wc) = claim_items(conn, "w", limit=3)
    assert complete(conn, a, wa) and fail(conn, b, wb) and complete(conn, c, wc)
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    parent = job(conn, job_id)
    assert (parent["status"], parent["done"], parent["error"], parent["result"]) == (
        "queued", 2, None, None)
    [(again, _, _, w)] = claim_items(conn, "w", limit=10)
    assert again == b
    assert complete(conn, again, w)
    parent = job(conn, job_id)
    assert (parent["status"], parent["done"]) == ("succeeded", 3)
    assert parent["result"]["succeeded"] == 3


def test_retry_of_a_canceled_job_requeues_its_canceled_items(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["a", "b"])
    [(a, _, _, wa)] = claim_items(conn, "w")
    assert complete(conn, a, wa)
    scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    [(b, _, _, wb)] = claim_items(conn, "w", limit=10)
    assert complete(conn, b, wb)
    assert job(conn, job_id)["status"] == "succeeded"


def test_add_items_while_open_and_refused_after(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["a"])
    assert scalar(conn, "SELECT pgjobs.add_items(%s, %s::jsonb)",
                  (job_id, json.dumps(["b", "c"]))) == 2
    assert job(conn, job_id)["total"] == 3
    for item, _, _, w in claim_items(conn, "w", limit=10):
        assert complete(conn, item, w)
    assert job(conn, job_id)["status"] == "succeeded"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT pgjobs.add_items(%s, '[1]')", (job_id,))
    plain = scalar(conn, "SELECT pgjobs.submit('thumb', 'items'::regclass, '1')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.add_items(%s, '[1]')", (plain,))
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT pgjobs.add_items(-1, '[1]')")


@pytest.mark.parametrize("items", [None, {}, [], "x", 3])
def test_submit_refuses_what_is_not_a_nonempty_array(conn: Conn, target: str,
                                                     items: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_items('thumb', 'items'::regclass, '1', %s::jsonb)",
                     (None if items is None else json.dumps(items),))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("kind", ["delete", "backfill", "export", "import", "Bad", ""])
def test_submit_refuses_kinds_pgjobs_runs_and_bad_kinds(conn: Conn, target: str,
                                                        kind: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        submit_items(conn, [1], kind=kind)


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", None, True])
def test_concurrency_option_is_checked(conn: Conn, target: str, value: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        submit_items(conn, [1], {"concurrency": value})
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        submit_items(conn, [1], {"concurency": 2})  # a typo is an unknown option


def test_concurrency_caps_items_out_across_workers(make_conn: Any, target: str) -> None:
    a, b = make_conn(), make_conn()
    job_id = submit_items(a, list(range(10)), {"concurrency": 3})
    assert len(claim_items(a, "a", limit=2)) == 2
    assert len(claim_items(b, "b", limit=5)) == 1  # only one slot left
    assert claim_items(a, "a", limit=5) == []
    other = submit_items(a, ["free"], kind="thumb")  # another job is not held back
    got = claim_items(b, "b", limit=5)
    assert [g[1] for g in got] == [other]
    item, w = a.execute("SELECT id, worker FROM pgjobs.job_items WHERE job_id = %s"
                        " AND status = 'running' ORDER BY id LIMIT 1", (job_id,)).fetchall()[0]
    assert complete(a, item, w)
    assert len(claim_items(b, "b", limit=5)) == 1


def test_options_priority_lease_and_max_attempts(conn: Conn, target: str) -> None:
    low = submit_items(conn, ["low"], {"priority": 0})
    high = submit_items(conn, ["high"], {"priority": 5, "lease": "5 minutes",
                                         "max_attempts": 7})
    [(item, job_id, _, _)] = claim_items(conn, "w")
    assert job_id == high
    assert scalar(conn, "SELECT lease_expires_at - now() > interval '4 minutes'"
                        " FROM pgjobs.job_items WHERE id = %s", (item,))
    assert job(conn, high)["max_attempts"] == 7
    assert claim_items(conn, "w")[0][1] == low


def test_item_heartbeat_keeps_the_job_alive_for_doctor(conn: Conn, target: str) -> None:
    job_id = submit_items(conn, ["slow"])
    [(item, _, _, w)] = claim_items(conn, "w")
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - interval '20 minutes'"
                 " WHERE id = %s", (job_id,))
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (item, w)) is True
    assert scalar(conn, "SELECT heartbeat_at > now() - interval '1 minute' FROM pgjobs.jobs"
                        " WHERE id = %s",
                  (job_id,))
    # A stale claim refreshes nothing.
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - interval '20 minutes'"
                 " WHERE id = %s", (job_id,))
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (item, w + "x")) is False
    assert scalar(conn, "SELECT heartbeat_at < now() - interval '10 minutes'"
                        " FROM pgjobs.jobs WHERE id = %s", (job_id,))


# --- turns between fan-out jobs ------------------------------------------------


def _drain(conn: Conn, worker: str, limit: int = 1) -> list[int]:
    """Claim and complete until nothing is left; the job of each item, in claim order."""
    order: list[int] = []
    while batch := claim_items(conn, worker, limit=limit):
        for item, job_id, _, identity in batch:
            assert complete(conn, item, identity)
            order.append(job_id)
    return order


def test_a_big_fanout_job_does_not_keep_a_later_one_of_another_scope_waiting(
        conn: Conn, target: str) -> None:
    """Taken by submission alone, the first job got every claim until its last
    item was out: the 10 items of the later job waited for all 60."""
    big = submit_items(conn, [{"n": i} for i in range(60)], scope="1")
    assert len(_drain_some(conn, "w", 5)) == 5  # the big job is under way
    small = submit_items(conn, [{"n": i} for i in range(10)], scope="2")
    order = _drain(conn, "w")
    assert sorted(order) == sorted([big] * 55 + [small] * 10)
    # By turns: the small job's items are all done within its 10 turns and the
    # big job's 10 between them, not after the big job's last item.
    assert max(i for i, j in enumerate(order) if j == small) < 21, order
    assert job(conn, small)["status"] == "succeeded"
    assert job(conn, big)["status"] == "succeeded"


def _drain_some(conn: Conn, worker: str, count: int) -> list[int]:
    order: list[int] = []
    for _ in range(count):
        [(item, job_id, _, identity)] = claim_items(conn, worker)
        assert complete(conn, item, identity)
        order.append(job_id)
    return order


@pytest.mark.parametrize("limit", [1, 4])
def test_fanout_jobs_of_one_priority_take_turns_and_a_higher_one_goes_first(
        conn: Conn, target: str, limit: int) -> None:
    """Three tenants' jobs of one priority share the claims (each served within
    a round of the others'), whatever a claim's batch; a job of a higher
    priority, submitted last, still gets every claim until it is out."""
    jobs = [submit_items(conn, [{"n": i} for i in range(24)], scope=str(s)) for s in (1, 2, 3)]
    urgent = submit_items(conn, [{"n": i} for i in range(6)], {"priority": 5}, scope="4")
    order = _drain(conn, "w", limit)
    assert order[:6] == [urgent] * 6
    rest = order[6:]
    assert sorted(rest) == sorted(jobs * 24)
    # Every job's items come spread over the drain: none waits for another to end.
    for job_id in jobs:
        seen = [i for i, j in enumerate(rest) if j == job_id]
        assert seen[0] < 3 * limit, (job_id, rest)
        assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) <= 3 * limit, rest


def test_a_job_not_started_waits_from_when_it_was_queued(conn: Conn, target: str) -> None:
    """A job's turn before it starts is when it joined the queue: it goes ahead of
    a job served since, not ahead of one whose items were last served before it
    was submitted."""
    served_long_ago = submit_items(conn, [{"n": i} for i in range(3)], scope="1")
    assert _drain_some(conn, "w", 1) == [served_long_ago]
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - interval '1 hour'"
                 " WHERE id = %s", (served_long_ago,))
    newer = submit_items(conn, [{"n": 0}], scope="2")
    conn.execute("UPDATE pgjobs.jobs SET queued_at = now() - interval '10 minutes'"
                 " WHERE id = %s", (newer,))
    assert _drain_some(conn, "w", 1) == [served_long_ago]  # served 1 hour ago: its turn
    # ... and the job just served goes behind the one waiting 10 minutes.
    assert _drain_some(conn, "w", 1) == [newer]


@pytest.mark.parametrize("retryable", [True, False])
def test_a_job_whose_items_fail_takes_turns_too(conn: Conn, target: str,
                                                 retryable: bool) -> None:
    """Every ended attempt is a turn served, a failure as much as a success: a
    job whose items failed at once and were retried (a tenant's API down) kept
    its old place, and took every claim until each of its items was in backoff,
    while another tenant's job of 10 waited."""
    failing = submit_items(conn, [{"n": i} for i in range(40)],
                           {"max_attempts": 5}, scope="1")
    assert len(_drain_some(conn, "w", 2)) == 2  # under way
    small = submit_items(conn, [{"n": i} for i in range(10)], scope="2")
    order: list[int] = []
    while batch := claim_items(conn, "w"):
        for item, job_id, _, identity in batch:
            if job_id == failing:
                assert fail(conn, item, identity, retryable=retryable)
                # The first retry is due after 1-1.25 s: a loop that takes
                # longer (a busy machine) claimed it again. The turns are what
                # is checked here, not the backoff: push the retry out.
                conn.execute("UPDATE pgjobs.job_items SET run_at = now() + interval '1 hour'"
                             " WHERE id = %s AND status = 'queued'", (item,))
            else:
                assert complete(conn, item, identity)
            order.append(job_id)
    assert sorted(order) == sorted([failing] * 38 + [small] * 10)
    assert max(i for i, j in enumerate(order) if j == small) < 21, order
    assert job(conn, small)["status"] == "succeeded"
