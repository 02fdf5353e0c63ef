"""``https://`` import sources: the one client that reads them (the standard
library's ``http.client``), and it never follows a redirect.

The storage allow-list judges a source's URL as text, so the worker reads that
URL and no other. Every request (the ``HEAD`` that gives the size, each ranged
``GET``) is sent to it alone, and a 3xx to any of them fails the import for good,
naming where it pointed: an open redirect on an allowed server would otherwise
lead the worker to any URL (another host, an internal service) and the import
would put what it read in the client's scope. obstore's HTTP client, which read
these sources before, followed redirects on every request, so one ``HEAD``
judged clean beforehand let a server redirect the ``GET`` s that came after.

The object is read one block per ``GET`` (``Range: bytes=a-b``): the answer must
be ``206 Partial Content`` stating exactly that ``Content-Range``, of the size the
``HEAD`` gave, with that many bytes. A server that ignores ranges (``200``, the
whole object) or answers another range fails the import for good rather than
have the block read as something it is not. The blocks share one kept-alive
connection; one the server closed while idle is opened again once.

TLS is verified as obstore verified it: the system's trust store, plus the CA
file named by ``SSL_CERT_FILE`` (a private authority), with the host name
checked. A certificate the worker does not trust reads ``invalid certificate
(...)``, as before, with :data:`~pgjobs.poller.tls.TLS_HINT`. ``HTTPS_PROXY``
(an ``http://`` proxy, credentials in its URL if it needs them) and
``NO_PROXY`` are honoured as obstore honoured them: the connection is a
``CONNECT`` tunnel, TLS still end to end with the server.

Failures are :class:`HttpsError`; :func:`pgjobs.poller.storage.storage_error`
turns them into the ``StorageError`` the importer reports: 3xx, 4xx (but 408,
425 and 429), a TLS refusal and a wrong answer are for good; 5xx, a timeout and
a dropped connection are retried by the job. :data:`TIMEOUT` bounds each whole
request (connection, headers and body), not each read of the socket.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass

from pgjobs.poller.tls import TLS_HINT, permanent_tls_error

TIMEOUT = 30.0
"""Seconds one request may take in all: connecting, sending it, and reading its
whole answer (status, headers and body). Not per socket operation: a server that
sends one byte every few seconds would keep each read, and so the job, going
forever (obstore, which read these sources before, bounded the whole request
the same way)."""

REDIRECT_HINT = ("an import reads only the URL it names, under an allowed prefix: import "
                 "from the final URL, if an administrator allowed it")
RANGE_HINT = ("an https:// source is read in byte ranges (one GET per block, so an import "
              "resumes where it stopped): serve it from a server that answers Range "
              "requests with 206 Partial Content")
CHANGED_HINT = ("an https:// source must stay as it was while it is imported: restore it and "
                "pgjobs.retry the job, or cancel it and import the new one as a new job")
_RETRY_STATUSES = frozenset({408, 425, 429})
# Sizes and offsets as ASCII digits, at most 18 of them (an exabyte): str.isdigit()
# also takes "²", and int() refuses both that and more than 4300 digits, with a
# ValueError that would escape as an unexpected error.
_CONTENT_RANGE = re.compile(r"\s*bytes\s+([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18})\s*",
                            re.IGNORECASE)
_SENDABLE = re.compile(r"[!-~]+")  # a request target sent as it is: visible ASCII
_DIGITS = re.compile(r"[0-9]{1,18}")


class HttpsError(Exception):
    """An ``https://`` source could not be read. ``status``: the HTTP status that
    said so (None for a network or TLS failure)."""

    def __init__(self, message: str, *, retryable: bool, hint: str | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.hint = hint
        self.status = status


_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _context() -> ssl.SSLContext:
    """The TLS settings of every request, built once per ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``: OpenSSL's default paths (which those variables replace),
    then the system's bundle again, so a private CA adds to the system's roots
    rather than replacing them."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = ssl.create_default_context()  # verifies the chain and the host name
            system = ssl.get_default_verify_paths().openssl_cafile
            if key[0] and os.path.isfile(system):
                context.load_verify_locations(cafile=system)
            _contexts[key] = context
        return context


def forget() -> None:
    """Drop the cached TLS settings (they were read from the environment)."""
    with _contexts_lock:
        _contexts.clear()


def _failure(exc: BaseException) -> HttpsError:
    """A network or TLS error as an :class:`HttpsError`."""
    if isinstance(exc, HttpsError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        # Worded as obstore (rustls) reported it, which users and the docs know.
        return HttpsError(f"invalid certificate ({exc.verify_message or exc.reason})",
                          retryable=False, hint=TLS_HINT)
    problem = permanent_tls_error(exc)
    if problem is not None:
        return HttpsError(problem, retryable=False, hint=TLS_HINT)
    text = " ".join(str(exc).split())[:300]
    return HttpsError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
                      retryable=True)


