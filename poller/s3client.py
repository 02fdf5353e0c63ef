"""S3 through botocore's low-level client: the multipart calls an export continues
across processes, ranged reads for imports, presigned URLs.

obstore uploads multipart objects but keeps the upload id and part ETags to
itself, so an upload cannot be continued by another process. An export
checkpoints both and continues the same upload after a crash; these are the calls
it needs (create, upload part, list parts, complete, abort, list uploads).

botocore brings what a hand-written client lacked: the whole credential chain
(environment, ``AWS_PROFILE`` and the shared credentials/config files, SSO, web
identity on EKS, container and instance profiles), proxies
(``HTTPS_PROXY``), a CA bundle (``AWS_CA_BUNDLE``), region redirects and its
``standard`` retry mode. Checksums are computed and checked only where S3
requires them (``request_checksum_calculation`` and
``response_checksum_validation`` = ``when_required``), so S3-compatible stores
(MinIO, R2, Ceph, moto) that do not know the newer checksum headers keep working.
It is imported on first use: ``pgjobs --help`` and file exports never load it.

A part is sent as it is (no copy) and hashed once: without checksums, SigV4
signs each part's body with its SHA-256 (S3 checks it), and that hash, taken from
the signed request just before it is sent, is the part's digest that the export
checkpoints (:meth:`Client.upload_part`): the exporter does not hash the part a
second time, and the digest is by construction the hash of the bytes sent.

Settings (environment, read when the first client is built):
``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (path-style addressing then, as
MinIO needs), ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``PGJOBS_S3_TIMEOUT``
(seconds a connection may stay silent before the request is retried, default 20),
``PGJOBS_S3_ATTEMPTS`` (botocore's attempts per call, default 3; the exporter
retries beyond them, see :mod:`pgjobs.poller.export`), ``PGJOBS_S3_READ_STREAMS``
(ranged GETs at once when an export reads back what it stored, see
:func:`read_streams`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from pgjobs.poller.tls import permanent_tls_error

MIN_PART = 5 * 1024 * 1024
"""S3 rejects parts below 5 MiB, except the last."""
MAX_PARTS = 10_000
DEFAULT_TIMEOUT = 20.0
DEFAULT_ATTEMPTS = 3
DEFAULT_READ_STREAMS = 4
_RETRY_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                "RequestTimeTooSkewed", "OperationAborted", "Throttling",
                "ThrottlingException", "RequestTimeoutException", "503", "500", "502", "504"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                     "ExpiredToken", "InvalidToken", "AuthorizationHeaderMalformed"}


RANGE_HINT = ("the store (or a proxy before it) must answer each ranged GET with exactly "
              "the byte range asked for (206 Partial Content): read the source from a store "
              "that honours Range, then pgjobs.retry the job")


class S3Error(Exception):
    """One failed S3 call: ``code`` is S3's error code (``NoSuchUpload``...), empty
    for a network failure; ``retryable`` says whether the same call may succeed
    later (network, 5xx, throttling), ``credentials`` that no credentials were
    found or they were refused, ``tls`` that the server's certificate is not
    trusted (or it does not speak TLS); ``hint``, what to do, where this module
    knows better than the caller."""

    def __init__(self, status: int, code: str, message: str, *, retryable: bool | None = None,
                 credentials: bool = False, tls: bool = False, hint: str | None = None):
        super().__init__(f"{code}: {message} (HTTP {status})" if code else
                         (f"HTTP {status}: {message}" if status else message))
        self.status = status
        self.code = code
        self.credentials = credentials or code in _CREDENTIAL_CODES
        self.tls = tls  # a permanent TLS failure (pgjobs.poller.tls)
        self.hint = hint
        self.retryable = (status >= 500 or status == 0 or code in _RETRY_CODES) \
            if retryable is None else retryable


_clients: dict[tuple[str | None, str, bool], Any] = {}
_once: contextvars.ContextVar[bool] = contextvars.ContextVar("pgjobs_s3_once", default=False)


@contextlib.contextmanager
def sent_once() -> Iterator[None]:
    """Within it, every request of this thread is sent once: no client resends
    it by itself (:class:`Client`, ``storage.store_for``), and no failed abort
    is queued to be sent again later (``upload_s3.abort_later``). What an
    attempt's fenced destructive call reaches (``storage.fenced``): a request
    resent after the fence may land after the lease ran out, on what the
    job's next owner continues."""
    token = _once.set(True)
    try:
        yield
    finally:
        _once.reset(token)


