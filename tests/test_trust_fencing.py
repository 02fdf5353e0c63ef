"""Fencing on the attempt, not the name (issue 9, item 7), and exports verified
before they complete.

Every claim (claim, claim_export, _claim_id) stores its own identity in
`pgjobs.jobs.worker`, name#token, and every state change compares it exactly:
a stale attempt under the same worker name (its lease expired, the job claimed
again) changes nothing, whatever it calls. `pgjobs worker --concurrency N`
never runs one job twice at once, even when its own loop claims back a job
after a pause longer than the lease. An export reads its object back and
compares size and SHA-256 with what it streamed before it completes.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import obstore
import psycopg
import pytest

from pgjobs import db
from pgjobs.poller import storage
from pgjobs.poller import worker as worker_module
from pgjobs.poller.export import Exporter, Outcome
from tests.support import (
    checkpoint_parts,
    claim,
    expire_lease,
    job,
    make_items,
    make_rows_target,
    make_target,
    object_bytes,
    run_export,
    scalar,
    seed,
    submit,
    submit_delete,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
IDENTITY = re.compile(r"^(?P<name>.+)#[0-9a-f]{16}$")


def identity_of(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT worker FROM pgjobs.jobs WHERE id = %s", (job_id,)))


# --- identities -------------------------------------------------------------------


def test_every_claiming_path_returns_its_own_identity(conn: Conn) -> None:
    make_target(conn)
    ids = [submit(conn) for _ in range(50)]
    rows = conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['custom'], 'same', "
                        "'30 seconds', 50)").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    identities = [r[1] for r in rows]
    assert len(set(identities)) == 50, "two claims share an identity"
    for identity in identities:
        match = IDENTITY.match(identity)
        assert match and match["name"] == "same", identity
    # The returned row is the stored one.
    for job_id, identity in rows:
        assert identity_of(conn, job_id) == identity

    # Released and claimed again under the same name: a new identity.
    first = rows[0][0]
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (first, rows[0][1]))
    again = scalar(conn, "SELECT worker FROM pgjobs.claim(ARRAY['custom'], 'same')")
    assert again != rows[0][1] and IDENTITY.match(again)
    assert not scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (first, rows[0][1]))


def test_claim_export_and_claim_id_return_identities(conn: Conn) -> None:
    make_items(conn, rows=30)
    export_id = submit_export(conn, "1")
    row = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'exp', '30 seconds')",
                       (export_id,)).fetchone()
    assert row is not None and row[0] == export_id
    assert IDENTITY.match(row[1]) and row[1].startswith("exp#")
    assert not scalar(conn, "SELECT pgjobs.heartbeat(%s, 'exp')", (export_id,))
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)", (export_id, row[1]))

    t = make_rows_target(conn)
    seed(conn, t)
    delete_id = submit_delete(conn, t, "1", {"k": 1})
    claimed = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'rj')).worker", (delete_id,))
    assert IDENTITY.match(claimed) and claimed.startswith("rj#")
    assert scalar(conn, "SELECT pgjobs._run_page(%s, 'rj')", (delete_id,)) == "lost"


# --- a stale attempt under the same name ---------------------------------------------


def test_a_stale_attempt_under_the_same_name_changes_nothing(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn)
    assert claim(conn, "w") == [job_id]
    stale = identity_of(conn, job_id)
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 10, '{\"after\": 10}')",
                  (job_id, stale))
    expire_lease(conn, job_id)
    assert claim(conn, "w") == [job_id]  # rescued and claimed again, same name
    fresh = identity_of(conn, job_id)
    assert fresh != stale
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 20, '{\"after\": 20}')",
                  (job_id, fresh))
    before = job(conn, job_id)

    for caller in (stale, "w", stale.upper(), stale + " ", fresh.split("#")[0] + "#"):
        # A regressed checkpoint from the stale attempt is refused.
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 5, '{\"after\": 5}')",
                      (job_id, caller)) is False
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{\"rows\": 5}')",
                      (job_id, caller)) is False
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'stale', false)",
                      (job_id, caller)) is False
        assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, caller)) is False
    after = job(conn, job_id)
    for key in ("status", "worker", "done", "checkpoint", "attempts", "result", "error",
                "updated_at", "lease_expires_at"):
        assert after[key] == before[key], key
    assert after["checkpoint"] == {"after": 20}
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, fresh))


def test_a_stale_runner_page_is_lost_under_the_same_name(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t)
    job_id = submit_delete(conn, t, "1", {}, options={"page_size": 10})
    stale = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'runner')).worker", (job_id,))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, stale)) == "more"
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, stale)) == "more"
    expire_lease(conn, job_id)
    fresh = scalar(conn, "SELECT (pgjobs._claim_id(%s, 'runner')).worker", (job_id,))
    assert fresh != stale
    before = job(conn, job_id)
    rows_before = scalar(conn, "SELECT count(*) FROM user_table_rows")
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, stale)) == "lost"
    assert scalar(conn, "SELECT pgjobs._run_page(%s, 'runner')", (job_id,)) == "lost"
    assert scalar(conn, "SELECT count(*) FROM user_table_rows") == rows_before
    assert job(conn, job_id)["checkpoint"] == before["checkpoint"]
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, fresh)) in ("more", "retry"):
        pass
    assert job(conn, job_id)["status"] == "succeeded"


def test_a_stale_export_under_the_same_name_cannot_checkpoint_or_complete(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: the stale attempt heartbeated a regressed checkpoint and
    completed an export whose object missed its first bytes. Same worker name for
    both claims; file:// (where a stale writer's temporary file is unlinked under it)."""
    make_items(conn, rows=900)
    reference = submit_export(conn, "1", {}, MANY_PARTS)
    expected = object_bytes(run_export(dsn, reference, local_dir).result or {})

    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    stale_identity = scalar(
        conn, "SELECT worker FROM pgjobs.claim_export(%s, 'host:1', '30 seconds')", (job_id,))
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    stale = Exporter(dsn, job_id, stale_identity, local_dir)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(stale.run()))
    thread.start()
    wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
    checkpoint = job(conn, job_id)["checkpoint"]
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "")
    expire_lease(conn, job_id)
    fresh_identity = scalar(
        conn, "SELECT worker FROM pgjobs.claim_export(%s, 'host:1', '30 seconds')", (job_id,))
    assert fresh_identity != stale_identity
    fresh = Exporter(dsn, job_id, fresh_identity, local_dir).run()
    thread.join(timeout=30)
    assert fresh.status == "succeeded", fresh
    assert box and box[0].status == "lost", box
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["worker"] == fresh_identity
    assert object_bytes(row["result"]) == expected
    # The stale attempt's late calls, with a regressed checkpoint, change nothing.
    with db.connect(dsn) as late:
        for caller in (stale_identity, "host:1"):
            assert not db.heartbeat(late, job_id, caller, 1, checkpoint)
            assert not db.complete(late, job_id, caller, {"uri": "bogus"})
            assert not db.fail(late, job_id, caller, "stale", False)
    assert job(conn, job_id)["result"] == row["result"]


