"""An export never reports success for bytes it did not store: attacks on
the stored object, as a class, over every upload strategy and mode.

Stores: ``file://``, ``memory://``, ``s3://`` native multipart (moto),
``s3://`` staged (parts below 5 MiB), ``az://`` with a key (blocks, Azurite)
and without (staged parts). Modes: one stream, ``parallel: 2`` (a join),
Parquet. Attacks, each on the store, never on pgjobs' own code:

- ``short-part``: every part write is acknowledged while the store keeps one
  byte fewer (a Parquet file's ``storage.create`` alike);
- ``truncated``: right after the store completed the object (before the
  job's success), the object loses its last byte;
- ``swapped``: right after the store completed it, another writer replaces it
  with other bytes of the same size.

The job must never end ``succeeded`` with a result (``bytes``, ``sha256``,
``uri``) that the stored object does not match; it fails its attempt (the
retry writes again) instead. ``killed``: the worker dies right after the
store's complete: the next attempt ends ``succeeded`` with the object's
exact bytes and leaves no upload open.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest

from pgjobs.poller import azblob, gcs, parquet, storage, upload_file, upload_obstore, upload_s3
from pgjobs.poller.export import Exporter
from tests.support import (
    ITEMS_TENANT_1,
    expire_leases,
    make_items,
    open_uploads,
    plain_copy,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]

STORES = ("file", "memory", "s3-native", "s3-staged", "az-blocks", "az-staged")
MODES = {
    "single": {"format": "csv", "chunk_rows": 40},
    "parallel": {"format": "csv", "chunk_rows": 40, "parallel": 2},
    "parquet": {"format": "parquet", "chunk_rows": 40},
}
ATTACKS = ("short-part", "truncated", "swapped")


class Killed(BaseException):
    """The worker dies: the attempt records nothing (its failure handler
    lets this through), the job stays running under its lease."""


def _dies(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Exporter._fail

    def fail(self: Exporter, exc: BaseException) -> Any:
        if isinstance(exc, Killed):
            raise exc
        return real(self, exc)

    monkeypatch.setattr(Exporter, "_fail", fail)


def _prefix(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            store: str) -> tuple[str, dict[str, Any]]:
    """The destination and the part size that picks the store's strategy."""
    if store == "file":
        return str(request.getfixturevalue("local_dir")), {"part_size": 4096}
    if store == "memory":
        import uuid

        return f"memory:///attacks-{uuid.uuid4().hex[:12]}/", {"part_size": 4096}
    if store.startswith("s3"):
        # Native: parts of S3's 5 MiB minimum (each export here is one part).
        size = 4096 if store == "s3-staged" else 5 * 1024 * 1024
        return str(request.getfixturevalue("bucket")), {"part_size": size}
    prefix = str(request.getfixturevalue("az_container"))
    if store == "az-staged":
        monkeypatch.setattr(azblob, "service", lambda: None)
    return prefix, {"part_size": 4096}


def _final(uri: str) -> bool:
    """The object (a ``file://`` join's checked temporary file is linked as
    it; a Parquet export's files), not a staged part or a parallel part's
    own object."""
    return ".pgjobs-staging" not in uri and ("/part-" not in uri or uri.endswith(".parquet"))


