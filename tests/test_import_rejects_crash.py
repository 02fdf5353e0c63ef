"""A worker killed while it creates an import's rejects object leaves nothing
that nothing names.

The worker created the object (a conditional create) and then named it in the
job's checkpoint (pgjobs.import_rejects_placed): killed in between, it left
an object under the job's name that no record named, which the next attempt
did not reuse (it created another) and pruning never deleted. It now names
the object first, then creates it: a worker killed in between leaves a name
pointing at a missing object, which the next attempt writes, an attempt with
no rejects leaves missing, and pruning takes for deleted.

The kill is simulated in process: an exception no handler of the importer
catches, raised in storage.create before or after it wrote the object, the
job left running with its lease, as a SIGKILLed worker leaves it; the lease
then lapses and pgjobs.prune rescues the job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import allow, claim_import, expire_lease, job, make_people, submit_import

Conn = psycopg.Connection[Any]

# The first attempt: max_rejects, and the status its job would have ended in.
FIRST = {"finish": 5, "fail": 1}
# What happens to the job after the kill (the first attempt's ending it needs).
AFTER = {
    "finish-retried": ("finish", "retried"),
    "fail-retried": ("fail", "retried"),
    "fail-fixed": ("fail", "fixed"),
    "finish-canceled": ("finish", "canceled"),
}


class Killed(BaseException):
    """The worker's process dies here: no handler runs."""


def records(uri: str) -> list[str]:
    return [json.loads(x)["record"].strip() for x in storage.read(uri).splitlines()]


def rejects_objects(store: str) -> list[str]:
    return sorted(p for p in storage.list_paths(store) if p.endswith(".rejects.jsonl"))


def queued(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT uri FROM pgjobs.storage_deletions ORDER BY id")]


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return f"{request.getfixturevalue('bucket')}store"
    return f"file://{tmp_path}/store"


def prune_all(conn: Conn, dsn: str, store: str) -> None:
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()


@pytest.mark.parametrize("kill", ["before_create", "after_create"])
@pytest.mark.parametrize("after", sorted(AFTER))
def test_a_worker_killed_while_creating_its_rejects_object_leaves_none_unnamed(
        conn: Conn, dsn: str, tmp_path: Path, store: str, kill: str, after: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, then = AFTER[after]
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    path = folder / "p.csv"
    path.write_bytes(b"name,age\nok,1\nbad,x\nworse,y\n")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": FIRST[first]})
    real_create: Callable[[str, bytes], bool] = storage.create
    tried: list[str] = []

    def create_and_die(uri: str, data: bytes) -> bool:
        tried.append(uri)
        if kill == "after_create":
            assert real_create(uri, data)
        raise Killed()

    original_fail = Importer._fail

    def no_handler(self: Importer, exc: BaseException) -> Any:
        if isinstance(exc, Killed):
            raise exc
        return original_fail(self, exc)

    with monkeypatch.context() as patched:
        patched.setattr(storage, "create", create_and_die)
        patched.setattr(Importer, "_fail", no_handler)
        with pytest.raises(Killed):
            Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    assert len(tried) == 1
    uri = tried[0]
    killed = job(conn, job_id)
    assert killed["status"] == "running"
    # Named before it was created: whatever the kill left is the job's.
    assert killed["checkpoint"]["rejects_uri"] == uri
    assert storage.exists(uri) == (kill == "after_create")

    expire_lease(conn, job_id)
    conn.execute("SELECT pgjobs.prune()")  # rescued: retried
    if then == "canceled":
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "canceled"
    else:
        if then == "fixed":
            path.write_bytes(path.read_bytes().replace(b"bad,x", b"bad,3")
                             .replace(b"worse,y", b"worse,4"))
        Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
        row = job(conn, job_id)
        assert row["checkpoint"]["rejects_uri"] == uri  # reused, never a second name
        if then == "fixed":
            assert row["status"] == "succeeded", row["error"]
            assert row["result"]["rejected"] == 0
            # Emptied if the killed worker created it; never created for nothing.
            assert rejects_objects(store) == ([storage.parse(uri).path]
                                              if kill == "after_create" else [])
            if kill == "after_create":
                assert storage.read(uri) == b""
        else:
            assert row["status"] == ("succeeded" if first == "finish" else "failed"), \
                row["error"]
            assert row["result"]["rejects_uri"] == uri
            assert records(uri) == ["bad,x", "worse,y"]
            assert rejects_objects(store) == [storage.parse(uri).path]
    assert queued(conn) == []
    prune_all(conn, dsn, store)
    assert rejects_objects(store) == []
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)
