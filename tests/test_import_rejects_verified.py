"""An import never succeeds naming a rejects object that lacks its bytes.

The rejects object (the rejected records, one JSON line each) was created (a
conditional write) and named in ``result.rejects_uri`` without being read
back: a store that acknowledged the write but kept fewer bytes (a proxy
cutting the body, a faulty emulator) left the job ``succeeded`` with records
missing from its rejects, and nothing in the result to check them against.
The object is now read back (size and SHA-256) before the job ends, and the
result records both (``rejects_bytes``, ``rejects_sha256``); a mismatch fails
the attempt retryably, and the retry (the object is recorded as the job's)
writes it again.

On every writable store: ``file://``, ``memory://``, ``s3://`` (moto) and
``az://`` (Azurite, skipped when not installed); the store is made to keep
the first write short.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

STORES = ("file", "memory", "s3", "az")


def _store(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    if kind == "s3":
        return str(request.getfixturevalue("bucket"))
    if kind == "az":
        return str(request.getfixturevalue("az_container"))
    if kind == "memory":
        return f"memory:///rejects-{uuid.uuid4().hex[:12]}/"
    return f"file://{tmp_path}/store"


@pytest.mark.parametrize("kind", STORES)
def test_a_short_rejects_object_never_ends_the_job_succeeded(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    store = _store(request, tmp_path, kind)
    make_people(conn)
    folder = tmp_path / "src"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    (folder / "in.csv").write_bytes(b"name,age\nok,1\nbad,x\nworse,y\n")
    job_id = submit_import(conn, f"file://{folder}/in.csv", "1", {"max_rejects": 5})

    real_create, real_write = storage.create, storage.write
    short: list[str] = []

    def cut(data: bytes, uri: str) -> bytes:
        if uri.endswith(".rejects.jsonl") and not short:
            short.append(uri)
            return data[:-7]  # acknowledged, kept short
        return data

    monkeypatch.setattr(storage, "create", lambda uri, data: real_create(uri, cut(data, uri)))
    monkeypatch.setattr(storage, "write", lambda uri, data: real_write(uri, cut(data, uri)))

    row: dict[str, Any] = {}
    for _ in range(3):
        Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
        row = job(conn, job_id)
        if row["status"] == "succeeded":
            break
        assert row["status"] == "queued", (row["status"], row["error"])
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    assert short, "the rejects object was never written"
    assert row["status"] == "succeeded", row["error"]
    result = row["result"]
    stored = storage.read(result["rejects_uri"])
    assert [line.count(b'"record"') for line in stored.splitlines()] == [1, 1]
    assert stored.endswith(b"\n")
    assert len(stored) == result["rejects_bytes"]
    assert hashlib.sha256(stored).hexdigest() == result["rejects_sha256"]
