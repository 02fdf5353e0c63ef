"""One export, many workers: the export option ``parallel: N``.

The database splits the job, when its worker first claims it, into up to N
parts: consecutive key ranges of the scope sized evenly by the (scope, key)
index (``pgjobs.export_parts_split``). Each part is its own resumable unit,
exactly as a whole export is (:class:`~pgjobs.poller.export.Exporter`): it is
claimed with its own lease and identity (``pgjobs.claim_export_part``), streams
its key range into its own object, checkpoints cursor, upload state and part
digests with every part through its fenced heartbeat
(``pgjobs.export_part_heartbeat``), and ends through
``pgjobs.export_part_finish``: a failed part is retried alone, from its
checkpoint, while the others go on.

The worker that holds the job (the coordinator) runs up to N parts in threads
of its own, and any worker with a free slot helps with parts of running jobs
(:func:`help_one`). The coordinator heartbeats the job every second (so a
cancel or a pause stops every part within about a second: a part's heartbeat
refuses once the job has one pending), and once every part has succeeded it
joins the parts' objects, in key order, into the export's one object (CSV and
JSONL; :mod:`~pgjobs.poller.join`): its bytes are those a ``parallel: 1`` export
writes (the CSV header comes with the first part; with gzip, each part is a run
of gzip members, so the object decompresses to the same bytes). The join is
checkpointed step by step (S3 and GCS copy the part objects server-side), the joined
object is read back against the size and SHA-256 every part recorded when it
ended, and only then is the job completed; the parts' objects are removed
afterwards.

A part that succeeded is never exported again, in this attempt or after
``pgjobs.retry``, while its object is what it recorded; a part whose object is
gone or changed (a cancel removed it, someone deleted, truncated or altered it)
is queued again alone (``pgjobs.export_parts_redo``), found before the parts
run (by size) or by the join (by content).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from typing import Any

from pgjobs import db, queries
from pgjobs.errors import PgjobsError, job_error, words
from pgjobs.poller import join, parquet, storage
from pgjobs.poller.export import (
    CHECKPOINT_VERSION,
    Exporter,
    LeaseLost,
    Outcome,
    Settings,
    Stopped,
    _Control,
    _retryable,
    _sqlstate,
    object_key,
)
from pgjobs.poller.storage import StorageError

log = logging.getLogger("pgjobs.export")

ONE_OBJECT_FORMATS = ("csv", "jsonl")
"""Formats whose parts are joined into one object; Parquet keeps each part's files
in the export's folder, all listed in ``result.uris`` in key order."""


MAX_PART_THREADS = 4
"""Parts one process streams side by side for one job: each holds up to three
parts of part_size in memory, so a process stays within its memory bound
whatever ``parallel`` a client asks; other workers' idle slots take the rest."""


def part_key(key: str, part: int) -> str:
    """The object of one part, next to the export's object: ``{job}.partNNNNN.{ext}``
    (the job id stays the leading number, as the stale-upload sweep expects)."""
    head, slash, name = key.rpartition("/")
    job, _, ext = name.partition(".")
    return f"{head}{slash}{job}.part{part:05d}.{ext}"


class _PartControl(_Control):
    """The control connection of one part: its heartbeat is the part's, fenced on
    the part's claim."""

    def __init__(self, dsn: str, job_id: int, part: int, worker: str, lease: float):
        super().__init__(dsn, job_id, worker, lease)
        self.part = part

    def heartbeat(self, done: int | None = None,
                  checkpoint: dict[str, Any] | None = None) -> bool:
        ok = bool(self.call(lambda c: db.scalar(c, queries.EXPORT_PART_HEARTBEAT, {
            "id": self.job_id, "part": self.part, "worker": self.worker, "done": done,
            "checkpoint": None if checkpoint is None else db.jsonb(checkpoint),
            "lease": f"{self.lease} seconds"})))
        if ok:
            self.last_ok = time.monotonic()
        return ok


