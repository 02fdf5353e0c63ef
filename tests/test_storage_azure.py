"""az:// for real: exports and imports over the Azure Blob wire protocol, against
Azurite started by the suite (tests/support/storage.py), configured through the
AZURE_STORAGE_* variables an operator sets.

With an account key (or SAS) an Azure export stages each part as a block of the
blob itself and commits the block list at the end (poller/azblob.py); with other
credentials it stages parts as hidden blobs. Both are tested: byte-identical to
a plain COPY, resumed by another process after a SIGKILL, nothing left behind,
the sweep, presigned URLs, and imports in ranged reads with a resume."""

# Fixtures are imported by name: pytest sees them as module attributes, and the
# parameters of the tests below shadow the imports.

from __future__ import annotations

import gzip
import json
import threading
from datetime import timedelta
from typing import Any

import obstore
import psycopg
import pytest
import requests

from pgjobs.poller import azblob, storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import (
    allow,
    checkpoint_parts,
    claim_import,
    content,
    job,
    leftovers,
    make_items,
    make_people,
    object_bytes,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    submit_import,
    wait_for,
)

Conn = psycopg.Connection[Any]
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"


def put(uri: str, data: bytes) -> None:
    loc = storage.parse(uri)
    obstore.put(storage.store_for(loc), loc.path, data)


def _others(conn: Conn, job_id: int) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE id <> %s AND result ? 'uri'", (job_id,))}


@pytest.mark.parametrize("options", [{}, {"format": "jsonl", "gzip": True}],
                         ids=["csv", "jsonl-gzip"])
def test_export_to_azure_is_byte_identical_and_leaves_nothing(
        conn: Conn, dsn: str, az_container: str, options: dict[str, Any]) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    outcome = run_export(dsn, job_id, az_container)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["uri"].startswith(az_container)
    assert outcome.result["parts"] >= 2
    if options:
        rows = [json.loads(line) for line in content(outcome.result).splitlines()]
        assert [r["id"] for r in rows] == [r[0] for r in conn.execute(
            "SELECT id FROM items WHERE tenant = 1 ORDER BY id")]
    else:
        assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload.get("blocks") and upload.get("runs"), upload  # native blocks
    assert "staging" not in upload
    assert leftovers(az_container, {outcome.result["uri"]}) == []