def sending_once() -> bool:
    """Whether this thread is inside :func:`sent_once`."""
    return _once.get()
_lock = threading.Lock()
_session: Any = None


def session() -> Any:
    """The process's botocore session: one credential chain (and one cache of
    refreshed credentials) for the S3 client and obstore's S3 stores."""
    global _session
    with _lock:
        if _session is None:
            import botocore.session  # lazily: only S3 work pays for the import

            _session = botocore.session.get_session()
            _watch_instance_metadata(_session)
        return _session


_metadata = threading.local()
"""``unanswered``: whether the instance metadata endpoint's last request, during this
thread's resolution of the chain (:func:`_chain_credentials`), took the connection
and then was not answered in time (a read timeout, or the connection closed
unanswered). A later request that is answered clears it: an IMDSv2 token request
that times out (a container's hop limit) and an IMDSv1 request answered "no role"
is an endpoint that answered, not a silent one."""


_unanswered = False
"""Whether the last resolution of the chain (any thread) ended on a credential
endpoint that did not answer (:func:`metadata_unanswered`)."""


def metadata_unanswered() -> bool:
    """Whether the chain's last resolution found no credentials because a credential
    endpoint did not answer: the instance metadata endpoint took the connection and
    sent nothing in time, or a container's credential endpoint
    (AWS_CONTAINER_CREDENTIALS_FULL_URI/RELATIVE_URI) failed after botocore's
    attempts. A start-up step that would only resolve the chain again
    (storage.warm_up) skips it, so a worker's start waits for that endpoint once
    (botocore's AWS_METADATA_SERVICE_TIMEOUT and NUM_ATTEMPTS bound each wait), not
    once per step."""
    return _unanswered


def _watch_instance_metadata(boto: Any) -> None:
    """Note, on this thread, when the instance metadata endpoint (the chain's last
    source) accepts a connection and then does not answer: botocore swallows the
    timeout and the chain reads as empty, which the pre-flight took for "no
    credentials" and refused (a worker on an EC2 instance whose metadata service was
    slow exited at start). An endpoint that refuses the connection, or where nothing
    routes (a laptop), is no endpoint: not noted, so "no credentials" stays a
    refusal there. A no-op if botocore's chain is not built as expected."""
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    try:
        provider = boto.get_component("credential_provider").get_provider("iam-role")
        http = provider._role_fetcher._session  # noqa: SLF001 - botocore's fetcher
    except Exception:  # noqa: BLE001 - another botocore layout: nothing to watch
        return
    send = http.send

    def watched(request: Any) -> Any:
        try:
            answer = send(request)
        except (ReadTimeoutError, ConnectionClosedError):
            _metadata.unanswered = True
            raise
        _metadata.unanswered = False  # it answered (if only "no role here")
        return answer

    http.send = watched


def credential_provider() -> Callable[[], dict[str, Any]]:
    """Credentials for obstore's S3 stores (staged parts, reads, deletes) from the
    same chain as the client: a store never sees fewer credentials than the
    multipart calls do. Refreshable credentials (SSO, web identity, instance
    profiles) are handed out for five minutes at a time; botocore refreshes them."""

    def provide() -> dict[str, Any]:
        creds = _chain_credentials()
        frozen = creds.get_frozen_credentials()
        refreshable = hasattr(creds, "refresh_needed")
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token or None,
                "expires_at": (datetime.now(timezone.utc) + timedelta(minutes=5))
                if refreshable else None}

    return provide


