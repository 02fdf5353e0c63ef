"""A ``file://`` upload's part (LocalUpload.write_part): written at its own
offset, durable (``fdatasync``) before it returns, hashed while the kernel
writes it, and its digest returned so the exporter does not hash it again. A
part retried after a failed write or ``fdatasync`` replaces what the failed
try left: the object holds each part once, and its size and SHA-256 are the
parts', whatever failed on the way."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pgjobs.poller import storage, upload_file

PARTS = [
    [b"one\n"],
    [b"", b"a", b""],  # empty parts, one byte
    [b"x" * 3_000_000, b"y" * 1_000_001, b"tail\n"],  # several MB, odd sizes
]


def upload(tmp_path: Path, name: str = "7.csv") -> Any:
    storage.trust_root(f"file://{tmp_path}")
    location = storage.parse(f"file://{tmp_path}/items/1/{name}")
    return storage.resume_upload(location, "", "a1-x", None, part_size=1024, digests=[])


@pytest.mark.parametrize("parts", PARTS, ids=["one", "tiny", "large"])
def test_each_part_returns_its_digest_and_the_object_is_their_bytes(
        tmp_path: Path, parts: list[bytes]) -> None:
    up = upload(tmp_path)
    digests = [up.write_part(bytearray(p)) for p in parts]
    assert digests == [hashlib.sha256(p).hexdigest() for p in parts]
    size, sha256 = up.finish()
    whole = b"".join(parts)
    assert (size, sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == whole


@pytest.mark.parametrize("fails", ["pwrite", "ftruncate", "fdatasync"])
@pytest.mark.parametrize("parts", PARTS[1:], ids=["tiny", "large"])
def test_a_part_retried_after_a_failure_is_in_the_object_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str,
        parts: list[bytes]) -> None:
    """Each part fails once (after its bytes may have reached the file), then is
    written again, as the exporter's storage_retry does: the object is every part
    once, in order, and the size and SHA-256 finish returns are theirs."""
    real = getattr(os, fails)
    failing = {"left": 0}

    def flaky(*args: Any) -> Any:
        result = real(*args)  # the bytes land (or are cut, or synced) first
        if failing["left"]:
            failing["left"] -= 1
            raise OSError(errno.EIO, "injected")
        return result

    monkeypatch.setattr(upload_file.os, fails, flaky)
    up = upload(tmp_path)
    for part in parts:
        if part or fails != "pwrite":  # an empty part writes nothing
            failing["left"] = 1
            with pytest.raises(storage.StorageError):
                up.write_part(part)
        assert up.write_part(part) == hashlib.sha256(part).hexdigest()
    size, sha256 = up.finish()
    whole = b"".join(parts)
    assert (size, sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == whole


def test_a_part_is_durable_before_write_part_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fdatasync runs beside the hashing, on a thread of its own, and write_part
    returns only once it has: the checkpoint that follows names a durable part."""
    synced: list[threading.Thread] = []
    release = threading.Event()
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        release.wait(5)  # held until the caller has hashed (or 5 s)
        real(fd)
        synced.append(threading.current_thread())

    real_sha256 = hashlib.sha256

    def hashing(*args: Any) -> Any:
        release.set()  # the sync may end once hashing has begun
        return real_sha256(*args)

    monkeypatch.setattr(upload_file.os, "fdatasync", slow_sync)
    monkeypatch.setattr(upload_file.hashlib, "sha256", hashing)
    up = upload(tmp_path)
    up.write_part(b"part one\n")
    assert len(synced) == 1 and synced[0] is not threading.current_thread()


class _CountingSha256:
    """hashlib.sha256 that counts the bytes it is given (copies share the count)."""

    def __init__(self, data: bytes | bytearray = b"", *, counted: list[int] | None = None,
                 inner: Any = None) -> None:
        self.counted = counted if counted is not None else _COUNTED
        self._inner = inner if inner is not None else _REAL_SHA256()
        if data:
            self.update(data)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.counted[0] += len(data)
        self._inner.update(data)

    def copy(self) -> _CountingSha256:
        return _CountingSha256(counted=self.counted, inner=self._inner.copy())

    def hexdigest(self) -> str:
        return str(self._inner.hexdigest())


_REAL_SHA256 = hashlib.sha256
_COUNTED = [0]


@pytest.mark.parametrize("parts", PARTS, ids=["one", "tiny", "large"])
def test_nothing_before_a_part_hashes_it_once_for_its_digest_and_the_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes]) -> None:
    """While nothing precedes a part in the object (the first part, or parts
    after empty ones), its digest is the object's hash so far: its bytes are
    hashed once, every later part's twice (its digest, the object's hash). A
    one-part export then hashes its bytes twice in all (with the read-back),
    not three times. The digests and the object's SHA-256 stay exact."""
    _COUNTED[0] = 0
    monkeypatch.setattr(upload_file, "hashlib", SimpleNamespace(sha256=_CountingSha256))
    up = upload(tmp_path)
    digests = [up.write_part(bytearray(p)) for p in parts]
    assert digests == [_REAL_SHA256(p).hexdigest() for p in parts]
    size, sha256 = up.finish()
    whole = b"".join(parts)
    assert (size, sha256) == (len(whole), _REAL_SHA256(whole).hexdigest())
    leading = 0  # the bytes of the parts written while the object was empty
    for part in parts:
        leading += len(part)
        if part:
            break
    assert _COUNTED[0] == 2 * len(whole) - leading


RESUMED = [b"first part\n", b"", b"x" * 70_000, b"y" * 3, b"last\n"]


