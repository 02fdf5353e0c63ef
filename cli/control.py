"""``pgjobs pause``, ``pgjobs resume`` and ``pgjobs retry``: one SQL call each
(pgjobs.pause / resume / retry decide what applies), then the job's status.

A verb that does not apply to the job's state exits 1 with the database's
hint (SQLSTATE 55000), an unknown job exits 1 too (P0002), as ``cancel``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pgjobs import db
from pgjobs.cli.common import JOB_ID, Context, job_verb


def _control(obj: Context, job_id: int, verb: Callable[[Any, int], bool]) -> tuple[bool, str]:
    with obj.connect() as conn:
        changed, job = job_verb(conn, job_id, verb)
    status = str(job["status"])
    if status == "running" and job.get("pause_requested_at") is not None:
        status = "running (pause requested: pauses after its page in flight)"
    return changed, status


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.pass_obj
def pause(obj: Context, job_id: int) -> None:
    """Pause a job: queued at once, running after its page in flight (keeps its cursor)."""
    changed, status = _control(obj, job_id, db.pause)
    click.echo(f"job {job_id}: {status}" + ("" if changed else " (already)"))


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.pass_obj
def resume(obj: Context, job_id: int) -> None:
    """Resume a paused job: queued again with its cursor and its place in line."""
    _, status = _control(obj, job_id, db.resume)
    click.echo(f"job {job_id}: {status}")


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.pass_obj
def retry(obj: Context, job_id: int) -> None:
    """Requeue a failed or canceled job from its checkpoint, attempts reset."""
    _, status = _control(obj, job_id, db.retry)
    click.echo(f"job {job_id}: {status}")
