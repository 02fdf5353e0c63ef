"""``file://`` uploads: one hidden temporary file per owner, linked into place.

Parts are written, each at its own offset, to ``.{name}.pgjobs-{token}.tmp``
next to the object and fsynced; a new owner copies the checkpointed prefix
(checked against the part digests) into its own temporary file, while a stale
writer keeps scribbling into the old one, which nobody reads.
:meth:`LocalUpload.finish` links the file into place atomically, never over a
file there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

from pgjobs.poller.storage import (
    COMPOSE_CHUNK,
    Location,
    StorageError,
    fenced,
    open_file,
    place_file,
    storage_error,
    unlink_file,
    write_at,
)
from pgjobs.poller.upload import (
    CannotResume,
    KeyTaken,
    PartDigests,
    Seals,
    Upload,
    prefix_digest,
)


class LocalUpload(Upload):
    """``file://``: one hidden temporary file per owner, fsynced per part, linked
    into place at the end. The SHA-256 is computed as bytes go by (and over the
    inherited prefix on resume)."""

    def __init__(self, location: Location, token: str, state: dict[str, Any] | None,
                 digests: list[Any] | None = None,
                 fence: Callable[[], None] | None = None, *, prefix_digests: bool = False):
        self.location = location
        self._fence = fence
        self._digests = digests
        # write_part returns prefix digests (upload.PREFIX): the object's running
        # hash gives each part's, one pass over its bytes instead of two.
        self._prefix_digests = prefix_digests
        directory, name = os.path.split(location.path)
        self._tmp = os.path.join(directory, f".{name}.pgjobs-{token}.tmp")
        self._hash = hashlib.sha256()
        self._size = 0
        self.hashes: list[Any] = []  # self._hash before each part (Upload.hashes)
        # Each part's keyed tag as written (Upload.seals): the read-back checks
        # the stored object against these, one cheap pass instead of SHA-256's.
        self.seals: Seals = Seals()
        try:
            # Its folders made and opened below the trusted root without following
            # a link (openat/mkdirat), the file itself with O_NOFOLLOW.
            fd = open_file(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                           f"cannot write {directory}", create_folders=True)
        except OSError as exc:
            raise storage_error(exc, f"cannot write {directory}") from exc
        try:
            previous = state.get("tmp") if state else None
            with open(fd, "wb") as out:
                if previous and state:
                    self._inherit(previous, int(state["size"]), out)
                    out.flush()
                    os.fsync(out.fileno())
                # A new file is not fsynced while it is empty: it holds nothing
                # a crash could lose (a checkpoint of size 0 resumes as a start
                # over), and its first part's fdatasync makes it durable with
                # that part's bytes. One journal commit (about 4 ms here) less
                # in the head of every export, before its first COPY.
        except BaseException as exc:
            # However the upload fails to begin (CannotResume, a copy that
            # failed, or the fence of the inherited file's removal refused: the
            # job canceled, paused or taken over meanwhile), its own temporary
            # file goes with it: no record names it yet, and its owner never
            # gets the upload that would remove it (a canceled export left it).
            self.cleanup()
            if isinstance(exc, OSError):
                raise storage_error(exc, f"cannot write {directory}") from exc
            raise

    def _inherit(self, previous: str, size: int, out: Any) -> None:
        """Copy the first ``size`` bytes of the previous owner's file, checked
        against the part digests (anyone may have changed that file since)."""
        if self._digests is None:
            raise CannotResume("the checkpoint has no part digests to check "
                               f"{previous} against")
        # The whole's hash as well: this upload goes on from it. A checkpoint of
        # prefix digests is hashed once, one of part digests twice (each part's
        # and the whole's).
        check = PartDigests(self._digests)
        try:
            src = open(open_file(previous, os.O_RDONLY,  # noqa: SIM115 - closed below
                                 f"cannot read {previous}"), "rb")
        except FileNotFoundError:
            raise CannotResume(f"{previous} is gone") from None
        # Each inherited part sealed as it is copied: the bytes written to this
        # upload's file, checked against the digests on the way.
        sizes = [int(part[0]) for part in self._digests]
        seals = Seals()
        seal, part_left = seals.part(0), sizes[0] if sizes else 0

        def close() -> None:  # every part whose bytes are all in (empty ones too)
            nonlocal seal, part_left
            while part_left == 0 and len(seals.tags) < len(sizes):
                seals.tags.append(seal.tag())
                seal = seals.part(len(seals.tags))
                part_left = sizes[len(seals.tags)] if len(seals.tags) < len(sizes) else 0

        close()
        with src:
            left = size
            while left:
                block = src.read(min(left, COMPOSE_CHUNK))
                if not block:
                    raise CannotResume(f"{previous} is shorter than the checkpoint")
                write_at(out.fileno(), block, size - left)
                check.update(block)
                left -= len(block)
                view = memoryview(block)
                while view and len(seals.tags) < len(sizes):
                    take = min(part_left, len(view))
                    seal.update(view[:take])
                    view, part_left = view[take:], part_left - take
                    close()
        check.finish()  # the bytes are exactly the parts': a tag for each
        self.seals = seals
        self._hash = check.running()
        self.hashes = check.hashes
        self._size = size
        if previous != self._tmp:
            # The previous owner's file, which the checkpoint names: only while
            # the job is this attempt's (the next owner resumes from it too).
            fenced(self._fence, lambda: unlink_file(previous, f"cannot delete {previous}"),
                   best_effort=True)

    def write_part(self, data: bytes | bytearray) -> str:
        """Write ``data`` at the end of the parts written so far and make it
        durable; its SHA-256 (the part's digest: the exporter does not hash it
        again). The part goes at its own offset and the file is cut there, so a
        part retried after a failed write or ``fdatasync`` replaces what the
        failed try left instead of following it. Both hashes (the part's and the
        object's running one) are computed while the kernel writes the part to
        disk: ``fdatasync`` runs on a thread of its own (it and hashlib release
        the GIL), so a part costs its write and the longer of the two, not their
        sum. It returns only once the part is durable; the running hash and the
        size take the part only then. While nothing precedes the part in the
        object (the first part, or parts after empty ones), the object's hash
        so far is the part's digest: one pass gives both, so a one-part
        export hashes its bytes twice (here and the read-back), not three
        times. With ``prefix_digests`` the digest returned is the object's
        hash up to the end of this part (:func:`~pgjobs.poller.upload.prefix_digest`):
        every part is hashed once."""
        whole = self._hash.copy() if self._size or self._prefix_digests else None
        try:
            fd = open_file(self._tmp, os.O_WRONLY, f"cannot write {self._tmp}")
            try:
                write_at(fd, data, self._size)
                os.ftruncate(fd, self._size + len(data))
                failed: list[OSError] = []
                syncing = threading.Thread(target=_fdatasync, args=(fd, failed),
                                           name="pgjobs-fdatasync", daemon=True)
                syncing.start()
                try:
                    seal = self.seals.part(len(self.seals.tags))
                    seal.update(data)
                    tag = seal.tag()
                    if self._prefix_digests:
                        assert whole is not None
                        whole.update(data)
                        digest = prefix_digest(whole)
                    elif whole is None:
                        whole = hashlib.sha256(data)
                        digest = whole.hexdigest()
                    else:
                        digest = hashlib.sha256(data).hexdigest()
                        whole.update(data)
                finally:
                    syncing.join()
                if failed:
                    raise failed[0]
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error(exc, f"cannot write {self._tmp}") from exc
        self.hashes.append(self._hash)  # never updated again: whole is a copy or new
        self.seals.tags.append(tag)
        self._hash = whole
        self._size += len(data)
        return digest

    def state(self) -> dict[str, Any]:
        return {"tmp": self._tmp, "size": self._size}

    def finish(self) -> tuple[int, str]:
        """Put the temporary file at the object's name only where no name is
        (:func:`~pgjobs.poller.storage.place_file`: ``linkat`` in the folder
        opened without a link below the root, then the temporary name
        unlinked; fsynced): :class:`KeyTaken` when a file is there, which is
        never replaced."""
        try:
            place_file(self._tmp, self.location.path, f"cannot create {self.location.path}")
        except FileExistsError:
            raise KeyTaken(f"{self.location.uri} exists") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot create {self.location.path}") from exc
        self.created = True
        return self._size, self._hash.hexdigest()

    def cleanup(self) -> None:
        with contextlib.suppress(OSError, StorageError):
            unlink_file(self._tmp, f"cannot delete {self._tmp}")


def _fdatasync(fd: int, failed: list[OSError]) -> None:
    """``os.fdatasync(fd)``, its error kept in ``failed`` (a thread's target)."""
    try:
        os.fdatasync(fd)
    except OSError as exc:
        failed.append(exc)
