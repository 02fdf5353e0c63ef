"""A fault-injecting HTTP proxy between the worker and moto's S3 server.

Each request is read whole and forwarded on its own upstream connection, so
every request (not only the first of a kept-alive connection) can be faulted:

* ``down``: the connection is closed without an answer (a storage outage as the
  client sees it: connection reset / remote end closed);
* ``lose_upload_on_part``: the first UploadPart with that part number aborts the
  upload upstream and answers as S3 does, ``404 NoSuchUpload`` (moto answers an
  unknown upload with a 500);
* ``silent_on_part``: the first UploadPart with that part number is read and
  never answered (the connection stays open, no reset);
* ``conditional_put``: a PUT with ``If-None-Match`` is answered as a store
  without conditional writes does: ``"501"`` (NotImplemented, as MinIO before
  conditional writes), ``"400"`` (a bad request naming the header), or
  ``"ignore"`` (the header dropped, the PUT forwarded); ``conditional_refused``
  counts those answered so;
* ``conditional_unavailable``: that many PUTs with ``If-None-Match`` (the
  next ones) are answered ``conditional_status`` (default ``503 SlowDown``,
  as a busy store does; ``412`` PreconditionFailed, as a store does when
  another writer created the key), before the next is forwarded;
  ``conditional_seen`` counts every PUT with ``If-None-Match`` that reached
  the proxy, however answered;
* ``conditional_dropped``: that many PUTs with ``If-None-Match`` (the next
  ones) are read and their connection closed without an answer (a network
  failure), before the next is forwarded;
* ``conditional_answer_lost``: that many PUTs with ``If-None-Match`` (the
  next ones) are forwarded, and the connection closed without passing the
  store's answer on (the object was written; the client never heard so);
* ``ranges_ignored``: that many ranged GETs (the next ones) are forwarded
  without their ``Range`` header, so the store answers ``200`` with the whole
  object, as a store or a proxy that ignores ranges does;
* ``gets_cut``: that many GETs (the next ones) are answered with the
  store's status and headers (its ``Content-Length``) but only the first half
  of the body, the connection then closed (a body cut short).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_HOP = {"connection", "keep-alive", "expect", "transfer-encoding", "proxy-connection"}
NO_SUCH_UPLOAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>'
                  b"<Message>The specified upload does not exist.</Message></Error>")
CONDITION_REFUSED = {
    "501": b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
           b"<Message>A header you provided implies functionality that is not implemented"
           b"</Message><Header>If-None-Match</Header></Error>",
    "400": b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
           b"<Message>Unsupported header If-None-Match received for this API call."
           b"</Message></Error>",
    "503": b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
           b"<Message>Please reduce your request rate.</Message></Error>",
    "412": b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
           b"<Message>At least one of the pre-conditions you specified did not hold"
           b"</Message><Condition>If-None-Match</Condition></Error>",
}


class Faults:
    def __init__(self) -> None:
        self.down = False
        self.lose_upload_on_part: int | None = None
        self.silent_on_part: int | None = None
        self.conditional_put: str | None = None
        self.conditional_refused = 0
        self.conditional_unavailable = 0
        self.conditional_status = 503
        self.conditional_dropped = 0
        self.conditional_answer_lost = 0
        self.conditional_seen = 0
        self.ranges_ignored = 0
        self.gets_cut = 0
        self.release = threading.Event()  # ends silent connections at shutdown
        self.seen: list[tuple[str, str, bool]] = []  # (method, query, while down)
        self.lock = threading.Lock()


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream).netloc
        self.faults = Faults()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.faults.release.set()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        f = self.faults
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        query = parse_qs(urlsplit(req.path).query)
        part = int(query["partNumber"][0]) if "partNumber" in query else None
        with f.lock:
            f.seen.append((req.command, urlsplit(req.path).query, f.down))
            lose = part is not None and part == f.lose_upload_on_part
            silent = part is not None and part == f.silent_on_part
            if lose:
                f.lose_upload_on_part = None
            if silent:
                f.silent_on_part = None
            down = f.down
        if down:
            req.close_connection = True
            return
        if silent:
            f.release.wait()
            req.close_connection = True
            return
        if lose:
            self._forward("DELETE", req.path.split("?")[0] + "?uploadId="
                          + query["uploadId"][0], {}, b"")
            self._answer(req, 404, {"Content-Type": "application/xml"}, NO_SUCH_UPLOAD)
            return
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
        if req.command == "GET":
            with f.lock:
                ranged = any(k.lower() == "range" for k in headers) and f.ranges_ignored > 0
                if ranged:
                    f.ranges_ignored -= 1
                cut = f.gets_cut > 0
                if cut:
                    f.gets_cut -= 1
            if ranged:
                headers = {k: v for k, v in headers.items() if k.lower() != "range"}
            if cut:
                status, reply_headers, data = self._forward(req.command, req.path, headers,
                                                            body)
                req.send_response(status)
                for key, value in reply_headers.items():
                    req.send_header(key, value)
                req.end_headers()
                req.wfile.write(data[:len(data) // 2])
                req.close_connection = True
                return
        conditional = req.command == "PUT" and any(k.lower() == "if-none-match" for k in headers)
        if conditional:
            with f.lock:
                f.conditional_seen += 1
                dropped = f.conditional_dropped > 0
                if dropped:
                    f.conditional_dropped -= 1
                busy = not dropped and f.conditional_unavailable > 0
                if busy:
                    f.conditional_unavailable -= 1
            if dropped:
                req.close_connection = True
                return
            if busy:
                self._answer(req, f.conditional_status, {"Content-Type": "application/xml"},
                             CONDITION_REFUSED[str(f.conditional_status)])
                return
        if conditional:
            with f.lock:
                lost = f.conditional_answer_lost > 0
                if lost:
                    f.conditional_answer_lost -= 1
            if lost:
                self._forward(req.command, req.path, headers, body)
                req.close_connection = True
                return
        if conditional and f.conditional_put is not None:
            with f.lock:
                f.conditional_refused += 1
            if f.conditional_put == "ignore":
                headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
            else:
                self._answer(req, int(f.conditional_put), {"Content-Type": "application/xml"},
                             CONDITION_REFUSED[f.conditional_put])
                return
        status, reply_headers, data = self._forward(req.command, req.path, headers, body)
        self._answer(req, status, reply_headers, data, head=req.command == "HEAD")

    def _forward(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            reply = {k: v for k, v in response.getheaders() if k.lower() not in _HOP}
            return response.status, reply, data
        finally:
            conn.close()

    def _answer(self, req: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
                data: bytes, head: bool = False) -> None:
        req.send_response(status)
        for key, value in headers.items():
            if head or key.lower() != "content-length":  # HEAD: the object's length
                req.send_header(key, value)
        if not head:
            req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if not head:
            req.wfile.write(data)
