"""`https://` import sources, against a ranged HTTPS server on 127.0.0.1 (a
throwaway certificate the test trusts through SSL_CERT_FILE): the source is read
in ranged GETs of one block each, never whole; a stopped import resumes with a
range starting at its checkpoint; gzip JSONL; a URL outside the allow-list is
refused at submit and by the worker."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, scalar, submit_import

Conn = psycopg.Connection[Any]


class _Ranged(http.server.BaseHTTPRequestHandler):
    """HEAD and GET (with a byte Range) of the files under `root`; logs each GET's
    Range header (None for a whole-object GET) and each HEAD's path."""

    root: Path
    gets: list[str | None]
    heads: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _headers(self, path: Path, code: int, length: int,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:
        st = path.stat()
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        self.send_header("ETag", f'"{st.st_size}-{st.st_mtime_ns}"')
        self.send_header("Accept-Ranges", "bytes")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()

    def _file(self) -> Path | None:
        path = self.root / self.path.lstrip("/")
        return path if path.is_file() else None

    def do_HEAD(self) -> None:
        self.heads.append(self.path)
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self._headers(path, 200, path.stat().st_size)

    def do_GET(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        wanted = self.headers.get("Range")
        self.gets.append(wanted)
        data = path.read_bytes()
        if wanted is None:
            self._headers(path, 200, size)
        else:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else size - 1
            data = data[start:end + 1]
            self._headers(path, 206, len(data),
                          (("Content-Range", f"bytes {start}-{end}/{size}"),))
        self.wfile.write(data)


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, Any]]:
    """(base URL, folder it serves, the handler class with its `gets` log)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"),
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE"],
                   check=True, capture_output=True)
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Ranged,), {"root": root, "gets": [], "heads": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The worker's HTTP client trusts the system roots plus SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))
    storage.forget_stores()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", root, handler
    finally:
        server.shutdown()
        server.server_close()
        storage.forget_stores()


def people_csv(n: int) -> bytes:
    return b"name,age\n" + b"".join(b"person %d,%d\n" % (i, i) for i in range(n))


def run(dsn: str, job_id: int, store: Path, **kw: Any) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{store}", **kw).run().status


def test_csv_over_https_in_ranged_reads(conn: Conn, dsn: str, tmp_path: Path,
                                        https: tuple[str, Path, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base, root, handler = https
    make_people(conn)
    (root / "in").mkdir()
    data = people_csv(3000)
    (root / "in" / "rows.csv").write_bytes(data)
    allow(conn, f"{base}/in")
    monkeypatch.setattr(storage, "READ_BLOCK", 4096)
    job_id = submit_import(conn, f"{base}/in/rows.csv")
    assert run(dsn, job_id, tmp_path / "store") == "succeeded", job(conn, job_id)["error"]
    row = job(conn, job_id)
    assert row["result"]["rows"] == 3000 and row["result"]["bytes"] == len(data)
    assert scalar(conn, "SELECT count(DISTINCT name) FROM people WHERE tenant = 1") == 3000
    assert scalar(conn, "SELECT sum(age) FROM people") == sum(range(3000))
    # Every read was a ranged GET of at most one block: the object never whole.
    assert handler.gets and None not in handler.gets
    spans = [tuple(int(x) for x in g.removeprefix("bytes=").split("-")) for g in handler.gets]
    assert all(end - start + 1 <= 4096 for start, end in spans)
    assert len(spans) >= len(data) // 4096


def test_a_stopped_https_import_resumes_at_its_checkpoint(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, root, handler = https
    make_people(conn)
    data = people_csv(2000)
    (root / "rows.csv").write_bytes(data)
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 2048)
    job_id = submit_import(conn, f"{base}/rows.csv")
    stop = threading.Event()

    def stop_after_first(records: int, done: int, total: int | None) -> None:
        stop.set()

    assert run(dsn, job_id, tmp_path / "store", stop=stop, batch_bytes=4096,
               on_progress=stop_after_first) == "released"
    offset = job(conn, job_id)["checkpoint"]["offset"]
    assert 0 < offset < len(data)
    handler.gets.clear()
    assert run(dsn, job_id, tmp_path / "store") == "succeeded", job(conn, job_id)["error"]
    # The resume reads the header again (a source changed since is refused),
    # then the bytes before the checkpoint, whose SHA-256 must be the one
    # checkpointed (the server's validators cannot be trusted to change with
    # them: test_an_https_source_put_again_within_its_last_modified_second_...),
    # and reads on from there: ranged GETs of one block each, from 0 to the end;
    # then, at the end, the whole source once more (test_an_https_source_put_
    # again_within_its_second_mid_read_never_succeeds).
    assert handler.gets[0] == f"bytes=0-{16 * 1024 - 1}"
    spans = [f"bytes={a}-{min(a + 2048, len(data)) - 1}" for a in range(0, len(data), 2048)]
    assert handler.gets[1:] == spans + spans
    assert job(conn, job_id)["checkpoint"]["prefix_sha256"] == hashlib.sha256(data).hexdigest()
    assert scalar(conn, "SELECT count(*) FROM people") == 2000
    assert scalar(conn, "SELECT count(DISTINCT name) FROM people") == 2000


def test_an_https_source_whose_etag_changed_between_attempts_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint keeps the HEAD's ETag and Last-Modified: a resume that
    finds another (an object of the same size and header) read on in it from
    the first's offset, and the job succeeded with rows of both."""
    base, root, handler = https
    make_people(conn)
    data = people_csv(2000)
    (root / "rows.csv").write_bytes(data)
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 2048)
    job_id = submit_import(conn, f"{base}/rows.csv")
    stop = threading.Event()
    assert run(dsn, job_id, tmp_path / "store", stop=stop, batch_bytes=4096,
               on_progress=lambda *_: stop.set()) == "released"
    assert job(conn, job_id)["checkpoint"]["version"]["etag"]
    before = (root / "rows.csv").stat().st_mtime_ns
    other = data.replace(b"person", b"other ")
    assert len(other) == len(data)
    (root / "rows.csv").write_bytes(other)
    os.utime(root / "rows.csv", ns=(before + 10**9, before + 10**9))  # another ETag
    assert run(dsn, job_id, tmp_path / "store") == "failed"
    error = str(job(conn, job_id)["error"])
    assert "replaced since the import began" in error and "55000" in error, error
    assert "hint:" in error and "submit a new import" in error, error
    assert scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'other%'") == 0