class PartExporter(Exporter):
    """Streams one claimed part of a parallel export into its own object, resumable
    and verified as a whole export is; ends the part's claim (never the job)."""

    def __init__(self, dsn: str, row: dict[str, Any], storage_uri: str, *,
                 lease: float, **kwargs: Any):
        super().__init__(dsn, int(row["job_id"]), str(row["worker"]), storage_uri, **kwargs)
        self.part = int(row["part"])
        self.after_key: str | None = row["after_key"]
        self.until = row["until_key"]
        self.row = row
        self.control = _PartControl(dsn, self.job_id, self.part, self.worker, lease)

    def _start(self) -> Outcome:
        """The part's own start; Exporter.run ends it (released, lost or failed)."""
        job = self.control.call(lambda c: db.one(c, queries.EXPORT_JOB, {"id": self.job_id}))
        where = (job or {}).get("checkpoint") or {}
        if job is None or job["status"] != "running" or not where.get("uri") \
                or job["cancel_requested_at"] is not None:
            # Handed back, nothing written: a cancel that came since the claim
            # finds no upload of this attempt to remove (the part's kept one is
            # removed as it is handed back, and by the job's cleanup).
            raise Stopped()
        self.settings = Settings.of(job["payload"])
        self.format = self.settings.format
        self.gzip = self.settings.gzip
        ck = dict(self.row["checkpoint"] or {})
        if ck.get("v") != CHECKPOINT_VERSION:
            ck = {"v": CHECKPOINT_VERSION}
        ck["prefix"] = where["prefix"]
        if self.format == "parquet":
            # The part's files go into the export's folder (ParquetPart).
            ck["format"] = "parquet"
            ck["uri"] = where["uri"]
        else:
            ck["uri"] = _part_uri(where["prefix"], where["uri"], self.part)
        if not ck.get("eof") and ck.get("cursor") is None:
            ck["cursor"] = self.after_key  # a fresh part (or one reset to its start)
        self._grain(ck)
        self.job = {**job, "checkpoint": ck, "attempts": self.row["attempts"]}
        return self._run()

    def _run(self) -> Outcome:
        if self.format == "parquet":
            return ParquetPart(self).run()
        return super()._run()

    def _staging_path(self, prefix: str) -> str:
        # A folder per part inside the job's (the sweep reads the job id there):
        # a part that ends cleans up its own staged parts only.
        return f"{super()._staging_path(prefix)}p{self.part:05d}/"

    def _start_over(self) -> None:
        super()._start_over()
        self.state["cursor"] = self.after_key

    def _verify_stored(self, size: int, sha256: str) -> None:
        """Not read back here: the join reads every part's object and checks it against
        the size and SHA-256 this part records (what was streamed), so one read
        covers both (a whole export reads its object back once too)."""

    def _complete(self, size: int, sha256: str) -> Outcome:
        result = {"uri": self.location.uri, "rows": self.state["rows"], "bytes": size,
                  "sha256": sha256, "parts": self.state["parts"]}
        status = self._finish("succeeded", result=result)
        if status != "succeeded":
            return Outcome(self.job_id, "lost", error="lease lost before completing the part")
        self._discard()  # staged parts, temporary files: the part's object is complete
        return Outcome(self.job_id, "succeeded", result=result)

    def _hold_rows(self, conn: db.Connection, ended: str) -> bool:
        """A part's cleanup (canceled, or failed for good) holds the part's row
        (FOR SHARE), while no claim has taken the part since this attempt's:
        whoever continues the part (a retried job's, or a queued part's next
        claim) claims that row first (pgjobs.claim_export_part skips a held
        part), and a retried job's split queues a failed part again through
        it. The job's row is not held: a cancel still pending when the part
        ends is ended by the job's own worker, which must not wait for it."""
        return bool(db.rows(conn, queries.HOLD_ENDED_PART, {
            "id": self.job_id, "part": self.part, "worker": self.worker}))

    def _finish(self, status: str, *, result: dict[str, Any] | None = None,
                error: str | None = None) -> str | None:
        value = self.control.call(lambda c: db.scalar(c, queries.EXPORT_PART_FINISH, {
            "id": self.job_id, "part": self.part, "worker": self.worker, "status": status,
            "result": None if result is None else db.jsonb(result), "error": error}))
        return None if value is None else str(value)

    def _after_lost(self, why: str) -> Outcome:
        """A part's heartbeat refuses when the part was taken over, and also when its
        job was canceled or paused: then the part is still ours to hand back
        (fenced: a part taken over is left alone)."""
        log.info("job %s part %s: stopping: %s", self.job_id, self.part, why)
        released = self._release()
        return released if released.status != "released" else Outcome(
            self.job_id, "lost", error=why)

    def _release(self) -> Outcome:
        try:
            status = self._finish("released")
            job = self.control.call(lambda c: db.get_job(c, self.job_id))
        except (LeaseLost, PgjobsError, db.Error) as exc:
            return Outcome(self.job_id, "lost", error=f"could not release: {exc}")
        if job is not None and (job["status"] == "canceled" or job["cancel_requested_at"]):
            self._canceled_end()  # a canceled export leaves nothing
        return Outcome(self.job_id, "released" if status else "lost")

    def _fail(self, exc: BaseException) -> Outcome:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return self._release()
        message = job_error(exc)  # one line, one SQLSTATE (pgjobs/errors.py)
        decision = _retryable(exc)
        if not isinstance(exc, (StorageError, db.Error, PgjobsError)):
            log.exception("job %s part %s: unexpected error", self.job_id, self.part)
        try:
            if decision is None:
                decision = bool(self.control.call(lambda c: db.scalar(
                    c, queries.RETRYABLE_SQLSTATE, {"sqlstate": _sqlstate(exc)})))
            status = self._finish("retry" if decision else "failed",
                                  error=f"part {self.part}: {message}")
        except (LeaseLost, PgjobsError, db.Error) as err:
            return Outcome(self.job_id, "lost", error=f"{message} (could not record: {err})")
        if status is None:
            return self._after_lost(message)
        if status == "failed":
            if not decision:
                # A permanent error leaves nothing (holding the part's row: a
                # retried job's claim of the part waits for it); a part that used
                # its attempts on transient errors keeps its upload:
                # pgjobs.retry resumes it.
                self._failed_end()
            return Outcome(self.job_id, "failed", error=message)
        log.warning("job %s part %s: %s; the part is retried", self.job_id, self.part, message)
        return Outcome(self.job_id, "retrying", error=message)


