"""A ``file://`` upload's part (LocalUpload.write_part): written at its own
offset, durable (``fdatasync``) before it returns, hashed while the kernel
writes it, and its digest returned so the exporter does not hash it again. A
part retried after a failed write or ``fdatasync`` replaces what the failed
try left: the object holds each part once, and its size and SHA-256 are the
parts', whatever failed on the way."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
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