def test_one_head_per_attempt_gives_the_total_and_the_reader_its_size(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The importer's total (progress, the checkpoint's size check) and the
    reader's Content-Range check came from two HEADs per attempt (three on a
    resume, which reads the header again): two sizes that could differ. One
    HEAD now serves them all, its size handed to the reader."""
    base, root, handler = https
    make_people(conn)
    data = people_csv(2000)
    (root / "rows.csv").write_bytes(data)
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 2048)
    job_id = submit_import(conn, f"{base}/rows.csv")
    stop = threading.Event()
    assert run(dsn, job_id, tmp_path / "store", stop=stop, batch_bytes=4096,
               on_progress=lambda *_: stop.set()) == "released"
    assert handler.heads == ["/rows.csv"]
    assert 0 < job(conn, job_id)["checkpoint"]["offset"] < len(data)
    handler.heads.clear()
    assert run(dsn, job_id, tmp_path / "store") == "succeeded", job(conn, job_id)["error"]
    assert handler.heads == ["/rows.csv"]  # the resume's header check asked none either
    assert scalar(conn, "SELECT count(*) FROM people") == 2000


def test_gzip_jsonl_over_https(conn: Conn, dsn: str, tmp_path: Path,
                               https: tuple[str, Path, Any]) -> None:
    base, root, _ = https
    make_people(conn)
    lines = b"".join(b'{"name": "j%d", "age": %d, "colour": "c%d"}\n' % (i, i, i)
                     for i in range(500))
    (root / "rows.jsonl.gz").write_bytes(gzip.compress(lines))
    allow(conn, f"{base}/")
    job_id = submit_import(conn, f"{base}/rows.jsonl.gz")
    assert run(dsn, job_id, tmp_path / "store") == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE data ->> 'colour' LIKE 'c%'") == 500


def test_an_https_source_outside_the_allow_list_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any]) -> None:
    base, root, handler = https
    make_people(conn)
    (root / "in").mkdir()
    (root / "secret.csv").write_bytes(people_csv(1))
    allow(conn, f"{base}/in")
    for uri in (f"{base}/secret.csv", f"{base}/in/../secret.csv", f"{base}/inx/a.csv",
                f"https://localhost:{base.rsplit(':', 1)[1]}/in/a.csv"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            submit_import(conn, uri)
    # Allowed at submit, disallowed before the worker runs: refused at run time.
    (root / "in" / "a.csv").write_bytes(people_csv(1))
    job_id = submit_import(conn, f"{base}/in/a.csv")
    conn.execute("SELECT pgjobs.disallow_storage(%s)", (f"{base}/in",))
    assert run(dsn, job_id, tmp_path / "store") == "failed"
    assert "refusing to read" in job(conn, job_id)["error"]
    assert handler.gets == []
    assert scalar(conn, "SELECT count(*) FROM people") == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_an_https_source_that_redirects_outside_the_allow_list_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any], status: int) -> None:
    """The allow-list judges the URL's text, so the worker reads only that URL
    (as a file:// source is read only without symbolic links): a server under an
    allowed prefix that redirects (an open redirect on it) would otherwise lead
    the worker anywhere, and the import would put what it read in the client's
    scope. Adversarial pass h1: obstore's HTTP client followed the redirect."""
    base, root, handler = https
    plain_head, plain_get = handler.do_HEAD, handler.do_GET

    def redirecting(plain: Any) -> Any:
        def answer(self: Any) -> None:
            if self.path.startswith("/in/go"):
                self.send_response(status)
                self.send_header("Location", f"{base}/secret/data.csv")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            plain(self)
        return answer

    handler.do_HEAD, handler.do_GET = redirecting(plain_head), redirecting(plain_get)
    make_people(conn)
    (root / "in").mkdir()
    (root / "secret").mkdir()
    (root / "secret" / "data.csv").write_bytes(b"name,age\nsecret,1\n")
    allow(conn, f"{base}/in")
    job_id = submit_import(conn, f"{base}/in/go.csv")
    assert run(dsn, job_id, tmp_path / "store") == "failed"
    row = job(conn, job_id)
    assert f"redirects it (HTTP {status})" in row["error"] and row["attempts"] == 1
    assert scalar(conn, "SELECT count(*) FROM people") == 0


def _redirect(self: Any, status: int, to: str) -> None:
    self.send_response(status)
    self.send_header("Location", to)
    self.send_header("Content-Length", "0")
    self.end_headers()


def _secret(root: Path) -> str:
    """A file outside the allowed prefix, as big as a source: what a redirect
    would have the worker import."""
    (root / "secret").mkdir()
    (root / "secret" / "data.csv").write_bytes(
        b"name,age\n" + b"".join(b"secret %d,%d\n" % (i, i) for i in range(3000)))
    return "/secret/data.csv"


def _fails_for_good(conn: Conn, dsn: str, tmp_path: Path, job_id: int, *expected: str) -> None:
    assert run(dsn, job_id, tmp_path / "store") == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["attempts"] == 1, row
    for text in expected:
        assert text in str(row["error"]), row["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'secret%'") == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_an_https_source_that_redirects_only_its_gets_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    """The HEAD answers 200, every ranged GET a redirect: no request of the
    read follows one (adversarial pass h4: obstore's ranged GETs did, after a
    HEAD judged clean)."""
    base, root, handler = https
    target = base + _secret(root)
    plain_get = handler.do_GET

    def get(self: Any) -> None:
        if self.path.startswith("/in/"):
            self.gets.append(self.headers.get("Range"))
            _redirect(self, status, target)
            return
        plain_get(self)

    handler.do_GET = get
    make_people(conn)
    (root / "in").mkdir()
    (root / "in" / "rows.csv").write_bytes(people_csv(3000))
    allow(conn, f"{base}/in")
    monkeypatch.setattr(storage, "READ_BLOCK", 4096)
    job_id = submit_import(conn, f"{base}/in/rows.csv")
    _fails_for_good(conn, dsn, tmp_path, job_id, f"redirects it (HTTP {status}) to {target}")
    assert scalar(conn, "SELECT count(*) FROM people") == 0
    assert handler.gets == ["bytes=0-4095"]  # one GET, not followed


@pytest.mark.parametrize("status", [302, 307])
def test_an_https_source_that_redirects_from_its_second_block_on_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    base, root, handler = https
    target = base + _secret(root)
    plain_get = handler.do_GET

    def get(self: Any) -> None:
        if self.path.startswith("/in/") and self.headers.get("Range", "bytes=0-") \
                .removeprefix("bytes=").split("-")[0] != "0":
            self.gets.append(self.headers.get("Range"))
            _redirect(self, status, target)
            return
        plain_get(self)

    handler.do_GET = get
    make_people(conn)
    (root / "in").mkdir()
    (root / "in" / "rows.csv").write_bytes(people_csv(3000))
    allow(conn, f"{base}/in")
    monkeypatch.setattr(storage, "READ_BLOCK", 4096)
    job_id = submit_import(conn, f"{base}/in/rows.csv")
    _fails_for_good(conn, dsn, tmp_path, job_id, f"redirects it (HTTP {status}) to {target}")
    assert handler.gets == ["bytes=0-4095", "bytes=4096-8191"]


def test_an_https_server_that_ignores_the_range_is_refused(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 with the whole object is not the block asked for: read as one, it
    would import the object's start again at every block."""
    base, root, handler = https

    def get(self: Any) -> None:
        path = self._file()
        self.gets.append(self.headers.get("Range"))
        self._headers(path, 200, path.stat().st_size)
        self.wfile.write(path.read_bytes())

    handler.do_GET = get
    make_people(conn)
    (root / "rows.csv").write_bytes(people_csv(3000))
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 4096)
    job_id = submit_import(conn, f"{base}/rows.csv")
    _fails_for_good(conn, dsn, tmp_path, job_id, "ignored the byte range", "HTTP 200")
    assert scalar(conn, "SELECT count(*) FROM people") == 0


@pytest.mark.parametrize("stated", ["bytes 0-4095/99999", "bytes 1-4096/{size}",
                                    "bytes 0-2047/{size}", None])
def test_an_https_range_answered_with_another_range_is_refused(
        https: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch,
        stated: str | None) -> None:
    """A 206 must state the range asked for, of the size the HEAD gave."""
    base, root, handler = https
    data = people_csv(3000)
    (root / "rows.csv").write_bytes(data)

    def get(self: Any) -> None:
        path = self._file()
        extra = () if stated is None else (("Content-Range",
                                            stated.format(size=len(data))),)
        self._headers(path, 206, 4096, extra)
        self.wfile.write(data[:4096])

    handler.do_GET = get
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(f"{base}/rows.csv", 0, 4096))
    assert not caught.value.retryable and "Content-Range" in str(caught.value)


