"""`pgjobs run`: the engine loop outside pg_cron, with one or more runners.

Each runner is a thread with its own connection calling ``CALL
pgjobs.run(budget)`` again and again. Between idle calls it waits on ``LISTEN
pgjobs`` for a ``submitted`` event (or ``idle`` seconds, whichever comes
first), so a job submitted while the runners are idle starts at once rather
than at the next poll. A notification is a wake-up only: any role may NOTIFY
any channel, so its payload decides nothing but "call again now"; the claim
reads the table. Runners never take the same job (claim's SKIP LOCKED) nor
two writers of one scope (the gate); jobs of different scopes run side by
side. While a CALL runs, a thread of each runner reads the progress of the
jobs it holds on a connection of its own (:class:`Progress`), since the CALL
says nothing until it returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from pgjobs import db, queries, units
from pgjobs.cli.common import a_job
from pgjobs.cli.output import printable, text
from pgjobs.cli.progress import FINAL, Waits, _wakeup, left_unchanged
from pgjobs.errors import PgjobsError

IDLE_CALL_SECONDS = 0.5
"""A CALL that returns sooner found nothing to do: wait before the next."""


def _submitted(conn: Any, timeout: float) -> bool:
    """Wait up to timeout seconds for a notification that reads as a
    `submitted` event; True if one came (a hint, never trusted further). The
    notifications queued behind it are dropped (db.drain): any role may send
    a burst of them, and each would be a CALL pgjobs.run."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for payload in db.notifications(conn, left, stop_after=1):
            wakeup = _wakeup(payload)
            if wakeup is not None and wakeup[1] == "submitted":
                db.drain(conn)
                return True


def first_line(error: Any) -> str:
    """An error's first line (the rest is `pgjobs status`'s to show)."""
    return printable(str(error).strip().split("\n", 1)[0])


