"""The upload protocol every storage kind implements, and the errors of a resume.

An export writes its object through an :class:`Upload`, durable part by part,
whose :meth:`Upload.state` is a small JSON document the exporter saves in the
job's checkpoint; :func:`pgjobs.poller.storage.resume_upload` picks the kind for
a URI and rebuilds the upload from that state in any process. The kinds:
:mod:`~pgjobs.poller.upload_file` (``file://``), :mod:`~pgjobs.poller.upload_s3`
(S3 multipart), :mod:`~pgjobs.poller.upload_obstore` (staged part objects),
:mod:`~pgjobs.poller.gcs` (compose) and :mod:`~pgjobs.poller.azblob` (blocks).

This module depends on nothing else in pgjobs at run time, so every kind (and
:mod:`~pgjobs.poller.storage`, which re-exports these names) can build on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only: storage re-exports this module's names
    from pgjobs.poller.storage import Location


class CannotResume(Exception):
    """The checkpointed upload is gone or damaged: start the export over."""


class UploadLost(CannotResume):
    """The upload vanished while parts were being written (S3 answered
    ``NoSuchUpload``: aborted by a lifecycle rule or by hand): start over now."""


class Mismatch(CannotResume):
    """Bytes at hand (an inherited temporary file, staged parts, a stored object)
    differ from the part digests the checkpoint recorded as they were streamed."""


class KeyTaken(Exception):
    """The final write of an upload was conditional (``file://``: a hard link,
    which refuses any name there; S3: ``If-None-Match: *``) and found an object
    at the key: nothing was written over it. The exporter accepts it only when
    it reads back as exactly what the job streamed (an earlier attempt of the
    job made it visible); any other object is another's."""


PREFIX = "prefix:"
"""How a checkpointed digest that covers the object from its first byte is
written: ``prefix:`` and the SHA-256 (hex) of the object's bytes up to the end
of its part (:func:`prefix_digest`). Any other digest is the SHA-256 of its
part's bytes alone. ``file://`` records prefix digests: the object's running
hash gives each one as the part goes by, so a part is hashed once, not twice
(its own digest and the object's hash)."""


def prefix_digest(running: Any) -> str:
    """The checkpointed form of ``running``, a hash of the object's bytes so far."""
    return PREFIX + str(running.hexdigest())


def is_prefix(digest: str) -> bool:
    """Whether a checkpointed digest covers the object from its first byte."""
    return digest.startswith(PREFIX)


class Seal:
    """The keyed tag of one part's bytes: AES-GMAC (AES-256-GCM over the bytes
    as associated data, nothing encrypted) under a key of its upload's
    :class:`Seals`, the part's index as the nonce. OpenSSL computes it with
    carry-less multiplication, about ten times faster than SHA-256 here."""

    def __init__(self, key: bytes, index: int):
        # Imported here: only an export's part writer and read-back need it.
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._mac = Cipher(algorithms.AES(key), modes.GCM(index.to_bytes(12, "big"))).encryptor()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._mac.authenticate_additional_data(data)

    def tag(self) -> bytes:
        self._mac.finalize()
        return bytes(self._mac.tag)


