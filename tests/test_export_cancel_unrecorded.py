"""A cancel that lands between an export's write and the checkpoint that
records it leaves nothing of that write: the whole export's object (CSV, JSON
lines, gzip), a Parquet file, a parallel export's joined object.

tests/test_export_cancel_race.py puts the cancel inside a parallel export's
parts; here it lands at the writes of the job's own attempt: right after the
last heartbeat accepted before the write (``object``: the heartbeat entering
finalize, then the upload's finish makes the object visible and the heartbeat
recording it as ``created`` is refused; ``file``: a Parquet file named as
``writing``, then written, then its record refused), and after the join's
write (``joined``: the joined object visible, its record refused). Only the
``object`` cases failed before (the object stayed on every storage); the
others guard what already held. A cancel asked after the record (``recorded``)
does not stop the complete: the export succeeds and keeps its object, as one
canceled after it succeeded does. A part object that no cleanup reached (its
worker killed after the write, the coordinator's cleanup run before it) goes
when pgjobs.prune deletes the job. A finish whose answer was lost (the object
visible, the call failed) leaves an object the attempt never owned: removed
only while it reads back as the streamed parts, never once another writer
replaced it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs.poller import join, parallel
from pgjobs.poller.export import _Control
from tests.support import (
    MANY_PARTS,
    job,
    leftovers,
    make_items,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


def _cancel(dsn: str, job_id: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as other:
        assert other.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)


def _before_write(moment: str, ck: dict[str, Any]) -> bool:
    """Whether the job's heartbeat with checkpoint ``ck`` is the last one before
    the write (or the complete) ``moment`` names."""
    if moment == "object":
        return ck.get("phase") == "finalizing" and "created" not in ck and not ck.get("parallel")
    if moment == "file":
        return bool(ck.get("writing"))
    if moment == "recorded":
        return isinstance(ck.get("created"), dict) or (
            ck.get("format") == "parquet" and ck.get("phase") == "finalizing")
    return False


EXPORTS = {
    "csv": {**MANY_PARTS},
    "gzip": {**MANY_PARTS, "gzip": True},
    "jsonl": {**MANY_PARTS, "format": "jsonl"},
    "parquet": {"format": "parquet", "chunk_rows": 5, "part_size": 1024},
    "parallel": {**MANY_PARTS, "parallel": 2},
    "parallel-gzip": {**MANY_PARTS, "parallel": 2, "gzip": True},
}


def _cancel_at(dsn: str, job_id: int, moment: str, monkeypatch: pytest.MonkeyPatch,
               ) -> list[str]:
    """Cancel ``job_id`` at ``moment`` of its run (the job's own heartbeats, not
    its parts'); the events, in order."""
    events: list[str] = []
    beat = _Control.heartbeat

    def heartbeat(self: _Control, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = beat(self, done, checkpoint)
        if ok and not isinstance(self, parallel._PartControl) and "canceled" not in events \
                and _before_write(moment, checkpoint or {}):
            _cancel(dsn, job_id)
            events.append("canceled")
        return ok

    placed = join.Join._placed

    def joined(self: join.Join) -> None:
        placed(self)  # the joined object is visible: the cancel lands now
        if moment == "joined" and "canceled" not in events:
            _cancel(dsn, job_id)
            events.append("canceled")

    monkeypatch.setattr(_Control, "heartbeat", heartbeat)
    monkeypatch.setattr(join.Join, "_placed", joined)
    return events


@pytest.mark.parametrize("kind,moment", [
    ("csv", "object"), ("gzip", "object"), ("jsonl", "object"), ("parquet", "file"),
    ("parallel", "joined"), ("parallel-gzip", "joined"),
])
def test_a_write_the_cancel_kept_from_its_record_is_removed(
        conn: Conn, dsn: str, export_where: str, kind: str, moment: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events = _cancel_at(dsn, job_id, moment, monkeypatch)
    outcome = run_export(dsn, job_id, export_where)
    assert events == ["canceled"], f"the export never reached the {moment} write"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(export_where, set()) == []


@pytest.mark.parametrize("kind", ["csv", "gzip", "parquet", "parallel"])
def test_a_cancel_after_the_record_lets_the_export_succeed_with_its_object(
        conn: Conn, dsn: str, export_where: str, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Requested after the heartbeat that records the object (a Parquet export:
    the one entering finalize), the cancel does not stop the complete: the job
    succeeds, and nothing of this change removes its object."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events = _cancel_at(dsn, job_id, "recorded", monkeypatch)
    outcome = run_export(dsn, job_id, export_where)
    assert events == ["canceled"], "the export never recorded its object"
    assert outcome.status == "succeeded", outcome
    assert job(conn, job_id)["status"] == "succeeded"
    uris = set(outcome.result["uris"])
    assert uris and leftovers(export_where, uris) == []
    assert uris <= set(leftovers(export_where, set()))


@pytest.mark.parametrize("kind", ["csv", "parquet", "parallel"])
def test_a_succeeded_export_keeps_its_object_when_a_cancel_comes_after(
        conn: Conn, dsn: str, local_dir: str, kind: str) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert conn.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (False,)
    assert job(conn, job_id)["status"] == "succeeded"
    uris = set(outcome.result["uris"])
    assert uris and leftovers(local_dir, uris) == []
    assert uris <= set(leftovers(local_dir, set()))


@pytest.mark.parametrize("kind", ["parallel", "parallel-gzip"])
def test_a_part_object_no_cleanup_reached_goes_when_the_job_is_pruned(
        conn: Conn, dsn: str, local_dir: str, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 1 makes its object visible after the cancel, and neither it (a part
    worker killed right after the write) nor the coordinator (whose cleanup ran
    before that write, in another process) removes it: the part's checkpoint
    (phase ``finalizing``, its digests, no ``created``) is what pgjobs.prune
    queues it from, deleted only while it reads back as those digests."""
    from pgjobs.poller.worker import Worker

    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events: list[str] = []
    part_beat = parallel._PartControl.heartbeat

    def heartbeat(self: parallel._PartControl, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = part_beat(self, done, checkpoint)
        ck = checkpoint or {}
        if ok and self.part == 1 and not events and ck.get("phase") == "finalizing" \
                and "created" not in ck:
            _cancel(dsn, job_id)
            events.append("canceled")
        return ok

    def skipped(*_args: Any) -> None:
        pass  # a worker killed, or a cleanup that ran before the write

    monkeypatch.setattr(parallel._PartControl, "heartbeat", heartbeat)
    for name in ("_discard", "_forget_object"):  # the part's own cleanup
        monkeypatch.setattr(parallel.PartExporter, name, skipped, raising=False)
    monkeypatch.setattr(parallel, "_forget_parts_if_canceled", skipped)
    outcome = run_export(dsn, job_id, local_dir)
    assert events == ["canceled"], "part 1 never reached its finish"
    assert outcome.status == "canceled", outcome
    left = leftovers(local_dir, set())
    assert [u for u in left if ".part00001." in u], left  # the write no cleanup reached
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' "
                 "WHERE id = %s", (job_id,))
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None and summary[0]["deleted"] == 1
    Worker(dsn, local_dir, once=True, poll=0.1, stale_after=timedelta(0)).run()
    assert leftovers(local_dir, set()) == []


UPLOADS = ("pgjobs.poller.upload_file.LocalUpload", "pgjobs.poller.upload_obstore.StagedUpload",
           "pgjobs.poller.upload_s3.NativeS3Upload")


def _replace(uri: str, data: bytes) -> None:
    """Put ``data`` at ``uri`` over what is there: another writer's object."""
    import obstore

    from pgjobs.poller import storage

    loc = storage.parse(uri)
    if loc.scheme == "file":
        with open(loc.path, "wb") as f:
            f.write(data)
        return
    obstore.put(storage.store_for(loc), loc.path, data)


@pytest.mark.parametrize("after", ["as-written", "replaced"])
@pytest.mark.parametrize("kind", ["csv", "gzip"])
def test_a_finish_whose_answer_was_lost_is_judged_by_its_bytes(
        conn: Conn, dsn: str, export_where: str, kind: str, after: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload's finish made the object visible and its answer was lost (the
    call failed for good after the write), then the cancel landed: nothing
    records the object and the attempt never owned it (``owned`` false, no
    ``created``), so the canceled end removes it only while it reads back as
    exactly the parts this attempt streamed. An object another writer put at
    the key after the write (same size, other bytes) is never deleted."""
    import importlib

    from pgjobs.poller.storage import StorageError

    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    written: list[str] = []

    def lost(original: Any) -> Any:
        def finish(self: Any) -> tuple[int, str]:
            size, _sha256 = original(self)  # the object is visible now
            uri = self.location.uri
            written.append(uri)
            if after == "replaced":
                _replace(uri, b"x" * size)
            _cancel(dsn, job_id)
            raise StorageError(f"finishing {uri}: the answer was lost", retryable=False)
        return finish

    for path in UPLOADS:
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        monkeypatch.setattr(cls, "finish", lost(cls.finish))
    outcome = run_export(dsn, job_id, export_where)
    assert len(written) == 1, f"the export never finished its upload: {written}"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    expected = written if after == "replaced" else []
    assert leftovers(export_where, set()) == expected
