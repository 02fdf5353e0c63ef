"""Round 39 adversarial pass over "jobs must not lose or leak": a job that says
``succeeded`` did exactly what it says (h10).

1. A local import source rewritten in place **with the same size** while one
   attempt reads it: the reader checked only the inode and, at the end, the
   size, so the import read old bytes, then new ones, and succeeded with rows
   of two different files (an object store's ranged reads are pinned to the
   ETag the import began with; a local file now is to its modification time,
   as the checkpoint's version between attempts already was).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def _names(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM people WHERE tenant = 1 ORDER BY id")]


def _rewrite_in_place(path: Path, data: bytes, how: str) -> None:
    """Put ``data`` (as long as the file) in place of the file's bytes, the inode
    kept; its modification time moved on by a second (a real rewrite's clock
    tick, without waiting for one)."""
    before = os.stat(path)
    if how == "truncate":  # cp onto it: truncated, then written
        with path.open("wb") as f:
            f.write(data)
    else:  # written over (dd conv=notrunc, an editor saving in place)
        with path.open("r+b") as f:
            f.write(data)
    assert os.stat(path).st_ino == before.st_ino and os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("how", ["truncate", "overwrite"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "csv.gz"])
def test_a_local_source_rewritten_in_place_at_the_same_size_fails_the_job(
        conn: Conn, dsn: str, src: Path, monkeypatch: pytest.MonkeyPatch, how: str,
        fmt: str) -> None:
    """Same size, same inode, other bytes, mid-attempt: the job must not succeed
    with rows of two files."""
    monkeypatch.setattr(storage, "READ_BLOCK", 16 * 1024)

    def source(tag: str) -> bytes:
        if fmt.startswith("csv"):
            body = b"name,age\n" + b"".join(f"{tag}{i:05},{i}\n".encode() for i in range(20000))
        else:
            body = b"".join(f'{{"name": "{tag}{i:05}", "age": {i}}}\n'.encode()
                            for i in range(20000))
        # gzip stored (level 0): two bodies of one length, two streams of one size.
        return gzip.compress(body, compresslevel=0, mtime=0) if fmt.endswith(".gz") else body

    old, new = source("old"), source("new")
    assert len(new) == len(old)
    path = src / f"people.{fmt}"
    path.write_bytes(old)

    def changed(records: int, done: int, total: int | None) -> None:
        if records and not getattr(changed, "once", False):
            changed.once = True  # type: ignore[attr-defined]
            _rewrite_in_place(path, new, how)

    options = {"format": "jsonl"} if fmt == "jsonl" else ({"gzip": True} if fmt.endswith(".gz")
                                                          else None)
    job_id = submit_import(conn, f"file://{path}", "1", options)
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store", batch_bytes=4096,
             on_progress=changed).run()
    row = job(conn, job_id)
    names = _names(conn)
    assert row["status"] == "failed", (row["result"], len(names),
                                       sum(n.startswith("new") for n in names))
    assert "changed while it was read" in row["error"], row["error"]
    assert not any(n.startswith("new") for n in names)
