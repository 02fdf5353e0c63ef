"""``s3://`` uploads: one S3 multipart upload, continued across processes.

Through botocore (:mod:`pgjobs.poller.s3client`, the whole AWS credential
chain). The upload id and the part ETags are checkpointed, so any worker
continues it; completing it makes the object visible. Aborts that fail while
storage is down are queued and retried in the background (:func:`abort_later`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage
from pgjobs.poller.storage import Location, StorageError, hash_object, storage_error
from pgjobs.poller.upload import CannotResume, KeyTaken, Seals, Upload, UploadLost

log = logging.getLogger("pgjobs.storage")


class NativeS3Upload(Upload):
    """``s3://`` with parts of at least 5 MiB: one S3 multipart upload, continued
    across processes. The state holds its upload id
    and the ETags of the parts written; CompleteMultipartUpload names every ETag,
    so S3 itself refuses a part that a stale worker overwrote. The SHA-256 is
    computed as parts go by; after a resume (the hash state does not survive a
    crash) the finished object is read back once to hash it, every part checked
    against its digest on the way (:attr:`Upload.checked`).

    A new upload's CreateMultipartUpload is sent in a thread of its own while
    the exporter reads the first chunk (one round trip off every export's
    start); the upload id is awaited where it is first needed (the first part,
    :meth:`state`, :meth:`finish`, :meth:`cleanup`). A create that failed is
    raised there, as a storage error, and sent again on the next use (a retried
    part).

    Until the checkpoint records the id, nothing names the upload but its key:
    so a new upload first records that it opens one (``record`` is called with
    ``{"opening": t}``, t the worker's clock, for diagnosis, and must
    checkpoint it) before its create is sent, and keeps ``opening`` in its
    state. Whoever later meets that state (the next attempt, a cancel's or a
    failure's queued removal, prune) aborts every upload of the key that the
    state does not name (:func:`abort_unrecorded`): one whose create was
    answered but never recorded (the worker killed in between), or whose
    answer was lost (the create sent again)."""

    _id: str | None = None
    _creating: _Creating | None = None

    def __init__(self, location: Location, state: dict[str, Any] | None,
                 digests: list[Any] | None = None,
                 record: Callable[[dict[str, Any]], None] | None = None,
                 fence: Callable[[], None] | None = None):
        self.location = location
        self._digests = digests
        self._client = s3.Client(location.base.split("://", 1)[1])
        self._key = location.path
        self._hash: Any = hashlib.sha256()
        self._size = 0
        self._completed = False  # finish completed it: nothing is left to abort
        self._opening: Any = None
        self._fence = fence
        try:
            if state and state.get("opening") is not None:
                # An earlier attempt opened uploads here since then: those its
                # state does not name were never recorded, and nobody else
                # can continue them.
                abort_unrecorded(self._client, self._key,
                                 keep={str(state["upload_id"])} if state.get("upload_id")
                                 else (), fence=fence)
                self._opening = state["opening"]  # a marker: kept as it is
            if state and state.get("upload_id"):
                self._id = str(state["upload_id"])
                self._etags: list[str] = list(state.get("etags", []))
                self._empty = bool(state.get("empty"))
                present = self._client.list_parts(self._key, self._id)
                if any(present.get(n) != etag for n, etag in enumerate(self._etags, start=1)):
                    raise CannotResume(f"upload {self._id} lost parts")
                if self._etags or self._empty:
                    self._hash = None  # re-read at finish
            else:
                self._opening = time.time()
                if record is not None:
                    record({"opening": self._opening})  # before the create is sent
                self._creating = _Creating(self._client, self._key)
                self._etags = []
                self._empty = False
        except s3.S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise CannotResume(f"upload {state and state.get('upload_id')} is gone") from None
            raise storage_error(exc, f"cannot write {location.uri}") from exc
        # Each part's keyed tag as sent (Upload.seals), for the read-back, while
        # this upload holds every part it will complete with: a resumed one's
        # earlier parts were sent by another attempt, and its finish reads the
        # object back against the digests anyway.
        self.seals = Seals() if self._hash is not None else None

    def _upload_id(self) -> str:
        """The upload's id, once its create has answered (sent again when the
        one in flight failed: that failure is raised once, as a storage error)."""
        if self._id is None:
            creating, self._creating = self._creating, None
            try:
                if creating is None:
                    # The create that failed may have made an upload (its answer
                    # lost): aborted before another is made.
                    self._abort_unrecorded()
                self._id = (creating.result() if creating is not None
                            else self._client.create(self._key))
            except s3.S3Error as exc:
                raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        return self._id

    def _abort_unrecorded(self) -> None:
        """Abort the key's uploads this one's state does not name, only while
        the attempt still owns the job: ``fence`` renews the lease first (it
        raises when the lease is gone). A stale attempt (its lease run out,
        the job claimed again) does not know the next owner's upload at the
        key: that one it must never abort."""
        if self._opening is not None:
            if self._fence is not None:
                self._fence()
            abort_unrecorded(self._client, self._key,
                             keep={self._id} if self._id is not None else (), fence=self._fence)

    def fresh(self) -> bool:
        return self._id is None

    def write_part(self, data: bytes | bytearray) -> str | None:
        """Upload ``data`` as the next part, as it is; its SHA-256, the one its
        signature carried (see :mod:`pgjobs.poller.s3client`)."""
        upload_id = self._upload_id()
        tag = None
        if self.seals is not None:
            seal = self.seals.part(len(self.seals.tags))
            seal.update(data)
            tag = seal.tag()
        if not data and not self._etags:
            self._empty = True  # S3 refuses an empty multipart object: put it at finish
            if self.seals is not None and tag is not None:
                self.seals.tags.append(tag)
            return None
        if len(self._etags) >= s3.MAX_PARTS:
            raise StorageError(f"{self.location.uri}: more than {s3.MAX_PARTS} parts",
                               retryable=False, hint="export with a larger part_size option")
        try:
            etag, sha256 = self._client.upload_part(self._key, upload_id, len(self._etags) + 1,
                                                    data)
        except s3.S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise UploadLost(f"upload {upload_id} is gone") from None
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        self._etags.append(etag)
        if self.seals is not None and tag is not None:
            self.seals.tags.append(tag)
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)
        return sha256

    def state(self) -> dict[str, Any]:
        state = {"upload_id": self._upload_id(), "etags": list(self._etags),
                 "empty": self._empty}
        if self._opening is not None:
            state["opening"] = self._opening
        return state

    def finish(self) -> tuple[int, str]:
        """Complete the upload only where no object is (:func:`complete_new`;
        :class:`KeyTaken` when one is); an empty object is created the same
        way (:func:`storage.create`). Only storage's errors are storage
        errors: anything else (a programming error) is not retried."""
        upload_id = self._upload_id()
        try:
            if self._empty and not self._etags:
                if not storage.create(self.location.uri, b""):
                    raise KeyTaken(f"{self.location.uri} exists")
                self._client.abort(self._key, upload_id)
            else:
                complete_new(self._client, self.location, upload_id, self._etags)
            self._completed = self.created = True
        except s3.S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise UploadLost(f"upload {self._id} is gone") from None
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        if self._hash is None:
            # Resumed: read back once, hashed and each part checked against the
            # digests of what every attempt streamed (None: no digests, hash only).
            done = hash_object(self.location, self._digests)
            self.checked = self._digests
            return done
        return self._size, self._hash.hexdigest()

    def cleanup(self) -> None:
        """Abort the upload if it is still open; when storage is down, the abort is
        queued and retried (:func:`abort_later`). One that ``finish`` completed (or
        aborted, to put an empty object) is gone already: no request, the tail of a
        successful export waits for none."""
        if self._completed:
            return
        if self._id is None:
            creating, self._creating = self._creating, None
            try:
                # The create in flight is awaited: the upload it makes is aborted too.
                self._id = creating.result() if creating is not None else None
            except s3.S3Error:
                # Its answer may have been lost after the upload was made: aborted
                # while the job is still this attempt's (else its next owner
                # aborts it as it resumes, or its queued removal does).
                with contextlib.suppress(Exception):
                    self._abort_unrecorded()
                return
        if self._id is not None:
            abort_later(self.location, self._id)


class _Creating(threading.Thread):
    """One CreateMultipartUpload in a thread of its own; :meth:`result` waits for
    its upload id (or raises its error)."""

    def __init__(self, client: s3.Client, key: str):
        super().__init__(name="pgjobs-s3-create", daemon=True)
        self._client, self._key = client, key
        self._id: str | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._id = self._client.create(self._key)
        except BaseException as exc:  # noqa: BLE001 - raised to whoever waits
            self._error = exc

    def result(self) -> str:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._id is not None
        return self._id


def complete_new(client: s3.Client, location: Location, upload_id: str,
                 etags: list[str]) -> None:
    """CompleteMultipartUpload of ``location``'s key only where no object is
    (``If-None-Match: *``): :class:`KeyTaken` when one is (a ``412``), nothing
    written over it. A complete sent again after its answer was lost meets its
    own object the same way: the caller recognises it by its bytes. A store
    that refuses the condition (``501``/``400``, as :func:`storage.create`
    handles) is asked whether the key holds an object, then sent the plain
    request, with a warning: only an object created at that very moment is
    not seen."""
    try:
        client.complete(location.path, upload_id, etags)
        return
    except s3.S3Error as exc:
        if exc.status == 412 or exc.code == "PreconditionFailed":
            raise KeyTaken(f"{location.uri} exists") from None
        if exc.status not in (400, 501) or exc.code in _NOT_A_REFUSAL:
            raise
        log.warning("%s refused a conditional CompleteMultipartUpload (If-None-Match: *): "
                    "%s; %s is completed after checking that no object is there",
                    location.base, exc, location.uri)
    if storage.exists(location.uri):
        raise KeyTaken(f"{location.uri} exists")
    client.complete(location.path, upload_id, etags, overwrite=True)


def abort_unrecorded(client: s3.Client, key: str, keep: Collection[str] = (), *,
                     fence: Callable[[], None] | None = None) -> int:
    """Abort the open multipart uploads of exactly ``key`` but those in
    ``keep`` (the one a checkpoint names): what an export's attempts opened
    there and never recorded. Called only where a checkpoint recorded that
    the job opens uploads at the key (``opening``). The key is the job's: it
    was chosen where nothing was, and the key names the job, so an upload
    there is one of its attempts'; another pgjobs database's job of the same
    id writing the same key at the same time meets this one's object there
    and fails for good (42710) whichever upload is aborted. No time filter:
    ``Initiated`` is the store's clock (and some S3-compatible stores answer
    a fixed date). Raises :class:`s3.S3Error`; how many it aborted.

    ``fence``: an attempt aborts them (not the housekeeping queue): each
    abort only while it still holds the job, the lease renewed before it and
    once more after the last (:func:`storage.fenced`): an abort that hung
    past the lease stops the loop before the next upload, which may be the
    next owner's. Sent once (``s3.Client(..., retries=False)``): the client
    never resends an abort by itself after the fence."""
    aborted = 0
    aborter = client if fence is None else s3.Client(client.bucket, retries=False)
    for found, upload_id, _initiated in client.list_uploads(key):
        if found == key and upload_id not in keep:
            if fence is not None:
                fence()
            aborter.abort(key, upload_id)
            aborted += 1
    if fence is not None and aborted:
        fence()
    return aborted


_NOT_A_REFUSAL = ("NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall",
                  "MalformedXML")
"""Errors a CompleteMultipartUpload answers with a 400 for its parts, not for
its condition."""


class _Aborts(threading.Thread):
    """Aborts of multipart uploads that failed (storage down), retried with backoff
    until they succeed or the process ends; the stale-upload sweep
    (:func:`sweep_stale`) aborts what a process that ended left open."""

    def __init__(self) -> None:
        super().__init__(name="pgjobs-aborts", daemon=True)
        self.pending: queue.Queue[tuple[str, str, str, float]] = queue.Queue()
        self.done = threading.Condition()
        self.open = 0

    def run(self) -> None:
        while True:
            bucket, key, upload_id, delay = self.pending.get()
            try:
                s3.Client(bucket).abort(key, upload_id)
            except s3.S3Error as exc:
                if exc.retryable:
                    # Back off in a timer thread: other aborts are not held up.
                    timer = threading.Timer(delay, self.pending.put, args=(
                        (bucket, key, upload_id, min(delay * 2, ABORT_BACKOFF_MAX)),))
                    timer.daemon = True
                    timer.start()
                    continue
                log.warning("cannot abort upload %s of s3://%s/%s: %s", upload_id, bucket, key,
                            exc)
            with self.done:
                self.open -= 1
                self.done.notify_all()


ABORT_BACKOFF_MAX = 60.0
_aborts: _Aborts | None = None
_aborts_lock = threading.Lock()


def abort_later(location: Location, upload_id: str) -> None:
    """Abort an S3 multipart upload now if storage answers, else queue the abort:
    it is retried in the background until it succeeds (an open upload costs
    storage until it is aborted). Within an attempt's fenced call
    (:func:`s3.sent_once`) it is sent once and never queued."""
    global _aborts
    bucket = location.base.split("://", 1)[1]
    try:
        s3.Client(bucket).abort(location.path, upload_id)
        return
    except s3.S3Error as exc:
        if not exc.retryable:
            log.warning("cannot abort upload %s of %s: %s", upload_id, location.uri, exc)
            return
        if s3.sending_once():
            # An attempt's abort (storage.fenced): never sent again from the
            # queue, out of the fence, maybe after the next owner resumed this
            # upload (its checkpoint may still name it). Left open for the
            # job's queued removal and the stale sweep, once the job ended.
            log.warning("cannot abort upload %s of %s now (%s); left for the job's cleanup",
                        upload_id, location.uri, exc)
            return
        log.warning("cannot abort upload %s of %s now (%s); retrying in the background",
                    upload_id, location.uri, exc)
    with _aborts_lock:
        if _aborts is None or not _aborts.is_alive():
            _aborts = _Aborts()
            _aborts.start()
        with _aborts.done:
            _aborts.open += 1
        _aborts.pending.put((bucket, location.path, upload_id, 1.0))


def pending_aborts(wait: float = 0.0) -> int:
    """How many queued aborts have not succeeded yet (after waiting up to ``wait``
    seconds for them all to)."""
    aborts = _aborts
    if aborts is None:
        return 0
    deadline = time.monotonic() + wait
    with aborts.done:
        while aborts.open and time.monotonic() < deadline:
            aborts.done.wait(timeout=max(0.0, deadline - time.monotonic()))
        return aborts.open

