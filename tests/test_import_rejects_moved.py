"""An import's rejects object, named by its checkpoint, outside the storage of
the worker that runs its next attempt.

The first attempt's worker created the job's rejects object under its own
``--storage`` and the checkpoint named it (``pgjobs.import_rejects_placed``).
A later attempt runs on a worker configured with another storage root (the
operator moved the worker's ``--storage``, or a worker of another fleet took
the job): it writes nothing outside its own storage, so it names a new
object under its own root in the checkpoint (which queues the old one in
pgjobs.storage_deletions), creates it, and deletes the old one, which nothing
names any more. Variants: the attempt succeeds or fails again with rejects
(both write the object); the lease is lost before the new object is named
(nothing created, the old one stays the job's, named and whole) or after
(the next owner writes the new name); the old object cannot be deleted (a
warning, the job goes on, a worker's housekeeping deletes it later).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.storage import StorageError
from pgjobs.poller.worker import Worker
from tests.support import allow, claim_import, expire_lease, job, make_people, submit_import

Conn = psycopg.Connection[Any]


def records(uri: str) -> list[str]:
    return [json.loads(x)["record"].strip() for x in storage.read(uri).splitlines()]


def rejects_objects(*roots: str) -> list[str]:
    return sorted(p for root in roots for p in storage.list_paths(root)
                  if p.endswith(".rejects.jsonl"))


@pytest.fixture(params=["file", "s3"])
def roots(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The first worker's storage and the later worker's, in one kind of store."""
    if request.param == "s3":
        bucket = str(request.getfixturevalue("bucket"))
        return f"{bucket}first", f"{bucket}later"
    return f"file://{tmp_path}/first", f"file://{tmp_path}/later"


def queued(conn: Conn) -> list[str]:
    """The URIs waiting in pgjobs.storage_deletions."""
    return [r[0] for r in conn.execute("SELECT uri FROM pgjobs.storage_deletions ORDER BY id")]


def first_attempt(conn: Conn, dsn: str, tmp_path: Path, store: str) -> tuple[int, Path, str]:
    """An import that fails on too many rejects under ``store``: its rejects
    object is created there and named by its checkpoint. Retried (not yet run)."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    path = folder / "p.csv"
    path.write_bytes(b"name,age\nok,1\nbad,x\nworse,y\n")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1})
    Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    first = job(conn, job_id)
    assert first["status"] == "failed", first["error"]
    old = first["checkpoint"]["rejects_uri"]
    assert storage.within(old, store) and records(old) == ["bad,x", "worse,y"]
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    return job_id, path, old


@pytest.mark.parametrize("fixed", [True, False], ids=["succeeds", "fails_again"])
def test_a_later_worker_with_another_storage_moves_the_rejects_object(
        conn: Conn, dsn: str, tmp_path: Path, roots: tuple[str, str], fixed: bool) -> None:
    """The later attempt's object is under its own storage, holds exactly the
    job's rejects, is named by the checkpoint and the result; the old one is
    deleted, and no other rejects object is left in either root."""
    first_root, later_root = roots
    job_id, path, old = first_attempt(conn, dsn, tmp_path, first_root)
    if fixed:
        path.write_bytes(path.read_bytes().replace(b"worse,y", b"worse,7"))  # same length
    Importer(dsn, job_id, claim_import(dsn, job_id), later_root).run()
    row = job(conn, job_id)
    assert row["status"] == ("succeeded" if fixed else "failed"), row["error"]
    new = row["result"]["rejects_uri"]
    assert new != old and storage.within(new, later_root), new
    assert row["checkpoint"]["rejects_uri"] == new
    assert records(new) == (["bad,x"] if fixed else ["bad,x", "worse,y"])
    assert not storage.exists(old)
    assert rejects_objects(first_root, later_root) == [storage.parse(new).path]


def test_the_lease_lost_before_naming_the_new_object_keeps_the_old(
        conn: Conn, dsn: str, tmp_path: Path, roots: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease lapses as the attempt picks its new object's name: naming it
    is refused (the job is another worker's now, which finds the old object
    named). Nothing of this attempt is left (no object is created before its
    name is recorded), and the old one is neither deleted, nor un-named, nor
    queued for deletion."""
    first_root, later_root = roots
    job_id, path, old = first_attempt(conn, dsn, tmp_path, first_root)
    path.write_bytes(path.read_bytes().replace(b"worse,y", b"worse,7"))
    looked: list[str] = []
    real_taken: Callable[[str], bool] = storage.taken

    def lapse_then_look(uri: str) -> bool:
        if not looked:
            expire_lease(conn, job_id)
        looked.append(uri)
        return real_taken(uri)

    monkeypatch.setattr(storage, "taken", lapse_then_look)
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), later_root).run()
    assert outcome.status == "lost", outcome
    assert looked and storage.within(looked[0], later_root)
    row = job(conn, job_id)
    assert row["checkpoint"]["rejects_uri"] == old
    assert records(old) == ["bad,x", "worse,y"]
    assert rejects_objects(first_root, later_root) == [storage.parse(old).path]
    assert queued(conn) == []


