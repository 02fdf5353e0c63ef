"""Object storage for exports: a small interface over obstore (and the local disk).

URIs: ``file://DIR`` (relative paths resolve against the working directory),
``s3://bucket/prefix`` (the standard ``AWS_*`` variables, including
``AWS_ENDPOINT_URL``; an ``http://`` endpoint such as MinIO works as is),
``gs://bucket/prefix``, ``az://container/prefix`` and ``memory://prefix`` (one
in-process store, for tests); ``https://host/path`` for import sources only, read
by :mod:`~pgjobs.poller.https` (never through obstore, whose HTTP client follows
redirects).

The one thing obstore does not offer is a multipart upload that another process
can resume, so an export is written through an :class:`~pgjobs.poller.upload.Upload`
(the protocol, in :mod:`pgjobs.poller.upload`), durable part by part, whose
``state()`` is a small JSON document the exporter saves in the job's checkpoint;
:func:`resume_upload` picks the kind for the URI and rebuilds it in any process:

* :mod:`~pgjobs.poller.upload_file` (``file://``): a hidden temporary file next
  to the object, fsynced per part, renamed into place atomically at the end.
* :mod:`~pgjobs.poller.upload_s3` (``s3://`` with parts of 5 MiB or more): one S3
  multipart upload through botocore (the whole AWS credential chain), its id
  and part ETags checkpointed; aborts are retried while storage is down.
* :class:`~pgjobs.poller.gcs.ComposeUpload` (``gs://``, through Google's own
  client): hidden part objects joined by GCS's server-side compose, so the
  bytes cross the network once.
* :class:`~pgjobs.poller.azblob.BlockUpload` (``az://`` with an account key or
  SAS): blocks staged on the blob by id, committed by one block list.
* :mod:`~pgjobs.poller.upload_obstore` (``az://`` with other credentials,
  ``memory://``, S3 with small parts): hidden part objects under
  ``{destination prefix}.pgjobs-staging/{job}/{token}/{n}``, streamed in order
  into one (internally multipart, atomic) put of the object.

The upload kinds build on this module (locations, stores, errors), so it imports
them only when an upload is made, never at import time.

Nothing is visible at the object's key before ``finish``; the bytes of the object
depend only on the parts listed in the state, so two owners finishing the same
state write the same object. See docs/exports.md for the reasoning.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from pgjobs.errors import InvalidInput, PgjobsError, split_tail
from pgjobs.lazy import lazy_module
from pgjobs.poller import azblob, gcs
from pgjobs.poller import s3client as s3
from pgjobs.poller.tls import TLS_HINT, URL, permanent_tls_error
from pgjobs.poller.upload import CannotResume as CannotResume
from pgjobs.poller.upload import KeyTaken as KeyTaken
from pgjobs.poller.upload import Mismatch as Mismatch
from pgjobs.poller.upload import PartDigests as PartDigests
from pgjobs.poller.upload import Seals as Seals
from pgjobs.poller.upload import Streamed as Streamed
from pgjobs.poller.upload import Upload as Upload
from pgjobs.poller.upload import UploadLost as UploadLost
from pgjobs.poller.upload import is_prefix as is_prefix
from pgjobs.poller.upload import prefix_digest as prefix_digest

obstore = gcs.calls  # obstore's functions; gs:// buckets go through Google's client
if TYPE_CHECKING:
    import obstore.exceptions as obstore_errors
    import obstore.store as obstore_stores

    from pgjobs.poller import https
else:
    # Imported when a store is first used: `pgjobs export --help` imports this
    # module and must not import obstore (pgjobs/lazy.py), nor the standard
    # library's HTTP client that https:// sources use (http.client, email).
    obstore_errors = lazy_module("obstore.exceptions")
    obstore_stores = lazy_module("obstore.store")
    https = lazy_module("pgjobs.poller.https")

log = logging.getLogger("pgjobs.storage")
T = TypeVar("T")
SCHEMES = ("file", "s3", "gs", "az", "memory", "https")  # https: import sources only
STAGING = ".pgjobs-staging"
"""Name of the hidden folder (under the destination prefix) holding staged parts."""
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.pgjobs-(?P<token>[A-Za-z0-9_-]+)\.tmp$"
                     # `write`'s temporary file before stop 32, `{name}.pgjobs-tmp`
                     # (not hidden), which a worker killed mid-write left for good.
                     r"|^(?P<old>[^.].*)\.pgjobs-tmp$")
_REFUSED_CHARS = re.compile(r"[\x00-\x1f\x7f\\%?#]")
COMPOSE_CHUNK = 8 * 1024 * 1024
# The most bytes one pwrite hands the kernel (write_at). A whole 15 MB part
# in one call, written on the part writer's thread while the reader fills the
# next part, cost 0.30-0.39 s of CPU per 1M rows of a file:// export; the same
# bytes in slices of 256 KiB 0.05-0.06 s (slices of 1 MiB and more cost about
# as much as one call; of 64 KiB slightly more than 256 KiB): measured on the
# development machine, its 2 cores shared (docs/exports.md).
WRITE_SLICE = 256 * 1024


def not_found() -> tuple[type[BaseException], ...]:
    """What a read of a missing object raises: ``except not_found():`` (obstore's
    class, read only once something was raised)."""
    return (FileNotFoundError, obstore_errors.NotFoundError)


class StorageError(PgjobsError):
    """Object storage refused or failed. ``retryable`` is False for mistakes that
    another attempt cannot fix (no such bucket, bad credentials, not writable).
    Its SQLSTATE says which (:func:`storage_error`): 28000 no usable credentials
    or account, 42501 refused, 58P01 no such bucket, container or file, 22023 a
    URI or setting the worker cannot use, 58030 any other storage failure. The
    worker decides its retry from ``retryable``, never from the SQLSTATE."""

    default_sqlstate: str | None = "58030"

    def __init__(self, message: str, *, retryable: bool, hint: str | None = None,
                 sqlstate: str | None = None):
        tail = split_tail(message) if sqlstate is None and hint is None else None
        if tail is not None:
            # Another error's one line (a part's, recorded): its SQLSTATE and hint
            # are this one's, said once.
            message, sqlstate, hint = tail
        if hint is None:
            hint = (_RETRY_HINT if retryable else
                    "check the worker's --storage (or the export's destination) and its "
                    "storage credentials")
        super().__init__(message, sqlstate=sqlstate, hint=hint)
        self.retryable = retryable


_RETRY_HINT = ("the worker retries it for --storage-retry; if it keeps failing, check the "
               "storage and the worker's network")


# --- locations -----------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """An object (or prefix) in some storage: ``store`` + ``path`` inside it, or a
    local filesystem path for ``file://``."""

    scheme: str
    base: str  # "s3://bucket", "memory://", "file://"
    path: str  # key inside the store, or absolute filesystem path for file

    @property
    def uri(self) -> str:
        if self.scheme == "file":
            return "file://" + self.path
        return f"{self.base}/{self.path}" if self.scheme != "memory" else f"memory:///{self.path}"


def parse(uri: str) -> Location:
    """Parse a storage URI (a prefix or an object). Raises InvalidInput (exit 2)."""
    hint = "use file://DIR, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix " \
           "or memory://prefix"
    if not isinstance(uri, str) or "://" not in uri:
        if isinstance(uri, str) and uri.strip() and ":" not in uri:
            # A local folder (`--to /data/out`, `--storage ./out`): the one URI to
            # write, not the list of schemes.
            folder = _absolute(os.path.expanduser(uri.strip()), uri)
            hint = f"a local folder is a file:// URI with its absolute path: file://{folder}"
        raise InvalidInput(f"invalid storage URI {uri!r}", hint=hint)
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(f"unsupported storage scheme {scheme!r} in {uri!r}", hint=hint)
    if scheme == "file":
        if not rest:
            raise InvalidInput(f"invalid storage URI {uri!r}: no directory", hint=hint)
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if rest.startswith("~"):
            # No shell expands ~ inside a URI: file://~/exports named ./~/exports.
            raise InvalidInput(f"invalid storage URI {uri!r}: ~ is not expanded in a URI",
                               hint="a local folder is a file:// URI with its absolute "
                                    f"path: file://{os.path.expanduser(rest)}")
        path = _absolute(rest, uri)
        if rest.endswith("/") and not path.endswith("/"):
            path += "/"
        return Location("file", "file://", path)
    if scheme == "memory":
        return Location("memory", "memory://", rest.lstrip("/"))
    parts = urlsplit(uri)
    if not parts.netloc:
        raise InvalidInput(f"invalid storage URI {uri!r}: no bucket", hint=hint)
    return Location(scheme, f"{scheme}://{parts.netloc}", parts.path.lstrip("/"))


def _absolute(path: str, uri: str) -> str:
    """``path`` made absolute against this process's folder; InvalidInput (exit 2)
    when it is relative and that folder has been removed since the command
    started in it (`make demo` in a folder deleted and made again by another
    shell: its default ./pgjobs-exports ended in a traceback)."""
    try:
        return os.path.abspath(path)
    except FileNotFoundError:
        raise InvalidInput(
            f"invalid storage URI {uri!r}: {path} is relative, and the folder this command "
            "runs in no longer exists",
            hint="cd into a folder that exists, or give an absolute path: "
                 "file:///absolute/path") from None


def same_place(a: Any, b: Any) -> bool:
    """Whether two spellings of a storage URI name one place as a job is given
    it: each read as ``--to`` is read (:func:`parse`: the scheme lower-cased, a
    file path made absolute against this directory, its empty and dot
    segments resolved; the leading slashes of a memory path or a bucket's key
    dropped), then in the normal form the server stores
    (``pgjobs._normalize_uri``: one trailing slash names the same folder).
    ``--to file:///tmp/x`` and a destination ``FILE:///tmp//x/`` are one
    place; ``s3://b/x`` and ``s3://b/y`` are two. A value that is no URI (not
    a string, no scheme) is the same only as itself."""
    def place(uri: Any) -> tuple[str, str, str] | None:
        try:
            loc = parse(uri)
        except InvalidInput:
            return None
        path = loc.path[:-1] if loc.path.endswith("/") else loc.path
        return loc.scheme, loc.base, path

    first, second = place(a), place(b)
    if first is None or second is None:
        return bool(a == b) and type(a) is type(b)
    return first == second


WRITABLE_SCHEMES = ("file", "s3", "gs", "az", "memory")
"""The schemes a worker writes to (https:// is an import source only)."""


def writable(uri: str, option: str, *, open_store: bool = False,
             detachable: bool = False) -> Location:
    """The place ``option`` (``--storage``, ``--to``) names, checked before a command
    submits anything: InvalidInput (22023, exit 2) for a URI that is malformed or
    of a scheme no worker writes to; with ``open_store``, the store is built as the
    worker would build it (no request sent), so that a store missing its
    configuration (an az:// URI without an account) or credentials is refused
    now, not by a failed job (:func:`preflight`; ``detachable``: its hint names
    --detach)."""
    try:
        loc = parse(uri)
    except InvalidInput as exc:
        raise InvalidInput(f"{option}: {exc.message}", hint=exc.hint) from None
    if loc.scheme not in WRITABLE_SCHEMES:
        raise InvalidInput(
            f"{option} {uri}: a worker cannot write to {loc.scheme}:// (an import source "
            "only)",
            hint=f"give {option} a file://, s3://, gs://, az:// or memory:// prefix")
    if open_store:
        preflight(loc, option, detachable=detachable)
    return loc


