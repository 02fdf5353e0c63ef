"""gs:// for real: exports and imports over the GCS JSON API, against
gcp-storage-emulator started by the suite (tests/support/storage.py), reached through
STORAGE_EMULATOR_HOST as Google's client reads it.

GCS exports write each part as a hidden object and join them with server-side
compose (in a tree past 32 parts): byte-identical to a plain COPY, resumed by
another process after a SIGKILL, nothing left behind, the sweep; imports in
ranged reads with a resume."""

# Fixtures are imported by name: pytest sees them as module attributes, and the
# parameters of the tests below shadow the imports.

from __future__ import annotations

import gzip
import json
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
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
    storage.write(uri, data)


def _others(conn: Conn, job_id: int) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE id <> %s AND result ? 'uri'", (job_id,))}


@pytest.mark.parametrize("options", [{}, {"format": "jsonl", "gzip": True}],
                         ids=["csv", "jsonl-gzip"])
def test_export_to_gcs_is_byte_identical_and_leaves_nothing(
        conn: Conn, dsn: str, gcs_bucket: str, options: dict[str, Any]) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    outcome = run_export(dsn, job_id, gcs_bucket)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["uri"].startswith(gcs_bucket)
    assert outcome.result["parts"] >= 2
    if options:
        rows = [json.loads(line) for line in content(outcome.result).splitlines()]
        assert [r["id"] for r in rows] == [r[0] for r in conn.execute(
            "SELECT id FROM items WHERE tenant = 1 ORDER BY id")]
    else:
        assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload.get("staging") and upload.get("runs"), upload  # parts by name
    assert leftovers(gcs_bucket, {outcome.result["uri"]}) == []


