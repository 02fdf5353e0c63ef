"""An export whose worker is killed leaves nothing behind once the job ends,
by what the engine does on its own (a worker's claim rescues the expired
lease, its housekeeping empties pgjobs.storage_deletions), without a prune.

The worker dies (in process: the attempt stops dead where a SIGKILL would,
no cleanup, no outcome recorded, its lease left to expire) at each write an
export makes before the checkpoint records it, and after that record:

* ``finalizing``: every part written, the upload open (S3: a multipart
  upload the checkpoint names), not finished;
* ``finished``: the whole object visible (the upload's finish), the
  heartbeat recording it as ``created`` never sent;
* ``created``: that heartbeat accepted, the complete never sent;
* ``file``: a Parquet file written (named as ``writing`` before), its
  record never sent;
* ``joining``: every part of a parallel export done, its coordinator
  killed before its join (a Parquet one's: before its complete);
* ``joined``: a parallel export's joined object placed, nothing after.

Then the job is canceled (the lease rescue of the next claim ends it), or
retried by the next claim and succeeds, or canceled and then taken back
with pgjobs.retry (the removal of its objects queued by the cancel already
done, or dropped by the retry) and succeeds. A canceled one leaves no object at
all under its prefix, and no open S3 multipart upload; a succeeded one only
the objects its result names. Before, a canceled export's object and a
parallel one's part objects stayed until pgjobs.prune deleted the job (24
hours by default): the rescue queued upload leftovers only.

The same holds when the job's own worker lives and one of its part workers
is killed after its write, past the coordinator's cleanup
(test_a_part_object_no_cleanup_reached_goes_by_housekeeping): the job's
cancel queued what its parts' checkpoints name, removed once no part holds a
lease. Another writer's object at the job's key is never deleted
(test_another_writers_object_at_the_key_survives).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgjobs.poller import join, parallel
from pgjobs.poller.export import Exporter, Outcome, _Control
from pgjobs.poller.worker import Worker
from tests.support import (
    MANY_PARTS,
    job,
    leftovers,
    make_items,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


class Killed(BaseException):
    """The worker process dies here (SIGKILL): nothing after runs."""


EXPORTS = {
    "csv": {**MANY_PARTS},
    "gzip": {**MANY_PARTS, "gzip": True},
    "jsonl": {**MANY_PARTS, "format": "jsonl"},
    "parquet": {"format": "parquet", "chunk_rows": 5, "part_size": 1024},
    "parallel": {**MANY_PARTS, "parallel": 2},
    "parallel-parquet": {"format": "parquet", "parallel": 2, "chunk_rows": 5,
                         "part_size": 1024},
    # S3: a native multipart upload (parts of at least 5 MiB; the last smaller).
    "multipart": {"chunk_rows": 5, "part_size": 5 << 20},
}

# (gzip and JSON Lines share the CSV object's path: tests/test_export_cancel_unrecorded.py)
CASES = [("multipart", "finalizing"), ("csv", "finished"), ("csv", "created"),
         ("parquet", "file"), ("parallel", "joined"), ("parallel", "joining"),
         ("parallel", "created"), ("parallel-parquet", "joining")]


def _kill_at(moment: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Kill the job's own attempt at ``moment`` (not a part's); the events."""
    events: list[str] = []
    beat = _Control.heartbeat

    def heartbeat(self: _Control, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ck = checkpoint or {}
        mine = not isinstance(self, parallel._PartControl) and not events
        if mine and moment == "finished" and isinstance(ck.get("created"), dict):
            events.append("killed")
            raise Killed()  # the object is visible; its record is never sent
        if mine and moment == "file" and ck.get("files") and not ck.get("writing"):
            events.append("killed")
            raise Killed()  # the first file is written; its record is never sent
        ok = beat(self, done, checkpoint)
        if ok and mine and moment == "finalizing" and ck.get("phase") == "finalizing" \
                and not isinstance(ck.get("created"), dict):
            events.append("killed")  # its upload open (S3: a multipart upload)
            raise Killed()
        if ok and mine and moment == "created" and isinstance(ck.get("created"), dict):
            events.append("killed")
            raise Killed()
        return ok

    placed = join.Join._placed

    def joined(self: join.Join) -> None:
        placed(self)
        if moment == "joined" and not events:
            events.append("killed")
            raise Killed()

    join_parts = parallel._join

    def joining(ex: Exporter, rows: list[dict[str, Any]]) -> Outcome:
        if moment == "joining" and not events:
            events.append("killed")  # every part done and recorded, nothing joined
            raise Killed()
        return join_parts(ex, rows)

    fail = Exporter._fail
    part_fail = parallel.PartExporter._fail

    def dead(original: Any) -> Any:
        def _fail(self: Exporter, exc: BaseException) -> Outcome:
            if isinstance(exc, Killed):
                return Outcome(self.job_id, "lost", error="killed")
            return original(self, exc)
        return _fail

    monkeypatch.setattr(_Control, "heartbeat", heartbeat)
    monkeypatch.setattr(join.Join, "_placed", joined)
    monkeypatch.setattr(parallel, "_join", joining)
    monkeypatch.setattr(Exporter, "_fail", dead(fail))
    monkeypatch.setattr(parallel.PartExporter, "_fail", dead(part_fail))
    monkeypatch.setattr(Exporter, "_abort_unrecorded", lambda self: None)
    return events


def _lease_expired(conn: Conn, job_id: int) -> None:
    """The dead worker's leases (the job's and its parts') run out."""
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                 "WHERE id = %s AND status = 'running'", (job_id,))
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND lease_expires_at IS NOT NULL", (job_id,))