def preflight(loc: Location, option: str, *, reading: bool = False,
              detachable: bool = False) -> None:
    """The one check a command makes of a store it is about to use in this process (`pgjobs
    export` and `pgjobs import` without --detach, `pgjobs worker` at start), before it
    submits or claims anything: the store is built as the worker builds it and its
    credentials are resolved from the chain the worker uses (no request to the store;
    credentials fetched on first use, such as an assumed role's, are left to the job).
    Only a definite answer refuses: a failure that may pass (a credential endpoint or the
    network down) is logged and the command goes on, its storage calls retried. An s3://
    or gs:// place without credentials submitted a job that then failed; an az:// one
    without an account was refused. Raises StorageError (28000 no credentials or account,
    22023 a setting the store refuses) naming ``option`` and the credential chain in its
    hint (``detachable``: and that --detach leaves the job to a worker). A local source
    being read (``reading``) must be a readable regular file (InvalidInput, exit 2).
    https:// and memory:// need nothing. A --detach command checks none of this: the
    worker that runs the job has its own credentials and filesystem."""
    where = f"{option} {loc.uri}"
    if loc.scheme == "file":
        if reading:
            _readable_file(loc.path, where)
        else:
            _writable_folder(loc.path, where)
        return
    if loc.scheme in ("memory", "https"):
        return
    try:
        if loc.scheme == "gs":
            gcs.client()
        else:
            store_for(loc)
        if loc.scheme == "s3":
            s3.check_credentials()
    except Exception as exc:  # noqa: BLE001 - classified below, one line each
        error = storage_error(exc, f"cannot {'read' if reading else 'write'} {loc.uri}")
        if error.retryable:
            # A credential endpoint or the store did not answer now (network,
            # timeout, 5xx): no refusal. The job retries storage for
            # --storage-retry, and a worker that exited here stayed down after
            # a blip of its container's credential endpoint.
            log.warning("%s: %s (going on: storage calls are retried)", where, error.message)
            return
        message = error.message.split(": ", 1)[1] if ": " in error.message else error.message
        hint = error.hint if error.sqlstate != "28000" or not detachable else (
            f"{error.hint}; this command runs the job itself (--detach leaves it to "
            "`pgjobs worker`, which needs them where it runs)")
        raise StorageError(f"{where}: {message}", retryable=False, hint=hint,
                           sqlstate=error.sqlstate) from None


def _writable_folder(path: str, where: str) -> None:
    """InvalidInput (exit 2) unless the folder ``path`` is one this process can
    write in, or create: its nearest existing ancestor must be a folder it may
    write (a prefix under a regular file, or in a read-only folder, failed the
    job it had submitted)."""
    hint = ("give --storage or --to a folder this user may write in (or create), as "
            "file:///absolute/path")
    probe = path.rstrip("/") or "/"
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise InvalidInput(f"{where}: {probe} is not a folder", hint=hint)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidInput(f"{where}: {probe} is not writable by this user", hint=hint)


def _readable_file(path: str, where: str) -> None:
    """InvalidInput (exit 2) unless ``path`` is a regular file this process may read
    (opened without blocking: a FIFO is refused, never waited on)."""
    hint = ("check the path: the file must exist, readable by the user the command runs "
            "as (with --detach a worker reads it, on its own machine)")
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{where} is a directory, not a file",
                               hint="name one file of it: an import reads one CSV or JSONL "
                                    "file (gzipped or not)")
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"{where} is not a regular file", hint=hint)
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise InvalidInput(f"{where}: {exc.strerror}", hint=hint) from None
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read it ({exc.strerror or exc})",
                           hint=hint) from None


def within(uri: str, prefix_uri: str) -> bool:
    """Whether ``uri`` is ``prefix_uri`` or lies below it on a path-segment boundary
    (``s3://b/exp`` holds ``s3://b/exp/x``, never ``s3://b/exports`` nor
    ``s3://b2/exp``). A URI with a ``.`` or ``..`` segment, an empty segment, a
    %-escape, a query, a backslash or a control character is never within
    anything: such a URI is refused rather than resolved. The worker checks its
    own ``--storage`` here; the allow-list is the database's
    (``pgjobs._storage_allowed``)."""
    if not isinstance(uri, str) or "://" not in uri or _REFUSED_CHARS.search(uri):
        return False
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if not rest.startswith("/"):
            return False  # relative: it would resolve against the worker's directory
        path = rest[1:]
    elif scheme == "memory":
        path = rest.lstrip("/")
    else:
        path = rest.partition("/")[2]
    path = path[:-1] if path.endswith("/") else path
    if path and any(s in ("", ".", "..") for s in path.split("/")):
        return False
    try:
        loc, prefix = parse(uri), parse(prefix_uri)
    except InvalidInput:
        return False
    if (loc.scheme, loc.base) != (prefix.scheme, prefix.base):
        return False
    path, root = loc.path.rstrip("/"), prefix.path.rstrip("/")
    return root == "" or path == root or path.startswith(root + "/")


def object_location(prefix_uri: str, key: str) -> Location:
    """The object ``key`` under the prefix ``prefix_uri``, which always names a folder
    (``s3://bucket/exports`` and ``s3://bucket/exports/`` are the same place)."""
    prefix = parse(prefix_uri)
    if prefix.scheme == "file":
        return Location("file", "file://", os.path.join(prefix.path, key))
    if prefix.path == "" or prefix.path.endswith("/"):
        return Location(prefix.scheme, prefix.base, prefix.path + key)
    return Location(prefix.scheme, prefix.base, f"{prefix.path}/{key}")


# --- stores --------------------------------------------------------------------

_stores: dict[tuple[str, bool], Any] = {}
_stores_lock = threading.Lock()
_memory: list[Any] = []  # memory://'s one store, made when first used
_NO_RETRIES: dict[str, Any] = {"max_retries": 0}


def store_for(loc: Location, *, retries: bool = True) -> Any:
    """The obstore store of ``loc`` (cached per bucket). ``file://`` has none.

    ``retries=False``: one whose requests obstore never retries (a request that
    failed is that failure, at once), for a caller that tells a refusal from a
    transient failure itself (:func:`create`), and always within a fenced
    call (:func:`fenced`); gs:// (Google's client) and memory:// have one
    store either way."""
    if loc.scheme == "file":
        raise ValueError("file:// locations are handled on the local filesystem")
    if loc.scheme == "https":
        # obstore's HTTP store follows redirects: https:// sources are read by
        # pgjobs.poller.https only, and nothing is written there.
        raise StorageError(f"{loc.uri}: an https:// URI is an import source only, read "
                           "through pgjobs.poller.https", retryable=False,
                           hint="export to file://, s3://, gs:// or az://", sqlstate="22023")
    if loc.scheme == "memory":
        with _stores_lock:
            if not _memory:
                _memory.append(obstore_stores.MemoryStore())
        return _memory[0]
    if loc.scheme == "gs":
        return gcs.Store(loc.base.split("://", 1)[1])
    retries = retries and not s3.sending_once()  # within storage.fenced: sent once
    with _stores_lock:
        store = _stores.get((loc.base, retries))
        if store is None:
            kwargs: dict[str, Any] = {} if retries else {"retry_config": _NO_RETRIES}
            if loc.scheme == "s3":
                # botocore's credential chain (profiles, SSO, web identity...), the
                # same as the multipart calls', not obstore's environment-only one.
                kwargs["credential_provider"] = s3.credential_provider()
                endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                    "AWS_ENDPOINT_URL")
                if endpoint:
                    kwargs["endpoint"] = endpoint
                    if endpoint.startswith("http://"):
                        kwargs["client_options"] = {"allow_http": True}
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                if region:
                    kwargs["region"] = region
            try:
                store = obstore_stores.from_url(loc.base, **kwargs)
            except Exception as exc:  # obstore raises its own types for bad config
                raise _config_error(loc, exc) from exc
            _stores[(loc.base, retries)] = store
        return store


def warm_up(uri: str) -> None:
    """Build what the first S3 call of ``uri`` would build (botocore loads its
    service model, about a second): a worker does it once at start, not while a
    freshly claimed job's lease runs. Nothing for other schemes; failures are left
    for the job to report."""
    if parse(uri).scheme == "s3" and not s3.metadata_unanswered():
        # (After the pre-flight's wait on an instance metadata endpoint that did not
        # answer, the client and chain are built by the first S3 call, not twice here.)
        with contextlib.suppress(Exception):
            s3.botocore_client()
            s3.session().get_credentials()


def warm_up_behind(*uris: str | None) -> threading.Thread | None:
    """:func:`warm_up` in a thread of its own, for a command that is about to
    run a job of S3 storage here (`pgjobs export`, `pgjobs import`): botocore's
    import and its client (0.4-1.5 s, more on a busy machine) are built while
    the job is submitted and claimed and its first statements run, instead of
    in line before the first part. The first S3 call waits for the client under
    :mod:`~pgjobs.poller.s3client`'s lock. None (no thread, nothing imported)
    when no URI is of S3: `pgjobs --help` and file:// work never load botocore."""
    wanted = [uri for uri in uris if uri and _scheme(uri) == "s3"]
    if not wanted:
        return None
    thread = threading.Thread(target=warm_up, args=(wanted[0],), name="pgjobs s3 warm-up",
                              daemon=True)
    thread.start()
    return thread


def _scheme(uri: str) -> str | None:
    try:
        return parse(uri).scheme
    except InvalidInput:
        return None  # refused where it is checked, with its message


def forget_stores() -> None:
    """Drop cached stores (their configuration was read from the environment)."""
    with _stores_lock:
        _stores.clear()
        _unconditional.clear()
    s3.forget_clients()
    gcs.forget_client()
    azblob.forget_service()
    https.forget()


def _one_line(exc: BaseException) -> str:
    # obstore errors carry a multi-line "Debug source:" dump: keep the message.
    text = _obstore_parts(exc)[0].strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:500]


_DEBUG_SOURCE = "\n\nDebug source:\n"
"""What obstore puts between an error's message and the ``{:#?}`` dump of the
Rust error it wraps."""
_ANSWERED = re.compile(r"^ *inner: Status \{\n *status: ([1-5][0-9][0-9]),$", re.MULTILINE)
"""The answer of a store in that dump (object_store's ``RetryError``): a field on
lines of its own. A string in the dump (the object's path, the store's reply) is
printed escaped, on one line, and a URL holds no newline: neither can forge it."""