def test_the_lease_lost_after_naming_leaves_the_new_name_to_the_next_owner(
        conn: Conn, dsn: str, tmp_path: Path, roots: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease lapses once the new object is named, before it is created: the
    name is the job's (the checkpoint says so, the old object is queued for
    deletion), and the job's next owner (the same storage) writes its rejects
    there: one object, holding exactly the job's rejects."""
    first_root, later_root = roots
    job_id, path, old = first_attempt(conn, dsn, tmp_path, first_root)
    path.write_bytes(path.read_bytes().replace(b"worse,y", b"worse,7"))
    real_create: Callable[[str, bytes], bool] = storage.create

    def lapse_then_create(uri: str, data: bytes) -> bool:
        expire_lease(conn, job_id)
        return real_create(uri, data)

    with monkeypatch.context() as patched:
        patched.setattr(storage, "create", lapse_then_create)
        outcome = Importer(dsn, job_id, claim_import(dsn, job_id), later_root).run()
    assert outcome.status == "lost", outcome
    new = job(conn, job_id)["checkpoint"]["rejects_uri"]
    assert storage.within(new, later_root)
    assert queued(conn) == [old]
    conn.execute("SELECT pgjobs.prune()")  # the expired lease: retried
    Importer(dsn, job_id, claim_import(dsn, job_id), later_root).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rejects_uri"] == row["checkpoint"]["rejects_uri"] == new
    assert records(new) == ["bad,x"]
    assert rejects_objects(first_root, later_root) == [storage.parse(new).path]


def test_an_old_object_that_cannot_be_deleted_only_warns(
        conn: Conn, dsn: str, tmp_path: Path, roots: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The old storage refuses the delete (the later worker has no rights
    there): the job still succeeds with its new object named, and the worker's
    log says which object was left."""
    first_root, later_root = roots
    job_id, path, old = first_attempt(conn, dsn, tmp_path, first_root)
    path.write_bytes(path.read_bytes().replace(b"worse,y", b"worse,7"))
    real_delete: Callable[[str], bool] = storage.delete

    def refuse_old(uri: str) -> bool:
        if uri == old:
            raise StorageError(f"cannot delete {uri}: AccessDenied", retryable=False)
        return real_delete(uri)

    with monkeypatch.context() as patched, caplog.at_level(logging.WARNING, logger="pgjobs"):
        patched.setattr(storage, "delete", refuse_old)
        Importer(dsn, job_id, claim_import(dsn, job_id), later_root).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    new = row["result"]["rejects_uri"]
    assert storage.within(new, later_root) and row["checkpoint"]["rejects_uri"] == new
    assert records(new) == ["bad,x"]
    assert storage.exists(old)
    assert queued(conn) == [old]  # a worker's housekeeping deletes it
    assert any(old in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # The storage lets the worker delete it again: its housekeeping does.
    Worker(dsn, later_root, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    assert not storage.exists(old) and queued(conn) == []
    assert storage.exists(new)
