"""The stale-upload sweep covers every destination an ended export wrote under.

A job's staged parts (``{destination}.pgjobs-staging/{job}/...``, the upload of
stores that cannot resume natively), open multipart uploads and temporary
files sit under its destination. The sweep looked under the worker's own
``--storage`` only, so an export to another allowed destination that was
handed back and then canceled (queued: canceled at once, no worker to clean
up), or whose worker was killed, left them there for good. Now the worker's
housekeeping also sweeps every destination that ended exports' checkpoints
record (``prefix``), while the storage allow-list still admits it for the
job's scope (queries.EXPORT_SWEEP_PREFIXES).

The sweep is the backstop: it runs for exports that ended between
--stale-after and an hour more ago, never for a destination disallowed since
or an hour no worker ran. An export that ends without its worker (canceled
while queued or paused, canceled by a lease rescue, pruned) now queues what
its checkpoint and its parts name in pgjobs.storage_deletions
(pgjobs._queue_export_leftovers), and the next worker pass removes it at
once, whatever --stale-after says (the tests below give an hour: no sweep).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgjobs.poller import storage
from pgjobs.poller.export import Exporter
from pgjobs.poller.worker import Worker
from tests.support import (
    ITEMS_TENANT_1,
    drop_client,
    expire_lease,
    job,
    lose_right,
    make_items,
    object_bytes,
    people_client,
    plain_copy,
    run_export,
    scalar,
    submit_export,
)
from tests.support.exports import MANY_PARTS, leftovers

Conn = psycopg.Connection[Any]


def handed_back(conn: Conn, dsn: str, job_id: int, own: str) -> None:
    """Claim the export, stop it once some rows are read: its upload (staged
    parts, a temporary file) stays under its destination, checkpointed."""
    [(_, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'w')",
                                 (job_id,)).fetchall()
    stop = threading.Event()

    def progress(rows: int, _bytes: int) -> None:
        if rows >= 60:
            stop.set()

    outcome = Exporter(dsn, job_id, worker, own, stop=stop, on_progress=progress).run()
    assert outcome.status == "released", outcome
    assert job(conn, job_id)["status"] == "queued"


def staged(prefix: str) -> list[str]:
    return [p for p in leftovers(prefix, set()) if ".pgjobs-staging/" in p or ".tmp" in p]


def of(job_id: int, paths: list[str]) -> list[str]:
    """The leftovers of job_id's upload: its staged parts (a part's under its
    job's folder), its temporary files (``.{job}.csv.pgjobs-{token}.tmp``,
    ``.{job}.part00001.csv.pgjobs-{token}.tmp``)."""
    return [p for p in paths
            if f".pgjobs-staging/{job_id}/" in p or p.rsplit("/", 1)[-1].startswith(f".{job_id}.")]


def sweep(dsn: str, own: str) -> int:
    worker = Worker(dsn, own, once=True, stale_after=timedelta(0))
    worker._connect()
    try:
        return worker.housekeeping()["swept"]
    finally:
        worker._close()


@pytest.fixture
def own(tmp_path: Path) -> str:
    return f"file://{tmp_path}/own"


def destinations(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """(allowed prefix, destination) of each kind of store."""
    tag = uuid.uuid4().hex[:8]
    return {
        "memory": (f"memory:///{tag}", f"memory:///{tag}/exports"),
        "memory-per-tenant": (f"memory:///{tag}/t/{{scope}}", f"memory:///{tag}/t/1"),
        "file": (f"file://{tmp_path}/dest", f"file://{tmp_path}/dest/exports"),
    }


@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("kind", ["memory", "memory-per-tenant", "file"])
def test_the_sweep_removes_leftovers_under_another_destination(
        conn: Conn, dsn: str, own: str, tmp_path: Path, kind: str, parallel: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, dest = destinations(tmp_path)[kind]
    conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
    make_items(conn, rows=3000)
    # Each part checkpointed, then a pause: the stop comes before a part ends.
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    options = {**MANY_PARTS, "destination": dest, "parallel": parallel}
    ended = submit_export(conn, "1", {}, options)
    queued = submit_export(conn, "1", {}, options)
    handed_back(conn, dsn, ended, own)
    handed_back(conn, dsn, queued, own)
    ours = staged(dest)
    assert of(ended, ours) and of(queued, ours), ours
    # A cancel of a queued job ends it at once: no worker to remove its upload.
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    assert job(conn, ended)["status"] == "canceled"
    assert job(conn, ended)["checkpoint"]["prefix"] == storage.parse(dest).uri
    # The backstop: leftovers that no cancel queued (an export canceled under an
    # earlier release, a removal that failed ten times) are swept.
    assert queued_leftovers(conn, ended)
    forget_queued(conn, ended)
    assert sweep(dsn, own) > 0
    left = staged(dest)
    assert of(ended, left) == [], left
    # The queued export's upload is kept: it resumes it.
    assert of(queued, left) == of(queued, ours), left


def canceled_with_leftovers(conn: Conn, dsn: str, own: str, tmp_path: Path,
                            queued: bool = True) -> tuple[str, str, int]:
    """An export to an allowed memory:// destination, handed back, then canceled
    while queued: (the allowed prefix, the destination, the job). ``queued``
    False: the removal its cancel queued is forgotten (the sweep's case)."""
    allowed, dest = destinations(tmp_path)["memory"]
    conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
    make_items(conn, rows=300)
    ended = submit_export(conn, "1", {}, {**MANY_PARTS, "destination": dest})
    handed_back(conn, dsn, ended, own)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    assert queued_leftovers(conn, ended)
    if not queued:
        forget_queued(conn, ended)
    return allowed, dest, ended


def queued_leftovers(conn: Conn, job_id: int) -> list[tuple[str, Any]]:
    """The upload leftovers of job_id waiting in pgjobs.storage_deletions."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT uri, upload FROM pgjobs.storage_deletions "
        "WHERE job_id = %s AND upload IS NOT NULL ORDER BY id", (job_id,))]


def forget_queued(conn: Conn, job_id: int) -> None:
    conn.execute("DELETE FROM pgjobs.storage_deletions WHERE job_id = %s", (job_id,))


def test_a_destination_disallowed_since_is_not_swept(
        conn: Conn, dsn: str, own: str, tmp_path: Path) -> None:
    allowed, dest, ended = canceled_with_leftovers(conn, dsn, own, tmp_path)
    before = staged(dest)
    assert before
    conn.execute("SELECT pgjobs.disallow_storage(%s)", (allowed,))
    assert sweep(dsn, own) == 0
    assert staged(dest) == before
    # Nor does the removal its cancel queued touch it: the row waits, saying why.
    [(error,)] = conn.execute("SELECT last_error FROM pgjobs.storage_deletions "
                              "WHERE job_id = %s", (ended,)).fetchall()
    assert "allow-list" in error and "42501" in error, error
    conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
    conn.execute("UPDATE pgjobs.storage_deletions SET retry_at = now() WHERE job_id = %s",
                 (ended,))
    assert sweep(dsn, own) == 0  # allowed again: the queue removes it, not the sweep
    assert of(ended, staged(dest)) == [] and queued_leftovers(conn, ended) == []


def test_only_the_destinations_of_a_recent_hour_are_listed(
        conn: Conn, dsn: str, own: str, tmp_path: Path) -> None:
    # Ended between --stale-after and an hour more ago: listed; later or
    # earlier: not (the sweep had its turns at those), so a worker does not
    # list every kept export's destination every 30 s.
    allowed, dest, ended = canceled_with_leftovers(conn, dsn, own, tmp_path, queued=False)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '3 hours' "
                 "WHERE id = %s", (ended,))
    assert sweep(dsn, own) == 0 and of(ended, staged(dest))
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '30 minutes' "
                 "WHERE id = %s", (ended,))
    assert sweep(dsn, own) > 0 and of(ended, staged(dest)) == []


# --- an export that ends without its worker queues its leftovers -----------------


def one_pass(dsn: str, own: str) -> dict[str, int]:
    """One housekeeping pass of a worker whose stale sweep takes nothing that just
    ended (--stale-after an hour): whatever goes, the queue removed."""
    worker = Worker(dsn, own, once=True, stale_after=timedelta(hours=1))
    worker._connect()
    try:
        return worker.housekeeping()
    finally:
        worker._close()


def ended_without_worker(conn: Conn, dsn: str, own: str, job_id: int, how: str) -> None:
    """End the handed-back export job_id with no worker of its own running it."""
    if how == "queued":
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    elif how == "paused":
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "paused"
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
    else:  # rescued: claimed by a worker that died; canceled; its lease expires
        conn.execute("SELECT pgjobs.claim_export(%s, 'dead')", (job_id,))
        assert job(conn, job_id)["status"] == "running"
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
        assert queued_leftovers(conn, job_id) == []  # a running one's worker removes them
        expire_lease(conn, job_id)
        assert scalar(conn, "SELECT pgjobs.prune()")["rescued"]["canceled"] == 1
    assert job(conn, job_id)["status"] == "canceled"


@pytest.mark.parametrize("how", ["queued", "paused", "rescued"])
@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("kind", ["own", "memory", "memory-per-tenant", "file"])
def test_an_export_ended_without_its_worker_has_its_leftovers_removed_at_once(
        conn: Conn, dsn: str, own: str, tmp_path: Path, kind: str, parallel: int, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Handed back with its upload checkpointed (a part's too), then ended with no
    worker running it: the next worker pass removes every staged part and
    temporary file it left, with no sweep band; another queued export's upload
    under the same destination is kept (it resumes it)."""
    if kind == "own":
        dest, options = own, {}
    else:
        allowed, dest = destinations(tmp_path)[kind]
        conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
        options = {"destination": dest}
    make_items(conn, rows=3000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    options = {**MANY_PARTS, **options, "parallel": parallel}
    ended = submit_export(conn, "1", {}, options)
    kept = submit_export(conn, "1", {}, options)
    handed_back(conn, dsn, ended, own)
    handed_back(conn, dsn, kept, own)
    ours = staged(dest)
    assert of(ended, ours) and of(kept, ours), ours
    ended_without_worker(conn, dsn, own, ended, how)
    queued = queued_leftovers(conn, ended)
    assert queued and all(upload for _, upload in queued), queued
    if parallel > 1:  # each part's upload, under the part's object
        assert {uri for uri, _ in queued} >= {
            r[0] for r in conn.execute("SELECT checkpoint ->> 'uri' FROM pgjobs.export_parts "
                                       "WHERE job_id = %s AND checkpoint ? 'upload'", (ended,))}
    housekeeping = one_pass(dsn, own)
    assert housekeeping["swept"] == 0  # the queue took them, not the sweep
    assert housekeeping["deleted"] == len(queued)
    left = staged(dest)
    assert of(ended, left) == [], left
    assert of(kept, left) == of(kept, ours), left
    assert queued_leftovers(conn, ended) == []
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_retry_before_the_worker_pass_keeps_its_upload_and_resumes_it(
        conn: Conn, dsn: str, own: str, tmp_path: Path, parallel: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pgjobs.retry takes a canceled export back before a worker removed its
    leftovers: the claim drops the rows (its own worker removes them at its end),
    the upload is resumed, and the export is what a plain COPY gives."""
    make_items(conn, rows=3000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    ended = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": parallel})
    handed_back(conn, dsn, ended, own)
    before = of(ended, staged(own))
    assert before
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    assert queued_leftovers(conn, ended)
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (ended,))
    assert one_pass(dsn, own) == {"deleted": 0, "swept": 0}
    assert queued_leftovers(conn, ended) == []
    assert of(ended, staged(own)) == before
    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    outcome = run_export(dsn, ended, own)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert of(ended, staged(own)) == []


@pytest.mark.parametrize("kind", ["own", "file"])
def test_a_pruned_export_that_kept_its_upload_for_a_retry_leaves_nothing(
        conn: Conn, dsn: str, own: str, tmp_path: Path, kind: str) -> None:
    """Failed out of attempts by a lease rescue, an export keeps its upload for
    pgjobs.retry (the worker's pass leaves it); pruned, its leftovers are queued
    and removed at the next pass. (Under another destination no sweep reached
    them: it reads the jobs table, where a pruned export no longer is.)"""
    if kind == "own":
        dest, options = own, {}
    else:
        allowed, dest = destinations(tmp_path)[kind]
        conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
        options = {"destination": dest}
    make_items(conn, rows=300)
    ended = submit_export(conn, "1", {}, {**MANY_PARTS, **options, "max_attempts": 1})
    handed_back(conn, dsn, ended, own)
    conn.execute("SELECT pgjobs.claim_export(%s, 'dead')", (ended,))
    expire_lease(conn, ended)
    assert scalar(conn, "SELECT pgjobs.prune()")["rescued"]["failed"] == 1
    before = of(ended, staged(dest))
    assert before and queued_leftovers(conn, ended) == []
    assert one_pass(dsn, own) == {"deleted": 0, "swept": 0}
    assert of(ended, staged(dest)) == before
    summary = scalar(conn, "SELECT pgjobs.prune('0 seconds')")
    assert summary["deleted"] == 1 and summary["leftovers_queued"] >= 1, summary
    assert one_pass(dsn, own)["deleted"] >= 1
    assert of(ended, staged(dest)) == []
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)


def test_a_leftover_names_only_what_an_upload_of_its_job_can(
        conn: Conn, dsn: str, own: str, tmp_path: Path) -> None:
    """A row naming anything else (a file that is no temporary file of its
    object, another job's staging folder, a multipart upload on a store
    without them) is refused with a clear error and kept; nothing is removed."""
    root = storage.parse(own).path
    Path(root).mkdir(parents=True)
    victim = Path(root) / "keep.csv"
    victim.write_bytes(b"precious\n")
    other = storage.object_location(own, "7.csv").uri
    bad = [(other, {"tmp": str(victim)}), (other, {"tmp": f"{root}/.8.csv.pgjobs-a1.tmp"}),
           ("memory:///x/7.csv", {"staging": "x/.pgjobs-staging/8/"}),
           ("memory:///x/7.csv", {"staging": "x/"}),
           ("memory:///x/7.csv", {"upload_id": "abc"})]
    for uri, upload in bad:
        conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id, upload) "
                     "VALUES (%s, 7, %s)", (uri, Jsonb(upload)))
    conn.execute("SELECT pgjobs.allow_storage('memory:///x')")
    assert one_pass(dsn, own)["deleted"] == 0
    errors = [r[0] for r in conn.execute(
        "SELECT last_error FROM pgjobs.storage_deletions ORDER BY id")]
    assert len(errors) == len(bad)
    assert all("refusing to remove" in e and "22023" in e for e in errors), errors
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.parametrize("loss", ["revoke", "rls"])
def test_an_export_failed_for_good_at_its_claim_queues_its_leftovers(
        conn: Conn, loss: str) -> None:
    """A handed-back export whose submitter lost its right on the target fails
    for good at its next claim, run by no worker: what its checkpoint names is
    queued (a job failing out of attempts keeps it for pgjobs.retry instead)."""
    role = people_client(conn, "leftover")
    try:
        conn.execute(f"SET ROLE {role}")
        job_id = int(scalar(conn, "SELECT pgjobs.submit_export('people', '1')"))
        conn.execute("RESET ROLE")
        upload = {"staging": f"x/.pgjobs-staging/{job_id}/", "runs": []}
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = %s WHERE id = %s",
                     (Jsonb({"v": 1, "uri": "memory:///x/1.csv", "upload": upload}), job_id))
        lose_right(conn, role, "SELECT", loss)
        assert conn.execute("SELECT * FROM pgjobs.claim(ARRAY['export'], 'w')").fetchall() == []
        assert job(conn, job_id)["status"] == "failed"
        assert queued_leftovers(conn, job_id) == [("memory:///x/1.csv", upload)]
    finally:
        drop_client(conn, role)


def test_a_worker_of_the_previous_release_is_never_handed_a_leftover(
        conn: Conn, dsn: str, own: str) -> None:
    """Claimed with two arguments (a worker before 0041, which deletes the
    object at every row's uri), the queue hands out objects only; with
    p_uploads, both."""
    make_items(conn, rows=300)
    ended = submit_export(conn, "1", {}, MANY_PARTS)
    handed_back(conn, dsn, ended, own)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id) VALUES ('memory:///o', 1)")
    old = conn.execute("SELECT uri, upload FROM pgjobs.claim_storage_deletions(100, '1 second')")
    assert old.fetchall() == [("memory:///o", None)]
    new = conn.execute("SELECT upload IS NOT NULL FROM pgjobs.claim_storage_deletions("
                       "100, '1 second', true)").fetchall()
    assert new == [(True,)] * len(queued_leftovers(conn, ended)) and new
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        conn.execute("SELECT * FROM pgjobs.claim_storage_deletions(1, '1 second', NULL)")
    assert refused.value.diag.message_hint
