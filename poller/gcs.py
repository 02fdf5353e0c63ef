"""``gs://`` through Google's own client (google-cloud-storage, the JSON API).

obstore's GCS store speaks the XML API; it needs a service-account file for a
custom endpoint and cannot talk to gcp-storage-emulator at all (no ETag or
Last-Modified headers, no HEAD, no XML list or multipart there). Google's client
takes the whole Application Default Credentials chain (a key file, gcloud's user
credentials, workload identity, the metadata server) and ``STORAGE_EMULATOR_HOST``
for an emulator, as boto does for S3. It is imported on first use only.

Two things live here:

* :data:`calls`: obstore's functions as :mod:`pgjobs.poller.storage` uses them
  (get, get_range, head, put, list, delete, sign), serving a :class:`Store` (a
  bucket) through Google's client and handing every other store to obstore.
* :class:`ComposeUpload`: an export's upload. Each part is a hidden object
  (named by the owner's token and part number, listed in the checkpoint, so any
  process continues it); ``finish`` joins them with GCS's server-side
  ``compose`` (32 sources a call, in a tree beyond that): the bytes cross the
  network once, and nothing is visible at the object's key before the last
  compose. GCS resumable upload sessions are not used: every chunk but the last
  must be a multiple of 256 KiB, and an export's parts end on row boundaries.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pgjobs.errors import words
from pgjobs.lazy import lazy_module
from pgjobs.poller.upload import (
    CannotResume,
    KeyTaken,
    Upload,
    add_to_runs,
    load_runs,
    require_staged,
    run_parts,
)

if TYPE_CHECKING:
    import obstore
else:
    obstore = lazy_module("obstore")  # imported when a store is first used (pgjobs/lazy.py)

COMPOSE_MAX = 32
"""Sources per GCS compose request (the service's limit)."""
_READ_CHUNK = 8 * 1024 * 1024


class GcsError(Exception):
    """GCS refused or failed. ``retryable`` is False for what another attempt
    cannot fix (no such bucket, no credentials, no permission). ``status``: the
    HTTP status Google answered with (None when no answer came)."""

    def __init__(self, message: str, *, retryable: bool, credentials: bool = False,
                 status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.credentials = credentials
        self.status = status


_client: Any = None
_client_lock = threading.Lock()


def client() -> Any:
    """One google.cloud.storage.Client per process (its session is thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            try:
                from google.cloud import storage as google_storage
            except ImportError as exc:  # pragma: no cover - the package is a dependency
                raise GcsError("gs:// needs the google-cloud-storage package",
                               retryable=False) from exc
            try:
                _client = google_storage.Client()
            except Exception as exc:  # DefaultCredentialsError and friends
                raise GcsError(f"no Google credentials: {words(exc)}", retryable=False,
                               credentials=True) from exc
        return _client


def forget_client() -> None:
    """Drop the cached client (its configuration came from the environment)."""
    global _client
    with _client_lock:
        _client = None


def _error(exc: BaseException, what: str, *, missing_is_absent: bool) -> BaseException:
    """Google's exceptions as storage.py understands them: an absent object is
    FileNotFoundError (when ``missing_is_absent``), 5xx/429/network retry, other
    4xx do not."""
    from google.api_core import exceptions as ge
    from google.auth import exceptions as auth

    if isinstance(exc, GcsError):
        return exc
    code = getattr(exc, "code", None) if isinstance(exc, ge.GoogleAPICallError) else None
    status = code if isinstance(code, int) and 100 <= code <= 599 else None
    if isinstance(exc, ge.NotFound) and missing_is_absent:
        return FileNotFoundError(f"{what}: not found")
    if isinstance(exc, auth.DefaultCredentialsError):
        return GcsError(f"no Google credentials ({exc})", retryable=False,
                        credentials=True)
    if isinstance(exc, (ge.Unauthorized, ge.Forbidden)):
        return GcsError(str(exc), retryable=False, credentials=True, status=status)
    if isinstance(exc, (ge.ServerError, ge.TooManyRequests, ConnectionError, TimeoutError,
                        auth.TransportError)):
        return GcsError(str(exc), retryable=True, status=status)
    import requests

    if isinstance(exc, requests.RequestException):
        return GcsError(str(exc), retryable=True)
    return GcsError(str(exc), retryable=False, status=status)


class Store:
    """A GCS bucket, standing in for an obstore store in :data:`calls`."""

    def __init__(self, bucket: str):
        self.bucket_name = bucket

    def blob(self, path: str) -> Any:
        return client().bucket(self.bucket_name).blob(path)


class _Result:
    """What obstore.get returns, as far as storage.py uses it."""

    def __init__(self, store: Store, path: str):
        self._blob = store.blob(path)
        try:
            self._blob.reload()
        except Exception as exc:
            raise _error(exc, f"gs://{store.bucket_name}/{path}", missing_is_absent=True) \
                from exc
        self._where = f"gs://{store.bucket_name}/{path}"

    def bytes(self) -> builtins.bytes:
        try:
            return builtins.bytes(self._blob.download_as_bytes())
        except Exception as exc:
            raise _error(exc, self._where, missing_is_absent=True) from exc

    def stream(self, min_chunk_size: int = _READ_CHUNK) -> Iterator[builtins.bytes]:
        size = int(self._blob.size or 0)
        offset = 0
        while offset < size:
            end = min(size, offset + min_chunk_size) - 1
            try:
                data = self._blob.download_as_bytes(start=offset, end=end)
            except Exception as exc:
                raise _error(exc, self._where, missing_is_absent=True) from exc
            if not data:
                raise GcsError(f"{self._where}: no bytes at offset {offset}", retryable=True)
            offset += len(data)
            yield builtins.bytes(data)


class _Calls:
    """obstore's functions; a :class:`Store` is served through Google's client."""

    def __getattr__(self, name: str) -> Any:
        return getattr(obstore, name)

    def get(self, store: Any, path: str) -> Any:
        if not isinstance(store, Store):
            return obstore.get(store, path)
        return _Result(store, path)

    def get_range(self, store: Any, path: str, *, start: int, length: int) -> Any:
        if not isinstance(store, Store):
            return obstore.get_range(store, path, start=start, length=length)
        try:
            return store.blob(path).download_as_bytes(start=start, end=start + length - 1)
        except Exception as exc:
            raise _error(exc, f"gs://{store.bucket_name}/{path}",
                         missing_is_absent=True) from exc

    def head(self, store: Any, path: str) -> Any:
        if not isinstance(store, Store):
            return obstore.head(store, path)
        try:
            blob = client().bucket(store.bucket_name).get_blob(path)
        except Exception as exc:
            raise _error(exc, f"gs://{store.bucket_name}/{path}",
                         missing_is_absent=False) from exc
        if blob is None:
            raise FileNotFoundError(f"gs://{store.bucket_name}/{path}: not found")
        return {"path": path, "size": int(blob.size or 0), "last_modified": blob.updated,
                "e_tag": blob.etag, "version": None if blob.generation is None
                else str(blob.generation)}

    def put(self, store: Any, path: str, data: Any, **options: Any) -> Any:
        if not isinstance(store, Store):
            return obstore.put(store, path, data, **options)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("gs:// objects are written whole (exports compose their parts)")
        create = options.get("mode") == "create"
        try:
            # mode "create" (as obstore's): only where no object is
            # (generation 0), FileExistsError otherwise.
            store.blob(path).upload_from_string(bytes(data),
                                                if_generation_match=0 if create else None)
        except Exception as exc:
            from google.api_core import exceptions as ge

            if create and isinstance(exc, ge.PreconditionFailed):
                raise FileExistsError(f"gs://{store.bucket_name}/{path} exists") from exc
            raise _error(exc, f"gs://{store.bucket_name}/{path}",
                         missing_is_absent=False) from exc
        return None

    def list(self, store: Any, prefix: str | None = None, **options: Any) -> Any:
        if not isinstance(store, Store):
            return obstore.list(store, prefix, **options)
        return _list(store, prefix or "", int(options.get("chunk_size") or 1000))

    def delete(self, store: Any, paths: str | builtins.list[str]) -> Any:
        if not isinstance(store, Store):
            return obstore.delete(store, paths)
        bucket = client().bucket(store.bucket_name)
        names = [paths] if isinstance(paths, str) else builtins.list(paths)
        try:
            bucket.delete_blobs([bucket.blob(n) for n in names], on_error=lambda _b: None)
        except Exception as exc:
            raise _error(exc, f"gs://{store.bucket_name}", missing_is_absent=False) from exc
        return None

    def sign(self, store: Any, method: Any, path: str, expires: timedelta) -> Any:
        if not isinstance(store, Store):
            return obstore.sign(store, method, path, expires)
        try:
            return store.blob(path).generate_signed_url(version="v4", expiration=expires,
                                                        method=method)
        except AttributeError as exc:  # credentials that hold no key cannot sign
            raise GcsError(f"gs://{store.bucket_name}/{path}: cannot sign a URL with these "
                           f"credentials ({words(exc)})", retryable=False,
                           credentials=True) from exc
        except Exception as exc:
            raise _error(exc, f"gs://{store.bucket_name}/{path}",
                         missing_is_absent=False) from exc


def _list(store: Store, prefix: str, page: int) -> Iterator[list[dict[str, Any]]]:
    try:
        blobs = client().list_blobs(store.bucket_name, prefix=prefix or None, page_size=page)
        batch: list[dict[str, Any]] = []
        for blob in blobs:
            batch.append({"path": blob.name, "size": int(blob.size or 0),
                          "last_modified": blob.updated or datetime.now(timezone.utc)})
            if len(batch) >= page:
                yield batch
                batch = []
        if batch:
            yield batch
    except Exception as exc:
        raise _error(exc, f"gs://{store.bucket_name}/{prefix}", missing_is_absent=False) \
            from exc


calls = _Calls()


# --- exports --------------------------------------------------------------------


def compose_plan(sources: list[str], target: str, scratch: str,
                 fan_in: int | None = None) -> list[tuple[str, list[str]]]:
    """The compose calls that make ``target`` the concatenation of ``sources``, in
    order: (the object each makes, its sources). More than ``fan_in`` sources are
    joined in groups into objects under ``scratch`` first (a group of one is
    passed on as it is); only the last call writes ``target``. ``fan_in`` is
    COMPOSE_MAX unless given. Deterministic in
    its arguments, so any process cuts the same calls and names the same objects."""
    fan_in = fan_in or COMPOSE_MAX
    steps: list[tuple[str, list[str]]] = []
    names, level = list(sources), 0
    while len(names) > fan_in:
        grouped = []
        for start in range(0, len(names), fan_in):
            group = names[start:start + fan_in]
            if len(group) == 1:
                grouped.append(group[0])
                continue
            name = f"{scratch}compose-{level}-{start // fan_in:06d}"
            steps.append((name, group))
            grouped.append(name)
        names, level = grouped, level + 1
    steps.append((target, names))
    return steps


def compose_one(store: Store, sources: list[str], target: str, *, new: bool = False) -> int:
    """One compose call; the generation of the object it made. ``new``: only
    where no object is (``ifGenerationMatch=0``, the export's object itself):
    FileExistsError, nothing written, when the key holds one (a compose sent
    again by Google's client after its answer was lost meets its own object
    so: the caller tells it by its bytes)."""
    bucket = client().bucket(store.bucket_name)
    blob = bucket.blob(target)
    try:
        blob.compose([bucket.blob(n) for n in sources], if_generation_match=0 if new else None)
    except Exception as exc:
        from google.api_core import exceptions as ge

        if new and isinstance(exc, ge.PreconditionFailed):
            raise FileExistsError(f"gs://{store.bucket_name}/{target} exists") from exc
        raise _error(exc, f"gs://{store.bucket_name}/{target}", missing_is_absent=True) \
            from exc
    return int(blob.generation or 0)


def generation(store: Store, path: str) -> int | None:
    """The generation of the object at ``path``, None when there is none."""
    try:
        blob = client().bucket(store.bucket_name).get_blob(path)
    except Exception as exc:
        raise _error(exc, f"gs://{store.bucket_name}/{path}", missing_is_absent=False) \
            from exc
    return None if blob is None else int(blob.generation or 0)


def compose(store: Store, sources: list[str], target: str, scratch: str) -> None:
    """Make ``target`` the concatenation of ``sources`` (in order), server-side,
    through :func:`compose_plan`."""
    for made, group in compose_plan(sources, target, scratch):
        # The tree's intermediate objects are the job's own scratch; the last
        # call makes the object, only where none is.
        compose_one(store, group, made, new=made == target)


def _storage_error(exc: GcsError, what: str) -> Exception:
    from pgjobs.poller import storage  # storage imports this module

    return storage.storage_error(exc, what)


class ComposeUpload(Upload):
    """``gs://``: each part a hidden object ``{staging}{token}/{n}``, joined by
    ``compose`` at ``finish``. The state is the staged path's (``staging`` and
    ``runs`` of part numbers per owner), so the checkpoint format is shared. The
    SHA-256 is computed as parts go by; after a resume the composed object is
    read back once, each part's range checked against the checkpointed digests."""

    def __init__(self, location: Any, staging: str, token: str,
                 state: dict[str, Any] | None, digests: list[Any] | None):
        self.location = location
        self._store = Store(location.base.split("://", 1)[1])
        self._staging = (state or {}).get("staging") or staging
        self._token = token
        self._runs, self._next = load_runs(state)
        self._digests = digests
        self._hash: Any = hashlib.sha256() if not self._runs else None
        self._size = 0
        if self._runs:
            require_staged(self._parts(), self._staging,
                           lambda: calls.list(self._store, self._staging), GcsError,
                           _storage_error)

    def _part_path(self, token: str, number: int) -> str:
        return f"{self._staging}{token}/{number:06d}"

    def _parts(self) -> list[str]:
        return [self._part_path(token, n) for token, n in run_parts(self._runs)]

    def write_part(self, data: bytes | bytearray) -> None:
        path = self._part_path(self._token, self._next)
        try:
            calls.put(self._store, path, bytes(data))
        except GcsError as exc:
            raise _storage_error(exc, f"cannot write gs://{self._store.bucket_name}/{path}") \
                from exc
        add_to_runs(self._runs, self._token, self._next)
        self._next += 1
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)

    def state(self) -> dict[str, Any]:
        return {"staging": self._staging, "runs": self._runs}

    def finish(self) -> tuple[int, str]:
        parts = self._parts()
        try:
            if not parts:
                calls.put(self._store, self.location.path, b"", mode="create")
            else:
                compose(self._store, parts, self.location.path,
                        f"{self._staging}{self._token}/")
        except FileExistsError as exc:
            # Conditional (generation 0): never over an object at the key.
            raise KeyTaken(f"{self.location.uri} exists") from exc
        except FileNotFoundError as exc:
            raise CannotResume(f"a staged part of {self.location.uri} is gone") \
                from exc
        except GcsError as exc:
            raise _storage_error(exc, f"cannot write {self.location.uri}") from exc
        self.created = True
        if self._hash is None:
            from pgjobs.poller import storage  # read back: the hash state did not survive

            done = storage.hash_object(self.location, self._digests)  # and the parts checked
            self.checked = self._digests
            return done
        return self._size, self._hash.hexdigest()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            for batch in calls.list(self._store, self._staging):
                calls.delete(self._store, [m["path"] for m in batch])
