"""A store's failure is read from the status it answered, never from the
error's words, which name the object.

storage.create took a conditional PUT for refused (the store has no
conditional writes) when ``400`` or ``501`` stood anywhere in the error's
text, and that text holds the object's URL: a 503, a dropped connection or a
412 on job 400's rejects, under a scope named 501 or in a bucket named so,
read as a refusal, and the process then wrote that bucket with plain PUTs
for good (``storage._unconditional``). The SQLSTATE and the retry of every
other storage error were read the same way: ``403`` / ``404`` anywhere, or a
prefix named ``credentials`` or ``AccessDenied``, made a busy store's
answer "access denied", "no such bucket" or a permanent failure.

The S3 store is moto behind the fault proxy (tests/support/s3_faults.py); the
classification tests use obstore's own errors from a small HTTP server on
127.0.0.1 that answers every request with one status.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pgjobs.poller import storage
from tests.support.s3_faults import FaultProxy
from tests.support.storage import clean_aws_env

# Keys, prefixes and buckets whose names hold the statuses a refusal has.
NAMES = [
    ("store/", "people/400/400.0badc0de.rejects.jsonl"),
    ("501/", "people/1/1.0badc0de.rejects.jsonl"),
    ("exports/412/", "t/501/400.jsonl"),
    ("400 501/", "a/NotImplemented/If-None-Match.jsonl"),
]


@pytest.fixture
def proxy(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Iterator[FaultProxy]:
    clean_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    faulty = FaultProxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
    storage.forget_stores()
    yield faulty
    faulty.stop()
    storage.forget_stores()


def _bucket(s3_endpoint: str, name: str | None = None) -> str:
    import boto3

    name = name or f"pgjobs-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint,
                                   region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _uri(bucket: str, prefix: str, key: str) -> str:
    return storage.object_location(f"s3://{bucket}/{prefix}", key).uri


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "conditional write" in r.getMessage()]


@pytest.mark.parametrize("name", range(len(NAMES)))
@pytest.mark.parametrize("busy", [1, 2])
def test_a_busy_store_is_no_refusal_whatever_the_key_is_named(
        proxy: FaultProxy, s3_endpoint: str, name: int, busy: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 503 on a key that holds 400 / 501 is retried with the condition until
    the store takes it: no plain PUT, no warning, nothing remembered."""
    bucket = _bucket(s3_endpoint)
    prefix, key = NAMES[name]
    proxy.faults.conditional_unavailable = busy
    uri = _uri(bucket, prefix, key)
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    assert proxy.faults.conditional_seen == busy + 1
    assert not _warned(caplog)
    assert f"s3://{bucket}" not in storage._unconditional
    other = _uri(bucket, prefix, "other/400.jsonl")
    assert storage.create(other, b"second\n")
    assert proxy.faults.conditional_seen == busy + 2  # still sent the condition
    assert not storage.create(uri, b"again\n")
    assert storage.read(uri) == b"first\n"


