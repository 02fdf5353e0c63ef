"""Following jobs: NOTIFY events with a polling fallback, drawn as a rich
progress bar on a terminal and as plain lines when piped."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from pgjobs import db, queries, units
from pgjobs.cli.output import (
    EXIT_INTERRUPTED,
    detached,
    per_second,
    printable,
    rows_per_second,
    to_json,
)

if TYPE_CHECKING:
    from rich.progress import ProgressColumn

T = TypeVar("T", covariant=True)

FINAL = {"succeeded": 0, "failed": 1, "canceled": 1}
POLL_SECONDS = 2.0


def _line(event: dict[str, Any]) -> str:
    """``job 7 delete progress: running 500/1000 50%``; an event that only
    repeats the status is said once (``job 7 delete succeeded 1000/1000 100%``)."""
    total = event.get("total")
    done = event.get("done", 0)
    pct = f" {100 * done / total:.0f}%" if total else ""
    note = f" ({printable(event['note'])})" if event.get("note") else ""
    what = (event["status"] if event["event"] == event["status"]
            else f"{event['event']}: {event['status']}")
    return (f"job {event['id']} {event['kind']} {what} "
            f"{done}/{'?' if total is None else total}{pct}{note}")


def _json_event(job: dict[str, Any], event: str) -> str:
    """`watch --json`: the job's row with the event, the note and the rate."""
    return to_json({"event": event, **job, "note": note(job),
                    "rows_per_second": rows_per_second(job)})


def note(job: dict[str, Any]) -> str | None:
    """Why an unfinished job is not moving, as SQL reported it: held by a
    throttling signal (checkpoint.throttled), or queued until pg_cron's next
    minute tick (pgjobs._engine_wait)."""
    throttled = job.get("throttled")
    if job["status"] not in FINAL and isinstance(throttled, dict):
        # Raw: `watch --json` carries it as stored; text lines show it
        # through printable (_line, the bar's description).
        return f"throttled since {throttled.get('since')}: {throttled.get('reason')}"
    waiting = job.get("waiting")
    return str(waiting) if waiting else None