def _obstore_parts(exc: BaseException) -> tuple[str, str]:
    """(message, dump) of an obstore error; (its text, "") of any other. The
    dump is after the last separator: a reply quoted raw in the message may hold
    one, never the escaped dump."""
    text = str(exc)
    message, separator, dump = text.rpartition(_DEBUG_SOURCE)
    return (message, dump) if separator else (text, "")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status a store answered the failed request with, read from the
    error's structure, never from its words (which name the object: job 400's
    key, a scope named 501): the ``status`` of this package's clients' errors
    (S3, https://, Azure, GCS); for obstore's, the status field of the Rust
    error it dumps. None when no answer came (a network failure) or none is
    known."""
    from obstore import exceptions as oe

    if isinstance(exc, (s3.S3Error, https.HttpsError, azblob.AzureError, gcs.GcsError)):
        return exc.status or None
    if not isinstance(exc, (oe.BaseError, FileNotFoundError)):
        return None
    statuses = set(_ANSWERED.findall(_obstore_parts(exc)[1]))
    return int(statuses.pop()) if len(statuses) == 1 else None


_METADATA = re.compile(r"://(?:169\.254\.169\.254|169\.254\.170\.2|\[fd00:ec2::254\])(?![\w.])")
"""The instance and container credential endpoints: a URL there in an error is
obstore looking for credentials where the environment had none."""


_NAMED = re.compile(r"\b[a-z][a-z0-9+.-]*://(.+)$", re.IGNORECASE | re.DOTALL)
"""The URI that ends ``what`` ("cannot write URI"), spaces and all."""


def _said(text: str, what: str) -> str:
    """``text`` without the locations it names: every URL, and the bucket and
    path of the URI in ``what`` wherever they stand as words. What is left is
    what the store said, which the classification reads: a prefix named
    ``credentials/`` or a key under ``403/`` says nothing about the failure."""
    text = URL.sub(" ", text)
    named = _NAMED.search(what)
    if named is None:
        return text
    bucket, _, path = named.group(1).partition("/")
    for name in sorted({path, f"{bucket}/{path}", bucket} - {"", f"{bucket}/"},
                       key=len, reverse=True):
        text = re.sub(r"(?<![^\s:/\"'(,])" + re.escape(name) + r"(?![^\s:/\"'),])", " ", text)
    return text


_CREDENTIALS_HINT = ("give the worker AWS credentials: the AWS_* variables, AWS_PROFILE with "
                     "~/.aws/credentials or ~/.aws/config (SSO too), web identity, or a "
                     "container or instance profile")
_GCS_HINT = ("give the worker Google credentials: GOOGLE_APPLICATION_CREDENTIALS (a key file), "
             "gcloud auth application-default login, workload identity or the metadata "
             "server, with access to the bucket")
_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                     errno.ENOENT, errno.EEXIST}
_PERMANENT = re.compile(
    r"NoSuchBucket|InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|"
    r"InvalidBucketName|AuthorizationHeaderMalformed|ContainerNotFound|"
    r"AuthenticationFailed|Missing bucket|credential", re.IGNORECASE)


CHANGED_WHILE_READ_HINT = ("write the object whole before it is read (a file elsewhere, renamed "
                           "into place once complete), then import it again: an import keeps "
                           "the rows of the batches it committed")


_AZURE_HINT = ("give the worker an Azure storage account: AZURE_STORAGE_ACCOUNT_NAME with "
               "AZURE_STORAGE_ACCOUNT_KEY or a SAS in AZURE_STORAGE_SAS_KEY "
               "(AZURE_STORAGE_ENDPOINT for another endpoint), with access to the container")
_CONFIG_HINTS = {
    "s3": "check AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) and AWS_REGION in the worker's "
          "environment, and the bucket's name",
    "gs": _GCS_HINT,
    "az": _AZURE_HINT,
}
_NETWORK_HINTS = {
    "s3": "the worker retries for --storage-retry; if it persists, check the network and "
          "AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)",
    "gs": "the worker retries for --storage-retry; if it persists, check the network and "
          "STORAGE_EMULATOR_HOST if set",
    "az": "the worker retries for --storage-retry; if it persists, check the network and "
          "AZURE_STORAGE_ENDPOINT if set",
}
_MISSING_HINT = ("check the {store} name in --storage or the export's destination (--to); "
                 "create it first: the worker never does")
_DENIED_HINT = ("grant the worker's credentials the right to {verb} {where} (for S3 "
                "s3:{action}), or choose another --storage or --to")


def _store_name(what: str) -> tuple[str, str]:
    """(scheme, "the bucket s3://b") of the URI ``what`` names."""
    match = re.search(r"\b([a-z0-9]+)://([^/\s]*)", what)
    if match is None:
        return "", "the storage"
    scheme, bucket = match.group(1), match.group(2)
    kind = {"s3": "bucket", "gs": "bucket", "az": "container"}.get(scheme)
    return scheme, f"the {kind} {scheme}://{bucket}" if kind else f"{scheme}://"


def _classified(what: str, text: str, *, retryable: bool, hint: str | None,
                sqlstate: str | None = None, exc: BaseException | None = None) -> StorageError:
    """The StorageError of ``what`` failing with ``text``: a SQLSTATE (28000 no
    usable credentials, 42501 refused, 58P01 no such bucket or object, 58030 a
    failure another attempt may not meet, 22023 a setting the store refuses) and
    a hint saying what to do, whichever store said it. Read from the status the
    store answered (:func:`http_status`) and the words it said (:func:`_said`),
    never from the object's name."""
    scheme, where = _store_name(what)
    reading = what.startswith("cannot read")
    status = None if exc is None else http_status(exc)
    said = _said(text, what)
    credentials = bool(re.search(
        r"credential|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken|"
        r"AuthenticationFailed|Unauthenticated|must be specified|Authorization", said,
        re.IGNORECASE))
    denied = status == 403 or (isinstance(exc, OSError) and exc.errno in (
        errno.EACCES, errno.EPERM, errno.EROFS)) or bool(re.search(
            r"AccessDenied|AuthorizationPermissionMismatch|Forbidden|PermissionDenied|"
            r"permission denied", said, re.IGNORECASE))
    missing = status == 404 or (isinstance(exc, OSError) and exc.errno == errno.ENOENT) or \
        bool(re.search(r"NoSuchBucket|ContainerNotFound|Missing bucket|bucket does not exist|"
                       r"not found|NotFound", said, re.IGNORECASE))
    if sqlstate is None:
        sqlstate = ("28000" if credentials and not denied else "42501" if denied else
                    "58P01" if missing else "58030" if retryable else "22023")
    if hint is None:
        if sqlstate == "28000":
            hint = {"s3": _CREDENTIALS_HINT, "gs": _GCS_HINT, "az": _AZURE_HINT}.get(
                scheme, "give the worker credentials for the store")
        elif sqlstate == "42501":
            hint = _DENIED_HINT.format(verb="read" if reading else "write", where=where,
                                       action="GetObject" if reading else "PutObject")
        elif sqlstate == "58P01":
            hint = (_MISSING_HINT.format(store=where.split(" ")[1] if " " in where else "store")
                    if not reading or scheme in ("s3", "gs", "az") else
                    "check the path: the object must exist")
        elif retryable:
            hint = _NETWORK_HINTS.get(scheme, "the worker retries for --storage-retry; if it "
                                              "persists, check the storage")
        else:
            hint = _CONFIG_HINTS.get(scheme, "check --storage and the export's destination")
    return StorageError(f"{what}: {text}", retryable=retryable, hint=hint, sqlstate=sqlstate)


def _config_error(loc: Location, exc: BaseException) -> StorageError:
    """A store that cannot even be opened (obstore's configuration errors: an
    az:// URI without an account, a bad endpoint): nothing another attempt fixes."""
    text = _one_line(exc)
    sqlstate = "28000" if loc.scheme == "az" and re.search(
        r"account|credential", _said(text, loc.base), re.IGNORECASE) else "22023"
    return StorageError(f"cannot open {loc.base}: {text}", retryable=False,
                        hint=_CONFIG_HINTS.get(loc.scheme, "check --storage"), sqlstate=sqlstate)


def storage_error(exc: BaseException, what: str) -> StorageError:
    """Classify an obstore/OS error: configuration mistakes are not retryable.
    ``what`` names the operation and the object ("cannot read URI", "cannot write
    URI", ...): the hint of a read never asks for a writable place."""
    from obstore import exceptions as oe

    reading = what.startswith("cannot read")
    text = _one_line(exc)
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, https.HttpsError):  # its TLS failures worded already
        return _classified(what, str(exc), retryable=exc.retryable, hint=exc.hint, exc=exc)
    # A store that answered with a status has shaken hands: no TLS failure,
    # whatever its reply or the object's path says.
    tls_problem = permanent_tls_error(exc) if http_status(exc) is None else None
    if tls_problem is not None:
        return _classified(what, tls_problem, retryable=False, hint=TLS_HINT, sqlstate="58030")
    if isinstance(exc, s3.S3Error):
        denied = exc.code == "AccessDenied" or (exc.status == 403 and not exc.credentials)
        return _classified(what, str(exc), retryable=exc.retryable,
                           hint=TLS_HINT if exc.tls else exc.hint if exc.hint else
                           CHANGED_WHILE_READ_HINT if exc.status == 412 else
                           None if denied else _CREDENTIALS_HINT if exc.credentials else None,
                           sqlstate="42501" if denied else "28000" if exc.credentials else
                           None, exc=exc)
    if isinstance(exc, azblob.AzureError):
        return _classified(what, str(exc), retryable=exc.retryable, hint=None if
                           exc.retryable or exc.code not in (None, "") else
                           "check the container name and the AZURE_* credentials", exc=exc)
    if isinstance(exc, gcs.GcsError):
        hint = _GCS_HINT if exc.credentials else None if exc.retryable else \
            f"check the bucket name and that the worker may {'read' if reading else 'write'} it"
        return _classified(what, str(exc), retryable=exc.retryable, hint=hint,
                           sqlstate="28000" if exc.credentials else None, exc=exc)
    if isinstance(exc.__cause__, s3.S3Error) and exc.__cause__.credentials:
        return _classified(what, str(exc.__cause__), retryable=False,
                           hint=_CREDENTIALS_HINT, sqlstate="28000")
    local = isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS
    permanent = local or isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError,
                                          oe.InvalidPathError, oe.UnknownConfigurationKeyError,
                                          oe.NotSupportedError)) or bool(
        _PERMANENT.search(_said(text, what)))
    hint = None
    if _METADATA.search(text):
        # obstore fell back to the instance metadata service: no credentials anywhere.
        return StorageError(f"{what}: no credentials found ({text[:200]})", retryable=False,
                            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run where "
                                 "instance or container credentials exist)", sqlstate="28000")
    if local and reading:
        # An import's source or an export's object read back: nothing to write.
        hint = ("check the path: the file must exist on the machine that runs the job, "
                "readable by the user it runs as")
    elif local:
        hint = "choose a writable directory with --to or --storage"
    return _classified(what, text, retryable=not permanent, hint=hint, exc=exc)


# --- uploads -------------------------------------------------------------------


def hash_object(location: Location, digests: list[Any] | None = None) -> tuple[int, str]:
    """(bytes, sha256 hex) of an existing object, streamed. With ``digests`` (the
    checkpointed ``[[bytes, sha256], ...]`` of the parts streamed), each part's
    range is checked too: :class:`Mismatch` when the object is not those bytes."""
    if digests is None:
        whole = hashlib.sha256()
        size = _read_object(location, whole.update)
        return size, whole.hexdigest()
    check = PartDigests(digests)
    _read_object(location, check.update)
    return check.finish(), check.hexdigest()


def check_object(location: Location, digests: list[Any]) -> int:
    """The size of an existing object that holds, part by part, the bytes whose
    ``digests`` were checkpointed as they were streamed (:class:`Mismatch`
    otherwise). Each byte is hashed once: an object equal to every streamed part
    is the streamed bytes, so its SHA-256 is the one computed while streaming
    (what :func:`hash_object` would hash a second time).

    ``file://`` and ``s3://`` objects are read back in contiguous runs of parts on
    threads of their own (:func:`_check_spans`, :func:`_check_sealed`); other
    stores in one stream.
    ``digests`` given as :class:`~pgjobs.poller.upload.Streamed` carry the
    writer's hash of the streamed bytes before each part, which lets runs of
    prefix digests after the first be checked on threads of their own; and,
    for ``file://`` and native S3, the writer's keyed tag of each part as written
    (:class:`~pgjobs.poller.upload.Seals`): each part's range is then checked
    against its tag, one pass about ten times cheaper than SHA-256, with the
    same errors."""
    hashes = digests.hashes if isinstance(digests, Streamed) else None
    seals = digests.seals if isinstance(digests, Streamed) else None
    expected = [(int(size), str(sha)) for size, sha in digests]
    total = sum(size for size, _ in expected)
    if location.scheme == "file" and (len(expected) > 1 or seals is not None):
        return _check_file(location.path, expected, total, hashes, seals)
    if location.scheme == "s3" and total > 0:
        with contextlib.suppress(_NoRanges):
            return _check_s3(location, expected, total, seals)
    check = PartDigests(digests, whole=False)
    _read_object(location, check.update)
    return check.finish()


_READ_BACK_BLOCK = 1024 * 1024
"""Each read-back thread's buffer: the threads add no more than a few MiB to an
export's peak memory (one stream read 8 MiB blocks)."""

S3_STREAM_MIN = 32 * 1024 * 1024
"""The fewest bytes one ranged GET of the read-back covers: a small object is one GET."""


def _spans(expected: list[tuple[int, str]], streams: int) -> list[range]:
    """The parts cut into at most ``streams`` runs of consecutive parts with about
    as many bytes each (a run is never empty; empty parts ride along)."""
    total = sum(size for size, _ in expected)
    runs: list[range] = []
    first, done = 0, 0
    for index, (size, _) in enumerate(expected):
        done += size
        if len(runs) + 1 < streams and done >= total * (len(runs) + 1) // streams \
                and index + 1 < len(expected):
            runs.append(range(first, index + 1))
            first = index + 1
    runs.append(range(first, len(expected)))
    return runs


class _NoRanges(Exception):
    """The store answered a ranged GET with the whole object: read it as one stream."""


_Reader = Callable[[int, int, memoryview], Iterator[memoryview]]
"""``read(start, end, buffer)``: the bytes [start, end) of the object in blocks
(views of ``buffer``), exactly those: it raises :class:`Mismatch` where the
object holds fewer."""


