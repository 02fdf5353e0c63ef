"""A cancel that arrives after a part of a parallel export decided how its
attempt ends wins: nothing uploaded remains, and the job ends canceled.

A part that fails retryably (or is handed back) keeps its upload for its next
claim: its checkpoint holds the temporary file, staged parts or multipart
upload. A cancel that arrives after that decision leaves no claim to come:
the part's own worker had already looked (no cancel then), and the job's
worker, seeing the cancel, removed the parts' finished objects only, so the
retried part's upload stayed. Now the job's worker removes the upload every
part's checkpoint holds (poller/parallel.py, _forget_parts_if_canceled).

The part's next attempt may be claimed between its retry and the cancel (CI,
now and then): it makes its own upload before any record names it (file://:
a temporary file of its own, into which it copies the kept one), and the
cancel reached it inside that resume (the fence of the kept file's removal),
so its file stayed. Now an upload that fails to begin removes its own file,
a part does not start once its job has a cancel pending, and the job's
cleanup removes every attempt's temporary file of each part; the tests below
put the cancel at each of the next attempt's calls to the database.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from pgjobs.poller import export, parallel, storage, upload_file
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.storage import StorageError
from tests.support import (
    ITEMS_TENANT_1,
    MANY_PARTS,
    content,
    job,
    leftovers,
    make_items,
    open_uploads,
    part_rows,
    plain_copy,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(params=["file", "memory"])
def where(request: pytest.FixtureRequest, local_dir: str) -> str:
    return local_dir if request.param == "file" else f"memory:///{uuid.uuid4().hex[:8]}/"


def _part_2_hiccup(monkeypatch: pytest.MonkeyPatch, late: str, decided: list[Any]) -> None:
    """Part 2's storage fails retryably, while ``decided`` is empty (its first
    attempt): at ``late``, ``finalize`` (having written every part) or
    ``stream`` (once it wrote two parts)."""
    original = getattr(parallel.PartExporter, f"_{late}")

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

    monkeypatch.setattr(parallel.PartExporter, f"_{late}",
                        finalize if late == "finalize" else stream)


@pytest.mark.parametrize("late", ["finalize", "stream"])
def test_a_cancel_after_a_part_kept_its_upload_for_a_retry_leaves_nothing(
        conn: Conn, dsn: str, where: str, late: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    fail = parallel.PartExporter._fail
    decided: list[Outcome] = []
    _part_2_hiccup(monkeypatch, late, decided)

    def then_cancel(self: parallel.PartExporter, exc: BaseException) -> Outcome:
        outcome = fail(self, exc)
        if self.part == 2 and outcome.status == "retrying" and not decided:
            decided.append(outcome)
            # The part recorded its retry (upload kept); the cancel comes now.
            with psycopg.connect(dsn, autocommit=True) as other:
                assert other.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
        return outcome

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
    """Part 2's first attempt fails retryably (as above: ``late`` says where;
    ``parquet``: a Parquet export's part, once it recorded its first file),
    and the cancel comes just before the ``at``-th call its next attempt (its
    claim came before the cancel) makes to the database: its look at the job,
    its fences, its records, its heartbeats, its finish, each a point where the
    attempt may learn of the cancel. Returns the job, its outcome and whether
    the cancel came."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2, **(
        {"format": "parquet"} if late == "parquet" else {})})
    file_done = parallel.ParquetPart._file_done
    fail = parallel.PartExporter._fail
    call = parallel._PartControl.call
    decided: list[bool] = []
    calls: list[int] = []

    def parquet_file(self: parallel.ParquetPart, done: Any) -> None:
        # Part 2 records its first file, then its storage fails retryably.
        file_done(self, done)
        if self.part_ex.part == 2 and not decided and self.ex.state["files"]:
            raise StorageError("injected: storage hiccup in part 2", retryable=True)

    def decide(self: parallel.PartExporter, exc: BaseException) -> Outcome:
        outcome = fail(self, exc)
        if self.part == 2 and outcome.status == "retrying":
            decided.append(True)  # no cancel yet: the next attempt is claimed first
        return outcome

    init = parallel.PartExporter.__init__

    def tagged(self: parallel.PartExporter, dsn: str, row: dict[str, Any], *args: Any,
               **kwargs: Any) -> None:
        init(self, dsn, row, *args, **kwargs)
        self.control.attempt = int(row["attempts"])  # type: ignore[attr-defined]

    def counted(self: parallel._PartControl, func: Any) -> Any:
        if self.part == 2 and getattr(self, "attempt", 1) > 1:
            calls.append(1)
            if len(calls) == at:
                with psycopg.connect(dsn, autocommit=True) as other:
                    other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        return call(self, func)

    if late == "parquet":
        monkeypatch.setattr(parallel.ParquetPart, "_file_done", parquet_file)
    else:
        _part_2_hiccup(monkeypatch, late, decided)
    monkeypatch.setattr(parallel.PartExporter, "_fail", decide)
    monkeypatch.setattr(parallel.PartExporter, "__init__", tagged)
    monkeypatch.setattr(parallel._PartControl, "call", counted)
    outcome = run_export(dsn, job_id, where)
    assert decided, "part 2 never decided to retry"
    return job_id, outcome, len(calls) >= at


