"""Every export cleanup that a pgjobs.retry can race holds the row a next owner
must change to continue what it removes, and a client that gives up waiting
for it is told why.

A canceled export's cleanup held the job's row (Exporter._canceled_hold,
tests/test_export_cleanup_retry_hold.py); the others did not:

* an export failed for good (a permanent error) removed its upload after the
  failure was recorded, with no hold: a retry in between resumed the upload
  being removed (or its next owner started over, the work lost);
* a part of a parallel export removed what it wrote as it ended (failed for
  good, or handed back with its job's cancel pending) holding nothing a
  next claim of the part waits for;
* a cleanup whose job was retried before its hold was taken went on,
  fenced by looks at the status only;
* a client's pgjobs.retry (cancel, pause, resume) that gave up waiting for a
  cleanup's hold (its lock_timeout) got a bare 55P03.

Each test looks at the hold from the cleanup's first removal
(Exporter._discard): the row is held (a NOWAIT lock of it is refused) and a
retry with a short lock_timeout fails 55P03 with the cleanup named. States,
never times: the hold lasts until the removal returns.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel, storage
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.storage import StorageError
from tests.support import (
    ITEMS_TENANT_1,
    MANY_PARTS,
    content,
    job,
    make_items,
    plain_copy,
    run_export,
    scalar,
    submit_export,
)
from tests.test_export_cancel_unrecorded import _cancel, _cancel_at

Conn = psycopg.Connection[Any]

REFUSED = "refused for good by the test"


@pytest.fixture(params=["file", "s3"])
def where(request: pytest.FixtureRequest, local_dir: str) -> str:
    """file:// and S3 (moto): the hold is the database's, the same for every
    store; the failed export's cleanup runs on every store (export_where)."""
    return local_dir if request.param == "file" else str(request.getfixturevalue("bucket"))


def _held(dsn: str, sql: str, params: tuple[Any, ...]) -> bool:
    """Whether another session holds the row ``sql`` locks (FOR UPDATE NOWAIT)."""
    with psycopg.connect(dsn, autocommit=True) as other:
        try:
            other.execute(sql, params)
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def _job_held(dsn: str, job_id: int) -> bool:
    return _held(dsn, "SELECT FROM pgjobs.jobs WHERE id = %s FOR UPDATE NOWAIT", (job_id,))


def _part_held(dsn: str, job_id: int, part: int) -> bool:
    return _held(dsn, "SELECT FROM pgjobs.export_parts WHERE job_id = %s AND part = %s"
                      " FOR UPDATE NOWAIT", (job_id, part))


def _retry_refused(dsn: str, job_id: int) -> psycopg.errors.LockNotAvailable:
    """pgjobs.retry with a short lock_timeout while the row is held: its error."""
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable) as refused:
            other.execute("SELECT pgjobs.retry(%s)", (job_id,))
    return refused.value


def _at_cleanup(monkeypatch: pytest.MonkeyPatch, look: Any) -> list[Any]:
    """``look(exporter)`` at the first removal of a cleanup (Exporter._discard,
    not a succeeded attempt's); what it returned, in order."""
    seen: list[Any] = []
    discard = Exporter._discard

    def probed(self: Exporter, *args: Any, **kwargs: Any) -> None:
        value = look(self)
        if value is not None:
            seen.append(value)
        discard(self, *args, **kwargs)

    monkeypatch.setattr(Exporter, "_discard", probed)
    return seen


def _refuse_whole_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole export's finish fails for good (its upload written, not finished)."""
    finalize = Exporter._finalize

    def refused(self: Exporter) -> Outcome:
        if type(self) is Exporter:
            raise StorageError(REFUSED, retryable=False)
        return finalize(self)

    monkeypatch.setattr(Exporter, "_finalize", refused)


def _finish_retried(conn: Conn, dsn: str, job_id: int, where: str) -> None:
    """Retry the job and run it to success: every row, as a plain COPY."""
    assert conn.execute("SELECT pgjobs.retry(%s)", (job_id,)).fetchone() == (True,)
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome
    assert content(job(conn, job_id)["result"]) == plain_copy(conn, ITEMS_TENANT_1)