@pytest.mark.parametrize("name", range(len(NAMES)))
def test_a_dropped_connection_is_no_refusal_whatever_the_key_is_named(
        proxy: FaultProxy, s3_endpoint: str, name: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """A conditional PUT whose connection closed without an answer (a network
    failure) is sent again, conditional; nothing is remembered."""
    bucket = _bucket(s3_endpoint)
    prefix, key = NAMES[name]
    proxy.faults.conditional_dropped = 1
    uri = _uri(bucket, prefix, key)
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    assert proxy.faults.conditional_dropped == 0
    assert proxy.faults.conditional_seen == 2
    assert not _warned(caplog)
    assert f"s3://{bucket}" not in storage._unconditional
    assert storage.create(_uri(bucket, prefix, "next/501.jsonl"), b"second\n")
    assert proxy.faults.conditional_seen == 3


@pytest.mark.parametrize("name", range(len(NAMES)))
def test_a_412_is_a_key_taken_whatever_the_key_is_named(
        proxy: FaultProxy, s3_endpoint: str, name: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """The store answers 412 (another writer created the key between the check
    and the PUT): the create writes nothing and says so; no plain PUT follows
    (which would write over that object), nothing is remembered."""
    bucket = _bucket(s3_endpoint)
    prefix, key = NAMES[name]
    proxy.faults.conditional_status = 412
    proxy.faults.conditional_unavailable = 1
    uri = _uri(bucket, prefix, key)
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert not storage.create(uri, b"first\n")
    assert not storage.exists(uri)
    assert proxy.faults.conditional_seen == 1
    assert not _warned(caplog)
    assert f"s3://{bucket}" not in storage._unconditional


@pytest.mark.parametrize("answer", ["501", "400"])
@pytest.mark.parametrize("name", range(len(NAMES)))
def test_a_real_refusal_still_falls_back_whatever_the_key_is_named(
        proxy: FaultProxy, s3_endpoint: str, name: int, answer: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store that answers 501 / 400 to the condition is still written by the
    checked plain PUT, once warned, and remembered; a key that holds an
    object keeps it."""
    bucket = _bucket(s3_endpoint)
    prefix, key = NAMES[name]
    proxy.faults.conditional_put = answer
    uri = _uri(bucket, prefix, key)
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
        assert storage.create(_uri(bucket, prefix, "b/503.jsonl"), b"second\n")
    assert storage.read(uri) == b"first\n"
    assert proxy.faults.conditional_refused == 1
    assert len(_warned(caplog)) == 1
    assert f"s3://{bucket}" in storage._unconditional
    assert not storage.create(uri, b"again\n")
    assert storage.read(uri) == b"first\n"


def test_a_busy_store_in_a_bucket_named_after_a_refusal_is_no_refusal(
        proxy: FaultProxy, s3_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    bucket = _bucket(s3_endpoint, f"pgjobs-501-400-{uuid.uuid4().hex[:8]}")
    proxy.faults.conditional_unavailable = 1
    uri = _uri(bucket, "", "1.jsonl")
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert storage.create(uri, b"first\n")
    assert not _warned(caplog)
    assert f"s3://{bucket}" not in storage._unconditional


# --- obstore's errors, classified ---------------------------------------------------


class _OneAnswer:
    """An HTTP server on 127.0.0.1 answering every request ``status`` with
    ``body`` (0: the connection closed without an answer)."""

    def __init__(self) -> None:
        self.status = 503
        self.body = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if server.status == 0:
                    self.close_connection = True
                    return
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(server.body)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def answer() -> Iterator[_OneAnswer]:
    server = _OneAnswer()
    yield server
    server.http.shutdown()
    server.http.server_close()


def _failure(server: _OneAnswer, status: int, path: str, *, body: bytes = b"",
             op: str = "put") -> BaseException:
    """The error obstore raises for ``op`` of ``path`` when the store answers
    ``status`` (sent once: no retries)."""
    import obstore
    from obstore.store import S3Store

    server.status, server.body = status, body
    store = S3Store("bkt", endpoint=server.url, region="us-east-1", access_key_id="k",
                    secret_access_key="s", client_options={"allow_http": True},
                    retry_config={"max_retries": 0})
    with pytest.raises(Exception) as failed:
        if op == "put":
            obstore.put(store, path, b"x", mode="create")
        else:
            obstore.head(store, path)
    return failed.value


WORDY_PATHS = ["t/403/404.csv", "credentials/1.csv", "AccessDenied/NoSuchBucket/1.csv",
               "x/not found/Forbidden.csv", "latest/api/token/1.csv",
               "501/400/PermissionDenied.csv"]


@pytest.mark.parametrize("path", WORDY_PATHS)
@pytest.mark.parametrize("status", [0, 500, 503])
def test_a_transient_failure_stays_one_whatever_the_key_is_named(
        answer: _OneAnswer, path: str, status: int) -> None:
    """A 5xx or a dropped connection on a key named after a refusal is a
    retryable failure with the SQLSTATE of one (58030), never access denied,
    no such bucket or missing credentials."""
    exc = _failure(answer, status, path)
    assert storage.http_status(exc) == (status or None)
    assert not storage._condition_refused(exc)
    err = storage.storage_error(exc, f"cannot write s3://bkt/{path}")
    assert err.retryable, str(err)
    assert err.sqlstate == "58030", str(err)


@pytest.mark.parametrize("path", ["t/503/1.csv", "500/x.csv", "a/b.csv", "403/AccessDenied/x y.csv",
                                  "credentials/NoSuchBucket/1.csv"])
@pytest.mark.parametrize(("status", "sqlstate", "retryable"), [
    (403, "42501", False), (404, "58P01", None), (400, None, None), (501, None, None)])
def test_what_the_store_answered_decides_whatever_the_key_is_named(
        answer: _OneAnswer, path: str, status: int, sqlstate: str | None,
        retryable: bool | None) -> None:
    """A real 403 is "refused" and a real 404 "missing", on a key named 503
    too; a real 400 / 501 to a conditional PUT is a refused condition."""
    exc = _failure(answer, status, path)
    assert storage.http_status(exc) == status
    assert storage._condition_refused(exc) == (status in (400, 501))
    err = storage.storage_error(exc, f"cannot write s3://bkt/{path}")
    if sqlstate is not None:
        assert err.sqlstate == sqlstate, str(err)
    if retryable is not None:
        assert err.retryable == retryable, str(err)


def test_a_reply_that_quotes_the_dump_cannot_forge_a_status(answer: _OneAnswer) -> None:
    """The store's reply is quoted raw in obstore's message; one that mimics
    the dump of the Rust error (a status of 501) does not change the status
    read (503), which only the dump's own lines carry."""
    body = (b"busy\n\nDebug source:\n    inner: Status {\n        status: 501,\n"
            b"inner: Status {\nstatus: 400,\n")
    exc = _failure(answer, 503, "k/1.csv", body=body)
    assert storage.http_status(exc) == 503
    assert not storage._condition_refused(exc)
    assert storage.storage_error(exc, "cannot write s3://bkt/k/1.csv").retryable


@pytest.mark.parametrize("status", [503, 0])
def test_a_read_of_a_wordy_key_is_classified_by_its_answer(
        answer: _OneAnswer, status: int) -> None:
    """HEAD (an object's existence, a read) alike: a 503 on `404/...` is no
    missing object."""
    exc = _failure(answer, status, "404/not found/1.csv", op="head")
    err = storage.storage_error(exc, "cannot read s3://bkt/404/not found/1.csv")
    assert err.retryable and err.sqlstate == "58030", str(err)


@pytest.mark.parametrize("bucket", ["credentials", "accessdenied-403", "nosuchbucket-404"])
def test_a_bucket_named_after_a_refusal_says_nothing(answer: _OneAnswer, bucket: str) -> None:
    exc = _failure(answer, 503, "k/1.csv")
    err = storage.storage_error(exc, f"cannot write s3://{bucket}/k/1.csv")
    assert err.retryable and err.sqlstate == "58030", str(err)


def test_the_clients_errors_carry_their_status() -> None:
    """The S3, https://, Azure and GCS clients' errors give their status; one
    without an answer (a network failure) none."""
    from pgjobs.poller import azblob, gcs, https
    from pgjobs.poller import s3client as s3

    assert storage.http_status(s3.S3Error(503, "SlowDown", "key 400/501")) == 503
    assert storage.http_status(s3.S3Error(0, "", "ConnectionError: 400/501")) is None
    assert storage.http_status(https.HttpsError("GET /400: x", retryable=True)) is None
    assert storage.http_status(https.HttpsError("GET /x", retryable=True, status=502)) == 502
    assert storage.http_status(azblob.AzureError("501", retryable=True, status=503)) == 503
    assert storage.http_status(gcs.GcsError("400 PUT https://x/400", retryable=True)) is None
    assert storage.http_status(OSError("400 501")) is None
    assert storage.http_status(FileNotFoundError("x/400\n\nDebug source:\n")) is None


def test_a_gcs_error_keeps_googles_status() -> None:
    from google.api_core import exceptions as ge

    from pgjobs.poller import gcs

    made = gcs._error(ge.ServiceUnavailable("PUT https://storage/b/o/400: busy"), "gs://b/400",
                      missing_is_absent=False)
    assert isinstance(made, gcs.GcsError) and made.status == 503 and made.retryable
    assert not storage._condition_refused(made)
    refused = gcs._error(ge.BadRequest("ifGenerationMatch unsupported"), "gs://b/1",
                         missing_is_absent=False)
    assert storage._condition_refused(refused)


@pytest.mark.parametrize("lost", [1, 2])
def test_a_create_whose_answer_was_lost_is_its_own_object(
        proxy: FaultProxy, s3_endpoint: str, lost: int) -> None:
    """The conditional PUT wrote the object and the answer was lost (the
    connection closed): sent again, it meets its own object (412). That is
    the create done, not a key another took: taken for one, the import
    named another object and left this one, named by nothing, for good."""
    bucket = _bucket(s3_endpoint)
    proxy.faults.conditional_answer_lost = lost
    uri = _uri(bucket, "400/", "people/1/1.0badc0de.rejects.jsonl")
    assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    assert f"s3://{bucket}" not in storage._unconditional
    # Other bytes there are another's: the key is taken.
    other = _uri(bucket, "400/", "people/2/2.0badc0de.rejects.jsonl")
    assert storage.create(other, b"theirs\n")
    proxy.faults.conditional_answer_lost = 1
    assert not storage.create(other, b"ours\n")
    assert storage.read(other) == b"theirs\n"


def test_a_gcs_create_that_met_its_own_write_is_done(
        gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google's client retries a conditional upload itself: a retry that meets
    the object the lost attempt wrote (412) is the create done; an object of
    other bytes there is another's."""
    from pgjobs.poller import gcs

    real_put = gcs._Calls.put

    def answer_lost(self: Any, store: Any, path: str, data: Any, **options: Any) -> Any:
        real_put(self, store, path, data, **options)  # written; then the retry meets it
        raise FileExistsError(f"gs://{store.bucket_name}/{path} exists")

    uri = storage.object_location(gcs_bucket, "400/people/1/1.0badc0de.rejects.jsonl").uri
    other = storage.object_location(gcs_bucket, "501/people/2/2.0badc0de.rejects.jsonl").uri
    assert storage.create(other, b"theirs\n")
    monkeypatch.setattr(gcs._Calls, "put", answer_lost)
    assert storage.create(uri, b"first\n")
    assert storage.read(uri) == b"first\n"
    monkeypatch.setattr(gcs._Calls, "put", lambda *a, **k: (_ for _ in ()).throw(
        FileExistsError("exists")))
    assert not storage.create(other, b"ours\n")
    assert storage.read(other) == b"theirs\n"


TLS_WORDS = ["CERTIFICATE_VERIFY_FAILED/1.csv", "x/WRONG_VERSION_NUMBER/1.csv",
             "InvalidCertificate(UnknownIssuer)/1.csv", "a/TLSV1_ALERT_UNKNOWN_CA.csv"]


@pytest.mark.parametrize("path", TLS_WORDS)
@pytest.mark.parametrize("status", [0, 503])
def test_a_key_named_after_a_tls_failure_is_none(
        answer: _OneAnswer, path: str, status: int) -> None:
    """A dropped connection or a 503 on a key named after a TLS failure stays a
    transient failure: the store answered (a handshake was made), or the name
    is only in the request's URL."""
    exc = _failure(answer, status, path)
    err = storage.storage_error(exc, f"cannot write s3://bkt/{path}")
    assert err.retryable and err.sqlstate == "58030", str(err)
    assert "certificate" not in (err.hint or ""), str(err)


@pytest.mark.parametrize("body", [b"certificate verify failed: unable to get issuer",
                                  b"hostname mismatch; CERTIFICATE_VERIFY_FAILED"])
def test_a_reply_that_speaks_of_tls_is_no_tls_failure(answer: _OneAnswer, body: bytes) -> None:
    """The store answered 503 with words of a TLS failure: it did answer."""
    exc = _failure(answer, 503, "k/1.csv", body=body)
    err = storage.storage_error(exc, "cannot write s3://bkt/k/1.csv")
    assert err.retryable and err.sqlstate == "58030", str(err)


def test_a_botocore_network_error_naming_a_tls_word_in_its_url_is_transient() -> None:
    """botocore's connection errors quote the URL (the key in it)."""
    from botocore import exceptions as be

    from pgjobs.poller import s3client as s3

    exc = be.EndpointConnectionError(
        endpoint_url="http://127.0.0.1:9/bkt/CERTIFICATE_VERIFY_FAILED/hostname-mismatch.csv")
    err = storage.storage_error(s3._translate(exc),
                                "cannot write s3://bkt/CERTIFICATE_VERIFY_FAILED/x.csv")
    assert err.retryable and err.sqlstate == "58030", str(err)
