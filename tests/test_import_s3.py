"""Imports from S3 over the real wire protocol (moto's server): ranged reads in
blocks smaller than the object, gzip, resume after a release, and the rejects
object written to the worker's S3 storage."""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

import obstore
import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


def put(uri: str, data: bytes) -> None:
    loc = storage.parse(uri)
    obstore.put(storage.store_for(loc), loc.path, data)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_import_from_s3_in_ranged_reads_and_resume(conn: Conn, dsn: str, bucket: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   gz: bool) -> None:
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    body = b"name,age\n" + b"".join(f'"n{i}, ""q""",{i % 50}\n'.encode() for i in range(4000))
    uri = f"{prefix}/in/p.csv" + (".gz" if gz else "")
    put(uri, gzip.compress(body) if gz else body)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)  # many ranged GETs
    job_id = submit_import(conn, uri, "1", {"max_rejects": 1})
    stop = threading.Event()
    seen: list[int] = []

    def progress(records: int, read: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == 2:
            stop.set()

    first = Importer(dsn, job_id, claim_import(dsn, job_id), bucket, stop=stop,
                     on_progress=progress, batch_bytes=9000).run()
    assert first.status == "released", first.error
    second = Importer(dsn, job_id, claim_import(dsn, job_id), bucket, batch_bytes=20000).run()
    assert second.status == "succeeded", second.error
    names = [r[0] for r in conn.execute("SELECT name FROM people ORDER BY age, name")]
    assert sorted(names) == sorted(f'n{i}, "q"' for i in range(4000))
    assert job(conn, job_id)["result"]["rows"] == 4000


def test_rejects_object_goes_to_the_worker_storage(conn: Conn, dsn: str, bucket: str) -> None:
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    put(f"{prefix}/in/r.jsonl", b'{"name": "a"}\n{"age": "x"}\nnot json\n')
    job_id = submit_import(conn, f"{prefix}/in/r.jsonl", "1", {"max_rejects": 2})
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), bucket).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    uri = outcome.result["rejects_uri"]
    assert uri.startswith(prefix + "/people/1/")
    lines = [json.loads(x)["line"] for x in storage.read(uri).splitlines()]
    assert lines == [2, 3]


def test_s3_source_outside_the_allow_list_is_refused(conn: Conn, bucket: str) -> None:
    make_people(conn)
    allow(conn, bucket.rstrip("/") + "/in")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        submit_import(conn, bucket.rstrip("/") + "/other/p.csv")


