"""``pgjobs delete`` and ``pgjobs backfill``: submit, then optionally follow
the job (``--wait``) and run it in this process (``--run``) where neither
pg_cron nor ``pgjobs run --loop`` drives the engine.

Guards: ``--dry-run`` prints ``pgjobs.preview`` and submits nothing (the submit
runs in a transaction rolled back, so what it would refuse fails the dry run); on a
terminal (stdin and stdout both) the command shows the preview's count and
sample and asks before it submits, default no (``--yes`` skips the
question); off a terminal it submits as it always did, so scripts keep
working. Operands (target, scope, filter, set, exclude, options) and the
guards' flags are never read from the environment: a variable left in a shell
must not steer a destructive command (tests/test_cli_guards.py walks every
command)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import (
    PRIORITY,
    TARGET,
    Context,
    confirm,
    flag_option,
    parse_json,
    parse_options,
    progress_options,
)
from pgjobs.cli.output import EXIT_INTERRUPTED, detached, printable, to_json
from pgjobs.errors import InvalidInput, PgjobsError


def _options(priority: int | None, on_conflict: str | None, page_size: int | None,
             extra: str | None) -> dict[str, Any]:
    options = parse_options(extra)
    if priority is not None:
        flag_option(options, "priority", priority, "--priority")
    if on_conflict is not None:
        flag_option(options, "on_conflict", on_conflict, "--on-conflict")
    if page_size is not None:
        flag_option(options, "page_size", page_size, "--page-size")
    return options


def _common(func: Any) -> Any:
    func = progress_options(func)
    for decorator in reversed([
        click.argument("target", type=TARGET),
        click.option("--scope", required=True,
                     help="The scope (tenant / logical table) value, as text."),
        click.option("--priority", type=PRIORITY, envvar="PGJOBS_PRIORITY", show_envvar=True,
                     help="Higher runs first, -1000000 to 1000000 [default: 0]."),
        click.option("--on-conflict", type=click.Choice(["queue", "reject"]),
                     envvar="PGJOBS_ON_CONFLICT", show_envvar=True,
                     help="When a writing job of the scope is pending [default: queue]."),
        click.option("--page-size", type=click.IntRange(1, 100000), envvar="PGJOBS_PAGE_SIZE",
                     show_envvar=True, help="Fixed rows per page [default: adaptive]."),
        click.option("--options", "extra",
                     help='More job options as a JSON object, e.g. \'{"allow_unknown_fields": '
                          'true}\'.'),
        click.option("--wait", is_flag=True, envvar="PGJOBS_WAIT", show_envvar=True,
                     help="Follow the job to its end; exit 0 succeeded, 1 failed/canceled."),
        click.option("--run", "run_here", is_flag=True, envvar="PGJOBS_RUN_HERE",
                     show_envvar=True, help="Run the job in this process now (implies --wait)."),
        click.option("--dry-run", is_flag=True,
                     help="Print what the job would do (pgjobs.preview) and submit nothing; "
                          "the submit's own checks of the options run too (rolled back), so "
                          "what it would refuse fails here."),
        click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
                     help="Print the job (after --wait: as it ended) as one JSON object "
                          "instead of its id; with --dry-run, the preview."),
        click.option("--yes", "-y", is_flag=True,
                     help="Submit without asking (on a terminal the command asks first)."),
    ]):
        func = decorator(func)
    return func


def _finish(obj: Context, job_id: int, wait: bool, run_here: bool, as_json: bool = False,
            quiet: bool = False, no_progress: bool = False) -> None:
    """After the submit: print the job id (or the job as JSON) on stdout; with
    --wait / --run, follow it first with progress on stderr. Ctrl-C detaches
    (exit 130): the job goes on, and the lines say how to follow or cancel it;
    with --run, the page in flight is rolled back and the job handed back."""
    if not quiet:
        click.echo(f"job {job_id} submitted", err=True)
    if not (wait or run_here):
        _print_job(obj, job_id, as_json)
        return
    from pgjobs.cli.progress import follow

    errors: list[PgjobsError] = []
    runner = None
    running: list[Any] = []
    if run_here:
        def run() -> None:
            try:
                with db.connect(obj.dsn(), app="pgjobs run_job") as conn:
                    running.append(conn)
                    db.execute(conn, queries.RUN_SEARCH_PATH)
                    db.execute(conn, queries.RUN_JOB, {"id": job_id})
            except PgjobsError as exc:
                errors.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
    code = follow(obj.dsn(), job_id, quiet=quiet, no_progress=no_progress, to_stderr=True,
                  say_detached=runner is None)
    if code == EXIT_INTERRUPTED:
        if runner is not None:
            _stop_running(obj, job_id, runner, running)
        detached(job_id, ran_here=runner is not None)
        sys.exit(code)
    if runner is not None:
        runner.join()
    if errors:
        raise errors[0]
    _print_job(obj, job_id, as_json)
    sys.exit(code)


def _print_job(obj: Context, job_id: int, as_json: bool) -> None:
    if not as_json:
        click.echo(job_id)
        return
    with obj.connect() as conn:
        job = db.get_job(conn, job_id)
    click.echo(to_json(job))


def _stop_running(obj: Context, job_id: int, runner: threading.Thread,
                  running: list[Any]) -> None:
    """Ctrl-C under --run: cancel the page in flight (it rolls back: each page is
    its own transaction) and hand the job back while this process still holds
    its lease, so a runner or pg_cron resumes it from its last committed page."""
    for conn in running:
        with contextlib.suppress(Exception):  # the connection may be gone already
            conn.cancel_safe()
    runner.join(timeout=10)
    try:
        with obj.connect() as conn:
            job = db.get_job(conn, job_id)
            lease = None if job is None else job.get("lease_expires_at")
            # Only a lease that has not run out is still this process's claim.
            if (job is not None and job["status"] == "running" and lease is not None
                    and lease > datetime.now(timezone.utc) + timedelta(seconds=2)):
                db.scalar(conn, queries.EXPORT_RELEASE, {"id": job_id, "worker": job["worker"]})
    except PgjobsError:
        pass  # the lease runs out and the job is rescued as any stopped runner's


def _interactive() -> bool:
    """A person is there to answer: stdin and stdout are both terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _preview(conn: Any, kind: str, target: str, scope: str, filter_value: Any,
             exclude: list[str], options: dict[str, Any],
             set_value: dict[str, Any] | None = None) -> dict[str, Any]:
    preview_options: dict[str, Any] = {"kind": kind}
    for name in ("allow_unknown_fields", "allow_unknown_keys", "replace_non_objects"):
        if name in options:
            preview_options[name] = options[name]
    if set_value is not None:
        preview_options["set"] = set_value
    shown: dict[str, Any] = db.scalar(conn, queries.PREVIEW, {
        "target": target, "scope": scope, "filter": db.jsonb(filter_value),
        "exclude": exclude, "options": db.jsonb(preview_options)})
    return shown


