"""An import's rejects object: a worker killed at any step of naming and
creating it never leads a later attempt, or pruning, to write over or delete
an object the job did not create.

The worker names its rejects object in the checkpoint
(pgjobs.import_rejects_placed), then creates it conditionally (linkat,
``If-None-Match: *``); when the create finds another pgjobs database's object
there (created between the worker's look and its create), the checkpoint
stops naming it (pgjobs.import_rejects_taken). A worker killed after that
create answered "taken", before the un-naming, left the checkpoint naming
the other database's object, and the next attempt wrote its rejects over it
with a plain PUT (and emptied it when it had no rejects; pruning the job
deleted it). Only an object the job provably created is now written over or
deleted: the checkpoint records it (pgjobs.import_rejects_created), or the
object holds exactly the bytes whose digest the job recorded just before its
create (pgjobs.import_rejects_creating: killed after the create, before
recording it). Any other name is created conditionally again, and un-named
when taken.

The kill is simulated in process, as tests/test_import_rejects_crash.py does:
an exception no handler of the importer catches, raised right after a step
(a checkpoint call, or the create itself), the job left running with its
lease; the lease then lapses and pgjobs.prune rescues the job. What follows
is each way the job can go on: a retry with the same rejects, one whose
source was fixed (no rejects), one that fails again on too many rejects, and
a cancel (then only pruning acts). "legacy" strips what this release adds to
the checkpoint (the created record, the digest): a checkpoint the previous
release wrote, which must be read as naming an object not provably created.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import importer, storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import allow, claim_import, expire_lease, job, make_people, submit_import

Conn = psycopg.Connection[Any]

THEIRS = b'{"line": 2, "reason": "another database\'s", "record": "theirs"}\n'
# Steps of naming and creating the rejects object, in order; a kill right after one.
STEPS = ["placed", "creating", "create", "created", "taken"]
# What happens to the job after the kill: (max_rejects of the first attempt,
# of the later one, whether the source is fixed before it, canceled instead).
THEN = {
    "retried": (5, 5, False, False),
    "fixed": (1, 5, True, False),
    "failed_again": (1, 1, False, False),
    "canceled": (5, 5, False, True),
}


class Killed(BaseException):
    """The worker's process dies here: no handler runs."""


def records(uri: str) -> list[str]:
    return [json.loads(x)["record"].strip() for x in storage.read(uri).splitlines()]


def rejects_objects(store: str) -> list[str]:
    return sorted(p for p in storage.list_paths(store) if p.endswith(".rejects.jsonl"))


def kill_after(step: str, patched: pytest.MonkeyPatch, fired: list[str]) -> None:
    """Raise Killed right after the first ``step`` of this attempt."""
    real_name: Callable[..., None] = Importer._name_rejects
    real_create: Callable[[str, bytes], bool] = storage.create
    real_fail = Importer._fail

    def name(self: Importer, query: str, uri: str, **more: Any) -> None:
        real_name(self, query, uri, **more)
        if not fired and f"import_rejects_{step}(" in query:
            fired.append(uri)
            raise Killed()

    def create(uri: str, data: bytes) -> bool:
        done = real_create(uri, data)
        if not fired and step == "create":
            fired.append(uri)
            raise Killed()
        return done

    def no_handler(self: Importer, exc: BaseException) -> Any:
        if isinstance(exc, Killed):
            raise exc
        return real_fail(self, exc)

    patched.setattr(Importer, "_name_rejects", name)
    patched.setattr(storage, "create", create)
    patched.setattr(Importer, "_fail", no_handler)


def cases() -> list[Any]:
    out = []
    for step, foreign, then, legacy in itertools.product(STEPS, (True, False), THEN,
                                                          ("now", "legacy")):
        if step == "taken" and not foreign:
            continue  # only a create that finds an object there un-names it
        if legacy == "legacy" and (step not in ("create", "taken")
                                   or then not in ("retried", "canceled")):
            continue  # the previous release's steps: named, created (or taken)
        out.append(pytest.param("file", step, foreign, then, legacy,
                                id=f"{step}-{'foreign' if foreign else 'free'}-{then}-{legacy}"))
    # S3 (If-None-Match: *): the same paths; the kill after the create, once each.
    out += [pytest.param("s3", "create", foreign, "retried", "now",
                         id=f"s3-create-{'foreign' if foreign else 'free'}")
            for foreign in (True, False)]
    return out


