"""Staged uploads through obstore: each part is a hidden object, joined at the end.

For stores whose own resumable mechanism pgjobs cannot use (``az://`` with
credentials only obstore handles, ``s3://`` with parts under 5 MiB): parts go to
``{destination prefix}.pgjobs-staging/{job}/{token}/{n}``, checkpointed as runs
of part numbers per owner; :meth:`StagedUpload.finish` streams them, in order,
into one (internally multipart, atomic) put of the object, so nothing is
visible at its key before that.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from pgjobs.poller.gcs import calls as obstore  # as storage uses it: gs:// via Google
from pgjobs.poller.storage import (
    COMPOSE_CHUNK,
    NOT_FOUND,
    Location,
    delete_prefix,
    storage_error,
    store_for,
)
from pgjobs.poller.upload import (
    CannotResume,
    PartDigests,
    Upload,
    add_to_runs,
    load_runs,
    require_staged,
    run_parts,
)


class StagedUpload(Upload):
    """Object stores: each part is a hidden object; ``finish`` streams them into the
    object with one multipart put (atomic: nothing is visible before it completes)
    and computes the SHA-256 on the way."""

    def __init__(self, location: Location, staging: str, token: str,
                 state: dict[str, Any] | None, *, verify: bool = True,
                 digests: list[Any] | None = None):
        self.location = location
        self._digests = digests
        self._store = store_for(location)
        self._staging = (state or {}).get("staging") or staging
        self._token = token
        self._runs, self._next = load_runs(state)
        if state and verify and self._runs:
            self._verify()

    def _part_path(self, token: str, number: int) -> str:
        return f"{self._staging}{token}/{number:06d}"

    def _parts(self) -> Iterator[str]:
        for token, number in run_parts(self._runs):
            yield self._part_path(token, number)

    def _verify(self) -> None:
        require_staged(self._parts(), self._staging,
                       lambda: obstore.list(self._store, self._staging), Exception, storage_error)

    def write_part(self, data: bytes | bytearray) -> None:
        path = self._part_path(self._token, self._next)
        try:
            obstore.put(self._store, path, data, use_multipart=len(data) > 64 * 1024 * 1024)
        except Exception as exc:
            raise storage_error(exc, f"cannot write {self.location.base}/{path}") from exc
        add_to_runs(self._runs, self._token, self._next)
        self._next += 1

    def state(self) -> dict[str, Any]:
        return {"staging": self._staging, "runs": self._runs}

    def finish(self) -> tuple[int, str]:
        """Compose the parts into the object; with part digests, each part's bytes
        are checked on the way and a mismatch aborts the put (nothing visible)."""
        digest = hashlib.sha256()
        check = PartDigests(self._digests, whole=False) if self._digests is not None else None
        size = 0
        # obstore drives put()'s iterator from inside its runtime, where another
        # obstore call would deadlock: a helper thread reads the parts.
        blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        abandon = threading.Event()

        def read_parts() -> None:
            try:
                for path in self._parts():
                    try:
                        result = obstore.get(self._store, path)
                    except NOT_FOUND:
                        raise CannotResume(f"staged part {path} is gone") from None
                    for block in result.stream(min_chunk_size=COMPOSE_CHUNK):
                        while not abandon.is_set():
                            try:
                                blocks.put(bytes(block), timeout=0.5)
                                break
                            except queue.Full:
                                continue
                        if abandon.is_set():
                            return
                blocks.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                blocks.put(exc)

        def stream() -> Iterator[bytes]:
            nonlocal size
            while True:
                item = blocks.get()
                if item is None:
                    if check is not None:
                        check.finish()
                    return
                if isinstance(item, BaseException):
                    raise item
                if check is not None:
                    check.update(item)
                digest.update(item)
                size += len(item)
                yield item

        reader = threading.Thread(target=read_parts, name="pgjobs-compose", daemon=True)
        reader.start()
        try:
            # A failing iterator aborts the multipart upload: nothing becomes visible.
            obstore.put(self._store, self.location.path, stream(), chunk_size=COMPOSE_CHUNK,
                        max_concurrency=4)
        except CannotResume:
            raise
        except Exception as exc:
            raise storage_error(exc, f"cannot write {self.location.uri}") from exc
        finally:
            abandon.set()
            reader.join(timeout=5)
        self.created = True
        return size, digest.hexdigest()

    def cleanup(self) -> None:
        delete_prefix(self.location, self._staging)

