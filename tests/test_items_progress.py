"""A fan-out job's progress (docs/fanout.md): its done is the count of its
items finished (succeeded, or failed for good) and its total the count of
its items, after every step an item or the job can take: claimed, completed
one by one or in a batch, failed and queued again, failed for good, its
lease rescued (queued again or failed), items added, the job paused and
resumed, canceled, retried. `pgjobs status` prints the job row's done and
total, and its items line the items counted by status: both agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import job, make_target, scalar
from tests.test_items import claim_items, complete, fail, submit_items

Conn = psycopg.Connection[Any]

COUNTS = """
SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed')), count(*)
  FROM pgjobs.job_items WHERE job_id = %s
"""


def _expire(conn: Conn, job_id: int) -> None:
    """The job's running items' leases lapse, and a prune rescues them."""
    conn.execute("UPDATE pgjobs.job_items SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND status = 'running'", (job_id,))
    scalar(conn, "SELECT pgjobs.prune()")


def _complete_batch(conn: Conn, out: list[tuple[int, int, Any, str]]) -> None:
    scalar(conn, "SELECT count(*) FROM pgjobs.complete_items(%s, %s)",
           ([o[0] for o in out], [o[3] for o in out]))


def _due(conn: Conn, job_id: int) -> None:
    """Items backing off after a failed attempt are due now."""
    conn.execute("UPDATE pgjobs.job_items SET run_at = now() WHERE job_id = %s "
                 "AND status = 'queued'", (job_id,))


Step = Callable[[Conn, int, list[tuple[int, int, Any, str]]], Any]

STEPS: dict[str, Step] = {
    "claim 3": lambda c, j, out: out.extend(claim_items(c, "w", limit=3)),
    "complete one": lambda c, j, out: out and complete(c, *_take(out)),
    "complete batch": lambda c, j, out: out and (_complete_batch(c, out), out.clear()),
    "fail retryable": lambda c, j, out: out and (fail(c, *_take(out)), _due(c, j)),
    "fail for good": lambda c, j, out: out and fail(c, *_take(out), retryable=False),
    "lease lapses": lambda c, j, out: (_expire(c, j), out.clear(), _due(c, j)),
    "add 2": lambda c, j, out: scalar(c, "SELECT pgjobs.add_items(%s, '[\"x\", \"y\"]')", (j,)),
    "pause": lambda c, j, out: scalar(c, "SELECT pgjobs.pause(%s)", (j,)),
    "resume": lambda c, j, out: scalar(c, "SELECT pgjobs.resume(%s)", (j,)),
    "cancel": lambda c, j, out: (scalar(c, "SELECT pgjobs.cancel(%s)", (j,)), out.clear()),
    "retry": lambda c, j, out: scalar(c, "SELECT pgjobs.retry(%s)", (j,)),
}


def _take(out: list[tuple[int, int, Any, str]]) -> tuple[int, str]:
    item, _, _, worker = out.pop(0)
    return item, worker


# steps, and the status the job ends in (max_attempts 2: an item whose lease
# lapses twice fails for good).
SCENARIOS: dict[str, tuple[list[str], str]] = {
    "run to success": (["claim 3", "complete one", "complete batch", "claim 3",
                       "complete batch", "claim 3", "complete batch"], "succeeded"),
    "fail, then retry": (["claim 3", "fail for good", "complete batch", "claim 3",
                         "fail for good", "fail retryable", "complete one", "claim 3",
                         "complete batch", "claim 3", "complete batch", "retry", "claim 3",
                         "complete batch", "claim 3", "complete batch"], "succeeded"),
    "leases lapse": (["claim 3", "lease lapses", "claim 3", "complete one", "lease lapses",
                     "claim 3", "lease lapses", "claim 3", "complete batch", "claim 3",
                     "complete batch", "claim 3", "complete batch"], "failed"),
    "cancel midway, retry": (["claim 3", "complete one", "fail for good", "cancel", "retry",
                             "claim 3", "complete batch", "claim 3", "complete batch",
                             "claim 3", "complete batch"], "succeeded"),
    "pause, add, resume": (["claim 3", "pause", "complete one", "add 2", "fail retryable",
                           "resume", "claim 3", "complete batch", "claim 3", "complete batch",
                           "claim 3", "complete batch", "claim 3", "complete batch"], "succeeded"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_fanout_jobs_done_and_total_count_its_items_after_every_step(
        conn: Conn, scenario: str) -> None:
    make_target(conn)
    job_id = submit_items(conn, list(range(5)), {"max_attempts": 2})
    out: list[tuple[int, int, Any, str]] = []
    wrong = {}
    steps, end = SCENARIOS[scenario]
    for n, step in enumerate(steps):
        STEPS[step](conn, job_id, out)
        finished, total = conn.execute(COUNTS, (job_id,)).fetchone() or (0, 0)
        row = job(conn, job_id)
        if (row["done"], row["total"]) != (finished, total):
            wrong[f"{n} {step}"] = {"job": (row["done"], row["total"]),
                                    "items": (finished, total), "status": row["status"]}
    assert wrong == {}
    assert job(conn, job_id)["status"] == end


def test_status_prints_the_done_and_total_its_items_say(conn: Conn, dsn: str) -> None:
    make_target(conn)
    job_id = submit_items(conn, list(range(4)), {"max_attempts": 1})
    (a, _, _, wa), (b, _, _, wb), _ = claim_items(conn, "w", limit=3)
    assert complete(conn, a, wa) and fail(conn, b, wb, retryable=False)
    printed = CliRunner().invoke(main, ["--dsn", dsn, "status", str(job_id)])
    lines = dict(line.split(": ", 1) for line in printed.output.splitlines() if ": " in line)
    assert (lines["done"], lines["total"]) == ("2", "4"), printed.output
    counted, _, by_status = lines["items"].partition(": ")
    assert counted == "4 items"
    assert sorted(by_status.split(", ")) == [
        "1 failed", "1 queued", "1 running", "1 succeeded"], lines["items"]