class ParquetPart(parquet.ParquetExport):
    """One part of a parallel Parquet export: its files are the export's files of
    its key range, ``part-PPPPP-NNNNN.parquet`` in the export's folder (so the
    folder's files sort in key order), written, checkpointed, resumed and read
    back as a whole export's are; it ends its part, recording its files for the
    coordinator, which lists every part's files in ``result.uris``."""

    def __init__(self, ex: PartExporter):
        super().__init__(ex)
        self.part_ex = ex
        self.start = ex.after_key

    def file_uri(self, number: int) -> str:
        return f"{self.folder}part-{self.part_ex.part:05d}-{number:05d}.parquet"

    def _complete(self, result: dict[str, Any]) -> Outcome:
        ex = self.part_ex
        result = {**result, "files": ex.state["files"]}
        status = ex._finish("succeeded", result=result)
        if status != "succeeded":
            return Outcome(ex.job_id, "lost", error="lease lost before completing the part")
        return Outcome(ex.job_id, "succeeded", result=result)


def _part_uri(prefix: str, uri: str, part: int) -> str:
    rel = uri[len(storage.parse(prefix).uri):].lstrip("/")
    return storage.object_location(prefix, part_key(rel, part)).uri


def _claim(control: _Control, job_id: int | None, name: str,
           lease: float) -> dict[str, Any] | None:
    rows = control.call(lambda c: db.rows(c, queries.EXPORT_PART_CLAIM, {
        "id": job_id, "worker": name, "lease": f"{lease} seconds"}))
    return dict(rows[0]) if rows else None


def _part_options(ex: Exporter) -> dict[str, Any]:
    return {"stop": ex.stop, "max_chunk_rows": ex.max_chunk_rows,
            "max_part_size": ex.max_part_size, "storage_retry": ex.storage_retry_seconds,
            "reads": ex.read_config}


def help_one(dsn: str, name: str, storage_uri: str, *, lease: float = 30.0,
             stop: threading.Event | None = None, **options: Any) -> Outcome | None:
    """Claim one part of any running parallel export and stream it; None when there
    is none to claim (for an idle worker slot)."""
    control = _Control(dsn, 0, name, lease)
    try:
        row = _claim(control, None, name, lease)
    finally:
        control.close()
    if row is None:
        return None
    return PartExporter(dsn, row, storage_uri, lease=lease, stop=stop, **options).run()


