"""A cancel that arrives after a part of a parallel export decided how its
attempt ends wins: nothing uploaded remains, and the job ends canceled.

A part that fails retryably (or is handed back) keeps its upload for its next
claim: its checkpoint holds the temporary file, staged parts or multipart
upload. A cancel that arrives after that decision leaves no claim to come:
the part's own worker had already looked (no cancel then), and the job's
worker, seeing the cancel, removed the parts' finished objects only, so the
retried part's upload stayed. Now the job's worker removes the upload every
part's checkpoint holds (poller/parallel.py, _forget_parts_if_canceled).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel
from pgjobs.poller.export import Outcome
from pgjobs.poller.storage import StorageError
from tests.support import (
    MANY_PARTS,
    job,
    leftovers,
    make_items,
    open_uploads,
    part_rows,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(params=["file", "memory"])
def where(request: pytest.FixtureRequest, local_dir: str) -> str:
    return local_dir if request.param == "file" else f"memory:///{uuid.uuid4().hex[:8]}/"


@pytest.mark.parametrize("late", ["finalize", "stream"])
def test_a_cancel_after_a_part_kept_its_upload_for_a_retry_leaves_nothing(
        conn: Conn, dsn: str, where: str, late: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    original = getattr(parallel.PartExporter, f"_{late}")
    fail = parallel.PartExporter._fail
    decided: list[Outcome] = []

    def finalize(self: parallel.PartExporter) -> Any:
        # Part 2 has written every part, then its storage fails retryably.
        if self.part == 2 and not decided:
            raise StorageError("injected: storage hiccup finishing part 2", retryable=True)
        return original(self)

    def stream(self: parallel.PartExporter) -> Any:
        # Part 2 writes two parts, then its storage fails retryably.
        if self.part != 2 or decided:
            return original(self)
        beat = self.control.heartbeat

        def failing(done: int | None = None, checkpoint: Any = None) -> bool:
            ok = beat(done, checkpoint)
            if self.state["parts"] >= 2:
                raise StorageError("injected: storage hiccup in part 2", retryable=True)
            return ok

        self.control.heartbeat = failing  # type: ignore[method-assign]
        return original(self)

    def then_cancel(self: parallel.PartExporter, exc: BaseException) -> Outcome:
        outcome = fail(self, exc)
        if self.part == 2 and outcome.status == "retrying" and not decided:
            decided.append(outcome)
            # The part recorded its retry (upload kept); the cancel comes now.
            with psycopg.connect(dsn, autocommit=True) as other:
                assert other.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
        return outcome

    monkeypatch.setattr(parallel.PartExporter, f"_{late}",
                        finalize if late == "finalize" else stream)
    monkeypatch.setattr(parallel.PartExporter, "_fail", then_cancel)
    outcome = run_export(dsn, job_id, where)
    assert decided, "part 2 never decided to retry"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    second = [p for p in part_rows(conn, job_id) if p["part"] == 2][0]
    assert second["status"] == "queued" and (second["checkpoint"] or {}).get("upload"), second
    assert leftovers(where, set()) == []


def _retried_part_with_cancel_at(conn: Conn, dsn: str, where: str, late: str, at: int,
                                 monkeypatch: pytest.MonkeyPatch) -> tuple[int, Outcome, bool]:
    """Part 2's first attempt fails retryably (as above: ``late`` says where),
    and the cancel comes just before the ``at``-th call its next attempt (its
    claim came before the cancel) makes to the database: its look at the job,
    its fences, its records, its heartbeats, its finish, each a point where the
    attempt may learn of the cancel. Returns the job, its outcome and whether
    the cancel came."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    original = getattr(parallel.PartExporter, f"_{late}")
    fail = parallel.PartExporter._fail
    call = parallel._PartControl.call
    decided: list[bool] = []
    calls: list[int] = []

    def finalize(self: parallel.PartExporter) -> Any:
        if self.part == 2 and not decided:
            raise StorageError("injected: storage hiccup finishing part 2", retryable=True)
        return original(self)

    def stream(self: parallel.PartExporter) -> Any:
        if self.part != 2 or decided:
            return original(self)
        control_beat = self.control.heartbeat

        def failing(done: int | None = None, checkpoint: Any = None) -> bool:
            ok = control_beat(done, checkpoint)
            if self.state["parts"] >= 2:
                raise StorageError("injected: storage hiccup in part 2", retryable=True)
            return ok

        self.control.heartbeat = failing  # type: ignore[method-assign]
        return original(self)

    def decide(self: parallel.PartExporter, exc: BaseException) -> Outcome:
        outcome = fail(self, exc)
        if self.part == 2 and outcome.status == "retrying":
            decided.append(True)  # no cancel yet: the next attempt is claimed first
        return outcome

    def counted(self: parallel._PartControl, func: Any) -> Any:
        if self.part == 2 and decided:
            calls.append(1)
            if len(calls) == at:
                with psycopg.connect(dsn, autocommit=True) as other:
                    other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        return call(self, func)

    monkeypatch.setattr(parallel.PartExporter, f"_{late}",
                        finalize if late == "finalize" else stream)
    monkeypatch.setattr(parallel.PartExporter, "_fail", decide)
    monkeypatch.setattr(parallel._PartControl, "call", counted)
    outcome = run_export(dsn, job_id, where)
    assert decided, "part 2 never decided to retry"
    return job_id, outcome, len(calls) >= at


@pytest.mark.parametrize("at", [1, 2, 3, 4])
@pytest.mark.parametrize("late", ["finalize", "stream"])
def test_a_cancel_at_any_call_of_a_retried_parts_next_attempt_leaves_nothing(
        conn: Conn, dsn: str, export_where: str, late: str, at: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The next attempt of a part claimed before the cancel makes its own
    upload (a temporary file of its own, staged parts, an upload) before any
    record names it; wherever the cancel reaches it (its look at the job, its
    first fence, inside the resume of the kept upload, a later renewal, its
    finish), what it made is removed: by the attempt itself, or by the job's
    cleanup after it."""
    job_id, outcome, canceled = _retried_part_with_cancel_at(
        conn, dsn, export_where, late, at, monkeypatch)
    assert canceled, "part 2's next attempt ended before the cancel"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(export_where, set()) == []
    if export_where.startswith("s3://"):
        assert open_uploads(export_where) == []
