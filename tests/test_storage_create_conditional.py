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
    # Sent once: a 501 is a server error that obstore retried ten times (about
    # 2.4 s a write) before the refusal was seen.
    assert proxy.faults.conditional_refused == 1
    warned = [r.getMessage() for r in caplog.records if "conditional write" in r.getMessage()]
    assert len(warned) == (0 if answer == "ignore" else 1), warned
    # A key that holds an object keeps it, whatever the store does with the header.
    assert not storage.create(uri, b"second\n")
    assert storage.read(uri) == b"first\n"
    assert len(storage.list_paths(prefix)) == 1


@pytest.mark.parametrize("answer", ["501", "400"])
def test_a_store_that_refused_the_condition_is_not_sent_it_again(
        proxy: FaultProxy, prefix: str, answer: str, caplog: pytest.LogCaptureFixture) -> None:
    """Once a store refused the condition and took the plain PUT after it, later
    creates there (other keys, other folders of the bucket) go straight to the
    checked plain PUT: no refused request each, one warning in all. A key that
    holds an object is still kept."""
    proxy.faults.conditional_put = answer
    uris = [storage.object_location(prefix, f"people/{n}/{n}.0badc0de.rejects.jsonl").uri
            for n in range(4)]
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        for n, uri in enumerate(uris):
            assert storage.create(uri, f"{n}\n".encode())
    assert [storage.read(u) for u in uris] == [b"0\n", b"1\n", b"2\n", b"3\n"]
    assert proxy.faults.conditional_seen == 1
    assert proxy.faults.conditional_refused == 1
    warned = [r.getMessage() for r in caplog.records if "conditional write" in r.getMessage()]
    assert len(warned) == 1, warned
    assert not storage.create(uris[2], b"again\n")
    assert storage.read(uris[2]) == b"2\n"


def test_a_store_with_conditional_writes_is_sent_the_condition_every_time(
        proxy: FaultProxy, prefix: str) -> None:
    """A store that does conditional writes gets If-None-Match on every create,
    once each (nothing refused, nothing remembered)."""
    for n in range(3):
        uri = storage.object_location(prefix, f"people/{n}/{n}.0badc0de.rejects.jsonl").uri
        assert storage.create(uri, b"x\n")
    assert proxy.faults.conditional_seen == 3
    assert proxy.faults.conditional_refused == 0


@pytest.mark.parametrize("busy", [1, 3])
def test_a_busy_store_is_still_retried_with_the_condition(
        proxy: FaultProxy, prefix: str, busy: int, caplog: pytest.LogCaptureFixture) -> None:
    """A 503 (a transient server error, unlike the 501 of a refused condition)
    is retried, still conditional, until the store takes it; nothing is
    remembered: the next create sends the condition again."""
    proxy.faults.conditional_unavailable = busy
    uri = storage.object_location(prefix, "people/1/1.0badc0de.rejects.jsonl").uri
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    assert proxy.faults.conditional_unavailable == 0
    assert proxy.faults.conditional_seen == busy + 1  # each 503, then the one taken
    assert not [r for r in caplog.records if "conditional write" in r.getMessage()]
    other = storage.object_location(prefix, "people/2/2.0badc0de.rejects.jsonl").uri
    assert storage.create(other, b"second\n")
    assert proxy.faults.conditional_seen == busy + 2
    assert not storage.create(uri, b"again\n")
    assert storage.read(uri) == b"first\n"


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
    assert proxy.faults.conditional_refused == 1  # one rejects object, sent once