def _epoch(value: Any, default: float = 0.0) -> float:
    """A timestamp (a datetime, or ISO 8601 text as checkpoint.throttled.since
    holds it) as epoch seconds; ``default`` when it is neither."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return default
    return value.timestamp() if isinstance(value, datetime) else default


def _amount(job: dict[str, Any]) -> str:
    """``500/1000 rows (50%)``: done/total in what the kind counts."""
    total = job.get("total")
    pct = f" ({100 * job['done'] / total:.0f}%)" if total else ""
    return (f"{job['done']}/{'?' if total is None else total} "
            f"{units.unit(str(job['kind']))}{pct}")


class _Seen:
    """What this process knows of one job it ran: its last claim identity and
    attempts as seen, the held spell last said, and its waits."""

    def __init__(self) -> None:
        self.worker: str | None = None
        self.spell: str | None = None  # the `since` of the held spell last seen
        self.held_at = 0.0  # the server's clock at the last look (epoch seconds)
        self.waits = Waits()
        self.shown: int | None = None  # the done count of the last progress line


class RunReport:
    """The lines `pgjobs run` prints on stderr about the jobs its runners
    work, from the rows queries.RUN_SEEN reads after each CALL. Shared by the
    runners of one process (a job one runner handed back, another may finish:
    its waits are one record), so lines of one look are printed together.
    With more than one runner each line names the runner that saw it."""

    LIMIT = 10000
    """Jobs remembered at most (handed back and then run elsewhere, a job is
    never seen to end here): past that the memory starts again."""

    def __init__(self, runners: int) -> None:
        self.runners = runners
        self._lock = threading.Lock()
        self._jobs: dict[int, _Seen] = {}

    def saw(self, runner: int, rows: list[dict[str, Any]]) -> None:
        """One look of runner ``runner`` (1-based): RUN_SEEN's rows."""
        with self._lock:
            for row in rows:
                if row.get("id") is None:
                    continue  # no job changed: the look's clock only
                prefix = f"runner {runner}: " if self.runners > 1 else ""
                for line in self._lines(row):
                    click.echo(printable(prefix + line), err=True)

    def progress(self, runner: int, rows: list[dict[str, Any]], ended: threading.Event) -> None:
        """What runner ``runner``'s CALL has done so far (queries.RUN_PROGRESS's
        rows, read by :class:`Progress` while it runs): a job's started line the
        first time, then ``job N delete progress: done/total rows (pct)`` each
        time its done count moved (above 0, below its total). Nothing once
        ``ended`` is set: the CALL returned, and its look (:meth:`saw`) says the
        rest, after these lines."""
        with self._lock:
            if ended.is_set():
                return
            prefix = f"runner {runner}: " if self.runners > 1 else ""
            for job in rows:
                seen, out = self._first_sight(job)
                # Work done and some left: none at 0, and none at 100% (the
                # succeeded line follows), so a job of one page gets none.
                total = job["total"]
                moving = job["done"] > 0 and (total is None or job["done"] < total)
                if moving and job["done"] != seen.shown:
                    seen.shown = job["done"]
                    out.append(f"job {job['id']} {job['kind']} progress: {_amount(job)}")
                for line in out:
                    click.echo(printable(prefix + line), err=True)

    def _first_sight(self, job: dict[str, Any]) -> tuple[_Seen, list[str]]:
        """The record of a job, and its started (or resumed) line when this
        process sees it for the first time."""
        job_id, kind = job["id"], str(job["kind"])
        seen = self._jobs.get(job_id)
        if seen is not None:
            return seen, []
        if len(self._jobs) >= self.LIMIT:
            self._jobs.clear()
        seen = self._jobs[job_id] = _Seen()
        if job["started_at"] is not None and job["started_at"] < job["since"]:
            return seen, [f"job {job_id} resumed: {a_job(kind)} started at "
                          f"{text(job['started_at'])}, taken up from its checkpoint"]
        return seen, [f"job {job_id} started: {a_job(kind)}"]

    def _lines(self, job: dict[str, Any]) -> list[str]:
        job_id, kind, status = job["id"], str(job["kind"]), str(job["status"])
        name = f"job {job_id} {kind}"
        seen, out = self._first_sight(job)
        retried = (status == "queued" and job["error"] is not None
                   and job["run_at"] > job["updated_at"] and not self._held_back(job))
        throttled = job.get("throttled")
        spell = None
        if status not in FINAL and isinstance(throttled, dict) and throttled.get("reason"):
            spell = str(throttled.get("since"))
        # Waits' clock is the server's: a spell from its `since` to the last
        # look that still saw it (the CALL hides when in between it ended).
        at = _epoch(job["at"])
        if spell is not None and spell != seen.spell:
            now = _epoch(throttled.get("since"), at) if isinstance(throttled, dict) else at
        elif spell is None and seen.spell is not None:
            now = seen.held_at
        else:
            now = at
        if job["worker"] != seen.worker:
            # A claim of this look: the job ran under it (Waits counts hands
            # and retries from running rows; a hand-back took its attempt back).
            seen.worker = job["worker"]
            ran = 0 if status in FINAL or retried or status == "running" else 1
            seen.waits.see({**job, "status": "running", "attempts": job["attempts"] + ran}, now)
        seen.waits.see(job, now)
        if spell is not None and spell != seen.spell and isinstance(throttled, dict):
            reason = first_line(throttled["reason"])
            ends = "" if self._held_back(job) else (
                "; it goes on by itself once that is back under its limit")
            out.append(f"job {job_id} held: {reason}{ends}")
        seen.spell, seen.held_at = spell, at
        if status == "queued" and retried:
            out.append(f"{name} attempt {job['attempts']} of {job['max_attempts']} failed at "
                       f"{_amount(job)}, retried from its checkpoint at {text(job['run_at'])}: "
                       f"{first_line(job['error'])}")
        elif status == "queued":
            why = ("while held (see above)" if self._held_back(job)
                   else "at its budget's end")
            out.append(f"{name} handed back {why}: {_amount(job)}; the next run resumes it "
                       "from its checkpoint")
        elif status == "paused":
            out.append(f"{name} paused at {_amount(job)}: `pgjobs resume {job_id}` "
                       "continues it")
        elif status == "running":
            out.append(f"{name} left running at {_amount(job)} under this runner's lease "
                       "(its row was held by another session): a later run takes it back "
                       "once the lease lapses")
        elif status == "failed":
            out.append(f"{name} failed at {_amount(job)}: {first_line(job['error'])}")
        elif status in FINAL:
            out.append(f"{name} {status}: {_amount(job)}")
            left = left_unchanged(job)
            if left:
                out.append(left)
        if status in FINAL:
            out.extend(f"job {job_id} waited: {line}" for line in seen.waits.lines(at))
            del self._jobs[job_id]
        return out

    @staticmethod
    def _held_back(job: dict[str, Any]) -> bool:
        """Handed back for a session holding its table or the DDL fence
        (pgjobs._table_hand_back, pgjobs._fence_hand_back: the note says what,
        what ends it, and `until`, when it is due again), not at a budget's end."""
        throttled = job.get("throttled")
        return isinstance(throttled, dict) and throttled.get("until") is not None