MAX_REDO = 2
"""Times one attempt queues again parts whose objects changed and joins again."""


def run(ex: Exporter) -> Outcome:
    """Coordinate the claimed parallel export ``ex`` (its job row loaded): place the
    object, split, stream parts side by side, join, verify, complete. A part that
    succeeded earlier (in this attempt or before a retry) is never exported again
    while its object is what it recorded; one whose object is gone or changed
    (a cancel removed it, someone deleted or altered it) is queued again, alone."""
    parts = place(ex)
    _redo(ex, *_missing(ex))
    for redo in range(MAX_REDO + 1):
        rows = _coordinate(ex, parts)
        try:
            return _join(ex, rows)
        except join.PartsChanged as exc:
            if redo == MAX_REDO:
                raise StorageError(words(exc), retryable=True) from exc
            _redo(ex, exc.parts, exc.why)
    raise AssertionError("unreachable")


def _missing(ex: Exporter) -> tuple[list[int], str]:
    """Succeeded parts whose objects are gone or not their recorded size (one
    metadata request per object; the join reads them whole)."""
    rows = ex.control.call(lambda c: db.rows(c, queries.EXPORT_PARTS, {"id": ex.job_id}))
    done = [r for r in rows if r["status"] == "succeeded" and r["result"]]
    if ex.format in ONE_OBJECT_FORMATS:
        bad = join.changed_parts([r["result"] for r in done], read=False)
        return [int(done[i - 1]["part"]) for i in bad], "its object is gone or changed"
    bad_files = []
    for r in done:
        for f in r["result"].get("files") or []:
            try:
                ok = storage.exists(str(f["uri"])) and storage.size(str(f["uri"])) == int(
                    f["bytes"])
            except StorageError:
                ok = False
            if not ok:
                bad_files.append(int(r["part"]))
                break
    return bad_files, "its files are gone or changed"


def _redo(ex: Exporter, parts: list[int], why: str) -> None:
    """Queue ``parts`` again from scratch (only those) and forget the join, which
    held their old bytes."""
    if not parts:
        return
    log.warning("job %s: part(s) %s: %s; exporting them again", ex.job_id,
                ", ".join(map(str, parts)), why)
    join.Join(ex, []).discard(fenced=True)
    if ex.format in ONE_OBJECT_FORMATS:
        # Each part's object is the job's (the part's result records it made):
        # removed, so the part's new conditional write finds its key free;
        # only while the job is this attempt's (fenced before and after each):
        # the next owner's part may have written it again by now.
        rows = ex.control.call(lambda c: db.rows(c, queries.EXPORT_PARTS, {"id": ex.job_id}))
        for row in rows:
            if int(row["part"]) in parts and isinstance(row["result"], dict):
                uri = str(row["result"]["uri"])
                ex.storage_retry(functools.partial(  # storage down: retried, fenced again
                    storage.fenced, ex._fence,
                    functools.partial(storage.delete, uri, retries=False)), f"removing {uri}")
    if not ex.control.heartbeat(checkpoint=ex.state):
        raise LeaseLost("heartbeat refused")
    ex.control.call(lambda c: db.scalar(c, queries.EXPORT_PARTS_REDO, {
        "id": ex.job_id, "worker": ex.worker, "parts": parts, "why": why}))


