"""A cancel that lands between an export's write and the checkpoint (or the
complete) that records it leaves nothing of that write: the whole export's
object (CSV, gzip), a Parquet file, a parallel export's joined object.

tests/test_export_cancel_race.py puts the cancel inside a parallel export's
parts; here it lands at the writes of the job's own attempt: right after the
last heartbeat accepted before the write (``object``: the heartbeat entering
finalize, then the upload's finish makes the object visible and the heartbeat
recording it as ``created`` is refused; ``file``: a Parquet file named as
``writing``, then written, then its record refused), after the join's write
(``joined``: the joined object visible, its record refused), and after the
record but before the complete (``recorded``: the complete is refused). A
succeeded export keeps its object: a cancel after the complete is refused.
"""

from __future__ import annotations

import uuid
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


@pytest.fixture(params=["file", "memory", "s3"])
def where(request: pytest.FixtureRequest, local_dir: str) -> str:
    if request.param == "file":
        return local_dir
    if request.param == "memory":
        return f"memory:///{uuid.uuid4().hex[:8]}/"
    return str(request.getfixturevalue("bucket"))


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
    ("csv", "object"), ("gzip", "object"), ("parquet", "file"),
    ("parallel", "joined"), ("parallel-gzip", "joined"),
])
def test_a_write_the_cancel_kept_from_its_record_is_removed(
        conn: Conn, dsn: str, where: str, kind: str, moment: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events = _cancel_at(dsn, job_id, moment, monkeypatch)
    outcome = run_export(dsn, job_id, where)
    assert events == ["canceled"], f"the export never reached the {moment} write"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(where, set()) == []


@pytest.mark.parametrize("kind", ["csv", "gzip", "parquet", "parallel"])
def test_a_cancel_after_the_record_lets_the_export_succeed_with_its_object(
        conn: Conn, dsn: str, where: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requested after the heartbeat that records the object (a Parquet export:
    the one entering finalize), the cancel does not stop the complete: the job
    succeeds, and nothing of this change removes its object."""
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, EXPORTS[kind])
    events = _cancel_at(dsn, job_id, "recorded", monkeypatch)
    outcome = run_export(dsn, job_id, where)
    assert events == ["canceled"], "the export never recorded its object"
    assert outcome.status == "succeeded", outcome
    assert job(conn, job_id)["status"] == "succeeded"
    uris = set(outcome.result["uris"])
    assert uris and leftovers(where, uris) == []
    assert uris <= set(leftovers(where, set()))


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