class Waits:
    """What a followed job waited on, gathered from its row at each poll, said
    in one line per cause once it ends (:meth:`lines`): spells held by a
    throttling signal (checkpoint.throttled: the reason, how many spells, how
    long), lock waits of its pages (checkpoint.lock_waits), attempts retried
    from the checkpoint, and runners it passed between (a budget's hand-back,
    a lost lease). Not time queued: a job waits for a runner to take it, and
    why (the gate, pg_cron's tick) is said while it waits. A demo job 15 s slower than
    its work (held while autovacuum vacuumed its table, h143) said nothing:
    checkpoint.throttled is dropped by the first page after the spell, and the
    `throttled` event is a NOTIFY a poller never hears."""

    def __init__(self) -> None:
        # cause (the option a reason names) -> [latest reason, spells, seconds]
        self.held: dict[str, list[Any]] = {}
        self._spell: tuple[str, str] | None = None  # (cause, since) held now
        self._spell_from = 0.0
        self.lock_waits = 0
        self.first_attempts: int | None = None
        self.attempts = 0
        self.workers: list[str] = []

    @staticmethod
    def _cause(reason: str) -> str:
        """The option a throttle reason ends with, ``(pause_on_autovacuum)``, ``(max_wal_rate
        67108864)``: one cause for every sample of a spell, whose numbers change."""
        if reason.endswith(")") and "(" in reason:
            return reason[reason.rindex("(") + 1:-1].split(" ")[0]
        return reason

    def see(self, job: dict[str, Any], now: float | None = None) -> None:
        """One poll of the job's row (queries.GET_JOB), at ``now`` (monotonic)."""
        now = time.monotonic() if now is None else now
        throttled = job.get("throttled")
        spell = None
        if (job["status"] not in FINAL and isinstance(throttled, dict)
                and throttled.get("reason")):
            reason = str(throttled["reason"])
            spell = (self._cause(reason), str(throttled.get("since")))
            self.held.setdefault(spell[0], [reason, 0, 0.0])[0] = reason
        if spell != self._spell:
            self._end_spell(now)
            if spell is not None:
                self._spell, self._spell_from = spell, now
                self.held[spell[0]][1] += 1
        self.lock_waits = max(self.lock_waits, int(job.get("lock_waits") or 0))
        # Attempts as running rows count them (a claim adds one, a hand-back
        # takes it back): more than at the first running row seen is a retry.
        attempts = int(job.get("attempts") or 0)
        if job["status"] == "running" and self.first_attempts is None:
            self.first_attempts = attempts
        if job["status"] == "running" or self.first_attempts is not None:
            self.attempts = max(self.attempts, attempts)
        worker = job.get("worker")
        if job["status"] == "running" and worker and (
                not self.workers or self.workers[-1] != worker):
            self.workers.append(str(worker))

    @property
    def holding(self) -> str | None:
        """The cause holding the job as last seen (None: nothing held it)."""
        return self._spell[0] if self._spell is not None else None

    def _end_spell(self, now: float) -> None:
        if self._spell is not None:
            self.held[self._spell[0]][2] += now - self._spell_from
            self._spell = None

    def lines(self, now: float | None = None) -> list[str]:
        """One line per cause the job waited on since it was first seen (none:
        it did not wait)."""
        now = time.monotonic() if now is None else now
        self._end_spell(now)
        out = [f"held {seconds:.1f} s in {spells} spell{'s' if spells != 1 else ''}: {reason}"
               for reason, spells, seconds in self.held.values()]
        if self.lock_waits:
            out.append(f"{self.lock_waits} lock wait{'s' if self.lock_waits != 1 else ''} on "
                       "rows of its pages (each page rolled back and tried again: "
                       "checkpoint.lock_waits)")
        retried = 0 if self.first_attempts is None else self.attempts - self.first_attempts
        if retried > 0:
            out.append(f"retried {retried} time{'s' if retried != 1 else ''} from its "
                       "checkpoint after a failed attempt")
        if len(self.workers) > 1:
            out.append(f"changed hands {len(self.workers) - 1} time"
                       f"{'s' if len(self.workers) != 2 else ''} (handed back at a budget's "
                       "end, or its lease lost), resumed from its checkpoint")
        return out


def left_unchanged(job: dict[str, Any]) -> str | None:
    """A succeeded backfill that left rows unchanged (result.skipped: set could
    not merge a field into a value that is no object, pgjobs._set_guard): the
    line that says so. The end line alone ("succeeded") hid them."""
    result = job.get("result")
    if job["status"] != "succeeded" or not isinstance(result, dict):
        return None
    skipped = result.get("skipped")
    if job["kind"] != "backfill" or not isinstance(skipped, int) or skipped <= 0:
        return None
    first = result.get("skipped_first")
    where = ""
    if isinstance(first, dict):
        place = f'"{printable(first.get("path"))}"' if first.get("path") else "the document"
        kind = str(first.get("type"))
        article = "an" if kind[:1] in ("a", "o") else "a"
        where = (f" (first: key {printable(first.get('key'))}, {place} holds {article} "
                 f"{printable(kind)})")
    return (f"job {job['id']} succeeded but left {skipped:,} row(s) unchanged: set merges "
            f"fields into a value that is no object there{where}; set those values to "
            f"null or to objects and backfill them again, or submit with "
            f"{{\"replace_non_objects\": true}}")


def _as_event(job: dict[str, Any], event: str) -> dict[str, Any]:
    return {"id": job["id"], "kind": job["kind"], "event": event, "status": job["status"],
            "done": job["done"], "total": job["total"], "target": job["target"],
            "scope": job["scope"], "note": note(job)}


# Events pgjobs._notify sends. Any role can NOTIFY any channel, so a payload
# is only a wake-up: it is used if it is a JSON object naming a job id and one
# of these events, and what is printed is the job's row, re-read.
EVENTS = frozenset({"submitted", "started", "progress", "retrying", "throttled", "succeeded",
                    "failed", "canceled", "paused", "resumed"})
_LIVE_EVENTS = frozenset({"submitted", "started", "progress", "retrying", "throttled", "paused",
                          "resumed"})


