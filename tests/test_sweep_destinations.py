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
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.export import Exporter
from pgjobs.poller.worker import Worker
from tests.support import job, make_items, scalar, submit_export
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
    assert sweep(dsn, own) > 0
    left = staged(dest)
    assert of(ended, left) == [], left
    # The queued export's upload is kept: it resumes it.
    assert of(queued, left) == of(queued, ours), left


def canceled_with_leftovers(conn: Conn, dsn: str, own: str,
                            tmp_path: Path) -> tuple[str, str, int]:
    """An export to an allowed memory:// destination, handed back, then canceled
    while queued: (the allowed prefix, the destination, the job)."""
    allowed, dest = destinations(tmp_path)["memory"]
    conn.execute("SELECT pgjobs.allow_storage(%s)", (allowed,))
    make_items(conn, rows=300)
    ended = submit_export(conn, "1", {}, {**MANY_PARTS, "destination": dest})
    handed_back(conn, dsn, ended, own)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (ended,))
    return allowed, dest, ended


def test_a_destination_disallowed_since_is_not_swept(
        conn: Conn, dsn: str, own: str, tmp_path: Path) -> None:
    allowed, dest, ended = canceled_with_leftovers(conn, dsn, own, tmp_path)
    before = staged(dest)
    assert before
    conn.execute("SELECT pgjobs.disallow_storage(%s)", (allowed,))
    assert sweep(dsn, own) == 0
    assert staged(dest) == before


def test_only_the_destinations_of_a_recent_hour_are_listed(
        conn: Conn, dsn: str, own: str, tmp_path: Path) -> None:
    # Ended between --stale-after and an hour more ago: listed; later or
    # earlier: not (the sweep had its turns at those), so a worker does not
    # list every kept export's destination every 30 s.
    allowed, dest, ended = canceled_with_leftovers(conn, dsn, own, tmp_path)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '3 hours' "
                 "WHERE id = %s", (ended,))
    assert sweep(dsn, own) == 0 and of(ended, staged(dest))
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '30 minutes' "
                 "WHERE id = %s", (ended,))
    assert sweep(dsn, own) > 0 and of(ended, staged(dest)) == []