# Each of the first four calls on file:// (a temporary file of the attempt's
# own); memory:// and S3 (staged parts in the part's folder; S3: the uploads
# opened at the key) at some of them, for time.
CALLS = [("file", at) for at in (1, 2, 3, 4)] + [("memory", 1), ("memory", 3), ("s3", 2)]


@pytest.mark.parametrize(("store", "at"), CALLS)
@pytest.mark.parametrize("late", ["finalize", "stream", "parquet"])
def test_a_cancel_at_any_call_of_a_retried_parts_next_attempt_leaves_nothing(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, local_dir: str, store: str,
        late: str, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next attempt of a part claimed before the cancel makes its own
    upload (a temporary file of its own, staged parts, an upload) before any
    record names it; wherever the cancel reaches it (its look at the job, its
    first fence, inside the resume of the kept upload, a later renewal, its
    finish), what it made is removed: by the attempt itself, or by the job's
    cleanup after it."""
    where = {"file": local_dir, "memory": f"memory:///{uuid.uuid4().hex[:8]}/"}.get(store) \
        or str(request.getfixturevalue("bucket"))
    job_id, outcome, canceled = _retried_part_with_cancel_at(
        conn, dsn, where, late, at, monkeypatch)
    assert canceled, "part 2's next attempt ended before the cancel"
    assert outcome.status == "canceled", outcome
    assert job(conn, job_id)["status"] == "canceled"
    assert leftovers(where, set()) == []
    if store == "s3":
        assert open_uploads(where) == []


@pytest.mark.parametrize("at", [2, 3])
@pytest.mark.parametrize("late", ["finalize", "stream"])
def test_the_jobs_cleanup_removes_every_attempts_temporary_file_of_a_part(
        conn: Conn, dsn: str, local_dir: str, late: str, at: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A part's attempt whose own cleanup never runs (its worker killed) after it
    made its temporary file and before any record named it (the cancel reached
    it inside the resume of the kept upload): the job's cleanup removes every
    attempt's temporary file of the part, not only the one a checkpoint names."""
    monkeypatch.setattr(upload_file.LocalUpload, "cleanup", lambda self: None)
    job_id, outcome, canceled = _retried_part_with_cancel_at(
        conn, dsn, local_dir, late, at, monkeypatch)
    assert canceled and outcome.status == "canceled", outcome
    assert leftovers(local_dir, set()) == []


def test_a_retry_before_the_canceled_jobs_cleanup_keeps_what_it_resumes(
        conn: Conn, dsn: str, export_where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """pgjobs.retry queues a canceled export again as its worker's cleanup
    begins: the cleanup removes nothing (each removal only while the job is
    still canceled), so the kept upload of the retried part and the objects of
    the parts that succeeded are the next attempt's, which resumes them."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    finalize = parallel.PartExporter._finalize
    fail = parallel.PartExporter._fail
    hold = Exporter._canceled_hold
    armed = [True]
    retried: list[bool] = []

    def failing(self: parallel.PartExporter) -> Any:
        if armed and self.part == 2:
            raise StorageError("injected: storage hiccup finishing part 2", retryable=True)
        return finalize(self)

    def cancel_then_retry_part(self: parallel.PartExporter, exc: BaseException) -> Outcome:
        if armed and self.part == 2:
            # The cancel first: no next attempt of the part is claimed after it.
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        return fail(self, exc)

    def retry_first(self: Exporter) -> Any:
        # As the cleanup begins: the job is queued again meanwhile. (A retry
        # that comes once the cleanup holds the job's row waits for it:
        # tests/test_export_cleanup_retry_hold.py.)
        if armed and not retried and not isinstance(self, parallel.PartExporter) \
                and job(conn, job_id)["status"] == "canceled":  # the coordinator's cleanup
            retried.append(True)
            assert conn.execute("SELECT pgjobs.retry(%s)", (job_id,)).fetchone() == (True,)
        return hold(self)

    monkeypatch.setattr(parallel.PartExporter, "_finalize", failing)
    monkeypatch.setattr(parallel.PartExporter, "_fail", cancel_then_retry_part)
    monkeypatch.setattr(Exporter, "_canceled_hold", retry_first)
    assert run_export(dsn, job_id, export_where).status == "canceled"
    armed.clear()
    assert retried, "the cleanup never ran"
    rows = part_rows(conn, job_id)
    kept = (rows[1]["checkpoint"] or {}).get("upload")
    assert rows[1]["status"] == "queued" and kept, rows[1]
    if kept.get("tmp"):
        assert storage.exists("file://" + kept["tmp"]), "the retried part's upload is gone"
    if kept.get("staging"):
        staged = [p for p in leftovers(export_where, set()) if kept["staging"] in p]
        assert staged, "the retried part's staged parts are gone"
    if rows[0]["status"] == "succeeded":
        assert storage.exists(rows[0]["result"]["uri"]), "a succeeded part's object is gone"
    done = run_export(dsn, job_id, export_where)
    assert done.status == "succeeded", done
    assert content(done.result or {}) == plain_copy(conn, ITEMS_TENANT_1)
    assert leftovers(export_where, {(done.result or {})["uri"]}) == []


@pytest.mark.parametrize("at", [1, 2, 3])
def test_a_cancel_at_any_call_of_a_whole_exports_resume_leaves_nothing(
        conn: Conn, dsn: str, local_dir: str, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same upload, a whole export's: its second attempt resumes the first's
    temporary file into one of its own, and the cancel comes just before the
    ``at``-th call it makes to the database (its look at the job, the fences
    of the kept file's removal inside that resume): nothing is left."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    finalize = Exporter._finalize
    call = export._Control.call
    second: list[int] = []

    def failing(self: Exporter) -> Any:
        raise StorageError("injected: storage hiccup finishing", retryable=True)

    def counted(self: export._Control, func: Any) -> Any:
        if second and type(self) is export._Control:
            second.append(1)
            if len(second) == at + 1:
                with psycopg.connect(dsn, autocommit=True) as other:
                    other.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        return call(self, func)

    monkeypatch.setattr(Exporter, "_finalize", failing)
    assert run_export(dsn, job_id, local_dir).status == "retrying"
    kept = job(conn, job_id)["checkpoint"]["upload"]
    assert kept and kept.get("tmp"), kept
    monkeypatch.setattr(Exporter, "_finalize", finalize)
    monkeypatch.setattr(export._Control, "call", counted)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    second.append(0)  # counting from the second attempt's first call
    outcome = run_export(dsn, job_id, local_dir)
    assert len(second) > at, "the second attempt ended before the cancel"
    assert outcome.status == "canceled", outcome
    assert leftovers(local_dir, set()) == []
