"""Every list of checkpointed digests an export may hold, checked by every
check that reads one: part digests (each part's own SHA-256, an earlier
release's), prefix digests (``prefix:`` and the object's SHA-256 up to the end
of the part, this release's ``file://``) and any mix of them, in any order.
Each check (a resume's inherited prefix, the read-back in one stream or in
runs from the writer's hashes, ``hash_object`` after a crash, the deletion of
a job's own object) accepts exactly the streamed bytes and refuses anything
else, and a list that is not the streamed bytes' (digests out of order,
duplicated, of the wrong length or kind) refuses even those bytes: nothing
that is not the job's is accepted or deleted."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from pgjobs.poller import storage
from pgjobs.poller.storage import CannotResume, Mismatch, PartDigests

PREFIX = "prefix:"  # upload.PREFIX, spelled out
# A zero-length part first, inside and last; parts that are not cut alike.
PARTS = [b"", b"alpha\n", b"", b"b" * 70_000, b"c" * 5, b"d" * 300_001, b"e\n", b""]
WHOLE = b"".join(PARTS)
ENDS = list(itertools.accumulate(len(p) for p in PARTS))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests_of(kinds: str) -> list[list[Any]]:
    """The digests of PARTS, ``kinds`` saying for each part: ``p`` a prefix
    digest, ``d`` its own digest."""
    return [[len(part), PREFIX + sha(WHOLE[:end]) if kind == "p" else sha(part)]
            for part, end, kind in zip(PARTS, ENDS, kinds, strict=True)]


def writers_hashes() -> list[Any]:
    """What the writer keeps (Upload.hashes): its hash of the bytes before each part."""
    return [hashlib.sha256(WHOLE[:end - len(part)]) for part, end in zip(PARTS, ENDS,
                                                                         strict=True)]


# Every part of one kind, each alone of the other kind, both orders of a
# half-and-half split, and alternations.
KINDS = sorted({"p" * len(PARTS), "d" * len(PARTS),
                *("".join("d" if j == i else "p" for j in range(len(PARTS)))
                  for i in range(len(PARTS))),
                *("".join("p" if j == i else "d" for j in range(len(PARTS)))
                  for i in range(len(PARTS))),
                "pppp" + "dddd", "dddd" + "pppp", "pdpdpdpd", "dpdpdpdp"})


def location(tmp_path: Path) -> storage.Location:
    storage.trust_root(f"file://{tmp_path}")
    return storage.parse(f"file://{tmp_path}/items/1/7.csv")


def damaged() -> list[bytes]:
    """Other bytes: a byte flipped at each part's end and start, one byte more
    or fewer, bytes moved across a boundary (the same size), two parts of
    the same size swapped, nothing at all."""
    out: list[bytes] = []
    for part, end in zip(PARTS, ENDS, strict=True):
        if part:
            for at in (end - len(part), end - 1):
                out.append(WHOLE[:at] + bytes([WHOLE[at] ^ 1]) + WHOLE[at + 1:])
    out += [WHOLE + b"!", WHOLE[:-1], b"",
            WHOLE[:ENDS[1]] + b"x" + WHOLE[ENDS[1]:-1],
            WHOLE[:ENDS[1] - 1] + WHOLE[ENDS[1]:] + b"\n"]
    # the "d" run and the "c" run swapped is a different size: swap two equal halves
    half = ENDS[3] - len(PARTS[3]) // 2
    out.append(WHOLE[:ENDS[2]] + WHOLE[half:ENDS[3]] + WHOLE[ENDS[2]:half] + WHOLE[ENDS[3]:])
    return [data for data in out if data != WHOLE]


def accepted(loc: storage.Location, digests: list[list[Any]]) -> list[str]:
    """The checks that accept the object at ``loc`` against ``digests`` (every
    check the object meets: one stream, runs from the writer's hashes, the
    hash after a crash, a part-by-part stream)."""
    data = Path(loc.path).read_bytes()
    ok: list[str] = []
    for whole in (True, False):
        check = PartDigests(digests, whole=whole)
        try:
            check.update(data)
            check.finish()
        except Mismatch:
            continue
        ok.append(f"PartDigests(whole={whole})")
    for name, given in (("check_object", digests),
                        ("check_object(hashes)", storage.Streamed(digests, writers_hashes()))):
        try:
            storage.check_object(loc, given)
        except Mismatch:
            continue
        ok.append(name)
    try:
        size, digest = storage.hash_object(loc, digests)
    except Mismatch:
        pass
    else:
        assert (size, digest) == (len(data), sha(data))
        ok.append("hash_object")
    return ok


ALL = ["PartDigests(whole=True)", "PartDigests(whole=False)", "check_object",
       "check_object(hashes)", "hash_object"]


@pytest.mark.parametrize("kinds", KINDS)
def test_any_mix_of_digest_kinds_accepts_exactly_the_streamed_bytes(
        tmp_path: Path, kinds: str) -> None:
    """Prefix and part digests in any order: every check accepts the streamed
    bytes (and its hash is theirs), refuses every other object, and the
    deletion by these digests removes the streamed bytes and nothing else."""
    digests = digests_of(kinds)
    loc = location(tmp_path)
    path = Path(loc.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(WHOLE)
    assert accepted(loc, digests) == ALL
    for data in damaged():
        path.write_bytes(data)
        assert accepted(loc, digests) == [], len(data)
        assert storage.delete_streamed(loc.uri, digests) is False
        assert path.read_bytes() == data
    path.write_bytes(WHOLE)
    assert storage.delete_streamed(loc.uri, digests) is True
    assert not path.exists()


@pytest.mark.parametrize("kinds", KINDS)
def test_a_resume_from_any_mix_inherits_exactly_the_streamed_bytes(
        tmp_path: Path, kinds: str) -> None:
    """A previous owner's temporary file checked against a checkpoint of any mix
    of digests: the streamed bytes are inherited and the object finishes as
    them (its hash theirs, its read-back from the new owner's hashes exact);
    any other bytes (changed, fewer) are refused, so the export starts over."""
    digests = digests_of(kinds)
    loc = location(tmp_path)
    previous = Path(loc.path).parent / ".7.csv.pgjobs-a1-x.tmp"
    previous.parent.mkdir(parents=True)
    for data in [WHOLE, WHOLE + b"tail a stale writer added", *damaged()]:
        previous.write_bytes(data)
        state = {"tmp": str(previous), "size": len(WHOLE)}
        if data[:len(WHOLE)] != WHOLE:
            with pytest.raises(CannotResume):
                storage.resume_upload(loc, "", "b2-y", state, digests=digests,
                                      prefix_digests=True)
            continue
        upload = storage.resume_upload(loc, "", "b2-y", state, digests=digests,
                                       prefix_digests=True)
        last = upload.write_part(bytearray(b"more\n"))
        assert last == PREFIX + sha(WHOLE + b"more\n")
        assert upload.finish() == (len(WHOLE) + 5, sha(WHOLE + b"more\n"))
        assert Path(loc.path).read_bytes() == WHOLE + b"more\n"
        every = [*digests, [5, last]]
        assert storage.check_object(loc, storage.Streamed(every, upload.hashes)) \
            == len(WHOLE) + 5
        Path(loc.path).unlink()


def wrong_lists() -> dict[str, list[list[Any]]]:
    """Lists that are not the streamed bytes' digests, each beside PARTS."""
    good = digests_of("p" * len(PARTS))
    out: dict[str, list[list[Any]]] = {}
    swapped = [list(d) for d in good]
    swapped[3][1], swapped[5][1] = swapped[5][1], swapped[3][1]
    out["out of order"] = swapped
    dup = [list(d) for d in good]
    dup[5][1] = dup[3][1]
    out["duplicated"] = dup
    out["short hex"] = [[s, d[:-1]] if i == 5 else [s, d] for i, (s, d) in enumerate(good)]
    out["long hex"] = [[s, d + "0"] if i == 5 else [s, d] for i, (s, d) in enumerate(good)]
    out["upper case"] = [[s, PREFIX + d[len(PREFIX):].upper()] if i == 5 else [s, d]
                         for i, (s, d) in enumerate(good)]
    out["empty prefix"] = [[s, PREFIX] if i == 5 else [s, d] for i, (s, d) in enumerate(good)]
    # A part's own digest labelled a prefix digest, and an object's prefix
    # hash unlabelled (read as the part's own digest).
    out["part digest as prefix"] = [[s, PREFIX + sha(PARTS[i])] if i == 5 else [s, d]
                                    for i, (s, d) in enumerate(good)]
    out["prefix as part digest"] = [[s, d[len(PREFIX):]] if i == 5 else [s, d]
                                    for i, (s, d) in enumerate(good)]
    # Sizes moved between parts (the same total), and one part fewer.
    moved = [list(d) for d in good]
    moved[3][0], moved[4][0] = moved[3][0] - 1, moved[4][0] + 1
    out["boundary moved"] = moved
    out["a part fewer"] = [list(d) for d in good[:5]] + [[len(PARTS[5]) + len(PARTS[6]),
                                                           good[6][1]], good[7]]
    out["a part more"] = [*[list(d) for d in good], [0, PREFIX + sha(WHOLE)]]
    return out


@pytest.mark.parametrize("name", sorted(wrong_lists()))
def test_a_list_that_is_not_the_streamed_bytes_refuses_them(tmp_path: Path, name: str) -> None:
    """Digests out of order, duplicated, of the wrong length or case, of the
    wrong kind, or cut at a moved boundary are refused by every check, with
    the streamed bytes there or not, and no object is deleted by them (a
    list cut elsewhere that still describes the streamed bytes alone
    accepts them)."""
    digests = wrong_lists()[name]
    loc = location(tmp_path)
    path = Path(loc.path)
    path.parent.mkdir(parents=True)
    for data in [WHOLE, *damaged()]:
        path.write_bytes(data)
        if name in ("a part more", "a part fewer") and data == WHOLE:
            # The same bytes cut at other boundaries (an empty part more, two
            # parts as one): a prefix digest covers the same object bytes.
            assert accepted(loc, digests) == ALL
            continue
        assert accepted(loc, digests) == [], (name, len(data))
        assert storage.delete_streamed(loc.uri, digests) is False
        assert path.read_bytes() == data


def test_a_crash_after_the_final_link_accepts_only_the_streamed_bytes(tmp_path: Path) -> None:
    """A worker killed after its object was linked into place, before the
    checkpoint says so: the next owner cannot resume the upload (its
    temporary file went with the link) and accepts the object only as the
    streamed bytes (hash_object against the prefix digests); an object
    swapped for another of the same size, or extended, is refused and not
    deleted by the digests."""
    loc = location(tmp_path)
    upload = storage.resume_upload(loc, "", "a1-x", None, digests=[], prefix_digests=True)
    digests = [[len(p), upload.write_part(bytearray(p))] for p in PARTS]
    assert digests == digests_of("p" * len(PARTS))
    state = upload.state()
    assert upload.finish() == (len(WHOLE), sha(WHOLE))
    with pytest.raises(CannotResume):
        storage.resume_upload(loc, "", "b2-y", state, digests=digests, prefix_digests=True)
    assert storage.hash_object(loc, digests) == (len(WHOLE), sha(WHOLE))
    path = Path(loc.path)
    for data in damaged():
        other = path.with_name("other")
        other.write_bytes(data)
        os.replace(other, path)  # swapped at the key after the link
        with pytest.raises(Mismatch):
            storage.hash_object(loc, digests)
        with pytest.raises(Mismatch):
            storage.check_object(loc, storage.Streamed(digests, upload.hashes))
        assert storage.delete_streamed(loc.uri, digests) is False
        assert path.read_bytes() == data


@pytest.mark.parametrize("kinds", ["p" * len(PARTS), "d" * len(PARTS), "ddddpppp"])
def test_the_read_back_reads_every_byte_from_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kinds: str) -> None:
    """The writer's hashes only say where a run's hash starts: the read-back
    still reads each byte of the object from the file, once."""
    loc = location(tmp_path)
    path = Path(loc.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(WHOLE)
    read = [0]
    real = os.preadv

    def counting(fd: int, buffers: Any, offset: int) -> int:
        got = real(fd, buffers, offset)
        read[0] += got
        return got

    monkeypatch.setattr(storage.os, "preadv", counting)
    assert storage.check_object(loc, storage.Streamed(digests_of(kinds),
                                                      writers_hashes())) == len(WHOLE)
    assert read[0] == len(WHOLE)