def place(ex: Exporter) -> int:
    """Decide where the export goes (checkpointed in the job, where every part's
    worker reads it) and split the job into its parts; return their number."""
    job = ex.job
    ck = job["checkpoint"] or {}
    prefix = ck.get("prefix") or job["payload"].get("destination") or ex.storage_uri
    if ck.get("uri"):
        uri = ck["uri"]
    elif ex.format == "parquet":  # a folder: each part writes its own files into it
        uri = parquet.folder_uri(prefix, job["target"], job["scope"], ex.job_id)
    else:
        key = object_key(job["target"], job["scope"], ex.job_id, ex.format, ex.gzip)
        uri = storage.object_location(prefix, key).uri
    ex._check_allowed(prefix, uri)
    # (A Parquet folder: part 1's first file, _PartFiles.file_uri's name.)
    ex.check_unclaimed(uri if ex.format != "parquet"
                       else f"{uri.rstrip('/')}/part-{1:05d}-{0:05d}.parquet")
    ex.prefix = storage.parse(prefix).uri
    ex.location = storage.parse(uri)
    ex.staging = storage.staging_path(prefix, ex.job_id)
    ex.token = f"a{job['attempts']}-{os.urandom(4).hex()}"
    # Where the export goes, checkpointed before any part: every part (in this
    # process or another) writes next to it.
    ex.state = {"v": CHECKPOINT_VERSION, "uri": ex.location.uri, "prefix": ex.prefix,
                "format": ex.format, "gzip": ex.gzip, "parallel": True}
    if isinstance(ck.get("join"), dict) and ck.get("uri"):
        ex.state["join"] = ck["join"]  # a join under way: poller/join.py continues it
    if isinstance(ck.get("created"), dict) and ck.get("uri"):
        ex.state["created"] = ck["created"]  # the object at the key is the job's
    if not ex.control.heartbeat(checkpoint=ex.state):
        raise LeaseLost("heartbeat refused")
    parts = int(ex.control.call(lambda c: db.scalar(
        c, queries.EXPORT_PARTS_SPLIT, {"id": ex.job_id, "worker": ex.worker})))
    log.info("job %s: %s parts of the scope's keys", ex.job_id, parts)
    return parts


def _coordinate(ex: Exporter, parts: int) -> list[dict[str, Any]]:
    """Stream the parts side by side until every one has succeeded; their rows."""
    want = min(ex.settings.parallel, parts, MAX_PART_THREADS)
    name = ex.worker.split("#", 1)[0]
    lease = ex.control.lease
    done = threading.Event()
    part_stop = threading.Event()
    outcomes: list[Outcome] = []
    claim_errors: list[BaseException] = []
    options = {**_part_options(ex), "stop": part_stop}

    def work() -> None:
        while not done.is_set() and not ex.stop.is_set():
            try:
                row = _claim(ex.control, ex.job_id, name, lease)
            except LeaseLost:
                return  # the job's row or table held: a later thread claims again
            except (PgjobsError, db.Error) as exc:
                claim_errors.append(exc)  # judged by the coordinator (_claim_failed)
                return
            if row is None:
                return
            outcome = PartExporter(ex.dsn, row, ex.storage_uri, lease=lease, **options).run()
            outcomes.append(outcome)
            if outcome.status in ("lost", "released"):
                return

    threads: list[threading.Thread] = []
    try:
        while True:
            threads = [t for t in threads if t.is_alive()]
            rows = ex.control.call(lambda c: db.rows(c, queries.EXPORT_PARTS, {"id": ex.job_id}))
            states = [r["status"] for r in rows]
            if ex.on_progress is not None:  # the rows of every part so far
                ex.on_progress(sum(int(r["done"]) for r in rows),
                               sum(int(r["bytes"]) for r in rows))
            while claim_errors:
                _claim_failed(ex, claim_errors.pop(0))
            failed = [r for r in rows if r["status"] == "failed"]
            if failed:
                raise StorageError(f"part {failed[0]['part']} of {len(rows)} failed: "
                                   f"{failed[0]['error']}", retryable=False)
            if all(s == "succeeded" for s in states):
                break
            if ex.stop.is_set():
                raise Stopped()
            # A thread per part waiting to be claimed, up to N (a part running
            # elsewhere under an expired lease is claimable too).
            waiting = states.count("queued") + states.count("running") - len(threads)
            for _ in range(min(want - len(threads), max(waiting, 0))):
                thread = threading.Thread(target=work, daemon=True,
                                          name=f"pgjobs-export-{ex.job_id}-part")
                thread.start()
                threads.append(thread)
            time.sleep(0.25)
            # The job's own lease, and how a cancel or pause reaches it.
            if time.monotonic() - ex.control.last_ok >= 1.0 and not ex.control.heartbeat():
                raise LeaseLost("heartbeat refused")
    except BaseException:
        done.set()
        part_stop.set()  # every part of this process checkpoints and hands its part back
        for thread in threads:
            thread.join()
        raise
    done.set()
    for thread in threads:
        thread.join()
    log.info("job %s: %s parts written; joining them into %s", ex.job_id, len(rows),
             ex.location.uri)
    return [dict(r) for r in rows]


