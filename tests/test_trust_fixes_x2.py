"""What was streamed is fixed by the checkpoint before anything can become visible
(issue 9, item 7): each part's size and SHA-256 are checkpointed with the part
(`digests`), so that

* a retry after a crash between making the object visible and checkpointing its
  SHA-256 accepts the object only if it reads back, part by part, as those
  digests: a same-size alteration is rewritten, never completed;
* a resume checks what it inherits (the previous owner's temporary file, staged
  parts) against them: an altered byte anywhere never reaches the object;
* a checkpoint without digests (written before they existed) is not resumed
  blindly: the export starts over and ends byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import obstore
import psycopg
import pytest

from pgjobs.poller import s3client as s3
from pgjobs.poller import storage
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.storage import Mismatch, PartDigests
from tests.support import (
    expire_lease,
    job,
    make_items,
    object_bytes,
    run_export,
    scalar,
    submit_export,
)

Conn = psycopg.Connection[Any]
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}


def destination_for(where: str, local_dir: str) -> str:
    if where == "file":
        return local_dir
    return f"memory:///x2-{os.getpid()}-{os.urandom(4).hex()}/"


def reference(conn: Conn, dsn: str, destination: str) -> bytes:
    """The object of the same export, uninterrupted (the job id is not content)."""
    outcome = run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS), destination)
    assert outcome.result is not None and outcome.result["parts"] >= 6
    return object_bytes(outcome.result)


def claim(conn: Conn, job_id: int, name: str) -> str:
    return str(scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, %s, '30 seconds')",
                      (job_id, name)))


def flip(data: bytes, where: int) -> bytes:
    return data[:where] + bytes([data[where] ^ 0x01]) + data[where + 1:]


def rewrite(location: storage.Location, change: Any) -> None:
    if location.scheme == "file":
        with open(location.path, "rb") as f:
            data = f.read()
        with open(location.path, "wb") as f:
            f.write(change(data))
        return
    store = storage.store_for(location)
    obstore.put(store, location.path, change(bytes(obstore.get(store, location.path).bytes())))


OFFSETS = {"first": lambda n: 0, "middle": lambda n: n // 2, "last": lambda n: n - 1}


# --- A: a crash right after the object became visible ---------------------------------


class CrashAfterVisible(Exporter):
    """Checkpoints `finalizing`, makes the object visible, then dies before the
    SHA-256 of the object is checkpointed."""

    def _finalize(self) -> Outcome:
        self.state["phase"] = "finalizing"
        assert self.control.heartbeat(done=self.state["rows"], checkpoint=self.checkpoint())
        assert self.upload is not None
        self.upload.finish()
        return Outcome(self.job_id, "lost", error="simulated crash")


@pytest.mark.parametrize("offset", sorted(OFFSETS))
@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_same_size_change_after_a_crash_at_visibility_is_never_completed(
        conn: Conn, dsn: str, local_dir: str, where: str, offset: str) -> None:
    """The job never completes with the changed object. On file:// and
    memory:// (both create conditionally) nothing proves the job made the
    object now at the key (the crash came before ``created`` was checkpointed,
    and it no longer reads back as what was streamed): it may be another's, so
    it is never written over, and the job fails for good (42710), the object
    left as found (docs/exports.md, "Where exports may go")."""
    destination = destination_for(where, local_dir)
    make_items(conn, rows=900)
    expected = reference(conn, dsn, destination)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    CrashAfterVisible(dsn, job_id, claim(conn, job_id, "crash"), destination).run()
    checkpoint = job(conn, job_id)["checkpoint"]
    # What was streamed is in the checkpoint before the object could be seen.
    assert checkpoint["phase"] == "finalizing" and not checkpoint.get("sha256")
    digests = checkpoint["digests"]
    assert len(digests) == checkpoint["parts"]
    assert sum(size for size, _ in digests) == checkpoint["bytes"] == len(expected)
    location = storage.parse(checkpoint["uri"])
    assert storage.read(checkpoint["uri"]) == expected
    rewrite(location, lambda data: flip(data, OFFSETS[offset](len(data))))
    assert len(storage.read(checkpoint["uri"])) == len(expected)

    changed = storage.read(checkpoint["uri"])

    expire_lease(conn, job_id)
    outcome = run_export(dsn, job_id, destination)
    assert outcome.status == "failed", outcome
    assert "refusing to write" in (outcome.error or ""), outcome
    assert "[42710]" in (outcome.error or ""), outcome
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["result"] is None
    assert storage.read(checkpoint["uri"]) == changed


def test_an_untouched_object_after_a_crash_at_visibility_is_accepted(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """The digests accept the right object: no rewrite when nothing changed."""
    make_items(conn, rows=900)
    expected = reference(conn, dsn, local_dir)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    CrashAfterVisible(dsn, job_id, claim(conn, job_id, "crash"), local_dir).run()
    expire_lease(conn, job_id)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert len(row["checkpoint"]["history"]) == 1, "the object was rewritten"


# --- B: a resume inherits what was streamed, or nothing -------------------------------


class StopAfter(Exporter):
    """Stops (as on SIGTERM) after reading some chunks: whole parts are written and
    checkpointed, the job is released with its checkpoint."""

    chunks = 30

    def _read_chunk(self, cursor: str | None, part: Any) -> tuple[int, str | None]:
        self.chunks -= 1
        if self.chunks <= 0:
            self.stop.set()
        return super()._read_chunk(cursor, part)


def stopped_part_way(conn: Conn, dsn: str, destination: str) -> tuple[int, dict[str, Any]]:
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    outcome = StopAfter(dsn, job_id, claim(conn, job_id, "stop"), destination,
                        stop=threading.Event()).run()
    assert outcome.status == "released", outcome
    checkpoint = job(conn, job_id)["checkpoint"]
    assert checkpoint["parts"] >= 3 and checkpoint["phase"] == "streaming"
    assert len(checkpoint["digests"]) == checkpoint["parts"]
    return job_id, checkpoint


def staged_parts(location: storage.Location, checkpoint: dict[str, Any]) -> list[str]:
    store = storage.store_for(location)
    return sorted(meta["path"] for batch in obstore.list(store, checkpoint["upload"]["staging"])
                  for meta in batch)


def finish(conn: Conn, dsn: str, job_id: int, destination: str) -> list[Outcome]:
    """Run the job until it ends (a verification failure retries once)."""
    outcomes = []
    for _ in range(3):
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        outcomes.append(run_export(dsn, job_id, destination))
        if outcomes[-1].status != "retrying":
            break
    return outcomes


@pytest.mark.parametrize("offset", sorted(OFFSETS))
def test_an_altered_temporary_file_is_not_inherited(
        conn: Conn, dsn: str, local_dir: str, offset: str) -> None:
    make_items(conn, rows=900)
    expected = reference(conn, dsn, local_dir)
    job_id, checkpoint = stopped_part_way(conn, dsn, local_dir)
    tmp, size = checkpoint["upload"]["tmp"], checkpoint["upload"]["size"]
    with open(tmp, "rb") as f:
        data = f.read()
    assert len(data) == size
    with open(tmp, "wb") as f:
        f.write(flip(data, OFFSETS[offset](size)))

    outcomes = finish(conn, dsn, job_id, local_dir)
    assert [o.status for o in outcomes] == ["succeeded"], outcomes
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    # Started over: nothing of the altered file was kept.
    assert row["checkpoint"]["history"][-1]["part"] == 0
    assert not os.path.exists(tmp)


@pytest.mark.parametrize("offset", sorted(OFFSETS))
def test_an_altered_staged_part_never_reaches_the_object(
        conn: Conn, dsn: str, offset: str) -> None:
    destination = destination_for("memory", "")
    make_items(conn, rows=900)
    expected = reference(conn, dsn, destination)
    job_id, checkpoint = stopped_part_way(conn, dsn, destination)
    location = storage.parse(checkpoint["uri"])
    parts = staged_parts(location, checkpoint)
    assert len(parts) == checkpoint["parts"]
    victim = parts[OFFSETS[offset](len(parts))]
    rewrite(storage.Location(location.scheme, location.base, victim),
            lambda data: flip(data, len(data) // 2))

    outcomes = finish(conn, dsn, job_id, destination)
    # Caught when the parts are composed: nothing visible, the checkpoint reset,
    # the retry rewrites everything.
    assert [o.status for o in outcomes] == ["retrying", "succeeded"], outcomes
    assert "verification failed" in (outcomes[0].error or "")
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["checkpoint"]["history"][-1]["part"] == 0


@pytest.mark.parametrize("where", ["file", "memory"])
def test_an_untouched_resume_continues_byte_identical(
        conn: Conn, dsn: str, local_dir: str, where: str) -> None:
    destination = destination_for(where, local_dir)
    make_items(conn, rows=900)
    expected = reference(conn, dsn, destination)
    job_id, checkpoint = stopped_part_way(conn, dsn, destination)
    outcomes = finish(conn, dsn, job_id, destination)
    assert [o.status for o in outcomes] == ["succeeded"], outcomes
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["checkpoint"]["history"][-1]["part"] == checkpoint["parts"]  # continued
    assert len(row["checkpoint"]["digests"]) == row["result"]["parts"]


@pytest.mark.parametrize("where", ["file", "memory"])
@pytest.mark.parametrize("damage", ["no-digests", "one-digest-short", "wrong-size"])
def test_a_checkpoint_without_matching_digests_starts_over(
        conn: Conn, dsn: str, local_dir: str, where: str, damage: str) -> None:
    """A checkpoint written before digests existed (an upgrade with jobs in flight),
    or one whose digests do not cover its parts, is not resumed blindly."""
    destination = destination_for(where, local_dir)
    make_items(conn, rows=900)
    expected = reference(conn, dsn, destination)
    job_id, checkpoint = stopped_part_way(conn, dsn, destination)
    if damage == "no-digests":
        checkpoint.pop("digests")
    elif damage == "one-digest-short":
        checkpoint["digests"].pop()
    else:
        checkpoint["digests"][0][0] += 1
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = %s WHERE id = %s",
                 (psycopg.types.json.Jsonb(checkpoint), job_id))
    outcomes = finish(conn, dsn, job_id, destination)
    assert [o.status for o in outcomes] == ["succeeded"], outcomes
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["checkpoint"]["history"][-1]["part"] == 0


# --- the checker itself ---------------------------------------------------------------


def digests_of(*parts: bytes) -> list[list[Any]]:
    return [[len(p), hashlib.sha256(p).hexdigest()] for p in parts]


@pytest.mark.parametrize("blocks", [1, 3, 7, 1000])
def test_part_digests_accept_exactly_the_streamed_bytes(blocks: int) -> None:
    parts = (b"", b"abc", b"", b"defghij", b"k" * 50, b"")
    whole = b"".join(parts)
    check = PartDigests(digests_of(*parts))
    for start in range(0, len(whole), blocks):
        check.update(whole[start:start + blocks])
    assert (check.finish(), check.hexdigest()) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert (PartDigests([]).finish(), PartDigests([]).hexdigest()) == (
        0, hashlib.sha256(b"").hexdigest())
    # Parts only: the same check, each byte hashed once.
    parts_only = PartDigests(digests_of(*parts), whole=False)
    for start in range(0, len(whole), blocks):
        parts_only.update(whole[start:start + blocks])
    assert parts_only.finish() == len(whole)


@pytest.mark.parametrize("stored", [
    b"abXdefghijk",  # one byte changed
    b"abcdefghij",  # one byte short
    b"abcdefghijkl",  # one byte more
    b"abcdefghjik",  # two bytes swapped
    b"",
], ids=["flipped", "short", "long", "swapped", "empty"])
@pytest.mark.parametrize("whole", [True, False], ids=["whole", "parts-only"])
def test_part_digests_refuse_anything_else(stored: bytes, whole: bool) -> None:
    check = PartDigests(digests_of(b"abc", b"defghijk"), whole=whole)
    with pytest.raises(Mismatch):
        check.update(stored)
        check.finish()


# --- native S3: the resumed object is checked against every attempt's parts ----------


@pytest.fixture
def big(conn: Conn) -> None:
    """About 8 MB in tenant 1 (~20 KB rows): two parts of 5 MiB."""
    conn.execute("CREATE TABLE big (id int NOT NULL, tenant int, created_at timestamptz NOT NULL "
                 "DEFAULT now() - interval '1 minute', body text)")
    conn.execute("CREATE INDEX ON big (tenant, id)")
    conn.execute("SELECT pgjobs.register_target('big', 'id', 'tenant', 'created_at')")
    conn.execute("INSERT INTO big (id, tenant, body) SELECT g, g % 2, repeat(md5(g::text), 600) "
                 "FROM generate_series(1, 800) g")


@pytest.mark.parametrize("damage", ["none", "first-part-digest"])
def test_a_resumed_native_s3_upload_is_checked_against_what_was_streamed(
        conn: Conn, dsn: str, big: None, bucket: str, damage: str) -> None:
    options = {"part_size": s3.MIN_PART, "chunk_rows": 40}
    first = run_export(dsn, submit_export(conn, "1", {}, options, target="big"), bucket)
    assert first.result is not None and first.result["parts"] >= 2
    expected = object_bytes(first.result)

    job_id = submit_export(conn, "1", {}, options, target="big")
    stopper = StopAfter(dsn, job_id, claim(conn, job_id, "stop"), bucket, stop=threading.Event())
    stopper.chunks = 9  # past the first 5 MiB part
    assert stopper.run().status == "released"
    checkpoint = job(conn, job_id)["checkpoint"]
    assert checkpoint["upload"].get("upload_id") and checkpoint["parts"] >= 1
    assert len(checkpoint["digests"]) == checkpoint["parts"]
    if damage != "none":
        # The checkpoint says other bytes were streamed than the stored part holds.
        checkpoint["digests"][0][1] = hashlib.sha256(b"other bytes").hexdigest()
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = %s WHERE id = %s",
                     (psycopg.types.json.Jsonb(checkpoint), job_id))
    outcomes = finish(conn, dsn, job_id, bucket)
    if damage == "none":
        assert [o.status for o in outcomes] == ["succeeded"], outcomes
        assert job(conn, job_id)["checkpoint"]["history"][-1]["part"] == checkpoint["parts"]
    else:
        assert [o.status for o in outcomes] == ["retrying", "succeeded"], outcomes
        assert "verification failed" in (outcomes[0].error or "")
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["result"]["sha256"] == hashlib.sha256(expected).hexdigest()
