"""No S3 multipart upload is left open by a worker killed between the
CreateMultipartUpload that opened it and the checkpoint that names it.

Every way an export opens one is covered: a single export's native upload
(its create sent beside the first chunk's read), a part's of a parallel
export, the join of a parallel export's parts on S3, and the join of staged
parts (S3 with parts below 5 MiB, at finish). The worker dies (in process:
nothing after runs, as under SIGKILL; no cleanup, no abort) just after the
store answered the create. Then the job is retried by the next worker and
succeeds with the bytes of a plain COPY, or is canceled, or fails for good
(out of attempts): in each case, after the next worker's pass, no multipart
upload is open under the prefix, without the stale-upload sweep. Before,
nothing recorded the upload: it stayed open (storage charging for it) until
that sweep, an hour after the job ended (a failed one: after it was
pruned), and only while a worker ran under that storage.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel, storage, upload_s3
from pgjobs.poller import s3client as s3
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.worker import Worker
from tests.support import (
    ITEMS_TENANT_1,
    MANY_PARTS,
    content,
    job,
    make_items,
    open_uploads,
    plain_copy,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


class Killed(BaseException):
    """The worker process dies here (SIGKILL): nothing after runs."""


NATIVE = {"chunk_rows": 5, "part_size": 5 << 20}

# (options, which create the worker dies after: by the key it opens)
KINDS: dict[str, tuple[dict[str, Any], Any]] = {
    "single": (NATIVE, lambda key: True),
    "staged": (MANY_PARTS, lambda key: True),
    "join": ({**MANY_PARTS, "parallel": 2}, lambda key: ".part" not in key),
    "part": ({**NATIVE, "parallel": 2}, lambda key: ".part" in key),
}


def _kill_after_create(mp: pytest.MonkeyPatch, dsn: str, job_id: int,
                       kind: str) -> list[str]:
    """The attempt dies once the store has answered the chosen create."""
    events: list[str] = []
    create = s3.Client.create
    lock = threading.Lock()
    chosen = KINDS[kind][1]

    def created(self: s3.Client, key: str) -> str:
        upload_id = create(self, key)
        with lock:
            if not events and chosen(key):
                events.append("killed")
                if kind == "part":
                    # The dead part's lease runs out: this process's coordinator
                    # claims it again (a part of another worker's, as it would be).
                    with psycopg.connect(dsn, autocommit=True) as c:
                        c.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() "
                                  "- interval '1 second' WHERE job_id = %s "
                                  "AND status = 'running'", (job_id,))
                raise Killed()
        return upload_id

    def dead(original: Any) -> Any:
        def _fail(self: Exporter, exc: BaseException) -> Outcome:
            if isinstance(exc, Killed):
                return Outcome(self.job_id, "lost", error="killed")
            return original(self, exc)
        return _fail

    mp.setattr(s3.Client, "create", created)
    mp.setattr(Exporter, "_fail", dead(Exporter._fail))
    mp.setattr(parallel.PartExporter, "_fail", dead(parallel.PartExporter._fail))
    # Nothing of the dead attempt's own cleanup runs.
    mp.setattr(Exporter, "_abort_unrecorded", lambda self: None)
    mp.setattr(upload_s3, "abort_later", lambda *args: None)
    return events


def _lease_expired(conn: Conn, job_id: int) -> None:
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s AND status = 'running'", (job_id,))
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND lease_expires_at IS NOT NULL", (job_id,))


CASES = [(kind, then) for kind in ("single", "staged", "join")
         for then in ("retried", "canceled", "failed")] + [("part", "retried")]


@pytest.mark.parametrize("kind,then", CASES)
def test_an_upload_opened_and_never_recorded_is_aborted(
        conn: Conn, dsn: str, bucket: str, kind: str, then: str) -> None:
    make_items(conn, rows=60)
    options = {**KINDS[kind][0], **({"max_attempts": 1} if then == "failed" else {})}
    job_id = submit_export(conn, "1", {}, options)
    with pytest.MonkeyPatch.context() as mp:
        events = _kill_after_create(mp, dsn, job_id, kind)
        outcome = run_export(dsn, job_id, bucket)
    assert events == ["killed"], "no create was answered"
    if kind == "part":
        # The coordinator lived: it claimed the dead part again and finished.
        assert outcome.status == "succeeded", outcome
    else:
        assert outcome.status == "lost", outcome
        assert open_uploads(bucket), "the killed attempt left no open upload"
        if then == "canceled":
            assert conn.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
        _lease_expired(conn, job_id)
    with pytest.MonkeyPatch.context() as mp:
        # Not the stale-upload sweep: it waits an hour after the job ended (moto
        # dates every upload 2010, so it would take any at once here).
        mp.setattr(storage, "sweep_stale", lambda *args, **kwargs: 0)
        Worker(dsn, bucket, once=True, poll=0.1).run()
    ended = job(conn, job_id)
    expected = {"retried": "succeeded", "canceled": "canceled", "failed": "failed"}[then]
    assert ended["status"] == expected, ended["error"]
    if expected == "succeeded":
        assert content(ended["result"]) == plain_copy(conn, ITEMS_TENANT_1)
    assert open_uploads(bucket) == []


@pytest.mark.parametrize("kind", ["single", "join"])
def test_a_create_whose_answer_was_lost_leaves_no_upload(
        conn: Conn, dsn: str, bucket: str, kind: str) -> None:
    """S3 made the upload and the answer was lost (the connection dropped):
    the create is sent again (the join's within the attempt; a single
    export's by its next attempt: the create's failure fails the attempt
    retryably), and the first upload, which nothing names, is aborted; the
    export finishes with a plain COPY's bytes."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, KINDS[kind][0])
    lost: list[str] = []
    create = s3.Client.create
    chosen = KINDS[kind][1]

    def created(self: s3.Client, key: str) -> str:
        upload_id = create(self, key)
        if not lost and chosen(key):
            lost.append(upload_id)
            raise s3.S3Error(0, "", "connection reset by peer (the answer was lost)")
        return upload_id

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(s3.Client, "create", created)
        outcome = run_export(dsn, job_id, bucket)
    assert lost, "no create was sent"
    if kind == "single":
        assert outcome.status == "retrying", outcome
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(storage, "sweep_stale", lambda *args, **kwargs: 0)
            Worker(dsn, bucket, once=True, poll=0.1).run()
    else:
        assert outcome.status == "succeeded", outcome
    ended = job(conn, job_id)
    assert ended["status"] == "succeeded", ended["error"]
    assert content(ended["result"]) == plain_copy(conn, ITEMS_TENANT_1)
    assert open_uploads(bucket) == []