def _wakeup(payload: str) -> tuple[int, str] | None:
    """(job id, event) of a notification payload, or None if it is not one
    pgjobs could have sent."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON; nested deeper than Python parses
        return None
    if not isinstance(event, dict):
        return None
    job_id, name = event.get("id"), event.get("event")
    if type(job_id) is not int or job_id <= 0 or not isinstance(name, str) or name not in EVENTS:
        return None
    return job_id, name


def _label(job: dict[str, Any], event: str) -> str:
    """The event to print beside a job's row: its final status once finished,
    else the notified event if it can describe an unfinished job."""
    if job["status"] in FINAL:
        return str(job["status"])
    return event if event in _LIVE_EVENTS else "progress"


def follow(dsn: str, job_id: int | None, *, timeout: float | None = None,
           quiet: bool = False, no_progress: bool = False, as_json: bool = False,
           to_stderr: bool = False, say_detached: bool = True) -> int:
    """Follow one job to its end (returns 0 succeeded, 1 failed/canceled, 3 on
    timeout), or every job's events until timeout (returns 0). Ctrl-C returns
    130: following one job, it says how to follow or cancel the job, which goes
    on (``say_detached``; a caller that ran the job itself says it instead).

    `watch` prints its lines (JSON lines with ``as_json``) on stdout: they are
    its output. A submit command's ``--wait`` passes ``to_stderr``: its progress
    goes to stderr, stdout keeps the job id. On a terminal (stderr, and stdout
    too for `watch`) progress is a bar on stderr. ``no_progress`` drops the bar
    and progress lines, ``quiet`` the notes too (a failed job's error and Ctrl-C's
    lines still print)."""
    conn = db.connect(dsn, app="pgjobs watch")
    try:
        db.execute(conn, queries.INSTALLED)
        db.execute(conn, queries.LISTEN)
        if job_id is None:
            return _follow_all(conn, timeout, as_json)
        out = _Out(quiet=quiet, no_progress=no_progress, as_json=as_json, to_stderr=to_stderr)
        return _follow_one(conn, job_id, timeout, out)
    except KeyboardInterrupt:
        if job_id is not None and say_detached:
            detached(job_id)
        return EXIT_INTERRUPTED
    finally:
        conn.close()


class _Out:
    """Where `follow` prints: progress lines (stdout for `watch`, stderr for a
    submit command's --wait), notes (stderr), and whether a bar is drawn."""

    def __init__(self, *, quiet: bool, no_progress: bool, as_json: bool, to_stderr: bool):
        self.quiet = quiet
        self.progress = not (quiet or no_progress)
        self.as_json = as_json and not to_stderr
        self.to_stderr = to_stderr
        terminal = sys.stderr.isatty() and (to_stderr or sys.stdout.isatty())
        self.bar_wanted = self.progress and terminal and not self.as_json

    def line(self, job: dict[str, Any], event: str) -> str:
        return _json_event(job, event) if self.as_json else _line(_as_event(job, event))

    # emit and note are where every line `follow` prints goes: each is one
    # line, and the job's text in it (a scope, an error, a throttling
    # reason, a row's key) passes printable here, whoever composed it.
    def emit(self, text: str) -> None:
        click.echo(printable(text), err=self.to_stderr)

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(printable(text), err=True)


def _follow_all(conn: Any, timeout: float | None, as_json: bool = False) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict[int, str] = {}
    while deadline is None or time.monotonic() < deadline:
        wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - time.monotonic()))
        # Gathered first (the connection is busy while notifies() runs), one
        # wake-up per job: its last event.
        woken: dict[int, str] = {}
        for payload in db.notifications(conn, wait):
            wakeup = _wakeup(payload)
            if wakeup is not None:
                woken.pop(wakeup[0], None)
                woken[wakeup[0]] = wakeup[1]
        for job_id, event in woken.items():
            job = db.get_job(conn, job_id)
            if job is None:  # no such job, or not one this role may read
                continue
            label = _label(job, event)
            line = _line(_as_event(job, label))  # the dedup key, whatever is printed
            if last.get(job["id"]) != line:
                if len(last) > 10000:
                    last.clear()
                last[job["id"]] = line
                click.echo(_json_event(job, label) if as_json else printable(line))
    return 0