# --- pgjobs worker --concurrency 2 after a pause longer than the lease ------------------


def test_worker_never_runs_a_job_twice_after_a_pause_longer_than_the_lease(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=900)
    reference = submit_export(conn, "1", {}, MANY_PARTS)
    expected = object_bytes(run_export(dsn, reference, local_dir).result or {})
    job_id = submit_export(conn, "1", {}, MANY_PARTS)

    runs: list[tuple[str, float, float]] = []  # (identity, start, end) of each attempt
    lock = threading.Lock()

    class Recording(Exporter):
        def _run(self) -> Outcome:
            start = time.monotonic()
            try:
                return super()._run()
            finally:
                with lock:
                    runs.append((self.worker, start, time.monotonic()))

    monkeypatch.setattr(worker_module, "Exporter", Recording)
    # A long sleep after each checkpointed part: the "pause" of the first attempt.
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=1.5")
    w = worker_module.Worker(dsn, local_dir, concurrency=2, once=True, poll=0.1,
                             on_event=lambda line: None, name="one-name")
    runner = threading.Thread(target=w.run)
    runner.start()
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 1, what="a first part")
        first = identity_of(conn, job_id)
        monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "")  # the next attempt runs at speed
        expire_lease(conn, job_id)  # the pause outlived the lease
        # The worker's own loop claims the job back (same name, new identity) while
        # the first attempt still sleeps.
        wait_for(lambda: identity_of(conn, job_id) != first, timeout=60,
                 what="the loop to claim the job back")
        wait_for(lambda: job(conn, job_id)["status"] == "succeeded", timeout=60,
                 what="the job to succeed")
    finally:
        runner.join(timeout=60)
    assert not runner.is_alive()
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    attempts = sorted((start, end, who_) for who_, start, end in runs)
    assert len(attempts) == 2, attempts
    assert len({a[2] for a in attempts}) == 2, "two attempts shared an identity"
    assert attempts[0][1] <= attempts[1][0], f"attempts overlapped: {attempts}"
    assert row["worker"] == attempts[1][2]


