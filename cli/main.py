"""The `pgjobs` command: a click group that only delegates.

Every command resolves its database the same way (``--dsn``, then
``PGJOBS_DSN``, then ``DATABASE_URL``, else the embedded local cluster when it
is running, said on stderr; only ``pgjobs dev up`` and ``pgjobs demo`` start
it, any other command exits 2 with a hint) and
reports a user mistake as one line with the SQLSTATE's hint, never a
traceback. Exit status: 0 done, 1 the job failed or was canceled (or
another runtime error), 2 usage error.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import (
    DEFAULT_STORAGE,
    JOB_ID,
    Context,
    LazyCommands,
    LazyGroup,
    confirm,
    duration_seconds,
    job_verb,
    parse_duration,
    progress_options,
    refuse_ignored,
    require_job,
)
from pgjobs.cli.output import age, iso, printable, text, to_json
from pgjobs.errors import InvalidInput, NotReady, PermissionDenied


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", envvar="PGJOBS_DSN", show_envvar=True, default=None,
              help="PostgreSQL DSN or URL [default: $DATABASE_URL, else the embedded cluster "
                   "if it is running: `pgjobs dev up`].")
@click.option("--storage", envvar="PGJOBS_STORAGE", show_envvar=True, default=DEFAULT_STORAGE,
              show_default=True, help="Where exports go: file://DIR, s3://bucket/prefix, "
              "gs://..., az://..., memory://.")
@click.version_option(package_name="pgjobs-engine")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, storage: str) -> None:
    """pgjobs: bulk background jobs (delete, backfill, export) inside PostgreSQL."""
    ctx.obj = Context(dsn_option=dsn, storage=storage,
                      dsn_from_env=ctx.get_parameter_source("dsn")
                      == click.core.ParameterSource.ENVIRONMENT)


# --- install --------------------------------------------------------------


@main.command()
@click.pass_obj
def migrate(obj: Context) -> None:
    """Apply sql/migrations (yoyo), then re-apply every sql/functions file."""
    from pgjobs.migrate import migrate as run_migrate

    summary = run_migrate(obj.dsn())
    applied = summary["migrations_applied"]
    replaced = summary["functions_replaced"]
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none pending'}"  # type: ignore[arg-type]
               f"; functions applied: {summary['functions_applied']}"
               + (f"; dropped and created again (signature changed): {', '.join(replaced)}"  # type: ignore[arg-type]
                  if replaced else ""))


@main.command()
@click.option("--run-every", envvar="PGJOBS_RUN_EVERY", show_envvar=True,
              type=click.IntRange(1, 59), default=None,
              help="Seconds between runs, 1 to 59 (pg_cron 1.5+; 1.4 runs each minute).")
@click.option("--retention", envvar="PGJOBS_RETENTION", show_envvar=True, default=None,
              help="How long finished jobs are kept, at least 1h (pg_cron prunes every "
                   "minute; `pgjobs prune --retention` goes shorter once) [default: 24 hours].")
@click.option("--runners", envvar="PGJOBS_RUNNERS", show_envvar=True,
              type=click.IntRange(1, 16), default=None,
              help="pg_cron runner entries side by side (1 to 16) [default: 1].")
@click.pass_obj
def schedule(obj: Context, run_every: int | None, retention: str | None,
             runners: int | None) -> None:
    """Install the pg_cron jobs that run the engine and prune."""
    options: dict[str, Any] = {}
    if run_every is not None:
        options["run_every"] = run_every
    if runners is not None:
        options["runners"] = runners
    if retention is not None:
        options["retention"] = parse_duration(retention, "--retention")
    with obj.connect() as conn:
        result = db.scalar(conn, queries.SCHEDULE, {"options": db.jsonb(options)})
    for job in result["jobs"]:
        click.echo(f"{printable(job['name'])}: {printable(job['schedule'])}  "
                   f"{printable(job['command'])}")
    click.echo(f"pg_cron {result['pg_cron']}")


@main.command()
@click.pass_obj
def unschedule(obj: Context) -> None:
    """Remove pgjobs' pg_cron jobs."""
    with obj.connect() as conn:
        result = db.scalar(conn, queries.UNSCHEDULE)
    click.echo(f"unscheduled {result['unscheduled']} pg_cron job(s)")


