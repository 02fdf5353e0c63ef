"""``pgjobs delete`` and ``pgjobs backfill``: submit, then optionally follow
the job (``--wait``) and run it in this process (``--run``) where neither
pg_cron nor ``pgjobs run --loop`` drives the engine."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import Context, parse_json
from pgjobs.errors import InvalidInput, PgjobsError


def _options(priority: int | None, on_conflict: str | None, page_size: int | None,
             extra: str | None) -> dict[str, Any]:
    parsed = parse_json(extra, "options")
    if parsed is not None and not isinstance(parsed, dict):
        raise InvalidInput("--options must be a JSON object",
                           hint='e.g. --options \'{"max_attempts": 3}\'')
    options: dict[str, Any] = dict(parsed or {})
    if priority is not None:
        options["priority"] = priority
    if on_conflict is not None:
        options["on_conflict"] = on_conflict
    if page_size is not None:
        options["page_size"] = page_size
    return options


def _common(func: Any) -> Any:
    for decorator in reversed([
        click.argument("target"),
        click.option("--scope", required=True, envvar="PGJOBS_SCOPE", show_envvar=True,
                     help="The scope (tenant / logical table) value, as text."),
        click.option("--priority", type=int, envvar="PGJOBS_PRIORITY", show_envvar=True,
                     help="Higher runs first [default: 0]."),
        click.option("--on-conflict", type=click.Choice(["queue", "reject"]),
                     envvar="PGJOBS_ON_CONFLICT", show_envvar=True,
                     help="When a writing job of the scope is pending [default: queue]."),
        click.option("--page-size", type=click.IntRange(1, 100000), envvar="PGJOBS_PAGE_SIZE",
                     show_envvar=True, help="Fixed rows per page [default: adaptive]."),
        click.option("--options", "extra", envvar="PGJOBS_OPTIONS", show_envvar=True,
                     help="More job options as a JSON object."),
        click.option("--wait", is_flag=True, envvar="PGJOBS_WAIT", show_envvar=True,
                     help="Follow the job to its end; exit 0 succeeded, 1 failed/canceled."),
        click.option("--run", "run_here", is_flag=True, envvar="PGJOBS_RUN_HERE",
                     show_envvar=True, help="Run the job in this process now (implies --wait)."),
    ]):
        func = decorator(func)
    return func


def _finish(obj: Context, job_id: int, wait: bool, run_here: bool) -> None:
    click.echo(f"job {job_id} submitted", err=True)
    if not (wait or run_here):
        click.echo(job_id)
        return
    from pgjobs.cli.progress import follow

    errors: list[PgjobsError] = []
    runner = None
    if run_here:
        def run() -> None:
            try:
                with db.connect(obj.dsn(), app="pgjobs run_job") as conn:
                    db.execute(conn, queries.RUN_SEARCH_PATH)
                    db.execute(conn, queries.RUN_JOB, {"id": job_id})
            except PgjobsError as exc:
                errors.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
    code = follow(obj.dsn(), job_id)
    if runner is not None:
        runner.join()
    if errors:
        raise errors[0]
    click.echo(job_id)
    sys.exit(code)


@click.command()
@_common
@click.option("--filter", "filter_", envvar="PGJOBS_FILTER", show_envvar=True,
              help="Filter as JSON [default: {} = every row of the scope].")
@click.option("--exclude", multiple=True, envvar="PGJOBS_EXCLUDE", show_envvar=True,
              help="Key of a row to keep (repeatable; in the variable, space-separated).")
@click.pass_obj
def delete(obj: Context, target: str, scope: str, filter_: str | None, exclude: tuple[str, ...],
           priority: int | None, on_conflict: str | None, page_size: int | None,
           extra: str | None, wait: bool, run_here: bool) -> None:
    """Delete the rows of TARGET's scope that match the filter, in keyset pages.

    Rows created after the job is submitted are never touched; reads through
    pgjobs.visible/mask stop showing the doomed rows at once. Prints the job id.
    """
    filter_value = parse_json(filter_, "filter") if filter_ is not None else {}
    with obj.connect() as conn:
        job_id = int(db.scalar(conn, queries.SUBMIT_DELETE, {
            "target": target, "scope": scope, "filter": db.jsonb(filter_value),
            "exclude": list(exclude),
            "options": db.jsonb(_options(priority, on_conflict, page_size, extra))}))
    _finish(obj, job_id, wait, run_here)


@click.command()
@_common
@click.option("--filter", "filter_", required=True, envvar="PGJOBS_FILTER", show_envvar=True,
              help="Filter as JSON ({} for every row of the scope).")
@click.option("--set", "set_", required=True, envvar="PGJOBS_SET", show_envvar=True,
              help='What to set, as JSON: {"column": value, "doc.field": value}.')
@click.pass_obj
def backfill(obj: Context, target: str, scope: str, filter_: str, set_: str,
             priority: int | None, on_conflict: str | None, page_size: int | None,
             extra: str | None, wait: bool, run_here: bool) -> None:
    """Set columns or document fields on the rows of TARGET's scope matching the filter.

    Prints the job id.
    """
    set_value = parse_json(set_, "set")
    if not isinstance(set_value, dict):
        raise InvalidInput("--set must be a JSON object", hint='e.g. --set \'{"status": "done"}\'')
    with obj.connect() as conn:
        job_id = int(db.scalar(conn, queries.SUBMIT_BACKFILL, {
            "target": target, "scope": scope, "filter": db.jsonb(parse_json(filter_, "filter")),
            "set": db.jsonb(set_value),
            "options": db.jsonb(_options(priority, on_conflict, page_size, extra))}))
    _finish(obj, job_id, wait, run_here)