def _proxy(host: str) -> tuple[str, int, dict[str, str]] | None:
    """(host, port, CONNECT headers) of the proxy ``HTTPS_PROXY`` names for
    ``host``, or None (no proxy, or ``NO_PROXY`` spares the host)."""
    proxy = getproxies_environment().get("https")
    if not proxy or proxy_bypass(host):  # NO_PROXY (environment first)
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise HttpsError(f"HTTPS_PROXY {parts.scheme}://{parts.hostname or ''}: the worker "
                         "reaches a proxy in plain HTTP only (CONNECT, then TLS with the "
                         "server)", retryable=False, hint="set HTTPS_PROXY=http://host:port")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise HttpsError("HTTPS_PROXY has an invalid port", retryable=False) from exc
    headers: dict[str, str] = {}
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    return parts.hostname, port, headers


class Source:
    """One ``https://`` object: its size and its bytes by ranges, over one kept-alive
    connection (:meth:`close` it)."""

    def __init__(self, uri: str):
        parts = urlsplit(uri)
        try:
            self._port = parts.port or 443
        except ValueError as exc:
            raise HttpsError(f"invalid port in {uri}", retryable=False) from exc
        self._host = parts.hostname or ""
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _SENDABLE.fullmatch(self._target) is None:
            # http.client would refuse it with a ValueError (an unexpected error,
            # retried), and encoding it here would send a URL other than the one
            # the allow-list judged (a server may decode and normalise it).
            raise HttpsError("its path is not plain visible ASCII (a space, or a "
                             "character outside ASCII), which the worker sends only as "
                             "written", retryable=False,
                             hint="serve the file under a name of visible ASCII characters "
                                  "(an import URL holds no %-escape)")
        self._conn: http.client.HTTPSConnection | None = None
        self._proxy = _proxy(self._host)
        self._expired = threading.Event()
        # The socket the answer being read comes from: http.client lets go of it
        # (conn.sock is None) as soon as an answer says the connection will close.
        self._sock: socket.socket | None = None

    def _shut(self) -> None:
        """The deadline of an exchange passed: shut its socket (the raw one while
        TLS is being negotiated), so the read that waits in another thread ends."""
        self._expired.set()
        conn = self._conn
        for sock in (conn.sock if conn is not None else None, self._sock):
            if sock is not None:
                with contextlib.suppress(OSError, ValueError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    @contextlib.contextmanager
    def _deadline(self, what: str) -> Iterator[None]:
        """One whole exchange (``what``: the request) within :data:`TIMEOUT`
        seconds, or a retryable :class:`HttpsError` and the connection closed."""
        self._expired.clear()
        timer = threading.Timer(TIMEOUT, self._shut)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as exc:
            if not self._expired.is_set():
                raise
            self.close()
            raise HttpsError(f"{what}: no complete answer within {TIMEOUT:g} s",
                             retryable=True) from exc
        finally:
            timer.cancel()
            self._sock = None
        if self._expired.is_set():
            self.close()  # shut after the answer was read: not to be reused

    def _drop(self, response: http.client.HTTPResponse) -> None:
        """Close an answer not read to its end, and the connection with it."""
        response.close()
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send one request and read its status and headers. A kept-alive connection
        that fails before answering (the server closed it while idle) is replaced
        once by a new one; the request is a read, so sending it twice is harmless."""
        for attempt in (1, 2):
            reused = self._conn is not None and self._conn.sock is not None
            if self._conn is None:
                if self._proxy is None:
                    self._conn = http.client.HTTPSConnection(
                        self._host, self._port, timeout=TIMEOUT, context=_context())
                else:
                    # The proxy's own headers (its credentials) go on the CONNECT
                    # only, never inside the tunnel to the server.
                    host, port, connect = self._proxy
                    self._conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT,
                                                             context=_context())
                    self._conn.set_tunnel(self._host, self._port, headers=connect)
            try:
                self._conn.request(method, self._target, headers=headers)
                self._sock = self._conn.sock
                return self._conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                failure = _failure(exc)
                if not (reused and attempt == 1 and failure.retryable
                        and not self._expired.is_set()):
                    raise failure from exc
        raise AssertionError("unreachable")

    def _expect(self, response: http.client.HTTPResponse, wanted: int) -> None:
        """Raise unless ``response`` has the ``wanted`` status; nothing of another
        answer is read (the connection goes)."""
        status = response.status
        if status == wanted:
            return
        self._drop(response)
        if 300 <= status < 400:
            where = response.getheader("Location") or "(no Location)"
            raise HttpsError(f"the server redirects it (HTTP {status}) to {where[:300]}",
                             retryable=False, hint=REDIRECT_HINT, status=status)
        if wanted == 206 and status == 200:
            raise HttpsError("the server ignored the byte range asked for: HTTP 200 (the "
                             "whole object), not 206 Partial Content", retryable=False,
                             hint=RANGE_HINT, status=status)
        reason = " ".join(str(response.reason or "").split())[:100]
        if status in (404, 410):
            hint = "check the URL: the object must exist on the server"
        elif status in (401, 403):
            hint = ("the worker sends no credentials: the server must let anyone with the "
                    "URL read it")
        else:
            hint = None
        retryable = status >= 500 or status in _RETRY_STATUSES
        raise HttpsError(f"HTTP {status} {reason}".strip(), retryable=retryable,
                         hint=None if retryable else hint, status=status)

    def size(self) -> int:
        """The object's size, from a ``HEAD``'s ``Content-Length``."""
        return self.head()[0]

    def head(self) -> tuple[int, dict[str, str]]:
        """The object's size (a ``HEAD``'s ``Content-Length``) and version: the
        ``ETag`` and ``Last-Modified`` it states (those it states)."""
        with self._deadline("HEAD"):
            return self._size()

    def _size(self) -> tuple[int, dict[str, str]]:
        response = self._request("HEAD", {})
        self._expect(response, 200)
        response.read()  # nothing: the connection is free again
        length = (response.getheader("Content-Length") or "").strip()
        if _DIGITS.fullmatch(length) is None:
            raise HttpsError(f"the server states no size for it (HEAD: Content-Length "
                             f"{length[:40] or 'missing'})", retryable=False,
                             hint="an https:// source must be a file the server knows the "
                                  "size of (Content-Length), not a generated stream")
        version = {name: " ".join(str(response.getheader(header) or "").split())[:200]
                   for name, header in (("etag", "ETag"), ("modified", "Last-Modified"))}
        return int(length), {k: v for k, v in version.items() if v}

    def read(self, start: int, length: int, total: int,
             pinned: dict[str, str] | None = None) -> bytes:
        """Bytes ``[start, start + length)`` of an object of ``total`` bytes, by one
        ranged ``GET``: exactly those or an :class:`HttpsError`. ``pinned``: the
        version (``etag``, ``modified``) the answer must state where it states
        one; what it states that ``pinned`` lacks is added to it."""
        with self._deadline(f"GET of bytes {start}-{start + length - 1}"):
            return self._read(start, length, total, {} if pinned is None else pinned)

    def _read(self, start: int, length: int, total: int, pinned: dict[str, str]) -> bytes:
        end = start + length - 1
        response = self._request("GET", {"Range": f"bytes={start}-{end}"})
        self._expect(response, 206)
        for name, header in (("etag", "ETag"), ("modified", "Last-Modified")):
            version = " ".join(str(response.getheader(header) or "").split())[:200]
            if not version:
                continue
            if pinned.setdefault(name, version) != version:
                self._drop(response)
                raise HttpsError(f"the source changed while it was read: the answer for "
                                 f"bytes {start}-{end} states {header} {version[:80]}, the read "
                                 f"began with {pinned[name][:80]}", retryable=False,
                                 hint=CHANGED_HINT, status=206)
        stated = response.getheader("Content-Range")
        match = _CONTENT_RANGE.fullmatch(stated or "")
        if match is not None and (int(match[1]), int(match[2])) == (start, end) \
                and int(match[3]) != total:
            # The range asked for, of another size: the source changed since the HEAD.
            self._drop(response)
            raise HttpsError(f"the source changed while it was read: {total} bytes at the "
                             f"HEAD, {int(match[3])} by the Content-Range of bytes "
                             f"{start}-{end}", retryable=False, hint=CHANGED_HINT, status=206)
        if match is None or (int(match[1]), int(match[2]), int(match[3])) != (start, end, total):
            self._drop(response)
            raise HttpsError(f"the server answered the byte range {start}-{end} of {total} "
                             f"with Content-Range {(stated or '(none)')[:100]}",
                             retryable=False, hint=RANGE_HINT, status=206)
        try:
            data = response.read(length + 1)  # one more: a longer answer shows
        except (OSError, http.client.HTTPException) as exc:
            self._drop(response)
            raise _failure(exc) from exc
        if len(data) != length:
            self._drop(response)
            raise HttpsError(f"the server sent {len(data)} bytes for the byte range "
                             f"{start}-{end} ({length} bytes)", retryable=len(data) < length)
        return data


def size(uri: str) -> int:
    """The size of an ``https://`` object (one ``HEAD``)."""
    with Source(uri) as source:
        return source.size()


def head(uri: str) -> tuple[int, dict[str, str]]:
    """The size and version (ETag, Last-Modified) of an ``https://`` object (one
    ``HEAD``)."""
    with Source(uri) as source:
        return source.head()


def read_ranges(uri: str, offset: int, block: int,
                total: int | None = None, etag: str | None = None) -> Iterator[bytes]:
    """The object from ``offset`` to its end, one ranged ``GET`` of at most
    ``block`` bytes each. ``total``: its size, as the caller's ``HEAD``
    (:func:`size`) gave it, which every ``Content-Range`` must then state: one
    ``HEAD`` serves both, and no second one could give another size; None: a
    ``HEAD`` first. ``etag``: the ETag the caller's ``HEAD`` found (:func:`head`).
    Every answer must state the version the read began with: that ETag, and the
    ``ETag`` and ``Last-Modified`` of the first answer (those the server states);
    an object put again meanwhile, even of the same size, is not read on."""
    with Source(uri) as source:
        if total is None:
            total = source.size()
        pinned: dict[str, str] = {"etag": etag} if etag else {}
        while offset < total:
            data = source.read(offset, min(block, total - offset), total, pinned)
            offset += len(data)
            yield data
