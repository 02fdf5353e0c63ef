"""``pgjobs worker``: claims export and import jobs and streams them, up to N at once.

The loop LISTENs on channel ``pgjobs`` to wake up when a job is submitted and
also polls every few seconds, so a missed notification or a dropped connection
never strands a job; after the database restarts it reconnects and LISTENs
again. Each claimed job runs in its own thread (:class:`~pgjobs.poller.export.Exporter`,
:class:`~pgjobs.poller.importer.Importer`).

Between jobs it keeps storage tidy: it deletes the objects that ``pgjobs.prune``
queued in ``pgjobs.storage_deletions``, removes the upload leftovers queued there
when an export ended without its worker (open multipart uploads, staged parts,
temporary files: canceled while queued, say), and sweeps upload leftovers of jobs
that are no longer queued or running, as a backstop.

SIGTERM or SIGINT: stop claiming; every running export finishes the part in
flight, checkpoints it and hands its job back (``pgjobs.release``), so another
worker resumes it at once; the worker exits within seconds.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pgjobs import db, queries
from pgjobs.errors import PgjobsError
from pgjobs.poller import observe, storage
from pgjobs.poller.export import (
    DEFAULT_MAX_CHUNK_ROWS,
    DEFAULT_MAX_PART_SIZE,
    DEFAULT_STORAGE_RETRY,
    Exporter,
    Outcome,
    connection_lost,
)
from pgjobs.poller.importer import Importer
from pgjobs.poller.standby import ReadConfig

log = logging.getLogger("pgjobs.worker")


class Worker:
    """Runs export jobs until stopped (or, with ``once``, until none is left)."""

    def __init__(self, dsn: str, storage_uri: str, *, concurrency: int = 1, once: bool = False,
                 lease: float = 30.0, poll: float = 2.0, housekeeping: float = 30.0,
                 stale_after: timedelta = timedelta(hours=1),
                 on_event: Callable[[str], None] | None = None, name: str | None = None,
                 max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
                 max_part_size: int = DEFAULT_MAX_PART_SIZE,
                 storage_retry: float = DEFAULT_STORAGE_RETRY,
                 reads: ReadConfig | None = None,
                 on_start: Callable[[], None] | None = None):
        self.dsn = dsn
        # Called once the first connection is open (the CLI's start line): a wrong
        # DSN or a database without pgjobs is then the command's one error line.
        self.on_start = on_start
        self.reads = reads
        self.storage_retry = storage_retry
        self.max_chunk_rows = max_chunk_rows
        self.max_part_size = max_part_size
        self.storage_uri = storage_uri
        # The operator's folder, trusted for the worker's lifetime: links at or
        # above it followed.
        storage.trust_root(storage_uri)
        self.concurrency = max(1, concurrency)
        self.once = once
        self.lease = lease
        self.poll = poll
        self.housekeeping_every = housekeeping
        self.stale_after = stale_after
        self.on_event = on_event or (lambda line: log.info("%s", line))
        self.name = name or db.worker_name()
        self.stop = threading.Event()
        self.counts: dict[str, int] = {}  # outcome status -> jobs
        self._running: dict[int, threading.Thread] = {}
        self._helpers = 0  # parts of parallel exports taken by idle slots
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._listener: db.Connection | None = None
        self._control: db.Connection | None = None
        self._next_housekeeping = 0.0

    # --- the loop ----------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped; returns the number of jobs that did not succeed."""
        # A first connection that fails ends the worker, as it ends `pgjobs run
        # --loop` and `pgjobs ui`: a wrong DSN (a typo, a refused port, a missing
        # database) logged "database unavailable ...; retrying" for good, --once
        # too. Only a session lost after it opened is waited out (_loop).
        try:
            self._connect()
            # LISTEN succeeds in any database: a database without pgjobs is found
            # here, as `pgjobs ui` finds it, not by the first claim.
            assert self._control is not None
            db.execute(self._control, queries.INSTALLED)
        except BaseException:
            self._close()
            raise
        if self.on_start is not None:
            self.on_start()
        previous = self._install_signals()
        try:
            self._loop()
        finally:
            self.stop.set()
            for thread in list(self._running.values()):
                thread.join()
            self._close()
            self._restore_signals(previous)
        return self.counts.get("failed", 0) + self.counts.get("canceled", 0)

    def _loop(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._connect()
                claimed = self._claim()
                if time.monotonic() >= self._next_housekeeping:
                    self.housekeeping()
                    self._next_housekeeping = time.monotonic() + self.housekeeping_every
                if self.once and not claimed and not self._running:
                    return
                self._wait(0.2 if claimed else self.poll)
                delay = 0.5
            except (db.Error, PgjobsError) as exc:
                if not connection_lost(exc):
                    raise
                self._close()
                observe.count("errors", kind="database")
                observe.count("reconnects")
                self.on_event(f"database unavailable ({_first_line(exc)}); "
                              f"retrying in {delay:.1f}s")
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _connect(self) -> None:
        if self._listener is None or self._listener.closed or self._listener.broken:
            self._listener = db.listener(self.dsn, app="pgjobs worker")
        if self._control is None or self._control.closed or self._control.broken:
            self._control = db.connect(self.dsn, app="pgjobs worker")

    def _close(self) -> None:
        for conn in (self._listener, self._control):
            if conn is not None:
                with contextlib.suppress(Exception):  # closing a broken connection
                    conn.close()
        self._listener = self._control = None

    def _wait(self, timeout: float) -> None:
        """Until a notification, a job thread ends, a stop, or the timeout."""
        assert self._listener is not None
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self._wake.is_set():
                self._wake.clear()
                return
            if db.notified(self._listener, min(0.25, timeout)):
                return

    @observe.traced("pgjobs.claim")
    def _claim(self) -> int:
        with self._lock:
            for job_id, thread in list(self._running.items()):
                if not thread.is_alive():
                    del self._running[job_id]
            free = self.concurrency - len(self._running)
        if free <= 0 or self.stop.is_set():
            return 0
        assert self._control is not None
        rows = db.rows(self._control, queries.WORKER_CLAIM, {
            "worker": self.name, "lease": f"{self.lease} seconds", "limit": free})
        observe.count("jobs_claimed", len(rows))
        for row in rows:
            self._start(int(row["id"]), str(row["worker"]), str(row["kind"]))
        return len(rows) + self._help(free - len(rows))

    def _help(self, free: int) -> int:
        """Slots left idle take parts of running parallel exports (option parallel,
        :mod:`pgjobs.poller.parallel`): N workers export one job side by side."""
        from pgjobs.poller import parallel

        started = 0
        while started < free and not self.stop.is_set():
            assert self._control is not None
            rows = db.rows(self._control, queries.EXPORT_PART_CLAIM, {
                "id": None, "worker": self.name, "lease": f"{self.lease} seconds"})
            if not rows:
                break
            row = dict(rows[0])
            started += 1
            self._helpers += 1
            slot = -self._helpers  # helper threads share _running with jobs, by negative keys

            def work(row: dict[str, Any] = row) -> None:
                label = f"job {row['job_id']} part {row['part']}"
                observe.bind_job(row["job_id"])
                outcome: Outcome | None = None
                try:
                    outcome = parallel.PartExporter(
                        self.dsn, row, self.storage_uri, lease=self.lease, stop=self.stop,
                        max_chunk_rows=self.max_chunk_rows, max_part_size=self.max_part_size,
                        storage_retry=self.storage_retry, reads=self.reads).run()
                    self.on_event(f"{label} {outcome.status}"
                                  + (f": {outcome.error}" if outcome.error else ""))
                except BaseException:  # noqa: BLE001 - never kill the worker
                    log.exception("%s: worker thread crashed", label)
                observe.finished(outcome.status if outcome is not None else "lost")
                self._wake.set()

            thread = threading.Thread(target=work, daemon=True,
                                      name=f"pgjobs-export-{row['job_id']}-part{row['part']}")
            with self._lock:
                self._running[slot] = thread
            self.on_event(f"job {row['job_id']} part {row['part']} started")
            thread.start()
        return started

    def _start(self, job_id: int, identity: str, kind: str = "export") -> None:
        """Run the job claimed as ``identity`` (the worker's name plus the claim's own
        token: the fence of every call the exporter makes) in a thread.

        After a pause longer than the lease (a stopped process, a long GC) this loop
        can claim back a job one of its own threads still runs: that claim rescued
        the job and gave it a new identity, so the old thread is fenced off at its
        next heartbeat and stops. The new attempt waits for the old thread to end
        (keeping its own lease alive) before it resumes from the checkpoint: one
        process never runs a job twice at once."""
        self.on_event(f"job {job_id} {kind} started")
        with self._lock:
            previous = self._running.get(job_id)
        if previous is not None and not previous.is_alive():
            previous = None

        def work() -> None:
            observe.bind_job(job_id)
            try:
                if kind == "import":
                    outcome = Importer(self.dsn, job_id, identity, self.storage_uri,
                                       stop=self.stop, after=previous).run()
                else:
                    outcome = Exporter(self.dsn, job_id, identity, self.storage_uri,
                                       stop=self.stop, after=previous,
                                       max_chunk_rows=self.max_chunk_rows,
                                       max_part_size=self.max_part_size,
                                       storage_retry=self.storage_retry,
                                       reads=self.reads).run()
            except BaseException as exc:  # noqa: BLE001 - never kill the worker
                log.exception("job %s: worker thread crashed", job_id)
                outcome = Outcome(job_id, "lost", error=str(exc))
            with self._lock:
                self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
            self.on_event(_describe(outcome))
            observe.finished(outcome.status)
            self._wake.set()

        thread = threading.Thread(target=work, name=f"pgjobs-{kind}-{job_id}-{identity}",
                                  daemon=True)
        with self._lock:
            self._running[job_id] = thread
        thread.start()

    # --- housekeeping -----------------------------------------------------------

    def housekeeping(self) -> dict[str, int]:
        """Delete objects of pruned exports, remove queued upload leftovers, sweep
        stale upload leftovers."""
        deleted = self._storage_deletions()
        swept = 0
        try:
            swept = storage.sweep_stale(self.storage_uri, self._active_jobs, self.stale_after)
        except PgjobsError as exc:
            self.on_event(f"stale upload sweep failed: {exc}")
        swept += self._sweep_destinations()
        if deleted or swept:
            self.on_event(f"housekeeping: {deleted} pruned object(s) deleted, "
                          f"{swept} stale upload file(s) removed")
        return {"deleted": deleted, "swept": swept}

    def _sweep_destinations(self) -> int:
        """The stale-upload sweep under every other destination an ended export
        wrote under (its checkpoint's ``prefix``) that the storage allow-list
        still admits: a job's staged parts, open multipart uploads and temporary
        files sit under its destination, which is not always under this
        worker's --storage (queries.EXPORT_SWEEP_PREFIXES). A file:// one is
        walked below its trusted root only (links there are not followed). Only
        the destinations of exports that ended between --stale-after and an
        hour more ago: one listing each per turn."""
        assert self._control is not None
        swept = 0
        seen: set[str] = set()
        for row in db.rows(self._control, queries.EXPORT_SWEEP_PREFIXES,
                           {"own": storage.parse(self.storage_uri).uri,
                            "stale": self.stale_after}):
            prefix = str(row["prefix"])
            if prefix in seen or storage.parse(prefix).uri == storage.parse(
                    self.storage_uri).uri:
                continue
            seen.add(prefix)
            root = storage.trust_root(str(row["root"]))
            try:
                swept += storage.sweep_stale(prefix, self._active_jobs, self.stale_after)
            except PgjobsError as exc:
                self.on_event(f"stale upload sweep of {prefix} failed: {exc}")
            finally:
                storage.release_root(root)
        return swept

    def _active_jobs(self, ids: list[int]) -> set[int]:
        assert self._control is not None
        return {int(r["id"]) for r in db.rows(self._control, queries.EXPORT_ACTIVE_JOBS,
                                             {"ids": ids})}

    def _storage_deletions(self) -> int:
        assert self._control is not None
        done = 0
        while not self.stop.is_set():
            rows = db.rows(self._control, queries.STORAGE_DELETIONS_CLAIM,
                           {"limit": 100, "hold": "5 minutes"})
            if not rows:
                return done
            done += self._remove_claimed(rows)
        return done

    def _remove_claimed(self, rows: list[dict[str, Any]]) -> int:
        """Remove the storage deletions this worker claimed: how many went."""
        assert self._control is not None
        done = 0
        for row in rows:
            # One transaction a row: pgjobs.start_storage_deletion locks it until
            # it is settled, so a pgjobs.retry of its export (which drops the
            # rows of its upload under that lock) never lets a resumed attempt
            # take up an upload this removes.
            with self._control.transaction():
                if not db.scalar(self._control, queries.STORAGE_DELETION_START,
                                 {"id": row["id"]}):
                    continue
                done += self._storage_deletion(row)
        return done

    def _storage_deletion(self, row: dict[str, Any]) -> int:
        """Remove one claimed storage deletion and settle it: 1 done, 0 failed."""
        assert self._control is not None
        error: str | None = None
        root: str | None = None
        leftover = row["upload"] if isinstance(row["upload"], dict) else None
        # An import's rejects object its job may have created but never
        # recorded as created (pgjobs.prune): deleted only if it holds the bytes
        # whose digest the job recorded; anything else there is another's.
        # A Parquet file its export may have made without recording it
        # (`object_sha256`: the digest of the bytes it wrote there), likewise.
        digest = (leftover.get("rejects_sha256", leftover.get("object_sha256"))
                  if leftover is not None else None)
        # An export's object its job may have made but never recorded as made
        # (pgjobs.prune): deleted only if it reads back as the parts it streamed.
        parts = leftover.get("export_digests") if leftover is not None else None
        if isinstance(digest, str) or isinstance(parts, list):
            leftover = None
        try:
            outside = not storage.within(row["uri"], self.storage_uri)
            found = None
            if outside and (leftover is not None
                            or storage.parse(row["uri"]).scheme == "file"):
                # The allow-list prefix it was written under: its trusted root.
                found = db.scalar(self._control, queries.STORAGE_DELETION_ROOT,
                                  {"uri": row["uri"], "job": row["job_id"]})
                root = storage.trust_root(str(found)) if found is not None else None
            if leftover is not None:
                if outside and found is None:
                    # As the stale sweep: a destination disallowed since is
                    # not touched (the row waits, its error kept).
                    raise storage.StorageError(
                        f"refusing to remove an upload leftover under {row['uri']}: "
                        f"outside this worker's storage ({self.storage_uri}) and the "
                        "storage allow-list", retryable=False, sqlstate="42501",
                        hint="allow its prefix again (pgjobs.allow_storage) for a "
                             "worker to remove it, or remove it by hand and delete "
                             "the row of pgjobs.storage_deletions")
                # An export's upload leftover (pgjobs._queue_export_leftovers):
                # what it names goes, never the object at uri.
                storage.remove_leftover(row["uri"], leftover, int(row["job_id"]))
            elif isinstance(digest, str):
                # A file's temporary file too, when its writer was killed
                # mid-write (the name is the job's: no writer of it is left).
                storage.remove_temporaries(row["uri"])
                storage.delete_holding(row["uri"], digest)
            elif isinstance(parts, list):
                storage.delete_streamed(row["uri"], parts)
            else:
                storage.delete(row["uri"])
        except PgjobsError as exc:
            error = str(exc)
        finally:
            storage.release_root(root)
        db.scalar(self._control, queries.STORAGE_DELETION_FINISH,
                  {"id": row["id"], "error": error})
        if error is None:
            return 1
        self.on_event(f"cannot delete {row['uri']} (job {row['job_id']}): {error}")
        return 0

    # --- signals ----------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if not self.stop.is_set():
                self.on_event(f"{signal.Signals(signum).name}: stopping; running jobs are "
                              "checkpointed and handed back")
            self.stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _describe(outcome: Outcome) -> str:
    if outcome.status == "succeeded" and outcome.result and "source" in outcome.result:
        r = outcome.result
        return (f"job {outcome.job_id} succeeded: {r['rows']} rows from {r['source']} "
                f"({r['skipped']} skipped, {r['rejected']} rejected)")
    if outcome.status == "succeeded" and outcome.result:
        r = outcome.result
        return (f"job {outcome.job_id} succeeded: {r['rows']} rows, {r['bytes']} bytes "
                f"-> {r['uri']}")
    if outcome.error:
        return f"job {outcome.job_id} {outcome.status}: {outcome.error}"
    return f"job {outcome.job_id} {outcome.status}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
