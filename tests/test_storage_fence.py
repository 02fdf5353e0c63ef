"""Every destructive storage action of an attempt is fenced on its lease.

The names an export or import writes are the job's, shared by every owner
of the job: the object at its key, the join's temporary file, its multipart
uploads, staged parts, Parquet files, the part objects of a parallel export,
the rejects object of an import. A worker whose lease ran out (the job
claimed again: the next owner already wrote or continues those names) must
not delete, abort or write over any of them. Found on main: the join's start
over (``Join._start_over``), the join's removal of the job's earlier object,
its discard, the exporter's removal of an object its checkpoint says it
created, a Parquet export's removal of a file that failed its read-back and
of its unrecorded files, a parallel coordinator's removal of the part
objects it queues again, the aborts a resumed S3 upload (native or staged)
makes, and an import's write over its own rejects object acted first and
asked the lease after (or never). Each now renews the lease first
(``storage.fenced``), and again after the call: a call that hung longer than
the lease stops the attempt there, before its next action (a loop of aborts
stops before the next owner's upload). Destructive calls are sent once by
the client (no resend by botocore or obstore after the fence).

Each test is a stale worker (its heartbeat refuses) against what a new owner
placed, or a worker whose lease runs out while a call hangs.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage, upload_obstore, upload_s3
from pgjobs.poller.export import Exporter, LeaseLost
from pgjobs.poller.join import Join


class Lease:
    """The attempt's lease as its heartbeat sees it."""

    def __init__(self, held: bool = False) -> None:
        self.held = held
        self.beats = 0

    def heartbeat(self, *args: Any, **kwargs: Any) -> bool:
        self.beats += 1
        return self.held

    def keepalive(self) -> None:
        if not self.held:
            raise LeaseLost("heartbeat refused")

    def fence(self) -> None:
        if not self.heartbeat():
            raise LeaseLost("heartbeat refused")


