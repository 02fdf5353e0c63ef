"""The streaming importer: one import job, from object storage into PostgreSQL.

The database decides what a record becomes: ``pgjobs.import_prepare`` checks the
source's fields and returns the ``COPY ... FROM STDIN`` of the session's staging
table, ``pgjobs.import_batch`` moves a staged batch into the target and stores
the checkpoint. This module only moves bytes:

* the source is read from the committed position on (``storage.open_range``:
  a local file from that offset, an object store in ranged GETs), never whole;
* it is cut into batches of whole records: a CSV record ends at a newline
  outside quotes (the parity of ``"`` characters since the record began, which
  is how PostgreSQL's COPY finds the end of a CSV line too), a JSONL record at
  every newline;
* each batch is one transaction: ``COPY`` into the staging table, then
  ``import_batch`` (the INSERT ... SELECT, the rejects, and the checkpoint: the
  offset after the batch's last record and the number of lines read), fenced on
  the claim. A crash loses the uncommitted batch and its position alike: the
  next owner reads on from the last committed offset, so every record lands
  exactly once;
* gzip: a position inside a deflate stream cannot be resumed from, so the
  checkpoint holds the offset in the *decompressed* stream, and a resumed gzip
  import decompresses the source from its start, discarding what was committed
  (cheap next to loading it: about 1 s per 300 MB decompressed, no database
  work).

CSV records go to COPY as they are (PostgreSQL's CSV rules: an empty unquoted
field is NULL, ``""`` the empty string; quotes, delimiters and newlines inside
quotes). A record COPY refuses (wrong field count, invalid UTF-8, an unterminated
quote) is cut out of the batch and rejected with its line number; JSONL lines are
parsed here (invalid UTF-8 or JSON, a value that is not an object: rejected) and
staged as they are. Values that do not cast, constraint violations and
duplicates are found by ``import_batch``.

Batch size adapts to the job's ``batch_ms`` (default 1 s): the bytes of the next
batch scale with how long the last one took, within 64 KiB .. 64 MiB.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from pgjobs import db, queries
from pgjobs.errors import PgjobsError, job_error, words
from pgjobs.poller import observe, storage
from pgjobs.poller.export import (
    LOCK_RETRY_SECONDS,
    LeaseLost,
    Outcome,
    Stopped,
    _Control,
    _retryable,
    _sqlstate,
    connection_lost,
    object_key,
)
from pgjobs.poller.storage import StorageError

log = logging.getLogger("pgjobs.import")

CHECKPOINT_VERSION = 1
MIN_BATCH = 64 * 1024
MAX_BATCH = 64 * 1024 * 1024
FIRST_BATCH = 1024 * 1024
MAX_RECORD = 64 * 1024 * 1024
"""A record longer than this (an unterminated quote, most likely) fails the job."""
_BOM = b"\xef\xbb\xbf"
_COPY_LINE = re.compile(r"^COPY [^\s,\uff0c]+[,\uff0c][^\d\n]*(\d+)", re.MULTILINE)
"""The line number in COPY's CONTEXT, ``COPY pgjobs_import_stage, line 5[, column
f2: ...]``: the first number after the staging table's name, never the word
``line``, which follows the server's lc_messages (``Zeile 5``): read in English,
a translated server's bad record failed the whole import instead of being
rejected."""
_STAGE_COLUMN = re.compile(r'(?<!: )(["\u00bb\u201c\u201e\u00ab\u2018\u300c])f(\d+)'
                           r'(["\u00ab\u201d\u201c\u00bb\u2019\u300d])')
"""COPY names the staging table's columns (f1, f2, ...: import_prepare) in its
messages, quoted (``"f3"``; ``\u00bbf3\u00ab`` in German: the quotes follow the
server's lc_messages, as the word ``column`` does), never after a colon, where a
message quotes a value (``invalid input syntax for type integer: "f3"``); a
reject names the header's field instead."""


def _field_names(message: str, fields: list[str] | None) -> str:
    """COPY's message with each staging column ``"fN"`` named as the source
    names it, in the message's own quotes: ``column "age" (field 2)``."""
    if not fields:
        return message

    def name(match: re.Match[str]) -> str:
        n = int(match.group(2))
        if not 1 <= n <= len(fields):
            return match.group(0)
        return f"{match.group(1)}{fields[n - 1]}{match.group(3)} (field {n})"

    return _STAGE_COLUMN.sub(name, message)


def _testing() -> dict[str, float]:
    """Testing aids: ``PGJOBS_IMPORT_DELAYS="batch=0.2,staged=0.2,bytes=65536"`` sleeps
    after each committed batch / inside each batch's transaction after its COPY, and
    fixes the batch size, so that tests can kill a worker at a chosen point."""
    spec = os.environ.get("PGJOBS_IMPORT_DELAYS", "")
    values: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        with contextlib.suppress(ValueError):
            values[name] = float(value)
    return values


class BadSource(PgjobsError):
    """The source cannot be imported (not retryable)."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message, sqlstate="22023", hint=hint)


class SourceChanged(PgjobsError):
    """The source or the target is not what the import began with (55000, not
    retryable: every attempt would find the same)."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message, sqlstate="55000", hint=hint)


_CHANGED_HINT = ("restore the source as it was and pgjobs.retry the job, or cancel it, delete "
                 "the rows it wrote (its batches are committed) and import the new source "
                 "as a new job")


_REPLACED_HINT = ("the source changed since the import began: restore it as it was (an object "
                  "store's same bytes in one upload: its ETag; a local file: its very inode, "
                  "not a copy), or, if only records past the committed batches changed (a "
                  "bad record fixed in place), pgjobs.retry the job, which reads on in the "
                  "source as it is now; or submit a new import of the new source; the rows "
                  "of this job's committed batches stay, so delete them first or import "
                  "with on_duplicate: skip")


def _version_differs(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The part of a source's version (storage.version) that differs between the
    one checkpointed and the one found now, compared on the parts both state
    (None: the same). An ETag, where both state one, stands for the content:
    the Last-Modified of the same bytes uploaded again is not compared."""
    common = [k for k in then if k in now]
    if "etag" in common:
        common = [k for k in common if k != "modified"]
    for key in common:
        if str(then[key]) != str(now[key]):
            return key
    return None


class _Source:
    """The decoded bytes of the source from ``offset`` on (gzip: decompressed, the
    compressed stream read from its start and the first ``offset`` bytes dropped).
    ``consumed``: bytes of the source itself read so far (for progress)."""

    def __init__(self, uri: str, offset: int, gzip: bool, block: int | None = None,
                 total: int | None = None, etag: str | None = None,
                 inode: tuple[int, int] | None = None, mtime_ns: int | None = None,
                 ctime_ns: int | None = None, prefix: Any = None,
                 prefix_sha256: str | None = None):
        """``total``: the source's size as the importer read it (one HEAD of an
        https:// source per attempt: the reader checks each range against it);
        ``etag``, ``inode``, ``mtime_ns``, ``ctime_ns``: the version checkpointed,
        which an s3:// or obstore read pins, a file:// read's file must be and keep.
        ``prefix_sha256``: the SHA-256 of the decoded bytes before ``offset`` as the
        import began with them (its checkpoint's): they are read again, hashed
        into ``prefix`` (a hashlib object, empty), and must hash to it before any
        byte after them is given (SourceChanged)."""
        self.consumed = 0
        self._gzip = gzip
        again = gzip or prefix_sha256 is not None
        self._skip = offset if again else 0
        self._prefix, self._expected = prefix, prefix_sha256
        self._blocks = storage.open_range(uri, 0 if again else offset, block, total, etag,
                                          inode, mtime_ns, ctime_ns)
        self.consumed = 0 if again else offset
        self._uri = uri

    def blocks(self) -> Iterator[bytes]:
        if not self._gzip:
            for block in self._blocks:
                self.consumed += len(block)
                yield from self._emit(block)
            self._verified()
            return
        inflate = zlib.decompressobj(31)
        member = False  # a member begun and not yet ended
        for block in self._blocks:
            self.consumed += len(block)
            data = block
            while data:
                member = True
                try:
                    out = inflate.decompress(data, 16 * 1024 * 1024)
                except zlib.error as exc:
                    raise BadSource(f"the source is not valid gzip: {words(exc)}",
                                    hint="set {\"gzip\": false} if it is not compressed") from exc
                data = inflate.unconsumed_tail
                if inflate.eof:  # concatenated members: a new one may follow
                    data = inflate.unused_data + data
                    inflate = zlib.decompressobj(31)
                    member = False
                yield from self._emit(out)
        out = inflate.flush()
        if member and not inflate.eof:
            # zlib inflates a stream cut short without an error, and a cut at a
            # flush point even ends at a newline: without this check the import
            # would succeed with the records before the cut only.
            raise BadSource(
                f"the source's gzip stream ends before its end (no gzip trailer after "
                f"{self.consumed} bytes): the object is cut short",
                hint="upload the whole object (an upload or copy that did not finish?) and "
                     "import it as a new job: the rows of this job's committed batches stay, "
                     "so delete them first or import with on_duplicate: skip")
        yield from self._emit(out)
        self._verified()

    def _emit(self, out: bytes) -> Iterator[bytes]:
        if self._skip:
            drop = min(self._skip, len(out))
            if self._prefix is not None:
                self._prefix.update(out[:drop])
            out = out[drop:]
            self._skip -= drop
            if not self._skip:
                self._verified()
        if out:
            yield out

    def _verified(self) -> None:
        """Raise SourceChanged unless the bytes read again before the offset
        (``prefix_sha256``) are the ones the import began with."""
        if self._expected is None:
            return
        if self._skip or self._prefix.hexdigest() != self._expected:
            raise SourceChanged(f"{self._uri} was replaced since the import began: the bytes "
                                "before its checkpoint differ from those its committed "
                                "batches were read from, though the server states the same "
                                "size and version", hint=_REPLACED_HINT)
        self._expected = None


def csv_records(data: bytes | bytearray | memoryview,
                final: bool) -> tuple[list[tuple[int, int, int]], int]:
    """Whole CSV records at the start of ``data``: ``[(start, end, lines), ...]`` (end
    after the newline; lines: newlines inside the record, itself included) and where
    the unfinished rest begins. A newline ends a record when the ``"`` characters
    since the record's start are even. With ``final``, a rest without a newline is
    the last record."""
    raw = data if isinstance(data, bytes) else bytes(data)
    records: list[tuple[int, int, int]] = []
    append = records.append
    start = 0
    pos = 0
    quotes = 0
    lines = 0
    pieces = raw.split(b"\n")
    last = len(pieces) - 1  # the piece after the last newline: unfinished
    for i, piece in enumerate(pieces):
        if i == last:
            break
        pos += len(piece) + 1
        lines += 1
        quotes += piece.count(b'"')
        if not quotes & 1:
            append((start, pos, lines))
            start = pos
            quotes = 0
            lines = 0
    if final and start < len(raw):
        append((start, len(raw), lines + 1))
        start = len(raw)
    return records, start


def csv_cut(data: bytes, final: bool) -> int:
    """Where the whole CSV records at the start of ``data`` end (0: none yet): after
    the last newline outside quotes, found as :func:`csv_records` finds every
    record end (the ``"`` characters before it are even), but with bytes.count
    and rfind (C loops) instead of a Python loop per line. With ``final``, the
    rest is the last record (COPY judges an unterminated quote)."""
    if final:
        return len(data)
    end = data.rfind(b"\n")
    if end < 0:
        return 0
    quotes = data.count(b'"', 0, end)
    while quotes & 1:
        before = data.rfind(b"\n", 0, end)
        if before < 0:
            return 0
        quotes -= data.count(b'"', before, end)
        end = before
    return end + 1


def _maybe_blank(chunk: bytes) -> bool:
    """Whether ``chunk`` (whole CSV records) may hold a blank record, which COPY
    would read as a row of NULLs and the importer skips: those batches take the
    record-by-record path (a blank line inside a quoted value looks alike: that
    is only slower)."""
    return (chunk.startswith((b"\n", b"\r")) or b"\n\n" in chunk or b"\n\r\n" in chunk
            or chunk.endswith(b"\n\r"))


def _maybe_marker(chunk: bytes) -> bool:
    """Whether ``chunk`` (whole CSV records) may hold a record ``\\.`` alone on its
    line: COPY of PostgreSQL 17 and older reads it as the end of the data and
    drops the rest of the batch, where CSV (and PostgreSQL 18) reads it as the
    value ``\\.``. Those batches take the record-by-record path, which quotes
    such a record (:func:`_staged_record`); a ``\\.`` inside a quoted value
    looks alike here, and is only slower."""
    return chunk.startswith(b"\\.") or b"\n\\." in chunk


def _staged_record(record: bytes) -> bytes:
    """A CSV record as COPY is to read it: a record that is ``\\.`` alone (with
    its line end) quoted, so that COPY reads the value ``\\.`` rather than the
    end of the data; any other record as it is."""
    if record.startswith(b"\\.") and record.rstrip(b"\r\n") == b"\\.":
        return b'"\\."' + record[2:]
    return record


def _terminated(chunk: bytes) -> bytes:
    """Whole CSV records as COPY is to read them: a last record without a line
    end (the source's last line) given one in the style of the first record's
    (CRLF or LF). COPY takes the style from the first line and refuses a line
    ending otherwise ("unquoted newline found in data"): a CRLF source whose
    last line had no line end lost its last record."""
    if chunk.endswith(b"\n"):
        return chunk
    if chunk.endswith(b"\r"):
        return chunk + b"\n"
    end = _first_record_end(chunk, False)
    return chunk + (b"\r\n" if end > 1 and chunk[end - 2:end] == b"\r\n" else b"\n")


def _copy_line_record(data: bytes, ranges: list[tuple[int, int, int]],
                      line: int) -> int | None:
    """Which of the records (ranges of data, COPYed in one payload) COPY's ``line``
    N is in (None: past them). COPY numbers physical lines: a record spans 1 +
    the newlines inside its quoted values that COPY counts, which are those
    equal to the line end's last byte as COPY knows it then (copyfromparse.c,
    CopyReadLineText): CR in a CRLF stream; LF in an LF stream, except inside
    the first record, read before COPY knows the style (it compares with CR)."""
    if not ranges:
        return None
    crlf = data[ranges[0][0]:ranges[0][1]].endswith(b"\r\n")
    newline = b"\r" if crlf else b"\n"
    at = 1
    for i, (start, end, _) in enumerate(ranges):
        record = data[start:end]
        inside = record.count(newline) - (1 if record.endswith(b"\n") else 0)
        if i == 0 and not crlf:
            inside = record.count(b"\r")  # compared with CR: none in an LF stream
        last = at + max(inside, 0)
        if line <= last:
            return i if line >= at else None
        at = last + 1
    return None


def _blank(record: bytes) -> bool:
    return record.strip(b"\r\n") == b""


class Importer:
    """Runs one claimed import job to its end (or until stopped or fenced off)."""

    def __init__(self, dsn: str, job_id: int, worker: str, storage_uri: str, *,
                 stop: threading.Event | None = None,
                 on_progress: Callable[[int, int, int | None], None] | None = None,
                 after: threading.Thread | None = None, batch_bytes: int | None = None,
                 control: db.Connection | None = None,
                 on_held: Callable[[dict[str, Any] | None], None] | None = None):
        """``worker`` is the claim's identity (name#token): every call is fenced on it.
        ``on_progress(records, bytes, total bytes)`` after each batch. ``batch_bytes``
        fixes the size of a batch (tests); by default it adapts to batch_ms.
        ``control``: an idle connection of the caller's (`pgjobs import`: the one
        it submitted and claimed on) to use as the control connection until it is
        lost (as the exporter's, poller/export.py _Control); it is left open, and
        the caller must not use it until :meth:`run` returns. The batches are
        copied on a connection of the importer's own, so a batch never holds up
        a heartbeat. ``on_held(throttled)`` each time a throttling signal holds
        the next batch (the job's checkpoint.throttled: its reason and since),
        and ``on_held(None)`` once the batch goes: `pgjobs import` says what
        held it, where its bar alone would stall without a word."""
        self.dsn = dsn
        self.job_id = job_id
        self.worker = worker
        self.storage_uri = storage_uri
        # Roots this attempt trusts (storage.trust_root), released when it ends:
        # --storage (its rejects) and the prefix that admitted the source.
        self.roots: list[str | None] = [storage.trust_root(storage_uri)]
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.on_held = on_held
        self.after = after
        self.control = _Control(dsn, job_id, worker, lease=30.0, borrowed=control,
                                app="pgjobs import")
        self._data: db.Connection | None = None
        # The SHA-256 of the source's bytes behind the offset (https:// only: _stream).
        self.prefix: Any = None
        self.totals: dict[str, Any] = {}
        self.rejects_uri: str | None = None  # this job's, once named (_write_rejects)
        # rejects_uri once this attempt created it or found it created.
        self.rejects_created: str | None = None
        self.rejects_renamed = False  # this attempt changed the name: the above say
        # (bytes, sha256) the rejects object was read back as (_check_rejects).
        self.rejects_written: tuple[int, str] = (0, "")
        # COPY's message for a CSV record of too few / too many fields, by the
        # count (the expected count + 1: too many), asked once (_count_message).
        self.count_messages: dict[int, str] = {}
        # Whether the next batch sends its records' lines and texts with its
        # first import_batch (see _import_batch).
        self.records_wanted = False

        self.testing = _testing()
        fixed = batch_bytes or int(self.testing.get("bytes", 0))
        self.batch_bytes = max(1, fixed) if fixed else None

    # --- the job ----------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            while self.after is not None and self.after.is_alive():
                if self.stop.is_set():
                    raise Stopped()
                self.after.join(timeout=0.2)
                self.control.keepalive()
            return self._run()
        except LeaseLost as exc:
            return self._after_lost(str(exc))
        except _Paused:
            log.info("job %s: paused after its batch; pgjobs.resume continues it", self.job_id)
            return Outcome(self.job_id, "paused")
        except Stopped:
            return self._release()
        except BaseException as exc:
            return self._fail(exc)
        finally:
            self.control.close()
            if self._data is not None:
                with contextlib.suppress(Exception):
                    self._data.close()
            while self.roots:
                storage.release_root(self.roots.pop())

    def _load(self) -> dict[str, Any]:
        job = self.control.call(lambda c: db.one(c, queries.EXPORT_JOB, {"id": self.job_id}))
        if job["status"] != "running" or job["worker"] != self.worker:
            raise LeaseLost("the job is no longer ours")
        self.control.lease = float(job["lease_seconds"] or 30.0)
        return dict(job)

    def _run(self) -> Outcome:
        delay = 0.2
        while True:
            job = self._load()
            self.job = job
            payload = job["payload"]
            self.source = str(payload["source"])
            self.format = str(payload.get("format", "csv"))
            self.gzip = bool(payload.get("gzip"))
            self.batch_ms = int(payload.get("batch_ms") or 1000)
            self._check_allowed(self.source)
            try:
                self._stream(job["checkpoint"] or {})
                return self._finish()
            except (db.Error, PgjobsError) as exc:
                if db.lock_wait_timed_out(exc):
                    # Behind a lock on the target (an ALTER TABLE not yet
                    # committed), the batch rolled back: said, the lease
                    # kept, and read on from the committed checkpoint.
                    if self.stop.is_set():
                        raise Stopped() from exc
                    self.control.lock_waited(exc, "resuming from the checkpoint")
                    self.stop.wait(LOCK_RETRY_SECONDS)
                    continue
                if not connection_lost(exc):
                    raise
                # The batch in flight rolled back (or committed: the job row says
                # which); read on from the committed checkpoint.
                self._close_data()
                observe.count("errors", kind="database")
                if time.monotonic() - self.control.last_ok > self.control.lease:
                    raise LeaseLost("lost the database for longer than the lease") from exc
                if self.stop.is_set():
                    raise Stopped() from exc
                log.warning("job %s: database connection lost; resuming from the checkpoint",
                            self.job_id)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _check_allowed(self, uri: str) -> None:
        """Read only under a prefix of the allow-list (a per-tenant one: the folder
        of the job's scope), whatever the job row says now: the rule submit_import
        applied. Not under this worker's own storage for that alone: it holds every
        tenant's exports and rejects, and a source there that no allowed prefix
        covers was never a client's to read."""
        scope = self.job["scope"]
        # The prefix that admitted it (one query, as the yes/no was): a file://
        # source's trusted root, links at or above it followed (storage.open_folder).
        root = self.control.call(lambda c: db.scalar(c, queries.STORAGE_ROOT,
                                                      {"uri": uri, "scope": scope}))
        if root is not None:
            self.roots.append(storage.trust_root(str(root)))
        else:
            raise StorageError(
                f"refusing to read {uri}: outside the storage allow-list", retryable=False,
                hint="an administrator allows a prefix with pgjobs.allow_storage")

    def _data_connection(self) -> db.Connection:
        if self._data is None or self._data.closed or self._data.broken:
            self._data = db.connect_writer(self.dsn, app="pgjobs import")
        return self._data

    def _close_data(self) -> None:
        if self._data is not None:
            with contextlib.suppress(Exception):
                self._data.close()
            self._data = None

    # --- streaming --------------------------------------------------------------

    def _stream(self, ck: dict[str, Any]) -> None:
        if ck.get("v") != CHECKPOINT_VERSION:
            ck = {}
        self.total, now = storage.version(self.source)
        offset = int(ck.get("offset", 0))
        line = int(ck.get("line", 0))
        fields: list[str] | None = ck.get("fields")
        if ck.get("size") is not None and int(ck["size"]) != self.total:
            raise SourceChanged(f"{self.source} changed since the import began: "
                                f"{ck['size']} bytes then, {self.total} now",
                                hint=_CHANGED_HINT)
        if fields is not None and offset > 0:
            header = self._header(_Source(self.source, 0, self.gzip, 16 * 1024,
                                          self.total).blocks())
            if header != fields:
                raise SourceChanged(f"{self.source} changed since the import began: its header "
                                    f"is {header} now, {fields} then", hint=_CHANGED_HINT)
        # After the header's check, whose message says more.
        then = ck.get("version")
        if isinstance(then, dict) and offset > 0:
            differs = _version_differs(then, now)
            if differs:
                raise SourceChanged(f"{self.source} was replaced since the import began "
                                    f"(its {differs} differs), even if not in size: "
                                    "the resumed read would go on in another file from the "
                                    "offset the first reached", hint=_REPLACED_HINT)
        # The version the first attempt found (a checkpoint of the previous
        # release has none: the one found now, which later attempts compare).
        self.version = then if isinstance(then, dict) and offset > 0 else now
        self.totals = {k: ck.get(k, 0) for k in ("inserted", "updated", "skipped", "rejected",
                                                  "records")}
        self.history = list(ck.get("history", []))[-20:]
        self.history.append({"worker": self.worker, "offset": offset})
        # Read the version checkpointed (found by the HEAD above at the first
        # attempt), not whichever a second HEAD in the reader would find.
        inode = (int(self.version["dev"]), int(self.version["ino"])) \
            if "dev" in self.version and "ino" in self.version else None
        mtime, ctime = self.version.get("mtime_ns"), self.version.get("ctime_ns")
        # An https:// server's ETag and Last-Modified are what it chooses to state
        # (nginx: the mtime's second and the size), and a file put again at the
        # same size within that second keeps them all: a resume read on in the
        # new bytes. Its checkpoints carry the SHA-256 of the bytes before them,
        # which a resume reads again and compares before reading on. A
        # checkpoint of the previous release has none: not compared, not kept.
        expected = ck.get("prefix_sha256") if offset > 0 else None
        self.prefix = hashlib.sha256() if storage.parse(self.source).scheme == "https" \
            and (offset == 0 or isinstance(expected, str)) else None
        source = _Source(self.source, offset, self.gzip, total=self.total,
                         etag=self.version.get("etag"), inode=inode,
                         mtime_ns=None if inode is None or mtime is None else int(mtime),
                         ctime_ns=None if inode is None or ctime is None else int(ctime),
                         prefix=self.prefix,
                         prefix_sha256=str(expected) if self.prefix is not None
                         and offset > 0 else None)
        blocks = source.blocks()
        buf = bytearray()
        eof = False

        def fill(need: int) -> None:
            nonlocal eof
            while not eof and len(buf) < need:
                try:
                    buf.extend(next(blocks))
                except StopIteration:
                    eof = True

        if offset == 0:
            fill(3)
            if buf.startswith(_BOM):
                self._taken(buf[:3])
                del buf[:3]
                offset = 3
        if self.format == "csv" and fields is None:
            while True:
                end = _first_record_end(buf, eof)
                if end or eof:
                    break
                if len(buf) > MAX_RECORD:
                    raise BadSource("the header row is longer than 64 MiB")
                fill(len(buf) + FIRST_BATCH)
            if not end:
                raise BadSource(f"{self.source} is empty: a CSV source starts with a header row",
                                hint="add a header row naming columns or document fields")
            fields = _fields(bytes(buf[:end]))
            if _json_object(bytes(buf[:end])):
                # Every field would go to the document under a name such as
                # '{"name": "x"': one junk row per record instead of an error.
                raise BadSource(f"{self.source}: the header row is a JSON object, so the "
                                "source is JSON Lines, not CSV",
                                hint="import it with --format jsonl (option format: "
                                     "\"jsonl\"); a CSV source starts with a row of "
                                     "field names")
            line += buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
            self._taken(buf[:end])
            del buf[:end]
            offset += end
        conn = self._data_connection()
        copy_sql = str(db.scalar(conn, queries.IMPORT_PREPARE, {
            "id": self.job_id, "worker": self.worker, "fields": fields}))
        size = self.batch_bytes or FIRST_BATCH
        while True:
            if self.stop.is_set():
                raise Stopped()
            fill(size)
            if not buf and eof:
                self._read_again(offset)
                return
            self._throttle(conn)
            started = time.monotonic()
            limit = size
            while True:
                final = eof and limit >= len(buf)
                taken, line_after, staged = self._batch(conn, copy_sql, fields,
                                                        memoryview(buf)[:limit], final, line,
                                                        offset, source)
                if taken or limit >= len(buf):
                    break
                limit *= 2  # a record longer than the batch: take more
            if taken == 0:
                if eof:
                    self._read_again(offset)
                    return
                if len(buf) > MAX_RECORD:
                    raise BadSource(f"line {line + 1}: a record longer than 64 MiB "
                                    "(an unterminated quote?)",
                                    hint="fix the source, then pgjobs.retry(id)")
                fill(len(buf) + size)
                continue
            self._taken(buf[:taken])
            del buf[:taken]
            offset += taken
            line = line_after
            if self.on_progress is not None:
                self.on_progress(int(self.totals.get("records", 0)), source.consumed, self.total)
            elapsed = max(time.monotonic() - started, 0.001)
            if self.testing.get("batch"):
                time.sleep(self.testing["batch"])
            if staged and self.batch_bytes is None:
                size = int(min(max(size * min(2.0, max(0.5, self.batch_ms / 1000 / elapsed)),
                                   MIN_BATCH), MAX_BATCH))

    def _header(self, blocks: Iterator[bytes]) -> list[str] | None:
        """The fields of the source's header row as it is now (None: no header)."""
        head = b""
        for block in blocks:
            head += block
            if len(head) == len(block) and head.startswith(_BOM):
                head = head[3:]
            end = _first_record_end(head, False)
            if end:
                return _fields(head[:end])
            if len(head) > MAX_RECORD:
                break
        end = _first_record_end(head, True)
        return _fields(head[:end]) if end else None

    def _throttle(self, conn: db.Connection) -> None:
        """Wait while pgjobs._throttle holds the job (rate limits, health signals:
        it sleeps, at most about 1 s a call, records checkpoint.throttled and the
        `throttled` event, and extends the lease). A pause or cancel request lets
        the batch go: import_batch decides."""
        was_held = False
        while True:
            held = db.scalar(conn, queries.IMPORT_THROTTLE,
                             {"id": self.job_id, "worker": self.worker})
            if held is None:
                if was_held and self.on_held is not None:
                    self.on_held(None)
                return
            if held != "more":
                raise _Lost()  # the job ended there (an invalid limit fails it)
            self.control.last_ok = time.monotonic()
            if self.on_held is not None:
                # What holds it, as pgjobs._throttle recorded it just now.
                throttled = db.scalar(conn, queries.IMPORT_THROTTLED, {"id": self.job_id})
                if isinstance(throttled, dict):
                    was_held = True
                    self.on_held(throttled)
            if self.stop.is_set():
                raise Stopped()

    @observe.traced("pgjobs.chunk")
    def _batch(self, conn: db.Connection, copy_sql: str, fields: list[str] | None,
               buf: memoryview, eof: bool, line: int, offset: int,
               source: _Source) -> tuple[int, int, bool]:
        """Stage and commit the whole records at the start of buf. Returns (bytes
        taken, lines read after them, whether records were staged); (0, ...) when
        buf holds no whole record yet.

        A CSV batch first goes the fast way: found with C loops (:func:`csv_cut`),
        COPYed in one piece, and sent to import_batch without its records' lines
        and texts, which only a record refused there needs (import_batch then asks
        for them: {"status": "records"}). A batch COPY refuses, or that may hold a
        blank record, goes record by record (:meth:`_copy`)."""
        view = bytes(buf)
        if self.format == "csv":
            cut = csv_cut(view, eof)
            if cut == 0:
                return 0, line, False
            chunk = view[:cut]
            at = line + chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
            checkpoint = self._checkpoint(offset + cut, at, fields, chunk)
            done = source.consumed if self.gzip else offset + cut
            with conn.transaction():
                if (not _maybe_blank(chunk) and not _maybe_marker(chunk)
                        and self._copy_whole(conn, copy_sql, chunk)):
                    if self.testing.get("staged"):
                        time.sleep(self.testing["staged"])
                    if self.records_wanted:
                        records, _ = csv_records(chunk, eof)
                        result = self._import_batch(conn, fields, self._lines(records, line),
                                                    chunk, [], done, checkpoint)
                    else:
                        result = self._import_batch(conn, fields, None, None, [], done,
                                                    checkpoint)
                    if result.get("status") == "records":
                        records, _ = csv_records(chunk, eof)
                        staged = self._lines(records, line)
                        result = self._import_batch(
                            conn, fields, staged, chunk, [], done, checkpoint)
                    staged_any = True
                else:
                    records, _ = csv_records(chunk, eof)
                    kept = [r for r in self._lines(records, line)
                            if not (r[1] - r[0] <= 2 and _blank(view[r[0]:r[1]]))]
                    rejects: list[dict[str, Any]] = []
                    staged = self._copy(conn, copy_sql, view, kept, rejects, fields)
                    if self.testing.get("staged"):
                        time.sleep(self.testing["staged"])
                    result = self._import_batch(conn, fields, staged, view, rejects, done,
                                                checkpoint)
                    staged_any = bool(staged)
            self._settle(result)
            return cut, at, staged_any

        cut = view.rfind(b"\n") + 1
        if eof:
            cut = len(view)
        records = []
        start = 0
        for piece in view[:cut].split(b"\n") if cut else []:
            end = start + len(piece) + 1
            records.append((start, min(end, cut), 1))
            start = end
        if records and records[-1][0] >= cut:
            records.pop()
        if not records:
            return 0, line, False
        # JSONL lines are checked here and rewritten into a buffer of their own.
        good: list[tuple[int, int, int]] = []
        where: dict[int, tuple[int, int]] = {}  # line -> the record's range in view
        jsonl_rejects: list[dict[str, Any]] = []
        out = bytearray()
        at = line
        for start, end, _ in records:
            at += 1
            record = view[start:end]
            if _blank(record):
                continue
            reason = _jsonl_problem(record)
            if reason is not None:
                jsonl_rejects.append({"line": at, "reason": reason,
                                      "record": record.decode("utf-8", "replace")[:65536]})
                continue
            begin = len(out)
            where[at] = (start, end)
            out += record.rstrip(b"\r\n").replace(b"\r", b" ")
            out += b"\n"
            good.append((begin, len(out), at))
        data = bytes(out)
        checkpoint = self._checkpoint(offset + cut, at, fields, view[:cut])
        done = source.consumed if self.gzip else offset + cut
        with conn.transaction():
            staged = self._copy(conn, copy_sql, data, good, jsonl_rejects)
            if self.testing.get("staged"):
                time.sleep(self.testing["staged"])
            # A line refused there needs its text as read (the staged copy
            # has its line end and carriage returns rewritten).
            originals = [(*where[n], n) for _, _, n in staged]
            if self.records_wanted:
                result = self._import_batch(conn, fields, originals, view, jsonl_rejects,
                                            done, checkpoint)
            else:
                result = self._import_batch(conn, fields, staged, None, jsonl_rejects, done,
                                            checkpoint)
            if result.get("status") == "records":
                result = self._import_batch(conn, fields, originals, view, jsonl_rejects,
                                            done, checkpoint)
        self._settle(result)
        return cut, at, bool(staged)

    @staticmethod
    def _lines(records: list[tuple[int, int, int]], line: int) -> list[tuple[int, int, int]]:
        """(start, end, lines) records -> (start, end, first line) from ``line`` on."""
        out = []
        for start, end, lines in records:
            out.append((start, end, line + 1))
            line += lines
        return out

    def _read_again(self, offset: int) -> None:
        """At the end of an https:// source, before the job can succeed: its bytes
        before ``offset`` (all it imported) read again must hash as those the
        batches were read from (``prefix``). A file put again at the same size
        between two ranged GETs, within its Last-Modified second, states the same
        validators (nginx's ETag is that second and the size): the import read
        on in the new bytes and succeeded with rows of two files."""
        if self.prefix is None:
            return
        again = hashlib.sha256()
        left = offset
        source = _Source(self.source, 0, self.gzip, total=self.total,
                         etag=self.version.get("etag"))
        for block in source.blocks():
            again.update(block[:left])
            left -= min(left, len(block))
            if not left:
                break
        if left or again.hexdigest() != self.prefix.hexdigest():
            raise SourceChanged(f"{self.source} changed while it was read: read again at its "
                                "end, its bytes differ from those its batches were read from, "
                                "though the server states the same size and version",
                                hint=_REPLACED_HINT)

    def _taken(self, data: bytearray) -> None:
        """The source's bytes ``data`` are behind the import's offset now."""
        if self.prefix is not None:
            self.prefix.update(data)

    def _checkpoint(self, offset: int, line: int, fields: list[str] | None,
                    taken: bytes) -> dict[str, Any]:
        """The checkpoint after a batch of the bytes ``taken`` (its records), up to
        ``offset``; with the SHA-256 of the source's bytes before it where the
        version the server states cannot be trusted to change with them
        (``prefix_sha256``, :meth:`_stream`)."""
        ck = {"v": CHECKPOINT_VERSION, "offset": offset, "line": line, "fields": fields,
              "format": self.format, "gzip": self.gzip, "source": self.source,
              "size": self.total, "version": self.version, "history": self.history}
        if self.prefix is not None:
            prefix = self.prefix.copy()
            prefix.update(taken)
            ck["prefix_sha256"] = prefix.hexdigest()
        return ck

    def _copy_whole(self, conn: db.Connection, copy_sql: str, chunk: bytes) -> bool:
        """COPY chunk in one piece; False (nothing staged) when COPY refuses a record."""
        try:
            db.copy_in(conn, copy_sql, _terminated(chunk))
        except db.Error as exc:
            if str(getattr(exc, "sqlstate", None) or "").startswith(("22", "23")):
                return False
            raise
        return True

    def _import_batch(self, conn: db.Connection, fields: list[str] | None,
                      staged: list[tuple[int, int, int]] | None, texts: bytes | None,
                      rejects: list[dict[str, Any]], done: int,
                      checkpoint: dict[str, Any]) -> dict[str, Any]:
        """pgjobs.import_batch; ``staged`` (start, end, line) of each staged record
        in order (None: not sent), ``texts`` the bytes they are ranges of (sent as
        the records' source text; None: not sent)."""
        records = None
        if texts is not None and staged is not None:
            # Sent as one JSON array (json.dumps, C), read back into text[] by the
            # query: psycopg's text[] dumper quoted each element with a regular
            # expression, 1.3 s of a 4.2 s import of 100,000 records with 1%
            # rejects (h75), each batch sending all its records.
            records = json.dumps([_storable(texts[a:b].decode("utf-8", "replace")[:65536])
                                  for a, b, _ in staged], ensure_ascii=False)
        # A rejected record's text as read may hold NUL, which no jsonb or text
        # value does: storing it failed the batch and the job (22P05) however
        # many rejects max_rejects allowed.
        kept = [{k: _storable(v) if isinstance(v, str) else v for k, v in r.items()}
                for r in rejects]
        result: dict[str, Any] = db.one(conn, queries.IMPORT_BATCH, {
            "id": self.job_id, "worker": self.worker, "fields": fields,
            "lines": None if staged is None else ",".join([str(n) for _, _, n in staged]),
            "done": done, "total": self.total, "checkpoint": db.jsonb(checkpoint),
            "rejects": db.jsonb(kept), "records": records})["r"]
        if result.get("status") not in ("ok", "paused", "rejected", "records"):
            raise _Lost()
        if result.get("status") == "records" and records is not None:
            raise PgjobsError("import_batch asked again for the records it was given",
                              sqlstate="XX000")
        # Records refused in the database: the next batches send their records
        # at once (a source with bad records spread through it had each batch
        # go in, fail and be undone, then go in again with them), until a
        # batch that was sent them has none refused there.
        if result.get("status") == "records":
            self.records_wanted = True
        elif records is not None and result.get("status") == "ok":
            self.records_wanted = (int(result.get("rejected", 0)) - len(rejects)
                                   > int(self.totals.get("rejected", 0)))
        return result

    def _settle(self, result: dict[str, Any]) -> None:
        """After the batch's transaction committed."""
        if result.get("status") == "rejected":
            # Too many rejects: the batch's rows rolled back, its rejects (up to
            # the record that failed the job) committed; the job fails with it.
            raise PgjobsError(str(result["error"]), sqlstate=str(result["state"]),
                              hint=str(result["hint"]))
        if result.get("status") == "paused":
            raise _Paused()  # the batch committed: the job is paused after it
        self.control.last_ok = time.monotonic()
        observe.imported(self.totals, result)
        self.totals = {k: result.get(k, 0) for k in ("inserted", "updated", "skipped",
                                                     "rejected", "records")}

    def _copy(self, conn: db.Connection, copy_sql: str, data: bytes,
              good: list[tuple[int, int, int]],
              rejects: list[dict[str, Any]],
              fields: list[str] | None = None) -> list[tuple[int, int, int]]:
        """COPY the records (ranges of data) into the staging table; a record COPY
        refuses is cut out and added to rejects (its line and COPY's message, the
        CSV header's ``fields`` named in it), the rest staged again. Returns the
        staged records."""

        def payload(ranges: list[tuple[int, int, int]]) -> bytes:
            if marker:
                chunk = b"".join(_staged_record(data[s:e]) for s, e, _ in ranges)
            elif all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1)):
                chunk = data[ranges[0][0]:ranges[-1][1]]
            else:
                chunk = b"".join(data[s:e] for s, e, _ in ranges)
            return _terminated(chunk)

        def copy(ranges: list[tuple[int, int, int]]) -> None:
            db.copy_in(conn, copy_sql, payload(ranges))

        marker = _maybe_marker(data)
        judged = self._judge_fields(conn, copy_sql, data, good, fields, payload)
        if judged is not None:
            kept, refused = judged
            try:
                if kept:
                    copy(kept)
            except db.Error as exc:
                if not str(getattr(exc, "sqlstate", None) or "").startswith(("22", "23")):
                    raise
            else:
                rejects.extend(refused)
                return kept
        remaining = good
        staged: list[tuple[int, int, int]] = []
        while remaining:
            try:
                copy(remaining)
                staged.extend(remaining)
                return staged
            except db.Error as exc:
                state = getattr(exc, "sqlstate", None) or ""
                diag = getattr(exc, "diag", None)
                where = (diag.context if diag is not None else None) or ""
                match = _COPY_LINE.search(where)
                if not state.startswith(("22", "23")) or match is None:
                    raise
                first_record = data[remaining[0][0]:remaining[0][1]]
                if state == "22P04" and _lone_cr(first_record):
                    # COPY took the line end style from the first line, cut at this
                    # record's carriage return: the CRLF (or LF) of every record
                    # after it was then "unquoted", its line numbers no record's.
                    bad = 0
                    message = "unquoted carriage return found in data"
                else:
                    found = _copy_line_record(data, remaining, int(match.group(1)))
                    if found is None:
                        raise
                    bad = found
                    message = _field_names(
                        (diag.message_primary if diag is not None else None) or str(exc),
                        fields)
            before, (start, end, first), after = (remaining[:bad], remaining[bad],
                                                  remaining[bad + 1:])
            if before:
                copy(before)
                staged.extend(before)
            rejects.append({"line": first, "reason": message,
                            "record": data[start:end].decode("utf-8", "replace")[:65536]})
            remaining = after
        return staged

    def _judge_fields(self, conn: db.Connection, copy_sql: str, data: bytes,
                      good: list[tuple[int, int, int]], fields: list[str] | None,
                      payload: Callable[[list[tuple[int, int, int]]], bytes],
                      ) -> tuple[list[tuple[int, int, int]],
                                 list[dict[str, Any]]] | None:
        """The CSV records COPY would refuse for their field count, found here
        before sending: (the records to COPY, the rejects in line order), or None
        when this batch is not one whose outcome is sure (then COPY judges, as
        :meth:`_copy`'s loop does). Sure: every record is valid UTF-8 (the
        session's encodings both UTF8) without NUL, ends in the first record's
        line end (a last record may have none) with no other carriage return,
        and has whole quotes; COPY then refuses a record for its field count
        alone, whatever its neighbours. COPY's message for each count is asked
        of COPY itself (one record, rolled back; kept for the session), so it is
        COPY's own, in the server's language. Without this, each refused record
        re-sent the rest of the batch: bytes grew with the batch times the bad
        records."""
        if not fields or not good or not self._utf8(conn):
            return None
        want = len(fields)
        ending = b"\r\n" if data[good[0][0]:good[0][1]].endswith(b"\r\n") else b"\n"
        last = len(good) - 1
        kept: list[tuple[int, int, int]] = []
        refused: list[tuple[tuple[int, int, int], int]] = []
        for i, (start, end, first) in enumerate(good):
            record = data[start:end]
            body = record[:-len(ending)] if record.endswith(ending) else None
            if body is None:
                if i != last or record.endswith(b"\n"):
                    return None
                body = record
            if b"\r" in body or b"\x00" in body:
                return None
            if body.count(b'"') & 1:
                return None
            if not body.isascii():
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    return None
            if b'"' in body:
                count = 1 + sum(piece.count(b",") for piece in body.split(b'"')[::2])
            else:
                count = 1 + body.count(b",")
            if count == want:
                kept.append((start, end, first))
            else:
                refused.append(((start, end, first), count))
        rejects = []
        for (start, end, first), count in refused:
            message = self._count_message(conn, copy_sql, payload([(start, end, first)]),
                                          count, want, fields)
            if message is None:
                return None
            rejects.append({"line": first, "reason": message,
                            "record": data[start:end].decode("utf-8", "replace")[:65536]})
        return kept, rejects

    def _utf8(self, conn: db.Connection) -> bool:
        status = conn.info.parameter_status
        return status("server_encoding") == "UTF8" and status("client_encoding") == "UTF8"

    def _count_message(self, conn: db.Connection, copy_sql: str, record: bytes, count: int,
                       want: int, fields: list[str]) -> str | None:
        """COPY's message for a record of ``count`` fields where ``want`` are
        expected (``extra data after last expected column``, ``missing data for
        column "fN"``), COPY's own: ``record`` COPYed alone and rolled back, the
        message kept for the session. None: COPY did not refuse it so."""
        key = min(count, want + 1)
        if key in self.count_messages:
            return self.count_messages[key]
        try:
            with conn.transaction(force_rollback=True):
                db.copy_in(conn, copy_sql, record)
        except db.Error as exc:
            state = str(getattr(exc, "sqlstate", None) or "")
            diag = getattr(exc, "diag", None)
            match = _COPY_LINE.search((diag.context if diag is not None else None) or "")
            if state != "22P04" or match is None or match.group(1) != "1":
                return None
            message = _field_names(
                (diag.message_primary if diag is not None else None) or str(exc), fields)
            self.count_messages[key] = message
            return message
        return None

    # --- endings ----------------------------------------------------------------

    def _finish(self) -> Outcome:
        result: dict[str, Any] = {
            "rows": int(self.totals.get("inserted", 0)) + int(self.totals.get("updated", 0)),
            "inserted": int(self.totals.get("inserted", 0)),
            "updated": int(self.totals.get("updated", 0)),
            "skipped": int(self.totals.get("skipped", 0)),
            "rejected": int(self.totals.get("rejected", 0)),
            "records": int(self.totals.get("records", 0)),
            "bytes": self.total, "source": self.source, "format": self.format,
            "gzip": self.gzip}
        if result["rejected"]:
            result["rejects_uri"] = self._write_rejects()
            result["rejects_bytes"], result["rejects_sha256"] = self.rejects_written
        else:
            self._clear_rejects()
        ok = self.control.call(lambda c: db.complete(c, self.job_id, self.worker, result))
        if not ok:
            return self._after_lost("lease lost before completing")
        return Outcome(self.job_id, "succeeded", result=result)

    def _fence(self) -> None:
        """Renew the lease, or raise LeaseLost: before and after a destructive
        storage action of this attempt (:func:`storage.fenced`)."""
        if not self.control.heartbeat():
            raise LeaseLost("heartbeat refused")

    def _write_rejects(self) -> str:
        """The rejected records, one JSON object per line (line, reason, record), in
        the job's own rejects object, {target}/{scope}/{job}.{8 hex digits}.rejects.jsonl
        under this worker's storage: a name of its own, since another pgjobs
        database whose workers share this storage numbers its jobs alike.

        Only an object the job provably created is ever written over (or
        deleted): the checkpoint says so (``rejects_created``, recorded by
        pgjobs.import_rejects_created once a conditional create succeeded). A
        name is put in the checkpoint (pgjobs.import_rejects_placed) BEFORE the
        object is created, so that a worker killed in between leaves a name
        pointing at nothing rather than an object nothing names, then the digest
        of the bytes about to be created (pgjobs.import_rejects_creating), then
        the object is created conditionally (:func:`storage.create`: linkat,
        ``If-None-Match: *``). A name the checkpoint holds without that record
        (the previous attempt was killed somewhere in between) is created
        conditionally again: if an object is there, it is the job's only if it
        holds exactly the bytes whose digest was recorded (killed after the
        create); otherwise it is another's (killed after a create that found it
        there), un-named (pgjobs.import_rejects_taken) and never written over."""
        rows = self.control.call(lambda c: db.rows(c, queries.IMPORT_REJECTS,
                                                   {"id": self.job_id}))
        data = "".join(json.dumps({"line": r["line"], "reason": r["reason"],
                                   "record": r["record"]}, ensure_ascii=False) + "\n"
                       for r in rows).encode()
        uri = self._place_rejects(data)
        self._check_rejects(uri, data)
        return uri

    def _check_rejects(self, uri: str, data: bytes) -> None:
        """Read the rejects object back: it must hold exactly ``data`` (size and
        SHA-256, recorded in the result as ``rejects_bytes``/``rejects_sha256``)
        before the job may end on it. A store that acknowledged a write it did
        not keep whole fails the attempt (retryably: the object is recorded as
        the job's, so the retry writes it again), never a success naming wrong
        bytes."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not storage.holds(uri, sha256):
            raise StorageError(
                f"the rejects object {uri} of job {self.job_id} does not hold the "
                f"{len(data)} bytes (sha256 {sha256}) just written", retryable=True,
                hint=f"check the storage behind {self.storage_uri}; the job retries "
                     f"(pgjobs.retry({self.job_id}) once it has failed for good)")
        self.rejects_written = (len(data), sha256)

    def _place_rejects(self, data: bytes) -> str:
        """:meth:`_write_rejects`'s object: written, its URI."""
        named = self._named_rejects()
        created = named is not None and self._created(named)
        if named is not None and storage.within(named, self.storage_uri):
            if created or self._create_named(named, data):
                if created:
                    # Written over: the job's own object, which its next owner
                    # writes too (and may have verified and reported by now):
                    # only while the job is still this attempt's.
                    storage.fenced(self._fence, functools.partial(storage.write, named, data))
                self.rejects_uri, self.rejects_created = named, named
                self.rejects_renamed = True
                return named
            named = None  # another's: un-named, never written nor deleted
        try:
            return self._create_new(data)
        finally:
            if named is not None and created and self.rejects_created not in (None, named):
                # This job's own object under another worker's storage, no
                # longer named now that the new one is created (even if the
                # lease was lost just after): deleted now;
                # pgjobs.import_rejects_placed queued it too, for a worker's
                # housekeeping should this fail.
                try:
                    storage.delete(named)
                except (StorageError, OSError) as exc:
                    log.warning("job %s: could not delete its earlier rejects object %s "
                                "(queued for a worker's housekeeping): %s", self.job_id,
                                named, exc)

    def _create_new(self, data: bytes) -> str:
        """Create the rejects object under a new name of its own: its URI."""
        for _ in range(4):
            key = object_key(self.job["target"], self.job["scope"], self.job_id,
                             f"{secrets.token_hex(4)}.rejects.jsonl", False)
            uri = storage.object_location(self.storage_uri, key).uri
            if storage.taken(uri):
                self._taken_warning(uri)
                continue
            # Named first (the name it replaces is queued for deletion with it
            # if the job created that one), and this attempt's from now on (its
            # failure path writes it again).
            self._name_rejects(queries.IMPORT_REJECTS_PLACED, uri)
            self.rejects_uri, self.rejects_created = uri, None
            self.rejects_renamed = True
            if self._create_named(uri, data):
                break
        else:
            raise StorageError(f"cannot create the rejects object of job {self.job_id}: "
                               f"every name tried under {self.storage_uri} was taken",
                               retryable=True)
        return uri

    def _create_named(self, uri: str, data: bytes) -> bool:
        """Create the rejects object the checkpoint names (``uri``) where no object
        is, and record it as the job's: True. An object there already is the
        job's only if an earlier attempt created it (:meth:`_recognised`): then
        written, True. Otherwise it is another's: un-named, with a warning,
        False."""
        if self._recognised(uri):
            storage.write(uri, data)
            return True
        self._name_rejects(queries.IMPORT_REJECTS_CREATING, uri,
                           sha256=hashlib.sha256(data).hexdigest())
        if storage.create(uri, data):
            self.rejects_uri, self.rejects_created = uri, uri  # (before the call may fail)
            self.rejects_renamed = True
            self._name_rejects(queries.IMPORT_REJECTS_CREATED, uri)
            return True
        self._taken_warning(uri)
        self._name_rejects(queries.IMPORT_REJECTS_TAKEN, uri)
        self.rejects_uri, self.rejects_created = None, None
        self.rejects_renamed = True
        return False

    def _recognised(self, uri: str) -> bool:
        """Whether the object at ``uri``, which the checkpoint names without
        recording it as created, is the job's all the same: an earlier attempt
        recorded the digest of the bytes it was creating there
        (pgjobs.import_rejects_creating) and was killed after the create,
        before recording it (pgjobs.import_rejects_created), and the object
        holds exactly those bytes. Then it is recorded as the job's now."""
        checkpoint = self.job.get("checkpoint") or {}
        earlier = checkpoint.get("rejects_sha256")
        if (self.rejects_renamed or checkpoint.get("rejects_uri") != uri
                or not isinstance(earlier, str) or not storage.holds(uri, earlier)):
            return False
        self._name_rejects(queries.IMPORT_REJECTS_CREATED, uri)
        self.rejects_uri, self.rejects_created = uri, uri
        self.rejects_renamed = True
        return True

    def _named_rejects(self) -> str | None:
        """The rejects object the checkpoint names, if any."""
        if self.rejects_renamed:
            return self.rejects_uri
        named = (self.job.get("checkpoint") or {}).get("rejects_uri")
        return named if isinstance(named, str) and named else None

    def _created(self, uri: str) -> bool:
        """Whether the job provably created the rejects object ``uri`` (the
        checkpoint records it: pgjobs.import_rejects_created). A checkpoint of
        an earlier release never says so: its name is created conditionally."""
        if self.rejects_renamed:
            return self.rejects_created == uri
        return (self.job.get("checkpoint") or {}).get("rejects_created") == uri

    def _name_rejects(self, query: str, uri: str, **more: Any) -> None:
        """Name (IMPORT_REJECTS_PLACED), record the digest being created
        (IMPORT_REJECTS_CREATING), record as created (IMPORT_REJECTS_CREATED) or
        un-name (IMPORT_REJECTS_TAKEN) ``uri`` in the job's checkpoint, fenced
        on the claim."""
        done = self.control.call(lambda c: db.scalar(c, query, {
            "id": self.job_id, "worker": self.worker, "uri": uri, **more}))
        if not done:
            # The job is no longer ours: its next owner names its own.
            raise LeaseLost("lost the lease while naming the rejects object")

    def _taken_warning(self, uri: str) -> None:
        log.warning("job %s: %s holds an object that no attempt of this job wrote "
                    "(another pgjobs database writing to the same storage?): the "
                    "rejects go to another name", self.job_id, uri)

    def _clear_rejects(self) -> None:
        """The job ends with no rejects, but an earlier attempt created its rejects
        object (the checkpoint names it) with rejects since forgotten (a retry
        reads their records again: pgjobs.import_prepare): emptied, so that it
        holds exactly the job's rejects, none. Kept, not deleted: pruning the job
        deletes it. One named by an attempt killed before it created it is
        missing, and left so; one the job never provably created (its checkpoint
        does not record it, nor holds the digest of its bytes) may be another
        pgjobs database's, and is left alone. Best effort."""
        named = self._named_rejects()
        if named is None or not storage.within(named, self.storage_uri):
            return
        try:
            # One the job never provably created may be another's: left alone.
            if ((self._created(named) and storage.exists(named))
                    or self._recognised(named)):
                storage.write(named, b"")
        except (StorageError, OSError) as exc:
            log.warning("job %s: could not empty its rejects object %s: %s", self.job_id,
                        named, exc)

    def _keep_rejects(self) -> None:
        """As the job fails: when records were rejected, write the rejects object
        and name it in the job's result (pgjobs.import_rejects_written), as a
        success does. Best effort: the rejects stay in pgjobs.import_rejects."""
        try:
            kept = self.control.call(lambda c: db.scalar(
                c, queries.IMPORT_REJECTS_KEPT, {"id": self.job_id}))
            if not hasattr(self, "job"):
                return
            if not kept:
                self._clear_rejects()
                return
            uri = self._write_rejects()
            self.control.call(lambda c: db.scalar(c, queries.IMPORT_REJECTS_WRITTEN, {
                "id": self.job_id, "worker": self.worker, "uri": uri}))
        except (LeaseLost, PgjobsError, db.Error, StorageError, OSError) as exc:
            log.warning("job %s: could not write the rejects object: %s", self.job_id, exc)

    def _status(self) -> str | None:
        try:
            job = self.control.call(lambda c: db.get_job(c, self.job_id))
        except (LeaseLost, PgjobsError, db.Error):
            return None
        return None if job is None else str(job["status"])

    def _after_lost(self, why: str) -> Outcome:
        # A cancel request is settled by the heartbeat (the job becomes canceled).
        with contextlib.suppress(LeaseLost, PgjobsError, db.Error):
            self.control.heartbeat()
        status = self._status()
        if status in ("canceled", "paused", "failed"):
            # The heartbeat settled a cancel or a pause; a failed job was
            # failed by the engine (an invalid limit, pgjobs._throttle).
            return Outcome(self.job_id, status, error=None if status == "paused" else status)
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
        return Outcome(self.job_id, "released")

    def _fail(self, exc: BaseException) -> Outcome:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return self._release()
        if isinstance(exc, _Lost):
            return self._after_lost("fenced off")
        message = job_error(exc)  # one line, one SQLSTATE (pgjobs/errors.py)
        decision = False if isinstance(exc, (BadSource, SourceChanged)) else _retryable(exc)
        if _sqlstate(exc) == "55000":
            # The database refused the batch because the import cannot go on as
            # it began (the target changed: pgjobs._import_insert_sql; no unique
            # index for on_duplicate): every attempt would be refused alike.
            decision = False
        if not isinstance(exc, (StorageError, db.Error, PgjobsError)):
            log.exception("job %s: unexpected error", self.job_id)
        self._keep_rejects()
        try:
            ok, _ = self.control.call(lambda c: db.fail_by_sqlstate(
                c, self.job_id, self.worker, message, decision, _sqlstate(exc)))
        except (LeaseLost, PgjobsError, db.Error) as err:
            return Outcome(self.job_id, "lost", error=f"{message} (could not record: {err})")
        if not ok:
            return self._after_lost(message)
        status = self._status()
        if status in ("failed", "canceled"):
            return Outcome(self.job_id, status, error=message)
        return Outcome(self.job_id, "retrying", error=message)


def _lone_cr(record: bytes) -> bool:
    """The CSV record holds a carriage return outside quotes that no LF follows
    (a line end of its own to COPY)."""
    at = record.find(b"\r")
    while at >= 0:
        if record[at + 1:at + 2] != b"\n" and not record.count(b'"', 0, at) & 1:
            return True
        at = record.find(b"\r", at + 1)
    return False


def _storable(text: str) -> str:
    """``text`` as PostgreSQL can keep it (text, jsonb): NUL shown as U+FFFD, as
    bytes that are not UTF-8 are."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _first_record_end(data: bytes | bytearray, final: bool) -> int:
    """Where the first CSV record of ``data`` ends (0: not yet): after the first
    newline with an even count of ``"`` before it (with ``final``, the end of
    the data). Reads only as far as that record."""
    at = 0
    while True:
        newline = data.find(b"\n", at)
        if newline < 0:
            return len(data) if final else 0
        if not data.count(b'"', 0, newline) & 1:
            return newline + 1
        at = newline + 1


def _json_object(record: bytes) -> bool:
    """The record parses as a JSON object (which no CSV header row of field
    names does: its first field would start with '{')."""
    if not record.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(_json_loads(record.decode("utf-8")), dict)
    except ValueError:
        return False


def _json_loads(text: str) -> Any:
    """``json.loads`` of source text, where every way the text can be wrong is a
    ValueError: a value nested past Python's recursion limit raises
    RecursionError, which would escape as an unexpected (and retried) error
    rather than a bad record of the source."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply (arrays and objects more than about "
                         f"{sys.getrecursionlimit()} levels deep)") from None


def _fields(header: bytes) -> list[str]:
    """The field names of a CSV header row: ``header`` is the source's first record
    as the importer cuts records (up to the first LF outside quotes, or the whole
    source), and must read as exactly one record. Else what follows the first row
    in it would be dropped unread and the import succeed without it: a header
    whose quote never closes takes the whole source in (every record a field
    name), and one whose line ends with a carriage return alone (classic Mac
    line ends, which COPY here does not read either) takes in the records up to
    the first LF."""
    try:
        # As COPY reads the records after it: UTF-8, or the record is refused. A
        # header read with bad bytes replaced named a document field "n\ufffdme".
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSource(f"the CSV header row is not UTF-8 (byte {exc.start + 1} of it): "
                        "its field names cannot be read",
                        hint="save the file as UTF-8 (for example with iconv -f LATIN1 -t "
                             "UTF-8, or -f UTF-16 for a spreadsheet's \"Unicode text\"), "
                             "then import it as a new job") from None
    if "\x00" in text:
        # No text value holds NUL: each attempt failed again (a retryable error).
        raise BadSource("the CSV header row holds a NUL byte: the source is not UTF-8 text "
                        "(UTF-16 without its byte-order mark?)",
                        hint="save the file as UTF-8 (for example with iconv -f UTF-16 -t "
                             "UTF-8), then import it as a new job")
    if header.count(b'"') & 1:
        raise BadSource("the CSV header row has a quote that is never closed: the whole "
                        "source would be read as the header",
                        hint="close the quote (a quote inside a quoted field is written "
                             "twice) and import the file as a new job")
    try:
        rows = list(itertools.islice(csv.reader(io.StringIO(text, newline="")), 2))
    except csv.Error as exc:  # a field past csv.field_size_limit(): not a ValueError
        raise BadSource(f"the CSV header row cannot be read: {words(exc)}",
                        hint="a CSV source starts with a row of field names (columns or "
                             "document fields), not data") from None
    if len(rows) > 1:
        raise BadSource("the CSV header row ends with a carriage return alone: lines must "
                        "end with LF or CRLF, or the records after the header would be read "
                        "as part of it",
                        hint="convert the line ends to LF or CRLF (for example with "
                             "tr '\\r' '\\n'), then import the file as a new job")
    return rows[0] if rows else []


class _Lost(Exception):
    """import_batch found the job no longer ours: the batch rolls back."""


class _Paused(Exception):
    """import_batch committed the batch and paused the job (pgjobs.pause)."""


_ESCAPE_REFUSED = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
"""A JSON escape of NUL or of a UTF-16 surrogate in the text (or a false alarm: an
escaped backslash before ``u0000``): the parsed strings are then checked."""
_CHARS_REFUSED = re.compile("[\x00\ud800-\udfff]")
_SUSPECT = re.compile(r"NaN|Infinity|[eE][+-]?[0-9]{4,}|[0-9]{4000,}|\\u(?:0000|[dD][89a-fA-F])")
"""Text that may hold JSON that Python's json and PostgreSQL's jsonb judge
differently: only such a line is parsed the slower, exact way."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as parsed here: its (key, value) pairs in order, every one
    kept (a dict keeps the last of a duplicated key, without a word)."""


_DECODER = json.JSONDecoder(object_pairs_hook=_Pairs)
"""json.loads, but objects are _Pairs: as fast (no Python call per object)."""


def _jsonb_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (PostgreSQL's jsonb refuses it)")


def _jsonb_number(text: str) -> None:
    """A JSON number as PostgreSQL's jsonb reads it: ValueError when out of
    numeric's range (pgjobs.db.jsonb_number, the command line's rule too)."""
    db.jsonb_number(text)


def _jsonb_strings(value: Any) -> str | None:
    """The first string (key or value) in ``value`` that jsonb refuses: one holding
    NUL (\\u0000) or a lone UTF-16 surrogate (\\ud800), which Python's json reads."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Pairs):
            for key, inner in item:
                if _CHARS_REFUSED.search(str(key)):
                    return str(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _CHARS_REFUSED.search(item):
            return str(item)
    return None


def _jsonl_problem(record: bytes) -> str | None:
    """Why a JSONL line cannot be staged, or None. The JSON PostgreSQL's jsonb
    reads, not Python's: NaN and Infinity, a number out of numeric's range,
    \\u0000 and a lone surrogate escape are refused here, as one bad record
    (rejected and counted under max_rejects), not as an error of the whole
    batch that failed the job whatever max_rejects said. A record naming a key
    twice is refused too, naming it: which of its values is meant is not clear
    (PostgreSQL's jsonb, which the database reads the line as, kept the last
    without a word), as a CSV header naming a field twice fails the import."""
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1} of the line"
    suspect = _SUSPECT.search(text) is not None
    try:
        value = json.loads(text, parse_constant=_jsonb_constant, parse_float=_jsonb_number,
                           parse_int=_jsonb_number, object_pairs_hook=_Pairs) if suspect \
            else _DECODER.decode(text)
    except RecursionError:
        return (f"invalid JSON: nested too deeply (arrays and objects more than about "
                f"{sys.getrecursionlimit()} levels deep)")
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(value, _Pairs):
        return f"a JSON {type(value).__name__} where an object was expected"
    if len(dict(value)) != len(value):
        keys = [key for key, _ in value]
        twice = next(key for n, key in enumerate(keys) if key in keys[:n])
        return (f"the record names field {json.dumps(twice)[:200]} twice (a JSON Lines "
                "record names each column or document field once)")
    if suspect and _ESCAPE_REFUSED.search(text):
        refused = _jsonb_strings(value)
        if refused is not None:
            return ("invalid JSON: a string holding \\u0000 or a lone UTF-16 surrogate, which "
                    f"PostgreSQL's jsonb refuses: {json.dumps(refused)[:80]}")
    return None