@main.command("rotate-channel-secret")
@click.pass_obj
def rotate_channel_secret(obj: Context) -> None:
    """Give every job channel (pgjobs.channel) a new name.

    Run it after taking a role's access to a target or scope away (REVOKE
    SELECT, a scope removed from its pgjobs.allowed_scopes, REVOKE
    pgjobs_client): LISTEN needs no privilege, so a name the role learned
    before keeps its events until the names change. Each old name of a
    (target, scope) with jobs gets a last `channel_rotated` event; listeners
    still allowed ask pgjobs.channel again. Sealed verdicts are unaffected."""
    with obj.connect() as conn:
        told = db.scalar(conn, queries.ROTATE_CHANNEL_SECRET)
    click.echo(f"rotated the channel secret; told {told} old channel name(s)")


# --- observing and controlling ---------------------------------------------


def _job_line(job: dict[str, Any]) -> str:
    """A job's tab-separated line; its target and scope as printable shows them
    (a client's scope is any text on an unregistered target)."""
    total = "?" if job.get("total") is None else str(job["total"])
    return (f"{job['id']}\t{job['kind']}\t{printable(job['target'])}\t"
            f"{printable(job['scope'])}\t{job['status']}\t{job['done']}/{total}")


_LIST_COLUMNS = ("ID", "KIND", "TARGET", "SCOPE", "STATUS", "DONE/TOTAL", "AGE")


