"""An attempt aborts the key's unrecorded S3 multipart uploads only while it
still owns the job.

The in-process aborts of uploads "opened and never recorded" (a create sent
again after its answer was lost; an attempt's cleanup after such a create)
take every upload of the key but the one the attempt knows. A stale attempt
(its lease ran out, the job claimed again) does not know the new owner's
upload: unfenced, its abort killed the live upload, and the live attempt
failed at its next part or at its complete. Each such abort now renews the
lease first (the same checkpoint that recorded ``opening``) and is skipped,
or raises LeaseLost, when the job is no longer the attempt's. Also: the
abort takes only uploads of exactly the key, never of a key it prefixes.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage, upload_s3
from pgjobs.poller.export import Exporter, LeaseLost
from pgjobs.poller.join import Join


def _client(loc: storage.Location) -> s3.Client:
    return s3.Client(loc.base.split("://", 1)[1])


def _open_ids(loc: storage.Location) -> list[str]:
    return sorted(u for key, u, _ in _client(loc).list_uploads(loc.path) if key == loc.path)


class _Lease:
    """The stale attempt's lease: held until the next owner claims the job."""

    def __init__(self) -> None:
        self.held = True
        self.recorded: list[object] = []  # the checkpoints of `opening` it wrote

    def fence(self) -> None:
        if not self.held:
            raise LeaseLost("heartbeat refused")


def _stale_with_lost_create(mp: pytest.MonkeyPatch, loc: storage.Location,
                            lease: _Lease) -> upload_s3.NativeS3Upload:
    """An attempt whose create made an upload and lost the answer; then its
    lease runs out and the next owner opens its own upload (which it records)."""
    create = s3.Client.create
    answered = threading.Event()

    def lost(self: s3.Client, key: str) -> str:
        create(self, key)
        answered.set()
        raise s3.S3Error(0, "", "connection reset by peer (the answer was lost)")

    mp.setattr(s3.Client, "create", lost)
    stale = upload_s3.NativeS3Upload(loc, None, record=lease.recorded.append,
                                     fence=lease.fence)
    assert answered.wait(30)
    mp.setattr(s3.Client, "create", create)
    return stale


def _next_owner(loc: storage.Location, lease: _Lease) -> str:
    lease.held = False  # the job is claimed again: the stale lease is gone
    live = upload_s3.NativeS3Upload(loc, {"opening": 1.0}, record=lambda state: None,
                                    fence=lambda: None)
    return str(live.state()["upload_id"])


def test_a_stale_attempts_cleanup_leaves_the_live_upload(bucket: str) -> None:
    loc = storage.parse(bucket + "fence/cleanup.csv")
    lease = _Lease()
    with pytest.MonkeyPatch.context() as mp:
        stale = _stale_with_lost_create(mp, loc, lease)
    live_id = _next_owner(loc, lease)
    assert _open_ids(loc) == [live_id], "the next owner did not abort the lost one"
    stale.cleanup()  # the stale attempt ends
    assert _open_ids(loc) == [live_id]


def test_a_stale_attempts_create_retry_leaves_the_live_upload(bucket: str) -> None:
    loc = storage.parse(bucket + "fence/retry.csv")
    lease = _Lease()
    with pytest.MonkeyPatch.context() as mp:
        stale = _stale_with_lost_create(mp, loc, lease)
    with pytest.raises(storage.StorageError):
        stale.state()  # the first part: the create's error
    live_id = _next_owner(loc, lease)
    with pytest.raises(LeaseLost):
        stale.state()  # a retried part: the create is sent again
    assert _open_ids(loc) == [live_id]
    # Only before its create: a part's retry (an upload's thread) writes no
    # checkpoint, whose cursor may be ahead of what the upload holds.
    assert len(lease.recorded) == 1


def test_a_stale_joiners_create_retry_leaves_the_live_upload(bucket: str) -> None:
    loc = storage.parse(bucket + "fence/joined.csv")
    client = _client(loc)
    live_id = str(client.create(loc.path))  # the next owner's join, recorded

    def refused() -> None:
        raise LeaseLost("heartbeat refused")

    stale = SimpleNamespace(ex=SimpleNamespace(location=loc), _save=refused,
                            state={"kind": "s3", "opening": 1.0})
    with pytest.raises(LeaseLost):
        Join._s3_open(stale, client)  # type: ignore[arg-type]
    assert _open_ids(loc) == [live_id]