def check_credentials() -> None:
    """Whether the chain finds AWS credentials, asked the way a pre-flight may
    (``storage.preflight``): the providers are resolved, but credentials that
    botocore fetches on first use (assume-role with source_profile, SSO, web
    identity: DeferredRefreshableCredentials) are not fetched: that is an STS
    or SSO request, which the job makes anyway and which failed the check
    whenever the service was briefly unreachable. Raises :class:`S3Error`:
    ``credentials`` when the chain has none (or its configuration is
    unusable), ``retryable`` when a credential endpoint did not answer (the
    ECS/EKS container endpoint, a network error). Credentials the chain found
    but that are expired where this process can tell without a request are
    refused too (``credentials``): static session credentials whose
    AWS_CREDENTIAL_EXPIRATION has passed, an SSO profile whose login (the
    token cache of `aws sso login`) is missing or expired with nothing to
    refresh it; they passed and the job failed on its first call."""
    creds = _chain_credentials()
    try:
        expired = _expired(creds)
    except Exception:  # noqa: BLE001 - a value or a botocore this reading does not know:
        expired = None  # no check here (the job tells), never a false refusal or a crash
    if expired is not None:
        raise S3Error(0, "", f"AWS credentials unusable: {expired}", retryable=False,
                      credentials=True)


def _expired(creds: Any) -> str | None:
    """Why ``creds`` (the chain's) cannot sign anything now, judged without a
    request, or None when they may: a refreshable source outside an endpoint
    (the environment re-read, a credential_process) is refreshed here, as the
    first call would; deferred ones are fetched by the job, except an SSO
    login, read from its token cache."""
    from botocore.credentials import DeferredRefreshableCredentials, RefreshableCredentials

    if isinstance(creds, DeferredRefreshableCredentials):
        return _sso_login_expired() if creds.method == "sso" else None
    expiry = getattr(creds, "_expiry_time", None)
    if (not isinstance(creds, RefreshableCredentials) or not isinstance(expiry, datetime)
            or expiry.tzinfo is None  # botocore's own reading judges it, not a guess here
            or creds.method in _ENDPOINT_PROVIDERS
            or expiry > datetime.now(timezone.utc)):
        return None
    try:
        creds.get_frozen_credentials()  # botocore's refresh, as the first call's
    except Exception:  # noqa: BLE001 - the refresh gave nothing newer
        return (f"the {creds.method} credentials expired at {expiry.isoformat()}"
                + (" (AWS_CREDENTIAL_EXPIRATION)" if creds.method == "env" else ""))
    return None


def _sso_login_expired() -> str | None:
    """Why the SSO profile's login cannot give credentials now, or None: its
    token (`aws sso login`'s cache) is missing, or expired without a refresh
    token of an sso-session that botocore could use."""
    from botocore.exceptions import SSOTokenLoadError
    from botocore.utils import SSOTokenLoader

    try:
        provider = session().get_component("credential_provider").get_provider("sso")
        config = provider._load_sso_config()  # noqa: SLF001 - botocore's own reading
        cache = provider._token_cache  # noqa: SLF001
    except Exception:  # noqa: BLE001 - another botocore layout: the job will tell
        return None
    if not config:
        return None
    name = config.get("sso_session")
    profile = getattr(provider, "_profile_name", None)
    login = ("`aws sso login" + (f" --sso-session {name}" if name else
                                 f" --profile {profile}" if profile else "") + "`")
    try:
        token = SSOTokenLoader(cache=cache)(config["sso_start_url"], name)
    except SSOTokenLoadError:
        return f"no SSO login is cached for {name or config['sso_start_url']}: run {login}"
    try:
        expires = datetime.fromisoformat(str(token["expiresAt"]).replace("Z", "+00:00"))
    except ValueError:
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    if expires > datetime.now(timezone.utc) or (name and token.get("refreshToken")):
        return None
    return f"the SSO login expired at {expires.isoformat()}: run {login}"