def _list_table(rows: list[dict[str, Any]]) -> list[str]:
    """`list` on a terminal: a header, aligned columns, and each job's age."""
    table = [list(_LIST_COLUMNS)]
    for job in rows:
        table.append([*_job_line(job).split("\t"), age(job)])
    widths = [max(len(row[i]) for row in table) for i in range(len(_LIST_COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip()
            for row in table]


@main.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="Print the job as one JSON object.")
@click.pass_obj
def status(obj: Context, job_id: int, as_json: bool) -> None:
    """Show one job. Exit 0 succeeded, 1 failed or canceled, 3 queued, running or paused.

    Timestamps are ISO 8601 (2026-11-30T11:52:57.026401+00:00), in text and JSON.
    A fan-out job's text adds its items counted by status and its failed item
    of the lowest id with its error (`pgjobs items JOB` lists them).
    """
    items: dict[str, Any] = {}
    with obj.connect() as conn:
        job = require_job(conn, job_id)
        fanout = not as_json and bool(db.scalar(conn, queries.JOB_FANOUT, {"id": job_id}))
        if fanout:
            items = _items_fields(conn, job_id)
    if as_json:
        click.echo(to_json(job))  # as stored, placeholders too: scripts read it
    else:
        for key, value in (_status_fields(job, fanout) | items).items():
            if value is not None:
                click.echo(f"{key}: {text(value)}")
    sys.exit({"succeeded": 0, "failed": 1, "canceled": 1}.get(job["status"], 3))


def _status_fields(job: dict[str, Any], fanout: bool) -> dict[str, Any]:
    """The job's row as `status` prints it. A fan-out job's worker
    (pgjobs.items#...) and lease_expires_at (9999-12-31) are placeholders
    (docs/fanout.md: its items are leased, one by one): said as what they
    mean, the lease line left out."""
    if not fanout or job.get("worker") is None:
        return job
    shown = dict(job)
    shown["worker"] = "(fan-out: items are leased one by one; see pgjobs.job_items)"
    shown["lease_expires_at"] = None
    return shown


def _items_fields(conn: Any, job_id: int) -> dict[str, Any]:
    """A fan-out job's items as `status` adds them: their counts by status and,
    when one failed, the failed item of the lowest id and its error (`pgjobs
    items JOB --status failed` lists the others)."""
    from pgjobs.cli.items import counts_line, first_failed, item_counts

    failed = first_failed(conn, job_id)
    return {"items": counts_line(item_counts(conn, job_id)),
            "first_failed_item": None if failed is None
            else f"{failed['id']}: {printable(failed['error'])}"}


@main.command(name="list")
@click.option("--status", "status_", envvar="PGJOBS_STATUS", show_envvar=True,
              type=click.Choice(["queued", "running", "paused", "succeeded", "failed",
                                 "canceled"]),
              default=None, help="Only jobs in this status.")
@click.option("--limit", envvar="PGJOBS_LIMIT", show_envvar=True, type=click.IntRange(1, 10000),
              default=50, show_default=True, help="At most this many jobs.")
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="One JSON object per job and line (JSON lines), newest first.")
@click.pass_obj
def list_(obj: Context, status_: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first (id, kind, target, scope, status, done/total).

    On a terminal: a header and each job's age; piped: tab-separated lines
    without a header; --json: JSON lines.
    """
    with obj.connect() as conn:
        rows = db.rows(conn, queries.LIST_JOBS, {"status": status_, "limit": limit})
    if as_json:
        for job in rows:
            click.echo(to_json(job))
    elif sys.stdout.isatty():
        for line in _list_table(rows):
            click.echo(line)
    else:
        for job in rows:
            click.echo(_job_line(job))


@main.command()
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="One JSON object: role, kept_bytes, max_item_bytes_per_client, "
                   "room_bytes, jobs_keeping_bytes, held.")
@click.pass_obj
def room(obj: Context, as_json: bool) -> None:
    """Show this role's room under max_item_bytes_per_client (pgjobs.client_room()).

    The bytes its kept jobs hold past their allowance (items, long exclude
    lists, payloads past 4 KiB, import rejects), the ceiling, the room left
    before a submit or add_items is refused (55006), and how many jobs keep
    bytes. Pruning finished jobs gives their bytes back. Only ever this role's.
    """
    with obj.connect() as conn:
        row = db.one(conn, queries.CLIENT_ROOM)
    if as_json:
        click.echo(to_json(row))
        return
    jobs = row["jobs_keeping_bytes"]
    held = "" if row["held"] else " (an administrator: not held to it)"
    click.echo(f"role {printable(row['role'])} keeps {row['kept_bytes']} bytes of "
               f"{row['max_item_bytes_per_client']} (max_item_bytes_per_client), "
               f"{row['room_bytes']} left, in {jobs} job{'' if jobs == 1 else 's'}{held}")


@main.command()
@click.argument("job_id", type=JOB_ID)
@click.pass_obj
def cancel(obj: Context, job_id: int) -> None:
    """Cancel a job: queued at once, running at its next page.

    Exit 0 canceled, cancel requested or already canceled; 1 the job had already
    succeeded or failed (nothing to cancel: 55000) or does not exist (P0002).
    """
    with obj.connect() as conn:
        changed, job = job_verb(conn, job_id, db.cancel)
    if changed:
        state = "canceled" if job["status"] == "canceled" else "cancel requested"
        click.echo(f"job {job_id}: {state}")
    elif job["status"] in ("succeeded", "failed"):
        # It ran to its end: nothing was canceled, which a script must not miss.
        raise NotReady(f"job {job_id} had already finished ({job['status']}): nothing to "
                       "cancel", hint=f"`pgjobs status {job_id}` shows how it ended")
    else:  # canceled already: what was asked holds
        click.echo(f"job {job_id} had already finished ({job['status']})")


@main.command()
@click.argument("job_id", type=JOB_ID, required=False)
@click.option("--timeout", envvar="PGJOBS_WATCH_TIMEOUT", show_envvar=True, default=None,
              help="Stop watching after this long (e.g. 30s, 5m) [default: never].")
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="One JSON object per event (JSON lines): the job's row, its event, "
                   "note and rows_per_second.")
@progress_options
@click.pass_obj
def watch(obj: Context, job_id: int | None, timeout: str | None, as_json: bool, quiet: bool,
          no_progress: bool) -> None:
    """Follow job events (LISTEN pgjobs): one job until it finishes, or all jobs.

    Following one job: exit 0 succeeded, 1 failed or canceled, 3 at --timeout.
    Ctrl-C stops watching (exit 130); the job goes on.
    """
    from pgjobs.cli.progress import follow

    seconds = None if timeout is None else duration_seconds(timeout, "--timeout", minimum=0)
    code = follow(obj.dsn(), job_id, timeout=seconds, quiet=quiet, no_progress=no_progress,
                  as_json=as_json)
    sys.exit(code)


# --- engine -------------------------------------------------------------------


@main.command()
@click.option("--budget", envvar="PGJOBS_BUDGET", show_envvar=True, default="50s",
              show_default=True, help="Time budget of one run (e.g. 50s, 5m; more than 0, at most "
                   "1 day).")
@click.option("--loop", is_flag=True, envvar="PGJOBS_LOOP", show_envvar=True,
              help="Run again and again (drives the engine where pg_cron is absent).")
@click.option("--idle", envvar="PGJOBS_IDLE", show_envvar=True, default="1s",
              show_default=True, help="With --loop: how long to wait when there is no work "
                                      "(a submitted job wakes the loop at once; 100ms to "
                                      "1 day).")
@click.option("--runners", envvar="PGJOBS_RUNNERS", show_envvar=True,
              type=click.IntRange(1, 64), default=1, show_default=True,
              help="Runners side by side, each with its own connection (jobs of different "
                   "scopes proceed in parallel).")
@click.option("--quiet", "-q", is_flag=True, envvar="PGJOBS_QUIET", show_envvar=True,
              help="No line per job on stderr (started, progress, held, handed back, "
                   "finished, waited): errors only, as before these lines.")
@click.pass_obj
def run(obj: Context, budget: str, loop: bool, idle: str, runners: int, quiet: bool) -> None:
    """CALL pgjobs.run(budget): work delete/backfill pages, one COMMIT per page.

    Says on stderr what each runner did with each job, read once after each
    CALL: started, held (once a spell, with the reason), handed back at its
    budget's end, retried, paused, finished, and what it waited on; while a
    CALL runs, its jobs' progress (done/total), read at most once a second on
    one more connection per runner.
    """
    from pgjobs.cli.runners import run_runners

    if duration_seconds(budget, "--budget", maximum=86400) <= 0:
        # A run of no time claims nothing: exit 0 would read as "no work left".
        raise InvalidInput(f"invalid --budget {budget!r}: a run needs more than 0s (at most "
                           "1 day)", hint="use e.g. --budget 50s (the default), 5m or 1h")
    interval = parse_duration(budget, "--budget")
    # --idle 0 ran CALL pgjobs.run back to back on an idle queue: a busy loop.
    idle_seconds = duration_seconds(idle, "--idle", minimum=0.1, maximum=86400)
    if not loop:
        refuse_ignored(["idle"], "without --loop: one run never waits for work",
                       hint="add --loop to run again and again, or drop --idle")
    # SIGTERM (systemd's or Kubernetes' stop) stops the runners as Ctrl-C does:
    # their CALLs are canceled, the page in flight rolls back, and a job they
    # held is handed back at its last committed page. Python's default for
    # SIGTERM ended the process at once and left each CALL running on the
    # server, orphaned, until its budget ran out.
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run_runners(obj.connect, interval, loop, idle_seconds, runners, quiet)
    except KeyboardInterrupt:
        if not terminated:
            raise
        click.echo("SIGTERM: stopped; the call in flight was canceled (its page rolled "
                   "back); a job it held resumes from its last committed page, at once or "
                   "once its lease lapses", err=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not loop:
        # "Works until nothing is left" must not read as "nothing is left" when
        # a job is held by another session (perhaps a dead one, until its lease
        # lapses): say which, and when it can be taken.
        with obj.connect() as conn:
            db.execute(conn, queries.RUN_SEARCH_PATH)  # as the runner: nothing of the user's
            held = db.one(conn, queries.HELD_ELSEWHERE)
        if held["ids"]:
            click.echo(f"job(s) {held['ids']} still running in another session, under a "
                       f"lease until {text(held['until'])}: left to it (if that session "
                       "is gone, `pgjobs run` after the lease takes it back; "
                       "`pgjobs doctor` shows expired leases)", err=True)


@main.command()
@click.option("--retention", envvar="PGJOBS_RETENTION", show_envvar=True, default="24h",
              show_default=True, help="Delete finished jobs older than this (e.g. 24h, 7d).")
@click.option("--yes", "-y", is_flag=True,
              help="Prune without asking (on a terminal, a retention under an hour "
                   "asks first).")
@click.pass_obj
def prune(obj: Context, retention: str, yes: bool) -> None:
    """Rescue expired leases, delete old finished jobs, trim pg_cron history.

    Deletes in transactions of at most 10,000 jobs (pgjobs.prune's batch), one
    after the other until none is left; the counts are the sums. A retention
    under an hour (`--retention 0` takes every finished job, and queues the
    objects of exports just handed to their users for deletion) asks first on
    a terminal, saying what it would take; --yes, or no terminal, does not ask."""
    interval = parse_duration(retention, "--retention")  # a usage error before connecting
    with obj.connect() as conn:
        if not yes and sys.stdin.isatty() and sys.stdout.isatty():
            _confirm_short_retention(conn, retention, interval)
        summary = db.scalar(conn, queries.PRUNE, {"retention": interval})
        while summary.get("more"):
            more = db.scalar(conn, queries.PRUNE, {"retention": interval})
            for key in ("deleted", "objects_queued", "cron_runs_trimmed"):
                summary[key] = int(summary.get(key) or 0) + int(more.get(key) or 0)
            summary["more"] = more.get("more")
    click.echo(json.dumps(iso(summary), sort_keys=True))


def _confirm_short_retention(conn: Any, retention: str, interval: str) -> None:
    """On a terminal, a retention under an hour says what it takes and asks;
    'no' (the default) prunes nothing, exit 1."""
    if not db.one(conn, queries.PRUNE_SHORT, {"retention": interval})["short"]:
        return
    try:
        doomed = db.one(conn, queries.PRUNE_DOOMED, {"retention": interval})
    except PermissionDenied:
        doomed = None  # the question without the counts: pgjobs.prune decides
    if doomed is not None:
        if not doomed["jobs"]:
            return  # nothing finished that long ago: nothing to ask about
        click.echo(f"--retention {retention} deletes {doomed['jobs']:,} finished job(s), the "
                   f"newest finished {text(doomed['newest'])}; the objects of "
                   f"{doomed['exports']:,} succeeded export(s) are queued for deletion",
                   err=True)
    else:
        click.echo(f"--retention {retention} deletes every job finished more than "
                   f"{retention} ago, and queues its export's objects for deletion", err=True)
    if not confirm("Prune them?"):
        click.echo("nothing pruned", err=True)
        sys.exit(1)


@main.command()
@click.option("--rows", envvar=["PGJOBS_DEMO_ROWS", "DEMO_ROWS"], show_envvar=True,
              type=click.IntRange(1000, 100_000_000),
              default=1_000_000, show_default=True,
              help="Rows in the demo table (1000 to 100000000).")
@click.pass_obj
def demo(obj: Context, rows: int) -> None:
    """Build a demo shared relation, then delete, backfill and export with live progress.

    Runs on the embedded cluster (started if needed), or on the database --dsn
    names on the command line: it migrates pgjobs there, schedules pg_cron,
    and drops and refills demo.user_table_rows, so a PGJOBS_DSN or
    DATABASE_URL left in the environment does not choose that database.

    Its export (the import's source) and any rejects go under
    --storage/demo/CLUSTER/TIME/ (the cluster's system identifier, the run's
    UTC time), a folder no earlier demo wrote in: it runs again in the same
    folder, on this cluster or another, and prints where it wrote.
    """
    from pgjobs.cli.demo import check_storage, run_demo

    source = obj.dsn_source()
    if source in ("PGJOBS_DSN", "DATABASE_URL"):
        raise InvalidInput(
            f"pgjobs demo does not run on the database {source} names: it migrates pgjobs "
            "there, schedules pg_cron and drops and refills demo.user_table_rows",
            hint=f"pass --dsn on the command line to run it on that database, or unset "
                 f"{source} to run it on the embedded cluster (`pgjobs dev up`'s)")
    # Before the demo starts a cluster or builds anything: its export is written
    # there (under a folder of this cluster's and this run's: run_demo says which).
    check_storage(obj.storage)
    run_demo(obj.dsn(start_embedded=True), rows, obj.storage)


# The other commands: imported only when run (or looked up), listed by `pgjobs
# --help` with their help's first paragraph (tests/test_cli_lazy.py keeps it so).
main.commands = LazyCommands(main.commands, {
    "dev": ("pgjobs.cli.dev", "dev",
            "Embedded local PostgreSQL (+pg_cron when installed) for development."),
    "doctor": ("pgjobs.cli.doctor", "doctor",
               "Check pg_cron, every registered target (or only TARGET) and the jobs, and "
               "print\nthe exact SQL or command that fixes each finding."),
    "delete": ("pgjobs.cli.jobs", "delete",
               "Delete the rows of TARGET's scope that match the filter, in keyset pages."),
    "backfill": ("pgjobs.cli.jobs", "backfill",
                 "Set columns or document fields on the rows of TARGET's scope matching "
                 "the filter."),
    "export": ("pgjobs.cli.export", "export",
               "Export the rows of TARGET's scope that match the filter, in key order."),
    "import": ("pgjobs.cli.importing", "import_",
               "Import SOURCE (a URI, or a local path) into TARGET's scope."),
    "worker": ("pgjobs.cli.export", "worker",
               "Run export and import jobs (and delete the objects of pruned exports) "
               "until SIGTERM."),
    "url": ("pgjobs.cli.export", "url",
            "Print a download URL for a finished export: presigned for object stores, "
            "the\nfile's path for file://; one line per file of a Parquet export."),
    "items": ("pgjobs.cli.items", "items",
              "List a fan-out job's items in id order (id, status, attempts, worker, lease, "
              "error)."),
    "pause": ("pgjobs.cli.control", "pause",
              "Pause a job: queued at once, running after its page in flight (keeps its "
              "cursor)."),
    "resume": ("pgjobs.cli.control", "resume",
               "Resume a paused job: queued again with its cursor and its place in line."),
    "retry": ("pgjobs.cli.control", "retry",
              "Requeue a failed or canceled job from its checkpoint, attempts reset."),
    "ui": ("pgjobs.cli.ui", "ui",
           "Serve the web dashboard: jobs with live progress and actions, /events (SSE),"
           "\n/metrics (Prometheus), /api/jobs (JSON). It acts as the DSN's role."),
})


if __name__ == "__main__":  # pragma: no cover
    main()
