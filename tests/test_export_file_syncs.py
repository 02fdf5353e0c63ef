"""What a ``file://`` export makes durable, and when: each part once, by the
``fdatasync`` that ends its ``write_part`` (before the checkpoint that names
it), the folder once after the link, an inherited prefix once after its copy;
a new temporary file is never synced while it is still empty (it holds
nothing a crash could lose: a checkpoint of size 0 resumes as a start over).
The syncs are counted on the export's own files, never timed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage, upload_file
from pgjobs.poller.upload import CannotResume
from tests.support import ITEMS_TENANT_1, make_items, plain_copy, run_export, submit_export

Conn = psycopg.Connection[Any]


def _count_syncs(monkeypatch: pytest.MonkeyPatch, under: str) -> list[tuple[str, str, int]]:
    """Every fsync and fdatasync of a file or folder below ``under`` from now
    on, as (call, path, size when synced), in order."""
    calls: list[tuple[str, str, int]] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def sync(fd: Any, real: Any = real, name: str = name) -> None:
            number = fd if isinstance(fd, int) else fd.fileno()
            path = os.readlink(f"/proc/self/fd/{number}")
            if path.startswith(under):
                calls.append((name, path, os.fstat(number).st_size))
            real(fd)

        monkeypatch.setattr(os, name, sync)
    return calls


def test_a_file_export_syncs_each_part_once_and_no_empty_file(
        conn: Conn, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=400)
    job_id = submit_export(conn, "1", {}, {"format": "csv", "chunk_rows": 40,
                                           "part_size": 4096})
    calls = _count_syncs(monkeypatch, str(tmp_path))
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/exports")
    monkeypatch.undo()
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    parts = outcome.result["parts"]
    assert parts >= 3, outcome.result
    object_path = outcome.result["uri"][len("file://"):]
    folder = os.path.dirname(object_path)
    temporary = [c for c in calls if c[1] not in (folder, object_path)]
    # Each part made durable once, by the fdatasync that ends its write; the
    # temporary file never synced while empty (main synced it at creation).
    assert [c[0] for c in temporary] == ["fdatasync"] * parts, calls
    assert all(size > 0 for _, _, size in temporary), calls
    # Then the folder once, after the link (the object's name durable).
    assert [c[:2] for c in calls if c[1] == folder] == [("fsync", folder)], calls
    data = storage.read(outcome.result["uri"])
    assert data == plain_copy(conn, ITEMS_TENANT_1)
    assert (len(data), hashlib.sha256(data).hexdigest()) == \
        (outcome.result["bytes"], outcome.result["sha256"])


def _upload(tmp_path: Path, token: str, state: dict[str, Any] | None,
            digests: list[Any]) -> Any:
    storage.trust_root(f"file://{tmp_path}")
    location = storage.parse(f"file://{tmp_path}/items/1/7.csv")
    return storage.resume_upload(location, "", token, state, part_size=1024,
                                 digests=digests, prefix_digests=True)


def test_an_inherited_prefix_is_synced_once_before_the_next_part(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed upload copies the previous owner's checkpointed bytes into a
    file of its own: that copy is made durable at once (the previous file is
    removed as the copy ends), before any new part is written."""
    first = _upload(tmp_path, "a1-x", None, [])
    digests = [[len(p), first.write_part(bytearray(p))] for p in (b"one\n", b"two\n")]
    calls = _count_syncs(monkeypatch, str(tmp_path))
    second = _upload(tmp_path, "a2-y", first.state(), digests)
    assert [(c[0], c[2]) for c in calls] == [("fsync", 8)], calls
    second.write_part(bytearray(b"three\n"))
    assert [(c[0], c[2]) for c in calls] == [("fsync", 8), ("fdatasync", 14)], calls
    monkeypatch.undo()
    assert second.finish() == (14, hashlib.sha256(b"one\ntwo\nthree\n").hexdigest())


def test_a_checkpoint_of_an_empty_file_lost_in_a_crash_starts_over(tmp_path: Path) -> None:
    """The empty temporary file a crash lost (never synced): a checkpoint that
    names it with no part resumes as a start over, never as an upload that
    would go on from bytes it does not have."""
    first = _upload(tmp_path, "a1-x", None, [])
    state = first.state()
    assert state["size"] == 0
    os.unlink(state["tmp"])  # what a crash of the machine may leave
    with pytest.raises(CannotResume):
        _upload(tmp_path, "a2-y", state, [])
    # The start over: a new upload from the first byte.
    fresh = _upload(tmp_path, "a2-z", None, [])
    fresh.write_part(bytearray(b"one\n"))
    assert fresh.finish() == (4, hashlib.sha256(b"one\n").hexdigest())
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path / "items" / "1"))
    assert upload_file.LocalUpload is type(fresh)
