"""``az://`` exports as native block-blob uploads, through Azure's own client
(azure-storage-blob), resumable from any process.

Azure keeps the blocks of an upload on the blob itself: each part is staged
with Put Block under an id derived from the owner's token and part number (the
checkpoint lists them as runs ``[token, first, last]``), and ``finish`` commits
the ids, in order, with Put Block List. Nothing is visible at the key before
that commit; blocks staged by a stale owner under its own ids are never named,
and Azure discards uncommitted blocks that a commit leaves out (and all of them
after 7 days). The bytes cross the network once: no second pass, unlike the
staged path.

Configuration comes from the variables obstore reads, so reads, lists and deletes
see the same account: ``AZURE_STORAGE_ACCOUNT_NAME`` with
``AZURE_STORAGE_ACCOUNT_KEY`` or a SAS (``AZURE_STORAGE_SAS_KEY``), an endpoint
(``AZURE_STORAGE_ENDPOINT``) or Azurite (``AZURE_STORAGE_USE_EMULATOR``,
``AZURITE_BLOB_STORAGE_URL``). With other credentials (Azure AD through
obstore's variables) :func:`service` is None and the caller stages parts, saying
so in the log. The package is imported on first use only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from typing import Any

from pgjobs.poller.upload import (
    CannotResume,
    KeyTaken,
    Upload,
    add_to_runs,
    load_runs,
    run_parts,
)

log = logging.getLogger("pgjobs.storage")
MAX_BLOCKS = 50_000
_EMULATOR_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                 "K1SZFPTOtr/KBHBeksoGMGw==")  # Azurite's published development key


class AzureError(Exception):
    """Azure refused or failed; ``retryable`` False for what another attempt cannot
    fix (no such container, authentication, permission). ``status``: the HTTP
    status Azure answered with (None when no answer came)."""

    def __init__(self, message: str, *, retryable: bool, code: str | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.status = status


_service: Any = None
_service_lock = threading.Lock()
_said_staged = False


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def service() -> Any:
    """A BlobServiceClient for the configured account, or None when the
    credentials are of a kind only obstore handles (then parts are staged)."""
    global _service, _said_staged
    with _service_lock:
        if _service is not None:
            return _service
        emulator = (_env("AZURE_STORAGE_USE_EMULATOR", "AZURE_USE_EMULATOR") or "").lower() \
            in ("1", "true", "yes")
        account = _env("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT")
        key = _env("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY",
                   "AZURE_STORAGE_MASTER_KEY")
        sas = _env("AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN")
        url: str | None
        if emulator:
            account = account or "devstoreaccount1"
            key = key or _EMULATOR_KEY
            url = (_env("AZURITE_BLOB_STORAGE_URL") or "http://127.0.0.1:10000").rstrip("/")
            url = f"{url}/{account}"
        else:
            url = _env("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT") or \
                (f"https://{account}.blob.core.windows.net" if account else None)
        credential: Any = {"account_name": account, "account_key": key} if key and account \
            else sas
        if url is None or credential is None:
            if not _said_staged:
                log.info("az://: no account key or SAS in the environment; exports stage "
                         "their parts (a second pass over the bytes)")
                _said_staged = True
            return None
        from azure.storage.blob import BlobServiceClient

        _service = BlobServiceClient(url, credential=credential)
        return _service


def forget_service() -> None:
    global _service
    with _service_lock:
        _service = None


def _fail(exc: BaseException, what: str) -> Exception:
    """An Azure failure as the exporter's StorageError (retryable or not)."""
    from pgjobs.poller import storage  # storage imports this module

    return storage.storage_error(_error(exc), what)


def _error(exc: BaseException) -> AzureError:
    from azure.core import exceptions as ae

    if isinstance(exc, AzureError):
        return exc

    code = getattr(exc, "error_code", None)
    answered = getattr(exc, "status_code", None)
    status = answered if isinstance(answered, int) else None
    if isinstance(exc, ae.ClientAuthenticationError) or status in (401, 403):
        return AzureError(f"{code or exc}", retryable=False, code=code, status=status)
    if isinstance(exc, ae.ResourceNotFoundError) or status == 404:
        return AzureError(f"{code or 'not found'}", retryable=False, code=code, status=status)
    if isinstance(exc, ae.HttpResponseError) and status is not None and status < 500 \
            and status != 429 and status != 408:
        return AzureError(f"{code or exc}", retryable=False, code=code, status=status)
    return AzureError(f"{code or exc}", retryable=True, code=code, status=status)


def block_id(token: str, number: int) -> str:
    """A block id of fixed length (Azure wants one length per blob) naming the
    owner and the part."""
    digest = hashlib.sha256(f"{token}/{number}".encode()).hexdigest()[:40]
    return base64.b64encode(digest.encode()).decode()


