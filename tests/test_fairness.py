"""Round-robin by budget: a job that used up a runner's budget goes behind
the jobs that waited meanwhile (pgjobs.release queues it anew; claim orders
by priority, then queued_at, then id). Issue 11: twenty consecutive budgets
went to one big delete, claimed again first every time by its id.

Budgets here are a few milliseconds, so every CALL pgjobs.run works on one
or two pages and hands the job back: the order jobs finish in then follows
from the claim order alone, whatever the machine's speed. No timings are
asserted."""

from __future__ import annotations

import json
from typing import Any

from tests.support import claim, job, make_target, scalar, submit, who

Conn = Any


def _tenants(conn: Conn, big: int = 3000, small: int = 150, tenants: int = 5) -> None:
    """`rows`: tenant 1 has `big` rows, tenants 2.. have `small` each."""
    conn.execute(f"""
        CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{{}}',
                           created_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO rows (table_id) SELECT 1 FROM generate_series(1, {big});
        INSERT INTO rows (table_id)
        SELECT t FROM generate_series(2, {tenants + 1}) t, generate_series(1, {small});
        CREATE INDEX rows_scope_key ON rows (table_id, id);
        ANALYZE rows;
        SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data');
    """)


def _delete(conn: Conn, scope: int, **options: Any) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, '{}', '{}', %s::jsonb)",
                      (str(scope), json.dumps({"page_size": 50, **options}))))


def _run_until_done(conn: Conn, jobs: list[int], budget: str = "5 milliseconds",
                    calls: int = 2000) -> list[int]:
    """CALL pgjobs.run(budget) until every job ended; the jobs in the order
    they ended (seen between calls; ties by finished_at)."""
    order: list[int] = []
    for _ in range(calls):
        conn.execute("CALL pgjobs.run(%s::interval)", (budget,))
        ended = [r[0] for r in conn.execute(
            "SELECT id FROM pgjobs.jobs WHERE id = ANY (%s) "
            "AND status NOT IN ('queued', 'running') ORDER BY finished_at, id", (jobs,))]
        order += [j for j in ended if j not in order]
        if len(order) == len(jobs):
            return order
    raise AssertionError(f"jobs not done after {calls} calls: {order} of {jobs}")


def test_small_jobs_of_other_scopes_finish_before_a_big_one_queued_first(conn: Conn) -> None:
    _tenants(conn)
    big = _delete(conn, 1)
    small = [_delete(conn, t) for t in range(2, 7)]
    order = _run_until_done(conn, [big, *small])
    assert order[-1] == big, order
    for j in [big, *small]:
        assert job(conn, j)["status"] == "succeeded", job(conn, j)
    assert scalar(conn, "SELECT count(*) FROM rows") == 0
    # The big job was handed back many times: it did not keep the runner.
    assert job(conn, big)["checkpoint"]["pages"] > 10


def test_a_small_job_submitted_while_a_big_one_runs_finishes_first(conn: Conn) -> None:
    """Submitted after the big job already had budgets: still ahead of it at
    the next budget."""
    _tenants(conn)
    big = _delete(conn, 1)
    for _ in range(5):
        conn.execute("CALL pgjobs.run('5 milliseconds')")
    assert job(conn, big)["status"] == "queued" and job(conn, big)["done"] > 0
    small = _delete(conn, 2)
    order = _run_until_done(conn, [big, small])
    assert order == [small, big]


def test_priorities_still_win_over_time_in_the_queue(conn: Conn) -> None:
    """A higher-priority job is claimed first at every budget, even though it
    is handed back each time; a high-priority job submitted later overtakes
    waiting lower-priority ones."""
    _tenants(conn, big=1500)
    big = _delete(conn, 1, priority=5)
    small = [_delete(conn, t) for t in range(2, 5)]
    urgent = _delete(conn, 5, priority=9)
    order = _run_until_done(conn, [big, *small, urgent])
    assert order[:2] == [urgent, big], order


def test_one_scopes_writers_keep_submission_order(conn: Conn) -> None:
    """The gate orders the writers of one scope by submission (id), not by
    queue time: a second delete of the big job's scope waits for it even
    though the big job is handed back behind it at every budget."""
    _tenants(conn)
    big = _delete(conn, 1)
    same_scope = int(scalar(conn, "SELECT pgjobs.submit_delete('rows', '1', '{}', '{}', "
                                  "'{\"page_size\": 50, \"on_conflict\": \"queue\"}')"))
    other = _delete(conn, 2)
    order = _run_until_done(conn, [big, same_scope, other])
    assert order.index(other) < order.index(big) < order.index(same_scope), order


def test_a_released_job_of_any_kind_queues_anew(conn: Conn) -> None:
    """pgjobs.release (a worker shutting down, a budget spent) sends a custom
    job behind the jobs queued meanwhile; never ahead of a higher priority."""
    make_target(conn)
    first = submit(conn)
    second = submit(conn)
    assert claim(conn, "w") == [first]
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (first, who(conn, first, "w")))
    assert claim(conn, "w") == [second]
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (second, who(conn, second, "w")))
    assert claim(conn, "w") == [first]
    urgent = submit(conn, options={"priority": 1})
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (first, who(conn, first, "w")))
    assert claim(conn, "w", limit=3) == [urgent, second, first]


def test_a_job_requeued_after_a_failure_or_a_lapsed_lease_queues_anew(conn: Conn) -> None:
    """Every way back to `queued` joins the queue at its end: a retryable
    failure (pgjobs.fail) and a rescued lease (pgjobs._rescue_expired) as much
    as a release, so a job that keeps failing cannot keep going first."""
    make_target(conn)
    first = submit(conn)
    second = submit(conn)
    assert claim(conn, "w") == [first]
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom')", (first, who(conn, first, "w")))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (first,))
    assert claim(conn, "w") == [second]
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s", (second,))
    conn.execute("SELECT pgjobs.prune()")
    assert claim(conn, "w", limit=2) == [first, second]