PROGRESS_SECONDS = 1.0
"""While a CALL runs, how often its runner's :class:`Progress` looks (at most one
progress line a job per look)."""
PROGRESS_LOCK_TIMEOUT = "500ms"
"""How long one look of :class:`Progress` waits for a lock before it is skipped."""
PROGRESS_STATEMENT_TIMEOUT = "5s"
"""How long one look of :class:`Progress` may run on the server before it is
canceled (a slow server, a look stuck without a lock): the session stays."""


class Progress:
    """The progress of one runner's CALLs while they run. A CALL pgjobs.run says
    nothing until it returns, so an operator watching a long budget saw no line
    for its whole length. Each page commits its done count: a thread with a
    connection of its own (application_name ``pgjobs run progress``: not a
    session that drives the engine, for the doctor) reads, once each
    :data:`PROGRESS_SECONDS` while a CALL runs, the jobs that CALL holds
    (queries.RUN_PROGRESS) and hands them to the report. Best effort: a look
    that fails closes its connection and the next opens another; the lines
    after the CALL come as before. The CALL never waits for a look: a look
    still in flight when its CALL ends (blocked, slow, a server that does not
    answer) is left to end on its own, with its connection, and says nothing
    (its CALL ended); the next CALL's looks take the kept connection when the
    last look gave it back, else open one of their own."""

    def __init__(self, connect: Any, report: RunReport, index: int, mine: str,
                 pid: int) -> None:
        self._connect, self._report, self._index = connect, report, index
        self._mine, self._pid = mine, pid
        self._lock = threading.Lock()
        self._conn: Any = None  # the kept connection, while no look holds it
        self._closed = False

    @contextmanager
    def during_call(self, since: Any) -> Iterator[None]:
        """Look while the block (one CALL) runs; when it ends, no line more."""
        ended = threading.Event()
        thread = threading.Thread(target=self._watch, args=(since, ended),
                                  name=f"pgjobs-progress-{self._index}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            # Before the look after the CALL: its lines come last (a look that
            # ends later says nothing, RunReport.progress). Not joined: a look
            # in flight must not hold up the CALL's end.
            ended.set()

    def _watch(self, since: Any, ended: threading.Event) -> None:
        conn = None
        try:
            while not ended.wait(PROGRESS_SECONDS):
                try:
                    if conn is None:
                        conn = self._take() or self._open()
                    rows = db.rows(conn, queries.RUN_PROGRESS,
                                   {"mine": self._mine, "pid": self._pid, "since": since})
                except PgjobsError as exc:
                    if conn is not None and db.connection_lost(exc):
                        conn.close()
                        conn = None  # the next look connects again
                    continue
                self._report.progress(self._index, rows, ended)
        finally:
            self._give_back(conn)

    def _open(self) -> Any:
        """A new session for the looks: the engine's search path; a look never
        waits on a lock (a migrate's on pgjobs.jobs) nor runs long."""
        conn = self._connect(app="pgjobs run progress")
        try:
            db.execute(conn, queries.RUN_SEARCH_PATH)
            db.execute(conn, queries.SET_LOOK_TIMEOUTS,
                       {"lock": PROGRESS_LOCK_TIMEOUT, "statement": PROGRESS_STATEMENT_TIMEOUT})
        except BaseException:
            conn.close()
            raise
        return conn

    def _take(self) -> Any:
        with self._lock:
            conn, self._conn = self._conn, None
        return conn

    def _give_back(self, conn: Any) -> None:
        """Keep ``conn`` for the next CALL's looks; close it when one is kept
        already (a look that outlived its CALL) or the runner closed."""
        if conn is None:
            return
        with self._lock:
            if self._conn is None and not self._closed:
                self._conn, conn = conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """The runner's session ended: close the kept connection (a look still
        in flight closes its own when it ends)."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
"""With --loop, the waits before each new connection after a lost session (then
the last one, again and again)."""


def run_loop(connect: Any, budget: str, loop: bool, idle: float,
             stop: threading.Event | None = None, live: set[Any] | None = None,
             report: RunReport | None = None, index: int = 1) -> None:
    """One runner: CALL pgjobs.run(budget) (interval text) once, or (loop)
    until stop is set. With loop, a lost session (server restart, failover,
    pg_terminate_backend) is not the end: the runner says so on stderr and
    connects again, as a worker does; its job resumes from its last committed
    page once the lease lapses. A first connection that fails still fails (a
    wrong DSN must not loop quietly). Its connection is in `live` while open,
    for run_runners to cancel its CALL on a stop. With a report, it says what
    it did with each job after every CALL, and their progress while one runs,
    as runner ``index``."""
    connected = False
    attempt = 0
    while True:
        try:
            with connect(app="pgjobs run") as conn:
                connected = True
                attempt = 0
                if live is not None:
                    live.add(conn)
                try:
                    _run_on(connect, conn, budget, loop, idle, stop, report, index)
                finally:
                    if live is not None:
                        live.discard(conn)
                return
        except PgjobsError as exc:
            if not (loop and connected and db.connection_lost(exc)):
                raise
            delay = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
            attempt += 1
            click.echo(f"database unavailable ({printable(exc.message)}); reconnecting in "
                       f"{delay:.1f}s", err=True)
            if stop is not None:
                if stop.wait(delay):
                    return
            else:
                time.sleep(delay)


def _run_on(connect: Any, conn: Any, budget: str, loop: bool, idle: float,
            stop: threading.Event | None, report: RunReport | None, index: int) -> None:
    """CALL pgjobs.run(budget) on one connection, once or (loop) until stop;
    while each runs, its progress (:class:`Progress`, on a connection of its
    own), and after each one look at what it did (queries.RUN_SEEN), for the
    report."""
    db.execute(conn, queries.RUN_SEARCH_PATH)  # nothing on the user's path may matter
    if loop:
        db.execute(conn, queries.LISTEN)
    progress = None
    if report is not None:
        progress = Progress(connect, report, index, db.scalar(conn, queries.RUN_MINE),
                            conn.info.backend_pid)
    try:
        _calls(conn, budget, loop, idle, stop, report, progress, index)
    finally:
        if progress is not None:
            progress.close()


def _calls(conn: Any, budget: str, loop: bool, idle: float, stop: threading.Event | None,
           report: RunReport | None, progress: Progress | None, index: int) -> None:
    since = None  # the server's clock at the previous look (None: the session's start)
    while stop is None or not stop.is_set():
        started = time.monotonic()
        if progress is None:
            db.execute(conn, queries.RUN, {"budget": budget})
        else:
            with progress.during_call(since):
                db.execute(conn, queries.RUN, {"budget": budget})
        if report is not None:
            seen = db.rows(conn, queries.RUN_SEEN, {"since": since})
            since = seen[0]["at"]
            report.saw(index, seen)
        if not loop:
            return
        if time.monotonic() - started < IDLE_CALL_SECONDS:  # nothing to do: do not spin
            _submitted(conn, idle)


STOP_SECONDS = 30.0
"""On Ctrl-C or SIGTERM, how long the runners' canceled CALLs get to end."""


def run_runners(connect: Any, budget: str, loop: bool, idle: float, runners: int,
                quiet: bool = False) -> None:
    """`runners` runner threads side by side; the first error stops them all
    (each finishes its current CALL) and is raised here. A KeyboardInterrupt
    (Ctrl-C, or SIGTERM as `pgjobs run` maps it) cancels every runner's CALL
    on the server before it is raised: the runner threads die with the
    process, and their CALLs went on in orphaned sessions until the budget
    ran out, deleting with nobody left to stop them. (One runner runs in this
    thread, where psycopg cancels the CALL on the interrupt itself.) Unless
    ``quiet``, the runners say what they did with each job (:class:`RunReport`)."""
    report = None if quiet else RunReport(runners)
    if runners == 1:
        run_loop(connect, budget, loop, idle, report=report)
        return
    stop = threading.Event()
    errors: list[BaseException] = []
    live: set[Any] = set()

    def runner(index: int) -> None:
        try:
            run_loop(connect, budget, loop, idle, stop, live, report, index)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=runner, args=(i + 1,), name=f"pgjobs-runner-{i + 1}",
                                daemon=True)
               for i in range(runners)]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for conn in list(live):
            db.cancel_statement(conn)
        deadline = time.monotonic() + STOP_SECONDS
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        raise
    if errors:
        raise errors[0]
