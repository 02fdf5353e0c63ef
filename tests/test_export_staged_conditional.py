"""A staged upload's final write never replaces an object at its key.

The stores whose parts are staged as hidden objects (``s3://`` with parts
below 5 MiB, ``az://`` without an account key or SAS) made the object with
obstore's multipart put, which takes no condition: the only guard was a look
right before it, so an object created between that look and the write
(another pgjobs database's export of the same id, anyone) was written over.
The final write is now conditional: S3 re-chunks the staged parts into a
native multipart upload completed with ``If-None-Match: *`` (moto honours
it); Azure sends one Put Blob with ``If-None-Match: *`` (obstore's create
mode, objects up to 64 MiB). An object there is then accepted only as
exactly the job's bytes, and otherwise the job fails for good (42710), the
object left as it was. A Parquet file (``storage.create``, conditional
already) is covered too. ``memory://`` stays a plain write by design (one
process, one database; docs/exports.md): it is in the success case only.

Each case makes the look miss the object (it is created just after every
look answers), so only the final write's condition stands between it and
the export. Azure runs on Azurite
(skipped when not installed) with the account key hidden from the
block-list kind (``azblob.service``), so the parts are staged.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from pgjobs.poller import azblob, storage, upload_obstore
from tests.support import make_items, run_export, submit_export

Conn = psycopg.Connection[Any]

THEIRS = b"another database's export, not this job's\n"
FORMATS = {"csv": {"format": "csv", "chunk_rows": 40, "part_size": 4096},
           "jsonl": {"format": "jsonl", "gzip": True, "chunk_rows": 40, "part_size": 4096},
           "parquet": {"format": "parquet", "chunk_rows": 40, "part_size": 4096}}
STORES = ("s3", "az", "az-large", "memory")


def _prefix(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, store: str) -> str:
    if store == "s3":
        return str(request.getfixturevalue("bucket"))
    if store in ("az", "az-large"):
        prefix = str(request.getfixturevalue("az_container"))
        monkeypatch.setattr(azblob, "service", lambda: None)  # staged parts, not blocks
        if store == "az-large":
            # Above the one-put ceiling: joined by blocks, then a conditional copy.
            monkeypatch.setattr(upload_obstore, "CREATE_MAX", 16)
        return prefix
    return f"memory:///staged-{uuid.uuid4().hex[:12]}/"


def _wanted(uri: str, fmt: str) -> bool:
    """The object the export makes (a Parquet export's second file)."""
    if fmt == "parquet":
        return uri.endswith("00001.parquet")
    return ".pgjobs-staging" not in uri and "/part-" not in uri


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("store", ("s3", "az", "az-large", "memory"))
def test_an_object_created_after_the_last_look_is_never_written_over(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    prefix = _prefix(request, monkeypatch, store)
    make_items(conn, rows=200)
    job_id = submit_export(conn, "1", {}, FORMATS[fmt])
    placed: list[str] = []

    def place(uri: str) -> None:
        if not placed and _wanted(uri, fmt):
            storage.write(uri, THEIRS)
            placed.append(uri)

    real_taken = storage.taken

    def taken(uri: str) -> bool:
        found = real_taken(uri)
        if placed and uri == placed[0]:
            return False  # every later look misses it too
        if not found:
            place(uri)  # created by another just after the look
        return False if placed and uri == placed[0] else found

    monkeypatch.setattr(storage, "taken", taken)
    outcome = run_export(dsn, job_id, prefix)
    assert placed, "the export never looked at its key"
    assert storage.read(placed[0]) == THEIRS, "the object was written over"
    assert outcome.status == "failed", outcome
    assert outcome.error is not None and "[42710]" in outcome.error, outcome.error


@pytest.mark.parametrize("fmt", ("csv", "jsonl"))
@pytest.mark.parametrize("store", STORES)
def test_a_staged_export_still_succeeds_with_its_bytes(
        request: pytest.FixtureRequest, conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch,
        store: str, fmt: str) -> None:
    """The conditional final write makes the same object the plain one did,
    its size and SHA-256 the result's (several staged parts, and an empty
    export)."""
    import hashlib

    prefix = _prefix(request, monkeypatch, store)
    make_items(conn, rows=200)
    for scope in ("1", "99"):
        job_id = submit_export(conn, scope, {}, FORMATS[fmt])
        outcome = run_export(dsn, job_id, prefix)
        assert outcome.status == "succeeded", outcome
        result = outcome.result
        assert result is not None
        data = storage.read(result["uri"])
        assert len(data) == result["bytes"]
        assert hashlib.sha256(data).hexdigest() == result["sha256"]
        assert not [p for p in storage.list_paths(prefix) if ".pgjobs-staging" in p]
