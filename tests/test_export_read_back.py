"""The read-back of an export (the check that the stored object holds, part by
part, what was streamed, before the job completes) reads the object in runs of
consecutive parts at once, each run hashed by a thread of its own: ``file://``
in two halves, ``s3://`` in up to ``PGJOBS_S3_READ_STREAMS`` ranged GETs. It is
the tail of an export, with nothing left to overlap it. It must refuse what the
one-stream read-back refuses: any changed byte in any part, a missing or an
extra tail, a part of another attempt, an object that is gone."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage

CHANGES = ["none", "first-part", "middle-part", "last-byte", "shorter", "longer",
           "other-attempt", "other-attempt-longer", "gone"]


def _parts() -> list[bytes]:
    return [bytes([i]) * (1000 + 37 * i) for i in range(7)]


def _stored(parts: list[bytes], change: str) -> bytes | None:
    """The object's bytes after ``change`` (None: no object at all)."""
    data = bytearray(b"".join(parts))
    where = {"first-part": 5, "middle-part": len(data) // 2, "last-byte": len(data) - 1}
    if change in where:
        data[where[change]] ^= 1
    elif change == "shorter":
        del data[-1:]
    elif change == "longer":
        data += b"x"
    elif change.startswith("other-attempt"):
        # Part 4 as another attempt wrote it: other rows, as long or longer.
        other = bytes([99]) * (len(parts[3]) + (10 if change.endswith("longer") else 0))
        data = bytearray(b"".join(parts[:3] + [other] + parts[4:]))
    return None if change == "gone" else bytes(data)


def _check(location: storage.Location, digests: list[Any], size: int, change: str) -> None:
    if change == "none":
        assert storage.check_object(location, digests) == size
    elif change == "gone":
        with pytest.raises(storage.CannotResume):
            storage.check_object(location, digests)
    else:
        with pytest.raises(storage.Mismatch):
            storage.check_object(location, digests)


@pytest.mark.parametrize("change", CHANGES)
def test_a_file_read_back_in_two_halves_checks_every_part(tmp_path: Path, change: str) -> None:
    """The read-back of a ``file://`` object hashes its two halves in two threads;
    it refuses what the one-stream read-back refuses."""
    parts = _parts()
    digests = [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]
    path = tmp_path / "object.csv"
    data = _stored(parts, change)
    if data is not None:
        path.write_bytes(data)
    _check(storage.parse(f"file://{path}"), digests, sum(map(len, parts)), change)


@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The S3 read-back cut into runs of small parts (as it cuts large ones), its
    ranged GETs recorded as (start, end)."""
    monkeypatch.setattr(storage, "S3_STREAM_MIN", 1)
    monkeypatch.setenv("PGJOBS_S3_READ_STREAMS", "3")
    asked: list[tuple[int, int]] = []
    open_range = s3.Client.open_range

    def record(self: s3.Client, key: str, start: int, end: int) -> Any:
        asked.append((start, end))
        return open_range(self, key, start, end)

    monkeypatch.setattr(s3.Client, "open_range", record)
    return asked


@pytest.mark.parametrize("change", CHANGES)
def test_an_s3_read_back_in_ranged_gets_at_once_checks_every_part(
        bucket: str, ranges: list[tuple[int, int]], change: str) -> None:
    """The read-back of an ``s3://`` object reads runs of parts by ranged GETs on
    threads of their own; each reply's stated size must be the checkpointed
    bytes. It refuses what the one-stream read-back refuses."""
    parts = _parts()
    digests = [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]
    location = storage.object_location(bucket, f"{uuid.uuid4().hex}.csv")
    data = _stored(parts, change)
    if data is not None:
        storage.write(location.uri, data)
    _check(location, digests, sum(map(len, parts)), change)
    if change == "none":  # three runs of whole parts, together the whole object
        bounds = [0] + [sum(map(len, parts[:i + 1])) for i in range(len(parts))]
        cuts = sorted(ranges)
        assert len(cuts) == 3
        assert [start for start, _ in cuts] == [0] + [end for _, end in cuts[:-1]]
        assert cuts[-1][1] == bounds[-1]
        assert all(start in bounds and end in bounds for start, end in cuts)


def test_an_s3_read_back_refuses_an_object_of_another_size_in_any_run(
        bucket: str, ranges: list[tuple[int, int]]) -> None:
    """Every ranged GET states the object's size: a run that finds its bytes
    intact still fails the check when the object has a tail the parts do not."""
    parts = _parts()
    digests = [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]
    location = storage.object_location(bucket, f"{uuid.uuid4().hex}.csv")
    storage.write(location.uri, b"".join(parts) + b"tail" * 1000)
    with pytest.raises(storage.Mismatch, match="more bytes"):
        storage.check_object(location, digests)
    storage.write(location.uri, b"".join(parts[:-1]))  # the last part missing
    with pytest.raises(storage.Mismatch, match="fewer bytes"):
        storage.check_object(location, digests)


@pytest.mark.parametrize("sizes", [[5], [0, 5], [5, 0, 0], [1, 1, 1, 1, 1, 1], [100, 1, 1],
                                   [1, 1, 100], [0, 0, 0], [3, 0, 4, 0, 5, 0]])
@pytest.mark.parametrize("streams", [1, 2, 3, 4, 8])
def test_runs_of_parts_cover_every_part_once_in_order(sizes: list[int], streams: int) -> None:
    expected = [(size, "") for size in sizes]
    runs = storage._spans(expected, streams)
    assert 1 <= len(runs) <= streams
    assert all(len(run) for run in runs)
    assert [i for run in runs for i in run] == list(range(len(sizes)))


@pytest.mark.parametrize("change", ["none", "middle-part", "longer"])
def test_an_s3_store_that_ignores_ranges_is_read_back_in_one_stream(
        bucket: str, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """A reply without ``Content-Range`` (the store sent the whole object) is not
    taken as a run's bytes: the object is read back in one stream instead, with
    the same checks."""
    monkeypatch.setattr(storage, "S3_STREAM_MIN", 1)
    monkeypatch.setenv("PGJOBS_S3_READ_STREAMS", "3")
    open_range = s3.Client.open_range

    def whole(self: s3.Client, key: str, start: int, end: int) -> Any:
        return None, open_range(self, key, start, end)[1]

    monkeypatch.setattr(s3.Client, "open_range", whole)
    parts = _parts()
    digests = [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]
    location = storage.object_location(bucket, f"{uuid.uuid4().hex}.csv")
    data = _stored(parts, change)
    assert data is not None
    storage.write(location.uri, data)
    _check(location, digests, sum(map(len, parts)), change)


def test_read_streams_default_to_several_on_aws_and_one_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "PGJOBS_S3_READ_STREAMS"):
        monkeypatch.delenv(name, raising=False)
    assert s3.read_streams() == s3.DEFAULT_READ_STREAMS > 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert s3.read_streams() == 1
    monkeypatch.setenv("PGJOBS_S3_READ_STREAMS", "6")
    assert s3.read_streams() == 6
