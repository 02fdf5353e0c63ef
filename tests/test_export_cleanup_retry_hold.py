"""A canceled export's cleanup and a pgjobs.retry that comes while it removes:
the retried job never succeeds with an object the stale cleanup then removes.

The cleanup of a canceled export removes what the attempt wrote and could not
record (the whole export's object, a parallel export's joined object and its
parts' objects, every attempt's temporary files). Each removal was fenced by a
look at the job's status before and after it (Exporter._still_canceled), a
window: pgjobs.retry queued the job between the look and the removal, its next
owner found the object whole and completed the job with it, and the removal
then took it (a succeeded job whose object is gone). Now the cleanup holds the
job's row (FOR SHARE) across its removals: a retry waits for the cleanup to end
and its next owner finds what the cleanup left.

The retry runs on a thread of its own, started at the removal's call (after
the look); the removal goes on once that thread has ended, or is waiting for
a lock (pg_stat_activity): either is a state, never a time.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.export import Outcome
from tests.support import (
    ITEMS_TENANT_1,
    MANY_PARTS,
    content,
    job,
    make_items,
    plain_copy,
    run_export,
    submit_export,
)
from tests.test_export_cancel_unrecorded import _cancel_at

Conn = psycopg.Connection[Any]

EXPORTS = {
    "csv": ({**MANY_PARTS}, "object"),
    "gzip": ({**MANY_PARTS, "gzip": True}, "object"),
    "parallel": ({**MANY_PARTS, "parallel": 2}, "joined"),
}


class _RetryMeanwhile(threading.Thread):
    """pgjobs.retry(job_id), then the retried job run to its end, on a thread."""

    def __init__(self, dsn: str, job_id: int, where: str):
        super().__init__(name="retry-meanwhile", daemon=True)
        self.dsn, self.job_id, self.where = dsn, job_id, where
        self.app = f"retry-{uuid.uuid4().hex[:8]}"
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name=self.app) as c:
                assert c.execute("SELECT pgjobs.retry(%s)", (self.job_id,)).fetchone() == (True,)
            self.outcome = run_export(self.dsn, self.job_id, self.where)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.done.set()

    def ended_or_waiting(self, conn: Conn) -> None:
        """Until the thread has ended, or its retry waits for a lock."""
        while not self.done.wait(0.02):
            if conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    " AND wait_event_type = 'Lock'", (self.app,)).fetchone() == (1,):
                return


@pytest.mark.parametrize("kind", list(EXPORTS))
def test_a_retry_during_the_canceled_cleanup_never_loses_the_succeeded_object(
        conn: Conn, dsn: str, export_where: str, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    options, moment = EXPORTS[kind]
    job_id = submit_export(conn, "1", {}, options)
    events = _cancel_at(dsn, job_id, moment, monkeypatch)
    delete = storage.delete
    retrying: list[_RetryMeanwhile] = []

    def retried_meanwhile(uri: str, *args: Any, **kwargs: Any) -> Any:
        # The cleanup's removal of the object, after its look at the job: the
        # job is retried now and its next owner runs (or waits for the cleanup).
        if not retrying and job(conn, job_id)["status"] == "canceled":
            retrying.append(_RetryMeanwhile(dsn, job_id, export_where))
            retrying[0].start()
            retrying[0].ended_or_waiting(conn)
        return delete(uri, *args, **kwargs)

    monkeypatch.setattr(storage, "delete", retried_meanwhile)
    assert run_export(dsn, job_id, export_where).status == "canceled"
    assert events == ["canceled"], f"the export never reached the {moment} write"
    assert retrying, "the cleanup never removed the object"
    retrying[0].join()
    assert retrying[0].error is None, retrying[0].error
    monkeypatch.setattr(storage, "delete", delete)
    outcome = retrying[0].outcome
    while outcome is not None and outcome.status == "retrying":
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        outcome = run_export(dsn, job_id, export_where)
    assert outcome is not None and outcome.status == "succeeded", outcome
    assert job(conn, job_id)["status"] == "succeeded"
    result = job(conn, job_id)["result"]
    assert storage.exists(result["uri"]), "the succeeded job's object was removed"
    assert content(result) == plain_copy(conn, ITEMS_TENANT_1)