def test_every_https_read_goes_through_the_one_reader(
        https: tuple[str, Path, Any]) -> None:
    """size, open_range, read and exists refuse a redirect alike; nothing reaches
    obstore's HTTP store (which follows them)."""
    base, root, handler = https
    (root / "in").mkdir()
    (root / "in" / "a.csv").write_bytes(people_csv(10))
    target = base + _secret(root)
    plain_head, plain_get = handler.do_HEAD, handler.do_GET

    def redirecting(plain: Any) -> Any:
        def answer(self: Any) -> None:
            if self.path == "/in/go.csv":
                _redirect(self, 302, target)
                return
            plain(self)
        return answer

    handler.do_HEAD, handler.do_GET = redirecting(plain_head), redirecting(plain_get)
    assert storage.read(f"{base}/in/a.csv") == people_csv(10)
    assert storage.exists(f"{base}/in/a.csv") and not storage.exists(f"{base}/in/b.csv")
    for call in (storage.size, storage.read, storage.exists,
                 lambda uri: list(storage.open_range(uri))):
        with pytest.raises(storage.StorageError) as caught:
            call(f"{base}/in/go.csv")
        assert not caught.value.retryable and "redirects it (HTTP 302)" in str(caught.value)
    with pytest.raises(storage.StorageError):
        storage.store_for(storage.parse(f"{base}/in/a.csv"))


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (410, False),
                                                   (500, True), (503, True), (429, True)])