@pytest.mark.parametrize("boundary", range(len(RESUMED) + 1))
def test_a_resume_at_any_part_boundary_gives_the_objects_sha256(
        tmp_path: Path, boundary: int) -> None:
    """An owner writes the parts up to ``boundary`` and dies; the next inherits its
    file (checked against the digests) and writes the rest: the size and SHA-256
    finish returns, and the file, are exactly the object's, at every boundary,
    the first (nothing inherited) and the last (nothing left to write) too."""
    first = upload(tmp_path)
    digests = [[len(p), first.write_part(bytearray(p))] for p in RESUMED[:boundary]]
    location = storage.parse(f"file://{tmp_path}/items/1/7.csv")
    second = storage.resume_upload(location, "", "b2-y", first.state(), part_size=1024,
                                   digests=digests)
    for part in RESUMED[boundary:]:
        assert second.write_part(bytearray(part)) == _REAL_SHA256(part).hexdigest()
    size, sha256 = second.finish()
    whole = b"".join(RESUMED)
    assert (size, sha256) == (len(whole), _REAL_SHA256(whole).hexdigest())
    assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == whole


# A part several times WRITE_SLICE long, with an odd tail.
SLICED = b"".join(bytes([65 + i % 26]) * 100_003 for i in range(40))


def test_a_part_goes_to_the_kernel_in_slices_that_tile_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pwrite hands the kernel at most WRITE_SLICE bytes (one pwrite of a
    whole 16 MiB part cost several times the CPU of the same bytes in slices),
    and the slices tile the part: each starts where the one before ended."""
    calls: list[tuple[int, int]] = []
    real = os.pwrite

    def recording(fd: int, data: Any, offset: int) -> int:
        calls.append((offset, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(upload_file.os, "pwrite", recording)
    up = upload(tmp_path)
    up.write_part(b"head\n")
    calls.clear()
    up.write_part(SLICED)
    assert max(size for _, size in calls) <= storage.WRITE_SLICE
    assert len(calls) > 1
    assert [offset for offset, _ in calls] == list(
        itertools.accumulate([size for _, size in calls[:-1]], initial=5))
    assert sum(size for _, size in calls) == len(SLICED)
    up.finish()
    assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == b"head\n" + SLICED


@pytest.mark.parametrize("failing_call", [1, 2, "last"])
def test_a_part_whose_later_slice_failed_is_in_the_object_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int | str) -> None:
    """A write that fails after some of the part's slices landed (the first, one
    in the middle, the last) leaves the part to be written again whole, at its
    own offset: the object holds every part once, and finish returns their size
    and SHA-256."""
    real = os.pwrite
    slices = -(-len(SLICED) // storage.WRITE_SLICE)
    fail_at = slices if failing_call == "last" else int(failing_call)
    seen = {"calls": 0, "armed": True}

    def flaky(fd: int, data: Any, offset: int) -> int:
        written = real(fd, data, offset)  # the slice lands first
        seen["calls"] += 1
        if seen["armed"] and seen["calls"] == fail_at:
            seen["armed"] = False
            raise OSError(errno.EIO, "injected")
        return written

    up = upload(tmp_path)
    up.write_part(b"head\n")
    monkeypatch.setattr(upload_file.os, "pwrite", flaky)
    with pytest.raises(storage.StorageError):
        up.write_part(SLICED)
    assert up.write_part(SLICED) == hashlib.sha256(SLICED).hexdigest()
    up.write_part(b"tail\n")
    whole = b"head\n" + SLICED + b"tail\n"
    assert up.finish() == (len(whole), hashlib.sha256(whole).hexdigest())
    assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == whole


def _write_through(entry: str, tmp_path: Path) -> bytes:
    """``SLICED`` written to a file:// object by ``entry``; the object's bytes."""
    if entry == "create":  # a Parquet file, a parallel part's object
        assert storage.create(f"file://{tmp_path}/items/1/7.csv", SLICED)
    elif entry == "write":  # an import's rejects
        storage.write(f"file://{tmp_path}/items/1/7.csv", SLICED)
    else:  # a resume copies the previous owner's checkpointed prefix
        first = upload(tmp_path)
        digests = [[len(SLICED), first.write_part(bytearray(SLICED))]]
        location = storage.parse(f"file://{tmp_path}/items/1/7.csv")
        second = storage.resume_upload(location, "", "b2-y", first.state(), part_size=1024,
                                       digests=digests)
        second.finish()
    return (tmp_path / "items" / "1" / "7.csv").read_bytes()


@pytest.mark.parametrize("entry", ["create", "write", "inherit"])
def test_every_local_file_write_goes_to_the_kernel_in_slices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """Whatever writes a file:// object's bytes (a part, a whole object created
    or written at once, the prefix a resume copies) hands the kernel at most
    WRITE_SLICE bytes a call: the same mechanism as a part's (storage.write_at)."""
    storage.trust_root(f"file://{tmp_path}")
    sizes: list[int] = []
    real = os.pwrite

    def recording(fd: int, data: Any, offset: int) -> int:
        sizes.append(len(data))
        return real(fd, data, offset)

    monkeypatch.setattr(storage.os, "pwrite", recording)
    monkeypatch.setattr(storage.os, "write", lambda *_: pytest.fail("os.write: not sliced"))
    assert _write_through(entry, tmp_path) == SLICED
    assert sizes and max(sizes) <= storage.WRITE_SLICE
    assert sum(sizes) >= len(SLICED)
