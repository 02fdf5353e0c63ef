"""The read-back of a ``file://`` export (the check that the object holds, part by
part, what was streamed, before the job completes) reads the object in two halves
at once, each hashed by a thread of its own: the tail of an export, with nothing
left to overlap it, on two cores where there are two. It must refuse what the
one-stream read-back refuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pgjobs.poller import storage


@pytest.mark.parametrize("change", ["none", "first-half", "second-half", "last-byte",
                                    "shorter", "longer", "gone"])
def test_a_file_read_back_in_two_halves_checks_every_part(tmp_path: Path, change: str) -> None:
    """The read-back of a ``file://`` object hashes its two halves in two threads;
    it refuses what the one-stream read-back refuses."""
    parts = [bytes([i]) * (1000 + 37 * i) for i in range(7)]
    digests = [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]
    data = bytearray(b"".join(parts))
    where = {"first-half": 5, "second-half": len(data) * 3 // 4, "last-byte": len(data) - 1}
    if change in where:
        data[where[change]] ^= 1
    elif change == "shorter":
        del data[-1:]
    elif change == "longer":
        data += b"x"
    path = tmp_path / "object.csv"
    if change != "gone":
        path.write_bytes(bytes(data))
    location = storage.parse(f"file://{path}")
    if change == "none":
        assert storage.check_object(location, digests) == len(data)
    elif change == "gone":
        with pytest.raises(storage.CannotResume):
            storage.check_object(location, digests)
    else:
        with pytest.raises(storage.Mismatch):
            storage.check_object(location, digests)