def _engine(dsn: str, where: str) -> None:
    """What a worker does on its own: claim (rescuing expired leases, running
    what is queued) and its housekeeping (the stale sweep left at its default
    age: it removes nothing this young)."""
    Worker(dsn, where, once=True, poll=0.1).run()


def open_uploads(where: str) -> list[str]:
    """Open S3 multipart uploads under an s3:// prefix (none elsewhere)."""
    if not where.startswith("s3://"):
        return []
    import os

    import boto3

    bucket = where[len("s3://"):].split("/", 1)[0]
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or os.environ.get(
            "AWS_ENDPOINT_URL_S3"), region_name="us-east-1")
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


# Every case canceled (what failed before); a retry that succeeds (which held,
# but for a join's staged parts) and a retry after the cancel's removal for one
# case of each writer: the suite's time.
MATRIX = [(kind, moment, "canceled") for kind, moment in CASES] + [
    (kind, moment, then)
    for then, cases in (("retried", [("multipart", "finalizing"), ("csv", "finished"),
                                     ("csv", "created"), ("parquet", "file"),
                                     ("parallel", "joined"), ("parallel-parquet", "joining")]),
                        ("canceled-retried", [("csv", "created"), ("parquet", "file"),
                                              ("parallel", "joined")]))
    for kind, moment in cases]


@pytest.mark.parametrize("kind,moment,then", MATRIX)
def test_a_killed_export_leaves_nothing_once_it_ends(
        conn: Conn, dsn: str, export_where: str, kind: str, moment: str, then: str) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    with pytest.MonkeyPatch.context() as mp:  # (not the fixture's: it holds the S3 env)
        events = _kill_at(moment, mp)
        outcome = run_export(dsn, job_id, export_where)
    assert events == ["killed"], f"the export never reached {moment}"
    assert outcome.status == "lost", outcome
    assert job(conn, job_id)["status"] == "running"
    if kind == "multipart" and export_where.startswith("s3://"):
        assert open_uploads(export_where), "the killed attempt left no multipart upload"
    if then.startswith("canceled"):
        assert conn.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
    _lease_expired(conn, job_id)
    _engine(dsn, export_where)
    if then == "canceled-retried":
        assert job(conn, job_id)["status"] == "canceled"
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
        _engine(dsn, export_where)
    ended = job(conn, job_id)
    if then == "canceled":
        assert ended["status"] == "canceled"
        assert leftovers(export_where, set()) == []
    else:
        assert ended["status"] == "succeeded", ended["error"]
        uris = set(ended["result"]["uris"])
        assert uris and leftovers(export_where, uris) == []
    assert open_uploads(export_where) == []


