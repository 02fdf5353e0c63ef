"""A cancel that lands between a part's write and the checkpoint that records
it leaves nothing of that write, in whichever order the part's write, its own
discard and the coordinator's cleanup happen.

The clean-clone CI once found part 1's object (``{job}.part00001.csv``) left
after a cancel (tests/test_export_late_cancel.py, memory://): part 1 had made
its object visible (its upload's finish), the cancel came, and the heartbeat
that records the object as the job's (``created``) was refused. The part's own
discard removes upload leftovers only, and the coordinator removes only the
objects the parts' checkpoints record, so nobody removed it. Here the cancel is
put exactly there (and at the other writes of a part: a staged part, a Parquet
file), deterministically, with the coordinator seeing the cancel before the
part (``coordinator``) or the part first (``part``), and with the part's own
cleanup lost (``unclean``: as a part whose worker died after its write): then
the coordinator's cleanup must find the write from the part's checkpoint.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel
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


def _before_write(moment: str, checkpoint: dict[str, Any] | None) -> bool:
    """Whether part 1's heartbeat with ``checkpoint`` is the last one before the
    write ``moment`` names (the write then lands after the cancel)."""
    ck = checkpoint or {}
    if moment == "object":  # CSV: the heartbeat entering finalize; then the finish
        return ck.get("phase") == "finalizing" and "created" not in ck
    if moment == "staged":  # CSV: a part checkpointed; then the next part's write
        return int(ck.get("parts") or 0) >= 1 and ck.get("phase") == "streaming"
    return bool(ck.get("writing"))  # Parquet: a file named; then its write


@pytest.mark.parametrize("first", ["part", "coordinator", "unclean"])
@pytest.mark.parametrize("fmt,moment", [("csv", "object"), ("csv", "staged"),
                                        ("parquet", "file")])
def test_a_write_that_lands_after_the_cancel_leaves_nothing(
        conn: Conn, dsn: str, export_where: str, fmt: str, moment: str, first: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    options: dict[str, Any] = {**MANY_PARTS, "parallel": 2}
    if fmt == "parquet":
        options = {"format": "parquet", "parallel": 2, "chunk_rows": 5, "part_size": 1024}
    job_id = submit_export(conn, "1", {}, options)
    canceled = threading.Event()
    coordinator_saw = threading.Event()
    events: list[str] = []
    part_beat = parallel._PartControl.heartbeat
    job_beat = _Control.heartbeat

    def coordinator_heartbeat(self: _Control, done: int | None = None,
                              checkpoint: dict[str, Any] | None = None) -> bool:
        ok = job_beat(self, done, checkpoint)
        if not ok and canceled.is_set() and not coordinator_saw.is_set():
            events.append("coordinator refused")
            coordinator_saw.set()
        return ok

    def heartbeat(self: parallel._PartControl, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = part_beat(self, done, checkpoint)
        if ok and self.part == 1 and not canceled.is_set() and _before_write(moment, checkpoint):
            with psycopg.connect(dsn, autocommit=True) as other:
                assert other.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
            canceled.set()
            events.append("canceled")
            if first != "part":
                # The coordinator sees the cancel (and waits for this thread)
                # before this part writes.
                assert coordinator_saw.wait(30), "the coordinator never saw the cancel"
            events.append("part 1 writes")
        elif not ok and canceled.is_set() and self.part == 1 and "part 1 refused" not in events:
            events.append("part 1 refused")
        return ok

    def unclean(name: str) -> None:
        original = getattr(parallel.PartExporter, name, None)

        def skipped(self: parallel.PartExporter, *args: Any) -> None:
            if self.part == 1 and canceled.is_set():
                events.append(f"part 1 skips {name}")
                return
            if original is not None:
                original(self, *args)

        monkeypatch.setattr(parallel.PartExporter, name, skipped, raising=False)

    if first == "unclean":  # part 1 leaves what it wrote: the coordinator removes it
        unclean("_discard")
        unclean("_forget_object")
    monkeypatch.setattr(parallel._PartControl, "heartbeat", heartbeat)
    monkeypatch.setattr(_Control, "heartbeat", coordinator_heartbeat)
    outcome = run_export(dsn, job_id, export_where)
    assert canceled.is_set(), "part 1 never reached the write"
    assert events.index("canceled") < events.index("part 1 writes")
    if first != "part":
        assert events.index("coordinator refused") < events.index("part 1 writes")
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(export_where, set()) == []