def test_a_failed_exports_cleanup_holds_its_row_and_a_retry_is_told_why(
        conn: Conn, dsn: str, export_where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS})

    def look(ex: Exporter) -> Any:
        if job(conn, ex.job_id)["status"] != "failed":
            return None
        return _job_held(dsn, job_id), _retry_refused(dsn, job_id)

    with monkeypatch.context() as patch:
        seen = _at_cleanup(patch, look)
        _refuse_whole_export(patch)
        outcome = run_export(dsn, job_id, export_where)
    assert outcome.status == "failed" and REFUSED in (outcome.error or ""), outcome
    assert len(seen) == 1, "the failed attempt's cleanup never ran"
    held, refused = seen[0]
    assert held, "the failed export's cleanup removed its upload holding nothing"
    assert refused.sqlstate == "55P03"
    assert "removing what the failed attempt wrote" in str(refused)
    assert (refused.diag.message_hint or "").endswith(
        "removing what the failed attempt wrote; try again in a moment."), refused.diag
    _finish_retried(conn, dsn, job_id, export_where)


def test_a_failed_exports_cleanup_leaves_the_upload_of_a_retry_that_came_first(
        conn: Conn, dsn: str, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure is recorded, a retry queues the job, then the cleanup comes:
    the upload is the retried job's now, which resumes it (its parts kept)."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS})
    status = Exporter._status
    retried: list[str] = []

    def retried_first(self: Exporter) -> str | None:
        # The attempt's look at how its recorded failure ended the job, just
        # before its cleanup: a retry comes now.
        seen = status(self)
        if seen == "failed" and not retried:
            assert conn.execute("SELECT pgjobs.retry(%s)", (job_id,)).fetchone() == (True,)
            retried.append(seen)
        return seen

    with monkeypatch.context() as patch:
        _refuse_whole_export(patch)
        patch.setattr(Exporter, "_status", retried_first)
        assert run_export(dsn, job_id, where).status == "failed"
    assert retried, "the attempt never looked at its failure"
    parts = int(job(conn, job_id)["checkpoint"]["parts"])
    assert parts > 1, job(conn, job_id)["checkpoint"]
    assert job(conn, job_id)["status"] == "queued"
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome
    ck = job(conn, job_id)["checkpoint"]
    assert ck["history"][-1]["part"] == parts, \
        f"the retried job started over: its upload was removed ({ck['history']})"
    assert content(job(conn, job_id)["result"]) == plain_copy(conn, ITEMS_TENANT_1)


def test_a_retry_during_a_canceled_exports_cleanup_is_told_why(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS})

    def look(ex: Exporter) -> Any:
        if job(conn, ex.job_id)["status"] != "canceled":
            return None
        return _retry_refused(dsn, job_id)

    with monkeypatch.context() as patch:
        events = _cancel_at(dsn, job_id, "object", patch)
        seen = _at_cleanup(patch, look)
        assert run_export(dsn, job_id, local_dir).status == "canceled"
    assert events == ["canceled"] and len(seen) == 1, (events, seen)
    refused = seen[0]
    assert refused.sqlstate == "55P03"
    assert refused.diag.message_hint == ("The export's worker is removing what the canceled "
                                         "attempt wrote; try again in a moment."), refused.diag
    _finish_retried(conn, dsn, job_id, local_dir)


def test_a_client_waiting_for_a_claim_is_not_told_of_a_cleanup(
        conn: Conn, dsn: str) -> None:
    """Any other holder of the row (a running job's claim or page): 55P03 too,
    naming no cleanup."""
    make_items(conn, rows=5)
    job_id = submit_export(conn, "1", {}, {})
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (job_id,))
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SET lock_timeout = '50ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable) as refused:
                other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert "removing" not in str(refused.value)
    assert refused.value.diag.message_hint == \
        "Try again in a moment, or with a longer lock_timeout."