def test_without_a_key_or_sas_azure_exports_stage_their_parts(
        conn: Conn, dsn: str, az_container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged path stays for credentials only obstore handles (Azure AD)."""
    monkeypatch.setattr(azblob, "service", lambda: None)
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    outcome = run_export(dsn, job_id, az_container)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload.get("staging") and upload.get("runs"), upload  # the staged path
    assert leftovers(az_container, {outcome.result["uri"]}) == []


def test_sigkill_mid_stream_then_another_worker_resumes_on_azure(
        conn: Conn, dsn: str, az_container: str) -> None:
    make_items(conn, rows=900)
    expected_id = submit_export(conn, "1", {}, MANY_PARTS)
    expected = run_export(dsn, expected_id, az_container)
    assert expected.result is not None
    parts = int(expected.result["parts"])
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    first = start_worker(dsn, az_container, "--once", "--lease", "2s",
                         delays=f"part={min(0.3, 3 / parts):.3f}")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= parts // 2, what="half the parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = job(conn, job_id)["checkpoint"]["upload"]
    assert before["blocks"] and before["runs"], before
    wait_for(lambda: conn.execute(
        "SELECT lease_expires_at < now() FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (True,), timeout=20, what="the lease to expire")
    second = start_worker(dsn, az_container, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert object_bytes(done["result"]) == object_bytes(expected.result)
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
    history = done["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # continued
    # The first owner's staged blocks were committed, not rewritten.
    assert done["checkpoint"]["upload"]["runs"][0] == before["runs"][0]
    assert done["checkpoint"]["upload"]["blocks"]
    assert leftovers(az_container, {done["result"]["uri"], *_others(conn, job_id)}) == []


def test_presigned_url_of_an_azure_export_reads_the_object(
        conn: Conn, dsn: str, az_container: str) -> None:
    make_items(conn, rows=300)
    outcome = run_export(dsn, submit_export(conn, "1"), az_container)
    assert outcome.result is not None
    url = storage.sign_url(outcome.result["uri"], timedelta(minutes=5))
    assert url.startswith("http://127.0.0.1:") and "sig=" in url
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.content == object_bytes(outcome.result)


def test_sweep_removes_staged_parts_of_ended_jobs_on_azure(
        conn: Conn, dsn: str, az_container: str) -> None:
    make_items(conn, rows=30)
    ended = submit_export(conn, "1")
    running = submit_export(conn, "1")
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                 "WHERE id = %s", (ended,))
    for job_id in (ended, running):
        loc = storage.parse(az_container)
        put(f"{loc.base}/{storage.staging_path(az_container, job_id)}t/000001", b"part")
    worker = Worker(dsn, az_container, once=True, stale_after=timedelta(0))
    worker._connect()
    try:
        assert worker.housekeeping()["swept"] == 1
    finally:
        worker._close()
    left = leftovers(az_container, set())
    assert [p.rsplit("/", 3)[-3] for p in left] == [str(running)]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_import_from_azure_in_ranged_reads_and_resume(
        conn: Conn, dsn: str, az_container: str, monkeypatch: pytest.MonkeyPatch,
        gz: bool) -> None:
    make_people(conn)
    prefix = az_container.rstrip("/")
    allow(conn, prefix)
    body = b"name,age\n" + b"".join(f'"n{i}, ""q""",{i % 50}\n'.encode() for i in range(4000))
    uri = f"{prefix}/in/p.csv" + (".gz" if gz else "")
    put(uri, gzip.compress(body) if gz else body)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)  # many ranged GETs
    job_id = submit_import(conn, uri, "1", {"max_rejects": 1})
    stop = threading.Event()
    seen: list[int] = []

    def progress(records: int, read: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == 2:
            stop.set()

    first = Importer(dsn, job_id, claim_import(dsn, job_id), az_container, stop=stop,
                     on_progress=progress, batch_bytes=9000).run()
    assert first.status == "released", first.error
    second = Importer(dsn, job_id, claim_import(dsn, job_id), az_container,
                      batch_bytes=20000).run()
    assert second.status == "succeeded", second.error
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert sorted(names) == sorted(f'n{i}, "q"' for i in range(4000))
    assert job(conn, job_id)["result"]["rows"] == 4000


def test_import_rejects_object_goes_to_the_worker_azure_storage(
        conn: Conn, dsn: str, az_container: str) -> None:
    make_people(conn)
    prefix = az_container.rstrip("/")
    allow(conn, prefix)
    put(f"{prefix}/in/r.jsonl", b'{"name": "a"}\n{"age": "x"}\nnot json\n')
    job_id = submit_import(conn, f"{prefix}/in/r.jsonl", "1", {"max_rejects": 2})
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), az_container).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    uri = outcome.result["rejects_uri"]
    assert uri.startswith(prefix + "/people/1/")
    assert [json.loads(x)["line"] for x in storage.read(uri).splitlines()] == [2, 3]


def test_missing_azure_container_fails_once_with_a_hint(
        conn: Conn, dsn: str, az_env: str) -> None:
    make_items(conn, rows=30)
    outcome = run_export(dsn, submit_export(conn, "1"), "az://no-such-container/exports/")
    assert outcome.status == "failed", outcome
    row = conn.execute("SELECT status, attempts, error FROM pgjobs.jobs ORDER BY id DESC "
                       "LIMIT 1").fetchone()
    assert row is not None and row[0] == "failed", row  # not retried
    assert "no-such-container" in row[2] and "Traceback" not in row[2]
    assert "ContainerNotFound" in row[2] and "check the container name" in row[2]


def test_lost_blocks_start_the_export_over_byte_identical(
        conn: Conn, dsn: str, az_container: str) -> None:
    """Uncommitted blocks can vanish (7 days, or a commit by someone else): the
    resume finds them missing in Get Block List and starts over, still exact."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    first = start_worker(dsn, az_container, "--once", "--lease", "2s", delays="part=0.3")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    loc = storage.parse(job(conn, job_id)["checkpoint"]["uri"])
    blob_path, container = loc.path, loc.base.split("://", 1)[1]
    blob = azblob.service().get_blob_client(container, blob_path)
    blob.commit_block_list([])  # discards every uncommitted block
    blob.delete_blob()
    wait_for(lambda: conn.execute(
        "SELECT lease_expires_at < now() FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (True,), timeout=20, what="the lease to expire")
    second = start_worker(dsn, az_container, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["uri"].endswith(blob_path)
    assert done["checkpoint"]["history"][-1]["part"] == 0, done["checkpoint"]["history"]
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