def _follow_one(conn: Any, job_id: int, timeout: float | None, out: _Out) -> int:
    from pgjobs.cli.common import require_job

    job = require_job(conn, job_id)
    # The shared channel carries id, status and progress only; the job's own
    # channel (for a role allowed to read its target and scope) carries the
    # full events. Either wakes the loop; the row is re-read each time.
    db.listen_job_channel(conn, str(job["target"]), str(job["scope"]))
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = _Bar(job) if out.bar_wanted else None
    last_plain = ""
    paused_said = False
    last_note: str | None = None
    waits = Waits()
    try:
        while True:
            waits.see(job)
            # Paused is not an end: keep following, but say why nothing moves.
            if job["status"] == "paused" and not paused_said:
                out.note(f"job {job_id} is paused: `pgjobs resume {job_id}` continues it")
            paused_said = job["status"] == "paused"
            if job["status"] in FINAL:
                if bar:
                    bar.update(job)
                elif out.progress and _line(_as_event(job, job["status"])) != last_plain:
                    out.emit(out.line(job, job["status"]))
                if job["status"] != "succeeded" and job.get("error"):
                    click.echo(f"job {job_id} {job['status']}: {printable(job['error'])}", err=True)
                left = left_unchanged(job)
                if left:
                    click.echo(printable(left), err=True)
                for line in waits.lines():
                    out.note(f"job {job_id} waited: {line}")
                return FINAL[job["status"]]
            if deadline is not None and time.monotonic() >= deadline:
                # Exit 3 alone would leave a piped `watch` of a job that sent no
                # event silent: say where the job stands, and that it goes on.
                if bar:
                    bar.close()
                    bar = None
                out.note(f"job {job_id} is still {job['status']} at --timeout; it goes on: "
                         f"`pgjobs watch {job_id}` follows it again")
                return 3
            wait = POLL_SECONDS if deadline is None else max(
                0.01, min(POLL_SECONDS, deadline - time.monotonic()))
            event = None
            for payload in db.notifications(conn, wait, stop_after=1):
                wakeup = _wakeup(payload)
                if wakeup is not None and wakeup[0] == job_id:
                    event = wakeup[1]
            # Re-read the row: notifications are a hint, the table is the truth.
            job = db.get_job(conn, job_id) or job
            if bar:
                bar.update(job)
            elif ((event is not None or note(job) != last_note) and out.progress
                  and job["status"] not in FINAL):
                # An event, or a new reason for not moving (throttled, waiting
                # for pg_cron's tick), which may come without an event.
                label = _label(job, event or ("throttled" if job.get("throttled")
                                              else "progress"))
                line = _line(_as_event(job, label))
                last_note = note(job)
                if line != last_plain:
                    out.emit(out.line(job, label))
                    last_plain = line
    finally:
        if bar:
            bar.close()


