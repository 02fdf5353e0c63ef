"""The few S3 multipart calls obstore does not expose, signed with SigV4.

obstore (0.12) uploads multipart objects but cannot resume an upload from another
process: its upload id and part ETags stay inside. An export checkpoints both and
continues the same upload after a crash, so this module speaks the five
operations it needs (create, upload part, complete, abort, list uploads), over
``http.client``, with static credentials from the standard variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]``). Requests are
path-style, like obstore's default. Without static credentials (instance
profiles, web identity...) exports to S3 use the staged upload through obstore
instead (:mod:`pgjobs.poller.storage`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

MIN_PART = 5 * 1024 * 1024
"""S3 rejects parts below 5 MiB, except the last."""
MAX_PARTS = 10_000
_RETRY_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                "RequestTimeTooSkewed", "OperationAborted"}


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message} (HTTP {status})" if code else
                         f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.retryable = status >= 500 or status == 0 or code in _RETRY_CODES


@dataclass(frozen=True)
class Config:
    endpoint: str
    region: str
    access_key: str
    secret_key: str
    session_token: str | None

    @classmethod
    def from_env(cls) -> Config | None:
        """Static credentials from the environment, or None."""
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            return None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
            or "us-east-1"
        endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                    or f"https://s3.{region}.amazonaws.com")
        return cls(endpoint.rstrip("/"), region, access, secret,
                   os.environ.get("AWS_SESSION_TOKEN") or None)


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(node: ET.Element, name: str) -> str:
    for child in node:
        if _strip(child.tag) == name:
            return child.text or ""
    return ""


class Client:
    """One connection to the endpoint; not thread-safe (one per upload)."""

    def __init__(self, config: Config, bucket: str):
        self.config = config
        self.bucket = bucket
        parts = urlsplit(config.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._base = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    # --- operations -------------------------------------------------------------

    def create(self, key: str) -> str:
        body = self._request("POST", key, {"uploads": ""})
        return _find(ET.fromstring(body), "UploadId")

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray
                    ) -> str:
        headers = self._request_headers("PUT", key, {"partNumber": str(number),
                                                    "uploadId": upload_id}, data)
        etag = headers.get("etag", "")
        if not etag:
            raise S3Error(0, "", "no ETag in the UploadPart response")
        return etag

    def complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                        for n, etag in enumerate(etags, start=1))
        body = self._request("POST", key, {"uploadId": upload_id},
                             f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"
                             .encode())
        # S3 may answer 200 with an error document.
        root = ET.fromstring(body) if body.strip() else None
        if root is not None and _strip(root.tag) == "Error":
            raise S3Error(200, _find(root, "Code"), _find(root, "Message"))

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self._request("DELETE", key, {"uploadId": upload_id})
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    def list_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """{part number: ETag} of an upload (NoSuchUpload when it is gone)."""
        found: dict[int, str] = {}
        marker = "0"
        while True:
            body = self._request("GET", key, {"uploadId": upload_id,
                                              "part-number-marker": marker})
            root = ET.fromstring(body)
            for node in root:
                if _strip(node.tag) == "Part":
                    found[int(_find(node, "PartNumber"))] = _find(node, "ETag")
            if _find(root, "IsTruncated") != "true":
                return found
            marker = _find(root, "NextPartNumberMarker")

    def list_uploads(self, prefix: str) -> list[tuple[str, str, float]]:
        """(key, upload id, initiated epoch) of the bucket's uploads under prefix."""
        found: list[tuple[str, str, float]] = []
        key_marker = upload_marker = ""
        while True:
            query = {"uploads": "", "prefix": prefix}
            if key_marker:
                query.update({"key-marker": key_marker, "upload-id-marker": upload_marker})
            root = ET.fromstring(self._request("GET", "", query))
            for node in root:
                if _strip(node.tag) == "Upload":
                    initiated = _find(node, "Initiated").replace("Z", "+00:00")
                    found.append((_find(node, "Key"), _find(node, "UploadId"),
                                  dt.datetime.fromisoformat(initiated).timestamp()))
            if _find(root, "IsTruncated") != "true":
                return found
            key_marker = _find(root, "NextKeyMarker")
            upload_marker = _find(root, "NextUploadIdMarker")

    # --- HTTP + SigV4 -----------------------------------------------------------

    def _request(self, method: str, key: str, query: dict[str, str],
                 body: bytes | bytearray = b"") -> bytes:
        return self._send(method, key, query, body)[0]

    def _request_headers(self, method: str, key: str, query: dict[str, str],
                         body: bytes | bytearray = b"") -> dict[str, str]:
        return self._send(method, key, query, body)[1]

    def _send(self, method: str, key: str, query: dict[str, str],
              body: bytes | bytearray) -> tuple[bytes, dict[str, str]]:
        path = f"{self._base}/{self.bucket}" + (f"/{key}" if key else "")
        canonical_path = quote(path, safe="/~")
        canonical_query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}"
                                   for k, v in sorted(query.items()))
        payload_hash = hashlib.sha256(body).hexdigest()
        delay = 0.2
        for attempt in range(4):
            now = dt.datetime.now(dt.timezone.utc)
            headers = self._sign(method, canonical_path, canonical_query, payload_hash, now)
            try:
                conn = self._connection()
                conn.request(method, canonical_path + (f"?{canonical_query}"
                                                       if canonical_query else ""),
                             body=bytes(body) if body else None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                reply = {k.lower(): v for k, v in response.getheaders()}
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                error = S3Error(0, "", f"{type(exc).__name__}: {exc}")
            else:
                if 200 <= status < 300:
                    return data, reply
                code = message = ""
                if data.strip().startswith(b"<"):
                    try:
                        root = ET.fromstring(data)
                        code, message = _find(root, "Code"), _find(root, "Message")
                    except ET.ParseError:
                        message = data[:200].decode(errors="replace")
                error = S3Error(status, code, message or response.reason)
            if not error.retryable or attempt == 3:
                raise error
            time.sleep(delay)
            delay *= 4
        raise AssertionError("unreachable")

    def _sign(self, method: str, path: str, query: str, payload_hash: str,
              now: dt.datetime) -> dict[str, str]:
        cfg = self.config
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        headers = {"host": self._host, "x-amz-content-sha256": payload_hash,
                   "x-amz-date": amz_date}
        if cfg.session_token:
            headers["x-amz-security-token"] = cfg.session_token
        names = sorted(headers)
        canonical = "\n".join([method, path, query,
                               "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                               ";".join(names), payload_hash])
        scope = f"{day}/{cfg.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{cfg.secret_key}".encode()
        for item in (day, cfg.region, "s3", "aws4_request"):
            key = hmac.new(key, item.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cfg.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls: Any = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, timeout=120)
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
