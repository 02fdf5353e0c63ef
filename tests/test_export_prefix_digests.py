"""``file://`` exports checkpoint prefix digests (``prefix:`` and the SHA-256 of
the object's bytes up to the end of each part): the object's running hash gives
every part's digest, so each part is hashed once while streaming. What must
not change with that: the bytes (a plain COPY's), resumability after a kill
between a part's write and its checkpoint, durability before a checkpoint, and
every check against the digests (a resume's inherited prefix, the read-back,
the deletion of a job's own object), for prefix digests, part digests (an
earlier release's checkpoint) and a list holding both (such a checkpoint
continued by this release)."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage, upload_file
from pgjobs.poller.storage import CannotResume, Mismatch, PartDigests
from tests.support import (
    expire_lease,
    job,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
PARTS = [b"first part\n", b"", b"x" * 70_000, b"y" * 3, b"z" * 1_500_000, b"last\n"]
WHOLE = b"".join(PARTS)
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"
PREFIX = "prefix:"  # the checkpoint's form of a prefix digest (upload.PREFIX), spelled out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prefixes(parts: list[bytes]) -> list[list[Any]]:
    """The prefix digests of ``parts``, as a file:// export checkpoints them."""
    out, seen = [], b""
    for part in parts:
        seen += part
        out.append([len(part), PREFIX + sha(seen)])
    return out


def location(tmp_path: Path) -> storage.Location:
    storage.trust_root(f"file://{tmp_path}")
    return storage.parse(f"file://{tmp_path}/items/1/7.csv")


def new_upload(tmp_path: Path, token: str = "a1-x", state: dict[str, Any] | None = None,
               digests: list[Any] | None = None, prefix: bool = True) -> Any:
    return storage.resume_upload(location(tmp_path), "", token, state, part_size=1024,
                                 digests=[] if digests is None else digests,
                                 prefix_digests=prefix)


def test_parts_get_prefix_digests_and_are_hashed_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part's digest is the object's SHA-256 up to its end; every byte is
    hashed once (no separate pass for the part's own digest); finish gives
    the object's size and SHA-256."""
    counted = [0]
    real = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"", inner: Any = None) -> None:
            self._inner = inner if inner is not None else real()
            if data:
                self.update(data)

        def update(self, data: Any) -> None:
            counted[0] += len(data)
            self._inner.update(data)

        def copy(self) -> Counting:
            return Counting(inner=self._inner.copy())

        def hexdigest(self) -> str:
            return str(self._inner.hexdigest())

    monkeypatch.setattr(upload_file, "hashlib", SimpleNamespace(sha256=Counting))
    up = new_upload(tmp_path)
    digests = [[len(p), up.write_part(bytearray(p))] for p in PARTS]
    assert digests == prefixes(PARTS)
    assert up.finish() == (len(WHOLE), sha(WHOLE))
    assert counted[0] == len(WHOLE)


@pytest.mark.parametrize("boundary", range(len(PARTS) + 1))
@pytest.mark.parametrize("earlier", ["prefix", "parts"])
def test_a_resume_at_any_boundary_is_checked_and_gives_the_objects_bytes(
        tmp_path: Path, boundary: int, earlier: str) -> None:
    """An owner writes the parts up to ``boundary`` and dies; the next inherits
    its file, checked against the digests it recorded (prefix digests, or an
    earlier release's part digests), and writes the rest with prefix digests.
    The object, its SHA-256, and the read-back against the (possibly mixed)
    digests are exact; a flipped byte or a missing byte of the inherited
    prefix is refused (the export then starts over)."""
    first = new_upload(tmp_path, prefix=earlier == "prefix")
    digests = [[len(p), first.write_part(bytearray(p))] for p in PARTS[:boundary]]
    if earlier == "parts":
        assert all(d[1] == sha(p) for d, p in zip(digests, PARTS, strict=False))
    state = first.state()
    second = new_upload(tmp_path, "b2-y", state, digests)
    digests += [[len(p), second.write_part(bytearray(p))] for p in PARTS[boundary:]]
    assert second.finish() == (len(WHOLE), sha(WHOLE))
    loc = location(tmp_path)
    assert Path(loc.path).read_bytes() == WHOLE
    assert storage.check_object(loc, digests) == len(WHOLE)
    assert storage.hash_object(loc, digests) == (len(WHOLE), sha(WHOLE))

    inherited = sum(len(p) for p in PARTS[:boundary])
    if not inherited:
        return
    for damage in ("flip", "short"):
        third = new_upload(tmp_path, "c3-z", None, prefix=earlier == "prefix")
        for part in PARTS[:boundary]:
            third.write_part(bytearray(part))
        tmp = third.state()["tmp"]
        with open(tmp, "r+b") as handle:
            if damage == "flip":
                handle.seek(inherited - 1)
                last = handle.read(1)
                handle.seek(inherited - 1)
                handle.write(bytes([last[0] ^ 1]))
            else:
                handle.truncate(inherited - 1)
        with pytest.raises(CannotResume):
            new_upload(tmp_path, "d4-w", third.state(), digests[:boundary])