@pytest.mark.parametrize("ending", ["failed", "canceled"])
def test_a_parts_cleanup_holds_the_parts_row(
        conn: Conn, dsn: str, where: str, ending: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 1 ends failed for good, or handed back with its job's cancel
    pending (the job's worker ends the cancel): as it removes what it wrote,
    its row is held, so no claim of the part (a retried job's) continues
    what it removes; the job's row is not (the job's worker is not kept
    waiting)."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    finalize = parallel.PartExporter._finalize

    def ended(self: parallel.PartExporter) -> Outcome:
        if self.part == 1:
            if ending == "failed":
                raise StorageError(REFUSED, retryable=False)
            _cancel(dsn, job_id)  # the part's next heartbeat refuses
        return finalize(self)

    def look(ex: Exporter) -> Any:
        if not isinstance(ex, parallel.PartExporter) or ex.part != 1:
            return None
        return _part_held(dsn, job_id, 1)

    with monkeypatch.context() as patch:
        seen = _at_cleanup(patch, look)
        patch.setattr(parallel.PartExporter, "_finalize", ended)
        outcome = run_export(dsn, job_id, where)
    assert outcome.status == ending, outcome
    assert seen == [True], f"part 1's cleanup held nothing a claim of it waits for: {seen}"
    _finish_retried(conn, dsn, job_id, where)


def test_a_split_waits_for_a_failed_parts_cleanup_past_the_workers_lock_timeout(
        conn: Conn, dsn: str) -> None:
    """A retried job's split queues its failed part again, whose row the part's
    last cleanup may still hold (FOR SHARE, as long as its removal takes). A
    worker's statements give up on a lock after a few seconds (its
    lock_timeout): the split gave up too (55P03), the job left until its
    lease ran out and its next claim cost an attempt. It now waits for the
    hold within the job's lease. The test: a lock_timeout far shorter than
    the hold, released only once the split has waited past it."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 minute')",
                      (job_id,))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 2
    conn.execute("UPDATE pgjobs.export_parts SET status = 'failed', worker = 'p#1'"
                 " WHERE job_id = %s AND part = 1", (job_id,))
    errors: list[BaseException] = []
    with psycopg.connect(dsn) as cleanup:  # the part's cleanup, its hold open
        cleanup.execute("SELECT FROM pgjobs.export_parts WHERE job_id = %s AND part = 1"
                        " FOR SHARE", (job_id,))

        def split() -> None:
            with psycopg.connect(dsn, autocommit=True) as worker:
                worker.execute("SET lock_timeout = '100ms'")
                try:
                    worker.execute("SELECT pgjobs.export_parts_split(%s, %s)",
                                   (job_id, identity))
                except psycopg.Error as exc:
                    errors.append(exc)

        thread = threading.Thread(target=split)
        thread.start()
        while thread.is_alive() and not scalar(
                conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND query LIKE '%%export_parts_split%%' AND pid <> pg_backend_pid()"):
            time.sleep(0.02)
        time.sleep(0.5)  # past the worker's lock_timeout (not asserted: a state below)
        cleanup.commit()
        thread.join()
    assert not errors, f"the split gave up behind the part's cleanup: {errors}"
    assert scalar(conn, "SELECT status FROM pgjobs.export_parts WHERE job_id = %s AND part = 1",
                  (job_id,)) == "queued"


def test_a_cleanup_whose_hold_is_lost_removes_nothing_after(
        conn: Conn, dsn: str, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hold is a lock of the cleanup's own connection: once that
    connection is gone (a restart, a terminated backend, the network) the
    lock is, and a retry goes through, whose next owner resumes what the
    cleanup went on removing. Each removal now first asks that connection
    (Exporter._still_held): the test ends the hold's backend at the cleanup's
    first removal of a failed export's upload, and no removal runs after."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS})
    asked: list[str] = []
    ran: list[str] = []
    fenced = storage.fenced

    def recorded(fence: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(call, "__name__", repr(call))
        asked.append(name)

        def running(*a: Any, **k: Any) -> Any:
            ran.append(name)
            return call(*a, **k)

        return fenced(fence, running, *args, **kwargs)

    def look(ex: Exporter) -> Any:
        if job(conn, ex.job_id)["status"] != "failed":
            return None
        return scalar(conn, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
                            " FROM pg_stat_activity WHERE state = 'idle in transaction'"
                            " AND query LIKE '%%status = ''failed'' AND worker%%'")

    with monkeypatch.context() as patch:
        seen = _at_cleanup(patch, look)
        _refuse_whole_export(patch)
        patch.setattr(storage, "fenced", recorded)
        outcome = run_export(dsn, job_id, where)
    assert outcome.status == "failed" and REFUSED in (outcome.error or ""), outcome
    assert seen == [1], f"the failed cleanup's hold was not found: {seen}"
    assert asked, "the failed cleanup removed nothing: the test proves nothing"
    assert ran == [], f"removed after its hold was lost: {ran}"
    _finish_retried(conn, dsn, job_id, where)