# --- verification before complete --------------------------------------------------------


def _truncate_head(data: bytes) -> bytes | None:
    return data[16 * 1024:] if len(data) > 16 * 1024 else data[len(data) // 2:]


def _flip_byte(data: bytes) -> bytes | None:
    return data[:100] + bytes([data[100] ^ 0x01]) + data[101:]


def _append(data: bytes) -> bytes | None:
    return data + b"x"


def _remove(data: bytes) -> bytes | None:
    return None


def tamper_with(location: storage.Location, change: Callable[[bytes], bytes | None]) -> None:
    """Rewrite (or remove) the stored object behind the exporter's back."""
    if location.scheme == "file":
        with open(location.path, "rb") as f:
            changed = change(f.read())
        if changed is None:
            os.unlink(location.path)
        else:
            with open(location.path, "wb") as f:
                f.write(changed)
        return
    store = storage.store_for(location)
    changed = change(bytes(obstore.get(store, location.path).bytes()))
    if changed is None:
        obstore.delete(store, location.path)
    else:
        obstore.put(store, location.path, changed)


@pytest.mark.parametrize("change", [_truncate_head, _flip_byte, _append, _remove],
                         ids=["truncate-head", "flip-byte", "append", "remove"])
@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_tampered_object_never_completes_and_is_rewritten(
        conn: Conn, dsn: str, local_dir: str, where: str,
        change: Callable[[bytes], bytes | None]) -> None:
    destination = local_dir if where == "file" else f"memory:///verify-{os.getpid()}-{id(change)}/"
    make_items(conn, rows=900)
    options = {"chunk_rows": 50, "part_size": 20000}
    reference = submit_export(conn, "1", {}, options)
    expected = object_bytes(run_export(dsn, reference, destination).result or {})
    assert len(expected) > 20000
    job_id = submit_export(conn, "1", {}, options)

    class Tampered(Exporter):
        """Something changes the object between making it visible and completing."""

        def _verify_stored(self, size: int, sha256: str) -> None:
            tamper_with(self.location, change)
            super()._verify_stored(size, sha256)

    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'v', '30 seconds')",
                      (job_id,))
    outcome = Tampered(dsn, job_id, identity, destination).run()
    assert outcome.status == "retrying", outcome
    row = job(conn, job_id)
    assert row["status"] == "queued" and row["result"] is None
    assert "verification failed" in row["error"]
    # The retry starts from scratch: the checkpoint no longer vouches for the object.
    assert row["checkpoint"]["bytes"] == 0 and row["checkpoint"]["cursor"] is None
    assert row["checkpoint"]["phase"] == "streaming"
    assert not storage.exists(row["checkpoint"]["uri"])

    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    retried = run_export(dsn, job_id, destination)
    assert retried.status == "succeeded", retried
    row = job(conn, job_id)
    assert object_bytes(row["result"]) == expected
    assert row["result"]["sha256"] == hashlib.sha256(expected).hexdigest()


def test_a_wrong_object_found_after_a_crash_is_not_completed(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """Crash after the object was written and its SHA-256 checkpointed; the object is
    then changed: the next attempt must not complete with it."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)

    class CrashBeforeComplete(Exporter):
        def _complete(self, size: int, sha256: str) -> Outcome:
            return Outcome(self.job_id, "lost", error="simulated crash")

    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '30 seconds')",
                      (job_id,))
    CrashBeforeComplete(dsn, job_id, identity, local_dir).run()
    checkpoint = job(conn, job_id)["checkpoint"]
    assert checkpoint["phase"] == "finalizing" and checkpoint.get("sha256")
    tamper_with(storage.parse(checkpoint["uri"]), _flip_byte)
    expire_lease(conn, job_id)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    row = job(conn, job_id)
    # Rewritten from scratch, byte for byte what was first streamed (the bytes depend
    # only on the data and the options), not the changed object.
    object_bytes(row["result"])
    assert row["result"]["sha256"] == checkpoint["sha256"]
    assert row["checkpoint"]["history"][-1]["part"] == 0