@pytest.mark.parametrize(("where", "step", "foreign", "then", "legacy"), cases())
def test_a_killed_attempt_never_leads_to_writing_over_or_deleting_another_s_object(
        conn: Conn, dsn: str, tmp_path: Path, request: pytest.FixtureRequest, where: str,
        step: str, foreign: bool, then: str, legacy: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = (f"{request.getfixturevalue('bucket')}store" if where == "s3"
             else f"file://{tmp_path}/store")
    first_max, later_max, fixed, canceled = THEN[then]
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    path = folder / "p.csv"
    path.write_bytes(b"name,age\nok,1\nbad,x\nworse,y\n")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": first_max})
    # Another database's object at the first name drawn, created between the
    # worker's look (storage.taken) and its conditional create.
    theirs = storage.object_location(store, f"people/1/{job_id}.0badc0de.rejects.jsonl").uri
    if foreign:
        assert storage.create(theirs, THEIRS)
    drawn = itertools.chain(["0badc0de", "feedf00d"], (f"{n:08x}" for n in itertools.count()))
    monkeypatch.setattr(importer.secrets, "token_hex", lambda n: next(drawn))
    real_taken: Callable[[str], bool] = storage.taken
    monkeypatch.setattr(storage, "taken", lambda uri: uri != theirs and real_taken(uri))

    fired: list[str] = []
    with monkeypatch.context() as patched:
        kill_after(step, patched, fired)
        with pytest.raises(Killed):
            Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    assert fired, f"never reached {step}"
    killed = job(conn, job_id)
    assert killed["status"] == "running"
    if legacy == "legacy":
        # What the previous release's checkpoint held at that point: the name.
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint - 'rejects_created' "
                     "- 'rejects_sha256' WHERE id = %s", (job_id,))
    if foreign:
        assert storage.read(theirs) == THEIRS

    expire_lease(conn, job_id)
    conn.execute("SELECT pgjobs.prune()")  # rescued: retried
    if canceled:
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "canceled"
    else:
        if fixed:
            path.write_bytes(path.read_bytes().replace(b"bad,x", b"bad,3")
                             .replace(b"worse,y", b"worse,4"))
        conn.execute("UPDATE pgjobs.jobs SET payload = payload || jsonb_build_object("
                     "'max_rejects', %s::int) WHERE id = %s", (later_max, job_id))
        Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
        row = job(conn, job_id)
        if foreign:
            assert storage.read(theirs) == THEIRS, "another database's object written over"
        if fixed:
            assert row["status"] == "succeeded", row["error"]
            assert row["result"]["rejected"] == 0
        else:
            assert row["status"] == ("succeeded" if then == "retried" else "failed"), \
                row["error"]
            mine = row["result"]["rejects_uri"]
            assert not foreign or mine != theirs
            assert records(mine) == ["bad,x", "worse,y"]  # byte-exact: exactly the rejects
            named = row["checkpoint"]
            assert named["rejects_uri"] == named["rejects_created"] == mine
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions "
                        "WHERE uri = %s AND upload IS NULL", (theirs,)).fetchone() == (0,)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    # Nothing of the job's is left (never an object nothing names), and the
    # other database's object is there, as it was.
    left = rejects_objects(store)
    if foreign:
        assert storage.read(theirs) == THEIRS, "another database's object written over"
        assert left == [storage.parse(theirs).path]
    elif legacy == "legacy" and step == "create":
        # The previous release's attempt killed after creating its object and
        # before anything recorded it: nothing tells it from another's, so it
        # is left (a leak, never a loss).
        assert len(left) <= 1
    else:
        assert left == []
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions "
                        "WHERE last_error IS NOT NULL").fetchone() == (0,)
