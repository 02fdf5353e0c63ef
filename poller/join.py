"""The join of a parallel CSV/JSONL export: its parts' objects, in key order, become
the export's one object, byte-identical to a ``parallel: 1`` export.

The join is checkpointed in the job (``checkpoint.join``, through the job's fenced
heartbeat after every step), so a worker killed while joining leaves a join that
the next owner continues rather than starts over:

* ``s3://``: one multipart upload of the export's key, whose parts S3 copies from
  the part objects (``UploadPartCopy``: no byte passes through the worker). S3
  wants every part but the last to be at least 5 MiB, so :func:`plan` copies each
  part object whole (in ranges of at most 5 GiB) and reads and uploads only what
  is too small to be a part of its own: a small part object together with the
  head of the next one, up to 5 MiB. The checkpoint holds the upload id and the
  ETags of the steps done; the plan depends only on the parts' sizes, so every
  owner cuts the same steps.
* ``file://``: the part files are copied by the kernel (``copy_file_range``), in
  order, at their fixed offsets into ``.{name}.pgjobs-join.tmp`` next to the
  object, fsynced after each, the bytes joined so far checkpointed; a resumed
  join cuts the file back to that length and goes on. The file is read back
  against every part's digest before it is renamed into place.
* ``gs://``: GCS composes the part objects server-side (no byte passes through
  the worker), 32 sources a call and a tree of calls beyond that, the
  intermediate objects under the job's staging folder
  (:func:`~pgjobs.poller.gcs.compose_plan`, deterministic in the parts). The
  checkpoint holds the generation of each object made; a resumed join keeps the
  calls whose objects are still those generations and makes again only the
  others that the object still needs.
* ``az://`` (with an account key or a SAS): each part object's bytes are staged
  as blocks of the object (Put Block) under ids naming the part's SHA-256 and the
  range, then committed in order (Put Block List). A resumed join asks Azure
  which blocks the blob holds (Get Block List) and stages only the others; one
  killed after the commit only reads the object back. Put Block From URL would
  spare the worker the bytes, but Azurite (the suite's emulator) does not
  implement it, so it is not used.
* ``memory://`` (process-local: nothing outlives the worker to resume) and
  ``az://`` through obstore's other credentials: the parts are streamed into a new
  upload of the object, as a whole export's parts are (not resumed: its staging
  folder is checkpointed before its first part, ``kind: restream``, so that a
  cancel or the next owner removes what a killed attempt staged).

Each owner counts the writes it makes to the store (compose calls, staged blocks)
in its ``history`` entry of the checkpoint (``writes``): what a resumed join did
again.

Whatever the store, the finished object is read back once and each part's range
compared with the size and SHA-256 its part recorded when it ended. A part whose
object is no longer that (removed, truncated, altered) raises :class:`PartsChanged`
naming it: the coordinator queues that part again (and only that part) and the
join starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from pgjobs.errors import words
from pgjobs.poller import azblob, gcs, storage
from pgjobs.poller import s3client as s3
from pgjobs.poller.storage import CannotResume, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pgjobs.poller.export import Exporter

log = logging.getLogger("pgjobs.export")

MAX_COPY = 5 * 1024 ** 3
"""The most bytes one UploadPartCopy may copy (S3's limit for a part)."""

Step = list[tuple[int, int, int]]
"""One part of the joined upload: (part index, start, end) byte ranges of the part
objects, in order. A step of one range of at least S3's minimum part size is
copied by S3; any other is read and uploaded."""


class PartsChanged(Exception):
    """Parts (numbered from 1) whose objects are not what they recorded."""

    def __init__(self, parts: list[int], why: str):
        super().__init__(why)
        self.parts = parts
        self.why = why


def plan(sizes: list[int], minimum: int = s3.MIN_PART, maximum: int = MAX_COPY) -> list[Step]:
    """The steps of a multipart upload joining objects of ``sizes`` bytes in order:
    every step but the last at least ``minimum`` bytes, a copied range at most
    ``maximum``; as much as possible copied, the rest (small objects, and the
    head of the object after one) read. Deterministic in ``sizes``."""
    steps: list[Step] = []
    pending: Step = []
    held = 0
    for index, size in enumerate(sizes):
        start = 0
        if pending:  # fill the small step held back with this object's head
            take = min(minimum - held, size)
            if take:
                pending.append((index, 0, take))
                held += take
                start = take
            if held >= minimum:
                steps.append(pending)
                pending, held = [], 0
        rest = size - start
        if rest == 0:
            continue
        if rest >= minimum:
            count = -(-rest // maximum)
            bounds = [start + rest * k // count for k in range(count + 1)]
            steps.extend([[(index, a, b)] for a, b in zip(bounds, bounds[1:], strict=False)])
        else:
            pending, held = [(index, start, size)], rest
    if pending or not steps:
        steps.append(pending)
    return steps


def copied(step: Step, minimum: int = s3.MIN_PART) -> bool:
    """Whether S3 copies this step (one range big enough to be a part)."""
    return len(step) == 1 and step[0][2] - step[0][1] >= minimum


def digests_of(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [[int(r["bytes"]), str(r["sha256"])] for r in results]


def changed_parts(results: list[dict[str, Any]], *, read: bool) -> list[int]:
    """The parts (from 1) whose objects are missing or not their recorded size, and
    with ``read``, not their recorded SHA-256 (each object read once)."""
    bad: list[int] = []
    for number, r in enumerate(results, start=1):
        uri = str(r["uri"])
        try:
            if read:
                got = storage.hash_object(storage.parse(uri))
                ok = got == (int(r["bytes"]), str(r["sha256"]))
            else:
                ok = storage.exists(uri) and storage.size(uri) == int(r["bytes"])
        except CannotResume:
            ok = False
        if not ok:
            bad.append(number)
    return bad


class Join:
    """Joins the parts of the coordinated export ``ex`` (its ``results``, in key
    order) into ``ex.location``; returns (bytes, sha256, upload parts)."""

    def __init__(self, ex: Exporter, results: list[dict[str, Any]]):
        self.ex = ex
        self.results = results
        self.digests = digests_of(results)
        self.total = sum(d[0] for d in self.digests)
        state = ex.state.get("join")
        self.state: dict[str, Any] = dict(state) if isinstance(state, dict) else {}
        self.delay = ex.delays.get("join", 0.0)
        # The object at the key is the join's: its own write made it visible
        # (this attempt's, or phase "visible" checkpointed). Only then does a
        # join that reads back wrong remove it.
        self.placed = self.state.get("phase") == "visible" or bool(self.state.get("placed"))

    def run(self) -> tuple[int, str, int]:
        """Join, verify, and record in the job's checkpoint that the object at
        the key is the job's (``created``: bytes and SHA-256), which a cancel
        and pgjobs.prune remove only then."""
        size, sha256, pieces = self._run()
        self.ex.state["created"] = {"bytes": size, "sha256": sha256}
        from pgjobs.poller.export import LeaseLost

        if not self.ex.control.heartbeat(checkpoint=self.ex.state):
            raise LeaseLost("heartbeat refused")
        return size, sha256, pieces

    def _run(self) -> tuple[int, str, int]:
        if not self.state.get("kind") and storage.taken(self.ex.location.uri):
            # A join not begun asks first; file:// and S3 also refuse atomically
            # as they make the object visible, GCS and Azure ask again right
            # before the write that makes it (a join under way knows what it
            # made: its kind's resume reads that from the checkpoint).
            if not isinstance(self.ex.state.get("created"), dict):
                return self._existing()
            found = self._holds_parts()
            if found is not None:
                self.discard(fenced=True)
                return found
            # The job's own object (its checkpoint records it created), joined
            # from parts since queued again: removed, and joined anew; only
            # while the job is still this attempt's (the next owner may have
            # joined it again already).
            uri = self.ex.location.uri
            self.ex.storage_retry(lambda: storage.fenced(
                self._fence, lambda: storage.delete(uri, retries=False)), "the old object")
            self.ex.state.pop("created", None)
            self._save()
        scheme = self.ex.location.scheme
        if scheme == "file":
            return self._file()
        together = all(storage.parse(str(r["uri"])).base == self.ex.location.base
                       for r in self.results)
        if scheme == "s3" and together:
            return self._s3()
        if scheme == "gs" and together:
            return self._gs()
        if scheme == "az" and azblob.service() is not None:
            return self._az()
        return self._restream()

    # --- the checkpoint -------------------------------------------------------

    def _save(self) -> None:
        from pgjobs.poller.export import LeaseLost

        self.ex.state["join"] = dict(self.state)
        if not self.ex.control.heartbeat(checkpoint=self.ex.state):
            raise LeaseLost("heartbeat refused")
        if self.delay:
            time.sleep(self.delay)

    def _fence(self) -> None:
        """Renew the lease, or raise LeaseLost: before (and after) every
        destructive storage action of the join (:func:`storage.fenced`): the
        object, its temporary file, its upload and its compose objects are
        at names every owner of the job shares, and a stale joiner must not
        remove what the next owner made or continues."""
        from pgjobs.poller.export import LeaseLost

        if not self.ex.control.heartbeat():
            raise LeaseLost("heartbeat refused")

    def _owned(self) -> bool:
        """Whether the job is still this attempt's (its lease renewed now)."""
        try:
            return bool(self.ex.control.heartbeat())
        except Exception:  # noqa: BLE001 - the database or the lease lost: not ours
            return False

    def _resumed(self, kind: str) -> bool:
        """Whether the checkpoint holds a join of this kind; else a fresh state."""
        if self.state.get("kind") == kind:
            self.state.setdefault("history", []).append(
                {"token": self.ex.token, "done": int(self.state.get("done", 0))})
            return True
        self.state = {"kind": kind, "done": 0, "history": [{"token": self.ex.token, "done": 0}]}
        return False

    def _wrote(self) -> None:
        """Count one write to the store (a block staged, a compose) by this owner, in
        its entry of the checkpoint's history: what a resumed join did again."""
        mine = self.state["history"][-1]
        mine["writes"] = int(mine.get("writes", 0)) + 1

    def _verify(self, read_back: Any) -> tuple[int, str]:
        """``read_back()`` hashes the joined bytes against every part's digest; a
        mismatch names the parts whose objects changed (read again one by one), or
        else fails the attempt retryably (the join itself went wrong)."""
        try:
            size, sha256 = read_back()
            if size != self.total:
                raise CannotResume(f"the join holds {size} bytes, the parts {self.total}")
        except CannotResume as exc:
            bad = changed_parts(self.results, read=True)
            self._start_over()
            why = f"{self.ex.location.uri}: the parts are not what they wrote ({words(exc)})"
            if bad:
                raise PartsChanged(bad, why) from exc
            raise StorageError(why, retryable=True) from exc
        return size, sha256

    def _existing(self) -> tuple[int, str, int]:
        """An object at the key that the join did not make visible: never
        written over. Accepted only as exactly the parts' bytes (an earlier
        attempt of this job joined it and ended before checkpointing that);
        any other object is another's, and the job fails for good (42710)."""
        found = self._holds_parts()
        if found is None:
            raise self.ex._taken(self.ex.location.uri)
        self.discard(fenced=True)
        return found

    def _holds_parts(self) -> tuple[int, str, int] | None:
        """(bytes, sha256, pieces) of the object at the key when it reads back
        as exactly the parts' bytes, part by part; else None."""
        try:
            size, sha256 = storage.hash_object(self.ex.location, self.digests)
        except (CannotResume, StorageError):
            return None
        if size != self.total:
            return None
        return size, sha256, len(self.results)

    def _placed(self) -> None:
        """The join's own write made the object visible: recorded with the
        join's next checkpoint (``placed``), so that a cancel meanwhile removes
        it (poller/parallel.py) and nothing else. Kept in the export's state
        at once, not only at that checkpoint: a fenced call before it (the
        restream's cleanup, the read-back's) raises LeaseLost when the cancel
        refused the lease, and the cancel's cleanup reads the state it left."""
        self.placed = True
        self.state["placed"] = True
        self.ex.state["join"] = dict(self.state)

    def _start_over(self) -> None:
        """A join that read back wrong is never resumed nor left visible: remove it
        (only when its own write made it visible: a ``file://`` join reads its
        temporary file back before placing it, and whatever is at the key then
        is another's) and checkpoint that there is none. Each removal only
        while the job is still this attempt's (fenced before and after): a
        stale joiner's object at the key may be the next owner's by now."""
        placed = self.placed
        self.discard(fenced=True)
        self.placed = False
        if placed:
            uri = self.ex.location.uri
            storage.fenced(self._fence, lambda: storage.delete(uri, retries=False),
                           best_effort=True)
        from pgjobs.poller.export import LeaseLost

        if not self.ex.control.heartbeat(checkpoint=self.ex.state):
            raise LeaseLost("heartbeat refused")

    def discard(self, *, fenced: bool = False,
                fence: Callable[[], None] | None = None) -> None:
        """Remove what the join left (its temporary file or open upload; never a
        finished object, which a retry overwrites) and forget it.

        ``fenced``: the join's own attempt discards it (to start over, or once
        the object is found whole): every removal only while the job is still
        this attempt's, renewed before and after it (:func:`storage.fenced`,
        LeaseLost raised): the next owner continues the same join (the same
        temporary file, upload, staged blocks and compose objects, named by
        the checkpoint). Not fenced: a canceled job's cleanup, whose lease is
        gone by then and whose join no one continues: ``fence`` then, its look
        at the job (Exporter._still_canceled), before and after each removal
        (a retry between two of them keeps the rest), all of them under the
        cleanup's hold of the job's row (Exporter._cleanup_hold)."""
        from pgjobs.poller.export import LeaseLost

        if fenced:
            fence = self._fence
        kind = self.state.get("kind")
        try:
            if kind == "file":
                tmp = self._tmp()
                storage.fenced(fence, lambda: storage.unlink_file(tmp, f"cannot delete {tmp}"))
            elif kind == "s3":
                # Its upload; and any it opened and never recorded, only while
                # the job is still this attempt's: a stale joiner does not know
                # its next owner's upload at the key (that owner, or the
                # removal queued when the job ends, aborts the unrecorded ones).
                names = ("opening", "upload_id") if fence is not None or self._owned() \
                    else ("upload_id",)
                recorded = {k: self.state[k] for k in names if k in self.state}
                storage.fenced(fence, lambda: storage.discard_upload(
                    self.ex.location, recorded, fence))
            elif kind == "gs":
                storage.fenced(fence, lambda: storage.delete_prefix(self.ex.location,
                                                                    self._scratch()))
            elif kind == "az" and azblob.service() is not None:
                storage.fenced(fence, lambda: azblob.purge_uncommitted(
                    azblob.blob_client(self.ex.location)))
            elif kind == "restream" and isinstance(self.state.get("upload"), dict):
                upload = self.state["upload"]
                storage.fenced(fence, lambda: storage.discard_upload(
                    self.ex.location, upload, fence))
        except LeaseLost:
            raise
        except Exception:  # noqa: BLE001 - best effort: the queued removal comes after
            log.debug("job %s: could not discard the join", self.ex.job_id, exc_info=True)
        self.state = {}
        self.ex.state.pop("join", None)

    # --- file:// ----------------------------------------------------------------

    def _tmp(self) -> str:
        path = self.ex.location.path
        return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.pgjobs-join.tmp")

    def _file(self) -> tuple[int, str, int]:
        path, tmp = self.ex.location.path, self._tmp()
        if self._resumed("file") and self.state.get("phase") == "visible":
            size, sha256 = self._verify(lambda: storage.hash_object(self.ex.location,
                                                                   self.digests))
            return size, sha256, len(self.results)
        done, offset = int(self.state["done"]), int(self.state.get("bytes", 0))
        what = f"cannot write {path}"
        try:
            # Folders below the trusted root opened (made) without following a link,
            # the file with O_NOFOLLOW relative to its folder (storage.open_file).
            out = -1
            if done:
                with contextlib.suppress(FileNotFoundError):
                    out = storage.open_file(tmp, os.O_WRONLY, what)
                if out >= 0 and os.fstat(out).st_size < offset:
                    os.close(out)
                    out = -1
            if out >= 0:
                os.ftruncate(out, offset)  # what follows the checkpoint is written again
            else:
                done, offset = 0, 0
                out = storage.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, what,
                                        create_folders=True, mode=0o644)
            try:
                for index in range(done, len(self.results)):
                    r = self.results[index]
                    left = int(r["bytes"])
                    part = storage.parse(str(r["uri"])).path
                    with open(storage.open_file(part, os.O_RDONLY, f"cannot read {r['uri']}"),
                              "rb") as src:
                        at = 0
                        while left:
                            n = os.copy_file_range(src.fileno(), out, left, at, offset)
                            if n == 0:
                                raise PartsChanged([index + 1], f"{r['uri']} is shorter "
                                                   "than its part wrote")
                            left -= n
                            at += n
                            offset += n
                    os.fsync(out)
                    self.state.update(done=index + 1, bytes=offset)
                    self._save()
            finally:
                os.close(out)
        except FileNotFoundError as exc:
            missing = changed_parts(self.results, read=False)
            if missing:
                raise PartsChanged(missing, f"part objects are gone ({words(exc)})") from exc
            raise storage.storage_error(exc, f"cannot write {path}") from exc
        except OSError as exc:
            raise storage.storage_error(exc, f"cannot write {path}") from exc
        # Read back before it is visible: nothing wrong ever appears at the key.
        size, sha256 = self._verify(lambda: storage.hash_object(storage.parse(
            "file://" + tmp), self.digests))
        try:
            # Only where no name is (linkat in that folder, fsynced): never over a file.
            storage.place_file(tmp, path, what)
        except FileExistsError:
            return self._existing()
        except OSError as exc:
            raise storage.storage_error(exc, f"cannot write {path}") from exc
        self._placed()
        self.state["phase"] = "visible"
        self._save()
        return size, sha256, len(self.results)

    # --- s3:// -----------------------------------------------------------------

    def _s3(self) -> tuple[int, str, int]:
        loc = self.ex.location
        client = s3.Client(loc.base.split("://", 1)[1])
        steps = plan([d[0] for d in self.digests])
        if self.total == 0:  # S3 refuses an empty multipart object
            if not self.ex.storage_retry(lambda: storage.create(loc.uri, b""), "the object"):
                return self._existing()
            self._placed()
            return self._verify(lambda: storage.hash_object(loc, self.digests)) + (1,)
        resumed = self._resumed("s3")
        if resumed and self.state.get("phase") != "visible":
            try:
                if not self.state.get("upload_id"):
                    raise CannotResume("its upload was opened but never recorded")
                if self.state.get("opening") is not None:
                    # Opened by an earlier owner and never recorded: no one can
                    # continue them (storage.remove_leftover, after the job ends).
                    from pgjobs.poller import upload_s3

                    upload_s3.abort_unrecorded(client, loc.path,
                                               keep={str(self.state["upload_id"])},
                                               fence=self._fence)
                present = client.list_parts(loc.path, str(self.state["upload_id"]))
                kept = list(self.state.get("etags", []))
                if any(present.get(n) != e for n, e in enumerate(kept, start=1)):
                    raise CannotResume(f"upload {self.state['upload_id']} lost parts")
            except (s3.S3Error, CannotResume) as exc:
                if isinstance(exc, s3.S3Error) and exc.code != "NoSuchUpload":
                    raise storage.storage_error(exc, f"cannot write {loc.uri}") from exc
                log.warning("job %s: cannot continue the join (%s); starting it over",
                            self.ex.job_id, exc)
                resumed = False
        restarts = 0
        while self.state.get("phase") != "visible":
            try:
                if not resumed:
                    earlier = self.state.get("opening") if self.state.get("kind") == "s3" \
                        else None
                    self.discard(fenced=True)
                    self._resumed("s3")
                    # Recorded before the create is sent: an upload whose create
                    # is answered and never recorded (the worker killed in
                    # between) is still found by its key.
                    self.state["opening"] = earlier if earlier is not None else time.time()
                    self._save()
                    upload_id = self.ex.storage_retry(lambda: self._s3_call(
                        lambda: self._s3_open(client)), "the join")
                    self.state.update(upload_id=upload_id, etags=[], done=0)
                    self._save()
                self._s3_steps(client, steps)
            except storage.KeyTaken:
                return self._existing()
            except storage.UploadLost as exc:
                # Aborted by a lifecycle rule or by hand: write the join again now.
                restarts += 1
                if restarts > 2:
                    raise StorageError(f"cannot write {loc.uri}: {words(exc)}",
                                       retryable=True) from exc
                log.warning("job %s: %s; starting the join over", self.ex.job_id, exc)
                resumed = False
        size, sha256 = self._verify(lambda: storage.hash_object(loc, self.digests))
        return size, sha256, len(steps)

    def _s3_open(self, client: s3.Client) -> str:
        """A new upload of the object, the key's unrecorded ones aborted first:
        an earlier owner's, or one a create sent before made with its answer
        lost (this call is retried). Only while the job is still this
        attempt's: the checkpoint is saved first, which renews the lease (or
        raises LeaseLost): a stale joiner must not abort its next owner's
        upload, which it does not know."""
        from pgjobs.poller import upload_s3  # it imports storage

        self._save()
        upload_s3.abort_unrecorded(client, self.ex.location.path, fence=self._fence)
        return str(client.create(self.ex.location.path))

    def _s3_steps(self, client: s3.Client, steps: list[Step]) -> None:
        """The steps not checkpointed yet, each checkpointed, then the complete."""
        loc = self.ex.location
        upload_id = str(self.state["upload_id"])
        etags: list[str] = list(self.state["etags"])
        for number in range(len(etags) + 1, len(steps) + 1):
            step = steps[number - 1]

            def one(step: Step = step, number: int = number) -> str:
                return self._s3_step(client, upload_id, number, step)

            etags.append(self.ex.storage_retry(one, f"part {number} of the join"))
            self.state.update(etags=etags, done=number)
            self._save()
        from pgjobs.poller import upload_s3  # it imports storage

        # Only where no object is (KeyTaken): never over an object there.
        self.ex.storage_retry(lambda: self._s3_call(
            lambda: upload_s3.complete_new(client, loc, upload_id, etags)), "the object")
        self._placed()
        self.state["phase"] = "visible"
        self._save()

    def _s3_call(self, call: Any) -> Any:
        try:
            return call()
        except s3.S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise storage.UploadLost(f"the join's upload is gone ({words(exc)})") from exc
            if exc.code in ("NoSuchKey", "404"):
                missing = changed_parts(self.results, read=False)
                if missing:
                    raise PartsChanged(missing, f"part objects are gone ({words(exc)})") from exc
            raise storage.storage_error(exc, f"cannot write {self.ex.location.uri}") from exc

    def _s3_step(self, client: s3.Client, upload_id: str, number: int, step: Step) -> str:
        key = self.ex.location.path
        if copied(step):
            index, start, end = step[0]
            source = storage.parse(str(self.results[index]["uri"])).path
            return str(self._s3_call(lambda: client.upload_part_copy(
                key, upload_id, number, source, start, end)))
        data = self._read(step)
        return str(self._s3_call(lambda: client.upload_part(key, upload_id, number, data))[0])

    def _read(self, step: Step) -> bytearray:
        """The bytes of ``step``'s ranges of the part objects, read through the
        worker; a part object gone or too short raises PartsChanged."""
        data = bytearray()
        try:
            for index, start, end in step:
                got = bytearray()
                blocks = storage.open_range(str(self.results[index]["uri"]), start,
                                            block=end - start)
                for block in blocks:
                    got += block
                    if len(got) >= end - start:
                        break
                close = getattr(blocks, "close", None)
                if close is not None:
                    close()
                if len(got) < end - start:
                    raise CannotResume(f"{self.results[index]['uri']} is shorter than its "
                                       "part wrote")
                data += got[:end - start]
        except (StorageError, CannotResume) as exc:
            missing = changed_parts(self.results, read=False)
            if missing:
                raise PartsChanged(missing, f"part objects are gone or shorter ({words(exc)})") \
                    from exc
            if isinstance(exc, CannotResume):
                raise StorageError(words(exc), retryable=True) from exc
            raise
        return data

    def _gone(self, exc: BaseException) -> BaseException:
        """A source of a compose was missing: PartsChanged naming the part objects
        that are gone, else (an intermediate object of the tree went) a retryable
        error: the next attempt makes that object again."""
        missing = changed_parts(self.results, read=False)
        if missing:
            return PartsChanged(missing, f"part objects are gone ({words(exc)})")
        return StorageError(f"cannot write {self.ex.location.uri}: {words(exc)}",
                            retryable=True)

    # --- gs:// -------------------------------------------------------------------

    def _scratch(self) -> str:
        """Where the compose tree's intermediate objects go: the job's staging
        folder, which the stale-upload sweep lists."""
        return f"{self.ex.staging}join/"

    def _gs(self) -> tuple[int, str, int]:
        """GCS composes the part objects server-side (no byte through the worker),
        in a tree when there are more than 32 (:func:`gcs.compose_plan`). Each call
        is checkpointed with the generation of the object it made; a resumed join
        makes only the calls :meth:`_gs_todo` finds missing."""
        loc = self.ex.location
        store = gcs.Store(loc.base.split("://", 1)[1])
        steps = gcs.compose_plan([storage.parse(str(r["uri"])).path for r in self.results],
                                 loc.path, self._scratch())
        made: list[int | None] = [None] * len(steps)
        if self._resumed("gs"):
            kept = list(self.state.get("generations") or [])
            if len(kept) == len(steps):
                made = [None if g is None else int(g) for g in kept]
        last_step = len(steps) - 1
        todo = self._gs_todo(store, steps, made)
        self.state.update(generations=made, done=len(steps) - len(todo))
        for k in todo:
            out, sources = steps[k]

            def one(out: str = out, sources: list[str] = sources, last: bool = k == last_step,
                    ) -> int:
                try:
                    # The last call makes the object: only where none is.
                    return gcs.compose_one(store, sources, out, new=last)
                except FileNotFoundError as exc:
                    raise self._gone(exc) from exc
                except gcs.GcsError as exc:
                    raise storage.storage_error(exc, f"cannot write {loc.uri}") from exc

            if k == last_step and storage.taken(loc.uri):
                return self._existing()  # the object's compose: never over another's
            try:
                made[k] = self.ex.storage_retry(one, f"compose {k + 1} of the join")
            except FileExistsError:
                return self._existing()  # created there after the look: refused
            if k == len(steps) - 1:  # the last makes the object
                self._placed()
            self._wrote()
            self.state.update(generations=made, done=int(self.state["done"]) + 1)
            self._save()
        size, sha256 = self._verify(lambda: storage.hash_object(loc, self.digests))
        # The tree's intermediate objects (best effort: delete_prefix), only
        # while the job is this attempt's: the next owner's compose reads them.
        storage.fenced(self._fence, lambda: storage.delete_prefix(loc, self._scratch()))
        self.state["phase"] = "visible"
        self._save()
        return size, sha256, len(steps)

    def _gs_todo(self, store: gcs.Store, steps: list[tuple[str, list[str]]],
                 made: list[int | None]) -> list[int]:
        """The compose calls to make, in order: from the object down the tree, a
        call whose object is still the generation it made stands (and the
        intermediate objects it was made from are not needed any more); any other
        is made again, with the intermediate objects it needs. ``made`` loses the
        generations that no longer stand."""
        producer = {out: k for k, (out, _) in enumerate(steps)}
        todo: set[int] = set()

        def need(k: int) -> None:
            out, sources = steps[k]
            if made[k] is not None:
                try:
                    if gcs.generation(store, out) == made[k]:
                        return
                except gcs.GcsError as exc:
                    raise storage.storage_error(exc, f"cannot read {out}") from exc
                log.warning("job %s: the join's compose object %s is gone or changed; "
                            "making it again", self.ex.job_id, out)
                made[k] = None
            todo.add(k)
            for source in sources:
                if source in producer:
                    need(producer[source])

        need(len(steps) - 1)
        return sorted(todo)

    # --- az:// -------------------------------------------------------------------

    def _az(self) -> tuple[int, str, int]:
        """Azure stages each part object's bytes as blocks of the object (Put
        Block, ids naming the part's content and range, :func:`azblob.join_blocks`)
        and commits them in order (Put Block List). A resumed join asks Azure which
        blocks it holds (Get Block List) and stages only the others; a join killed
        after its commit only reads the object back."""
        loc = self.ex.location
        blob = azblob.blob_client(loc)
        resumed = self._resumed("az")
        if not resumed or not self.state.get("block"):
            # Fixed for the life of the join (it names the blocks): the export's
            # part size, larger when Azure's 50,000 blocks would not hold the object
            # (each part object's last block may be short: one more per part).
            room = azblob.MAX_BLOCKS - len(self.digests)
            self.state["block"] = max(int(self.ex.part_size), -(-self.total // room), 1)
        blocks = azblob.join_blocks(self.digests, int(self.state["block"]))
        ids = [b[3] for b in blocks]
        committed, staged = self.ex.storage_retry(lambda: azblob.block_lists(blob),
                                                  "the join's blocks")
        if committed != ids or not resumed:
            present = staged | set(committed)  # a commit names either kind by id
            for number, (index, start, end, block) in enumerate(blocks, start=1):
                if block in present:  # staged before, by this join or an earlier owner
                    continue
                data = self._read([(index, start, end)])

                def one(block: str = block, data: bytearray = data) -> None:
                    azblob.stage(blob, block, data, loc.uri)

                self.ex.storage_retry(one, f"block {number} of the join")
                self._wrote()
                self.state["done"] = number
                self._save()
            if not (committed and set(committed) <= set(ids)) and storage.taken(loc.uri):
                # A blob there that is not of the join's blocks: another's.
                return self._existing()
            try:
                # Only where no blob is (If-None-Match: *), unless the blob
                # there is the join's own (its blocks: a commit killed before
                # its checkpoint), which the look above let through.
                self.ex.storage_retry(
                    lambda: azblob.commit(blob, ids, loc.uri, new=not committed), "the object")
            except FileExistsError:
                return self._existing()  # created there after the look: refused
            self._placed()
        size, sha256 = self._verify(lambda: storage.hash_object(loc, self.digests))
        self.state.update(done=len(blocks), phase="visible")
        self._save()
        return size, sha256, len(blocks)

    # --- other stores ----------------------------------------------------------

    def _restream(self) -> tuple[int, str, int]:
        """The parts streamed into a new upload of the object (not checkpointed)."""
        ex = self.ex
        digests: list[Any] = []
        if self.state.get("kind") == "restream":
            self.discard(fenced=True)  # an earlier attempt's, never resumed: its parts go
        def record(opening: dict[str, Any]) -> None:
            # A native S3 upload about to be opened (parts in another bucket).
            self.state = {"kind": "restream", "upload": opening}
            self._save()

        upload = storage.resume_upload(ex.location, ex.staging, ex.token, None,
                                       part_size=ex.part_size, digests=digests, record=record,
                                       fence=ex._fence)
        if upload.state().get("staging"):
            # Its staged parts (this attempt's folder) named in the checkpoint
            # before the first is written: a cancel, or the next owner, removes
            # what an attempt killed meanwhile left (storage.remove_leftover).
            self.state = {"kind": "restream", "upload": upload.state()}
            self._save()
        buffer = bytearray()
        whole = hashlib.sha256()

        def put(data: bytes | bytearray) -> None:
            sha256 = ex.storage_retry(lambda: upload.write_part(data),
                                      f"part {len(digests) + 1} of the join")
            digests.append([len(data), sha256 or hashlib.sha256(data).hexdigest()])
            ex.control.keepalive()

        for number, r in enumerate(self.results, start=1):
            check = hashlib.sha256()
            size = 0
            try:
                for block in storage.open_range(str(r["uri"])):
                    check.update(block)
                    whole.update(block)
                    size += len(block)
                    buffer += block
                    while len(buffer) >= ex.part_size:
                        put(buffer[:ex.part_size])  # one copy, a bytearray: sent as it is
                        del buffer[:ex.part_size]
            except StorageError as exc:
                if not changed_parts([r], read=False):
                    raise
                self._cleanup(upload)
                raise PartsChanged([number], f"{r['uri']} is gone ({words(exc)})") from exc
            if (size, check.hexdigest()) != (int(r["bytes"]), r["sha256"]):
                self._cleanup(upload)
                raise PartsChanged([number], f"{r['uri']} is not what its part wrote "
                                   f"({size} bytes, expected {r['bytes']})")
        if buffer or not digests:
            put(buffer)
        try:
            size, sha256 = ex.storage_retry(upload.finish, "the object")
        except storage.KeyTaken:
            return self._existing()  # never written over
        if upload.created:
            self._placed()
        if (size, sha256) != (self.total, whole.hexdigest()):
            raise StorageError(f"{ex.location.uri}: the join wrote {size} bytes (sha256 "
                               f"{sha256}), the parts hold {self.total}", retryable=True)
        stored = self._verify(lambda: storage.hash_object(ex.location, self.digests))
        self._cleanup(upload)
        return stored[0], stored[1], len(digests)

    def _cleanup(self, upload: storage.Upload) -> None:
        """The restream's staged parts removed (best effort), only while the job
        is this attempt's: its staging folder is the job's, where the next
        owner stages its own."""
        storage.fenced(self._fence, upload.cleanup, best_effort=True)