def _chain_credentials() -> Any:
    """The credentials object botocore's chain resolves (deferred ones not yet
    fetched), or :class:`S3Error` (``credentials``) when it has none."""
    global _unanswered
    boto = session()
    _metadata.unanswered = False
    try:
        creds = boto.get_credentials()
    except Exception as exc:
        error = _translate(exc)
        # A container credential endpoint that did not answer: waited for once too.
        _unanswered = error.retryable
        raise error from exc
    _unanswered = creds is None and bool(getattr(_metadata, "unanswered", False))
    if _unanswered:
        # The instance metadata endpoint is there but did not answer in time:
        # perhaps its credentials, perhaps none; retried, as any endpoint down.
        raise S3Error(0, "", "AWS credential endpoint did not answer: the instance "
                      "metadata service took the connection but sent nothing in time "
                      "(AWS_METADATA_SERVICE_TIMEOUT)", retryable=True)
    if creds is None:
        raise S3Error(0, "", "no AWS credentials found (environment, AWS_PROFILE, "
                      "shared credentials/config files, SSO, web identity, container "
                      "or instance profile)", retryable=False, credentials=True)
    return creds


def _settings() -> tuple[str | None, str]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") \
        or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    return endpoint, region


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def read_streams() -> int:
    """How many ranged GETs at once read an export's object back
    (``PGJOBS_S3_READ_STREAMS``). By default :data:`DEFAULT_READ_STREAMS` on AWS,
    where a ranged GET costs the bytes it returns and one connection's bandwidth
    is the limit; one where an endpoint is set (``AWS_ENDPOINT_URL_S3``/
    ``AWS_ENDPOINT_URL``), since what a range costs there is the store's own:
    moto reads the whole object for each ranged GET, so there streams multiply
    the work instead of dividing the wait."""
    endpoint, _ = _settings()
    default = 1 if endpoint else DEFAULT_READ_STREAMS
    return max(1, int(_float_env("PGJOBS_S3_READ_STREAMS", default)))


