"""The streaming exporter: one export job, from PostgreSQL to object storage.

The database decides what to read: :func:`pgjobs.export_chunk_sql` returns the
``COPY (...) TO STDOUT`` of one keyset chunk (rows, order, format, mask). This
module only moves bytes:

* each chunk is read in its own short REPEATABLE READ transaction (no snapshot
  is held for the whole export), on the primary or, with ``--read-dsn``, on a
  standby that has replayed past the submit and every earlier chunk
  (:mod:`pgjobs.poller.standby`), and its bytes appended to the current part;
  the next chunk's keyset bound is walked meanwhile on the control connection
  (:class:`_Ahead`), so the chunk's transaction does not walk its keys before
  its COPY starts; from the primary, the next chunk's transaction begins, and
  its statement runs, in the same query as this chunk's COPY (one round trip
  a chunk: :meth:`Exporter._copy`), rolled back only when the chunk's rows
  change the next chunk's limit (before a wait for the part writer, that
  chunk is read first, the finished part held aside);
* once a part holds ``part_size`` bytes it is handed to an uploader thread,
  which compresses it (one gzip member per part: concatenated members are a
  valid gzip file and need no compressor state across a crash), writes it
  durably (:mod:`pgjobs.poller.storage`), then saves the checkpoint (cursor,
  rows, bytes, upload state, and the size and SHA-256 of every part written,
  ``digests``) through ``pgjobs.heartbeat`` - the lease fence. The digests fix
  what was streamed before anything can become visible: what a resume inherits
  and what is read back are compared with them, part by part;
* after the last part, a heartbeat records phase ``finalizing`` (from then on
  the object's bytes are fixed by the checkpoint), the object is made visible,
  a heartbeat records the SHA-256 of what was written, the object is read back
  (streamed) and its size and SHA-256 compared with those, and only then does
  ``pgjobs.complete`` store the result (uri, rows, bytes, sha256, format). A
  mismatch (a stale writer, a storage fault) never completes: the checkpoint is
  reset, the wrong object removed, and the job fails retryably, so the retry
  rewrites the object from scratch.

Part boundaries depend only on the data and the job's effective ``chunk_rows``
and ``part_size``, so a worker resuming from a checkpoint writes exactly the
bytes the first one would have: the final object is byte-identical. Every call
is fenced on the claim's identity (the ``worker`` of the claimed row,
name#token): a worker whose heartbeat returns false stops at once and
completes nothing, even when a later claim of the job carries the same worker
name.

Memory is bounded whatever a job asks: the worker clamps ``chunk_rows`` and
``part_size`` to its own maxima (``--max-chunk-rows``, ``--max-part-size``)
and records the effective values in the checkpoint (a resuming worker uses
those, so its bytes do not change with its own settings); and a chunk is
bounded by bytes as well as rows: rows stream straight into the part, and a
chunk whose output passes ``chunk_bytes`` (part_size, within 1 to 8 MiB; 4 MiB
for Parquet) is rolled back and read again with fewer keys; later chunks ask
for as many keys as fill it at the rows' size (:func:`_next_limit`), and the
limit is checkpointed too. A part is cut after the chunk
that fills it, so it stays under part_size + chunk_bytes (plus one row), and
at most three parts are in memory (filling, queued, being written).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import queue
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from pgjobs import db, queries

# The COPY loop and the connection-loss test live in the connector (pgjobs/db.py);
# named here too for the poller modules and benchmarks that import them from here.
from pgjobs.db import connection_lost as connection_lost
from pgjobs.db import copy_out as copy_out
from pgjobs.errors import MissingExtra, PgjobsError, job_error, words
from pgjobs.poller import observe, standby, storage
from pgjobs.poller.storage import CannotResume, KeyTaken, Mismatch, StorageError, UploadLost

T = TypeVar("T")

log = logging.getLogger("pgjobs.export")

CHECKPOINT_VERSION = 1
DEFAULT_MAX_CHUNK_ROWS = 50_000
DEFAULT_MAX_PART_SIZE = 16 * 1024 * 1024
MIN_CHUNK_BYTES = 1024 * 1024
MAX_CHUNK_BYTES = 8 * 1024 * 1024
"""A chunk's output bound for CSV and JSON lines: each chunk costs a round trip, a
transaction and a keyset bound, so chunks this size (about 45,000 rows of 180
bytes) keep that to a few percent of an export. Bigger ones were measured slower
(16 and 32 MiB: bigger parts, a longer tail after the last COPY; docs/exports.md)."""
MAX_PARQUET_CHUNK_BYTES = 4 * 1024 * 1024
"""Parquet parses a chunk in place beside a row group of Arrow data: it keeps the
smaller bound its memory figures were measured with."""
FIRST_ROW_BYTES = 256
"""The bytes per row the first chunk of an export is sized for (it has nothing
measured yet): it asks for as many keys as fill nine tenths of chunk_bytes at
this size (:func:`_first_limit`). Asking for chunk_rows keys instead overflowed
chunk_bytes whenever rows were wider than chunk_bytes / chunk_rows (168 bytes
at 8 MiB and 50,000 keys): the first chunk was read to chunk_bytes, rolled
back and read again, about 5% of a 1M-row export of 180-byte rows."""
_STAGE = 256 * 1024  # rows are compressed in batches of about this many bytes
DEFAULT_STORAGE_RETRY = 600.0
"""Seconds a part (or the final complete) keeps being retried within one attempt
while storage fails transiently (network, 5xx): the lease is renewed meanwhile and
the parts already written are kept (``--storage-retry``)."""
RETRY_BACKOFF_MAX = 30.0
MAX_UPLOAD_RESTARTS = 3
"""Times one attempt starts over when its upload vanishes mid-stream."""
LOCK_RETRY_SECONDS = 1
"""Seconds before a chunk or batch that gave up waiting for a lock
(db.JOB_ROW_LOCK_TIMEOUT) is tried again."""


class LeaseLost(Exception):
    """The job is no longer ours (lease taken over, job canceled or gone)."""


class Stopped(Exception):
    """The worker is shutting down: hand the job back."""


class _ChunkTooLarge(Exception):
    """A chunk's output passed chunk_bytes after ``messages`` COPY rows."""

    def __init__(self, messages: int):
        super().__init__(messages)
        self.messages = messages


@dataclass
class Outcome:
    """How one run of a job ended.

    status: ``succeeded``, ``failed`` (for good), ``retrying`` (failed, queued
    again), ``canceled``, ``paused``, ``released`` (handed back on shutdown) or ``lost``
    (another worker owns it now; this one changed nothing).
    """

    job_id: int
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Settings:
    """An export's settings, read from its payload, where the submit
    (``pgjobs._submit_export_as``) stored every one, defaults included: SQL
    decides the defaults, in one place, and the worker never has a second set.
    A payload without them is not one the submit wrote: the job fails for good."""

    format: str
    gzip: bool
    chunk_rows: int
    part_size: int
    parallel: int
    compression: str | None  # parquet only
    row_group_bytes: int | None  # parquet only

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Settings:
        try:
            fmt = str(payload["format"])
            parquet = fmt == "parquet"
            return cls(fmt, bool(payload["gzip"]), int(payload["chunk_rows"]),
                       int(payload["part_size"]), int(payload["parallel"]),
                       str(payload["compression"]) if parquet else None,
                       int(payload["row_group_bytes"]) if parquet else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the export's payload lacks its settings ({words(exc)}): it was not "
                             "written by pgjobs.submit_export") from exc


def object_key(target: str, scope: str, job_id: int, fmt: str, gzip: bool) -> str:
    """``{target}/{scope}/{job id}.{csv|jsonl}[.gz]``, each name made a path
    segment by :func:`path_segment` (one-to-one: two tenants never share a
    folder). The key is decided once, at an export's first attempt, and kept
    in its checkpoint (``uri``): a resumed attempt writes where it started,
    whichever release computed it."""
    return (f"{path_segment(target)}/{path_segment(scope)}/{job_id}.{fmt}"
            + (".gz" if gzip else ""))


SEGMENT_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
"""The bytes a name keeps as they are in a storage path; every other byte,
``=`` included, is written ``=XX`` (two upper-case hex digits)."""
SEGMENT_MAX = 120
"""The longest segment :func:`path_segment` returns (escapes triple a byte, and
file systems hold 255 bytes a name)."""
_SEGMENT_HEAD = SEGMENT_MAX - len("==") - 64


def path_segment(name: str) -> str:
    """``name`` as one path segment, one-to-one, so that distinct names never
    share a folder: bytes of SEGMENT_SAFE kept, every other byte (UTF-8) and
    ``=`` itself escaped as ``=XX``, a leading ``.`` as ``=2E`` (no ``.``,
    ``..`` or hidden name), the empty name as ``=`` (every other ``=`` is
    followed by two hex digits). A segment longer than SEGMENT_MAX is cut
    (never inside an escape) and ends with ``==`` and the SHA-256 of the whole
    name: ``==`` appears in no other segment. Never ``%``: storage URIs with
    %-escapes are refused (storage.within)."""
    if name == "":
        return "="
    raw = name.encode("utf-8", "surrogatepass")
    pieces = [chr(b) if b in SEGMENT_SAFE and not (i == 0 and b == 0x2E) else f"={b:02X}"
              for i, b in enumerate(raw)]
    segment = "".join(pieces)
    if len(segment) <= SEGMENT_MAX:
        return segment
    head = ""
    for piece in pieces:
        if len(head) + len(piece) > _SEGMENT_HEAD:
            break
        head += piece
    return f"{head}=={hashlib.sha256(raw).hexdigest()}"