def _claim_failed(ex: Exporter, exc: BaseException) -> None:
    """A part's claim raised: a transient error (pgjobs.retryable_sqlstate: a
    deadlock with a heartbeat, a canceled statement, a lost connection) is
    said and the claim tried again by the next thread; any other error (a
    privilege revoked, a function gone) ends the attempt with it (the job's
    _fail records it, its SQLSTATE deciding), rather than claims failing
    unseen while the job's lease is renewed for ever."""
    decision = _retryable(exc)
    if decision is None:
        decision = bool(ex.control.call(lambda c: db.scalar(
            c, queries.RETRYABLE_SQLSTATE, {"sqlstate": _sqlstate(exc)})))
    if not decision:
        raise exc
    log.warning("job %s: claiming a part failed (%s); claiming it again", ex.job_id,
                job_error(exc))


def _forget_parts_if_canceled(ex: Exporter) -> None:
    """A canceled job leaves nothing of its own: remove its parts' objects, and
    the upload every part's checkpoint still holds (best effort). A part that
    ended its attempt keeping its upload for the next claim (failed retryably,
    handed back) before the cancel came has no claim left to remove it: the
    cancel wins here, whatever each part had decided. Only objects the job
    created are removed: a part's that finished (its result) or recorded its
    object as created, one a part was finishing that reads back as exactly the
    parts it streamed (the cancel refused the heartbeat recording it), and the
    join's once its checkpoint records it made it (``placed``, ``created``);
    whatever else is at those keys is another's.

    Every attempt's upload, not only the one a checkpoint names: the staged
    parts of every attempt of a part are in the part's staging folder, and on
    ``file://`` the temporary file of every attempt of a part
    (``.{job}.partNNNNN.ext.pgjobs-{token}.tmp``, a name only this job's part
    writes) is removed beside the part's object, so an attempt that made its
    own upload and ended before any record named it (its worker killed, or
    its own cleanup refused) leaves nothing either.

    Called by the coordinator's Exporter._discard however its attempt ends
    canceled (lease refused, handed back, failed), once every part thread of
    this process has ended (_coordinate joins them before it raises): no part
    of this process writes after it. A part running in another process is
    fenced by its lease (its heartbeat refuses once the job is canceled) and
    removes what it wrote itself as it ends (PartExporter._release); one killed
    between a write and its record leaves staged parts and temporary files,
    which this cleanup removes when it runs after them (else the stale-upload
    sweep), and an unrecorded part object (``{job}.partNNNNN.ext``) that only
    this cleanup removes, when it runs after that part's last write.

    Each removal only while the job is still canceled (Exporter._still_canceled,
    before and after it), all of them holding the job's row
    (Exporter._canceled_hold): a pgjobs.retry waits for the cleanup, and one
    that came before it leaves what is there to the next attempt, which
    resumes the parts' kept uploads and keeps the parts that succeeded."""
    try:
        job = ex.control.call(lambda c: db.get_job(c, ex.job_id))
    except (LeaseLost, PgjobsError, db.Error):
        return
    if job is None or job["status"] != "canceled":
        return
    try:
        with ex._canceled_hold():  # a retry waits for it (Exporter._canceled_hold)
            _forget_parts(ex)
    except (LeaseLost, PgjobsError, db.Error) as exc:
        log.info("job %s: cleanup stopped: %s", ex.job_id, words(exc))


def _remove(ex: Exporter, call: Any) -> None:
    """One removal of a canceled job's cleanup: only while the job is still
    canceled (LeaseLost raised once it is not); a storage failure is left for
    the stale-upload sweep (best effort)."""
    try:
        storage.fenced(ex._still_canceled, call, best_effort=True)
    except LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - best effort, as the rest of the cleanup
        log.warning("job %s: cleanup: %s (left for the stale-upload sweep)", ex.job_id,
                    words(exc))