class Seals:
    """An upload's keyed tags of its parts' bytes as they were written (the
    buffers handed to the store, the same that were SHA-256 hashed for the
    checkpoint), under a random key that lives in this process's memory only:
    never checkpointed, logged or written anywhere a store or a database
    could show it. The read-back of the upload's own object
    (:func:`pgjobs.poller.storage.check_object`) checks each part's range
    against its tag instead of hashing it again with SHA-256: bytes other than
    those written carry the same tag with a probability of at most a part's
    16-byte blocks over 2^128 for one who does not know the key (GMAC's
    bound), and a failed read-back ends the attempt (the retry's upload draws
    a new key). The checkpoint's SHA-256 digests stay what a resume and any
    other attempt check against."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self.tags: list[bytes] = []

    def part(self, index: int) -> Seal:
        """A :class:`Seal` of part ``index`` (0-based) of this upload."""
        return Seal(self._key, index)

    def matches(self, index: int, seal: Seal) -> bool:
        """Whether ``seal``, fed the stored bytes of part ``index``, carries its tag."""
        return hmac.compare_digest(seal.tag(), self.tags[index])

    def __repr__(self) -> str:  # never the key
        return f"Seals({len(self.tags)} parts)"


class Streamed(list[Any]):
    """Checkpointed digests ``[[bytes, sha256], ...]`` with ``hashes``, the
    writer's own running hash of the streamed bytes before each part
    (:attr:`Upload.hashes`): what the read-back of prefix digests needs to
    check runs of parts apart (:func:`pgjobs.poller.storage.check_object`);
    and ``seals``, the writer's keyed tag of each part (:attr:`Upload.seals`),
    when it has one for every part: the read-back then checks the tags."""

    def __init__(self, digests: list[Any], hashes: list[Any] | None,
                 seals: Seals | None = None):
        super().__init__(digests)
        self.hashes = hashes
        self.seals = seals if seals is not None and len(seals.tags) == len(digests) else None


class PartDigests:
    """Checks a stream of bytes against the checkpointed digests of the parts that
    were streamed, ``[[bytes, sha256 hex], ...]`` in order, and (``whole``) hashes
    the whole. The digests are recorded as each part is written, so they exist
    (fenced, in the checkpoint) before anything can become visible and across
    attempts: whatever a later attempt reads back is compared with what was
    streamed, not with what the storage says it holds.

    A digest is either its part's SHA-256 or a prefix digest (:data:`PREFIX`:
    the SHA-256 of the object's bytes up to the end of its part); one list may
    hold both (a checkpoint of an earlier release continued by this one). Each
    byte is hashed once per kind the list holds: once for prefix digests alone.

    Bytes that match every part are the streamed bytes, so their SHA-256 is the
    one computed while streaming: a caller that has that digest passes
    ``whole=False`` and, unless the list holds prefix digests, each byte is
    hashed once, not twice."""

    def __init__(self, digests: list[Any], *, whole: bool = True):
        self._expected = [(int(size), str(sha)) for size, sha in digests]
        self._index = 0
        self._left = self._expected[0][0] if self._expected else 0
        self._part = hashlib.sha256() if any(not is_prefix(sha) for _, sha in self._expected) \
            else None
        self._whole = whole
        # The object's hash so far: the whole's, and what prefix digests compare with.
        self._running = hashlib.sha256() \
            if whole or any(is_prefix(sha) for _, sha in self._expected) else None
        self.size = 0
        # The running hash before each part (those begun so far): a resumed
        # upload keeps them for its read-back (Upload.hashes).
        self.hashes: list[Any] = []
        if self._running is not None and self._expected:
            self.hashes.append(self._running.copy())
        self._advance()

    def _advance(self) -> None:
        """Close every part whose bytes are all in (empty parts at once)."""
        while self._index < len(self._expected) and self._left == 0:
            expected = self._expected[self._index][1]
            if is_prefix(expected):
                got = prefix_digest(self._running)
            else:
                assert self._part is not None
                got = self._part.hexdigest()
            if self._part is not None:
                # Every part's own digest starts at its first byte, whatever
                # kind the parts before it have (a part digest after a prefix
                # digest hashes its part alone, never the bytes before it).
                self._part = hashlib.sha256()
            if got != expected:
                raise Mismatch(f"part {self._index + 1} differs from what was streamed")
            self._index += 1
            if self._index < len(self._expected):
                self._left = self._expected[self._index][0]
                if self._running is not None:
                    self.hashes.append(self._running.copy())

    def update(self, block: bytes | bytearray | memoryview) -> None:
        self.size += len(block)
        view = memoryview(block)
        if self._index >= len(self._expected) and view:
            raise Mismatch("more bytes than were streamed")
        if self._part is None and self._running is not None and self._left >= len(view):
            # Prefix digests only, and no part ends inside this block: one call.
            self._running.update(view)
            self._left -= len(view)
            self._advance()
            return
        while view:
            if self._index >= len(self._expected):
                raise Mismatch("more bytes than were streamed")
            take = min(self._left, len(view))
            if self._part is not None and not is_prefix(self._expected[self._index][1]):
                self._part.update(view[:take])
            if self._running is not None:
                self._running.update(view[:take])
            self._left -= take
            view = view[take:]
            self._advance()

    def finish(self) -> int:
        """The number of bytes, once they all matched."""
        if self._index < len(self._expected):
            raise Mismatch(f"fewer bytes than were streamed ({self.size})")
        return self.size

    def hexdigest(self) -> str:
        """The SHA-256 of everything (``whole=True`` only)."""
        assert self._whole and self._running is not None, \
            "PartDigests(whole=False) hashes parts only"
        return str(self._running.hexdigest())

    def running(self) -> Any:
        """A copy of the hash of everything so far (``whole=True`` only): a resumed
        ``file://`` upload goes on from it."""
        assert self._whole and self._running is not None, \
            "PartDigests(whole=False) hashes parts only"
        return self._running.copy()