def botocore_client(retries: bool = True) -> Any:
    """The process's S3 client for the current settings (botocore clients are
    thread-safe; credentials refresh themselves). ``retries=False``: one that
    sends each request once (an attempt's destructive call, fenced by its
    caller: botocore must not resend it after the lease may have run out)."""
    endpoint, region = _settings()
    boto = session()
    with _lock:
        client = _clients.get((endpoint, region, retries))
        if client is not None:
            return client
        from botocore.config import Config

        timeout = _float_env("PGJOBS_S3_TIMEOUT", DEFAULT_TIMEOUT)
        config = Config(
            connect_timeout=min(timeout, 10.0), read_timeout=timeout,
            retries={"mode": "standard",
                     "max_attempts": max(1, int(_float_env("PGJOBS_S3_ATTEMPTS",
                                                           DEFAULT_ATTEMPTS)))}
            if retries else {"mode": "standard", "total_max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if endpoint else "auto"},
            signature_version="s3v4", max_pool_connections=16)
        client = boto.create_client(
            "s3", region_name=region or boto.get_config_variable("region") or "us-east-1",
            endpoint_url=endpoint, config=config)
        client.meta.events.register("before-send.s3.UploadPart", _payload_hash)
        _clients[(endpoint, region, retries)] = client
        return client


_part = threading.local()
"""The UploadPart this thread is making (:meth:`Client.upload_part`): ``data``, the
SHA-256 its caller ``expected`` (or None) and the one it was ``sent`` with."""
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _payload_hash(request: Any, **_: Any) -> None:
    """``before-send`` of UploadPart, the last moment before a byte is sent: note
    the payload hash botocore signed the part with (``X-Amz-Content-SHA256``,
    computed from this very body) as the part's SHA-256, or hash the body here when
    the signature carries none (``UNSIGNED-PAYLOAD``); refuse to send a part whose
    hash is not the one its caller expected (S3 would refuse it too, a store that
    does not check would keep it)."""
    data = getattr(_part, "data", None)
    if data is None:
        return
    value = request.headers.get("X-Amz-Content-SHA256")
    signed = value.decode() if isinstance(value, bytes) else str(value or "")
    sent = signed if _HEX_SHA256.fullmatch(signed) else hashlib.sha256(data).hexdigest()
    if _part.expected is not None and sent != _part.expected:
        raise S3Error(0, "", f"part {_part.number}: its bytes hash to {sent}, not to the "
                      f"SHA-256 given with it ({_part.expected}); not sent", retryable=False)
    _part.sent = sent


def forget_clients() -> None:
    """Drop cached clients (their settings were read from the environment)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


_ENDPOINT_PROVIDERS = ("container-role", "iam-role")
"""botocore's names (CredentialRetrievalError's ``provider``) of the credential
sources that are network endpoints."""


def _translate(exc: BaseException) -> S3Error:
    from botocore import exceptions as be

    if isinstance(exc, be.ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or exc)
        return S3Error(status or 400, code, message)
    if isinstance(exc, be.CredentialRetrievalError) \
            and exc.kwargs.get("provider") in _ENDPOINT_PROVIDERS:
        # The container (ECS, EKS Pod Identity) or instance metadata endpoint
        # did not answer after botocore's own attempts: a network failure, not
        # an absence of credentials (the endpoint is there: its variable is set).
        return S3Error(0, "", f"AWS credential endpoint unreachable: {exc}", retryable=True)
    if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError,
                        be.CredentialRetrievalError, be.ProfileNotFound,
                        be.UnauthorizedSSOTokenError, be.TokenRetrievalError)):
        return S3Error(0, "", f"no usable AWS credentials: {exc}", retryable=False,
                       credentials=True)
    if isinstance(exc, (be.ParamValidationError, be.InvalidRegionError,
                        be.InvalidEndpointConfigurationError)):
        return S3Error(0, "", f"{type(exc).__name__}: {exc}", retryable=False)
    tls_problem = permanent_tls_error(exc)
    if tls_problem is not None:  # an untrusted certificate fails the same way every time
        return S3Error(0, "", f"TLS: {tls_problem}", retryable=False, tls=True)
    # Connection refused or reset, timeouts, a truncated response: try again.
    return S3Error(0, "", f"{type(exc).__name__}: {exc}", retryable=True)


class Client:
    """The S3 calls of one bucket. Every failure is an :class:`S3Error`."""

    def __init__(self, bucket: str, *, retries: bool = True):
        self.bucket = bucket
        self.retries = retries  # False: each request sent once (botocore_client)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            client = botocore_client(self.retries and not sending_once())
            return getattr(client, operation)(Bucket=self.bucket, **kwargs)
        except S3Error:
            raise
        except Exception as exc:  # botocore's, urllib3's and socket errors
            raise _translate(exc) from exc

    def create(self, key: str) -> str:
        return str(self._call("create_multipart_upload", Key=key)["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray,
                    sha256: str | None = None) -> tuple[str, str]:
        """Upload one part, sent as it is (no copy: a bytearray stays one; botocore
        wraps bytes in a BytesIO); its (ETag, SHA-256 hex), the hash the request
        was signed with (see :func:`_payload_hash`). ``sha256``: the digest the
        caller holds for ``data``; the part is not sent unless it is that."""
        _part.data, _part.number, _part.expected, _part.sent = data, number, sha256, None
        try:
            reply = self._call("upload_part", Key=key, UploadId=upload_id, PartNumber=number,
                               Body=data)
            sent = _part.sent
        finally:
            _part.data = _part.expected = _part.sent = None
        etag = str(reply.get("ETag") or "")
        if not etag:
            raise S3Error(0, "", "no ETag in the UploadPart response")
        if sent is None:  # not through before-send (a stubbed client): hash it here
            sent = hashlib.sha256(data).hexdigest()
            if sha256 is not None and sent != sha256:
                raise S3Error(0, "", f"part {number}: its bytes hash to {sent}, not to the "
                              f"SHA-256 given with it ({sha256})", retryable=False)
        return etag, str(sent)

    def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                         start: int, end: int) -> str:
        """Part ``number`` of the upload copied by S3 from bytes [start, end) of object
        ``source`` of this bucket (no byte passes through here); its ETag."""
        reply = self._call("upload_part_copy", Key=key, UploadId=upload_id, PartNumber=number,
                           CopySource={"Bucket": self.bucket, "Key": source},
                           CopySourceRange=f"bytes={start}-{end - 1}")
        etag = str((reply.get("CopyPartResult") or {}).get("ETag") or "")
        if not etag:
            raise S3Error(0, "", "no ETag in the UploadPartCopy response")
        return etag

    def complete(self, key: str, upload_id: str, etags: list[str], *,
                 overwrite: bool = False) -> None:
        """Complete an upload only where no object is (``If-None-Match: *``): a
        ``412 PreconditionFailed`` when one is, nothing written over it (never
        over another's object: every caller makes an object of its own).
        ``overwrite``: the plain request, for a store that refuses the condition
        (``400``/``501``), sent only after the caller has looked."""
        # botocore turns S3's "200 with an error document" into an error.
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        self._call("complete_multipart_upload", Key=key, UploadId=upload_id,
                   MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag}
                                              for n, etag in enumerate(etags, start=1)]},
                   **condition)

    def abort(self, key: str, upload_id: str) -> None:
        """Abort an upload; one already gone is fine."""
        try:
            self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except S3Error as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise

    def list_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """{part number: ETag} of an upload (NoSuchUpload when it is gone)."""
        found: dict[int, str] = {}
        marker = 0
        while True:
            reply = self._call("list_parts", Key=key, UploadId=upload_id,
                               PartNumberMarker=marker)
            for part in reply.get("Parts", []):
                found[int(part["PartNumber"])] = str(part["ETag"])
            if not reply.get("IsTruncated"):
                return found
            marker = int(reply.get("NextPartNumberMarker") or 0)

    def list_uploads(self, prefix: str) -> list[tuple[str, str, float]]:
        """(key, upload id, initiated epoch) of the bucket's open uploads under prefix."""
        found: list[tuple[str, str, float]] = []
        markers: dict[str, str] = {}
        while True:
            reply = self._call("list_multipart_uploads", Prefix=prefix, **markers)
            for upload in reply.get("Uploads", []):
                found.append((str(upload["Key"]), str(upload["UploadId"]),
                              upload["Initiated"].timestamp()))
            if not reply.get("IsTruncated"):
                return found
            markers = {"KeyMarker": str(reply.get("NextKeyMarker") or ""),
                       "UploadIdMarker": str(reply.get("NextUploadIdMarker") or "")}

    def size(self, key: str) -> int:
        return int(self._call("head_object", Key=key)["ContentLength"])

    def head(self, key: str) -> tuple[int, dict[str, str]]:
        """The size of ``key`` and its version: the ETag and Last-Modified of
        one HEAD (those it states)."""
        head = self._call("head_object", Key=key)
        modified = head.get("LastModified")
        version = {"etag": str(head.get("ETag") or ""),
                   "modified": modified.isoformat() if modified is not None else ""}
        return int(head["ContentLength"]), {k: v for k, v in version.items() if v}

    def get_range(self, key: str, start: int, length: int, etag: str | None = None) -> bytes:
        """Bytes [start, start + length) of ``key``, exactly those; with ``etag``, of
        that version only (If-Match: S3 answers 412 PreconditionFailed once it was
        replaced). A reply that is not that range (a store or proxy that ignores
        ``Range`` answers 200 with the whole object, no ``Content-Range``) is an
        S3Error, not retryable, and none of its bytes is returned: read as the
        block asked for, the object's start was imported again."""
        end = start + length - 1
        match = {} if etag is None else {"IfMatch": etag}
        reply = self._call("get_object", Key=key, Range=f"bytes={start}-{end}", **match)
        try:
            stated = str(reply.get("ContentRange") or "").strip()
            found = _CONTENT_RANGE.fullmatch(stated)
            if found is None or (int(found[1]), int(found[2])) != (start, end):
                raise S3Error(0, "", f"{key}: the store answered the byte range {start}-{end} "
                              f"with Content-Range {stated[:100] or '(none: the whole object?)'}"
                              f", not that range", retryable=False, hint=RANGE_HINT)
            data = bytes(reply["Body"].read())
        except S3Error:
            raise
        except Exception as exc:  # the body streams after the call returned
            raise _translate(exc) from exc
        finally:
            reply["Body"].close()
        if len(data) != length:
            raise S3Error(0, "", f"{key}: the store sent {len(data)} bytes for the byte range "
                          f"{start}-{end} ({length} bytes)", retryable=len(data) < length,
                          hint=None if len(data) < length else RANGE_HINT)
        return data

    def open_range(self, key: str, start: int, end: int) -> tuple[tuple[int, int, int] | None,
                                                                   Any]:
        """A ranged GET of bytes [start, end) of ``key``: (first, last, size) as
        the reply's ``Content-Range`` states them (None when it has none: the
        store sent the whole object), and the body, to read with
        :meth:`read_into` and close."""
        reply = self._call("get_object", Key=key, Range=f"bytes={start}-{end - 1}")
        stated = _CONTENT_RANGE.fullmatch(str(reply.get("ContentRange") or "").strip())
        return (None if stated is None else
                (int(stated[1]), int(stated[2]), int(stated[3]))), reply["Body"]

    @staticmethod
    def read_into(body: Any, buffer: memoryview) -> int:
        """Read the next bytes of a reply's body (:meth:`open_range`) into
        ``buffer``; how many (0 at its end)."""
        try:
            return int(body.readinto(buffer))
        except Exception as exc:  # the body streams after the call returned
            raise _translate(exc) from exc

    def read_ranges(self, key: str, offset: int, block: int,
                    total: int | None = None, etag: str | None = None) -> Iterator[bytes]:
        """The object from ``offset`` to its end, one ranged GET per block, every
        one of the version the read began with (its ETag, If-Match): an object
        replaced meanwhile, even by one of the same size, is not read on from the
        new one (that spliced two objects into one). ``total``: the size the
        caller began with; another size now is a change too. Either raises
        S3Error ``changed``, not retryable. ``etag``: the version the caller
        began with (an import's checkpoint), pinned instead of the one found here."""
        head = self._call("head_object", Key=key)
        size, etag = int(head["ContentLength"]), etag or head.get("ETag")
        if total is not None and size != total:
            raise S3Error(412, "PreconditionFailed",
                          f"{key} changed while it was read: {total} bytes when the read "
                          f"began, {size} now", retryable=False)
        while offset < size:
            try:
                data = self.get_range(key, offset, min(block, size - offset), etag)
            except S3Error as exc:
                if exc.status == 412:
                    raise S3Error(412, "PreconditionFailed",
                                  f"{key} changed while it was read (replaced at offset "
                                  f"{offset})", retryable=False) from exc
                raise
            if not data:
                raise S3Error(0, "", f"no bytes at offset {offset}")
            offset += len(data)
            yield data

    def presign(self, key: str, expires: timedelta) -> str:
        try:
            return str(botocore_client().generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires.total_seconds())))
        except Exception as exc:
            raise _translate(exc) from exc
