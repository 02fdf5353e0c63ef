"""The job lifecycle against real PostgreSQL: submit, claim, heartbeat,
complete, fail, cancel, release, prune, the gate and fencing."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    claim,
    expire_lease,
    job,
    make_items,
    make_rows_target,
    make_target,
    scalar,
    seed,
    submit,
    submit_delete,
    submit_export,
    who,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def target(conn: Conn) -> str:
    return make_target(conn)


def test_submit_claim_heartbeat_complete(conn: Conn, target: str) -> None:
    job_id = submit(conn, payload={"x": 1}, options={"priority": 3})
    queued = job(conn, job_id)
    assert queued["status"] == "queued"
    assert queued["priority"] == 3
    assert queued["attempts"] == 0
    assert queued["target"] == "items"

    assert claim(conn, "w1") == [job_id]
    running = job(conn, job_id)
    assert running["status"] == "running"
    assert running["worker"].startswith("w1#")  # the claim's own identity
    assert running["attempts"] == 1
    assert running["started_at"] is not None
    assert running["lease_expires_at"] > running["started_at"]

    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 10, '{\"after\": 5}')",
                  (job_id, running["worker"]))
    beat = job(conn, job_id)
    assert beat["done"] == 10
    assert beat["checkpoint"] == {"after": 5}

    assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{\"rows\": 10}')",
                  (job_id, running["worker"]))
    done = job(conn, job_id)
    assert done["status"] == "succeeded"
    assert done["result"] == {"rows": 10}
    assert done["finished_at"] is not None
    assert done["lease_expires_at"] is None
    # Finished: no second completion, no heartbeat.
    assert not scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, 'w1')))
    assert not scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (job_id, who(conn, job_id, 'w1')))


def test_claim_orders_by_priority_then_age_and_respects_run_at(conn: Conn, target: str) -> None:
    low = submit(conn)
    high = submit(conn, options={"priority": 10})
    later = submit(conn, options={"priority": 100, "run_at": "2999-01-01T00:00:00Z"})
    low2 = submit(conn)
    assert claim(conn, "w", limit=10) == [high, low, low2]
    assert job(conn, later)["status"] == "queued"
    assert claim(conn, "w") == []


def test_claim_only_hands_out_requested_kinds(conn: Conn, target: str) -> None:
    a = submit(conn, kind="alpha")
    b = submit(conn, kind="beta")
    assert claim(conn, "w", kinds=["beta"]) == [b]
    assert claim(conn, "w", kinds=["alpha", "gamma"]) == [a]


def test_retry_with_backoff_then_failed(conn: Conn, target: str) -> None:
    job_id = submit(conn, options={"max_attempts": 3})
    for attempt in (1, 2):
        assert claim(conn, "w") == [job_id]
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom ' || %s)",
                      (job_id, who(conn, job_id, 'w'), attempt))
        row = job(conn, job_id)
        assert row["status"] == "queued"
        assert row["error"] == f"boom {attempt}"
        assert row["attempts"] == attempt
        wait = scalar(conn, "SELECT extract(epoch FROM run_at - now()) FROM pgjobs.jobs "
                      "WHERE id = %s", (job_id,))
        # 2^(attempt-1) seconds plus up to 25% jitter.
        assert 2 ** (attempt - 1) * 0.9 <= wait <= 2 ** (attempt - 1) * 1.3
        assert claim(conn, "w") == []  # not before run_at
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    assert claim(conn, "w") == [job_id]
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'final')", (job_id, who(conn, job_id, 'w')))
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert row["error"] == "final"
    assert row["attempts"] == 3
    assert row["finished_at"] is not None


def test_non_retryable_failure_ends_at_once(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    claim(conn, "w")
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'bad input', false)",
                  (job_id, who(conn, job_id, 'w')))
    row = job(conn, job_id)
    assert (row["status"], row["error"], row["attempts"]) == ("failed", "bad input", 1)


def test_cancel_queued_running_finished_and_unknown(conn: Conn, target: str) -> None:
    queued = submit(conn)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (queued,)) is True
    assert job(conn, queued)["status"] == "canceled"
    assert claim(conn, "w") == []

    running = submit(conn)
    assert claim(conn, "w") == [running]
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (running,)) is True
    assert job(conn, running)["status"] == "running"  # owner stops at its next heartbeat
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 7)",
                  (running, who(conn, running, 'w'))) is False
    row = job(conn, running)
    assert (row["status"], row["done"]) == ("canceled", 7)

    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (running,)) is False
    with pytest.raises(errors.NoDataFound) as exc:
        conn.execute("SELECT pgjobs.cancel(999999)")
    assert "999999" in str(exc.value)


def test_cancel_of_a_dead_workers_job_ends_it_at_rescue(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    claim(conn, "w")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    expire_lease(conn, job_id)
    summary = scalar(conn, "SELECT pgjobs.prune()")
    assert summary["rescued"] == {"retried": 0, "failed": 0, "canceled": 1,
                                  "paused": 0}
    assert job(conn, job_id)["status"] == "canceled"


def test_release_returns_the_job_without_counting_an_attempt(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    claim(conn, "w")
    conn.execute("SELECT pgjobs.heartbeat(%s, %s, 5, '{\"after\": 5}')",
                 (job_id, who(conn, job_id, 'w')))
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, who(conn, job_id, 'w')))
    row = job(conn, job_id)
    assert (row["status"], row["attempts"], row["checkpoint"]) == ("queued", 0, {"after": 5})
    assert claim(conn, "w2") == [job_id]
    assert not scalar(conn, "SELECT pgjobs.release(%s, %s)",
                      (job_id, who(conn, job_id, 'w')))  # fenced


def test_fencing_a_rescued_worker_changes_nothing(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    assert claim(conn, "stale") == [job_id]
    stale = job(conn, job_id)["worker"]
    expire_lease(conn, job_id)
    # Expired but not yet rescued: the stale worker is already fenced off.
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 1)", (job_id, stale)) is False
    summary = scalar(conn, "SELECT pgjobs.prune()")
    assert summary["rescued"]["retried"] == 1
    assert job(conn, job_id)["status"] == "queued"
    assert claim(conn, "fresh") == [job_id]
    fresh = job(conn, job_id)["worker"]
    conn.execute("SELECT pgjobs.heartbeat(%s, %s, 42, '{\"k\": 1}')", (job_id, fresh))
    before = job(conn, job_id)

    for who_ in (stale, "stale", "fresh"):  # the stale identity, and bare names
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 99, '{\"k\": 2}')",
                      (job_id, who_)) is False
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{\"rows\": 1}')",
                      (job_id, who_)) is False
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'x')", (job_id, who_)) is False
        assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, who_)) is False
    after = job(conn, job_id)
    for key in ("status", "worker", "done", "checkpoint", "attempts", "result", "error",
                "updated_at"):
        assert after[key] == before[key], key
    assert after["worker"] == fresh and fresh.startswith("fresh#")
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, fresh)) is True


def test_expired_lease_with_attempts_used_up_fails(conn: Conn, target: str) -> None:
    job_id = submit(conn, options={"max_attempts": 1})
    claim(conn, "w")
    expire_lease(conn, job_id)
    # claim rescues expired leases itself, so recovery does not wait for prune.
    assert claim(conn, "w2") == []
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert "lease expired" in row["error"]


def test_claim_rescues_expired_leases_itself(conn: Conn, target: str) -> None:
    job_id = submit(conn)
    claim(conn, "dead")
    expire_lease(conn, job_id)
    assert claim(conn, "alive") == [job_id]
    assert job(conn, job_id)["attempts"] == 2


def test_eight_workers_claim_a_thousand_jobs_exactly_once(
        conn: Conn, target: str, make_conn: Callable[..., Conn]) -> None:
    conn.execute("SELECT pgjobs.submit('custom', 'items', (i % 7)::text) "
                 "FROM generate_series(1, 1000) i")
    claimed: list[list[int]] = [[] for _ in range(8)]
    conns = [make_conn() for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        c = conns[n]
        barrier.wait()
        while True:
            ids = claim(c, f"w{n}", limit=7)
            if not ids:
                return
            for job_id in ids:
                assert scalar(c, "SELECT pgjobs.complete(%s, %s)",
                              (job_id, who(c, job_id, f"w{n}")))
            claimed[n].extend(ids)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(i for ids in claimed for i in ids)
    assert len(counts) == 1000
    assert set(counts.values()) == {1}
    assert sum(1 for ids in claimed if ids) > 1  # the work was really shared
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 1000


def test_claimers_skip_locked_rows_instead_of_waiting(
        conn: Conn, target: str, make_conn: Callable[..., Conn]) -> None:
    first, second = submit(conn), submit(conn)
    holder = make_conn(autocommit=False)
    assert claim(holder, "holder") == [first]  # transaction left open
    other = make_conn()
    other.execute("SET lock_timeout = '2s'")
    assert claim(other, "other") == [second]
    holder.rollback()


def test_gate_one_writer_per_scope_exports_never_held(
        conn: Conn, target: str, make_conn: Callable[..., Conn]) -> None:
    a1 = submit(conn, kind="import", scope="A")
    a2 = submit(conn, kind="import", scope="A")
    b1 = submit(conn, kind="import", scope="B")
    other_kind = submit(conn, kind="custom", scope="A")
    w1, w2 = make_conn(), make_conn()

    assert claim(w1, "w1", kinds=["import"]) == [a1]
    # The second writer of scope A is not claimable while the first runs;
    # scope B is; a non-writing kind on scope A is never held back.
    assert claim(w2, "w2", kinds=["import"], limit=10) == [b1]
    assert claim(w2, "w2", kinds=["import"]) == []
    assert claim(w2, "w2", kinds=["custom"]) == [other_kind]
    assert scalar(w1, "SELECT pgjobs.complete(%s, %s)", (a1, who(w1, a1, 'w1')))
    assert claim(w2, "w2", kinds=["import"]) == [a2]


def test_gate_holds_while_the_first_claim_is_uncommitted(
        conn: Conn, target: str, make_conn: Callable[..., Conn]) -> None:
    a1 = submit(conn, kind="import", scope="A")
    a2 = submit(conn, kind="import", scope="A")
    holder = make_conn(autocommit=False)
    assert claim(holder, "holder", kinds=["import"]) == [a1]  # not yet committed
    assert claim(make_conn(), "other", kinds=["import"]) == []
    holder.commit()
    assert claim(make_conn(), "other", kinds=["import"]) == []
    assert job(conn, a2)["status"] == "queued"


def test_writers_of_a_scope_run_in_submission_order_even_after_a_retry(
        conn: Conn, target: str) -> None:
    a1 = submit(conn, kind="import", scope="A")
    a2 = submit(conn, kind="import", scope="A", options={"priority": 50})
    assert claim(conn, "w", kinds=["import"]) == [a1]
    conn.execute("SELECT pgjobs.fail(%s, %s, 'transient')", (a1, who(conn, a1, 'w')))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (a1,))
    assert claim(conn, "w", kinds=["import"], limit=5) == [a1]
    assert job(conn, a2)["status"] == "queued"


def test_on_conflict_reject(conn: Conn, target: str) -> None:
    submit(conn, kind="import", scope="A")
    with pytest.raises(errors.ObjectInUse) as exc:
        submit(conn, kind="import", scope="A", options={"on_conflict": "reject"})
    assert exc.value.diag.message_hint and "on_conflict" in exc.value.diag.message_hint
    # Another scope, or a non-writing kind, is fine.
    submit(conn, kind="import", scope="B", options={"on_conflict": "reject"})
    submit(conn, kind="custom", scope="A", options={"on_conflict": "reject"})
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 3


@pytest.mark.parametrize(
    ("kind", "options", "payload", "fragment"),
    [
        ("custom", {"priority": "high"}, {}, '"priority"'),
        ("custom", {"priority": 1.5}, {}, '"priority"'),
        ("custom", {"max_attempts": 0}, {}, '"max_attempts"'),
        ("custom", {"run_at": "tomorrow-ish"}, {}, '"run_at"'),
        ("custom", {"on_conflict": "replace"}, {}, '"on_conflict"'),
        ("custom", {"lease": "forever"}, {}, '"lease"'),
        ("custom", {"colour": "red"}, {}, '"colour"'),
        ("custom", [], {}, "options must be a JSON object"),
        ("custom", {}, [1], "payload must be a JSON object"),
        ("Bad Kind", {}, {}, "invalid job kind"),
        ("delete", {}, {}, "pgjobs.submit_delete"),
        ("export", {}, {}, "pgjobs.submit_export"),
    ],
)
def test_bad_arguments_raise_22023_and_write_nothing(
        conn: Conn, target: str, kind: str, options: Any, payload: Any, fragment: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.submit(%s, 'items', '1', %s::jsonb, %s::jsonb)",
                     (kind, json.dumps(payload), json.dumps(options)))
    assert fragment in str(exc.value)
    assert exc.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_unknown_table_raises_42p01(conn: Conn) -> None:
    with pytest.raises(errors.UndefinedTable):
        conn.execute("SELECT pgjobs.submit('custom', 'no_such_table', '1')")


def test_payload_size_limit(conn: Conn, target: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="1 MiB"):
        submit(conn, payload={"blob": "x" * (1 << 20)})


def test_claim_argument_errors(conn: Conn, target: str) -> None:
    for sql in ("SELECT pgjobs.claim('{custom}', '')",
                "SELECT pgjobs.claim('{}', 'w')",
                "SELECT pgjobs.claim('{custom}', 'w', '0 seconds')",
                "SELECT pgjobs.claim('{custom}', 'w', '30 seconds', 0)"):
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute(sql)


def test_prune_deletes_old_finished_jobs_and_queues_export_objects(
        conn: Conn, target: str) -> None:
    old = submit(conn)
    claim(conn, "w")
    conn.execute("SELECT pgjobs.complete(%s, %s)", (old, who(conn, old, 'w')))
    recent = submit(conn)
    claim(conn, "w")
    conn.execute("SELECT pgjobs.complete(%s, %s)", (recent, who(conn, recent, 'w')))
    queued = submit(conn)
    # An old finished export with an object in storage.
    conn.execute("""
        INSERT INTO pgjobs.jobs (kind, target, scope, status, result, finished_at)
        VALUES ('export', 'items', '1', 'succeeded', '{"uri": "file:///tmp/x.csv"}',
                now() - interval '2 days')""")
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' "
                 "WHERE id = %s", (old,))
    summary = scalar(conn, "SELECT pgjobs.prune('24 hours')")
    assert summary["deleted"] == 2
    assert summary["objects_queued"] == 1
    remaining = {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs")}
    assert remaining == {recent, queued}
    assert scalar(conn, "SELECT uri FROM pgjobs.storage_deletions") == "file:///tmp/x.csv"
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.prune('-1 hour')")


def test_schedule_without_pg_cron_here_names_the_alternative(conn: Conn) -> None:
    # The test database is not pg_cron's database (cron.database_name).
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as exc:
        conn.execute("SELECT pgjobs.schedule()")
    assert "pgjobs run --loop" in (exc.value.diag.message_hint or "")
    assert scalar(conn, "SELECT pgjobs.unschedule()") == {"unscheduled": 0}


def _run_returns(make_conn: Callable[..., Conn], budget: str = "1 hour") -> None:
    """CALL pgjobs.run(budget) on a connection of its own; fail unless it returns
    within 60 s (a bound, far below the budget: a run that waited its budget
    fails here, and is cancelled so that the test ends)."""
    runner = make_conn()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            runner.execute("CALL pgjobs.run(%s::interval)", (budget,))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        make_conn().execute("SELECT pg_cancel_backend(%s)", (runner.info.backend_pid,))
        thread.join(30)
        pytest.fail(f"CALL pgjobs.run('{budget}') did not return when idle")
    assert not failed, failed


def test_run_returns_when_idle(conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """pgjobs.run returns as soon as nothing is left that it may claim, however
    long its budget: on an empty queue, after finishing the work there was, and
    with only jobs that are not its to run (a worker's export, a delete another
    runner holds under a live lease)."""
    _run_returns(make_conn)  # an empty queue

    rows = make_rows_target(conn)
    seed(conn, rows, 60)
    done = submit_delete(conn, rows, "1")
    _run_returns(make_conn)  # works through the queue, then returns
    assert job(conn, done)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                        " AND created_at <= now()") == 0

    make_items(conn, rows=30)
    export = submit_export(conn, "1")
    held = submit_delete(conn, rows, "2")
    conn.execute("SELECT pgjobs._claim_id(%s, 'another-runner', '1 hour')", (held,))
    _run_returns(make_conn)
    assert job(conn, export)["status"] == "queued"
    assert job(conn, held)["status"] == "running"
    assert str(job(conn, held)["worker"]).startswith("another-runner#")
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("CALL pgjobs.run('-1 second')")


def test_a_jobs_lease_option_wins_over_the_workers_default(conn: Conn, target: str) -> None:
    job_id = submit(conn, options={"lease": "5 minutes"})
    claim(conn, "w", lease="10 seconds")
    seconds = scalar(conn, "SELECT extract(epoch FROM lease_expires_at - now()) FROM pgjobs.jobs "
                     "WHERE id = %s", (job_id,))
    assert 290 <= seconds <= 300
    conn.execute("SELECT pgjobs.heartbeat(%s, %s)", (job_id, who(conn, job_id, 'w')))
    assert job(conn, job_id)["lease"].total_seconds() == 300