class Upload:
    """A resumable upload of one object, written part by part."""

    location: Location

    hashes: list[Any] | None = None
    """``file://``: the running SHA-256 of the streamed bytes before each part,
    in the order of the digests (hashlib objects, this process's own: nothing a
    store could change). The read-back starts a run of prefix digests from
    any part with it, so the object is checked on threads of its own; None
    where the kind keeps none (the read-back of prefix digests is then one
    stream)."""

    seals: Seals | None = None
    """``file://`` and native S3: the keyed tag of each part as written
    (:class:`Seals`), in the order of the digests (``file://``: inherited parts
    included); None where the kind keeps none, and ignored unless it has a tag
    for every part (the read-back then hashes with SHA-256)."""

    checked: list[Any] | None = None
    """The part digests ``finish`` checked the finished object against, when it
    read the object back (a resumed upload whose hash state did not survive: that
    one read hashes it and checks every part); None when it did not read it. The
    exporter then does not read the object back a second time."""

    created = False
    """True once ``finish`` made the object visible by this upload's own write
    (even when the read-back that follows it fails): the object at the key is
    then the job's, which the exporter may remove when it is not what was
    streamed. False when ``finish`` did not get that far, or found an object
    there (:class:`KeyTaken`): never the job's to remove."""

    def write_part(self, data: bytes | bytearray) -> str | None:
        """Make ``data`` durable as the next part. Returns its SHA-256 (hex) when the
        kind hashed it on the way (S3: the hash the part was signed with), else None
        and the caller hashes it: each part is hashed once for its digest."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON-able state to checkpoint after ``write_part`` returned."""
        raise NotImplementedError

    def fresh(self) -> bool:
        """True while a new upload is still being made on the store (native S3:
        its CreateMultipartUpload in flight beside the first chunk's read), so
        nothing of it is worth a checkpoint yet: :meth:`state` would wait for
        it. Its state is checkpointed with its first part."""
        return False

    def finish(self) -> tuple[int, str]:
        """Make the object visible at its key, never over an object there
        (:class:`KeyTaken`, where the store can refuse atomically); return
        (bytes, sha256 hex)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove what the upload left besides the object (best effort)."""
        raise NotImplementedError



# --- parts kept as runs ----------------------------------------------------------
# The kinds that keep each part under a name of its own (staged objects, GCS
# part objects, Azure blocks) checkpoint which parts they hold as runs of
# consecutive numbers per owner, ``[[token, first, last], ...]``: an owner
# numbers its parts on from the last run, so a resumed upload never reuses a name.


def load_runs(state: dict[str, Any] | None) -> tuple[list[list[Any]], int]:
    """The runs checkpointed in ``state`` and the number of the next part."""
    runs: list[list[Any]] = [list(r) for r in (state or {}).get("runs", [])]
    return runs, (runs[-1][2] + 1) if runs else 1


def run_parts(runs: list[list[Any]]) -> Iterator[tuple[str, int]]:
    """(owner token, part number) of every part held, in the object's order."""
    for token, first, last in runs:
        for number in range(first, last + 1):
            yield token, number


def add_to_runs(runs: list[list[Any]], token: str, number: int) -> None:
    """Record part ``number``, just written by ``token``, in ``runs``."""
    if runs and runs[-1][0] == token and runs[-1][2] == number - 1:
        runs[-1][2] = number
    else:
        runs.append([token, number, number])


def require_parts(parts: Iterable[str], present: set[str], what: str) -> None:
    """:class:`CannotResume` unless every part the checkpoint lists is ``present``
    (parts can vanish under a paused export: a lifecycle rule, by hand)."""
    missing = [p for p in parts if p not in present]
    if missing:
        raise CannotResume(f"{len(missing)} {what} are gone, e.g. {missing[0]}")


def require_staged(parts: Iterable[str], staging: str,
                   listing: Callable[[], Iterable[Iterable[Mapping[str, Any]]]],
                   catch: type[Exception],
                   to_error: Callable[[Any, str], Exception]) -> None:
    """On resume, :func:`require_parts` against what ``listing()`` finds under
    ``staging`` (pages of object metadata, each with its ``path``). An error of type
    ``catch`` while listing is raised as ``to_error(exc, "cannot list ...")``: each
    store maps its own errors."""
    try:
        present = {meta["path"] for page in listing() for meta in page}
    except catch as exc:
        raise to_error(exc, f"cannot list {staging}") from exc
    require_parts(parts, present, "staged part(s)")