def test_https_statuses_fail_for_good_or_for_now(
        https: tuple[str, Path, Any], status: int, retryable: bool) -> None:
    base, root, handler = https
    (root / "rows.csv").write_bytes(people_csv(10))
    plain_head = handler.do_HEAD

    def get(self: Any) -> None:
        self.send_error(status)

    handler.do_GET = get
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(f"{base}/rows.csv"))
    assert caught.value.retryable is retryable and f"HTTP {status}" in str(caught.value)

    def head(self: Any) -> None:
        self.send_error(status)

    handler.do_HEAD = head
    with pytest.raises(storage.StorageError) as caught:
        storage.size(f"{base}/rows.csv")
    assert caught.value.retryable is retryable and f"HTTP {status}" in str(caught.value)
    handler.do_HEAD = plain_head


def test_a_kept_alive_connection_the_server_closed_is_opened_again(
        https: tuple[str, Path, Any]) -> None:
    """An HTTP/1.1 server that drops an idle kept-alive connection (between two
    blocks, while the importer writes a batch) without saying so: the next
    request goes out on a new connection."""
    base, root, handler = https
    data = people_csv(3000)
    (root / "rows.csv").write_bytes(data)
    handler.protocol_version = "HTTP/1.1"
    plain_head, plain_get = handler.do_HEAD, handler.do_GET

    def closing(plain: Any) -> Any:
        def answer(self: Any) -> None:
            plain(self)
            self.wfile.flush()
            self.close_connection = True  # no "Connection: close" was sent
        return answer

    handler.do_HEAD, handler.do_GET = closing(plain_head), closing(plain_get)
    assert b"".join(storage.open_range(f"{base}/rows.csv", 0, 4096)) == data
    assert len(handler.gets) == -(-len(data) // 4096)


class _Connect(socketserver.StreamRequestHandler):
    """A CONNECT proxy: logs each request line and its Proxy-Authorization, then
    pipes bytes both ways."""

    seen: list[tuple[str, str | None]]

    def handle(self) -> None:
        line = self.rfile.readline().decode().strip()
        auth = None
        while (header := self.rfile.readline().decode().strip()):
            name, _, value = header.partition(":")
            if name.lower() == "proxy-authorization":
                auth = value.strip()
        self.seen.append((line, auth))
        host, _, port = line.split()[1].rpartition(":")
        with socket.create_connection((host, int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()

            def pipe(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pipe, args=(upstream, self.connection))
            back.start()
            pipe(self.connection, upstream)
            back.join()


def test_https_sources_go_through_the_https_proxy(
        https: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is honoured (as obstore's client did): a CONNECT tunnel, TLS
    still checked against the server's certificate; NO_PROXY spares a host."""
    base, root, handler = https
    data = people_csv(300)
    (root / "rows.csv").write_bytes(data)
    proxy_handler = type("Proxy", (_Connect,), {"seen": []})
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), proxy_handler)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://u%40x:p@127.0.0.1:{proxy.server_address[1]}")
        assert b"".join(storage.open_range(f"{base}/rows.csv", 0, 1024)) == data
        authority = base.removeprefix("https://")
        assert proxy_handler.seen and all(
            line.startswith(f"CONNECT {authority} HTTP/") and auth == "Basic dUB4OnA="
            for line, auth in proxy_handler.seen)
        assert len(handler.gets) == -(-len(data) // 1024)
        proxy_handler.seen.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert storage.size(f"{base}/rows.csv") == len(data) and proxy_handler.seen == []
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.parametrize("status", [300, 304, 305, 399])
@pytest.mark.parametrize("on", ["HEAD", "GET"])
def test_any_3xx_without_a_location_is_refused_too(
        https: tuple[str, Path, Any], status: int, on: str) -> None:
    """Not only the five redirects with a Location: every 3xx, on either request."""
    base, root, handler = https
    (root / "rows.csv").write_bytes(people_csv(10))

    def answer(self: Any) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    setattr(handler, f"do_{on}", answer)
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(f"{base}/rows.csv"))
    assert not caught.value.retryable
    assert f"redirects it (HTTP {status}) to (no Location)" in str(caught.value)


def test_the_proxy_credentials_never_reach_the_server_and_every_get_keeps_its_range(
        https: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through HTTPS_PROXY, the proxy's Proxy-Authorization goes on the CONNECT
    only: the server at the other end of the tunnel (chosen by whoever submits the
    import) never sees it. And a request sent on a connection opened again (the
    server dropped the kept-alive one) is the same request: a GET keeps its Range
    rather than going out with the proxy's headers in place of its own."""
    base, root, handler = https
    data = people_csv(3000)
    (root / "rows.csv").write_bytes(data)
    handler.protocol_version = "HTTP/1.1"
    plain_head, plain_get = handler.do_HEAD, handler.do_GET
    seen: list[tuple[str, str | None]] = []

    def closing(plain: Any) -> Any:
        def answer(self: Any) -> None:
            seen.append((self.command, self.headers.get("Proxy-Authorization")))
            plain(self)
            self.wfile.flush()
            self.close_connection = True  # no "Connection: close" was sent
        return answer

    handler.do_HEAD, handler.do_GET = closing(plain_head), closing(plain_get)
    proxy_handler = type("Proxy", (_Connect,), {"seen": []})
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), proxy_handler)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://u:secret@127.0.0.1:{proxy.server_address[1]}")
        assert b"".join(storage.open_range(f"{base}/rows.csv", 0, 4096)) == data
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proxy_handler.seen and all(auth for _, auth in proxy_handler.seen)
    assert seen and all(auth is None for _, auth in seen), seen
    assert None not in handler.gets and len(handler.gets) == -(-len(data) // 4096)


@pytest.mark.parametrize("on", ["HEAD", "GET"])
def test_an_https_server_that_answers_a_byte_at_a_time_times_out(
        https: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch, on: str) -> None:
    """TIMEOUT bounds a whole request, not each read of the socket: a server that
    sends its headers or its body one byte at a time, each well within TIMEOUT of
    the last, fails the read (retryably) instead of holding the job, and its
    worker slot, for as long as it likes."""
    from pgjobs.poller import https as https_client

    base, root, handler = https
    data = people_csv(40)
    (root / "rows.csv").write_bytes(data)
    monkeypatch.setattr(https_client, "TIMEOUT", 1.0)
    plain_head = handler.do_HEAD
    stop = threading.Event()

    def drip(self: Any, chunk: bytes) -> None:
        with contextlib.suppress(OSError):
            for i in range(len(chunk)):
                if stop.wait(0.05):
                    return
                self.wfile.write(chunk[i:i + 1])
                self.wfile.flush()

    def head(self: Any) -> None:
        if on != "HEAD":
            plain_head(self)
            return
        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
        drip(self, b"X-Slow: " + b"z" * 100 + b"\r\nContent-Length: %d\r\n\r\n" % len(data))

    def get(self: Any) -> None:
        first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
        body = data[int(first):int(last) + 1]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.end_headers()
        self.wfile.flush()
        drip(self, body)

    handler.do_HEAD, handler.do_GET = head, get
    try:
        with pytest.raises(storage.StorageError) as caught:
            list(storage.open_range(f"{base}/rows.csv"))
    finally:
        stop.set()
    assert caught.value.retryable
    assert "no complete answer within 1 s" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("length", ["\u00b2", "1\u00b9", "\u00bd"])
def test_a_content_length_of_other_digits_is_refused_as_no_size(
        https: tuple[str, Path, Any], length: str) -> None:
    """A HEAD's Content-Length must be ASCII digits: "²" passes str.isdigit() but
    not int(), and escaped the reader as a bare ValueError (the job failed as an
    unexpected error, with no hint) instead of the refusal every other wrong
    size gets."""
    base, root, handler = https
    (root / "rows.csv").write_bytes(people_csv(10))

    def head(self: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Length", length)
        self.end_headers()

    handler.do_HEAD = head
    for read in (lambda uri: list(storage.open_range(uri)), storage.size):
        with pytest.raises(storage.StorageError) as caught:
            read(f"{base}/rows.csv")
        assert not caught.value.retryable and "states no size" in str(caught.value)


@pytest.mark.parametrize("name", ["caf\u00e9.csv", "a b.csv", "\uff0e\uff0e/rows.csv"])
def test_an_https_path_that_is_not_visible_ascii_fails_for_good(
        https: tuple[str, Path, Any], name: str) -> None:
    """The allow-list takes a path with a space or a character outside ASCII
    (it refuses %-escapes); http.client refuses to send one, with a ValueError
    the importer took for an unexpected error (storage.size: a retryable one), so
    the job was retried until out of attempts, with no hint. It fails for good
    before any request, and the worker never re-encodes the URL into one the
    allow-list did not judge (fullwidth dots a server might fold into '..')."""
    base, root, handler = https
    for read in (lambda uri: list(storage.open_range(uri)), storage.size):
        with pytest.raises(storage.StorageError) as caught:
            read(f"{base}/in/{name}")
        assert not caught.value.retryable and "not plain visible ASCII" in str(caught.value)
        assert caught.value.hint
    assert handler.gets == []


@pytest.mark.parametrize("on", ["HEAD", "GET"])
def test_a_size_of_thousands_of_digits_is_refused_not_an_unexpected_error(
        https: tuple[str, Path, Any], on: str) -> None:
    """int() refuses a string of more than 4300 digits with a ValueError: a
    Content-Length (HEAD) or Content-Range (GET) that long escaped the reader as
    an unexpected error instead of the refusal of any other wrong size."""
    base, root, handler = https
    data = people_csv(10)
    (root / "rows.csv").write_bytes(data)
    huge = "9" * 5000

    def head(self: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Length", huge if on == "HEAD" else str(len(data)))
        self.end_headers()

    def get(self: Any) -> None:
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{huge}")
        self.end_headers()
        self.wfile.write(data)

    handler.do_HEAD, handler.do_GET = head, get
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(f"{base}/rows.csv"))
    assert not caught.value.retryable and caught.value.hint, str(caught.value)


def test_a_source_that_changed_size_since_the_head_is_named_so(
        https: tuple[str, Path, Any]) -> None:
    """One HEAD per attempt gives the size every range must state. A source that
    grew (or shrank) after it is caught at the next GET, but was reported as a
    server that does not answer Range requests (RANGE_HINT): the hint sent the
    operator after the server instead of the source that changed."""
    base, root, _ = https
    data = people_csv(3000)
    (root / "rows.csv").write_bytes(data)
    total = storage.size(f"{base}/rows.csv")
    (root / "rows.csv").write_bytes(data + b"late,1\n")
    with pytest.raises(storage.StorageError) as caught:
        list(storage.open_range(f"{base}/rows.csv", 0, 4096, total))
    assert not caught.value.retryable and "Content-Range" in str(caught.value)
    assert "changed" in str(caught.value), caught.value
    assert caught.value.hint and "Range requests" not in caught.value.hint, caught.value.hint
    assert "retry" in caught.value.hint, caught.value.hint


@pytest.mark.parametrize("when", ["between blocks", "after the head"])
def test_an_https_source_put_again_with_the_same_size_is_not_read_on(
        https: tuple[str, Path, Any], when: str) -> None:
    """Within an attempt an https:// source was pinned by its size only: a file
    put again with the same size between two ranged GETs (or between the HEAD
    that took its version and the first GET) was read on from the new one, and
    an import spliced two files' records and succeeded. Every answer must now
    state the version the read began with (ETag, Last-Modified: the HEAD's, or
    the first answer's)."""
    base, root, _ = https
    path = root / "rows.csv"
    data = people_csv(3000)
    path.write_bytes(data)
    total, version = storage.version(f"{base}/rows.csv")

    def put_again() -> None:
        path.write_bytes(data.replace(b"n", b"m"))
        later = path.stat().st_mtime_ns + 2 * 10**9
        os.utime(path, ns=(later, later))

    if when == "between blocks":
        blocks = storage.open_range(f"{base}/rows.csv", 0, 4096, total)
        assert next(blocks) == data[:4096]
    else:
        put_again()
        blocks = storage.open_range(f"{base}/rows.csv", 0, 4096, total,
                                    etag=version["etag"])
    if when == "between blocks":
        put_again()
    with pytest.raises(storage.StorageError) as caught:
        list(blocks)
    assert not caught.value.retryable and "changed while it was read" in str(caught.value)
    assert caught.value.hint and "retry" in caught.value.hint
    # Unchanged, it reads whole.
    assert b"".join(storage.open_range(f"{base}/rows.csv", 0, 4096, total)) == \
        data.replace(b"n", b"m")


def _seconds_validators(handler: Any, etag: bool) -> None:
    """The server's validators as nginx makes them: Last-Modified (to the second)
    and, with ``etag``, an ETag of the mtime's second and the size; none of them
    moves when the file is put again at the same size within that second."""

    def headers(self: Any, path: Path, code: int, length: int,
                extra: tuple[tuple[str, str], ...] = ()) -> None:
        st = path.stat()
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if etag:
            self.send_header("ETag", f'"{int(st.st_mtime):x}-{st.st_size:x}"')
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()

    handler._headers = headers


def _same_second_source(conn: Conn, base: str, root: Path, fmt: str,
                        monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes, int, int]:
    """`people`, a source of 2000 records (``fmt``) whose mtime is a whole
    second, allowed, read in blocks of 2048 bytes, and its import submitted:
    (its path, its bytes, that second in ns, the job's id)."""
    make_people(conn)
    path = root / f"rows.{fmt}"
    data = people_csv(2000) if fmt == "csv" else b"".join(
        b'{"name": "person %d", "age": %d}\n' % (i, i) for i in range(2000))
    path.write_bytes(data)
    second = path.stat().st_mtime_ns // 10**9 * 10**9
    os.utime(path, ns=(second, second))
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 2048)
    return path, data, second, submit_import(conn, f"{base}/rows.{fmt}", "1", {"format": fmt})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("etag", [False, True], ids=["Last-Modified only", "nginx ETag"])
def test_an_https_source_put_again_within_its_last_modified_second_is_not_read_on(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, etag: bool, fmt: str) -> None:
    """Between two attempts, a source put again at the same size within the same
    second of Last-Modified (nginx's ETag is that second and the size): every
    validator the server states is the same, and the resume read on in the new
    bytes from the first's offset, the job succeeding with rows of both."""
    base, root, handler = https
    _seconds_validators(handler, etag)
    path, data, second, job_id = _same_second_source(conn, base, root, fmt, monkeypatch)
    stop = threading.Event()
    assert run(dsn, job_id, tmp_path / "store", stop=stop, batch_bytes=4096,
               on_progress=lambda *_: stop.set()) == "released"
    path.write_bytes(data.replace(b"person", b"other "))
    os.utime(path, ns=(second + 5 * 10**8, second + 5 * 10**8))  # the same second
    run(dsn, job_id, tmp_path / "store")
    row = job(conn, job_id)
    assert row["status"] == "failed", (row["status"], scalar(
        conn, "SELECT count(*) FROM people WHERE name LIKE 'other%'"))
    assert "55000" in str(row["error"]) and "replaced" in str(row["error"]), row["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'other%'") == 0


@pytest.mark.parametrize("gz", [False, True], ids=["gzip off", "gzip on"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_https_source_served_with_content_encoding_gzip_is_never_read_as_text(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, fmt: str, gz: bool) -> None:
    """A .gz file served with ``Content-Encoding: gzip`` (Apache's AddEncoding):
    the worker asks for no encoding and decodes none, so its ranges are of the
    compressed bytes. With gzip on they are imported exactly; with it off the
    job fails (the compressed bytes are no UTF-8 header, no JSON), never
    succeeding with rows made of them."""
    base, root, handler = https
    plain_headers = handler._headers

    def encoded(self: Any, path: Path, code: int, length: int,
                extra: tuple[tuple[str, str], ...] = ()) -> None:
        plain_headers(self, path, code, length, (*extra, ("Content-Encoding", "gzip")))

    handler._headers = encoded
    make_people(conn)
    data = people_csv(1500) if fmt == "csv" else b"".join(
        b'{"name": "person %d", "age": %d}\n' % (i, i) for i in range(1500))
    (root / f"rows.{fmt}.gz").write_bytes(gzip.compress(data))
    allow(conn, f"{base}/")
    monkeypatch.setattr(storage, "READ_BLOCK", 2048)
    job_id = submit_import(conn, f"{base}/rows.{fmt}.gz", "1", {"format": fmt, "gzip": gz})
    status = run(dsn, job_id, tmp_path / "store")
    names = scalar(conn, "SELECT count(*) FROM people")
    if gz:
        assert status == "succeeded", job(conn, job_id)["error"]
        assert names == scalar(conn, "SELECT count(DISTINCT name) FROM people") == 1500
    else:
        assert status == "failed" and names == 0, (status, names)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_https_source_put_again_within_its_second_mid_read_never_succeeds(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Within one attempt, between two ranged GETs, the file put again at the
    same size within its Last-Modified second (nginx's ETag of that second and
    the size unchanged): every answer states the version the read began with,
    and the import succeeded with rows of two files. The source is read again
    at its end and must be the bytes imported."""
    base, root, handler = https
    _seconds_validators(handler, True)
    path, data, second, job_id = _same_second_source(conn, base, root, fmt, monkeypatch)

    def put_again(*_: Any) -> None:
        if not getattr(put_again, "done", False):
            put_again.done = True  # type: ignore[attr-defined]
            path.write_bytes(data.replace(b"person", b"other "))
            os.utime(path, ns=(second + 5 * 10**8, second + 5 * 10**8))

    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{tmp_path / 'store'}",
             batch_bytes=4096, on_progress=put_again).run()
    row = job(conn, job_id)
    assert row["status"] == "failed", (row["status"], scalar(
        conn, "SELECT count(*) FROM people WHERE name LIKE 'other%'"))
    assert "55000" in str(row["error"]) and "changed while it was read" in str(row["error"])


def _jsonl_of(size: int) -> tuple[bytes, int]:
    """JSON Lines of exactly ``size`` bytes (0, or at least 64): lines of 64 bytes,
    the last one longer by what is left; with how many lines."""
    if size == 0:
        return b"", 0
    n = size // 64
    lines = [b'{"name": "p%d", "age": %d}' % (i, i) for i in range(n)]
    widths = [64] * (n - 1) + [size - 64 * (n - 1)]
    padded = [line[:-1] + b', "pad": "' + b"x" * (w - len(line) - 12) + b'"}\n'
              for line, w in zip(lines, widths, strict=True)]
    data = b"".join(padded)
    assert len(data) == size
    return data, n


@pytest.mark.parametrize("shape", ["empty", "block-1", "one block", "block+1", "two blocks",
                                   "csv header only", "csv one block"])
def test_an_https_source_of_block_edge_sizes_is_imported_exactly(
        conn: Conn, dsn: str, tmp_path: Path, https: tuple[str, Path, Any],
        monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """Every ranged GET must be exactly the range asked and the source is hashed
    and read again at its end: an empty object, one of a block less one byte,
    exactly one or two blocks, a last block of one byte, a CSV of its header
    only, are each imported exactly (no range of 0 bytes asked, no last block
    taken for a short read)."""
    base, root, handler = https
    make_people(conn)
    block = 2048
    monkeypatch.setattr(storage, "READ_BLOCK", block)
    if shape.startswith("csv"):
        data = b"name,age\n"
        rows = 0
        if shape == "csv one block":
            rows = (block - len(data)) // 8 - 1  # rows of 8 bytes, then one padded
            data += b"".join(b"p%04d,1\n" % i for i in range(rows))
            data += b"x" * (block - len(data) - 3) + b",1\n"
            rows += 1
            assert len(data) == block
        name = "rows.csv"
    else:
        size = {"empty": 0, "block-1": block - 1, "one block": block,
                "block+1": block + 1, "two blocks": 2 * block}[shape]
        data, rows = _jsonl_of(size)
        name = "rows.jsonl"
    (root / name).write_bytes(data)
    allow(conn, f"{base}/")
    job_id = submit_import(conn, f"{base}/{name}")
    assert run(dsn, job_id, tmp_path / "store") == "succeeded", job(conn, job_id)["error"]
    assert job(conn, job_id)["result"]["rows"] == rows
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == rows
    spans = [tuple(int(x) for x in g.removeprefix("bytes=").split("-"))
             for g in handler.gets if g is not None]
    assert all(0 <= end - start < block for start, end in spans), spans