def test_sigkill_mid_stream_then_another_worker_resumes_on_gcs(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    make_items(conn, rows=900)
    expected_id = submit_export(conn, "1", {}, MANY_PARTS)
    expected = run_export(dsn, expected_id, gcs_bucket)
    assert expected.result is not None
    parts = int(expected.result["parts"])
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    first = start_worker(dsn, gcs_bucket, "--once", "--lease", "2s",
                         delays=f"part={min(0.3, 3 / parts):.3f}")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= parts // 2, what="half the parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = job(conn, job_id)["checkpoint"]["upload"]
    assert before["runs"], before
    wait_for(lambda: conn.execute(
        "SELECT lease_expires_at < now() FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (True,), timeout=20, what="the lease to expire")
    second = start_worker(dsn, gcs_bucket, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert object_bytes(done["result"]) == object_bytes(expected.result)
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
    history = done["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # continued
    # The first owner's staged parts were reused, not rewritten.
    assert done["checkpoint"]["upload"]["runs"][0] == before["runs"][0]
    assert leftovers(gcs_bucket, {done["result"]["uri"], *_others(conn, job_id)}) == []


def test_presigned_url_without_a_signing_key_is_one_clear_error(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    """The emulator's anonymous credentials hold no key: signing must say so (with
    a hint), not print a traceback or retry."""
    make_items(conn, rows=30)
    outcome = run_export(dsn, submit_export(conn, "1"), gcs_bucket)
    assert outcome.result is not None
    with pytest.raises(storage.StorageError) as raised:
        storage.sign_url(outcome.result["uri"], timedelta(minutes=5))
    assert not raised.value.retryable
    assert raised.value.hint is not None and "Google credentials" in raised.value.hint


def test_sweep_removes_staged_parts_of_ended_jobs_on_gcs(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    make_items(conn, rows=30)
    ended = submit_export(conn, "1")
    running = submit_export(conn, "1")
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                 "WHERE id = %s", (ended,))
    for job_id in (ended, running):
        loc = storage.parse(gcs_bucket)
        put(f"{loc.base}/{storage.staging_path(gcs_bucket, job_id)}t/000001", b"part")
    worker = Worker(dsn, gcs_bucket, once=True, stale_after=timedelta(0))
    worker._connect()
    try:
        assert worker.housekeeping()["swept"] == 1
    finally:
        worker._close()
    left = leftovers(gcs_bucket, set())
    assert [p.rsplit("/", 3)[-3] for p in left] == [str(running)]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_import_from_gcs_in_ranged_reads_and_resume(
        conn: Conn, dsn: str, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch,
        gz: bool) -> None:
    make_people(conn)
    prefix = gcs_bucket.rstrip("/")
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

    first = Importer(dsn, job_id, claim_import(dsn, job_id), gcs_bucket, stop=stop,
                     on_progress=progress, batch_bytes=9000).run()
    assert first.status == "released", first.error
    second = Importer(dsn, job_id, claim_import(dsn, job_id), gcs_bucket,
                      batch_bytes=20000).run()
    assert second.status == "succeeded", second.error
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert sorted(names) == sorted(f'n{i}, "q"' for i in range(4000))
    assert job(conn, job_id)["result"]["rows"] == 4000


def test_import_rejects_object_goes_to_the_worker_gcs_storage(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    make_people(conn)
    prefix = gcs_bucket.rstrip("/")
    allow(conn, prefix)
    put(f"{prefix}/in/r.jsonl", b'{"name": "a"}\n{"age": "x"}\nnot json\n')
    job_id = submit_import(conn, f"{prefix}/in/r.jsonl", "1", {"max_rejects": 2})
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), gcs_bucket).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    uri = outcome.result["rejects_uri"]
    assert uri.startswith(prefix + "/people/1/")
    assert [json.loads(x)["line"] for x in storage.read(uri).splitlines()] == [2, 3]


def test_missing_gcs_bucket_fails_once_with_a_hint(
        conn: Conn, dsn: str, gcs_env: str) -> None:
    make_items(conn, rows=30)
    outcome = run_export(dsn, submit_export(conn, "1"), "gs://no-such-bucket-pgjobs/exports/")
    assert outcome.status == "failed", outcome
    row = conn.execute("SELECT status, attempts, error FROM pgjobs.jobs ORDER BY id DESC "
                       "LIMIT 1").fetchone()
    assert row is not None and row[0] == "failed", row  # not retried
    assert "no-such-bucket-pgjobs" in row[2] and "Traceback" not in row[2]
    assert "check the bucket name" in row[2]


def test_cloud_clients_are_imported_only_for_their_storage() -> None:
    """Google's and Azure's clients are heavy: `pgjobs --help` and file:// work
    never load them (nor google.auth)."""
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\n"
            "from pgjobs.cli.main import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "from pgjobs.poller import export, storage, worker\n"
            "storage.warm_up('file:///tmp/x')\n"
            "storage.store_for(storage.parse('gs://b/x'))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('google', 'azure')))[:1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_more_parts_than_one_compose_takes_are_joined_in_a_tree(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    """MANY_PARTS gives ~60 parts: past GCS's 32 sources per compose."""
    make_items(conn, rows=900)
    outcome = run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS), gcs_bucket)
    assert outcome.result is not None and outcome.result["parts"] > 32
    assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    assert leftovers(gcs_bucket, {outcome.result["uri"]}) == []


def test_lost_parts_start_the_export_over_byte_identical(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    """Part objects deleted under a paused export (a lifecycle rule, by hand): the
    next owner finds them missing, starts over, and still writes the exact object."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    first = start_worker(dsn, gcs_bucket, "--once", "--lease", "2s", delays="part=0.3")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 3, what="three parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    loc = storage.parse(gcs_bucket)
    assert storage.delete_prefix(loc, storage.staging_path(gcs_bucket, job_id)) >= 3
    wait_for(lambda: conn.execute(
        "SELECT lease_expires_at < now() FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (True,), timeout=20, what="the lease to expire")
    second = start_worker(dsn, gcs_bucket, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["checkpoint"]["history"][-1]["part"] == 0, done["checkpoint"]["history"]
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
    assert leftovers(gcs_bucket, {done["result"]["uri"], *_others(conn, job_id)}) == []