def _short_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every part write (and every Parquet file) is acknowledged whole while
    the store keeps one byte fewer."""
    hits: list[int] = []
    for kind in (upload_file.LocalUpload, upload_s3.NativeS3Upload,
                 upload_obstore.StagedUpload, azblob.BlockUpload, gcs.ComposeUpload):
        real = kind.write_part

        def short(self: Any, data: bytes | bytearray, real: Any = real) -> Any:
            hits.append(len(data))
            return real(self, bytes(data[:-1]) if len(data) > 1 else data)

        monkeypatch.setattr(kind, "write_part", short)
    real_create = storage.create

    def create(uri: str, data: bytes) -> bool:
        if uri.endswith(".parquet"):
            hits.append(len(data))
            data = data[:-1]
        return real_create(uri, data)

    monkeypatch.setattr(storage, "create", create)
    return hits


def _after_complete(monkeypatch: pytest.MonkeyPatch, act: Any) -> list[str]:
    """``act(uri)`` on the stored object the first time anything reads it
    back, which is right after the store completed it and before the job
    can succeed (the read-back of each mode: ``check_object``,
    ``hash_object`` of a join or a block/compose upload, Parquet's)."""
    done: list[str] = []
    real_check, real_hash, real_parquet = (storage.check_object, storage.hash_object,
                                           parquet.read_back)

    def once(uri: str) -> None:
        if not done and _final(uri):
            done.append(uri)
            act(uri)

    def check_object(location: storage.Location, digests: Any) -> int:
        once(location.uri)
        return real_check(location, digests)

    def hash_object(location: storage.Location, digests: Any = None) -> tuple[int, str]:
        if digests is not None:
            once(location.uri)
        return real_hash(location, digests)

    def read_back(files: list[dict[str, Any]]) -> Any:
        for f in files:
            once(str(f["uri"]))
        return real_parquet(files)

    monkeypatch.setattr(storage, "check_object", check_object)
    monkeypatch.setattr(storage, "hash_object", hash_object)
    monkeypatch.setattr(parquet, "read_back", read_back)
    return done


def _replace(uri: str, data: bytes) -> None:
    storage.delete(uri)
    storage.write(uri, data)


def _truncate(uri: str) -> None:
    _replace(uri, storage.read(uri)[:-1])


def _swap(uri: str) -> None:
    data = storage.read(uri)
    _replace(uri, bytes(b ^ 0x20 for b in data[:16]) + data[16:])


def _matches(result: dict[str, Any]) -> None:
    """The objects the result names hold exactly its size and SHA-256 (a
    Parquet export: its files' bytes in order)."""
    data = b"".join(storage.read(str(uri)) for uri in result.get("uris") or [result["uri"]])
    assert len(data) == result["bytes"], result
    assert hashlib.sha256(data).hexdigest() == result["sha256"], result


def _setup(request: pytest.FixtureRequest, conn: Conn, monkeypatch: pytest.MonkeyPatch,
           store: str, mode: str) -> tuple[str, int]:
    if mode == "parquet":
        pytest.importorskip("pyarrow")
    prefix, size = _prefix(request, monkeypatch, store)
    make_items(conn, rows=400)
    return prefix, submit_export(conn, "1", {}, {**MODES[mode], **size})


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("store", STORES)
def test_a_store_that_keeps_other_bytes_never_ends_in_a_success(
        request: pytest.FixtureRequest, conn: Conn, dsn: str,
        monkeypatch: pytest.MonkeyPatch, store: str, mode: str, attack: str) -> None:
    prefix, job_id = _setup(request, conn, monkeypatch, store, mode)
    faults = pytest.MonkeyPatch()  # undone alone: the fixtures' settings stay
    try:
        if attack == "short-part":
            hits: list[Any] = _short_parts(faults)
        else:
            hits = _after_complete(faults, _truncate if attack == "truncated" else _swap)
        outcome = run_export(dsn, job_id, prefix)
    finally:
        faults.undo()
    assert hits, "the attack never ran"
    assert outcome.status != "succeeded", outcome
    row = conn.execute("SELECT status, result FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and row[0] != "succeeded", row
    # The store behaves again: the retry writes the object and ends right.
    if row[0] == "failed":  # its attempts spent on the faulty store
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    _ends_right(conn, dsn, job_id, prefix, store, mode, proven=attack != "short-part")


def _ends_right(conn: Conn, dsn: str, job_id: int, prefix: str, store: str, mode: str,
                proven: bool = True) -> None:
    """The next attempt ends succeeded with the stored bytes. ``proven``
    False: the store kept bytes the job never wrote at a name of its own (a
    short write); where nothing proves that object the job's (a Parquet
    file, a parallel part), it is never removed, and the job may instead fail
    (42710 naming it, or its attempts spent): never a success."""
    outcome = run_export(dsn, job_id, prefix)
    if not proven and outcome.status == "failed":
        return
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    _matches(outcome.result)
    if mode != "parquet":
        assert storage.read(outcome.result["uri"]) == plain_copy(conn, ITEMS_TENANT_1)
    if store.startswith("s3"):
        assert open_uploads(prefix) == []


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("store", STORES)
def test_a_worker_killed_after_the_complete_ends_right_on_the_next_attempt(
        request: pytest.FixtureRequest, conn: Conn, dsn: str,
        monkeypatch: pytest.MonkeyPatch, store: str, mode: str) -> None:
    prefix, job_id = _setup(request, conn, monkeypatch, store, mode)

    def die(uri: str) -> None:
        raise Killed(uri)

    faults = pytest.MonkeyPatch()  # undone alone: the fixtures' settings stay
    try:
        done = _after_complete(faults, die)
        _dies(faults)
        with pytest.raises(Killed):
            run_export(dsn, job_id, prefix)
    finally:
        faults.undo()
    assert done
    expire_leases(conn, job_id)
    _ends_right(conn, dsn, job_id, prefix, store, mode)