def mixed_digests() -> list[list[Any]]:
    """The first three parts as an earlier release checkpointed them (their own
    SHA-256), the rest as this one does (prefix digests)."""
    return [[len(p), sha(p)] for p in PARTS[:3]] + prefixes(PARTS)[3:]


@pytest.mark.parametrize("kind", ["prefix", "parts", "mixed"])
def test_the_read_back_refuses_any_other_bytes(tmp_path: Path, kind: str) -> None:
    """The read-back (check_object, hash_object, the deletion of a job's own
    object) against prefix, part or mixed digests accepts exactly the streamed
    bytes: a byte changed in any part, one byte more or fewer, and a part's
    bytes moved across a boundary are refused, and such an object is not
    deleted."""
    digests = {"prefix": prefixes(PARTS), "parts": [[len(p), sha(p)] for p in PARTS],
               "mixed": mixed_digests()}[kind]
    loc = location(tmp_path)
    path = Path(loc.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(WHOLE)
    assert storage.check_object(loc, digests) == len(WHOLE)
    assert storage.hash_object(loc, digests) == (len(WHOLE), sha(WHOLE))
    check = PartDigests(digests)
    check.update(WHOLE)
    assert (check.finish(), check.hexdigest()) == (len(WHOLE), sha(WHOLE))

    ends = [sum(len(p) for p in PARTS[:i + 1]) for i in range(len(PARTS))]
    wrong = [WHOLE[:end - 1] + bytes([WHOLE[end - 1] ^ 1]) + WHOLE[end:]
             for end in sorted(set(ends)) if end]
    wrong += [WHOLE + b"!", WHOLE[:-1],
              # a byte more in part 1, the last one less: the same size
              WHOLE[:len(PARTS[0])] + b"x" + WHOLE[len(PARTS[0]):-1]]
    for data in wrong:
        path.write_bytes(data)
        with pytest.raises(Mismatch):
            storage.check_object(loc, digests)
        with pytest.raises(Mismatch):
            storage.hash_object(loc, digests)
        assert storage.delete_streamed(loc.uri, digests) is False
        assert path.read_bytes() == data
    path.write_bytes(WHOLE)
    assert storage.delete_streamed(loc.uri, digests) is True
    assert not path.exists()


def test_a_part_is_durable_before_write_part_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With prefix digests too, fdatasync runs beside the hashing and
    write_part returns only once it has ended: the checkpoint that follows
    names a durable part."""
    synced: list[int] = []
    hashed = threading.Event()
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        hashed.wait(2)  # let the hashing run first: a write_part not waiting returns
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(upload_file.os, "fdatasync", slow_sync)
    up = new_upload(tmp_path)
    real_hash = up._hash

    class Hash:  # the running hash: hashing done is the cue for the sync to end
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def copy(self) -> Hash:
            return Hash(self._inner.copy())

        def update(self, data: Any) -> None:
            self._inner.update(data)
            hashed.set()

        def hexdigest(self) -> str:
            return str(self._inner.hexdigest())

    up._hash = Hash(real_hash)
    for number, part in enumerate(PARTS, start=1):
        hashed.clear()
        up.write_part(bytearray(part))
        assert len(synced) == number


def test_killed_between_a_parts_write_and_its_checkpoint_resumes_to_the_copys_bytes(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """A worker killed after a part is written and fsynced, before the
    heartbeat that checkpoints it: the next worker resumes from the last
    checkpoint (the file holds more than it records), writes that part again,
    and the object is the plain COPY's bytes, its recorded SHA-256 theirs and
    each checkpointed digest the object's SHA-256 up to that part's end."""
    make_items(conn, rows=900)
    expected = plain_copy(conn, REFERENCE)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 5, "part_size": 1024})
    # Each part waits between its write and its checkpoint: the worker is
    # stopped (SIGSTOP) in such a wait after a few checkpointed parts, seen
    # there while it cannot move on, then killed.
    first = start_worker(dsn, local_dir, "--once", "--lease", "120s", delays="uploaded=0.5")

    def written_ahead() -> bool:
        ck = job(conn, job_id)["checkpoint"] or {}
        tmp = (ck.get("upload") or {}).get("tmp")
        return bool(tmp) and ck.get("parts", 0) >= 2 and os.path.exists(tmp) \
            and os.path.getsize(tmp) > int(ck["bytes"])

    def stopped_ahead() -> bool:
        if not written_ahead():
            return False
        first.send_signal(signal.SIGSTOP)
        if written_ahead():
            return True
        first.send_signal(signal.SIGCONT)
        return False

    try:
        wait_for(stopped_ahead, timeout=60, what="a part written and not yet checkpointed")
    finally:
        first.kill()
        first.communicate(timeout=10)
    ck = job(conn, job_id)["checkpoint"]
    assert os.path.getsize(ck["upload"]["tmp"]) > ck["bytes"]
    expire_lease(conn, job_id)
    worker = start_worker(dsn, local_dir, "--once")
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    data = object_bytes(row["result"])
    assert data == expected
    assert row["result"]["sha256"] == sha(expected)
    history = row["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # resumed, not restarted
    digests = row["checkpoint"]["digests"]
    assert sum(d[0] for d in digests) == len(data)
    seen = 0
    for size, digest in digests:
        seen += size
        assert digest == PREFIX + sha(data[:seen])


def test_a_whole_export_records_prefix_digests_of_the_copys_bytes(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An uninterrupted file:// export of many parts: the object is the plain
    COPY's bytes and its checkpoint's digests are its prefixes' SHA-256; its
    read-back checks them in runs at once (the writer's hashes), not in one
    stream."""

    def one_stream(*_: Any) -> None:
        raise AssertionError("read back in one stream")

    monkeypatch.setattr(storage, "_check_spans_prefixed", one_stream)
    make_items(conn, rows=900)
    outcome = run_export(dsn, submit_export(conn, "1", {}, {"chunk_rows": 5, "part_size": 1024}),
                         local_dir)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    data = object_bytes(outcome.result)
    assert data == plain_copy(conn, REFERENCE)
    digests = job(conn, outcome.job_id)["checkpoint"]["digests"]
    assert len(digests) == outcome.result["parts"] >= 4
    ends = [sum(d[0] for d in digests[:i + 1]) for i in range(len(digests))]
    assert [d[1] for d in digests] == [PREFIX + sha(data[:end]) for end in ends]


@pytest.mark.parametrize("digests", [[], [[0, PREFIX + sha(b"")]], [[0, sha(b"")]]],
                         ids=["none", "prefix", "part"])
def test_an_empty_object_reads_back_against_its_digests(
        tmp_path: Path, digests: list[list[Any]]) -> None:
    """An empty object (no part, or one empty part of either kind) reads back
    as itself, and a byte there is refused."""
    for whole in (True, False):
        check = PartDigests(digests, whole=whole)
        check.update(b"")
        assert check.finish() == 0
    loc = location(tmp_path)
    path = Path(loc.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert storage.check_object(loc, digests) == 0
    assert storage.hash_object(loc, digests) == (0, sha(b""))
    path.write_bytes(b"!")
    with pytest.raises(Mismatch):
        storage.check_object(loc, digests)


@pytest.mark.parametrize("earlier", ["prefix", "parts", "none"])
def test_the_writers_hashes_let_the_read_back_check_runs_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: str) -> None:
    """The upload keeps its running hash before each part (written or inherited,
    after prefix or part digests): with them the read-back checks the object
    in two runs at once, never in one stream, and still refuses a byte
    changed in any part, one byte more or fewer; hashes that are not the
    streamed bytes' refuse the object too."""
    first = new_upload(tmp_path, prefix=earlier == "prefix")
    boundary = 0 if earlier == "none" else 3
    digests = [[len(p), first.write_part(bytearray(p))] for p in PARTS[:boundary]]
    second = new_upload(tmp_path, "b2-y", first.state() if boundary else None, digests)
    digests += [[len(p), second.write_part(bytearray(p))] for p in PARTS[boundary:]]
    assert second.finish() == (len(WHOLE), sha(WHOLE))
    assert len(second.hashes) == len(digests)

    def one_stream(*_: Any) -> None:
        raise AssertionError("read back in one stream")

    monkeypatch.setattr(storage, "_check_spans_prefixed", one_stream)
    loc = location(tmp_path)
    path = Path(loc.path)
    assert storage.check_object(loc, storage.Streamed(digests, second.hashes)) == len(WHOLE)
    ends = [sum(len(p) for p in PARTS[:i + 1]) for i in range(len(PARTS))]
    wrong = [WHOLE[:end - 1] + bytes([WHOLE[end - 1] ^ 1]) + WHOLE[end:]
             for end in sorted(set(ends)) if end]
    for data in [*wrong, WHOLE + b"!", WHOLE[:-1]]:
        path.write_bytes(data)
        with pytest.raises(Mismatch):
            storage.check_object(loc, storage.Streamed(digests, second.hashes))
    path.write_bytes(WHOLE)
    other = [hashlib.sha256(b"not what was streamed") for _ in second.hashes]
    if any(d[1].startswith(PREFIX) for d in digests[1:]):
        with pytest.raises(Mismatch):
            storage.check_object(loc, storage.Streamed(digests, other))