class BlockUpload(Upload):
    """One block blob built from staged blocks; see the module docstring. The
    SHA-256 is computed as parts go by; after a resume (the hash state does not
    survive a crash) the committed blob is read back once, each part's range
    checked against the checkpointed digests."""

    def __init__(self, location: Any, token: str, state: dict[str, Any] | None,
                 digests: list[Any] | None):
        self.location = location
        container = location.base.split("://", 1)[1]
        self._blob = service().get_blob_client(container, location.path)
        self._token = token
        self._digests = digests
        self._runs, self._next = load_runs(state)
        self._hash: Any = hashlib.sha256() if not self._runs else None
        self._size = 0
        if self._runs:
            try:
                _, uncommitted = self._blob.get_block_list("uncommitted")
            except Exception as exc:
                if _error(exc).code == "BlobNotFound":
                    raise CannotResume(f"the staged blocks of {location.uri} are gone") \
                        from None
                raise _fail(exc, f"cannot list the blocks of {location.uri}") from exc
            present = {b.id for b in uncommitted}
            missing = [i for i in self._ids() if i not in present]
            if missing:
                raise CannotResume(f"{len(missing)} staged block(s) of {location.uri} "
                                    "are gone")

    def _ids(self) -> list[str]:
        return [block_id(token, n) for token, n in run_parts(self._runs)]

    def write_part(self, data: bytes | bytearray) -> None:
        if self._next > MAX_BLOCKS:
            raise _fail(AzureError(f"more than {MAX_BLOCKS} blocks", retryable=False),
                        f"cannot write {self.location.uri}")
        try:
            self._blob.stage_block(block_id(self._token, self._next), bytes(data),
                                   length=len(data))
        except Exception as exc:
            raise _fail(exc, f"cannot write {self.location.uri}") from exc
        add_to_runs(self._runs, self._token, self._next)
        self._next += 1
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)

    def state(self) -> dict[str, Any]:
        return {"blocks": True, "runs": self._runs}

    def finish(self) -> tuple[int, str]:

        try:
            commit(self._blob, self._ids(), self.location.uri, new=True)
        except FileExistsError as exc:
            # Conditional (If-None-Match: *): never over a blob at the key.
            raise KeyTaken(f"{self.location.uri} exists") from exc
        self.created = True
        if self._hash is None:
            from pgjobs.poller import storage  # read back: the hash did not survive

            done = storage.hash_object(self.location, self._digests)  # and the parts checked
            self.checked = self._digests
            return done
        return self._size, self._hash.hexdigest()

    def cleanup(self) -> None:
        """Nothing to remove: uncommitted blocks are discarded by the next commit
        of the blob, or by Azure after 7 days."""


# --- the join of a parallel export ---------------------------------------------------


def blob_client(location: Any) -> Any:
    """The blob client of ``location`` (:func:`service` must not be None)."""
    return service().get_blob_client(location.base.split("://", 1)[1], location.path)


def join_blocks(digests: list[Any], block: int) -> list[tuple[int, int, int, str]]:
    """The blocks joining part objects of these ``[bytes, sha256]``, in order: (part
    index, start, end, block id), each at most ``block`` bytes. The id names the
    part's content and the range, so a block staged by any owner under it holds
    those bytes (while the part object is what it recorded), and a part exported
    again gets new ids."""
    blocks = []
    for index, (size, sha256) in enumerate(digests):
        for start in range(0, int(size), block):
            end = min(int(size), start + block)
            blocks.append((index, start, end, block_id(f"join/{index}/{sha256}/{end}", start)))
    return blocks


def block_lists(blob: Any) -> tuple[list[str], set[str]]:
    """The blob's committed block ids, in order, and its uncommitted ones (none of
    either when there is no blob)."""
    try:
        committed, uncommitted = blob.get_block_list("all")
    except Exception as exc:
        if _error(exc).code == "BlobNotFound":
            return [], set()
        raise _fail(exc, f"cannot list the blocks of {blob.url}") from exc
    return [b.id for b in committed], {b.id for b in uncommitted}


def stage(blob: Any, block: str, data: bytes | bytearray, what: str) -> None:
    try:
        blob.stage_block(block, bytes(data), length=len(data))
    except Exception as exc:
        raise _fail(exc, f"cannot write {what}") from exc


def commit(blob: Any, blocks: list[str], what: str, *, new: bool = False) -> None:
    """Put Block List. ``new``: only where no blob is (``If-None-Match: *``, the
    export's object itself): FileExistsError, nothing written, when the key
    holds a committed blob (a commit sent again after its answer was lost
    meets its own blob so: the caller tells it by its bytes)."""
    from azure.core import MatchConditions
    from azure.core import exceptions as ae
    from azure.storage.blob import BlobBlock

    condition = {"match_condition": MatchConditions.IfMissing} if new else {}
    try:
        blob.commit_block_list([BlobBlock(block_id=i) for i in blocks], **condition)
    except Exception as exc:
        if new and (isinstance(exc, (ae.ResourceExistsError, ae.ResourceModifiedError))
                    or getattr(exc, "status_code", None) in (409, 412)):
            raise FileExistsError(f"{what} exists") from exc
        raise _fail(exc, f"cannot write {what}") from exc


def purge_uncommitted(blob: Any) -> None:
    """Drop the blocks staged on a blob that has none committed (a join given up):
    Azure removes uncommitted blocks only with the blob, and a blob that was
    never committed cannot be deleted, so commit it empty and delete it. A
    committed blob is left alone (its next commit drops them)."""
    committed, uncommitted = block_lists(blob)
    if committed or not uncommitted:
        return
    commit(blob, [], blob.url)
    try:
        blob.delete_blob()
    except Exception as exc:
        raise _fail(exc, f"cannot delete {blob.url}") from exc