def _count(shown: dict[str, Any]) -> str:
    about = "" if shown["exact"] else "about "
    return f"{about}{shown['matches']:,} of {shown['scope_rows']:,} rows"


def _print_preview(shown: dict[str, Any], as_json: bool) -> None:
    if as_json or not sys.stdout.isatty():
        click.echo(json.dumps(shown, sort_keys=True))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def shown_as_text(value: Any) -> str:
        """Stored text (the sample's keys are the target's data): no control
        character, and no rich markup ("[link=...]") read in it."""
        return escape(printable(value))

    table = Table(title=f"pgjobs {shown['kind']} preview (nothing submitted)",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("target", shown_as_text(f"{shown['target']} scope {shown['scope']}"))
    table.add_row("matches", _count(shown) + ("" if shown["exact"] else
                                              f" (estimated past {shown['time_limit_ms']} ms)"))
    table.add_row("sample", ", ".join(map(shown_as_text, shown["sample"])) or "-")
    table.add_row("unknown fields", ", ".join(map(shown_as_text, shown["unknown_fields"])) or "-")
    if shown.get("non_object_rows"):
        table.add_row("no object to merge into", escape(_non_objects(shown)))
    if shown.get("judged_at_start") or shown.get("unchecked_fields"):
        table.add_row("judged at start", _deferred(shown) + " (the scope has no rows yet)")
    table.add_row("predicate", shown_as_text(shown["predicate"]))
    Console().print(table)


def _deferred(shown: dict[str, Any]) -> str:
    """What the submit defers to the job's start: the document fields, or (an empty
    list) the filter's comparisons of json columns, which name no field."""
    return (", ".join(shown["unchecked_fields"]) if shown.get("unchecked_fields")
            else "the filter's comparisons of json columns")


def _non_objects(shown: dict[str, Any]) -> str:
    first = shown["non_object_first"]
    where = f'"{printable(first["path"])}"' if first["path"] else "the document"
    return (f"{shown['non_object_rows']:,} rows hold no object where set merges fields in "
            f"(first: key {printable(first['key'])}, {where} is a {printable(first['type'])})")


def _confirm(shown: dict[str, Any]) -> None:
    """Show the count and sample and ask; 'no' (the default) submits nothing, exit 1."""
    # The keys are the target's data, the scope and fields as typed: text only.
    click.echo(f"{shown['kind']} {_count(shown)} of {printable(shown['target'])} scope "
               f"{printable(shown['scope'])}", err=True)
    if shown["sample"]:
        click.echo(f"first keys: {', '.join(map(printable, shown['sample']))}", err=True)
    if shown["unknown_fields"]:
        click.echo(f"unknown fields: {', '.join(map(printable, shown['unknown_fields']))}",
                   err=True)
    if shown.get("judged_at_start") or shown.get("unchecked_fields"):
        click.echo(f"the scope has no rows yet: judged when the job starts: {_deferred(shown)}",
                   err=True)
    if not confirm(f"Submit this {shown['kind']}?"):
        click.echo("not submitted", err=True)
        sys.exit(1)


def _rehearse(conn: Any, kind: str, submit: str, params: dict[str, Any],
              options: dict[str, Any]) -> None:
    """--dry-run's proof that the submit itself would take the job: it runs in a
    transaction that is rolled back, so nothing is written and no event is sent
    (a job id of the sequence is used up). pgjobs.preview takes none of the
    job's own options, so `--dry-run --priority 99999999`, a bad run_at or
    page_delay, or on_conflict reject behind a running writer printed the preview
    and exit 0, and the submit then refused. The fields no row has and the rows
    with no object to merge into are the preview's to show: not refused here."""
    relaxed = {**options, "allow_unknown_fields": True}
    if kind == "backfill":
        relaxed["replace_non_objects"] = True
    with conn.transaction(force_rollback=True):
        db.scalar(conn, submit, {**params, "options": db.jsonb(relaxed)})


def _dry_run_alone(dry_run: bool) -> None:
    """--dry-run with --wait or --run on the command line is a usage error: it
    submits nothing, so the preview printed and exit 0 said nothing of the
    job a script then waited for. (PGJOBS_WAIT / PGJOBS_RUN_HERE left in the
    environment still give way to --dry-run.)"""
    if not dry_run:
        return
    ctx = click.get_current_context()
    for name, flag in (("run_here", "--run"), ("wait", "--wait")):
        if (ctx.params.get(name)
                and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE):
            raise InvalidInput(f"--dry-run submits nothing, so {flag} has no job to follow",
                               hint=f"drop {flag} to preview only, or --dry-run to submit "
                                    f"(see `pgjobs {ctx.info_name} --help`)")


def _guard(conn: Any, kind: str, target: str, scope: str, filter_value: Any,
           exclude: list[str], options: dict[str, Any], dry_run: bool, as_json: bool,
           yes: bool, set_value: dict[str, Any] | None = None,
           submit: tuple[str, dict[str, Any]] | None = None) -> None:
    """--dry-run: print the preview and exit 0, once the submit (``submit``: its
    SQL and parameters) is shown to take the job. On a terminal without --yes:
    ask."""
    if dry_run:
        shown = _preview(conn, kind, target, scope, filter_value, exclude, options,
                         set_value)
        if submit is not None:
            _rehearse(conn, kind, *submit, options)
        _print_preview(shown, as_json)
        sys.exit(0)
    if not yes and _interactive():
        shown = _preview(conn, kind, target, scope, filter_value, exclude, options, set_value)
        if shown["unknown_fields"] and options.get("allow_unknown_fields") is not True:
            return  # the submit refuses them (22023, naming each): nothing to ask
        if shown.get("non_object_rows"):
            return  # the submit refuses them too (22023, naming the place and the rows)
        _confirm(shown)


@click.command()
@_common
@click.option("--filter", "filter_",
              help="Filter as JSON [default: {} = every row of the scope].")
@click.option("--exclude", multiple=True, help="Key of a row to keep (repeatable).")
@click.pass_obj
def delete(obj: Context, target: str, scope: str, filter_: str | None, exclude: tuple[str, ...],
           priority: int | None, on_conflict: str | None, page_size: int | None,
           extra: str | None, wait: bool, run_here: bool, dry_run: bool, as_json: bool,
           yes: bool, quiet: bool, no_progress: bool) -> None:
    """Delete the rows of TARGET's scope that match the filter, in keyset pages.

    Rows created after the job is submitted are never touched; reads through
    pgjobs.visible/mask stop showing the doomed rows at once. On a terminal it
    shows how many rows would go and asks first (--yes skips); --dry-run only
    shows. Prints the job id.
    """
    _dry_run_alone(dry_run)
    filter_value = parse_json(filter_, "filter") if filter_ is not None else {}
    options = _options(priority, on_conflict, page_size, extra)
    params = {"target": target, "scope": scope, "filter": db.jsonb(filter_value),
              "exclude": list(exclude), "options": db.jsonb(options)}
    with obj.connect() as conn:
        _guard(conn, "delete", target, scope, filter_value, list(exclude), options,
               dry_run, as_json, yes, submit=(queries.SUBMIT_DELETE, params))
        job_id = int(db.scalar(conn, queries.SUBMIT_DELETE, params))
    _finish(obj, job_id, wait, run_here, as_json, quiet, no_progress)


@click.command()
@_common
@click.option("--filter", "filter_", required=True,
              help="Filter as JSON ({} for every row of the scope).")
@click.option("--set", "set_", required=True,
              help='What to set, as JSON: {"column": value, "doc.field": value}.')
@click.pass_obj
def backfill(obj: Context, target: str, scope: str, filter_: str, set_: str,
             priority: int | None, on_conflict: str | None, page_size: int | None,
             extra: str | None, wait: bool, run_here: bool, dry_run: bool, as_json: bool,
             yes: bool, quiet: bool, no_progress: bool) -> None:
    """Set columns or document fields on the rows of TARGET's scope matching the filter.

    On a terminal it shows how many rows would change and asks first (--yes
    skips); --dry-run only shows. Prints the job id.
    """
    _dry_run_alone(dry_run)
    set_value = parse_json(set_, "set")
    if not isinstance(set_value, dict):
        raise InvalidInput("--set must be a JSON object", hint='e.g. --set \'{"status": "done"}\'')
    filter_value = parse_json(filter_, "filter")
    options = _options(priority, on_conflict, page_size, extra)
    params = {"target": target, "scope": scope, "filter": db.jsonb(filter_value),
              "set": db.jsonb(set_value), "options": db.jsonb(options)}
    with obj.connect() as conn:
        _guard(conn, "backfill", target, scope, filter_value, [], options, dry_run,
               as_json, yes, set_value, submit=(queries.SUBMIT_BACKFILL, params))
        job_id = int(db.scalar(conn, queries.SUBMIT_BACKFILL, params))
    _finish(obj, job_id, wait, run_here, as_json, quiet, no_progress)
