"""Permanent TLS failures fail an import for good, at once, with a hint.

A certificate the worker does not trust (self-signed, CA certificate served as
the end entity), one issued for another host name, or a server that does not
speak TLS fails the same way on every attempt: the job fails on its first
attempt (not `retrying`) with an error naming the problem and a hint saying
what to do. Real HTTPS servers on 127.0.0.1 with throwaway certificates; the
classification itself (pgjobs.poller.tls, shared by obstore's stores and the
botocore S3 client) is checked on both stacks' errors. A transient failure
(connection refused) stays retryable.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import s3client, storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.storage import StorageError
from pgjobs.poller.tls import TLS_HINT, permanent_tls_error
from tests.support import allow, claim_import, job, make_people, scalar, submit_import
from tests.test_import_https import _Ranged

Conn = psycopg.Connection[Any]


def _certificate(folder: Path, *, ca_as_leaf: bool = False, host: str = "IP:127.0.0.1") -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    folder.mkdir()
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
            "-days", "1", "-subj", "/CN=pgjobs-test", "-addext", f"subjectAltName={host}"]
    if not ca_as_leaf:
        args += ["-addext", "basicConstraints=critical,CA:FALSE"]
    subprocess.run(args, check=True, capture_output=True)
    return folder


def _serve(root: Path, tls: Path | None) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = type("Handler", (_Ranged,), {"root": root, "gets": [], "heads": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "rows.csv").write_bytes(b"name,age\nann,1\nbob,2\n")
    return root


@pytest.fixture(autouse=True)
def _fresh_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    storage.forget_stores()
    yield
    storage.forget_stores()


def _import_fails_for_good(conn: Conn, dsn: str, tmp_path: Path, uri: str, base: str,
                           *expected: str) -> str:
    make_people(conn)
    allow(conn, base)
    job_id = submit_import(conn, uri, options={"max_attempts": 5})
    worker = claim_import(dsn, job_id)
    outcome = Importer(dsn, job_id, worker, f"file://{tmp_path / 'store'}").run()
    row = job(conn, job_id)
    assert outcome.status == "failed", (outcome, row["error"])
    assert row["status"] == "failed" and row["attempts"] == 1
    error = str(row["error"])
    for text in expected:
        assert text in error, error
    assert "hint:" in error and "SSL_CERT_FILE" in error
    assert scalar(conn, "SELECT count(*) FROM people") == 0
    return error


@pytest.mark.parametrize("ca_as_leaf", [False, True], ids=["self-signed", "ca-as-leaf"])
def test_an_untrusted_certificate_fails_the_import_for_good(
        conn: Conn, dsn: str, tmp_path: Path, www: Path, ca_as_leaf: bool) -> None:
    server, port = _serve(www, _certificate(tmp_path / "tls", ca_as_leaf=ca_as_leaf))
    try:
        base = f"https://127.0.0.1:{port}"
        _import_fails_for_good(conn, dsn, tmp_path, f"{base}/rows.csv", base,
                               "invalid certificate")
    finally:
        server.shutdown()
        server.server_close()


def test_a_certificate_for_another_host_fails_the_import_for_good(
        conn: Conn, dsn: str, tmp_path: Path, www: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tls = _certificate(tmp_path / "tls", host="DNS:elsewhere.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))  # trusted, wrong name
    server, port = _serve(www, tls)
    try:
        base = f"https://127.0.0.1:{port}"
        _import_fails_for_good(conn, dsn, tmp_path, f"{base}/rows.csv", base,
                               "invalid certificate")
    finally:
        server.shutdown()
        server.server_close()


def test_plain_http_behind_an_https_url_fails_the_import_for_good(
        conn: Conn, dsn: str, tmp_path: Path, www: Path) -> None:
    server, port = _serve(www, None)
    try:
        base = f"https://127.0.0.1:{port}"
        _import_fails_for_good(conn, dsn, tmp_path, f"{base}/rows.csv", base, "plain HTTP",
                               "did not answer in TLS")
    finally:
        server.shutdown()
        server.server_close()


def test_the_trusted_certificate_still_imports(conn: Conn, dsn: str, tmp_path: Path,
                                               www: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same server, its certificate trusted, imports."""
    tls = _certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))
    server, port = _serve(www, tls)
    try:
        base = f"https://127.0.0.1:{port}"
        make_people(conn)
        allow(conn, base)
        job_id = submit_import(conn, f"{base}/rows.csv")
        outcome = Importer(dsn, job_id, claim_import(dsn, job_id),
                           f"file://{tmp_path / 'store'}").run()
        assert outcome.status == "succeeded", job(conn, job_id)["error"]
        assert scalar(conn, "SELECT count(*) FROM people") == 2
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_connection_stays_retryable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    with pytest.raises(StorageError) as caught:
        storage.size(f"https://127.0.0.1:{port}/rows.csv")
    assert caught.value.retryable and caught.value.hint != TLS_HINT


def test_botocore_certificate_errors_are_permanent() -> None:
    """The S3 client (botocore, Python's ssl): a failed verification, a name
    mismatch, a plain-HTTP endpoint are permanent; a reset stays transient."""
    from botocore import exceptions as be

    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                             "verify failed: self-signed certificate")
    verify.verify_message = "self-signed certificate"
    cases = [
        be.SSLError(endpoint_url="https://s3.test", error=verify),
        be.SSLError(endpoint_url="https://s3.test",
                    error=ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
        be.SSLError(endpoint_url="https://s3.test",
                    error=ssl.SSLError(1, "hostname mismatch, certificate is not valid for "
                                          "'s3.test'")),
    ]
    for exc in cases:
        translated = s3client._translate(exc)
        assert not translated.retryable and translated.tls, exc
        error = storage.storage_error(translated, "cannot read s3://b/k")
        assert not error.retryable and error.hint == TLS_HINT
    try:
        raise be.SSLError(endpoint_url="https://s3.test", error=verify)
    except be.SSLError as exc:
        assert permanent_tls_error(exc) == "certificate verify failed: self-signed certificate"
    reset = be.ConnectionClosedError(endpoint_url="https://s3.test")
    assert s3client._translate(reset).retryable and not s3client._translate(reset).tls
    assert permanent_tls_error(ConnectionResetError("peer reset")) is None
