"""S3 exports through botocore: credentials from a profile file take the native
multipart path (and resume across processes), and storage faults injected by a
proxy between the worker and moto's S3 server (tests/support/s3_faults.py) end well
within one attempt: a long outage, an upload lost mid-stream, a connection that
goes silent mid-part, aborts while storage is down."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import s3client, storage
from pgjobs.poller.export import Outcome
from tests.support import (
    BIG_TENANT_1,
    LONG_LEASE,
    NATIVE_S3,
    checkpoint_parts,
    expire_leases,
    job,
    leftovers,
    new_bucket,
    object_bytes,
    open_uploads,
    plain_copy,
    run_export,
    scalar,
    start_worker,
    submit_export,
    wait_for,
)
from tests.support.s3_faults import FaultProxy
from tests.support.storage import clean_aws_env

Conn = psycopg.Connection[Any]




@pytest.fixture
def profile_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path) -> Iterator[str]:
    """Credentials only in a profile of a shared credentials file: no
    AWS_ACCESS_KEY_ID anywhere in the environment."""
    clean_aws_env(monkeypatch, tmp_path)
    creds = tmp_path / "credentials"
    creds.write_text("[pgjobs-test]\naws_access_key_id = profilekey\n"
                     "aws_secret_access_key = profilesecret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "pgjobs-test")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    storage.forget_stores()
    yield new_bucket(s3_endpoint)
    storage.forget_stores()


@pytest.fixture
def proxy(s3_fault_proxy: FaultProxy) -> FaultProxy:
    """The worker talks to moto through the fault proxy (tests/support/storage.py)."""
    return s3_fault_proxy



def _in_thread(call: Any) -> tuple[threading.Thread, list[Outcome]]:
    result: list[Outcome] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


# --- the credential chain -------------------------------------------------------


def test_profile_credentials_take_the_native_path(
        conn: Conn, dsn: str, big: None, profile_bucket: str) -> None:
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, profile_bucket)
    assert outcome.status == "succeeded", outcome
    assert object_bytes(outcome.result or {}) == plain_copy(conn, BIG_TENANT_1)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload["upload_id"] and len(upload["etags"]) == 4  # native multipart
    assert "staging" not in upload and "runs" not in upload
    # No staged part was ever written, and nothing is left open.
    assert leftovers(profile_bucket, {(outcome.result or {})["uri"]}) == []
    assert open_uploads(profile_bucket) == []
    # A presigned URL is signed with the profile's key.
    url = storage.sign_url((outcome.result or {})["uri"], timedelta(minutes=5))
    assert "profilekey" in url


def test_profile_credentials_resume_across_processes(
        conn: Conn, dsn: str, big: None, profile_bucket: str) -> None:
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    first = start_worker(dsn, profile_bucket, "--once", "--lease", LONG_LEASE, delays="part=1")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, timeout=60, what="two parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    before = job(conn, job_id)["checkpoint"]["upload"]
    assert before["upload_id"] and len(before["etags"]) >= 2
    expire_leases(conn, job_id)
    second = start_worker(dsn, profile_bucket, "--once")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)
    after = row["checkpoint"]["upload"]
    assert after["upload_id"] == before["upload_id"]
    assert after["etags"][:len(before["etags"])] == before["etags"]
    assert leftovers(profile_bucket, {row["result"]["uri"]}) == []


def test_no_credentials_fails_for_good_with_a_hint(
        conn: Conn, dsn: str, big: None, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    clean_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    storage.forget_stores()
    try:
        job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
        outcome = run_export(dsn, job_id, f"s3://pgjobs-{uuid.uuid4().hex[:12]}/exports/")
    finally:
        storage.forget_stores()
    assert outcome.status == "failed", outcome
    assert "credentials" in (outcome.error or "")
    assert job(conn, job_id)["attempts"] == 1


# --- storage faults -------------------------------------------------------------


def test_long_outage_keeps_the_parts_and_the_attempt(
        conn: Conn, dsn: str, big: None, proxy: FaultProxy,
        monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.5")
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    # A lease no stall of a loaded machine lapses (heartbeats come every third
    # of it, so a stall of two thirds of it can lapse it); the outage outlasts
    # it all the same.
    thread, result = _in_thread(lambda: run_export(dsn, job_id, bucket, lease="10 seconds"))
    wait_for(lambda: checkpoint_parts(conn, job_id) >= 1, timeout=60, what="a part")
    before = job(conn, job_id)["checkpoint"]["upload"]
    proxy.faults.down = True
    held = job(conn, job_id)["lease_expires_at"]
    # Longer than botocore's own retries and than the lease held when storage
    # went down: the worker keeps retrying and keeps renewing the lease.
    wait_for(lambda: sum(1 for _, _, down in proxy.faults.seen if down) >= 3, timeout=30,
             what="requests during the outage")
    wait_for(lambda: scalar(conn, "SELECT heartbeat_at > %s FROM pgjobs.jobs WHERE id = %s",
                            (held, job_id)), timeout=60,
             what="a heartbeat, during the outage, past the lease held when it began")
    proxy.faults.down = False
    thread.join(timeout=120)
    assert result and result[0].status == "succeeded", result
    row = job(conn, job_id)
    assert row["attempts"] == 1
    assert row["checkpoint"]["upload"]["upload_id"] == before["upload_id"]
    assert row["checkpoint"]["upload"]["etags"][:1] == before["etags"][:1]
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)


def test_outage_beyond_the_ceiling_fails_the_attempt_retryably(
        conn: Conn, dsn: str, big: None, proxy: FaultProxy, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    proxy.faults.down = True
    outcome = run_export(dsn, job_id, bucket, storage_retry=3.0)
    proxy.faults.down = False
    assert outcome.status == "retrying", outcome
    assert job(conn, job_id)["status"] == "queued"


def test_aborts_while_storage_is_down_are_queued_until_they_succeed(
        proxy: FaultProxy, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    location = storage.parse(bucket + "big/1/7.csv")
    client = s3client.Client(location.base.split("://", 1)[1])
    upload_id = client.create(location.path)
    proxy.faults.down = True
    storage.discard_upload(location, {"upload_id": upload_id})
    assert storage.pending_aborts() == 1
    time.sleep(1.5)
    assert storage.pending_aborts() == 1  # still down: still queued
    proxy.faults.down = False
    assert storage.pending_aborts(wait=30) == 0
    assert open_uploads(bucket) == []


def test_upload_lost_mid_stream_starts_over_within_the_attempt(
        conn: Conn, dsn: str, big: None, proxy: FaultProxy, s3_endpoint: str,
        caplog: pytest.LogCaptureFixture) -> None:
    bucket = new_bucket(s3_endpoint)
    proxy.faults.lose_upload_on_part = 3
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    row = job(conn, job_id)
    assert row["attempts"] == 1
    assert [h["phase"] for h in row["checkpoint"]["history"]] == ["streaming", "restarted"]
    assert object_bytes(row["result"]) == plain_copy(conn, BIG_TENANT_1)
    assert open_uploads(bucket) == []
    lines = [r for r in caplog.records if "starting the upload over" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info]


def test_silent_connection_does_not_stall_a_part(
        conn: Conn, dsn: str, big: None, proxy: FaultProxy, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    proxy.faults.silent_on_part = 2
    job_id = submit_export(conn, "1", {}, NATIVE_S3, target="big")
    outcome = run_export(dsn, job_id, bucket)
    assert outcome.status == "succeeded", outcome
    assert job(conn, job_id)["attempts"] == 1
    assert object_bytes(outcome.result or {}) == plain_copy(conn, BIG_TENANT_1)
    part_two = [q for m, q, _ in proxy.faults.seen if m == "PUT" and "partNumber=2&" in q + "&"]
    assert len(part_two) >= 2  # the silent one, then the retry that went through


def test_botocore_is_imported_only_for_s3_work() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\n"
            "from pgjobs.cli.main import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "from pgjobs.poller import export, storage, worker\n"
            "storage.warm_up('file:///tmp/x')\n"
            "print(sorted(m for m in sys.modules if m.startswith('botocore'))[:1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