def test_an_object_replaced_while_it_is_read_fails_the_job(conn: Conn, dsn: str, bucket: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Each ranged GET asks for the version the read began with (If-Match on its
    ETag): an object replaced meanwhile, even by one of the same size, read on
    from the new one spliced two files into one import that succeeded."""
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    old = b"name,age\n" + b"".join(f"old{i:05},1\n".encode() for i in range(4000))
    new = old.replace(b"old", b"new")
    uri = f"{prefix}/in/swap.csv"
    put(uri, old)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)  # many ranged GETs

    def progress(records: int, read: int, total: int | None) -> None:
        if records and not getattr(progress, "done", False):
            progress.done = True  # type: ignore[attr-defined]
            put(uri, new)

    job_id = submit_import(conn, uri)
    Importer(dsn, job_id, claim_import(dsn, job_id), bucket, on_progress=progress,
             batch_bytes=9000).run()
    row = job(conn, job_id)
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert row["status"] == "failed", (row["result"], sorted({n[:3] for n in names}))
    assert "changed while it was read" in row["error"], row["error"]
    assert all(n.startswith("old") for n in names)


def test_the_shared_reader_pins_an_object_stores_version_and_size() -> None:
    """storage.open_range, which every import reads its source through, on an
    obstore store (memory:///, as az://): an object replaced between two ranged
    reads, by one of the same size, or found at another size than the caller
    began with, raises a StorageError that is not retried."""
    uri = "memory:///pin/swap.csv"
    loc = storage.parse(uri)
    data = b"x" * 5000
    obstore.put(storage.store_for(loc), loc.path, data)
    blocks = storage.open_range(uri, 0, 1000, len(data))
    assert next(blocks) == data[:1000]
    obstore.put(storage.store_for(loc), loc.path, b"y" * 5000)
    with pytest.raises(storage.StorageError) as caught:
        list(blocks)
    assert "changed while it was read" in str(caught.value) and not caught.value.retryable
    assert caught.value.hint
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(uri, 0, 1000, 4999))
    assert "changed while it was read" in str(caught.value) and not caught.value.retryable


@pytest.mark.parametrize("prefix_fixture", ["gcs_bucket", "az_container"], ids=["gs", "az"])
def test_the_shared_reader_pins_a_gs_or_az_objects_version_within_a_read(
        request: pytest.FixtureRequest, prefix_fixture: str) -> None:
    """The same on the emulators: a gs:// read pinned the size only (Google's
    client takes no If-Match), so an object replaced between two ranged reads by
    one of the same size was read on from the new one, and an import spliced the
    two objects' records and succeeded. Its generation is pinned now; and an
    object replaced after the caller took its version (`etag`) and before the
    read began is not read either."""
    uri = str(request.getfixturevalue(prefix_fixture)) + "pin/swap.csv"
    data = b"x" * 5000
    storage.write(uri, data)
    blocks = storage.open_range(uri, 0, 1000, len(data))
    assert next(blocks) == data[:1000]
    storage.write(uri, b"y" * 5000)
    with pytest.raises(storage.StorageError) as caught:
        list(blocks)
    assert "changed while it was read" in str(caught.value) and not caught.value.retryable
    _, then = storage.version(uri)
    storage.write(uri, b"z" * 5000)
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(uri, 0, 1000, 5000, etag=then["etag"]))
    assert "changed while it was read" in str(caught.value) and not caught.value.retryable
    assert b"".join(storage.open_range(uri, 0, 1000, 5000)) == b"z" * 5000


def test_an_object_replaced_between_attempts_fails_the_job(conn: Conn, dsn: str, bucket: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The checkpoint keeps the ETag the first attempt's HEAD found: a resume in
    an object replaced meanwhile by one of the same size and header read on in
    it from the first one's offset, and the job succeeded with rows of both."""
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    old = b"name,age\n" + b"".join(f"old{i:05},1\n".encode() for i in range(4000))
    uri = f"{prefix}/in/between.csv"
    put(uri, old)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)
    job_id = submit_import(conn, uri)
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), bucket, stop=stop,
                     on_progress=lambda *_: stop.set(), batch_bytes=9000).run()
    assert first.status == "released", first.error
    assert job(conn, job_id)["checkpoint"]["version"]["etag"]
    put(uri, old.replace(b"old", b"new"))
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), bucket).run()
    row = job(conn, job_id)
    assert outcome.status == "failed" and row["status"] == "failed", row["error"]
    error = str(row["error"])
    assert "replaced since the import began" in error and "55000" in error, error
    assert "hint:" in error and "submit a new import" in error, error
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert names and all(n.startswith("old") for n in names)


@pytest.mark.parametrize("prefix_fixture", ["az_container", "gcs_bucket"], ids=["az", "gs"])
def test_an_az_or_gs_object_replaced_between_attempts_fails_the_job(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, prefix_fixture: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As S3's: the checkpoint keeps the version (ETag, Last-Modified; gs: its
    generation) the first attempt found, and a resume in an object of the same
    size and header put in its place fails instead of splicing the two."""
    bucket = str(request.getfixturevalue(prefix_fixture))
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    old = b"name,age\n" + b"".join(f"old{i:05},1\n".encode() for i in range(4000))
    uri = f"{prefix}/in/between.csv"
    storage.write(uri, old)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)
    job_id = submit_import(conn, uri)
    stop = threading.Event()
    first = Importer(dsn, job_id, claim_import(dsn, job_id), bucket, stop=stop,
                     on_progress=lambda *_: stop.set(), batch_bytes=9000).run()
    assert first.status == "released", first.error
    storage.write(uri, old.replace(b"old", b"new"))
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), bucket).run()
    row = job(conn, job_id)
    assert outcome.status == "failed" and row["status"] == "failed", row["error"]
    assert "replaced since the import began" in str(row["error"]), row["error"]
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert names and all(n.startswith("old") for n in names)


def test_the_first_attempt_reads_the_version_it_checkpoints(conn: Conn, dsn: str, bucket: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The ETag an attempt checkpoints is the one its reads pin: an object put
    again between the importer's HEAD and the reader's was read whole from the
    new one under a checkpoint naming the old, which a resume then compared."""
    make_people(conn)
    prefix = bucket.rstrip("/")
    allow(conn, prefix)
    old = b"name,age\n" + b"".join(f"old{i:05},1\n".encode() for i in range(4000))
    uri = f"{prefix}/in/race.csv"
    put(uri, old)
    real = storage.version

    def version_then_replaced(source: str) -> Any:
        found = real(source)
        put(uri, old.replace(b"old", b"new"))
        return found

    monkeypatch.setattr(storage, "version", version_then_replaced)
    job_id = submit_import(conn, uri)
    Importer(dsn, job_id, claim_import(dsn, job_id), bucket, batch_bytes=9000).run()
    row = job(conn, job_id)
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert row["status"] == "failed", (row["checkpoint"].get("version"), names[:1])
    assert "changed while it was read" in str(row["error"]), row["error"]
    assert names == []