@pytest.mark.parametrize("other", ["out.csv.gz", "out.csv/x", "out.csv ", "out.csv%2B"])
def test_only_uploads_of_exactly_the_key_are_aborted(bucket: str, other: str) -> None:
    loc = storage.parse(bucket + "exact/out.csv")
    client = _client(loc)
    neighbour = loc.path.rsplit("/", 1)[0] + "/" + other
    kept = str(client.create(neighbour))
    mine = str(client.create(loc.path))
    assert upload_s3.abort_unrecorded(client, loc.path) == 1
    assert _open_ids(loc) == []
    assert [u for k, u, _ in client.list_uploads(neighbour) if k == neighbour] == [kept]
    assert mine != kept


@pytest.mark.parametrize("owned", [False, True])
def test_a_stale_joiners_discard_leaves_the_live_upload(bucket: str, owned: bool) -> None:
    """A joiner discards its upload (its join starts over: the upload lost, the
    parts redone): the key's unrecorded uploads go too, but only while the job
    is its own; a stale one's discard leaves the next owner's upload."""
    loc = storage.parse(bucket + "fence/discarded.csv")
    client = _client(loc)
    own_id = str(client.create(loc.path))  # the stale joiner's, recorded
    other_id = str(client.create(loc.path))  # the next owner's (or a lost answer's)
    ex = SimpleNamespace(
        location=loc, delays={}, job_id=1,
        state={"join": {"kind": "s3", "opening": 1.0, "upload_id": own_id}},
        control=SimpleNamespace(heartbeat=lambda *args, **kwargs: owned))
    with pytest.MonkeyPatch.context() as mp:
        aborted: list[str] = []
        mp.setattr(upload_s3, "abort_later", lambda location, upload_id: aborted.append(upload_id))
        Join(ex, []).discard()  # type: ignore[arg-type]
    assert aborted == [own_id]
    assert _open_ids(loc) == sorted([own_id] if owned else [own_id, other_id])


def test_a_stale_attempts_start_over_leaves_the_live_upload(bucket: str) -> None:
    """A stale attempt whose upload was aborted under it (by the next owner's
    resume: it was never recorded) starts the upload over: it raises
    LeaseLost before it discards anything, and the next owner's upload stays."""
    loc = storage.parse(bucket + "fence/started-over.csv")
    live_id = str(_client(loc).create(loc.path))  # the next owner's
    stale = Exporter.__new__(Exporter)
    stale.location = loc
    stale.state = {"upload": {"opening": 1.0}, "history": []}
    stale.control = SimpleNamespace(heartbeat=lambda *args, **kwargs: False)
    stale.chunk_rows, stale.chunk_bytes, stale.part_size = 5, 5 << 20, 5 << 20
    stale.recording, stale.staging, stale.token = None, "", "stale"
    stale.checkpoint = lambda: {}  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        stale._start_over()
    assert _open_ids(loc) == [live_id]


@pytest.mark.parametrize("name", ["my dir/a+b.csv", "pct%20/x=3Dy.csv", "caf\u00e9/~a&b.csv"])
def test_a_key_with_special_characters_is_matched(bucket: str, name: str) -> None:
    """A destination's characters (spaces, `+`, `%`, `=`, non-ASCII) reach
    the listing and come back as the same key: its unrecorded upload goes."""
    loc = storage.parse(bucket + name)
    client = _client(loc)
    client.create(loc.path)
    assert upload_s3.abort_unrecorded(client, loc.path) == 1
    assert _open_ids(loc) == []


@pytest.mark.parametrize("name", ["a*.parquet", "a?.parquet", "a[b].parquet", "a.parquet"])
def test_remove_temporaries_takes_only_the_names_own(tmp_path: Any, name: str) -> None:
    """A file's temporary files go, matched by its exact name (never as a
    pattern: `*`, `?`, `[` are characters), and nothing else of the folder:
    not another name's, nor one the name is a prefix of."""
    import os

    folder = tmp_path / "exports"
    folder.mkdir()
    own = [f".{name}.pgjobs-0a1b2c.tmp", f".{name}.pgjobs-ff_ee-1.tmp"]
    others = [".ab.parquet.pgjobs-0a1b2c.tmp", ".a.parquet.gz.pgjobs-0a1b2c.tmp",
              f".{name}x.pgjobs-0a1b2c.tmp", f"{name}", ".a].parquet.pgjobs-1.tmp",
              f".{name}.pgjobs-0a1b2c.tmp.pgjobs-9.tmp"]
    for f in own + others:
        (folder / f).write_bytes(b"x")
    root = storage.trust_root(f"file://{tmp_path}")
    try:
        assert storage.remove_temporaries(f"file://{folder}/{name}") == len(own)
    finally:
        storage.release_root(root)
    assert sorted(os.listdir(folder)) == sorted(others)