def bar_columns(title: str, unit: str = "rows") -> list[ProgressColumn]:
    """The columns of every job's bar (this module's and `pgjobs demo`'s): `title`
    (a rich markup template), the bar, done/total in `unit` (what the job's done
    counts, pgjobs.units.unit: bytes for an import, shown as kB/MB; items for a
    fan-out job), the task's `rate` field (per_second: it names its unit),
    elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    counts: list[ProgressColumn] = (
        [DownloadColumn()] if unit == "bytes" else [MofNCompleteColumn(), TextColumn(unit)])
    return [TextColumn(title), BarColumn(), *counts, TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn()]


class _Bar:
    """A rich progress bar on stderr: what the job counts (rows, bytes, items),
    rate since the job started, ETA."""

    def __init__(self, job: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self.unit = units.unit(str(job["kind"]))
        self.progress = Progress(
            *bar_columns("[bold]job {task.fields[job]}[/] {task.description}", self.unit),
            console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task(job["status"], total=job["total"],
                                           job=job["id"], rate=per_second(None, self.unit))

    def update(self, job: dict[str, Any]) -> None:
        # From the job's started_at, not from when this command began following
        # (nor from created_at: time spent queued is not time spent working).
        from rich.markup import escape

        why = note(job)
        self.progress.update(self.task, completed=job["done"], total=job["total"],
                             # The title is a markup template: the note (a
                             # throttling reason) is shown, never read as markup.
                             description=escape(printable(
                                 f"{job['kind']} {job['status']}" + (f" ({why})" if why else ""))),
                             rate=per_second(rows_per_second(job), self.unit))

    def close(self) -> None:
        self.progress.stop()


class TransferDisplay:
    """Progress of a job this process runs (one-shot `pgjobs export` and
    `pgjobs import`), on stderr: a rich bar on a terminal, else a plain line
    every few seconds; nothing with --no-progress (notes stay) or --quiet (notes
    go too). A kind says what its bar shows (:meth:`_columns`, :meth:`_fields`)
    and what its plain line says (:meth:`_line`)."""

    kind = ""

    def __init__(self, job_id: int, *, quiet: bool = False, no_progress: bool = False):
        self.job_id = job_id
        self.quiet = quiet
        self.show = not (quiet or no_progress)
        self.rows = 0
        self.bytes = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self.last_line = 0.0
        self.bar: Any = None
        self.task: Any = None
        # What held this job's work (a writing job's throttling: :meth:`held`).
        self.waits = Waits()
        self._held_cause: str | None = None
        if self.show and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"[bold]job {job_id}[/] {self.kind}"), BarColumn(),
                                *self._columns(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.kind, **{**self._fields(), "total": None})

    def _columns(self) -> list[ProgressColumn]:
        """The bar's columns between the bar and the time left."""
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:
        """The bar's ``completed``, ``total`` and named fields, now."""
        raise NotImplementedError

    def _line(self, elapsed: float) -> str:
        """The plain line, ``elapsed`` seconds since this process took the job."""
        raise NotImplementedError

    def _rate(self, elapsed: float) -> str:
        return f"{self.bytes / max(elapsed, 1e-6) / 1e6:.1f} MB/s"

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, **self._fields())
            return
        now = time.monotonic()
        if self.show and now - self.last_line >= 2.0:
            self.last_line = now
            click.echo(printable(self._line(now - self.started)), err=True)

    def note(self, line: str) -> None:
        """One line on stderr, its text shown as text: printable, and above a bar
        no rich markup read (a scope or a key holding ``[link=...]``)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(printable(line), markup=False, highlight=False)
        else:
            click.echo(printable(line), err=True)

    def held(self, throttled: dict[str, Any] | None) -> None:
        """A throttling signal holds the job's next step (``throttled``: its
        checkpoint.throttled, reason and since), or nothing does (None). Said
        once a spell, as it starts: the bar stalls meanwhile, which alone reads
        as a hang. Counted for :meth:`waited`."""
        self.waits.see({"status": "running", "throttled": throttled})
        cause = self.waits.holding
        if cause is not None and cause != self._held_cause and throttled:
            self.note(f"job {self.job_id} held: {printable(throttled.get('reason'))}; it goes "
                      "on by itself once that is back under its limit (Ctrl-C detaches)")
        self._held_cause = cause

    def waited(self) -> None:
        """Say what held the job, one line per cause (as `pgjobs watch` ends a
        job, :class:`Waits`); nothing when nothing held it."""
        for line in self.waits.lines():
            self.note(f"job {self.job_id} waited: {line}")

    def close(self) -> None:
        """Stop the bar, drawn complete: its total is what was done if none was
        known."""
        if self.bar is not None:
            fields = self._fields()
            if fields.get("total") is None:
                fields["total"] = fields["completed"]
            self.bar.update(self.task, **fields)
            self.bar.stop()
            self.bar = None


class Runs(Protocol[T]):
    """An exporter or importer: ``run()`` does the job; setting ``stop`` asks it
    to stop."""

    stop: threading.Event

    def run(self) -> T: ...


def run_in_thread(runner: Runs[T], display: TransferDisplay) -> T:
    """``runner.run()`` in a thread, keeping the main thread for the display and
    for Ctrl-C, which sets ``runner.stop`` and waits for the thread to end before
    it is raised again."""
    box: list[T] = []
    thread = threading.Thread(target=lambda: box.append(runner.run()), daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(timeout=0.1)
            display.tick()
    except KeyboardInterrupt:
        runner.stop.set()
        thread.join()
        raise
    return box[0]
