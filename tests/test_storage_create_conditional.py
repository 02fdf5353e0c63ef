"""storage.create on an S3-compatible store without conditional writes.

storage.create (an import's rejects object) sends ``If-None-Match: *``. A
store that ignores the header was covered (the key is checked first); one
that refuses it (MinIO before conditional writes answers ``501
NotImplemented``, others a ``400``) failed every create with a retryable
error whose hint blamed the network, and an import with rejects on such a
store failed an attempt for it. Now such a refusal is logged and the object
written by a plain PUT after the check: never over an object that was there.
The store's answers come from a proxy in front of moto
(tests/support/s3_faults.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.storage import StorageError
from tests.support import allow, claim_import, job, make_people, submit_import
from tests.support.s3_faults import FaultProxy
from tests.support.storage import clean_aws_env

Conn = psycopg.Connection[Any]
STORES = ["501", "400", "ignore"]


@pytest.fixture
def proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Iterator[FaultProxy]:
    """obstore talks to moto through the fault proxy."""
    clean_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    faulty = FaultProxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
    storage.forget_stores()
    yield faulty
    faulty.stop()
    storage.forget_stores()


@pytest.fixture
def prefix(proxy: FaultProxy, s3_endpoint: str) -> str:
    import boto3

    name = f"pgjobs-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint,
                                   region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}/store/"


@pytest.mark.parametrize("answer", STORES)
def test_create_without_conditional_writes_never_writes_over_an_object(
        proxy: FaultProxy, prefix: str, answer: str, caplog: pytest.LogCaptureFixture) -> None:
    proxy.faults.conditional_put = answer
    uri = storage.object_location(prefix, "people/1/1.0badc0de.rejects.jsonl").uri
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    assert proxy.faults.conditional_refused >= 1  # met (obstore retries a 5xx)
    warned = [r.getMessage() for r in caplog.records if "conditional write" in r.getMessage()]
    assert len(warned) == (0 if answer == "ignore" else 1), warned
    # A key that holds an object keeps it, whatever the store does with the header.
    assert not storage.create(uri, b"second\n")
    assert storage.read(uri) == b"first\n"
    assert len(storage.list_paths(prefix)) == 1


@pytest.mark.parametrize("answer", ["501", "400"])
def test_a_store_refusing_every_put_says_why(
        proxy: FaultProxy, prefix: str, answer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain PUT after a refused condition fails too (the store is read-only
    to these credentials, say): the create fails with that PUT's error, its
    SQLSTATE and hint, not with the refusal of the condition."""
    proxy.faults.conditional_put = answer
    uri = storage.object_location(prefix, "people/1/1.0badc0de.rejects.jsonl").uri
    real_put = storage.obstore.put

    def refuse_plain(store: Any, path: str, data: bytes, **kw: Any) -> Any:
        if "mode" not in kw:
            raise PermissionError(13, "AccessDenied: the worker may not write here")
        return real_put(store, path, data, **kw)

    monkeypatch.setattr(storage.obstore, "put", refuse_plain)
    with pytest.raises(StorageError) as refused:
        storage.create(uri, b"first\n")
    assert "AccessDenied" in str(refused.value)
    assert refused.value.sqlstate == "42501" and refused.value.hint
    assert not storage.exists(uri)


def test_another_failure_of_the_conditional_put_is_not_taken_for_a_refusal(
        proxy: FaultProxy, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conditional PUT that fails for another reason (access denied) is that
    error, and no unconditional PUT follows."""
    uri = storage.object_location(prefix, "people/1/1.0badc0de.rejects.jsonl").uri
    calls: list[dict[str, Any]] = []

    def denied(store: Any, path: str, data: bytes, **kw: Any) -> Any:
        calls.append(kw)
        raise PermissionError(13, "AccessDenied: HTTP 403 Forbidden")

    monkeypatch.setattr(storage.obstore, "put", denied)
    with pytest.raises(StorageError) as refused:
        storage.create(uri, b"first\n")
    assert refused.value.sqlstate == "42501"
    assert calls == [{"mode": "create"}]


@pytest.mark.parametrize("answer", STORES)
def test_an_import_with_rejects_succeeds_on_such_a_store(
        conn: Conn, dsn: str, tmp_path: Path, proxy: FaultProxy, prefix: str,
        answer: str) -> None:
    proxy.faults.conditional_put = answer
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    path = folder / "p.csv"
    path.write_bytes(b"name,age\nok,1\nbad,x\n")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 5})
    Importer(dsn, job_id, claim_import(dsn, job_id), prefix).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["attempts"] == 1
    uri = row["result"]["rejects_uri"]
    assert row["checkpoint"]["rejects_uri"] == uri
    assert [json.loads(x)["record"].strip() for x in storage.read(uri).splitlines()] == ["bad,x"]
    assert proxy.faults.conditional_refused >= 1