def _forget_parts(ex: Exporter) -> None:
    """_forget_parts_if_canceled's removals, each fenced (:func:`_remove`)."""
    joined = ex.state.get("join") or {}
    made = isinstance(ex.state.get("created"), dict) or bool(
        joined.get("placed") or joined.get("phase") == "visible")
    # The join's temporary file or open upload: each of its removals fenced too.
    _remove(ex, functools.partial(join.Join(ex, []).discard, fence=ex._still_canceled))
    rows = ex.control.call(lambda c: db.rows(
        c, queries.EXPORT_PARTS_WRITTEN, {"id": ex.job_id}))
    if ex.format == "parquet":
        for row in rows:
            ck = row["checkpoint"] if isinstance(row["checkpoint"], dict) else {}
            for f in ck.get("files") or []:
                _remove(ex, functools.partial(storage.delete, str(f["uri"])))
            # Written and not recorded (the cancel refused the heartbeat after
            # the write): removed only while it holds the bytes named before it.
            for f in parquet._unrecorded(ck):
                # (And the temporary file of its conditional write, file://.)
                _remove(ex, functools.partial(storage.remove_temporaries, str(f["uri"])))
                _remove(ex, functools.partial(storage.delete_holding, str(f["uri"]),
                                              str(f["sha256"])))
        return
    for row in rows:
        where = _part_uri(ex.prefix, ex.location.uri, int(row["part"]))
        ck = row["checkpoint"] if isinstance(row["checkpoint"], dict) else {}
        if isinstance(ck.get("upload"), dict):
            _remove(ex, functools.partial(storage.discard_upload, storage.parse(where),
                                          ck["upload"]))
        if where.startswith("file:"):  # every attempt's temporary file of the part
            _remove(ex, functools.partial(storage.remove_temporaries, where))
        if isinstance(row["result"], dict) or isinstance(ck.get("created"), dict):
            _remove(ex, functools.partial(storage.delete, where))
        elif ck.get("phase") == "finalizing" and isinstance(ck.get("digests"), list) \
                and ck["digests"]:
            _remove(ex, functools.partial(storage.delete_streamed, where, ck["digests"]))
    if made:  # a join that had made it: not completed
        _remove(ex, functools.partial(storage.delete, ex.location.uri))


def _completed(ex: Exporter, results: list[dict[str, Any]], total_rows: int, size: int,
               sha256: str, parts: int) -> Outcome:
    result = {"uri": ex.location.uri, "uris": [ex.location.uri], "rows": total_rows,
              "bytes": size, "sha256": sha256, "format": ex.format, "gzip": ex.gzip,
              "parts": parts, "parallel_parts": len(results)}
    ok = ex.control.call(lambda c: db.complete(c, ex.job_id, ex.worker, result))
    if not ok:
        return Outcome(ex.job_id, "lost", error="lease lost before completing")
    for r in results:
        with contextlib.suppress(Exception):  # best effort: the object is complete
            storage.delete(str(r["uri"]))
    return Outcome(ex.job_id, "succeeded", result=result)


def _join_parquet(ex: Exporter, results: list[dict[str, Any]], total_rows: int) -> Outcome:
    """Parquet: the parts' files stay where they are, in the export's folder; every
    one is read back against what its part recorded (the SHA-256 of them all, in
    key order, is the result's, as for ``parallel: 1``), then the job completes
    listing them in ``result.uris``. A file that changed since its part ended
    fails the attempt retryably, as a CSV part does in the join."""
    files = [f for r in results for f in r["files"]]
    sha256, bad = parquet.read_back(files)
    if bad is not None:
        raise StorageError(f"{files[bad[0]]['uri']}: verification failed: {bad[1]}",
                           retryable=True)
    result = {"uri": ex.location.uri, "uris": [str(f["uri"]) for f in files],
              "rows": total_rows, "bytes": sum(int(f["bytes"]) for f in files),
              "sha256": sha256, "format": "parquet",
              "compression": ex.settings.compression,
              "gzip": False, "parts": len(files), "parallel_parts": len(results)}
    ok = ex.control.call(lambda c: db.complete(c, ex.job_id, ex.worker, result))
    return Outcome(ex.job_id, "succeeded" if ok else "lost", result=result)


def _join(ex: Exporter, rows: list[dict[str, Any]]) -> Outcome:
    results = [r["result"] for r in rows]
    total_rows = sum(int(r["rows"]) for r in results)
    if ex.format not in ONE_OBJECT_FORMATS:
        return _join_parquet(ex, results, total_rows)
    size, sha256, pieces = join.Join(ex, results).run()
    return _completed(ex, results, total_rows, size, sha256, parts=pieces)
