"""Staged uploads through obstore: each part is a hidden object, joined at the end.

For stores whose own resumable mechanism pgjobs cannot use (``az://`` with
credentials only obstore handles, ``s3://`` with parts under 5 MiB): parts go to
``{destination prefix}.pgjobs-staging/{job}/{token}/{n}``, checkpointed as runs
of part numbers per owner; :meth:`StagedUpload.finish` streams them, in order,
into one atomic write of the object, so nothing is visible at its key before
that, and never over an object there (:class:`KeyTaken`): on S3 a native
multipart upload completed with ``If-None-Match: *``, on ``az://`` (up to
:data:`CREATE_MAX` bytes) one put in obstore's create mode; ``memory://``
and larger ``az://`` objects: one plain put after the exporter's look.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pgjobs.lazy import lazy_module
from pgjobs.poller import s3client as s3
from pgjobs.poller import upload_s3
from pgjobs.poller.gcs import calls as obstore  # as storage uses it: gs:// via Google
from pgjobs.poller.storage import (
    COMPOSE_CHUNK,
    Location,
    StorageError,
    _condition_refused,
    create,
    delete_prefix,
    not_found,
    storage_error,
    store_for,
)
from pgjobs.poller.upload import (
    CannotResume,
    KeyTaken,
    PartDigests,
    Upload,
    add_to_runs,
    load_runs,
    require_staged,
    run_parts,
)

if TYPE_CHECKING:
    import obstore.exceptions as obstore_errors
else:
    obstore_errors = lazy_module("obstore.exceptions")  # as storage's (pgjobs/lazy.py)

log = logging.getLogger("pgjobs.storage")

CREATE_MAX = 64 * 1024 * 1024
"""The largest ``az://`` object a staged upload joins by one conditional put
(obstore's create mode holds the whole object in memory); a larger one is one
plain multipart put after the exporter's look (see docs/exports.md)."""


class StagedUpload(Upload):
    """Object stores: each part is a hidden object; ``finish`` streams them into the
    object with one multipart put (atomic: nothing is visible before it completes)
    and computes the SHA-256 on the way."""

    def __init__(self, location: Location, staging: str, token: str,
                 state: dict[str, Any] | None, *, verify: bool = True,
                 digests: list[Any] | None = None,
                 fence: Callable[[], None] | None = None):
        self.location = location
        self._digests = digests
        self._store = store_for(location)
        self._staging = (state or {}).get("staging") or staging
        self._token = token
        self._runs, self._next = load_runs(state)
        # S3: finish joins the parts through a multipart upload its own
        # checkpoint never names (the finalizing one is taken before it), so
        # the state records that one may be open at the key: a later attempt,
        # or the removal queued when the job ends, aborts those it left
        # (upload_s3.abort_unrecorded), each only while the attempt still
        # holds the job (``fence``: the next owner's is never taken).
        self._opening: Any = None
        if location.scheme == "s3":
            begun = (state or {}).get("opening")
            self._opening = begun if begun is not None else time.time()
            if begun is not None:
                client = s3.Client(location.base.split("://", 1)[1])
                try:
                    upload_s3.abort_unrecorded(client, location.path, fence=fence)
                except s3.S3Error as exc:
                    raise storage_error(exc, f"cannot write {location.uri}") from exc
        if state and verify and self._runs:
            self._verify()

    def _part_path(self, token: str, number: int) -> str:
        return f"{self._staging}{token}/{number:06d}"

    def _parts(self) -> Iterator[str]:
        for token, number in run_parts(self._runs):
            yield self._part_path(token, number)

    def _verify(self) -> None:
        require_staged(self._parts(), self._staging,
                       lambda: obstore.list(self._store, self._staging), Exception, storage_error)

    def write_part(self, data: bytes | bytearray) -> None:
        path = self._part_path(self._token, self._next)
        try:
            obstore.put(self._store, path, data, use_multipart=len(data) > 64 * 1024 * 1024)
        except Exception as exc:
            raise storage_error(exc, f"cannot write {self.location.base}/{path}") from exc
        add_to_runs(self._runs, self._token, self._next)
        self._next += 1

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"staging": self._staging, "runs": self._runs}
        if self._opening is not None:
            state["opening"] = self._opening
        return state

    def finish(self) -> tuple[int, str]:
        """Join the parts into the object, never over one at its key
        (:class:`KeyTaken`): ``s3://`` re-chunks them into a native multipart
        upload completed with ``If-None-Match: *``; ``az://`` objects up to
        :data:`CREATE_MAX` bytes, one put in obstore's create mode (Azure
        ``If-None-Match: *``). A larger ``az://`` object (the put would hold it
        all in memory), and ``memory://`` (one process, one database: see
        docs/exports.md), are one plain multipart put, after the exporter's
        look. With part digests, each part's bytes are checked on the way and a
        mismatch aborts the write (nothing visible)."""
        if self.location.scheme == "s3":
            return self._finish_s3()
        total = (sum(int(size) for size, _ in self._digests)
                 if self._digests is not None else None)
        # memory:// holds the object in memory anyway: one put in create mode.
        create = self.location.scheme == "memory" or (
            self.location.scheme == "az" and total is not None and total <= CREATE_MAX)
        if self.location.scheme == "az" and not create:
            return self._join_az_by_copy()
        if create:
            try:
                return self._put(conditional=True)
            except KeyTaken:
                raise
            except StorageError as exc:
                if not (exc.__cause__ is not None and _condition_refused(exc.__cause__)):
                    raise
                log.warning("%s refused a conditional write (If-None-Match: *): %s; %s is "
                            "written after the export's look at the key", self.location.base,
                            exc, self.location.uri)
        return self._put(conditional=False)

    def _checked_blocks(self, check: PartDigests | None, digest: Any) -> Iterator[bytes]:
        """The staged parts' bytes in order, each checked against its digest (a
        mismatch raises before the block that shows it is handed on)."""
        for path in self._parts():
            try:
                result = obstore.get(self._store, path)
            except not_found():
                raise CannotResume(f"staged part {path} is gone") from None
            except Exception as exc:
                raise storage_error(exc, f"cannot read {self.location.base}/{path}") from exc
            for block in result.stream(min_chunk_size=COMPOSE_CHUNK):
                item = bytes(block)
                if check is not None:
                    check.update(item)
                digest.update(item)
                yield item
        if check is not None:
            check.finish()

    def _finish_s3(self) -> tuple[int, str]:
        """The parts (below S3's 5 MiB minimum) re-chunked into parts of
        COMPOSE_CHUNK bytes of a native multipart upload, completed only where
        no object is (:func:`upload_s3.complete_new`); an empty object through
        :func:`storage.create`. The upload is aborted unless it completed."""
        digest = hashlib.sha256()
        check = PartDigests(self._digests, whole=False) if self._digests is not None else None
        client = s3.Client(self.location.base.split("://", 1)[1])
        key = self.location.path
        try:
            upload_id = client.create(key)
        except s3.S3Error as exc:
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        completed = False
        try:
            etags: list[str] = []
            size = 0
            buffer = bytearray()
            for block in self._checked_blocks(check, digest):
                buffer += block
                size += len(block)
                if len(buffer) >= COMPOSE_CHUNK:
                    etags.append(client.upload_part(key, upload_id, len(etags) + 1, buffer)[0])
                    buffer = bytearray()
            if size == 0:
                if not create(self.location.uri, b""):
                    raise KeyTaken(f"{self.location.uri} exists")
            else:
                if buffer:
                    etags.append(client.upload_part(key, upload_id, len(etags) + 1, buffer)[0])
                upload_s3.complete_new(client, self.location, upload_id, etags)
                completed = True
            self.created = True
        except s3.S3Error as exc:
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        finally:
            if not completed:
                upload_s3.abort_later(self.location, upload_id)
        return size, digest.hexdigest()

    def _join_az_by_copy(self) -> tuple[int, str]:
        """An ``az://`` object above :data:`CREATE_MAX` bytes (or of unknown
        size): the parts are streamed by one plain multipart put (blocks: flat
        memory) into a hidden object in the staging prefix, which Azure's Copy
        Blob then copies to the key with ``If-None-Match: *`` (obstore's copy
        without overwrite): :class:`KeyTaken` when an object is there. The
        exporter reads the object back against its digests after this, so a
        copy the store left unfinished is never a success."""
        joined = f"{self._staging}joined-{self._token}"
        size, sha256 = self._put(conditional=False, path=joined)
        self.created = False
        try:
            obstore.copy(self._store, joined, self.location.path, overwrite=False)
        except obstore_errors.AlreadyExistsError:
            raise KeyTaken(f"{self.location.uri} exists") from None
        except Exception as exc:
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        finally:
            try:
                obstore.delete(self._store, joined)
            except Exception as exc:  # noqa: BLE001 - the staging prefix is swept later
                log.warning("cannot delete %s/%s: %s", self.location.base, joined, exc)
        self.created = True
        return size, sha256

    def _put(self, *, conditional: bool, path: str | None = None) -> tuple[int, str]:
        """One streaming put of the parts to ``path`` (default: the object's
        key; ``conditional``: in obstore's create mode, :class:`KeyTaken`
        when an object is at the key)."""
        path = self.location.path if path is None else path
        digest = hashlib.sha256()
        check = PartDigests(self._digests, whole=False) if self._digests is not None else None
        size = 0
        # obstore drives put()'s iterator from inside its runtime, where another
        # obstore call would deadlock: a helper thread reads the parts.
        blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        abandon = threading.Event()

        def read_parts() -> None:
            try:
                for block in self._checked_blocks(check, digest):
                    while not abandon.is_set():
                        try:
                            blocks.put(block, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if abandon.is_set():
                        return
                blocks.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                blocks.put(exc)

        def stream() -> Iterator[bytes]:
            nonlocal size
            while True:
                item = blocks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                size += len(item)
                yield item

        reader = threading.Thread(target=read_parts, name="pgjobs-compose", daemon=True)
        reader.start()
        try:
            # A failing iterator aborts the put: nothing becomes visible.
            if conditional:
                obstore.put(self._store, path, stream(), mode="create")
            else:
                obstore.put(self._store, path, stream(),
                            chunk_size=COMPOSE_CHUNK, max_concurrency=4)
        except CannotResume:
            raise
        except obstore_errors.AlreadyExistsError:
            raise KeyTaken(f"{self.location.uri} exists") from None
        except Exception as exc:
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        finally:
            abandon.set()
            reader.join(timeout=5)
        self.created = True
        return size, digest.hexdigest()

    def cleanup(self) -> None:
        delete_prefix(self.location, self._staging)