def _check_parts(expected: list[tuple[int, str]], runs: list[range], read: _Reader,
                 hashes: list[Any] | None = None, seals: Seals | None = None) -> None:
    """The runs checked against the parts' keyed tags where the writer kept them
    (:func:`_check_sealed`), else against their digests (:func:`_check_spans`)."""
    if seals is not None:
        _check_sealed(expected, seals, runs, read)
    else:
        _check_spans(expected, runs, read, hashes)


def _check_spans(expected: list[tuple[int, str]], runs: list[range], read: _Reader,
                 hashes: list[Any] | None = None) -> None:
    """Check each run of parts on a thread of its own (reads and hashlib release
    the GIL), every part against its digest (:func:`_check_runs`).

    Prefix digests cover the object from its first byte: a run starting
    further on needs ``hashes``, the hash of the streamed bytes before each
    part (:attr:`Upload.hashes`, the writer's own, never read from storage);
    without them the parts are checked in one run."""
    prefixed = any(is_prefix(sha) for _, sha in expected)
    if prefixed and (hashes is None or len(hashes) != len(expected)):
        # A prefix digest covers the object from its first byte: without the
        # hash of what precedes each part, one run from the first byte.
        return _check_spans_prefixed(expected, read)
    # The streamed bytes' hash up to each run (prefix digests): the run's
    # bytes must carry it on to each of its parts' prefix digests.
    _check_runs(expected, runs, read, lambda parts: _Digests(
        expected, hashes[parts[0]].copy() if prefixed and hashes is not None else None))


def _check_sealed(expected: list[tuple[int, str]], seals: Seals, runs: list[range],
                  read: _Reader) -> None:
    """:func:`_check_spans` against the parts' keyed tags (``seals``,
    :class:`~pgjobs.poller.upload.Seals`: the writer's own, never read from
    storage) instead of their digests: each run of parts on a thread of its
    own, each part checked alone (a tag needs nothing of the bytes before its
    part); the same walk (:func:`_check_runs`), the same errors."""
    _check_runs(expected, runs, read, lambda parts: _Sealed(seals, parts[0]))


def _check_runs(expected: list[tuple[int, str]], runs: list[range], read: _Reader,
                start: Callable[[range], _PartCheck]) -> None:
    """The read-back's one walk: each run of parts on a thread of its own, its
    bytes read (``read``) and fed part by part to the run's own check
    (``start(run)``), every part checked as its last byte comes in. The
    earliest run's error is raised once every thread has stopped
    (:func:`_each_on_a_thread`)."""
    starts = _starts(expected)

    def check(parts: range, failed: threading.Event) -> None:
        buffer = memoryview(bytearray(_READ_BACK_BLOCK))
        part = start(parts)
        index, left = parts[0], expected[parts[0]][0]

        def close() -> None:  # every part of the run whose bytes are all in
            nonlocal index, left
            while left == 0 and index <= parts[-1]:
                if not part.matches(index):
                    raise Mismatch(f"part {index + 1} differs from what was streamed")
                index += 1
                left = expected[index][0] if index <= parts[-1] else 0

        close()
        end = starts[parts[-1]] + expected[parts[-1]][0]
        for block in read(starts[parts[0]], end, buffer):
            while block:
                if failed.is_set():
                    return
                if index > parts[-1]:
                    raise Mismatch("more bytes than were streamed")
                take = min(left, len(block))
                part.update(index, block[:take])
                block, left = block[take:], left - take
                close()
        if index <= parts[-1]:
            raise Mismatch("fewer bytes than were streamed")

    _each_on_a_thread(check, runs)


class _PartCheck(Protocol):
    """One run's check of its parts, fed their bytes in order (on the run's thread)."""

    def update(self, index: int, data: memoryview) -> None:
        """More bytes of part ``index``."""

    def matches(self, index: int) -> bool:
        """Whether part ``index``, all its bytes fed, is what was streamed; the
        next part starts."""


class _Digests:
    """A run's parts against their digests: each part's SHA-256, or (with
    ``running``, the streamed bytes' hash before the run) its prefix digest."""

    def __init__(self, expected: list[tuple[int, str]], running: Any) -> None:
        self.expected, self.running, self.digest = expected, running, hashlib.sha256()

    def update(self, index: int, data: memoryview) -> None:
        if self.running is not None:
            self.running.update(data)
        if self.running is None or not is_prefix(self.expected[index][1]):
            self.digest.update(data)

    def matches(self, index: int) -> bool:
        want = self.expected[index][1]
        got = prefix_digest(self.running) if is_prefix(want) else self.digest.hexdigest()
        self.digest = hashlib.sha256()
        return got == want


class _Sealed:
    """A run's parts against their keyed tags (:class:`Seals`)."""

    def __init__(self, seals: Seals, first: int) -> None:
        self.seals, self.seal = seals, seals.part(first)

    def update(self, index: int, data: memoryview) -> None:
        self.seal.update(data)

    def matches(self, index: int) -> bool:
        matched = self.seals.matches(index, self.seal)
        self.seal = self.seals.part(index + 1)
        return matched


def _starts(expected: list[tuple[int, str]]) -> list[int]:
    """Where each part starts in the object."""
    starts, at = [], 0
    for size, _ in expected:
        starts.append(at)
        at += size
    return starts


