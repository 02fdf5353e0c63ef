"""Following jobs: NOTIFY events with a polling fallback, drawn as a rich
progress bar on a terminal and as plain lines when piped."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from pgjobs import db, queries

FINAL = {"succeeded": 0, "failed": 1, "canceled": 1}
POLL_SECONDS = 2.0


def _line(event: dict[str, Any]) -> str:
    total = event.get("total")
    done = event.get("done", 0)
    pct = f" {100 * done / total:.0f}%" if total else ""
    return (f"job {event['id']} {event['kind']} {event['event']}: {event['status']} "
            f"{done}/{'?' if total is None else total}{pct}")


def _as_event(job: dict[str, Any], event: str) -> dict[str, Any]:
    return {"id": job["id"], "kind": job["kind"], "event": event, "status": job["status"],
            "done": job["done"], "total": job["total"], "target": job["target"],
            "scope": job["scope"]}


def follow(dsn: str, job_id: int | None, *, timeout: float | None = None,
           quiet: bool = False) -> int:
    """Follow one job to its end (returns 0 succeeded, 1 failed/canceled, 3 on
    timeout), or every job's events until timeout or Ctrl-C (returns 0)."""
    conn = db.connect(dsn, app="pgjobs watch")
    try:
        db.execute(conn, queries.LISTEN)
        if job_id is None:
            return _follow_all(conn, timeout)
        return _follow_one(conn, job_id, timeout, quiet)
    except KeyboardInterrupt:
        return 130
    finally:
        conn.close()


def _follow_all(conn: Any, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - time.monotonic()))
        for note in conn.notifies(timeout=wait):
            click.echo(_line(json.loads(note.payload)))
    return 0


def _follow_one(conn: Any, job_id: int, timeout: float | None, quiet: bool) -> int:
    from pgjobs.errors import NotFound

    job = db.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", sqlstate="P0002",
                       hint="`pgjobs list` shows the jobs; finished ones are pruned")
    # The shared channel carries id, status and progress only; the job's own
    # channel (for a role allowed to read its target and scope) carries the
    # full events. Either wakes the loop; the row is re-read each time.
    db.listen_job_channel(conn, str(job["target"]), str(job["scope"]))
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None if quiet or not sys.stdout.isatty() else _Bar(job)
    last_plain = ""
    try:
        while True:
            if job["status"] in FINAL:
                if bar:
                    bar.update(job)
                elif not quiet and _line(_as_event(job, job["status"])) != last_plain:
                    click.echo(_line(_as_event(job, job["status"])))
                if job["status"] != "succeeded" and job.get("error"):
                    click.echo(f"job {job_id} {job['status']}: {job['error']}", err=True)
                return FINAL[job["status"]]
            if deadline is not None and time.monotonic() >= deadline:
                return 3
            wait = POLL_SECONDS if deadline is None else max(
                0.01, min(POLL_SECONDS, deadline - time.monotonic()))
            for note in conn.notifies(timeout=wait, stop_after=1):
                event = json.loads(note.payload)
                if event.get("id") == job_id and not bar and not quiet:
                    line = _line(event)
                    if line != last_plain:
                        click.echo(line)
                        last_plain = line
            # Re-read the row: notifications are a hint, the table is the truth.
            job = db.get_job(conn, job_id) or job
            if bar:
                bar.update(job)
    finally:
        if bar:
            bar.close()


class _Bar:
    """A rich progress bar: rows, rate, ETA."""

    def __init__(self, job: dict[str, Any]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]job {task.fields[job]}[/] {task.description}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(), TimeRemainingColumn())
        self.progress.start()
        self.task = self.progress.add_task(job["status"], total=job["total"],
                                           job=job["id"], rate="-")
        self.started = time.monotonic()
        self.first_done = job["done"]

    def update(self, job: dict[str, Any]) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (job["done"] - self.first_done) / elapsed
        self.progress.update(self.task, completed=job["done"], total=job["total"],
                             description=f"{job['kind']} {job['status']}", rate=f"{rate:,.0f}")

    def close(self) -> None:
        self.progress.stop()
