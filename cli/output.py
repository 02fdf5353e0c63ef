"""How every `pgjobs` command prints what it reports, in one place: timestamps
as ISO 8601 with a ``T`` (text and JSON alike), a job as one JSON object,
sizes for people, rates measured from when the job started, and the lines a
waiting command prints when Ctrl-C detaches it from its job.

Data goes to stdout (a job id, a job as JSON, an object URI, `watch`'s
lines); progress, notes and errors go to stderr, so ``JOB=$(pgjobs delete ...
--wait)`` captures the id alone."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import click

from pgjobs.errors import printable as printable  # the one rule, errors' too


def iso(value: Any) -> Any:
    """The value with every timestamp, date and time in it (nested in dicts and
    lists too) written as ISO 8601 text (``2026-11-30T11:52:57.026401+00:00``)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} seconds"
    if isinstance(value, dict):
        return {key: iso(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [iso(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """One line of JSON, timestamps as ISO 8601."""
    return json.dumps(iso(value), default=str)


def text(value: Any) -> str:
    """A value for a `key: value` line: objects as JSON, timestamps as ISO 8601,
    text as printable shows it."""
    if isinstance(value, (dict, list)):
        return to_json(value)
    shown = iso(value)
    return printable(shown)


def human_bytes(count: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as MB/s beside it)."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def amount(count: float, unit: str) -> str:
    """A count of what a job's done counts (pgjobs.units.unit): bytes as
    1.2 MB, rows and items as 1,234 rows."""
    return human_bytes(count) if unit == "bytes" else f"{count:,.0f} {unit}"


def per_second(rate: float | None, unit: str) -> str:
    """A job's rate in its unit: ``1.2 MB/s``, ``6,000 rows/s``, ``- items/s``
    while unknown."""
    if rate is None:
        return f"- {unit}/s"
    return f"{human_bytes(rate)}/s" if unit == "bytes" else f"{rate:,.0f} {unit}/s"


def human_age(seconds: float) -> str:
    """Seconds as the largest whole unit: 42s, 5m, 3h, 2d."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def elapsed(job: dict[str, Any]) -> float | None:
    """Seconds the job has run: from started_at to finished_at (or now)."""
    started = job.get("started_at")
    if not isinstance(started, datetime):
        return None
    finished = job.get("finished_at")
    end = finished if isinstance(finished, datetime) else _utc_now()
    return max((end - started).total_seconds(), 0.0)


def rows_per_second(job: dict[str, Any]) -> float | None:
    """The job's rate since it started (never since it was submitted: a job
    that queued an hour and ran a minute ran at done/minute)."""
    seconds = elapsed(job)
    if seconds is None or seconds < 0.001:
        return None
    return float(job.get("done") or 0) / seconds


def age(job: dict[str, Any]) -> str:
    created = job.get("created_at")
    if not isinstance(created, datetime):
        return "-"
    return human_age((_utc_now() - created).total_seconds())


def detached(job_id: int, *, ran_here: bool = False) -> None:
    """What every waiting command prints on Ctrl-C (stderr): the job is not
    canceled; how to follow it and how to cancel it."""
    if ran_here:
        click.echo(f"interrupted: job {job_id} was handed back and continues where it "
                   "stopped under a worker or runner", err=True)
    else:
        click.echo(f"interrupted: detached from job {job_id}, which goes on", err=True)
    click.echo(f"follow it: pgjobs watch {job_id}", err=True)
    click.echo(f"cancel it: pgjobs cancel {job_id}", err=True)


EXIT_INTERRUPTED = 130
"""Exit status of a waiting command that Ctrl-C detached from its job (128 + SIGINT)."""
