"""How the export's pipeline ends: the reader fills the next part while the
uploader thread writes the last one, and whichever way the export ends (it
succeeds, it is canceled or loses its lease with a part in flight, the reader
fails while the uploader retries a part, the upload of part N fails while
part N+1 is read, the worker stops), no thread of it is left when the
attempt returns, a part in flight lands before the upload is removed, and no
part is checkpointed after the reader gave up. A kill between a part's
upload and its checkpoint resumes byte-identical in another process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs.poller import export as export_module
from pgjobs.poller import s3client, storage, upload_file, upload_s3
from pgjobs.poller.export import Exporter
from tests.support import (
    BIG_TENANT_1,
    LONG_LEASE,
    NATIVE_S3,
    job,
    leftovers,
    make_items,
    object_bytes,
    open_uploads,
    plain_copy,
    resume_after_kill,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
SMALL = {"chunk_rows": 7, "part_size": 1024}
UPLOADS = {"file": upload_file.LocalUpload, "s3": upload_s3.NativeS3Upload}


_BEFORE: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _threads_before() -> None:
    """The threads alive when the test starts (an earlier test's are not its)."""
    _BEFORE.clear()
    _BEFORE.update(threading.enumerate())


def _pipeline_threads() -> list[str]:
    """The exporter's own threads (uploader, bound walker) this test started that
    are alive now."""
    return sorted(t.name for t in set(threading.enumerate()) - _BEFORE
                  if t.is_alive() and t.name.startswith(("pgjobs-upload-", "pgjobs-bound")))


class _Timeline:
    """When each part's write ended and when the upload was removed, in the
    uploads of ``kind`` (one event list, in the order they happened)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kind: str, *,
                 slow_part: int = 0, seconds: float = 0.0,
                 fail: Callable[[int], BaseException | None] | None = None):
        self.events: list[tuple[str, int]] = []
        self.in_flight = threading.Event()
        self.lock = threading.Lock()
        cls = UPLOADS[kind]
        real_write, real_cleanup = cls.write_part, cls.cleanup
        timeline = self

        def write_part(upload: Any, data: bytes | bytearray) -> str | None:
            with timeline.lock:
                number = 1 + sum(1 for e in timeline.events if e[0] == "start")
                timeline.events.append(("start", number))
            if number == slow_part:
                timeline.in_flight.set()
                time.sleep(seconds)  # the request takes its time
            error = fail(number) if fail is not None else None
            if error is not None:
                timeline.in_flight.set()
                raise error
            sha256 = real_write(upload, data)
            with timeline.lock:
                timeline.events.append(("written", number))
            return sha256

        def cleanup(upload: Any) -> None:
            with timeline.lock:
                timeline.events.append(("removed", 0))
            real_cleanup(upload)

        monkeypatch.setattr(cls, "write_part", write_part)
        monkeypatch.setattr(cls, "cleanup", cleanup)


def _renew_once_set(monkeypatch: pytest.MonkeyPatch, gate: threading.Event) -> None:
    """Once ``gate`` is set, the reader renews the lease before each chunk (it
    sees a cancel or a takeover there, while the uploader's part is in flight)."""
    real = export_module._Control.keepalive

    def keepalive(self: Any) -> None:
        if gate.is_set():
            self.last_ok = 0.0
        real(self)

    monkeypatch.setattr(export_module._Control, "keepalive", keepalive)


@pytest.fixture
def where(request: pytest.FixtureRequest, conn: Conn, local_dir: str) -> tuple[str, str]:
    """(kind, storage URI) with the rows an export of several parts needs."""
    kind = str(request.param)
    if kind == "file":
        make_items(conn, rows=600)
        return kind, local_dir
    request.getfixturevalue("big")
    return kind, str(request.getfixturevalue("bucket"))


def _options(kind: str) -> tuple[dict[str, Any], str]:
    return (SMALL, "items") if kind == "file" else (NATIVE_S3, "big")


def _nothing_left(kind: str, uri: str) -> None:
    if kind == "file":
        assert leftovers(uri, set()) == []
    else:
        assert storage.pending_aborts(wait=30) == 0
        assert open_uploads(uri) == []


# --- a cancel or a lost lease while a part is in flight ----------------------------


@pytest.mark.parametrize("where", ["file", "s3"], indirect=True)
@pytest.mark.parametrize("how", ["cancel", "takeover"])
def test_a_cancel_or_lost_lease_with_a_part_in_flight_lets_it_land_first(
        conn: Conn, dsn: str, where: tuple[str, str], how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader sees the cancel (or another worker's claim) while part 2 is
    being written. The attempt returns only once that write has ended: the
    upload is removed after it (an S3 abort sent while a part is in flight may
    leave that part stored), the uploader thread is gone, and the part is not
    checkpointed by the attempt that gave up."""
    kind, uri = where
    options, target = _options(kind)
    timeline = _Timeline(monkeypatch, kind, slow_part=2, seconds=2.0)
    _renew_once_set(monkeypatch, timeline.in_flight)
    job_id = submit_export(conn, "1", {}, options, target=target)

    def end_it() -> None:
        timeline.in_flight.wait(60)
        with psycopg.connect(dsn, autocommit=True) as c:
            if how == "cancel":
                c.execute("SELECT pgjobs.cancel(%s)", (job_id,))
            else:  # the lease lapsed and another worker took the job
                c.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 s' "
                          "WHERE id = %s", (job_id,))
                assert c.execute("SELECT count(*) FROM pgjobs.claim_export(%s, 'other', "
                                 "'1 hour')", (job_id,)).fetchone() == (1,)

    ender = threading.Thread(target=end_it)
    ender.start()
    outcome = run_export(dsn, job_id, uri)
    ender.join()
    assert _pipeline_threads() == []
    assert outcome.status == ("canceled" if how == "cancel" else "lost"), outcome
    events = list(timeline.events)
    assert ("written", 2) in events, events  # it landed before the attempt returned
    assert ("start", 3) not in events  # nothing queued was sent after the reader gave up
    row = job(conn, job_id)
    assert (row["checkpoint"] or {}).get("parts", 0) <= 1  # part 2 not checkpointed
    if how == "cancel":
        assert events.index(("removed", 0)) > events.index(("written", 2)), events
        _nothing_left(kind, uri)
    else:
        assert ("removed", 0) not in events  # the new owner continues the upload
        assert row["status"] == "running" and row["worker"].startswith("other")


# --- the reader fails while the uploader retries a part ----------------------------


@pytest.mark.parametrize("where", ["file", "s3"], indirect=True)
def test_the_reader_failing_while_a_part_is_retried_ends_the_retries(
        conn: Conn, dsn: str, where: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage refuses part 2 transiently, so the uploader backs off and tries
    again (for up to --storage-retry, renewing the lease); meanwhile the reader
    fails for good. The attempt ends with the reader's error, at once: the
    retries stop, no thread is left, the upload is removed after the uploader
    ended, and no heartbeat of it follows the failure.

    The reader fails at its next step once part 2 is in flight, whatever that
    step is: a chunk's read, or a wait for the part writer (a full queue, or
    the end of the export, both renewing the lease while they wait). Failing
    it only in a chunk's read left the test to timing: a reader that had read
    every chunk, or filled the next part, before part 2 was taken waited on
    the writer's retries for the whole --storage-retry (CI, 2 x 600 s)."""
    kind, uri = where
    options, target = _options(kind)
    down = storage.StorageError("storage is down (the test)", retryable=True)
    timeline = _Timeline(monkeypatch, kind, fail=lambda n: down if n >= 2 else None)
    real_read, real_keepalive = Exporter._read_chunk, export_module._Control.keepalive
    readers: set[threading.Thread] = set()

    def read_chunk(self: Exporter, cursor: str | None, part: Any) -> Any:
        readers.add(threading.current_thread())
        if timeline.in_flight.is_set():
            raise ValueError("the reader failed (the test)")
        return real_read(self, cursor, part)

    def keepalive(self: Any) -> None:
        if timeline.in_flight.is_set() and threading.current_thread() in readers:
            raise ValueError("the reader failed (the test)")
        real_keepalive(self)

    monkeypatch.setattr(Exporter, "_read_chunk", read_chunk)
    monkeypatch.setattr(export_module._Control, "keepalive", keepalive)
    job_id = submit_export(conn, "1", {}, options, target=target)
    outcome = run_export(dsn, job_id, uri)  # --storage-retry: 10 minutes
    assert _pipeline_threads() == []  # no retry goes on after the attempt
    assert outcome.status == "failed", outcome
    assert "the reader failed (the test)" in (outcome.error or "")
    events = list(timeline.events)
    assert events[-1] == ("removed", 0), events
    _nothing_left(kind, uri)


# --- the upload of part N fails while part N+1 is read -----------------------------


@pytest.mark.parametrize("where", ["file", "s3"], indirect=True)
def test_a_part_refused_while_the_next_is_read_fails_the_attempt(
        conn: Conn, dsn: str, where: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 2 is refused for good while the reader reads part 3's chunks: the
    attempt fails with storage's message, the reader reads no further than the
    chunk it was reading (plus at most one part the queue held), and nothing is
    left: no thread, no upload."""
    kind, uri = where
    options, target = _options(kind)
    refused = storage.StorageError("part refused by the test", retryable=False)
    timeline = _Timeline(monkeypatch, kind, fail=lambda n: refused if n == 2 else None)
    chunks: list[bool] = []
    real_read = Exporter._read_chunk

    def read_chunk(self: Exporter, cursor: str | None, part: Any) -> Any:
        chunks.append(timeline.in_flight.is_set())
        time.sleep(0.05)  # a reader slower than the refusal
        return real_read(self, cursor, part)

    monkeypatch.setattr(Exporter, "_read_chunk", read_chunk)
    job_id = submit_export(conn, "1", {}, options, target=target)
    outcome = run_export(dsn, job_id, uri)
    assert _pipeline_threads() == []
    assert outcome.status == "failed", outcome
    assert "part refused by the test" in (outcome.error or "")
    row = job(conn, job_id)
    assert row["attempts"] == 1 and (row["checkpoint"] or {}).get("parts", 0) <= 1
    after = chunks.count(True)
    per_part = 1 if kind == "s3" else 150  # chunks a part holds, at most
    assert after <= 2 * per_part, chunks
    assert ("start", 3) not in timeline.events  # nothing sent after the refusal
    _nothing_left(kind, uri)


# --- every ending leaves no thread -------------------------------------------------


@pytest.mark.parametrize("ending", ["succeeded", "stopped", "failed"])
def test_no_thread_of_the_pipeline_outlives_the_attempt(
        conn: Conn, dsn: str, local_dir: str, ending: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=600)
    job_id = submit_export(conn, "1", {}, SMALL)
    stop = threading.Event()
    if ending == "stopped":
        monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.05")
        threading.Timer(0.5, stop.set).start()
    if ending == "failed":
        conn.execute("ALTER TABLE items DROP COLUMN noise")
    with psycopg.connect(dsn, autocommit=True) as c:
        worker = c.execute("SELECT worker FROM pgjobs.claim_export(%s, 'w', '30 seconds')",
                           (job_id,)).fetchone()
    assert worker is not None
    outcome = Exporter(dsn, job_id, worker[0], local_dir, stop=stop).run()
    assert _pipeline_threads() == []
    assert outcome.status == {"succeeded": "succeeded", "stopped": "released",
                              "failed": "failed"}[ending], outcome


# --- a kill between a part's upload and its checkpoint -----------------------------


def test_kill_between_a_parts_upload_and_its_checkpoint_resumes_byte_identical(
        conn: Conn, dsn: str, big: None, bucket: str) -> None:
    """SIGKILL after part N was stored and before the checkpoint recorded it:
    S3 holds a part the checkpoint does not name. Another process resumes the
    same upload from the checkpoint, writes part N again (the same bytes) and
    the object is byte-identical to an uninterrupted export's."""
    reference = run_export(dsn, submit_export(conn, "1", {}, NATIVE_S3, target="big"), bucket)
    assert reference.status == "succeeded", reference
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    first = start_worker(dsn, bucket, "--once", "--lease", LONG_LEASE, delays="uploaded=30")
    client = s3client.Client(bucket.split("/")[2])

    def stored_ahead() -> bool:
        ck = job(conn, job_id)["checkpoint"] or {}
        upload = ck.get("upload") or {}
        if not upload.get("upload_id"):
            return False
        stored = client.list_parts(ck["uri"].split("/", 3)[3], upload["upload_id"])
        return len(stored) > len(upload.get("etags", []))

    try:
        wait_for(stored_ahead, timeout=60, what="a part stored and not yet checkpointed")
    except BaseException:
        first.kill()
        first.communicate(timeout=10)
        raise
    row = resume_after_kill(conn, dsn, bucket, job_id, first, reference)
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)