@pytest.fixture(params=["file", "memory", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A folder on file://, memory:// or S3 (moto) that this test may write."""
    if request.param == "file":
        root = storage.trust_root(f"file://{tmp_path}")
        try:
            yield f"file://{tmp_path}/exports/"
        finally:
            storage.release_root(root)
    elif request.param == "memory":
        yield f"memory:///{uuid.uuid4().hex[:8]}/"
    else:
        yield str(request.getfixturevalue("bucket"))


NEW_OWNERS = b"the new owner's object\n"


def placed(uri: str, data: bytes = NEW_OWNERS) -> str:
    assert storage.create(uri, data)
    return uri


def still(uri: str, data: bytes = NEW_OWNERS) -> bool:
    return storage.exists(uri) and storage.read(uri) == data


def exporter(loc: storage.Location, lease: Lease, **state: Any) -> Exporter:
    """A stale attempt of a CSV export to ``loc``."""
    ex = Exporter.__new__(Exporter)
    ex.location = loc
    ex.job_id = 1
    ex.token = "stale"
    ex.delays = {}
    ex.state = {"history": [], **state}
    ex.control = lease  # type: ignore[assignment]
    ex.storage_retry_seconds = 0.0
    ex.stop = threading.Event()
    ex.format = "csv"
    ex.upload = None
    ex.owned = False
    ex.staging = ""
    return ex


# --- the join of a parallel export ------------------------------------------------


def test_a_stale_joiners_start_over_leaves_the_new_owners_object(where: str) -> None:
    """Its join read back wrong: the object its own write made visible is
    removed, but by now the key holds the next owner's join."""
    loc = storage.parse(placed(where + "joined.csv"))
    join = Join(exporter(loc, Lease()), [])
    join.placed = True
    with pytest.raises(LeaseLost):
        join._start_over()
    assert still(loc.uri)


def test_a_stale_joiners_removal_of_the_jobs_earlier_object_leaves_the_new_owners(
        where: str) -> None:
    """The checkpoint says the job created the object (an earlier join), and a
    part was queued again since: a join not begun removes it and joins
    anew; a stale one must not remove what the next owner joined."""
    loc = storage.parse(placed(where + "again.csv"))
    part = placed(where + "again.part00001.csv", b"part")
    ex = exporter(loc, Lease(), created={"bytes": 4, "sha256": "0" * 64})
    results = [{"uri": part, "bytes": 4, "sha256": hashlib.sha256(b"other").hexdigest()}]
    with pytest.raises(LeaseLost):
        Join(ex, results)._run()
    assert still(loc.uri)


def test_a_stale_joiners_discard_leaves_the_new_owners_temporary_file(tmp_path: Any) -> None:
    """A file:// join's temporary file has one name for every owner: the
    next owner continues it (its checkpoint's bytes)."""
    root = storage.trust_root(f"file://{tmp_path}")
    try:
        loc = storage.parse(f"file://{tmp_path}/exports/t.csv")
        ex = exporter(loc, Lease(), join={"kind": "file", "done": 1, "bytes": 4})
        join = Join(ex, [])
        tmp = tmp_path / "exports" / ".t.csv.pgjobs-join.tmp"
        tmp.parent.mkdir()
        tmp.write_bytes(b"next")
        with pytest.raises(LeaseLost):
            join.discard(fenced=True)
        assert tmp.read_bytes() == b"next"
    finally:
        storage.release_root(root)


def _client(loc: storage.Location) -> s3.Client:
    return s3.Client(loc.base.split("://", 1)[1])


def _open_ids(loc: storage.Location) -> list[str]:
    return sorted(u for key, u, _ in _client(loc).list_uploads(loc.path) if key == loc.path)


def test_a_stale_joiners_discard_leaves_the_recorded_upload(bucket: str) -> None:
    """The join's upload is in the checkpoint: the next owner continues it."""
    loc = storage.parse(bucket + "recorded.csv")
    upload_id = str(_client(loc).create(loc.path))
    ex = exporter(loc, Lease(), join={"kind": "s3", "upload_id": upload_id, "opening": 1.0})
    with pytest.raises(LeaseLost):
        Join(ex, []).discard(fenced=True)
    assert upload_s3.pending_aborts(wait=0) == 0
    assert _open_ids(loc) == [upload_id]


@pytest.mark.parametrize("kind", ["gs", "az", "restream"])
def test_a_stale_joiners_discard_removes_nothing_of_any_store(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GCS compose objects, Azure staged blocks, a restream's staged parts: the
    next owner's join reuses them (generations, block ids, its staging
    folder). A stale joiner's discard removes none of them."""
    from pgjobs.poller import azblob

    removed: list[Any] = []
    monkeypatch.setattr(storage, "delete_prefix", lambda *args: removed.append(args))
    monkeypatch.setattr(storage, "discard_upload", lambda *args: removed.append(args))
    monkeypatch.setattr(azblob, "service", lambda: object())
    monkeypatch.setattr(azblob, "blob_client", lambda loc: loc)
    monkeypatch.setattr(azblob, "purge_uncommitted", lambda blob: removed.append(blob))
    loc = storage.parse("memory:///joined/out.csv")
    ex = exporter(loc, Lease(), join={"kind": kind, "upload": {"staging": "x/"}})
    ex.staging = "x/"
    with pytest.raises(LeaseLost):
        Join(ex, []).discard(fenced=True)
    assert removed == []


def test_a_stale_joiners_resume_leaves_the_new_owners_upload(bucket: str) -> None:
    """A resumed join whose checkpoint recorded ``opening`` aborts the key's
    unrecorded uploads: a stale one does not know the next owner's."""
    loc = storage.parse(bucket + "resumed.csv")
    client = _client(loc)
    own = str(client.create(loc.path))
    other = str(client.create(loc.path))  # the next owner's
    part = placed(bucket + "resumed.part00001.csv", b"part")
    ex = exporter(loc, Lease(), join={"kind": "s3", "upload_id": own, "opening": 1.0,
                                      "etags": [], "done": 0})
    results = [{"uri": part, "bytes": 4, "sha256": hashlib.sha256(b"part").hexdigest()}]
    with pytest.raises(LeaseLost):
        Join(ex, results)._s3()
    assert _open_ids(loc) == sorted([own, other])


# --- a whole export -------------------------------------------------------------------


def test_a_stale_exporters_removal_of_its_created_object_leaves_the_new_owners(
        where: str) -> None:
    """Its upload cannot be resumed in phase finalizing, and the object does not
    read back as what it streamed: the checkpoint says the job created it,
    so it is removed, but only by the job's owner."""
    loc = storage.parse(placed(where + "created.csv"))
    ex = exporter(loc, Lease(), created={"bytes": 1, "sha256": "0" * 64})
    with pytest.raises(LeaseLost):
        ex._remove_if_created()
    assert still(loc.uri)


def test_a_delete_that_hangs_past_the_lease_stops_the_attempt_before_the_next_action(
        where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A verification failed: the attempt (still the owner) removes its wrong
    object, and that delete hangs until the lease has run out and the job is
    claimed again. The upload it discards next is the next owner's now: the
    fence after the slow call stops the attempt before it."""
    loc = storage.parse(placed(where + "slow.csv"))
    lease = Lease(held=True)
    ex = exporter(loc, lease, upload={"upload_id": "the-next-owners"}, created={})
    ex.owned = True
    ex.checkpoint = lambda: {}  # type: ignore[method-assign]
    delete = storage.delete

    def slow(uri: str, **kwargs: Any) -> bool:
        lease.held = False  # the lease ran out while the call hung
        return delete(uri, **kwargs)

    discarded: list[Any] = []
    monkeypatch.setattr(storage, "delete", slow)
    monkeypatch.setattr(storage, "discard_upload", lambda *args, **kwargs: discarded.append(args))
    with pytest.raises(LeaseLost):
        ex._corrupt("read back wrong")
    assert discarded == []


class Ended(Lease):
    """A job whose attempt ended canceled, as its row reads now (``db.get_job``)."""

    def __init__(self, status: str, cancel_requested: bool = False) -> None:
        super().__init__()
        self.job = {"id": 1, "status": status,
                    "cancel_requested_at": "now" if cancel_requested else None}

    def call(self, fn: Any) -> Any:
        return fn(self)


@pytest.fixture
def row_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's row is the stand-in's (``Ended``): there is no database here
    to hold it in, so the cleanup's hold of the row (Exporter._canceled_hold,
    which a pgjobs.retry waits for) holds nothing, and the fence's look at the
    status is what these tests check, as it is for a job whose cancel is
    still pending. The hold itself is tested against PostgreSQL in
    tests/test_export_cleanup_retry_hold.py."""
    from pgjobs import db

    monkeypatch.setattr(db, "get_job", lambda conn, job_id: conn.job)
    monkeypatch.setattr(Exporter, "_canceled_hold", lambda self: contextlib.nullcontext())


@pytest.mark.parametrize("retried", ["queued", "running", "paused", "succeeded"])
def test_a_canceled_attempts_cleanup_leaves_what_the_retried_job_continues(
        where: str, retried: str, row_as_read: None) -> None:
    """The cancel ends the job with its lease, and the attempt then removes
    its upload and the object it made. pgjobs.retry can queue the job again
    meanwhile (its checkpoint kept): its next owner resumes that upload, or
    finds the object whole and succeeds with it. A cleanup that comes after
    the retry, or a request of it that hung or was resent until then, must
    remove neither."""
    loc = storage.parse(placed(where + "canceled.csv"))
    tmp = placed(where + ".canceled.csv.pgjobs-next.tmp", b"staged")
    ex = exporter(loc, Ended(retried), created={"bytes": 1, "sha256": "0" * 64},
                  upload={"tmp": storage.parse(tmp).path, "staging": "x/"})
    ex._canceled_end()
    assert still(loc.uri)
    if where.startswith("file://"):
        assert still(tmp, b"staged")


@pytest.mark.parametrize("row", [Ended("canceled"), Ended("running", cancel_requested=True)])
def test_a_canceled_attempts_cleanup_removes_what_it_made(
        where: str, row: Ended, row_as_read: None) -> None:
    """Still canceled (or, for a part, its job being canceled): removed."""
    loc = storage.parse(placed(where + "canceled.csv"))
    tmp = placed(where + ".canceled.csv.pgjobs-old.tmp", b"staged")
    ex = exporter(loc, row, created={"bytes": 1, "sha256": "0" * 64},
                  upload={"tmp": storage.parse(tmp).path})
    ex._canceled_end()
    assert not storage.exists(loc.uri)
    if where.startswith("file://"):
        assert not storage.exists(tmp)


class RetriedAfterOneLook(Ended):
    """A canceled job that pgjobs.retry queues again right after the cleanup's
    first look at it (``db.get_job``)."""

    def __init__(self) -> None:
        super().__init__("canceled")

    def call(self, fn: Any) -> Any:
        value = fn(self)
        self.job = {**self.job, "status": "queued"}
        return value


def test_a_retry_between_the_canceled_cleanups_look_and_the_joins_removal_keeps_its_upload(
        bucket: str, row_as_read: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The canceled coordinator's cleanup removes the join's leftovers (its
    upload, the key's unrecorded ones), each only while the job is still
    canceled: a retry that came after the look before them leaves the join's
    upload, which the retried job's join continues (the hold of the row,
    Exporter._cleanup_hold, stands in as nothing here)."""
    from pgjobs import db
    from pgjobs.poller import parallel

    loc = storage.parse(bucket + "joined.csv")
    recorded = str(_client(loc).create(loc.path))
    ex = exporter(loc, RetriedAfterOneLook(),
                  join={"kind": "s3", "upload_id": recorded, "opening": 1.0})
    ex.prefix = bucket
    monkeypatch.setattr(db, "rows", lambda conn, sql, params=None: [])
    with pytest.raises(LeaseLost):
        parallel._forget_parts(ex)
    assert upload_s3.pending_aborts(wait=5) == 0
    assert _open_ids(loc) == [recorded], "the retried job's join upload was aborted"


# --- Parquet ------------------------------------------------------------------------


def _parquet(ex: Exporter, folder: str) -> Any:
    from pgjobs.poller.parquet import ParquetExport

    pq = ParquetExport(ex)
    pq.folder = folder
    pq.row_group_bytes = 1 << 20
    pq.start = None
    ex.prefix = folder
    ex.chunk_rows, ex.part_size, ex.chunk_bytes = 10, 1 << 20, 1 << 20
    return pq


def test_a_stale_parquet_export_leaves_the_file_the_new_owner_wrote_again(where: str) -> None:
    """A file failed the read-back: the stale attempt's removal of it (so the
    retry creates it again) must not take the next owner's file of that name."""
    uri = placed(where + "part-00000.parquet")
    ex = exporter(storage.parse(where), Lease(),
                  files=[{"uri": uri, "rows": 1, "bytes": 3, "sha256": "0" * 64,
                          "cursor": "1"}], rows=1, bytes=3, cursor="1")
    with pytest.raises(LeaseLost):
        _parquet(ex, where)._drop_from(0, "it holds other bytes")
    assert still(uri)


def test_a_stale_parquet_export_leaves_an_unrecorded_file_the_new_owner_wrote(
        where: str) -> None:
    """The same bytes at the same name (a Parquet file is deterministic in its
    rows): for a stale attempt its unrecorded leftover, for the next owner a
    file of its export. Removed only by the job's owner."""
    uri = placed(where + "part-00001.parquet")
    digest = hashlib.sha256(NEW_OWNERS).hexdigest()
    ex = exporter(storage.parse(where), Lease(), files=[],
                  unrecorded=[{"uri": uri, "bytes": len(NEW_OWNERS), "sha256": digest}])
    with pytest.raises(LeaseLost):
        _parquet(ex, where)._remove_unrecorded()
    assert still(uri)


def test_a_parquet_exports_cleanup_after_it_ended_is_not_fenced(where: str) -> None:
    """The other side: the cleanup of a canceled job (no lease left, no owner
    after it) still removes the unrecorded file that holds the job's bytes."""
    uri = placed(where + "part-00002.parquet")
    digest = hashlib.sha256(NEW_OWNERS).hexdigest()
    ex = exporter(storage.parse(where), Lease(), files=[],
                  unrecorded=[{"uri": uri, "bytes": len(NEW_OWNERS), "sha256": digest}])
    assert _parquet(ex, where)._remove_unrecorded(fenced=False) == 1
    assert not storage.exists(uri)


# --- a parallel export's coordinator ---------------------------------------------------


def test_a_stale_coordinator_leaves_the_part_object_the_new_owner_wrote_again(
        where: str) -> None:
    """Part 1 is queued again: its object is removed so that its new write
    finds the key free; a stale coordinator must not remove the part object
    the next owner's part has written again meanwhile."""
    from pgjobs.poller import parallel

    part = placed(where + "job.part00001.csv")
    lease = Lease()
    ex = exporter(storage.parse(where + "job.csv"), lease)
    ex.control = SimpleNamespace(  # type: ignore[assignment]
        heartbeat=lease.heartbeat, keepalive=lease.keepalive,
        call=lambda func: [{"part": 1, "result": {"uri": part}}])
    with pytest.raises(LeaseLost):
        parallel._redo(ex, [1], "its object changed")
    assert still(part)


# --- native and staged S3 uploads ------------------------------------------------------


def test_a_stale_native_upload_resume_leaves_the_new_owners_upload(bucket: str) -> None:
    loc = storage.parse(bucket + "native.csv")
    client = _client(loc)
    own = str(client.create(loc.path))
    other = str(client.create(loc.path))  # the next owner's
    with pytest.raises(LeaseLost):
        upload_s3.NativeS3Upload(loc, {"opening": 1.0, "upload_id": own, "etags": []},
                                 fence=Lease().fence)
    assert _open_ids(loc) == sorted([own, other])


def test_a_stale_staged_upload_resume_leaves_the_new_owners_upload(bucket: str) -> None:
    loc = storage.parse(bucket + "staged.csv")
    other = str(_client(loc).create(loc.path))  # the next owner's finish
    staging = storage.staging_path(bucket, 1)
    with pytest.raises(LeaseLost):
        upload_obstore.StagedUpload(loc, staging, "stale", {"staging": staging, "opening": 1.0},
                                    fence=Lease().fence)
    assert _open_ids(loc) == [other]


def test_a_stale_file_upload_resume_leaves_the_file_it_inherits(tmp_path: Any) -> None:
    """A file:// export resumes by copying the previous owner's temporary file
    (the checkpoint names it) into its own, then removing it: a stale attempt
    must not remove it, the next owner resumes from the same file."""
    from pgjobs.poller import upload_file

    root = storage.trust_root(f"file://{tmp_path}")
    try:
        (tmp_path / "exports").mkdir()
        previous = tmp_path / "exports" / ".r.csv.pgjobs-a1-00.tmp"
        previous.write_bytes(b"abc")
        loc = storage.parse(f"file://{tmp_path}/exports/r.csv")
        digests = [[3, hashlib.sha256(b"abc").hexdigest()]]
        with pytest.raises(LeaseLost):
            upload_file.LocalUpload(loc, "a2-stale", {"tmp": str(previous), "size": 3},
                                    digests, Lease().fence)
        assert previous.read_bytes() == b"abc"
    finally:
        storage.release_root(root)


class SlowClient:
    """A store whose first abort hangs until the lease has run out."""

    def __init__(self, lease: Lease) -> None:
        self.bucket = "b"
        self.lease = lease
        self.aborted: list[str] = []

    def list_uploads(self, prefix: str) -> list[tuple[str, str, float]]:
        return [("k", "stale-attempts", 0.0), ("k", "next-owners", 0.0)]

    def abort(self, key: str, upload_id: str) -> None:
        self.aborted.append(upload_id)
        self.lease.held = False  # hung past the lease: the job was claimed again


def test_an_abort_that_hangs_past_the_lease_aborts_nothing_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lease = Lease(held=True)
    client = SlowClient(lease)
    monkeypatch.setattr(s3, "Client", lambda bucket, **kwargs: client)
    with pytest.raises(LeaseLost):
        upload_s3.abort_unrecorded(client, "k", fence=lease.fence)  # type: ignore[arg-type]
    assert client.aborted == ["stale-attempts"]


def test_fenced_checks_the_lease_before_and_after_the_call() -> None:
    lease = Lease(held=True)
    calls: list[str] = []

    def hangs() -> str:
        calls.append("call")
        lease.held = False
        return "done"

    with pytest.raises(LeaseLost):
        storage.fenced(lease.fence, hangs)
    assert calls == ["call"] and lease.beats == 2
    with pytest.raises(LeaseLost):  # refused before: the call is never made
        storage.fenced(lease.fence, hangs)
    assert calls == ["call"]
    assert storage.fenced(None, lambda: "alone") == "alone"


def test_destructive_s3_calls_are_sent_once(s3_env: str) -> None:
    """botocore retries a call by itself (PGJOBS_S3_ATTEMPTS): a fenced abort
    or delete must not be resent after the fence, possibly past the lease."""
    assert s3.botocore_client(False).meta.config.retries["total_max_attempts"] == 1
    assert s3.botocore_client().meta.config.retries["total_max_attempts"] > 1


# --- an import's rejects object -----------------------------------------------------


def test_a_stale_import_does_not_write_over_its_rejects_object(
        where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rejects object the job created (its checkpoint says so) is written
    again by every attempt; the next owner's write, verified and reported
    in its result, must not be written over by a stale attempt."""
    from pgjobs.poller.importer import Importer

    uri = placed(where + "job.rejects.jsonl")
    imp = Importer.__new__(Importer)
    imp.control = Lease()  # type: ignore[assignment]
    imp.storage_uri = where
    imp.job_id = 1
    monkeypatch.setattr(imp, "_named_rejects", lambda: uri)
    monkeypatch.setattr(imp, "_created", lambda named: named == uri)
    with pytest.raises(LeaseLost):
        imp._place_rejects(b'{"line": 1}\n')
    assert still(uri)


# --- sent once: every client a fenced call uses -----------------------------------


class Flaky:
    """``s3.Client.abort`` failing once with a transient error (a 503), then real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = s3.Client.abort

        def abort(client: s3.Client, key: str, upload_id: str) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise s3.S3Error(503, "SlowDown", "please reduce your request rate")
            return real(client, key, upload_id)

        monkeypatch.setattr(s3.Client, "abort", abort)


def test_a_fenced_abort_that_fails_is_never_resent_in_the_background(
        bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt's discard of the upload its checkpoint names, whose abort
    fails once: nothing is queued to abort it later, out of the fence (the
    queue retries until it succeeds, long after the lease may have run out
    and the next owner resumed that very upload, which the checkpoint still
    names). The open upload is left for the queued removal and the stale
    sweep, which run once the job has ended."""
    loc = storage.parse(bucket + "discarded.csv")
    upload_id = str(_client(loc).create(loc.path))
    flaky = Flaky(monkeypatch)
    lease = Lease(held=True)
    storage.fenced(lease.fence, lambda: storage.discard_upload(
        loc, {"upload_id": upload_id}, lease.fence), best_effort=True)
    assert flaky.calls == 1
    assert upload_s3.pending_aborts(wait=0) == 0
    assert _open_ids(loc) == [upload_id]
    # The job's cleanup once it ended (no fence) aborts it, as before.
    upload_s3.abort_later(loc, upload_id)
    assert upload_s3.pending_aborts(wait=30) == 0
    assert flaky.calls == 2 and _open_ids(loc) == []


def test_every_client_a_fenced_call_uses_sends_each_request_once(
        s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the calls that ask for it (``delete(retries=False)``): the
    staged parts' removal (``delete_prefix``), a rewrite, an upload's abort
    through ``s3.Client``, whatever a fenced call reaches, none of it resent
    by the client after the fence. Outside a fenced call, clients retry."""
    loc = storage.parse("s3://pgjobs-once/out.csv")
    asked: list[bool] = []

    class Botocore:
        def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(s3, "botocore_client",
                        lambda retries=True: asked.append(retries) or Botocore())
    lease = Lease(held=True)
    once = storage.store_for(loc, retries=False)
    assert storage.fenced(lease.fence, lambda: storage.store_for(loc)) is once
    storage.fenced(lease.fence, lambda: s3.Client("pgjobs-once").abort("k", "u"))
    assert asked == [False]
    assert storage.store_for(loc) is not once
    s3.Client("pgjobs-once").abort("k", "u")
    assert asked == [False, True]
    # Once the call raised, the clients retry again.
    with pytest.raises(LeaseLost):
        storage.fenced(lease.fence, lambda: lease.__setattr__("held", False))
    lease.held = True
    assert storage.store_for(loc) is not once