def _each_on_a_thread(check: Callable[[range, threading.Event], None],
                      runs: list[range]) -> None:
    """``check(run, failed)`` of every run, the first on this thread and each
    other on a thread of its own; a run's ``failed`` is set once an earlier run
    has raised (it stops at its next block), while the runs before the one
    that raised go on. The error raised, once every thread has stopped, is
    the earliest run's: the first part that differs, whichever thread came
    upon its error first (an object wrong from its first byte said "part 3
    differs" or "part 1 differs" by the threads' timing)."""
    errors: dict[int, BaseException] = {}
    stops = [threading.Event() for _ in runs]

    def guarded(number: int) -> None:
        try:
            check(runs[number], stops[number])
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            errors[number] = exc
            for later in stops[number + 1:]:
                later.set()

    threads = [threading.Thread(target=guarded, args=(number,), name="pgjobs-read-back",
                                daemon=True) for number in range(1, len(runs))]
    for thread in threads:
        thread.start()
    guarded(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[min(errors)]


def _check_spans_prefixed(expected: list[tuple[int, str]], read: _Reader) -> None:
    """:func:`_check_spans` of digests among which some are prefix digests: the
    object read in one stream from its first byte, through :class:`PartDigests`
    (each byte hashed once when every digest is a prefix digest)."""
    check = PartDigests([list(d) for d in expected], whole=False)
    for block in read(0, sum(size for size, _ in expected),
                      memoryview(bytearray(_READ_BACK_BLOCK))):
        check.update(block)
    check.finish()


def _check_file(path: str, expected: list[tuple[int, str]], total: int,
                hashes: list[Any] | None = None, seals: Seals | None = None) -> int:
    """:func:`check_object` of a local file, read back in two halves at once,
    checked against the parts' digests (:func:`_check_spans`) or, with
    ``seals``, their keyed tags (:func:`_check_sealed`), and the file holds
    exactly their bytes, before and after. The same check as one stream, done
    on two cores where there are two: a read-back is the tail of an export,
    with nothing else left to overlap it."""
    try:
        # The file that was written, not one a link below the root leads to.
        fd = open_file(path, os.O_RDONLY, f"cannot read {path}")
    except FileNotFoundError:
        raise CannotResume(f"{path} is gone") from None

    def same_size() -> None:
        size = os.fstat(fd).st_size
        if size > total:
            raise Mismatch("more bytes than were streamed")
        if size < total:
            raise Mismatch(f"fewer bytes than were streamed ({size})")

    def read(start: int, end: int, buffer: memoryview) -> Iterator[memoryview]:
        while start < end:
            got = os.preadv(fd, [buffer[:min(end - start, len(buffer))]], start)
            if got <= 0:
                raise Mismatch("fewer bytes than were streamed")
            start += got
            yield buffer[:got]

    try:
        same_size()
        _check_parts(expected, _spans(expected, 2), read, hashes, seals)
        same_size()
    except OSError as exc:
        raise storage_error(exc, f"cannot read {path}") from exc
    finally:
        os.close(fd)
    return total


_READ_AHEAD = 2
"""Blocks a read-back stream receives ahead of the one being hashed."""


def _read_ahead(fill: Callable[[memoryview], int], length: int,
                buffer: memoryview) -> Iterator[memoryview]:
    """``length`` bytes of a reply, in blocks: ``fill(view)`` reads the next
    bytes into ``view`` (how many; 0 at the end). A thread receives the next
    blocks (at most :data:`_READ_AHEAD`, in buffers as large as ``buffer``) while
    the caller hashes this one: on one stream the socket and SHA-256 (both
    without the GIL) overlap instead of taking turns. A block is the caller's
    until it asks for the next."""
    free: queue.Queue[memoryview] = queue.Queue()
    free.put(buffer)
    for _ in range(_READ_AHEAD):
        free.put(memoryview(bytearray(len(buffer))))
    filled: queue.Queue[tuple[memoryview, int] | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def receive() -> None:
        left = length
        try:
            while left > 0:
                block = free.get()
                if stop.is_set():
                    return
                got = fill(block[:min(left, len(block))])
                if got <= 0:
                    raise s3.S3Error(0, "", f"the reply ended {left} bytes early")
                left -= got
                filled.put((block, got))
            filled.put(None)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            filled.put(exc)

    receiver = threading.Thread(target=receive, name="pgjobs-read-ahead", daemon=True)
    receiver.start()
    try:
        while (item := filled.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            block, got = item
            yield block[:got]
            free.put(block)
    finally:
        stop.set()
        free.put(buffer[:0])  # wakes a receiver waiting for a buffer
        receiver.join()  # it ends after the block it is reading, if any


def _check_s3(location: Location, expected: list[tuple[int, str]], total: int,
              seals: Seals | None = None) -> int:
    """:func:`check_object` of an S3 object: runs of consecutive parts of at
    least :data:`S3_STREAM_MIN` bytes, at most :func:`s3client.read_streams
    <pgjobs.poller.s3client.read_streams>` of them,
    each read by one ranged GET on a thread of its own and checked part by part
    (:func:`_check_spans`; with ``seals``, against the parts' keyed tags:
    :func:`_check_sealed`). Each reply states the object's size (its
    ``Content-Range``): every one must be the bytes checkpointed, so a missing or
    an extra tail fails as surely as a changed byte. Each stream receives ahead
    of its hashing (:func:`_read_ahead`). Memory: three blocks a stream.
    :class:`_NoRanges` when the store ignores ranges."""
    client = s3.Client(location.base.split("://", 1)[1])
    streams = max(1, min(s3.read_streams(), total // S3_STREAM_MIN))

    def read(start: int, end: int, buffer: memoryview) -> Iterator[memoryview]:
        stated, body = client.open_range(location.path, start, end)
        try:
            if stated is None:
                raise _NoRanges()
            first, last, size = stated
            if size > total:
                raise Mismatch("more bytes than were streamed")
            if size < total or (first, last + 1) != (start, end):
                raise Mismatch(f"fewer bytes than were streamed ({size})")
            yield from _read_ahead(lambda view: client.read_into(body, view), end - start,
                                   buffer)
        finally:
            body.close()

    try:
        _check_parts(expected, _spans(expected, streams), read, seals=seals)
    except s3.S3Error as exc:
        if exc.code in ("NoSuchKey", "404"):
            raise CannotResume(f"{location.uri} is gone") from None
        if exc.code == "InvalidRange":  # the object ends before a run starts
            raise Mismatch("fewer bytes than were streamed") from None
        raise storage_error(exc, f"cannot read {location.uri}") from exc
    return total


def _read_object(location: Location, update: Callable[[Any], Any]) -> int:
    """Stream an existing object's bytes to ``update`` in blocks; its size.
    CannotResume when it is gone; a Mismatch raised by ``update`` passes."""
    size = 0
    if location.scheme == "file":
        try:
            # The file written, not one a link below the root leads to.
            with open(open_file(location.path, os.O_RDONLY,
                                f"cannot read {location.uri}"), "rb") as src:
                while block := src.read(COMPOSE_CHUNK):
                    update(block)
                    size += len(block)
        except FileNotFoundError:
            raise CannotResume(f"{location.path} is gone") from None
        return size
    try:
        result = obstore.get(store_for(location), location.path)
        for block in result.stream(min_chunk_size=COMPOSE_CHUNK):
            update(block)
            size += len(block)
    except not_found():
        raise CannotResume(f"{location.uri} is gone") from None
    except CannotResume:
        raise
    except Exception as exc:
        raise storage_error(exc, f"cannot read {location.uri}") from exc
    return size


def pending_aborts(wait: float = 0.0) -> int:
    """How many queued aborts of S3 multipart uploads have not succeeded yet (after
    waiting up to ``wait`` seconds for them all to); see
    :func:`pgjobs.poller.upload_s3.abort_later`."""
    from pgjobs.poller import upload_s3  # it imports this module

    return upload_s3.pending_aborts(wait)


def staging_path(prefix_uri: str, job_id: int) -> str:
    """Where job ``job_id`` stages its parts in an object store: a hidden folder at the
    top of the destination prefix, so that the stale-upload sweep lists one folder."""
    return object_location(prefix_uri, f"{STAGING}/{job_id}/").path


def resume_upload(location: Location, staging: str, token: str,
                  state: dict[str, Any] | None, *, part_size: int = 8 << 20,
                  digests: list[Any] | None = None,
                  record: Callable[[dict[str, Any]], None] | None = None,
                  fence: Callable[[], None] | None = None,
                  prefix_digests: bool = False) -> Upload:
    """An upload of ``location`` owned by ``token`` (unique per attempt), continuing
    from ``state`` (a previous :meth:`Upload.state`) when given. Raises CannotResume
    when that state can no longer be continued.

    ``file://`` writes a temporary file; ``s3://`` a native multipart upload when
    parts are at least 5 MiB; ``gs://`` hidden part objects under ``staging``
    joined by server-side compose; ``az://`` staged blocks committed by a block
    list (with an account key or SAS); other ``az://`` (and S3 with smaller parts) stages
    parts under ``staging`` (:func:`staging_path`) and streams them into the
    object at the end.

    ``digests``: the checkpointed ``[[bytes, sha256], ...]`` of the parts already
    written (the exporter appends one per part it writes through this upload).
    What a resume inherits is checked against them: a temporary file at once
    (:class:`Mismatch`), staged parts as ``finish`` composes them (the put
    aborts), a native S3 upload when it is read back after completing.

    ``record``: called with the state of a native S3 upload about to be opened
    (``{"opening": t}``) before its CreateMultipartUpload is sent; it must
    checkpoint it (:class:`upload_s3.NativeS3Upload`), so no upload is ever
    opened that no record leads to. ``fence``: called before the upload aborts
    the key's unrecorded uploads within the attempt (a create sent again, its
    cleanup, a resume of a state that recorded ``opening``), before each
    abort and once after the last (:func:`fenced`); it must renew the
    attempt's lease or raise: a stale attempt must not abort the next
    owner's upload. ``prefix_digests``: ``file://`` parts return prefix
    digests (:data:`~pgjobs.poller.upload.PREFIX`), each part hashed once for
    its digest and the object's SHA-256; other kinds return their parts' own
    digests either way."""
    from pgjobs.poller import upload_file, upload_obstore, upload_s3  # they import this module

    if location.scheme == "file":
        return upload_file.LocalUpload(location, token, state, digests, fence,
                                       prefix_digests=prefix_digests)
    if location.scheme == "gs":
        return gcs.ComposeUpload(location, staging, token, state, digests)
    if location.scheme == "az" and (state.get("blocks") if state else azblob.service()):
        if azblob.service() is None:
            raise CannotResume("staged blocks need an account key or SAS to continue")
        return azblob.BlockUpload(location, token, state, digests)
    if state and (state.get("upload_id")
                  or (state.get("opening") is not None and not state.get("staging"))):
        # Recorded, or only its opening recorded (its create never was).
        return upload_s3.NativeS3Upload(location, state, digests, record, fence)
    if not state and location.scheme == "s3" and part_size >= s3.MIN_PART:
        return upload_s3.NativeS3Upload(location, None, digests, record, fence)
    return upload_obstore.StagedUpload(location, staging, token, state, digests=digests,
                                       fence=fence)


def fenced(fence: Callable[[], None] | None, call: Callable[[], T], *,
           best_effort: bool = False) -> T | None:
    """A destructive storage action taken inside an attempt (a delete, an
    abort, an overwrite of the object): only while the attempt still holds
    the job. ``fence`` renews the lease or raises (the exporter's LeaseLost)
    before the call, and again after it: a call that hung longer than the
    lease (the job claimed again meanwhile) ends the attempt there, so a
    stale worker takes no further action for a lease that is gone. Both
    fences raise whatever ``best_effort`` says: with it, only the call's own
    storage failures (StorageError, OSError, S3Error) are logged and
    swallowed (None returned), never a refused fence. ``fence`` None: no
    attempt acts (a canceled job's cleanup, the housekeeping queue): the
    call alone."""
    if fence is not None:
        fence()
    try:
        # Every client the call reaches sends each request once (no resend
        # after the fence), whether or not the call asked for it.
        with s3.sent_once() if fence is not None else contextlib.nullcontext():
            result: T | None = call()
    except (StorageError, OSError, s3.S3Error) as exc:
        if not best_effort:
            raise
        log.warning("storage: %s (left for the job's cleanup)", _one_line(exc))
        result = None
    if fence is not None:
        fence()
    return result


def discard_upload(location: Location, state: dict[str, Any] | None,
                   fence: Callable[[], None] | None = None) -> None:
    """Remove what a checkpointed upload left (temporary file, staged parts, an open
    multipart upload). ``fence``: an attempt discards its own upload, each
    removal only while it still holds the job (:func:`fenced`): the next
    owner resumes the same upload (the checkpoint names it), and a stale
    attempt must not take it from under that owner."""
    if not state:
        return
    if location.scheme == "file":
        tmp = state.get("tmp")
        if tmp:
            # By the walk below the root: no link followed to a file elsewhere.
            fenced(fence, lambda: unlink_file(str(tmp), f"cannot delete {tmp}"),
                   best_effort=True)
        return
    if state.get("opening") is not None and location.scheme == "s3":
        # Uploads opened at the key and never recorded (best effort: the
        # queued removal and the stale sweep come after).
        fenced(fence, lambda: _abort_unrecorded(location, state, fence), best_effort=True)
    if state.get("upload_id"):
        from pgjobs.poller import upload_s3  # it imports this module

        fenced(fence, lambda: upload_s3.abort_later(location, str(state["upload_id"])))
        return
    staging = state.get("staging")
    if staging:
        fenced(fence, lambda: delete_prefix(location, staging))


def remove_leftover(uri: str, upload: dict[str, Any], job_id: int) -> None:
    """Remove what a checkpointed upload of export ``job_id`` to ``uri`` left
    (``upload``: its :meth:`Upload.state`, or ``{"join": state, "prefix": ...}``
    for the join of a parallel export), as :func:`discard_upload` does, for the
    storage deletion queue (pgjobs._queue_export_leftovers): an export that ended
    without its worker. Never the object at ``uri``. Gone already is done; a
    failure raises :class:`StorageError` (the queue retries it). Only what an
    upload of that job can name is removed: a temporary file of ``uri`` beside
    it, an S3 multipart upload of ``uri``'s key, the job's staging folder;
    anything else is refused (22023)."""
    loc = parse(uri)
    unrecorded = upload.get("unrecorded")
    if isinstance(unrecorded, dict):
        # Only the uploads opened at the key and never recorded
        # (pgjobs._queue_export_unrecorded): the recorded one is kept.
        if unrecorded.get("opening") is not None:
            _abort_unrecorded(loc, unrecorded)
        return
    join = upload.get("join")
    if isinstance(join, dict):
        kind = join.get("kind")
        if kind == "file":
            directory, name = os.path.split(loc.path)
            _remove_temporary(loc, os.path.join(directory, f".{name}.pgjobs-join.tmp"))
        elif kind == "s3":
            if join.get("opening") is not None:
                _abort_unrecorded(loc, join)
            if join.get("upload_id"):
                _abort_upload(loc, str(join["upload_id"]))
        elif kind == "gs" and upload.get("prefix"):
            _remove_staged(loc, staging_path(str(upload["prefix"]), job_id) + "join/", job_id)
        elif kind == "restream" and isinstance(join.get("upload"), dict) \
                and join["upload"].get("staging"):
            # The parts a join streamed into a new upload staged (poller/join.py).
            _remove_staged(loc, str(join["upload"]["staging"]), job_id)
        elif kind == "restream" and isinstance(join.get("upload"), dict) \
                and join["upload"].get("opening") is not None:
            # A native S3 upload it opened (never recorded past its opening).
            _abort_unrecorded(loc, join["upload"])
        # az: uncommitted blocks are discarded by Azure after 7 days.
        return
    if loc.scheme == "file":
        if upload.get("tmp"):
            _remove_temporary(loc, str(upload["tmp"]))
        return
    if upload.get("opening") is not None:
        # What its attempts opened at the key and never recorded (a create
        # answered, the worker killed before the checkpoint named it).
        _abort_unrecorded(loc, upload)
    if upload.get("upload_id"):
        _abort_upload(loc, str(upload["upload_id"]))
    elif upload.get("staging"):
        _remove_staged(loc, str(upload["staging"]), job_id)


def _abort_unrecorded(loc: Location, state: dict[str, Any],
                      fence: Callable[[], None] | None = None) -> None:
    """Abort the multipart uploads of ``loc``'s key that ``state`` (one that
    recorded ``opening``) does not name (:func:`upload_s3.abort_unrecorded`,
    each abort fenced by ``fence``)."""
    from pgjobs.poller import upload_s3  # it imports this module

    if loc.scheme != "s3":
        raise _refused_leftover(loc, "multipart uploads")
    keep = {str(state["upload_id"])} if state.get("upload_id") else set()
    try:
        upload_s3.abort_unrecorded(s3.Client(loc.base.split("://", 1)[1]), loc.path, keep,
                                   fence=fence)
    except s3.S3Error as exc:
        raise storage_error(exc, f"cannot abort the unrecorded uploads of {loc.uri}") from exc


def _refused_leftover(loc: Location, what: str) -> StorageError:
    return StorageError(f"refusing to remove {what}: not an upload leftover of {loc.uri}",
                        retryable=False, sqlstate="22023",
                        hint="the job's checkpoint names it; remove it by hand if it is one, "
                             "then delete the row of pgjobs.storage_deletions")


def _remove_temporary(loc: Location, tmp: str) -> None:
    """Unlink an upload's temporary file of ``loc`` (next to it, a name of
    ``_TMP_RE`` for its object), below the trusted root."""
    directory, name = os.path.split(loc.path)
    match = _TMP_RE.match(os.path.basename(tmp))
    if os.path.dirname(tmp) != directory or match is None or match.group("name") != name:
        raise _refused_leftover(loc, tmp)
    try:
        unlink_file(tmp, f"cannot delete {tmp}")
    except FileNotFoundError:
        return
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, f"cannot delete {tmp}") from exc


def remove_temporaries(uri: str) -> int:
    """Remove the temporary files of ``file://`` object ``uri`` (``.{name}.pgjobs-
    {token}.tmp`` beside it, :func:`create`'s and an upload's): what a writer of
    that very name killed mid-write left, under a token no record names. For a
    name only its job writes (a Parquet file of the job's folder: a stale
    writer of it is fenced off), once no live writer of it is left. Below the
    trusted root, no link followed. Nothing elsewhere; how many went."""
    loc = parse(uri)
    if loc.scheme != "file":
        return 0
    directory, name = os.path.split(loc.path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise storage_error(exc, f"cannot list {directory}") from exc
    removed = 0
    for found in names:
        match = _TMP_RE.match(found)
        if match is not None and match.group("name") == name:
            _remove_temporary(loc, os.path.join(directory, found))
            removed += 1
    return removed


def _abort_upload(loc: Location, upload_id: str) -> None:
    """Abort the S3 multipart upload ``upload_id`` of ``loc``'s key (one gone
    already, completed or aborted, is fine: a completed one's object stays)."""
    if loc.scheme != "s3":
        raise _refused_leftover(loc, f"multipart upload {upload_id}")
    try:
        s3.Client(loc.base.split("://", 1)[1]).abort(loc.path, upload_id)
    except s3.S3Error as exc:
        raise storage_error(exc, f"cannot abort upload {upload_id} of {loc.uri}") from exc


def _remove_staged(loc: Location, staging: str, job_id: int) -> None:
    """Delete every object under ``staging``, a folder of job ``job_id`` in the
    hidden staging folder (:func:`staging_path`) of ``loc``'s store."""
    if not staging.endswith("/") or f"/{STAGING}/{job_id}/" not in f"/{staging}":
        raise _refused_leftover(loc, staging)
    store = store_for(loc)
    try:
        for batch in obstore.list(store, staging, chunk_size=1000):
            paths = [meta["path"] for meta in batch]
            if paths:
                obstore.delete(store, paths)
    except Exception as exc:
        raise storage_error(exc, f"cannot delete {loc.base}/{staging}") from exc


def delete_prefix(location: Location, prefix: str) -> int:
    """Delete every object under ``prefix`` in ``location``'s store (best effort)."""
    store = store_for(location)
    deleted = 0
    try:
        for batch in obstore.list(store, prefix, chunk_size=1000):
            paths = [meta["path"] for meta in batch]
            if paths:
                obstore.delete(store, paths)
                deleted += len(paths)
    except Exception:  # noqa: BLE001 - best effort; the sweeper retries later
        pass
    return deleted


# --- single objects ------------------------------------------------------------


def delete(uri: str, *, retries: bool = True) -> bool:
    """Delete one object. Returns False when it did not exist. ``retries=False``:
    the store's client never sends the delete again by itself (an attempt's
    delete, :func:`fenced`: a retry is the caller's, after a new fence, never
    a request resent by the client after the lease may have run out)."""
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            unlink_file(loc.path, f"cannot delete {uri}")  # no link below the root followed
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise storage_error(exc, f"cannot delete {uri}") from exc
        return True
    store = store_for(loc, retries=retries)
    try:
        obstore.head(store, loc.path)
    except not_found():
        return False
    except Exception as exc:
        raise storage_error(exc, f"cannot delete {uri}") from exc
    try:
        obstore.delete(store, loc.path)
    except Exception as exc:
        raise storage_error(exc, f"cannot delete {uri}") from exc
    return True


def holds(uri: str, sha256: str) -> bool:
    """Whether the object at ``uri`` is there and holds exactly the bytes whose
    SHA-256 (hex) is ``sha256``: how a job recognises a small object it created
    itself (an import's rejects object) when the worker that created it was
    killed before recording so, from another's found at the same name."""
    loc = parse(uri)
    digest = hashlib.sha256()
    try:
        if loc.scheme == "file":
            with open(loc.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(obstore.get(store_for(loc), loc.path).bytes())
    except FileNotFoundError:
        return False
    except not_found():
        return False
    except Exception as exc:
        raise storage_error(exc, f"cannot read {uri}") from exc
    return digest.hexdigest() == sha256


def delete_holding(uri: str, sha256: str, *, retries: bool = True) -> bool:
    """Delete the object at ``uri`` only if it holds exactly the bytes whose
    SHA-256 is ``sha256`` (:func:`holds`): one a job may have created but never
    recorded as created, which is the job's only then. False when missing or
    holding anything else (another's: left alone)."""
    return holds(uri, sha256) and delete(uri, retries=retries)


def delete_streamed(uri: str, digests: list[Any]) -> bool:
    """Delete the object at ``uri`` only if it reads back, part by part, as the
    parts ``digests`` (``[[bytes, sha256], ...]``) an export streamed: its own
    object, made visible by a worker killed before recording so. False when
    missing or holding anything else (another's: left alone)."""
    loc = parse(uri)
    try:
        if size(uri) != sum(int(d[0]) for d in digests):
            return False
        check_object(loc, digests)
    except (CannotResume, FileNotFoundError):
        return False
    except StorageError:
        if not exists(uri):
            return False
        raise
    return delete(uri)


def read(uri: str) -> bytes:
    """The whole object (tests and small files only)."""
    loc = parse(uri)
    if loc.scheme == "file":
        return Path(loc.path).read_bytes()
    if loc.scheme == "https":
        return b"".join(open_range(uri))  # ranged GETs that follow no redirect
    return bytes(obstore.get(store_for(loc), loc.path).bytes())


READ_BLOCK = 8 * 1024 * 1024
"""Bytes per ranged read of an object store (one request each)."""


def size(uri: str) -> int:
    """The size in bytes of one object (or local file)."""
    loc = parse(uri)
    try:
        if loc.scheme == "file":
            fd = open_file(loc.path, os.O_RDONLY | os.O_NONBLOCK, f"cannot read {uri}")
            try:
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        if loc.scheme == "https":
            return https.size(uri)  # a HEAD that follows no redirect
        if loc.scheme == "s3":
            return s3.Client(loc.base.split("://", 1)[1]).size(loc.path)
        return int(obstore.head(store_for(loc), loc.path)["size"])
    except Exception as exc:
        raise storage_error(exc, f"cannot read {uri}") from exc


def version(uri: str) -> tuple[int, dict[str, Any]]:
    """The size of one object (or local file) and its version, which another
    object put in its place, even of the same size, does not share: a local
    file's device, inode, size, mtime and ctime (ns: the status-change time,
    which no caller can set back as ``utime`` sets the mtime); an object store's ETag and
    Last-Modified (gs://: its generation too), those it states. An import
    checkpoints it, so that a resumed attempt does not read on in another
    object from the offset it reached in the first."""
    loc = parse(uri)
    try:
        if loc.scheme == "file":
            fd = open_file(loc.path, os.O_RDONLY | os.O_NONBLOCK, f"cannot read {uri}")
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            return st.st_size, {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                                "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
        if loc.scheme == "https":
            return https.head(uri)  # a HEAD that follows no redirect
        if loc.scheme == "s3":
            return s3.Client(loc.base.split("://", 1)[1]).head(loc.path)
        meta = obstore.head(store_for(loc), loc.path)
    except Exception as exc:
        raise storage_error(exc, f"cannot read {uri}") from exc
    modified = meta.get("last_modified")
    found = {"etag": meta.get("e_tag"), "generation": meta.get("version"),
             "modified": modified.isoformat() if modified is not None else None}
    return int(meta["size"]), {k: str(v) for k, v in found.items() if v}


LINK_HINT = ("a symbolic link at or above the allowed prefix (or the worker's --storage "
             "folder) is followed, one below it is not: the allow-list judges the URI's text, "
             "so no link the URI's own folders go through may lead the worker elsewhere; "
             "replace the link by a folder, or name the resolved path")

_roots: dict[str, int] = {}  # trusted root: how many holders trust it now
_roots_lock = threading.Lock()


def trust_root(uri: str) -> str | None:
    """Trust the local folder of ``uri`` as a root until :func:`release_root`:
    symbolic links at or above it are followed (an administrator wrote the
    allow-list prefix, the operator chose the worker's ``--storage``), any link
    below it is refused. The worker trusts its ``--storage`` for its lifetime;
    an attempt trusts the allow-list prefix that admitted its ``file://`` URI
    (``pgjobs._storage_root_for``, asked once per attempt) while it runs, so a
    prefix disallowed since is no root of the next. Returns the key to release
    (None, and nothing trusted, when ``uri`` is not a ``file://`` URI)."""
    try:
        loc = parse(uri)
    except InvalidInput:
        return None
    if loc.scheme != "file":
        return None
    key = os.path.normpath(loc.path)
    with _roots_lock:
        _roots[key] = _roots.get(key, 0) + 1
    return key


def release_root(key: str | None) -> None:
    """Undo one :func:`trust_root` (its returned key; None: nothing)."""
    if key is None:
        return
    with _roots_lock:
        left = _roots.get(key, 0) - 1
        if left > 0:
            _roots[key] = left
        else:
            _roots.pop(key, None)


def root_of(path: str) -> str:
    """The longest trusted root ``path`` lies at or below (``/`` when none: then
    no component of the path may be a link)."""
    path = os.path.normpath(path)
    with _roots_lock:
        roots = [r for r in _roots if path == r or path.startswith(r.rstrip("/") + "/")]
    return max(roots, key=len, default="/")


def _link_refused(what: str) -> StorageError:
    return StorageError(f"{what}: its path goes through a symbolic link", retryable=False,
                        hint=LINK_HINT)


def _refuse_if_link(name: str, dir_fd: int, what: str, exc: OSError) -> None:
    """An ``openat`` with O_NOFOLLOW failed: a link there is refused (ELOOP on
    Linux); any other failure is the caller's."""
    if exc.errno == errno.ELOOP:
        raise _link_refused(what) from exc
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise _link_refused(what) from exc


def open_folder(path: str, what: str, *, create: bool = False) -> int:
    """A descriptor of the local folder ``path``, reached without following a
    symbolic link below its trusted root (:func:`root_of`; the root itself is
    resolved once, links at or above it are followed). Each component below the
    root is opened relative to the previous one with O_NOFOLLOW (``openat``), so
    a link swapped in between a check and a use is never followed; ``create``
    makes missing folders the same way (``mkdirat``). FileNotFoundError when a
    folder is missing and ``create`` is false; StorageError (not retryable) at a
    link. The caller closes the descriptor."""
    path = os.path.normpath(path)
    root = root_of(path)
    if create and root != "/":
        os.makedirs(root, exist_ok=True)  # at the root: links followed (trusted)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rel = os.path.relpath(path, root)
        for name in ([] if rel == "." else rel.split("/")):
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                    dir_fd=fd)
                except OSError as exc:
                    _refuse_if_link(name, fd, what, exc)
                    raise
            except OSError as exc:
                _refuse_if_link(name, fd, what, exc)
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _split(path: str) -> tuple[str, str]:
    directory, name = os.path.split(os.path.normpath(path))
    if not name:
        raise StorageError(f"{path} names no file", retryable=False,
                           hint="name a file below a folder")
    return directory, name


NOT_REGULAR_HINT = ("the worker reads and writes regular files only: remove the directory, "
                    "FIFO or device that stands at that name, or name another file")


HARD_LINK_HINT = ("a file the worker writes must have no other name: remove the hard link "
                  "that stands at that name (the allow-list judges names, and another name "
                  "of the file may lie anywhere on the filesystem)")


def _not_regular(what: str) -> StorageError:
    return StorageError(f"{what}: it is not a regular file", retryable=False,
                        hint=NOT_REGULAR_HINT)


def open_file(path: str, flags: int, what: str, *, create_folders: bool = False,
              mode: int = 0o666) -> int:
    """``os.open`` of the local regular file ``path`` (its folders by
    :func:`open_folder`, the file itself with O_NOFOLLOW relative to its
    folder): the worker never writes, reads or creates through a symbolic link
    below the trusted root. It is opened with O_NONBLOCK, and anything but a
    regular file (a FIFO, a device, a directory planted at the name) is refused
    (StorageError, not retryable) instead of blocking the open, or the reads,
    for ever; the descriptor is blocking again unless ``flags`` asked for
    O_NONBLOCK. A file opened to write must have no other hard link (it is
    truncated, for O_TRUNC, only once that is known). A file that is a trusted
    root itself (an allow-list prefix naming one file) is opened by its path:
    everything on it is at or above the root."""
    directory, name = _split(path)
    writes = flags & (os.O_WRONLY | os.O_RDWR)
    nofollow = os.O_NOFOLLOW
    if root_of(path) == os.path.normpath(path):
        # The file is the root itself (an allow-list prefix naming one file): its
        # folder, and a link at the file, are at or above the root: followed.
        nofollow = 0
        if create_folders:
            os.makedirs(directory, exist_ok=True)
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    else:
        folder = open_folder(directory, what, create=create_folders)
    try:
        # O_TRUNC only once the file is known to be the worker's alone (below).
        fd = os.open(name, (flags & ~os.O_TRUNC) | nofollow | os.O_NONBLOCK, mode,
                     dir_fd=folder)
    except OSError as exc:
        _refuse_if_link(name, folder, what, exc)
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                raise _not_regular(what) from exc  # a FIFO with no reader: ENXIO
        raise
    finally:
        os.close(folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(what)
        if writes and st.st_nlink > 1:
            # A hard link planted at the name: O_NOFOLLOW does not see it, and
            # the bytes would go to (or truncate) a file that has another name.
            raise StorageError(f"{what}: the file has {st.st_nlink} hard links",
                               retryable=False, hint=HARD_LINK_HINT)
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def replace_file(src: str, dst: str, what: str) -> None:
    """Rename ``src`` to ``dst`` (same folder) relative to the folder's descriptor
    (``renameat``), then fsync the folder."""
    directory, src_name = _split(src)
    dst_directory, dst_name = _split(dst)
    if directory != dst_directory:
        raise ValueError(f"{src} and {dst} are in different folders")
    folder = open_folder(directory, what)
    try:
        os.replace(src_name, dst_name, src_dir_fd=folder, dst_dir_fd=folder)
        os.fsync(folder)
    finally:
        os.close(folder)


def place_file(src: str, dst: str, what: str) -> None:
    """Give the file ``src`` the name ``dst`` (same folder) only where no name
    is, relative to the folder's descriptor (never through a link), and remove
    the name ``src``; fsync the folder. FileExistsError, nothing changed, when
    ``dst`` names anything (unlike :func:`replace_file`, which replaces it).

    ``linkat`` first: it fails on any name there, atomically. A file system
    that refuses hard links (``EPERM``, ``ENOTSUP``: some FUSE and network
    mounts, FAT) is asked for ``renameat2(RENAME_NOREPLACE)``, atomic too; one
    that has neither (``EINVAL``, or no ``renameat2`` in the C library) gets a
    look at ``dst`` then a plain rename, with a warning: only a file created
    there at that very moment is not seen. A worker killed after the link and
    before ``src`` is unlinked leaves both names on one file: the next attempt
    finds ``dst`` holding exactly the job's bytes (the exporter reads it back
    against its part digests) and the temporary name goes with its upload."""
    directory, src_name = _split(src)
    dst_directory, dst_name = _split(dst)
    if directory != dst_directory:
        raise ValueError(f"{src} and {dst} are in different folders")
    folder = open_folder(directory, what)
    try:
        try:
            os.link(src_name, dst_name, src_dir_fd=folder, dst_dir_fd=folder,
                    follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            _rename_no_replace(folder, src_name, dst_name, f"{directory}/{dst_name}")
        else:
            os.unlink(src_name, dir_fd=folder)
        os.fsync(folder)
    finally:
        os.close(folder)


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
"""What ``linkat`` answers on a file system without hard links (EPERM is also
what a protected_hardlinks refusal says: the rename that follows is no less
safe)."""

RENAME_NOREPLACE = 1


def _renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (2.28 and later; Linux 3.15), or None."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                     ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def _rename_no_replace(folder: int, src: str, dst: str, shown: str) -> None:
    """Rename ``src`` to ``dst`` in ``folder`` only where ``dst`` names nothing
    (:func:`place_file` on a file system without hard links)."""
    import ctypes

    call = _renameat2()
    if call is not None:
        if call(folder, os.fsencode(src), folder, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), shown)
    log.warning("%s: the file system has neither hard links nor an exclusive rename; "
                "it is renamed into place after checking that no file is there (a file "
                "created there at that very moment is not seen)", shown)
    try:
        os.lstat(dst, dir_fd=folder)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=folder, dst_dir_fd=folder)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), shown)


def unlink_file(path: str, what: str) -> None:
    """Unlink the local file ``path`` relative to its folder's descriptor
    (``unlinkat``): a link at the file itself is what goes, never what it points
    to. FileNotFoundError when it (or a folder of it) does not exist."""
    directory, name = _split(path)
    folder = open_folder(directory, what)
    try:
        os.unlink(name, dir_fd=folder)
    finally:
        os.close(folder)


def _open_regular_file(path: str, uri: str) -> Any:
    """A local source opened for reading, only when it is what its URI names: a
    regular file reached without a symbolic link below its trusted root (the
    allow-list prefix that admitted it: :func:`open_file`). The allow-list judges
    the URI's text, so a link inside an allowed prefix must not lead the worker
    outside it; and a FIFO or device (``/dev/zero``) would block or never end."""
    fd = open_file(path, os.O_RDONLY | os.O_NONBLOCK, f"cannot read {uri}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StorageError(f"cannot read {uri}: it is not a regular file",
                               retryable=False,
                               hint="Import from a regular file (not a directory, FIFO "
                                    "or device).")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_unmodified(fd: int, mtime_ns: int | None, uri: str,
                      ctime_ns: int | None = None) -> None:
    """StorageError (not retryable) when the open file's modification time is no
    longer ``mtime_ns``, or its status-change time no longer ``ctime_ns`` (None:
    not checked). The ctime catches a write whose mtime was set back after it
    (``os.utime``, ``touch -d``, ``cp -p``), which only the kernel stamps."""
    st = os.fstat(fd)
    for what, then, now in (("written", mtime_ns, st.st_mtime_ns),
                            ("its status changed", ctime_ns, st.st_ctime_ns)):
        if then is not None and now != int(then):
            raise StorageError(f"{uri} changed while it was read: {what} at "
                               f"{now / 1e9:.6f}, after the read began (the version read, "
                               f"{int(then) / 1e9:.6f})", retryable=False,
                               hint=CHANGED_WHILE_READ_HINT)


def open_range(uri: str, offset: int = 0, block: int | None = None,
               total: int | None = None, etag: str | None = None,
               inode: tuple[int, int] | None = None,
               mtime_ns: int | None = None,
               ctime_ns: int | None = None) -> Iterator[bytes]:
    """The bytes of an object from ``offset`` to its end, in blocks of at most
    ``block`` bytes: a local file is read from that position, an object store with
    one ranged GET per block (no request stays open while the caller works, and
    memory holds one block; default READ_BLOCK). Imports read their source through
    this. ``total``: the object's size as the caller read it (:func:`size`), so
    an ``https://`` or obstore read asks no second time (a second answer could
    differ); None: asked here. ``etag``: the version the caller began with
    (:func:`version`), which an ``s3://`` or obstore read then pins (If-Match;
    ``gs://`` and ``https://``: every answer must be of it) instead of the one its
    own HEAD finds; ``inode``: a local file's (device,
    inode) as :func:`version` found it, which the file opened must be;
    ``mtime_ns``: its modification time then, which it must keep to the last
    block (a local file's pin, as the ETag is an object's: a file rewritten in
    place at the same size keeps its inode and size, and the read went on in
    the new bytes, a mix of two files read as one); ``ctime_ns``: its
    status-change time then, kept alike (a rewrite whose mtime was set back).
    Every store's block is exactly the range asked for (S3's and obstore's as
    https://'s, :mod:`~pgjobs.poller.https`): a store or proxy that ignores
    ``Range`` and answers with the whole object fails the read for good (read
    as the block, the object's start was imported again); fewer bytes, for now."""
    block = block or READ_BLOCK
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            with _open_regular_file(loc.path, uri) as f:
                st = os.fstat(f.fileno())
                if inode is not None and (st.st_dev, st.st_ino) != tuple(inode):
                    raise StorageError(f"{uri} changed while it was read: another file "
                                       "was put in its place", retryable=False,
                                       hint=CHANGED_WHILE_READ_HINT)
                f.seek(offset)
                while total is None or offset < total:
                    data = f.read(block if total is None else min(block, total - offset))
                    # After the read: a write of the bytes just read has moved
                    # the time on before them (the kernel stamps it first).
                    _check_unmodified(f.fileno(), mtime_ns, uri, ctime_ns)
                    if not data:
                        if total is None:
                            return
                        break
                    offset += len(data)
                    yield data
                if total is not None and (offset != total
                                          or os.fstat(f.fileno()).st_size != total):
                    # As an object store's ranged reads, exactly the size the
                    # caller began with: a file rewritten in place (cp truncates
                    # it first) or still being written would otherwise end the
                    # read wherever its end was then, a prefix read as the whole.
                    raise StorageError(
                        f"{uri} changed while it was read: {total} bytes when the read "
                        f"began, {os.fstat(f.fileno()).st_size} now", retryable=False,
                        hint=CHANGED_WHILE_READ_HINT)
        except OSError as exc:
            raise storage_error(exc, f"cannot read {uri}") from exc
        return
    if loc.scheme == "s3":
        # botocore: the credential chain and retries of every other S3 call.
        try:
            yield from s3.Client(loc.base.split("://", 1)[1]).read_ranges(loc.path, offset,
                                                                          block, total, etag)
        except s3.S3Error as exc:
            raise storage_error(exc, f"cannot read {uri}") from exc
        return
    if loc.scheme == "https":
        # Its own client: no request follows a redirect, each block must come back
        # as the range asked for (pgjobs.poller.https).
        try:
            yield from https.read_ranges(uri, offset, block, total, etag)
        except https.HttpsError as exc:
            raise storage_error(exc, f"cannot read {uri}") from exc
        return
    store = store_for(loc)
    # Every ranged read of the version the read began with (If-Match on its
    # ETag), as S3's: an object replaced meanwhile, even by one of the same
    # size, is not read on from the new one.
    try:
        meta = obstore.head(store, loc.path)
    except Exception as exc:
        raise storage_error(exc, f"cannot read {uri}") from exc
    now = int(meta["size"])
    if total is not None and now != total:
        raise StorageError(f"{uri} changed while it was read: {total} bytes when the read "
                           f"began, {now} now", retryable=False, hint=CHANGED_WHILE_READ_HINT)
    total = now
    import obstore as obstore_lib
    from obstore import exceptions as oe

    # A gs:// store is Google's client (pgjobs.poller.gcs), whose reads take no
    # If-Match: its generation is pinned instead. Every write of an object makes
    # a new generation and none comes back, so a block read between two looks
    # that both find the generation the read began with is of that object; the
    # next block's look is the one after this block's.
    generation = meta.get("version") if isinstance(store, gcs.Store) else None
    if isinstance(store, gcs.Store) and etag and meta.get("e_tag") != etag:
        raise StorageError(f"{uri} changed while it was read (replaced before offset {offset})",
                           retryable=False, hint=CHANGED_WHILE_READ_HINT)
    pinned = (etag or meta.get("e_tag")) if not isinstance(store, gcs.Store) else None
    while offset < total:
        length = min(block, total - offset)
        try:
            if pinned:
                data = bytes(obstore_lib.get(store, loc.path, options={
                    "range": (offset, offset + length), "if_match": pinned}).bytes())
            else:
                data = bytes(obstore.get_range(store, loc.path, start=offset, length=length))
        except oe.PreconditionError as exc:
            raise StorageError(f"{uri} changed while it was read (replaced at offset {offset})",
                               retryable=False, hint=CHANGED_WHILE_READ_HINT) from exc
        except Exception as exc:
            raise storage_error(exc, f"cannot read {uri}") from exc
        if len(data) != length:
            # Exactly the range asked for, as S3's and https://'s readers demand:
            # more (the whole object, a range ignored) read as this block imported
            # the object's start again; fewer is a read to try again.
            raise StorageError(f"cannot read {uri}: the store sent {len(data)} bytes for the "
                               f"byte range {offset}-{offset + length - 1} ({length} bytes)",
                               retryable=len(data) < length,
                               hint=None if len(data) < length else s3.RANGE_HINT)
        if generation is not None:
            try:
                now_generation = obstore.head(store, loc.path).get("version")
            except FileNotFoundError:
                now_generation = None
            except Exception as exc:
                raise storage_error(exc, f"cannot read {uri}") from exc
            if now_generation != generation:
                raise StorageError(f"{uri} changed while it was read (replaced at offset "
                                   f"{offset})", retryable=False, hint=CHANGED_WHILE_READ_HINT)
        offset += len(data)
        yield data


def write_temp_path(path: str) -> str:
    """The temporary file ``write`` fills before renaming it to ``path`` (on disk):
    a name the stale sweep knows (``_TMP_RE``), next to the object."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.pgjobs-write.tmp")


def write_at(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """All of ``data`` at ``offset`` of ``fd``, at most WRITE_SLICE bytes a
    ``pwrite`` (which may write less): every write of a ``file://`` object's
    bytes (a part, a whole object, the prefix a resume copies) goes through
    here. A pwrite that writes none of what it is handed would write none of
    it on the next call either: OSError ENOSPC (as a full disk), not a loop."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view[:WRITE_SLICE], offset)
        if written == 0:
            raise OSError(errno.ENOSPC, f"pwrite wrote none of {len(view)} bytes at {offset}")
        view, offset = view[written:], offset + written


def write(uri: str, data: bytes) -> None:
    """Write one small object whole (an import's rejects)."""
    loc = parse(uri)
    try:
        if loc.scheme == "file":
            # A temporary name the stale sweep knows (_TMP_RE, next to the
            # object): a worker killed mid-write left `{name}.pgjobs-tmp`,
            # which no sweep or prune removed (a Parquet file's, say).
            tmp = write_temp_path(loc.path)
            fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f"cannot write {uri}",
                           create_folders=True)
            with open(fd, "wb") as f:
                write_at(f.fileno(), data, 0)
                os.fsync(f.fileno())
            replace_file(tmp, loc.path, f"cannot write {uri}")
            return
        obstore.put(store_for(loc), loc.path, data)
    except Exception as exc:
        raise storage_error(exc, f"cannot write {uri}") from exc


def create(uri: str, data: bytes) -> bool:
    """Write one small object whole only where no object is: False (nothing
    written) when the key holds one. Atomic where the store is: a ``file://``
    object is linked into place from a temporary file of its own (``linkat``
    fails on any name there), an object store is sent a conditional PUT (S3
    and Azure ``If-None-Match: *``, GCS generation 0), so of two workers
    creating one key at once, one succeeds. An object store is asked first
    (:func:`taken`) as well: one that ignores the condition (an S3-compatible
    server without conditional writes, a GCS emulator) still keeps an object
    written before. One that refuses it (``501 NotImplemented``, a ``400``:
    :func:`_condition_refused`) is sent a plain PUT after that check, with a
    warning: the object is written, never over one that was there when
    asked; only one created at that very moment is not seen. ``memory://`` is
    an object store here too (obstore's create mode, atomic in its process)."""
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            return _create_file(loc.path, data, f"cannot write {uri}")
        except FileExistsError:
            return False
        except Exception as exc:
            raise storage_error(exc, f"cannot write {uri}") from exc
    if taken(uri):
        return False
    with _stores_lock:
        refused_before = loc.base in _unconditional
    if not refused_before:
        try:
            return _put_if_absent(loc, data)
        except Exception as exc:
            if not _condition_refused(exc):
                raise storage_error(exc, f"cannot write {uri}") from exc
            log.warning("%s refused a conditional write (If-None-Match: *): %s; %s is "
                        "written after checking that no object is there (a store without "
                        "conditional writes: an object created there at the same moment is "
                        "not seen); so are this worker's later writes there",
                        loc.base, _one_line(exc), uri)
    try:
        obstore.put(store_for(loc), loc.path, data)
    except Exception as again:
        raise storage_error(again, f"cannot write {uri}") from again
    if not refused_before:
        # The plain PUT went through where the conditional one was refused: the
        # condition was what the store refused. Later creates there go straight
        # to the checked plain PUT (for this process: a store upgraded meanwhile
        # is asked again after a restart).
        with _stores_lock:
            _unconditional.add(loc.base)
    return True


_unconditional: set[str] = set()
"""Stores (``Location.base``) that refused a conditional write and took the plain
PUT that followed: :func:`create` sends them no condition again."""


def _put_if_absent(loc: Location, data: bytes) -> bool:
    """The conditional PUT of :func:`create`: True written, False a key that
    holds an object. Sent once without obstore's retries first: a store
    refusing the condition answers ``501``, a server error that obstore
    retries ten times with backoff (about 2.4 s a write) before this sees it.
    Anything else that a retry may fix (500, 503, a dropped connection:
    :func:`storage_error`'s ``retryable``) is sent again with them. Raises
    the failure that ended it.

    A PUT sent again may meet the object the one before wrote (its answer
    lost with the connection: a ``412``): the key holding these very bytes
    is this create done, not another's object (taken for one, an import
    named another object and left this one, named by nothing, for good)."""
    try:
        obstore.put(store_for(loc, retries=False), loc.path, data, mode="create")
        return True
    except (obstore_errors.AlreadyExistsError, FileExistsError):
        # Google's client retries a conditional upload itself (gs:// has one
        # store): it too may meet what it wrote.
        return loc.scheme == "gs" and _holds(loc, data)
    except Exception as exc:
        if _condition_refused(exc) or not storage_error(exc, loc.uri).retryable:
            raise
    try:
        obstore.put(store_for(loc), loc.path, data, mode="create")
        return True
    except (obstore_errors.AlreadyExistsError, FileExistsError):
        return _holds(loc, data)


def _holds(loc: Location, data: bytes) -> bool:
    """Whether the object at ``loc`` is ``data`` (its size asked first)."""
    try:
        return (int(obstore.head(store_for(loc), loc.path)["size"]) == len(data)
                and read(loc.uri) == bytes(data))
    except Exception as exc:
        raise storage_error(exc, f"cannot read {loc.uri}") from exc


def _condition_refused(exc: BaseException) -> bool:
    """Whether a conditional PUT failed because the store does not do conditional
    writes: it answered ``501 NotImplemented`` (MinIO before conditional writes,
    other S3-compatible servers) or ``400`` (a bad request naming the header), or
    obstore's NotSupportedError. Read from the status the store answered
    (:func:`http_status`), never from the error's words: they name the object
    (job 400's rejects, a scope named 501), and a busy store, a dropped
    connection or a 412 there is no refusal. Broad otherwise: a PUT refused
    with a 400 for another reason fails again, unconditional, with that reason."""
    from obstore import exceptions as oe

    return isinstance(exc, oe.NotSupportedError) or http_status(exc) in (400, 501)


def _create_file(path: str, data: bytes, what: str) -> bool:
    """:func:`create` on disk: the bytes go to a temporary file of this call
    (a name the stale sweep knows), fsynced, then put at ``path`` only where
    no name is (:func:`place_file`: a hard link, never through a link); the
    temporary name is removed either way."""
    directory, name = _split(path)
    tmp = os.path.join(directory, f".{name}.pgjobs-{os.urandom(6).hex()}.tmp")
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what, create_folders=True)
    try:
        with open(fd, "wb") as f:
            write_at(f.fileno(), data, 0)
            os.fsync(f.fileno())
        place_file(tmp, path, what)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError, StorageError):
            unlink_file(tmp, what)


def taken(uri: str) -> bool:
    """Whether a key a job is about to choose (its first attempt: no record of
    the job names it yet) already holds an object, which is then another's:
    a second pgjobs database whose workers write to the same storage numbers
    its jobs alike, and its job of this id names the same key (a
    ``memory://`` store is shared by every database one process serves)."""
    return exists(uri)


def exists(uri: str) -> bool:
    loc = parse(uri)
    if loc.scheme == "file":
        return os.path.exists(loc.path)
    try:
        if loc.scheme == "https":
            https.size(uri)
            return True
        obstore.head(store_for(loc), loc.path)
    except not_found():
        return False
    except https.HttpsError as exc:
        if exc.status in (404, 410):
            return False
        raise storage_error(exc, f"cannot read {uri}") from exc
    except Exception as exc:
        raise storage_error(exc, f"cannot read {uri}") from exc
    return True


def list_paths(prefix_uri: str) -> list[str]:
    """Every object path under a prefix (tests, diagnostics)."""
    loc = parse(prefix_uri)
    if loc.scheme == "file":
        found: list[str] = []
        for root, _dirs, files in os.walk(loc.path):
            found.extend(os.path.join(root, f) for f in files)
        return sorted(found)
    return sorted(meta["path"] for batch in obstore.list(store_for(loc), loc.path or None)
                  for meta in batch)


def sign_url(uri: str, expires: timedelta) -> str:
    """A presigned GET URL for object stores; the local path for ``file://``."""
    loc = parse(uri)
    if loc.scheme == "file":
        return loc.path
    if loc.scheme == "memory":
        raise InvalidInput(f"{uri} lives in another process's memory and has no URL",
                           hint="export to file://, s3://, gs:// or az:// instead")
    try:
        if loc.scheme == "s3":
            return s3.Client(loc.base.split("://", 1)[1]).presign(loc.path, expires)
        return str(obstore.sign(store_for(loc), "GET", loc.path, expires))
    except Exception as exc:
        raise storage_error(exc, f"cannot sign a URL for {uri}") from exc


# --- stale uploads -------------------------------------------------------------


def sweep_stale(prefix_uri: str, is_active: Callable[[list[int]], set[int]],
                min_age: timedelta = timedelta(hours=1)) -> int:
    """Remove upload leftovers under ``prefix_uri`` whose job is neither queued nor
    running and that are older than ``min_age``: staged parts
    (``{prefix}.pgjobs-staging/{job}/``) and open S3 multipart uploads in object
    stores, temporary files
    (``.*.pgjobs-*.tmp``, anywhere below the prefix, a Parquet file's in its
    job's folder) on disk. Returns how many files
    or objects went."""
    loc = parse(prefix_uri)
    cutoff = time.time() - min_age.total_seconds()
    if loc.scheme == "file":
        return _sweep_local(loc.path, cutoff, is_active)
    store = store_for(loc)
    staging = object_location(prefix_uri, f"{STAGING}/").path
    by_job: dict[int, list[tuple[str, float]]] = {}
    try:
        for batch in obstore.list(store, staging, chunk_size=1000):
            for meta in batch:
                path = meta["path"]
                job = path[len(staging):].split("/", 1)[0]
                if job.isdigit():
                    by_job.setdefault(int(job), []).append(
                        (path, meta["last_modified"].timestamp()))
    except Exception as exc:
        raise storage_error(exc, f"cannot list {prefix_uri}") from exc
    uploads: dict[int, list[tuple[str, str, float]]] = {}
    client = s3.Client(loc.base.split("://", 1)[1]) if loc.scheme == "s3" else None
    if client is not None:
        try:
            for key, upload_id, initiated in client.list_uploads(loc.path):
                owner = _job_of(key)
                if owner is not None:
                    uploads.setdefault(owner, []).append((key, upload_id, initiated))
        except s3.S3Error as exc:
            raise storage_error(exc, f"cannot list the multipart uploads of {prefix_uri}") \
                from exc
    if not by_job and not uploads:
        return 0
    active = is_active(sorted(set(by_job) | set(uploads)))
    doomed = [path for job, items in by_job.items() if job not in active
              for path, modified in items if modified < cutoff]
    for start in range(0, len(doomed), 1000):
        obstore.delete(store, doomed[start:start + 1000])
    aborted = 0
    if client is not None:
        for owner, opened in uploads.items():
            for key, upload_id, initiated in opened:
                if owner not in active and initiated < cutoff:
                    client.abort(key, upload_id)
                    aborted += 1
    return len(doomed) + aborted


def _job_of(key: str) -> int | None:
    """The job id of an export object key ``.../{job}.{ext}``."""
    name = key.rsplit("/", 1)[-1]
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _sweep_local(root: str, cutoff: float, is_active: Callable[[list[int]], set[int]]) -> int:
    """Temporary files carry no job id in their name but sit next to their object
    ``{job}.{ext}``: the job id is the leading number of the object name, or for
    a Parquet export's file (``{job}/part-....parquet``) its folder's name."""
    candidates: list[tuple[int, str]] = []
    if not os.path.isdir(root):
        return 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            match = _TMP_RE.match(name)
            if not match:
                continue
            job = (match.group("name") or match.group("old")).split(".", 1)[0]
            if not job.isdigit():
                job = os.path.basename(directory)
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                if job.isdigit() and os.path.getmtime(path) < cutoff:
                    candidates.append((int(job), path))
    if not candidates:
        return 0
    active = is_active(sorted({job for job, _ in candidates}))
    removed = 0
    for job, path in candidates:
        if job not in active:
            with contextlib.suppress(OSError, StorageError):
                unlink_file(path, f"cannot delete {path}")  # below the root: no link followed
                removed += 1
    return removed