def _delays() -> dict[str, float]:
    """Testing aid: ``PGJOBS_EXPORT_DELAYS="part=0.2,uploaded=2,finalize=5,written=5"``
    sleeps after each checkpointed part / after each part is written and before
    it is checkpointed / before making the object visible / after a Parquet file
    is written and before it is recorded, so that tests can kill a worker at a
    chosen point."""
    spec = os.environ.get("PGJOBS_EXPORT_DELAYS", "")
    delays: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        try:
            delays[name] = float(value)
        except ValueError:
            continue
    return delays


def _retryable(exc: BaseException) -> bool | None:
    """Whether a failed attempt may be retried, or None when the error carries a
    SQLSTATE: the database decides those (pgjobs.retryable_sqlstate, the one
    policy), in the same statement that records the failure (db.fail_by_sqlstate)."""
    if isinstance(exc, StorageError):
        return bool(exc.retryable)
    if isinstance(exc, MissingExtra):
        return False
    if _sqlstate(exc):
        return None
    return not isinstance(exc, (ValueError, TypeError, KeyError))


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return str(state) if state else None


class _Control:
    """The job's control connection (heartbeat, complete, fail, release), shared by
    the reading and uploading threads, reconnecting while our lease may still hold.

    ``borrowed``: a connection of the caller's to use first (`pgjobs export`
    and `pgjobs import` hand over the one they submitted and claimed on, whose backend has compiled
    the functions the exporter calls, instead of opening a cold one). It stays
    the caller's: :meth:`close` leaves it open (its lock timeout restored), and
    once it is lost this opens connections of its own, as always. The data
    connection is never this one, so a chunk's COPY never holds up a heartbeat."""

    def __init__(self, dsn: str, job_id: int, worker: str, lease: float,
                 borrowed: db.Connection | None = None, app: str = "pgjobs export"):
        self.dsn = dsn
        self.app = app  # the application_name of the connections it opens
        self.job_id = job_id
        self.worker = worker
        self.lease = lease
        self.lock = threading.Lock()
        self.last_ok = time.monotonic()
        self.conn: db.Connection | None = None
        self.borrowed = borrowed
        self._borrowed_lock_timeout: str | None = None

    def _connection(self) -> db.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            borrowed, self.borrowed = self.borrowed, None  # used once, never after a loss
            if borrowed is not None and not (borrowed.closed or borrowed.broken):
                self._borrowed_lock_timeout = str(db.scalar(borrowed, queries.SHOW_LOCK_TIMEOUT))
                self.conn = borrowed
                self.borrowed = borrowed  # close() hands it back instead of closing it
            else:
                self.conn = db.connect(self.dsn, app=self.app)
            db.wait_for_job_rows_at_most(self.conn)
        return self.conn

    def _lock_wait_problem(self) -> str:
        """What the statement that gave up (55P03) waited for, as
        pgjobs._lock_wait_problem says it; a fixed sentence if it cannot."""
        try:
            return str(db.scalar(self._connection(), queries.LOCK_WAIT_PROBLEM,
                                 {"id": self.job_id, "waited": db.JOB_ROW_LOCK_TIMEOUT}))
        except (db.Error, PgjobsError):
            return "another transaction holds the job's row or its table"

    def lock_waited(self, exc: BaseException, again: str) -> None:
        """A data statement (an export's chunk, an import's batch) gave up
        waiting for a lock (55P03: the data connection's JOB_ROW_LOCK_TIMEOUT)
        and rolled back, losing nothing. It waited without limit behind an ALTER
        TABLE, LOCK TABLE or CREATE INDEX not yet committed, silently; now it
        says what it waited for and who holds it (pgjobs._lock_wait_problem, the
        words of the runner's warning), renews the lease (a cancel or pause
        requested meanwhile ends the attempt here), and the caller tries again
        (``again`` says how)."""
        observe.count("errors", kind="lock")
        log.warning("job %s: %s; %s in %s s (if that transaction does not end, end it: "
                    "SELECT pg_terminate_backend(pid))", self.job_id, self._lock_wait_problem(),
                    again, LOCK_RETRY_SECONDS)
        if not self.heartbeat():
            raise LeaseLost("heartbeat refused") from exc

    def call(self, func: Callable[[db.Connection], Any]) -> Any:
        with self.lock:
            delay = 0.2
            while True:
                try:
                    return func(self._connection())
                except (db.Error, PgjobsError) as exc:
                    if db.lock_wait_timed_out(exc):
                        # Another transaction holds the job's row (a client's
                        # pause or cancel left open) or its table (an ALTER
                        # TABLE: an export's key walk reads it): the job is
                        # left to the next claim, and this worker goes on to
                        # other jobs. The SQL side says which, and who holds it.
                        raise LeaseLost(f"{self._lock_wait_problem()}; "
                                        "left for a later claim") from exc
                    if not connection_lost(exc):
                        raise
                    self.close()
                    observe.count("errors", kind="database")
                    if time.monotonic() - self.last_ok > self.lease:
                        raise LeaseLost("lost the database for longer than the lease") from exc
                    observe.count("reconnects")
                    log.warning("job %s: database connection lost (%s); retrying",
                                self.job_id, str(exc).strip().splitlines()[0] if str(exc) else exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def heartbeat(self, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = bool(self.call(lambda c: db.heartbeat(c, self.job_id, self.worker, done,
                                                   checkpoint)))
        if ok:
            self.last_ok = time.monotonic()
        return ok

    def keepalive(self) -> None:
        if time.monotonic() - self.last_ok > self.lease / 3 and not self.heartbeat():
            raise LeaseLost("heartbeat refused")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if conn is self.borrowed:
            self.borrowed = None
            if not (conn.closed or conn.broken):
                # The caller's: left open, its own lock timeout back.
                with contextlib.suppress(Exception):
                    conn.execute(queries.SET_LOCK_TIMEOUT,
                                 {"timeout": self._borrowed_lock_timeout or "0"})
                return
        with contextlib.suppress(Exception):  # closing a broken connection
            conn.close()


class _Part:
    """The part being filled: chunk bytes as they come, or (gzip) their compressed
    form, one gzip member per part. Its size is counted in output bytes, so that
    parts meet part_size (and S3's 5 MiB minimum) whatever the compression."""

    def __init__(self, gzip: bool):
        self.data = bytearray()
        self._raw = 0  # gzip only: without, the raw bytes are the part's bytes
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        self._stage = bytearray()  # rows not yet compressed (gzip only)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def plain(self) -> bool:
        """Not compressed: a row's bytes go into ``data`` as they are (and
        ``data.extend`` may take them without this class: raw is len(data))."""
        return self._compressor is None

    @property
    def raw(self) -> int:
        """Bytes of COPY output added (before compression)."""
        return len(self.data) if self._compressor is None else self._raw

    def add(self, row: bytes | bytearray | memoryview) -> None:
        """One COPY row. Compression runs on batches of rows (_STAGE bytes and
        each chunk's end, see flush): the batches are a function of the data,
        so are the compressed bytes."""
        if self._compressor is None:
            self.data += row
            return
        self._raw += len(row)
        self._stage += row
        if len(self._stage) >= _STAGE:
            self.flush()

    def flush(self) -> None:
        """Compress the staged rows (at each chunk's end)."""
        if self._compressor is not None and self._stage:
            self.data += self._compressor.compress(self._stage)
            self._stage.clear()

    def mark(self) -> tuple[int, int, Any]:
        """Where the current chunk starts (call after flush), for rollback."""
        return (len(self.data), self.raw,
                self._compressor.copy() if self._compressor is not None else None)

    def rollback(self, mark: tuple[int, int, Any]) -> None:
        """Forget everything added since mark: the chunk is read again."""
        del self.data[mark[0]:]
        self._raw = mark[1]
        self._stage.clear()
        if mark[2] is not None:
            self._compressor = mark[2].copy()

    def close(self) -> bytearray:
        self.flush()
        if self._compressor is not None:
            # The gzip trailer; mtime 0 in the header: deterministic bytes.
            self.data += self._compressor.flush()
        return self.data


def _next_limit(limit: int, chunk_rows: int, chunk_bytes: int, rows: int,
                output: int) -> int:
    """The keys the next chunk asks for, after a chunk of ``rows`` rows gave
    ``output`` bytes: as many as fill nine tenths of chunk_bytes at this chunk's
    bytes per row, at most twice this limit and never more than chunk_rows.
    A pure function of the data, so a resumed export (which starts from the
    checkpointed limit) cuts the same chunks, and one chunk of wide rows does
    not shrink every later chunk: each costs a round trip and a keyset bound,
    so a limit that stayed small (as it did) costs a tenth of an export's time."""
    if limit >= chunk_rows or rows < 1 or output < 1:
        return limit
    fits = rows * chunk_bytes * 9 // (10 * output)
    return max(limit, min(chunk_rows, 2 * limit, fits))


def _first_limit(chunk_rows: int, chunk_bytes: int) -> int:
    """The keys the first chunk of an export asks for: as many as fill nine tenths
    of chunk_bytes at FIRST_ROW_BYTES a row, at most chunk_rows. Later chunks
    follow the rows' measured size (:func:`_next_limit`: narrower rows double it
    chunk after chunk, up to chunk_rows; wider ones overflow and are read again
    with fewer keys, as any chunk would). A function of chunk_rows and
    chunk_bytes only, so every start of an export cuts the same chunks."""
    return max(1, min(chunk_rows, chunk_bytes * 9 // (10 * FIRST_ROW_BYTES)))


class _Ahead:
    """The next chunk's keyset bound, walked on the job's control connection while
    the current chunk streams on the data connection: the walk (an index-only scan
    of as many keys as the chunk has) then runs on a second backend beside the
    COPY, instead of before it in the chunk's transaction. The bound is the same
    function of the data as one walked in the chunk (``limit`` keys after
    ``after``), so the chunks, parts and bytes do not change; a bound that does not
    come (an error, another limit) only means the chunk walks its own."""

    def __init__(self, walk: Callable[[str, int], str | None], stop: threading.Event):
        self._walk = walk
        self._stop = stop
        self._key: tuple[str, int] | None = None
        self._done: threading.Event | None = None
        self._box: list[str | None] = []
        # One thread walks every bound of the export, handed each walk through a
        # queue: a thread started per chunk made the reader wait for it to start
        # (Thread.start hands the GIL over and back) before its COPY, 5-10 ms a
        # chunk, 2-4% of an export of 1M rows in 24 chunks.
        self._walks: queue.SimpleQueue[
            tuple[str, int, list[str | None], threading.Event] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, after: str, limit: int) -> None:
        """Walk ``limit`` keys after ``after`` in the background."""
        box: list[str | None] = []
        done = threading.Event()
        self._key, self._box, self._done = (after, limit), box, done
        if self._thread is None or not self._thread.is_alive():
            self._walks = queue.SimpleQueue()  # a dead thread's queue: nobody serves it
            self._thread = threading.Thread(target=self._serve, args=(self._walks,),
                                            name="pgjobs-bound", daemon=True)
            self._thread.start()
        self._walks.put((after, limit, box, done))

    def _serve(self, walks: queue.SimpleQueue[
            tuple[str, int, list[str | None], threading.Event] | None]) -> None:
        """The walking thread: each walk handed to it, until wait() ends it."""
        while (walk := walks.get()) is not None:
            after, limit, box, done = walk
            # Whatever a walk raises, the chunk then walks its own bound, and the
            # thread stays to serve the walks after it.
            with contextlib.suppress(BaseException):
                box.append(self._walk(after, limit))
            done.set()

    def walking(self, after: str, limit: int) -> bool:
        """Whether the walk last started is of ``limit`` keys after ``after``."""
        return self._key == (after, limit)

    def take(self, after: str | None, limit: int) -> str | None:
        """The ``limit``-th key after ``after`` when a walk from there is ahead (or
        None: the chunk walks its bound itself). A walk of fewer keys is
        continued from where it stopped: only the difference is walked now."""
        key, done, box, thread = self._key, self._done, self._box, self._thread
        self._key, self._done = None, None
        if key is None or done is None or after is None or key[0] != after:
            return None
        while not done.wait(timeout=0.2):  # a few ms: it ran beside the previous chunk
            if self._stop.is_set() or thread is None or not thread.is_alive():
                return None
        ahead = key[1]
        if not box or box[0] is None or limit < ahead:
            return None
        if limit == ahead:
            return box[0]
        try:
            return self._walk(box[0], limit - ahead)
        except Exception:  # noqa: BLE001 - the chunk walks its own bound
            return None

    def wait(self) -> None:
        """Let a walk still running end (it uses the control connection), and the
        walking thread with it; nothing walked before is taken after this."""
        self._key, self._done = None, None
        if self._thread is not None:
            self._walks.put(None)
            self._thread.join()
            self._thread = None


class _Uploader(threading.Thread):
    """Writes and checkpoints parts while the reader reads the next ones. At most
    one part waits in the queue: memory stays at a few parts.

    It never outlives the stream that started it (:meth:`abandon`, called when
    the stream ends whichever way): a part in flight when the reader gives up
    (a cancel, a lost lease, an error) is let land, but neither retried nor
    checkpointed, and the thread has ended before the exporter records the
    outcome and removes the upload, so no part is sent after the abort or the
    unlink that removes the upload, and no heartbeat reopens the control
    connection after the attempt closed it."""

    def __init__(self, exporter: Exporter):
        super().__init__(name=f"pgjobs-upload-{exporter.job_id}", daemon=True)
        self.exporter = exporter
        self.parts: queue.Queue[tuple[bytearray, dict[str, Any]] | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.abandoned = threading.Event()
        # Parts handed over (by the reader) and written and checkpointed (by
        # this thread), for busy(): each counter has one writer.
        self.handed = 0
        self.finished = 0

    def busy(self) -> bool:
        """Whether a part waits behind one being written (or checkpointed): a
        put now waits for storage. Not when the one part handed over is queued
        and this thread has not taken it yet (it has nothing else to do, it
        takes it as soon as it runs). The reader alone hands parts over, so
        once not busy the writer stays so until the reader's next put."""
        return self.handed - self.finished >= 2

    def run(self) -> None:
        ex = self.exporter
        try:
            while True:
                item = self.parts.get()
                if item is None or self.abandoned.is_set():
                    return
                data, mark = item
                if ex.recording is not None:
                    ex.recording.wait()  # the upload is checkpointed before its parts
                assert ex.upload is not None
                sha256 = ex.storage_retry(functools.partial(ex.upload.write_part, data),
                                          f"part {ex.state['parts'] + 1}",
                                          cancel=self.abandoned)
                if self.abandoned.is_set():
                    return  # the reader gave up: no checkpoint, no heartbeat
                if ex.delays.get("uploaded"):  # a test kills the worker here
                    time.sleep(ex.delays["uploaded"])
                # Hashed once: by the upload on the way when it does (S3 signs the
                # part with that hash), else here.
                digest = [len(data), sha256 or hashlib.sha256(data).hexdigest()]
                observe.uploaded(len(data))
                # What was streamed, checkpointed with the part: a resume checks what
                # it inherits, and a read-back what is stored, against these.
                ex.state["digests"].append(digest)
                ex.state["parts"] += 1
                ex.state["bytes"] += len(data)
                ex.state["cursor"] = mark["cursor"]
                ex.state["rows"] = mark["rows"]
                ex.state["limit"] = mark["limit"]
                ex.state["upload"] = ex.upload.state()
                ex.state["eof"] = mark["eof"]
                if not ex.control.heartbeat(done=mark["rows"], checkpoint=ex.checkpoint()):
                    raise LeaseLost("heartbeat refused")
                if ex.delays.get("part"):
                    time.sleep(ex.delays["part"])
                self.finished += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            self.error = exc
            # Unblock a reader waiting on a full queue.
            while True:
                try:
                    self.parts.get_nowait()
                except queue.Empty:
                    break

    def put(self, raw: bytearray, mark: dict[str, Any]) -> None:
        while True:
            self.check()
            try:
                self.parts.put((raw, mark), timeout=0.2)
                self.handed += 1
                return
            except queue.Full:
                self.exporter.control.keepalive()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every queued part to be written and checkpointed."""
        while self.is_alive():
            try:
                self.parts.put(None, timeout=0.2)
                break
            except queue.Full:
                self.check()
                self.exporter.control.keepalive()
        while self.is_alive():
            self.join(timeout=0.2)
            if self.is_alive():
                self.exporter.control.keepalive()
        self.check()

    def abandon(self) -> None:
        """End the thread without writing what is queued, and wait for it: a part
        in flight lands (a request cannot be taken back halfway) but is neither
        retried nor checkpointed. Nothing when the thread has ended already."""
        self.abandoned.set()
        with contextlib.suppress(queue.Empty):
            self.parts.get_nowait()
        with contextlib.suppress(queue.Full):
            self.parts.put_nowait(None)
        if self.is_alive():
            self.join()


class _Recording(threading.Thread):
    """A new upload's first checkpoint, taken as soon as the store has made it
    (native S3: its CreateMultipartUpload answered) while the reader reads the
    first chunk: the upload is in the checkpoint before any part is written, as
    when it was made and checkpointed before the first chunk (a worker killed
    after that leaves an upload a cancel aborts at once). :meth:`wait` raises
    what failed (the create's storage error, a refused heartbeat).
    :attr:`recorded` is whether the checkpoint now names the upload: a
    heartbeat refused (the job paused or canceled, or the lease lost, while
    the create was in flight) leaves an upload no record names, which the
    attempt aborts as it ends (:meth:`Exporter._abort_unrecorded`)."""

    def __init__(self, exporter: Exporter):
        super().__init__(name=f"pgjobs-record-{exporter.job_id}", daemon=True)
        self.exporter = exporter
        self.upload = exporter.upload
        self.recorded = False
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        ex = self.exporter
        try:
            assert self.upload is not None
            ex.state["upload"] = self.upload.state()  # waits for the create
            if not ex.control.heartbeat(checkpoint=ex.checkpoint()):
                raise LeaseLost("heartbeat refused")
            self.recorded = True
        except BaseException as exc:  # noqa: BLE001 - raised by wait() and check()
            self.error = exc

    def wait(self) -> None:
        self.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class Exporter:
    """Runs one claimed export job to its end (or until stopped or fenced off)."""

    def __init__(self, dsn: str, job_id: int, worker: str, storage_uri: str, *,
                 stop: threading.Event | None = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 after: threading.Thread | None = None,
                 max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
                 max_part_size: int = DEFAULT_MAX_PART_SIZE,
                 storage_retry: float = DEFAULT_STORAGE_RETRY,
                 reads: standby.ReadConfig | None = None,
                 control: db.Connection | None = None):
        """``worker`` is the claim's identity, the ``worker`` column of the row the
        claim returned (name#token): every heartbeat, complete, fail and release is
        fenced on it. ``after``: a thread of this process still running an earlier,
        fenced-off attempt of the job; this one starts when it has ended.
        ``reads``: read the rows from a standby (``--read-dsn``, poller/standby.py).
        ``control``: an idle connection of the caller's (the one it submitted and
        claimed on) to use as the control connection until it is lost; it is
        left open, and the caller must not use it until :meth:`run` returns."""
        self.dsn = dsn
        self.after = after
        self.max_chunk_rows = max(1, max_chunk_rows)
        self.max_part_size = max(1024, max_part_size)
        self.storage_retry_seconds = max(0.0, storage_retry)
        self.job_id = job_id
        self.worker = worker
        self.storage_uri = storage_uri
        # Roots this attempt trusts (storage.trust_root), released when it ends.
        self.roots: list[str | None] = []
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.delays = _delays()
        self.upload: storage.Upload | None = None
        self.recording: _Recording | None = None  # a new upload's first checkpoint
        # The part digests this attempt read the finished object back against (None:
        # not read back): _verify_stored does not read it a second time.
        self.read_back: list[Any] | None = None
        # The object at the key is the job's: this attempt's own write made it
        # visible, or it reads back as exactly what the job streamed (an earlier
        # attempt's). Only then may a failed verification remove it.
        self.owned = False
        self.state: dict[str, Any] = {}
        self.control = _Control(dsn, job_id, worker, lease=30.0, borrowed=control)
        self.read_config = reads
        self.reads: standby.Reads | None = None
        self.until: str | None = None  # the last key of a part (parallel exports)
        self.ahead: _Ahead | None = None  # bounds walked ahead (reads from the primary)
        # The next chunk's transaction, begun with the previous chunk's COPY
        # (db.copy_then_begin): its cursor, limit, statement's row and connection.
        self.pending: tuple[str, int, dict[str, Any], db.Connection] | None = None
        # The bound walked ahead for a chunk whose pending transaction was rolled
        # back (_end_pending): (its cursor, its limit, the bound), used when the
        # chunk begins anew.
        self.walked: tuple[str, int, str | None] | None = None
        # Whether the last chunk left the limit as it was (_next_limit): only
        # then is the next chunk begun with its COPY, since a chunk begun for a
        # limit its predecessor's rows then change is rolled back and its
        # statement run twice (chunks still growing toward chunk_bytes).
        self.settled = False
        # A part cut while the writer was busy and a chunk begun with the COPY
        # (self.pending): put once that chunk has been read (_stream; one part,
        # at most part_size + chunk_bytes, beside the next part's first chunk).
        self.held: tuple[bytearray, dict[str, Any]] | None = None

    # --- the job ----------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the claimed job (a part, in PartExporter) to its end. Every way it
        can end goes through here: fenced off, stopped, or failed."""
        try:
            try:
                return self._start()
            finally:
                # Before the attempt records its outcome: no checkpoint of the
                # upload lands after it.
                if self.recording is not None:
                    self.recording.join()
        except LeaseLost as exc:
            return self._after_lost(str(exc))
        except Stopped:
            return self._release()
        except BaseException as exc:
            return self._fail(exc)
        finally:
            self._abort_unrecorded()
            self.control.close()
            if self.reads is not None:
                self.reads.close()
            while self.roots:
                storage.release_root(self.roots.pop())

    def _abort_unrecorded(self) -> None:
        """An upload no checkpoint names when the attempt ends is aborted now (its
        create awaited): no later owner can continue it, and the stale sweep
        spares it while the job lives. Native S3: one still fresh (created
        beside the first chunk, the attempt over before :class:`_Recording`
        awaited it), or one whose recording heartbeat was refused (the job
        paused by a heartbeat of the reader's while the create was in flight:
        it was parked with the checkpoint of before the upload)."""
        upload = self.upload
        recording = self.recording
        unrecorded = recording is not None and recording.upload is upload \
            and not recording.recorded
        if upload is not None and (upload.fresh() or unrecorded):
            with contextlib.suppress(Exception):
                upload.cleanup()

    def _start(self) -> Outcome:
        self._wait_for_previous_attempt()
        job = self.control.call(lambda c: db.one(c, queries.EXPORT_JOB, {"id": self.job_id}))
        self.control.lease = float(job["lease_seconds"] or 30.0)
        self.job = job
        self.settings = Settings.of(job["payload"])
        self.format = self.settings.format
        self.gzip = self.settings.gzip
        self._grain(job["checkpoint"] or {})
        if self.settings.parallel > 1:
            from pgjobs.poller import parallel

            return parallel.run(self)
        return self._run()

    def _wait_for_previous_attempt(self) -> None:
        """Until the earlier attempt of this process (fenced off: the job has a new
        identity now) has stopped; keep this claim's lease meanwhile."""
        while self.after is not None and self.after.is_alive():
            if self.stop.is_set():
                raise Stopped()
            self.after.join(timeout=0.2)
            self.control.keepalive()

    def _grain(self, ck: dict[str, Any]) -> None:
        """The effective chunk_rows, part_size, chunk_bytes and current chunk limit:
        those a checkpoint recorded (the bytes of a resumed export must not
        depend on this worker's settings), else the job's clamped to this
        worker's maxima. A checkpoint written before chunk_bytes existed holds
        unclamped values: they are clamped too (rows and bytes stay the same;
        gzip member boundaries of the remaining parts may differ)."""
        if ck.get("v") == CHECKPOINT_VERSION and ck.get("chunk_bytes"):
            self.chunk_rows = int(ck["chunk_rows"])
            self.part_size = int(ck["part_size"])
            self.chunk_bytes = int(ck["chunk_bytes"])
            self.limit = int(ck.get("limit") or self.chunk_rows)
            return
        self.chunk_rows = min(self.settings.chunk_rows, self.max_chunk_rows)
        self.part_size = min(self.settings.part_size, self.max_part_size)
        ceiling = MAX_PARQUET_CHUNK_BYTES if self.format == "parquet" else MAX_CHUNK_BYTES
        self.chunk_bytes = min(max(self.part_size, MIN_CHUNK_BYTES), ceiling)
        self.limit = _first_limit(self.chunk_rows, self.chunk_bytes)

    def _run(self) -> Outcome:
        if self.format == "parquet":  # typed files under a folder: its own writer
            from pgjobs.poller.parquet import ParquetExport

            return ParquetExport(self).run()
        ck = self.job["checkpoint"] or {}
        if ck.get("v") != CHECKPOINT_VERSION:
            ck = {}
        prefix = ck.get("prefix") or self.job["payload"].get("destination") or self.storage_uri
        if ck.get("uri"):
            uri = ck["uri"]
        else:
            key = object_key(self.job["target"], self.job["scope"], self.job_id, self.format,
                             self.gzip)
            uri = storage.object_location(prefix, key).uri
        self._check_allowed(prefix, uri)
        self.check_unclaimed(uri)
        self.prefix = storage.parse(prefix).uri
        self.location = storage.parse(uri)
        self.staging = self._staging_path(prefix)
        self.token = f"a{self.job['attempts']}-{os.urandom(4).hex()}"
        self.state = {"cursor": ck.get("cursor"), "rows": int(ck.get("rows", 0)),
                      "bytes": int(ck.get("bytes", 0)), "parts": int(ck.get("parts", 0)),
                      "upload": ck.get("upload"), "phase": ck.get("phase", "streaming"),
                      "eof": bool(ck.get("eof")), "limit": self.limit,
                      "digests": [list(d) for d in ck.get("digests") or []],
                      # Which attempt started where: for diagnosis (and the tests).
                      "history": list(ck.get("history", []))[-20:]}
        if ck.get("sha256"):
            # Checkpointed once the object was written: what it must read back as.
            self.state["sha256"] = str(ck["sha256"])
        if isinstance(ck.get("created"), dict):
            # The object at the key is the job's (its own conditional write made it).
            self.state["created"] = dict(ck["created"])
        try:
            self._check_digests()
            self.upload = storage.resume_upload(self.location, self.staging, self.token,
                                                ck.get("upload"), part_size=self.part_size,
                                                digests=self.state["digests"],
                                                record=self._record_opening,
                                                fence=self._fence, prefix_digests=True)
        except CannotResume as exc:
            if self.state["phase"] == "finalizing":
                done = self._already_visible()
                if done is not None:
                    return self._complete(*done)
                self._remove_if_created()
            log.warning("job %s: cannot resume (%s); starting over", self.job_id, exc)
            self._start_over()
        assert self.upload is not None  # resumed above, or begun again by _start_over
        if self.upload.fresh() and (self.recording is None
                                    or self.recording.upload is not self.upload):
            # Native S3: its CreateMultipartUpload is in flight; the first chunk
            # is read meanwhile, and the upload is checkpointed as soon as it is
            # made, before any part is written (_Uploader waits for it).
            self.recording = _Recording(self)
        elif self.state["upload"] != self.upload.state():
            # The upload moved (file://: the prefix is now in this owner's temporary
            # file, the previous one removed): checkpoint where it is before anything
            # else can fail, or the next owner finds nothing to continue.
            self.state["upload"] = self.upload.state()
            if not self.control.heartbeat(checkpoint=self.checkpoint()):
                raise LeaseLost("heartbeat refused")
        self.state["history"].append({"token": self.token, "part": self.state["parts"],
                                      "phase": self.state["phase"]})
        restarts = 0
        while True:
            try:
                if self.state["phase"] != "finalizing" and not self.state["eof"]:
                    self._stream()
                return self._finalize()
            except UploadLost as exc:
                # Aborted by a lifecycle rule or by hand: nothing of it can be kept,
                # but this attempt can write it again at once.
                restarts += 1
                if restarts > MAX_UPLOAD_RESTARTS:
                    # Its words quoted (a storage error's one line inside it
                    # loses its SQLSTATE and hint): this error names one.
                    raise StorageError(f"cannot write {self.location.uri}: {words(exc)} "
                                       f"({MAX_UPLOAD_RESTARTS} times in one attempt)",
                                       retryable=True) from exc
                log.warning("job %s: %s while writing %s; starting the upload over "
                            "(restart %s of %s in this attempt)", self.job_id, exc,
                            self.location.uri, restarts, MAX_UPLOAD_RESTARTS)
                self._start_over()
                self.state["history"].append({"token": self.token, "part": 0,
                                              "phase": "restarted"})

    def _staging_path(self, prefix: str) -> str:
        """Where this upload stages its parts (object stores): the job's folder."""
        return storage.staging_path(prefix, self.job_id)

    @observe.traced("pgjobs.upload", args=("what",))
    def storage_retry(self, call: Callable[[], T], what: str, *,
                      cancel: threading.Event | None = None) -> T:
        """``call`` retried while storage fails transiently (network errors, 5xx,
        throttling; botocore has already retried a few times inside), with
        exponential backoff up to RETRY_BACKOFF_MAX, for at most
        ``--storage-retry`` seconds, renewing the lease meanwhile: a long outage
        keeps the parts already written instead of spending attempts. A permanent
        error, a stop request, ``cancel`` (the caller gave up: no more tries and
        no lease renewed for it) or a lost lease ends it at once."""
        deadline = time.monotonic() + self.storage_retry_seconds
        delay = 1.0
        while True:
            try:
                return call()
            except StorageError as exc:
                observe.count("errors", kind="storage")
                left = deadline - time.monotonic()
                if not exc.retryable or left <= 0:
                    raise
                wait = min(delay, left)
                log.warning("job %s: storage failed writing %s (%s); retrying in %.0fs "
                            "(for up to %.0fs more)", self.job_id, what, exc, wait, left)
                end = time.monotonic() + wait
                while time.monotonic() < end:
                    if self.stop.is_set() or (cancel is not None and cancel.is_set()):
                        raise Stopped() from exc
                    self.control.keepalive()
                    time.sleep(min(0.2, max(0.0, end - time.monotonic())))
                delay = min(delay * 2, RETRY_BACKOFF_MAX)

    def _check_digests(self) -> None:
        """A checkpoint must carry one digest per part written (one written before
        digests existed does not): without them nothing it inherits can be
        checked, so the export starts over."""
        digests = self.state["digests"]
        if (len(digests) != self.state["parts"]
                or sum(int(d[0]) for d in digests) != self.state["bytes"]):
            raise CannotResume(f"the checkpoint has {len(digests)} part digests for "
                               f"{self.state['parts']} parts")

    def check_unclaimed(self, uri: str) -> None:
        """The key a job chooses the first time (its checkpoint names none yet)
        must hold nothing: every object there was written by an earlier attempt
        of this job only once the checkpoint named the key. An object there
        already (a Parquet export's first file: ``uri`` names it) is another's:
        a second pgjobs database writing to the same storage (staging beside
        production, a database restored from a backup beside the one it came
        from) numbers its jobs alike, and its job of this id names this key.
        Written over, it no longer is what that job's result (sha256, bytes)
        promises, and pruning either job deletes the other's. The job fails
        for good before anything is written."""
        if (self.job["checkpoint"] or {}).get("uri"):
            return
        if storage.taken(uri):  # (never memory://: storage.taken)
            raise self._taken(uri)

    def _taken(self, uri: str) -> StorageError:
        """The job fails for good, 42710: ``uri`` holds an object no attempt of
        this job wrote (found by the first look, or by the conditional final
        write: created there after that look)."""
        return StorageError(
            f"refusing to write {uri}: an object is there that no attempt of job "
            f"{self.job_id} wrote (another pgjobs database writing to the same "
            "storage numbers its jobs alike)", retryable=False, sqlstate="42710",
            hint="give each database's exports a folder of their own (the worker's "
                 "--storage, or the export's \"destination\"); or move the object away "
                 f"and run the job again (pgjobs.retry({self.job_id}))")

    def _check_allowed(self, prefix: str, uri: str) -> None:
        """Write only under this worker's own storage or a prefix of the allow-list
        (a per-tenant one: the folder of the job's scope), whatever the job row says
        now (it may have been changed after the submit, or the prefix disallowed
        since): nothing is created anywhere else."""
        if prefix == self.storage_uri or storage.within(prefix, self.storage_uri):
            allowed = True
            # The operator's folder: links at or above it followed.
            self.roots.append(storage.trust_root(self.storage_uri))
        else:
            # The prefix that admitted it (one query, as the yes/no was): a file://
            # path's trusted root, links at or above it followed (storage.open_folder).
            root = self.control.call(
                lambda c: db.scalar(c, queries.STORAGE_ROOT,
                                    {"uri": prefix, "scope": self.job["scope"]}))
            allowed = root is not None
            if allowed:
                self.roots.append(storage.trust_root(str(root)))
        if not allowed or not storage.within(uri, prefix):
            raise StorageError(
                f"refusing to write {uri}: outside this worker's storage "
                f"({self.storage_uri}) and the storage allow-list", retryable=False,
                hint="an administrator allows a prefix with pgjobs.allow_storage")

    def _start_over(self) -> None:
        # The discard aborts the key's uploads its state does not name (it
        # recorded `opening`): only while the job is still this attempt's. A
        # stale attempt (its upload aborted by the next owner's resume, so
        # UploadLost) does not know that owner's upload, which it would abort.
        storage.fenced(self._fence, lambda: storage.discard_upload(
            self.location, self.state.get("upload"), self._fence))
        self.limit = _first_limit(self.chunk_rows, self.chunk_bytes)
        self.state = {"cursor": None, "rows": 0, "bytes": 0, "parts": 0, "upload": None,
                      "phase": "streaming", "eof": False, "limit": self.limit, "digests": [],
                      "history": self.state.get("history", [])}
        if self.recording is not None:
            self.recording.join()  # the upload it recorded is discarded above
        self.upload = storage.resume_upload(self.location, self.staging, self.token, None,
                                            part_size=self.part_size,
                                            digests=self.state["digests"],
                                            record=self._record_opening, fence=self._fence,
                                            prefix_digests=True)
        if not self.control.heartbeat(done=0, checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        if self.upload.fresh():
            # Native S3, the create in flight: recorded before any part, as in _start.
            self.recording = _Recording(self)

    def _fence(self) -> None:
        """Renew the lease, or raise LeaseLost: before (and after) every
        destructive storage action of this attempt (:func:`storage.fenced`):
        aborts of uploads at its key that it did not open itself (a stale
        attempt does not know its next owner's), deletes of the object and
        of what the job's next owner continues (its upload, staged parts,
        files). No checkpoint: it may run on an upload's thread, while the
        cursor is ahead of what the upload holds."""
        if not self.control.heartbeat():
            raise LeaseLost("heartbeat refused")

    def _record_opening(self, opening: dict[str, Any]) -> None:
        """Checkpoint that a native S3 upload is being opened at the key, before
        its CreateMultipartUpload is sent: a worker killed after the create
        is answered and before :class:`_Recording` names the upload leaves a
        record whoever comes next aborts it by (its key, since then)."""
        self.state["upload"] = opening
        if not self.control.heartbeat(checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")

    def checkpoint(self) -> dict[str, Any]:
        return {"v": CHECKPOINT_VERSION, "uri": self.location.uri, "prefix": self.prefix,
                "format": self.format,
                "gzip": self.gzip, "chunk_rows": self.chunk_rows, "part_size": self.part_size,
                "chunk_bytes": self.chunk_bytes, **self.state, **self._read_state()}

    def _stream(self) -> None:
        cursor: str | None = self.state["cursor"]
        rows = int(self.state["rows"])
        sent_parts = int(self.state["parts"])  # counted here: the uploader lags behind
        raw_bytes = 0
        uploader = _Uploader(self)
        uploader.start()
        part = _Part(self.gzip)
        self.pending, self.walked, self.settled, self.held = None, None, False, None
        if self.read_config is None:
            # A standby's chunks wait for its replay; their bounds are walked
            # there, in the chunk (poller/standby.py).
            self.ahead = _Ahead(self._walk_bound, self.stop)
        try:
            while True:
                if self.stop.is_set():
                    raise Stopped()
                uploader.check()
                if self.recording is not None:
                    self.recording.check()
                self.control.keepalive()
                before = part.raw
                # With a part held aside, the chunk read is the one begun with
                # the last COPY, and it begins none: the reader waits next.
                count, cursor = self._read_chunk(cursor, part)
                raw_bytes += part.raw - before
                rows += count
                finished = cursor is None
                if self.on_progress is not None:
                    self.on_progress(rows, raw_bytes)
                if self.held is not None:
                    # The wait for the part writer: no chunk's transaction is open.
                    cut, self.held = self.held, None
                    uploader.put(*cut)
                # Part boundaries depend only on the data, chunk_rows and part_size:
                # a resumed export cuts the same parts (the same gzip members).
                if part.size >= self.part_size or (finished and (part.raw or sent_parts == 0)):
                    cut = (part.close(), {"cursor": cursor, "rows": rows,
                                          "eof": finished, "limit": self.limit})
                    sent_parts += 1
                    part = _Part(self.gzip)
                    if self.pending is not None and uploader.busy():
                        # The put would wait for storage while the next chunk,
                        # begun with this COPY, holds its snapshot: that chunk is
                        # read first (into the next part) and this part is put
                        # after it, so no begun chunk is rolled back, nor its
                        # statement run twice, for a writer wait.
                        self.held = cut
                    else:
                        uploader.put(*cut)
                if finished:
                    break
            uploader.close()
        except Stopped:
            # Whole parts already cut are written and checkpointed first.
            if self.held is not None:
                uploader.put(*self.held)
            uploader.close()
            raise
        finally:
            # However the stream ends (a cancel, a lost lease, an error of the
            # reader or the uploader), the uploader has ended before the attempt
            # records its outcome or removes the upload.
            uploader.abandon()
            self.held = None  # not handed over: the checkpoint before it stands
            self._end_pending()
            if self.ahead is not None:
                self.ahead.wait()
                self.ahead = None

    def _end_pending(self) -> None:
        """Roll back the next chunk's transaction begun with the last COPY, if
        any (the stream ended, or the chunk asks for another limit): the chunk
        begins anew."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.walked = (pending[0], pending[1], pending[2]["next_after"])
            db.end_chunk(pending[3])

    def _walk_bound(self, after: str, limit: int) -> str | None:
        """The ``limit``-th key of the scope after ``after`` (None: fewer are left),
        walked on the control connection, by the function that walks it in a chunk."""
        bound = self.control.call(lambda c: db.scalar(c, queries.EXPORT_CHUNK_BOUND, {
            "id": self.job_id, "after": after, "limit": limit, "until": self.until}))
        return None if bound is None else str(bound)

    @observe.traced("pgjobs.chunk", kind="export")
    def _read_chunk(self, cursor: str | None, part: _Part) -> tuple[int, str | None]:
        """Stream one keyset chunk of up to ``self.limit`` keys, read in its own
        REPEATABLE READ transaction, into part; return (rows, where the next chunk
        starts or None at the end). A chunk whose output passes chunk_bytes is
        rolled back and read again with fewer keys, and the next chunk asks for
        as many keys as fill chunk_bytes at this one's bytes per row
        (:func:`_next_limit`): memory holds at most about chunk_bytes of a chunk,
        whatever the rows weigh.
        After a lost connection the chunk is read again (while the lease may
        still hold). With a part held aside (``self.held``) the next chunk is
        not begun with this COPY: the reader waits for the part writer next
        (:meth:`_copy`)."""
        delay = 0.2
        start = part.mark()
        # Begun with the previous chunk's COPY (db.copy_then_begin) for this
        # cursor and limit: its statement has run, its row is here. For another
        # limit (the previous chunk's rows changed it): rolled back, begun anew.
        row = None
        if self.pending is not None and self.pending[:2] == (cursor, self.limit) \
                and self.pending[3] is self._reader().connection():
            row, self.pending = self.pending[2], None
        self._end_pending()
        walked, self.walked = self.walked, None
        ahead = None
        if row is None and walked is not None and walked[:2] == (cursor, self.limit):
            ahead = walked[2]  # the bound the rolled-back statement was given
        elif row is None and self.ahead is not None:
            ahead = self.ahead.take(cursor, self.limit)
        while True:
            taken = 0
            # Past this many raw bytes in the part, the chunk is too large (never
            # with one key per chunk). The sink runs once per row: it does no more.
            ceiling = start[1] + self.chunk_bytes if self.limit > 1 else sys.maxsize

            def plain_sink(data: memoryview, extend: Callable[[memoryview], None] =
                           part.data.extend, buffer: bytearray = part.data,
                           ceiling: int = ceiling) -> None:
                nonlocal taken
                taken += 1
                extend(data)
                if len(buffer) > ceiling:
                    raise _ChunkTooLarge(taken)

            def sink(data: memoryview, ceiling: int = ceiling) -> None:
                nonlocal taken
                taken += 1
                part.add(data)
                if part.raw > ceiling:
                    raise _ChunkTooLarge(taken)

            try:
                conn = self._reader().connection()
                try:
                    if row is None:
                        if self.ahead is not None and ahead is not None \
                                and not self.ahead.walking(ahead, self.limit):
                            # The bound after this chunk's, which its COPY may
                            # send with the next chunk's statement: walked
                            # beside this round trip, not after it.
                            self.ahead.start(ahead, self.limit)
                        # Two round trips: the BEGIN travels with the chunk's
                        # statement, the COMMIT with its COPY (pgjobs/queries.py,
                        # COPY_THEN_COMMIT).
                        row = db.begin_chunk(conn, queries.EXPORT_CHUNK_SQL, {
                            "id": self.job_id, "after": cursor, "limit": self.limit,
                            "until": self.until, "next": ahead,
                        })
                        if self.ahead is not None and row["next_after"] is not None \
                                and not self.ahead.walking(row["next_after"], self.limit):
                            self.ahead.start(row["next_after"], self.limit)
                    self._reader().note(conn, row["lsn"])
                    count = self._copy(conn, row, plain_sink if part.plain else sink,
                                       begin_next=self.held is None)
                except BaseException:
                    row = None
                    db.end_chunk(conn)
                    raise
                part.flush()
                following = _next_limit(self.limit, self.chunk_rows, self.chunk_bytes,
                                        count, part.raw - start[1])
                self.settled, self.limit = following == self.limit, following
                return count, row["next_after"]
            except _ChunkTooLarge as big:
                # The rows before the one that overflowed fit: read nine tenths of
                # that many keys from the same cursor (rows of like size then fit
                # with room to spare, instead of overflowing again at the edge).
                part.rollback(start)
                self._end_pending()
                self.settled = False
                ahead = None  # walked for the old limit: this chunk walks its own
                self.limit = max(1, min(self.limit - 1, (big.messages - 1) * 9 // 10))
                continue
            except db.Error as exc:
                part.rollback(start)
                ahead = None
                if db.lock_wait_timed_out(exc):
                    # Behind a lock on the table (an ALTER TABLE not yet
                    # committed): said, the lease kept, the chunk read again.
                    if self.stop.is_set():
                        raise Stopped() from exc
                    self.control.lock_waited(exc, "reading the chunk again")
                    self.stop.wait(LOCK_RETRY_SECONDS)
                    continue
                if self._reader().behind_the_claim(exc):
                    # A standby that has not replayed the claim's judgment of
                    # the typo guard: read again once it has (or elsewhere).
                    log.info("job %s: the standby is behind the claim; reading the chunk "
                             "again once it has replayed it", self.job_id)
                    continue
                if not (connection_lost(exc) or self._reader().recovery_conflict(exc)):
                    raise
                self._reader().lost()
                observe.count("errors", kind="database")
                if time.monotonic() - self.control.last_ok > self.control.lease:
                    raise LeaseLost("lost the database for longer than the lease") from exc
                if self.stop.is_set():
                    raise Stopped() from exc
                log.warning("job %s: %s while reading; reading the chunk again", self.job_id,
                            "a recovery conflict on the standby" if not connection_lost(exc)
                            else "database connection lost")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _copy(self, conn: db.Connection, row: dict[str, Any],
              sink: Callable[[memoryview], None], *, begin_next: bool = True) -> int:
        """The chunk's COPY, which commits its transaction; from the primary,
        when a chunk follows (``next_after``), with the next chunk's BEGIN and
        statement in the same query (db.copy_then_begin): the server runs the
        statement as soon as the COPY ends, and the next chunk sends its COPY
        at once, one round trip a chunk instead of two. The statement is sent
        for this chunk's limit with the bound walked ahead for it, and the walk
        of the bound after that starts now, beside this COPY; only once the
        limit has settled (the chunk before this one left it unchanged, or it
        is chunk_rows, which it never passes): while chunks grow toward
        chunk_bytes each would be begun twice. Nor when the reader waits for
        the part writer next (``begin_next`` false: this chunk was begun with
        the COPY before a part was held aside, :meth:`_stream`): no snapshot is
        held while it waits; the next chunk begins on its own, with the bound
        walked ahead for it. Its transaction is rolled back only when the next
        chunk asks for another limit (:func:`_next_limit` after this chunk's
        rows) or the stream ends (:meth:`_end_pending`), never for a wait."""
        after = row["next_after"]
        if self.ahead is None or after is None or not begin_next or not (
                self.settled or self.limit >= self.chunk_rows):
            return copy_out(conn, queries.COPY_THEN_COMMIT.format(copy=row["copy_sql"]), sink)
        bound = self.ahead.take(after, self.limit)
        if bound is not None:
            self.ahead.start(bound, self.limit)
        count, following = db.copy_then_begin(conn, row["copy_sql"], sink,
                                              queries.EXPORT_CHUNK_SQL, {
                                                  "id": self.job_id, "after": after,
                                                  "limit": self.limit, "until": self.until,
                                                  "next": bound})
        if following is None:
            db.end_chunk(conn)  # its statement failed: the next chunk runs it again itself
        else:
            self.pending = (after, self.limit, following, conn)
        return count

    def _reader(self) -> standby.Reads:
        """The data connection: the primary, or a standby that has replayed past
        the submit and every chunk read before (poller/standby.py)."""
        if self.reads is None:
            ck = self.job["checkpoint"] or {}
            self.reads = standby.Reads(self.dsn, self.read_config, self.job_id,
                                       position=ck.get("read_lsn"), counts=ck.get("reads"),
                                       control=self.control, stop=self.stop)
        return self.reads

    def _read_state(self) -> dict[str, Any]:
        """What the checkpoint keeps of the reads: the position the next chunk must
        see (its snapshot no older than any chunk's before), chunks per server."""
        if self.reads is None:
            return {}
        return {"read_lsn": self.reads.position, "reads": dict(self.reads.counts)}

    def _finalize(self) -> Outcome:
        assert self.upload is not None
        self.state["phase"] = "finalizing"
        if not self.control.heartbeat(done=self.state["rows"], checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        if self.delays.get("finalize"):
            time.sleep(self.delays["finalize"])
        upload = self.upload
        self.read_back = None
        try:
            if storage.taken(self.location.uri):
                # Every kind asks first (one that cannot write conditionally,
                # staged parts, GCS compose, Azure blocks, is then written only
                # where no object was when asked); file:// and S3 also refuse
                # atomically (KeyTaken from finish).
                raise KeyTaken(f"{self.location.uri} exists")
            size, sha256 = self.storage_retry(upload.finish, "the object")
            self.read_back = upload.checked
        except KeyTaken:
            # Never written over: accepted only as exactly what was streamed
            # (an earlier attempt of this job made it visible), else another's.
            done = self._holds_streamed()
            if done is None:
                raise self._taken(self.location.uri) from None
            size, sha256 = done
            self.read_back = self.state["digests"]
        except Mismatch as exc:
            # Staged parts (or a resumed S3 upload) are not what was streamed.
            self._corrupt(words(exc))
        except CannotResume as exc:
            done = self._already_visible()
            if done is None and isinstance(exc, UploadLost):
                raise
            if done is None:
                raise StorageError(f"cannot finish {self.location.uri}: {words(exc)}",
                                   retryable=True) from exc
            size, sha256 = done
            self.read_back = self.state["digests"]  # read back against them just now
        # Made visible by this upload's own write, or holding exactly the streamed
        # bytes (accepted above): the job's object.
        self.owned = True
        if size != self.state["bytes"] or sha256 != self.state.get("sha256", sha256):
            self._corrupt(f"the upload wrote {size} bytes (sha256 {sha256}), the checkpoint "
                          f"says {self.state['bytes']} (sha256 {self.state.get('sha256')})")
        # What was streamed, fenced: a stale attempt stops here. ``created``:
        # the object at the key is the job's (pgjobs.prune removes it only
        # then, and only while it holds these bytes).
        self.state["sha256"] = sha256
        self.state["created"] = {"bytes": size, "sha256": sha256}
        if not self.control.heartbeat(done=self.state["rows"], checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        self._verify_stored(size, sha256)
        return self._complete(size, sha256)

    def _verify_stored(self, size: int, sha256: str) -> None:
        """Read the stored object back (streamed) and check it, part by part,
        against the digests checkpointed as the parts were streamed; a mismatch
        never completes. Bytes equal to every streamed part are the streamed
        bytes, whose SHA-256 (``sha256``, computed while streaming from the same
        parts) is the result's: the read-back hashes each byte once, and where
        the upload sealed every part as it wrote it (``file://``, native S3:
        :attr:`~pgjobs.poller.upload.Upload.seals`), checks each part's keyed
        tag instead of hashing it with SHA-256 a second time.

        Not read a second time when this attempt has just read the object back
        against the very digests checkpointed (``read_back``: a resumed upload's
        ``finish``, which had to hash it, or an object found visible after a
        crash): a resumed export reads its object back once."""
        if self.read_back is not None and self.read_back == self.state["digests"]:
            return
        try:
            digests = self.state["digests"]
            hashes = self.upload.hashes if self.upload is not None else None
            seals = self.upload.seals if self.upload is not None else None
            if hashes is not None and len(hashes) != len(digests):
                hashes = None
            if hashes is not None or seals is not None:
                # The writer's hash before each part: prefix digests read back
                # in runs at once; and its keyed tag of each part as written,
                # checked instead of a second SHA-256 pass (storage.check_object).
                digests = storage.Streamed(digests, hashes, seals)
            stored_size = storage.check_object(self.location, digests)
        except Mismatch as exc:
            self._corrupt(f"the object is not what was streamed ({words(exc)})")
        except CannotResume as exc:
            self._corrupt(f"the object is gone after it was written ({words(exc)})")
        if stored_size != size:
            self._corrupt(f"it holds {stored_size} bytes, {size} (sha256 {sha256}) were written")

    def _corrupt(self, why: str) -> NoReturn:
        """The object at the key is not what this job streamed (a stale writer, a
        storage fault). Never complete: while this attempt still holds the lease,
        reset the checkpoint so the retry rewrites the object from scratch, remove
        the wrong object, and fail retryably (attempts bound the retries)."""
        message = f"{self.location.uri}: verification failed: {why}"
        log.warning("job %s: %s; the retry rewrites it from scratch", self.job_id, message)
        upload_state = self.state.get("upload")
        # Removed only when it is the job's: its own write made it visible (this
        # attempt's, or one the checkpoint records). Anything else at the key
        # (staged parts that did not match abort their put: nothing was written)
        # is another's, never deleted.
        mine = (self.owned or bool(self.upload is not None and self.upload.created)
                or isinstance(self.state.get("created"), dict))
        self.state = {"cursor": None, "rows": 0, "bytes": 0, "parts": 0, "upload": None,
                      "phase": "streaming", "eof": False, "digests": [],
                      "history": self.state.get("history", [])}
        if not self.control.heartbeat(done=0, checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        # Each removal fenced (before and after: one that hung past the lease
        # stops the attempt there), best effort otherwise.
        uri = self.location.uri
        if mine:
            storage.fenced(self._fence, lambda: storage.delete(uri, retries=False),
                           best_effort=True)
        # Staged parts of the upload: not resumed.
        storage.fenced(self._fence, lambda: storage.discard_upload(
            self.location, upload_state, self._fence), best_effort=True)
        raise StorageError(message, retryable=True)

    def _remove_if_created(self) -> None:
        """The object at the key, which no longer reads back as what was streamed,
        is removed when the checkpoint proves this job made it (``created``, or
        the ``sha256`` an earlier release checkpointed once its own write made the
        object visible): changed since, it is the job's all the same, and the
        attempt that starts over creates it again. Anything else at the key is
        never touched: the new attempt's conditional write finds it and the job
        fails for good (42710). Only while the job is still this attempt's
        (fenced before and after): the next owner may have written the object
        again by now."""
        if not (isinstance(self.state.get("created"), dict) or self.state.get("sha256")):
            return
        uri = self.location.uri
        storage.fenced(self._fence, lambda: storage.delete(uri, retries=False),
                       best_effort=True)  # best effort, as _corrupt's

    def _already_visible(self) -> tuple[int, str] | None:
        """After a crash between making the object visible and completing the job:
        the object is there and reads back, part by part, as the digests that were
        checkpointed with each part (so before it could become visible): anything
        else, even of the same size, is not accepted."""
        if self.state["phase"] != "finalizing" or not self.state["digests"]:
            return None
        try:
            if not storage.exists(self.location.uri):
                return None
        except StorageError:
            return None
        return self._holds_streamed()

    def _holds_streamed(self) -> tuple[int, str] | None:
        """(bytes, sha256) of the object at the key when it reads back, part by
        part, as the digests checkpointed as the parts were streamed (and as
        the checkpointed sha256, if any); else None."""
        try:
            self._check_digests()
            size, digest = storage.hash_object(self.location, self.state["digests"])
        except (CannotResume, StorageError):
            return None
        if size != self.state["bytes"] or digest != self.state.get("sha256", digest):
            return None
        return size, digest

    def _complete(self, size: int, sha256: str) -> Outcome:
        # uris as the parallel and parquet paths write it (API.md: every object)
        result = {"uri": self.location.uri, "uris": [self.location.uri],
                  "rows": self.state["rows"], "bytes": size,
                  "sha256": sha256, "format": self.format, "gzip": self.gzip,
                  "parts": self.state["parts"]}
        ok = self.control.call(lambda c: db.complete(c, self.job_id, self.worker, result))
        if not ok:
            job = self.control.call(lambda c: db.get_job(c, self.job_id))
            if not (job and job["status"] == "succeeded" and job["result"]
                    and job["result"].get("sha256") == sha256):
                # Fenced off: the new owner finishes from the same checkpoint (same
                # bytes); leave its staging alone.
                return Outcome(self.job_id, "lost", error="lease lost before completing")
        self._discard()  # staged parts, temporary files: the object is complete
        return Outcome(self.job_id, "succeeded", result=result)

    # --- endings ----------------------------------------------------------------

    def _status(self) -> str | None:
        try:
            job = self.control.call(lambda c: db.get_job(c, self.job_id))
        except (LeaseLost, PgjobsError, db.Error):
            return None
        return None if job is None else str(job["status"])

    def _after_lost(self, why: str) -> Outcome:
        status = self._status()
        if status == "canceled":
            self._canceled_end()
            return Outcome(self.job_id, "canceled", error="canceled")
        if status == "paused":
            # The heartbeat that refused parked the job with the checkpoint of the
            # last part written: keep the upload, pgjobs.resume continues it.
            log.info("job %s: paused", self.job_id)
            return Outcome(self.job_id, "paused")
        log.info("job %s: stopping: %s", self.job_id, why)
        return Outcome(self.job_id, "lost", error=why)

    def _release(self) -> Outcome:
        try:
            ok = self.control.call(lambda c: db.scalar(
                c, queries.EXPORT_RELEASE, {"id": self.job_id, "worker": self.worker}))
        except (LeaseLost, PgjobsError, db.Error) as exc:
            return Outcome(self.job_id, "lost", error=f"could not release: {exc}")
        if not ok:
            return self._after_lost("release refused")
        status = self._status()
        if status == "canceled":
            self._canceled_end()
            return Outcome(self.job_id, "canceled")
        return Outcome(self.job_id, "paused" if status == "paused" else "released")

    def _fail(self, exc: BaseException) -> Outcome:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return self._release()
        message = job_error(exc)  # one line, one SQLSTATE (pgjobs/errors.py)
        decision = _retryable(exc)
        if not isinstance(exc, (StorageError, db.Error, PgjobsError)):
            log.exception("job %s: unexpected error", self.job_id)
        try:
            ok, retryable = self.control.call(lambda c: db.fail_by_sqlstate(
                c, self.job_id, self.worker, message, decision, _sqlstate(exc)))
        except (LeaseLost, PgjobsError, db.Error) as err:
            return Outcome(self.job_id, "lost", error=f"{message} (could not record: {err})")
        if not ok:
            return self._after_lost(message)
        status = self._status()
        if status == "canceled":
            self._canceled_end()
        elif status == "failed" and not retryable:
            self._failed_end()
        if status in ("failed", "canceled", "paused"):
            # A job that ran out of attempts on transient errors keeps its upload
            # until it is pruned (the stale sweep counts it as active):
            # pgjobs.retry then resumes it. A permanent error, or a cancel,
            # leaves nothing; a retry of those starts over.
            return Outcome(self.job_id, status, error=message)
        return Outcome(self.job_id, "retrying", error=message)

    def _canceled_end(self) -> None:
        """The job was canceled: it leaves nothing, neither the upload's
        leftovers (:meth:`_discard`) nor what this attempt wrote and could not
        record (:meth:`_forget_object`). Every canceled end of an attempt, a
        whole export's or a part's, comes here. Each removal only while the
        job is still canceled (:meth:`_still_canceled`), all of them holding
        the row its next owner must change to continue what they remove
        (:meth:`_cleanup_hold`: the job's, a pgjobs.retry waits for it; a
        part's own, its next claim waits for it)."""
        try:
            with self._canceled_hold():
                self._discard(self._still_canceled)
                self._forget_object()
        except (LeaseLost, PgjobsError, db.Error) as exc:
            # The job was retried meanwhile (what is left is its next owner's),
            # or its row could not be held: left for the stale-upload sweep.
            log.info("job %s: cleanup left: %s", self.job_id, words(exc))

    def _failed_end(self) -> None:
        """The attempt failed for good (a permanent error): it leaves nothing of
        its upload (:meth:`_discard`), holding the job's row while it removes
        (:meth:`_cleanup_hold`): pgjobs.retry may queue the job as soon as the
        failure is recorded, and its next owner resumes the upload the
        checkpoint names. A retry that came first leaves the upload to that
        owner; one that comes after waits for the removal, and its owner
        starts over. A part's end comes here too (PartExporter._fail)."""
        try:
            with self._cleanup_hold("failed"):
                self._discard(self._still_held)
        except (LeaseLost, PgjobsError, db.Error) as exc:
            log.info("job %s: cleanup left: %s", self.job_id, words(exc))

    def _canceled_hold(self) -> contextlib.AbstractContextManager[None]:
        """:meth:`_cleanup_hold` of a canceled job's cleanup."""
        return self._cleanup_hold("canceled")

    @contextlib.contextmanager
    def _cleanup_hold(self, ended: str) -> Iterator[None]:
        """The cleanup of an attempt that ended ``ended`` (canceled, or failed
        for good), holding, on a connection of its own until the cleanup
        ends, the row a next owner must change to continue what it removes
        (:meth:`_hold_rows`): the job's (FOR SHARE), which pgjobs.retry
        updates. A fence's look at the status alone (:meth:`_still_canceled`)
        left a window between it and the removal, in which pgjobs.retry
        queued the job and its next owner found the object whole and
        succeeded with it, and the removal then took the succeeded job's
        object. A retry now waits for the cleanup and its next owner finds
        what the cleanup left. Raises LeaseLost, removing nothing, when the
        row is no longer as the attempt left it (retried already: what is
        there is the next owner's). Held once however the cleanup nests (a
        coordinator's parts' cleanup inside its own)."""
        if getattr(self, "_holding", False):
            yield
            return
        conn = db.connect(self.dsn, app=self.control.app)
        try:
            db.wait_for_job_rows_at_most(conn)
            with conn.transaction():
                if not self._hold_rows(conn, ended):
                    raise LeaseLost(f"the job is not {ended} any more (retried)")
                self._holding = True
                self._hold_conn: db.Connection | None = conn
                try:
                    yield
                finally:
                    self._holding = False
                    self._hold_conn = None
        finally:
            conn.close()

    def _still_held(self) -> None:
        """The fence of every removal under a cleanup's hold (:meth:`_cleanup_hold`),
        before and after each: its connection still answers, so its lock is
        still in force. A hold whose connection was lost (a restart, a
        terminated backend, the network) let a retry through, whose next
        owner resumes what the cleanup went on removing: LeaseLost, the rest
        left to that owner or the stale-upload sweep."""
        conn = getattr(self, "_hold_conn", None)
        if conn is None:
            return
        try:
            conn.execute(queries.SELECT_ONE)
        except db.Error as exc:
            raise LeaseLost("the cleanup's hold of the row was lost (its connection)") from exc

    def _hold_rows(self, conn: db.Connection, ended: str) -> bool:
        """Lock (FOR SHARE) the job's row while it is ``ended``: canceled, or
        failed by this attempt (its worker, which the failure keeps). Whether
        it was (:meth:`_cleanup_hold`)."""
        query = queries.HOLD_CANCELED_JOB if ended == "canceled" else queries.HOLD_FAILED_JOB
        return bool(db.rows(conn, query, {"id": self.job_id, "worker": self.worker}))

    def _forget_object(self) -> None:
        """A canceled export removes its object too, when this attempt may have
        written it: the cancel can land between the upload's finish (the object
        visible) and the heartbeat that records it (``created``), which is then
        refused, so no checkpoint names it (the next claim never comes, and
        pgjobs.prune removes only recorded objects). Called after the
        attempt's last write (:meth:`run` has ended the stream and the finish
        before it records the outcome), and only when the job is canceled: a
        succeeded job's object is never touched (a cancel requested after the
        record and before the complete does not stop it: the job succeeds), a
        paused one keeps everything to resume.
        Only the job's object goes: one this attempt made visible or accepted
        (``owned``, ``created``), or one that reads back as exactly the parts
        this attempt streamed (a finish whose answer was lost); anything else
        at the key is another's. Parquet files are the upload's
        (_Files.cleanup); a parallel export's joined object and its parts'
        objects are its coordinator's (parallel._forget_parts_if_canceled).
        Only while the job is still canceled (:meth:`_still_canceled`)."""
        if getattr(self, "location", None) is None or self.format == "parquet" \
                or self.state.get("parallel"):
            return
        uri = self.location.uri
        with contextlib.suppress(Exception):  # best effort, as the rest of the cleanup
            if self.owned or isinstance(self.state.get("created"), dict):
                storage.fenced(self._still_canceled, lambda: storage.delete(uri))
            elif self.state.get("phase") == "finalizing" and self.state.get("digests"):
                digests = self.state["digests"]
                storage.fenced(self._still_canceled,
                               lambda: storage.delete_streamed(uri, digests))

    def _still_canceled(self) -> None:
        """The fence of a canceled job's own cleanup, before and after each
        removal (:func:`storage.fenced`: each request sent once): the lease
        is gone, but pgjobs.retry may have queued the job again by now (its
        checkpoint kept), and its next owner resumes the upload this cleanup
        would remove, or finds the object whole and succeeds with it. Raises
        LeaseLost once the job is neither canceled nor being canceled (a
        part's end may come before its coordinator ends the job), or cannot
        be read: what is left then is the next owner's, or the stale sweep's;
        and once the cleanup's hold is lost (:meth:`_still_held`)."""
        self._still_held()
        try:
            job = self.control.call(lambda c: db.get_job(c, self.job_id))
        except (LeaseLost, PgjobsError, db.Error):
            job = None
        if job is None or not (job["status"] == "canceled" or (
                job["status"] == "running" and job["cancel_requested_at"] is not None)):
            raise LeaseLost("the job is not canceled any more (retried)")

    def _discard(self, fence: Callable[[], None] | None = None) -> None:
        """The job ended for good: remove the upload's leftovers (never the object).
        A parallel export's coordinator also removes its parts' writes when the
        job is canceled, however its attempt ended (poller/parallel.py).
        ``fence``: each removal only while it passes (:meth:`_still_canceled`)."""
        if self.state.get("parallel"):
            from pgjobs.poller import parallel

            with contextlib.suppress(Exception):
                parallel._forget_parts_if_canceled(self)
        if self.upload is not None:
            with contextlib.suppress(Exception):
                storage.fenced(fence, self.upload.cleanup)
        elif getattr(self, "location", None) is not None:
            with contextlib.suppress(Exception):
                storage.fenced(fence, lambda: storage.discard_upload(
                    self.location, self.state.get("upload"), fence))


def db_error(exc: db.Error) -> PgjobsError:
    from pgjobs.errors import from_psycopg

    return from_psycopg(exc)