@pytest.mark.parametrize("kind", ["parallel", "parallel-parquet"])
def test_a_part_object_no_cleanup_reached_goes_by_housekeeping(
        conn: Conn, dsn: str, export_where: str, kind: str) -> None:
    """Part 1 makes its object (its file) visible after the cancel, and neither
    it (a part worker killed right after the write) nor the coordinator (whose
    cleanup ran before that write) removes it: the cancel queued what the part's
    checkpoint names, and a worker's housekeeping removes it once no part
    holds a lease (tests/test_export_cancel_unrecorded.py: by pgjobs.prune)."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events: list[str] = []
    part_beat = parallel._PartControl.heartbeat

    def heartbeat(self: parallel._PartControl, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = part_beat(self, done, checkpoint)
        ck = checkpoint or {}
        if ok and self.part == 1 and not events and (
                (ck.get("phase") == "finalizing" and "created" not in ck
                 and ck.get("format") != "parquet") or ck.get("writing")):
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
            events.append("canceled")
        return ok

    def skipped(*_args: Any) -> None:
        pass  # a worker killed, or a cleanup that ran before the write

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel._PartControl, "heartbeat", heartbeat)
        for name in ("_discard", "_forget_object"):  # the part's own cleanup
            mp.setattr(parallel.PartExporter, name, skipped, raising=False)
        mp.setattr(parallel, "_forget_parts_if_canceled", skipped)
        outcome = run_export(dsn, job_id, export_where)
    assert events == ["canceled"], "part 1 never reached its write"
    assert outcome.status == "canceled", outcome
    assert [u for u in leftovers(export_where, set()) if "part" in u]  # no cleanup reached it
    _lease_expired(conn, job_id)
    _engine(dsn, export_where)
    assert leftovers(export_where, set()) == []
    assert open_uploads(export_where) == []


@pytest.mark.parametrize("kind,moment", [("csv", "finished"), ("csv", "created"),
                                         ("parquet", "file")])
def test_another_writers_object_at_the_key_survives(
        conn: Conn, dsn: str, local_dir: str, kind: str, moment: str) -> None:
    """The object a killed attempt left is replaced by another writer's (same
    size, other bytes) before the cancel's removal runs: it is not the job's
    any more, and stays."""
    from pgjobs.poller import storage

    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    with pytest.MonkeyPatch.context() as mp:
        _kill_at(moment, mp)
        run_export(dsn, job_id, local_dir)
    left = leftovers(local_dir, set())
    objects = [u for u in left if u.endswith((".csv", ".parquet"))]
    assert objects, left
    for uri in objects:
        path = storage.parse(uri).path
        with open(path, "rb") as f:
            size = len(f.read())
        with open(path, "wb") as f:
            f.write(b"x" * size)
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    _lease_expired(conn, job_id)
    _engine(dsn, local_dir)
    assert job(conn, job_id)["status"] == "canceled"
    assert sorted(leftovers(local_dir, set())) == sorted(objects)
    for uri in objects:
        with open(storage.parse(uri).path, "rb") as f:
            assert set(f.read()) == {ord("x")}


@pytest.mark.parametrize("kind", ["parallel", "parallel-gzip"])
def test_a_succeeded_parallel_export_loses_its_parts_if_its_coordinator_dies(
        conn: Conn, dsn: str, export_where: str, kind: str) -> None:
    """The coordinator completes the job and is killed before it deletes the
    part objects the join consumed: the complete queued them (each with its
    part's digests), and a worker's housekeeping removes them; the joined
    object stays."""
    from pgjobs.poller import storage

    make_items(conn, rows=60)
    options = {**EXPORTS["parallel"], "gzip": kind.endswith("gzip")}
    job_id = submit_export(conn, "1", {}, options)
    events: list[str] = []
    completed = parallel._completed

    def killed_after(ex: Exporter, *args: Any, **kwargs: Any) -> Outcome:
        def delete(uri: str) -> bool:
            events.append("killed")
            raise Killed()  # the job succeeded; its part objects are still there

        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(storage, "delete", delete)
            return completed(ex, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        _kill_at("never", mp)
        mp.setattr(parallel, "_completed", killed_after)
        outcome = run_export(dsn, job_id, export_where)
    assert events == ["killed"], "the coordinator never removed a part"
    assert outcome.status == "lost", outcome
    ended = job(conn, job_id)
    assert ended["status"] == "succeeded"
    uris = set(ended["result"]["uris"])
    assert [u for u in leftovers(export_where, uris) if ".part0" in u]  # the kill left them
    _engine(dsn, export_where)
    assert uris and leftovers(export_where, uris) == []
    assert uris <= set(leftovers(export_where, set()))
    assert open_uploads(export_where) == []
