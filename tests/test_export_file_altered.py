"""A ``file://`` export whose file is altered in place after its bytes were
written never ends ``succeeded``: whatever the moment (a part already written
to the temporary file while later parts stream, the temporary file once every
part is in, the object right after it was linked at its name) and wherever
the byte sits (first, middle, last).

The alteration keeps everything a ``stat`` shows but the change time: the same
inode, the same size, the modification time put back. So what the guarantee
rests on is a read of the bytes after they are at the object's name (the
read-back), never a digest of the buffer handed to ``pwrite`` (computed while
writing: it cannot see a later change) nor a comparison of inode, size or
modification time. A faster export that dropped the read-back for either would
fail here. The store behaving again, the retry ends ``succeeded`` with the
plain COPY's bytes.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage, upload_file
from tests.support import ITEMS_TENANT_1, make_items, plain_copy, run_export, submit_export

Conn = psycopg.Connection[Any]

MOMENTS = ("earlier-part-while-streaming", "temporary-before-link", "object-after-link")
PLACES = ("first", "middle", "last")


def _flip_in_place(path: str, place: str) -> None:
    """Change one byte of ``path`` where ``place`` says, through the same inode,
    its size kept and its modification time put back."""
    before = os.stat(path)
    assert before.st_size > 0, path
    offset = {"first": 0, "middle": before.st_size // 2, "last": before.st_size - 1}[place]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)


def _alter(monkeypatch: pytest.MonkeyPatch, moment: str, place: str) -> list[str]:
    """Alter the export's file once, at ``moment``; the paths altered."""
    done: list[str] = []
    real_write, real_finish = upload_file.LocalUpload.write_part, upload_file.LocalUpload.finish

    def write_part(self: Any, data: bytes | bytearray) -> str:
        digest = real_write(self, data)
        # Parts 1 and 2 written (checkpointed or not): part 1 changes while
        # part 3 and on are still to stream.
        if moment == "earlier-part-while-streaming" and not done and len(self.hashes) == 2:
            done.append(self._tmp)
            _flip_in_place(self._tmp, place)
        return digest

    def finish(self: Any) -> tuple[int, str]:
        if moment == "temporary-before-link" and not done:
            done.append(self._tmp)
            _flip_in_place(self._tmp, place)
        result = real_finish(self)
        if moment == "object-after-link" and not done:
            done.append(self.location.path)
            _flip_in_place(self.location.path, place)
        return result

    monkeypatch.setattr(upload_file.LocalUpload, "write_part", write_part)
    monkeypatch.setattr(upload_file.LocalUpload, "finish", finish)
    return done


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_file_export_altered_in_place_after_writing_never_succeeds(
        conn: Conn, dsn: str, local_dir: str, moment: str, place: str) -> None:
    make_items(conn, rows=400)
    # Parts of 4 KiB: the tenant's rows are several of them.
    job_id = submit_export(conn, "1", {}, {"format": "csv", "chunk_rows": 40,
                                           "part_size": 4096})
    faults = pytest.MonkeyPatch()
    try:
        altered = _alter(faults, moment, place)
        outcome = run_export(dsn, job_id, local_dir)
    finally:
        faults.undo()
    assert altered, "the alteration never ran"
    assert outcome.status != "succeeded", outcome
    row = conn.execute("SELECT status, result FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and row[0] != "succeeded", row
    # The file behaves again: the retry writes the object from the first row.
    if row[0] == "failed":
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    data = storage.read(outcome.result["uri"])
    assert data == plain_copy(conn, ITEMS_TENANT_1)
    assert (len(data), hashlib.sha256(data).hexdigest()) == \
        (outcome.result["bytes"], outcome.result["sha256"])
