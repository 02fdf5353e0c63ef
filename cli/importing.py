"""``pgjobs import``: stream a CSV or JSONL file into a scope.

Only delegates: ``pgjobs.submit_import`` validates and queues the job,
:mod:`pgjobs.poller.importer` streams it. See docs/imports.md.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import (
    TARGET,
    Context,
    flag_option,
    parse_options,
    progress_options,
    refuse_ignored,
    require_in_process,
    run_claimed,
)
from pgjobs.cli.export import _setup_logging, print_submitted
from pgjobs.cli.output import human_bytes, printable, to_json
from pgjobs.cli.progress import TransferDisplay, run_in_thread
from pgjobs.errors import InvalidInput
from pgjobs.poller import storage
from pgjobs.poller.export import Outcome
from pgjobs.poller.importer import Importer


def source_uri(source: str) -> str:
    """A URI as given; a local path as the file:// URI of its absolute path.

    An empty SOURCE (an unset shell variable) and a local directory name no
    file: usage errors. ``''`` used to become the working directory's URI,
    refused as not allowed, or queued for a worker that could only fail."""
    if not source.strip():
        raise InvalidInput("SOURCE is empty",
                           hint="name the file to import: a local path or a URI such as "
                                "s3://bucket/imports/rows.csv")
    if "://" in source:
        return source
    if source == "-":
        # Became file://$PWD/-, refused as missing here, or submitted with
        # --detach for a worker that could only fail.
        raise InvalidInput("SOURCE - (standard input) is not supported: an import reads "
                           "a file or a URI",
                           hint="save the input to a file first and give its path")
    if source.startswith("~") and not os.path.lexists(source):
        # A quoted '~/rows.csv' reaches pgjobs unexpanded: it named ./~/rows.csv.
        raise InvalidInput(f"SOURCE {source!r} starts with ~, which the shell expands only "
                           "when it is not quoted",
                           hint=f"give the full path ({os.path.expanduser(source)}?) or "
                                "leave ~ unquoted")
    if os.path.isdir(source):
        raise InvalidInput(f"SOURCE {source!r} is a directory",
                           hint="name one file of it: an import reads one CSV or JSONL "
                                "file (gzipped or not)")
    return "file://" + os.path.abspath(source)


# Operands (target, scope, source) are never read from the environment: a variable
# left in a shell must not steer an import (docs/STYLE: options have PGJOBS_*
# variables, operands none).
@click.command("import")
@click.argument("target", type=TARGET)
@click.argument("source")
@click.option("--scope", required=True, help="The scope (tenant / logical table) value, as text.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), envvar="PGJOBS_FORMAT",
              show_envvar=True,
              help="csv: a header row, then records; jsonl: one JSON object per line "
                   "[default: from the name, .jsonl/.ndjson else csv].")
@click.option("--on-duplicate", type=click.Choice(["error", "skip", "update"]),
              help="What a record whose (scope, key) exists does [default: error].")
@click.option("--max-rejects", type=click.IntRange(0, 1_000_000),
              help="Bad records to reject (and list) before failing [default: 0].")
@click.option("--gzip/--no-gzip", default=None, envvar="PGJOBS_GZIP", show_envvar=True,
              help="[default: the name ends in .gz]")
@click.option("--detach", is_flag=True, envvar="PGJOBS_DETACH", show_envvar=True,
              help="Only submit: print the job id and leave the import to `pgjobs worker`.")
@click.option("--options", "extra",
              help="More job options as a JSON object (e.g. batch_ms, priority, lease).")
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="Print the job as one JSON object (with --detach: as submitted; else as "
                   "it ended) instead of its id or result.")
@progress_options
@click.pass_obj
def import_(obj: Context, target: str, source: str, scope: str, fmt: str | None,
            on_duplicate: str | None, max_rejects: int | None, gzip: bool | None,
            detach: bool, extra: str | None, as_json: bool, quiet: bool,
            no_progress: bool) -> None:
    """Import SOURCE (a URI, or a local path) into TARGET's scope.

    The source must lie under a prefix an administrator allowed
    (pgjobs.allow_storage). Runs the import in this process (unless --detach),
    showing progress on stderr, and prints the result as the last line of stdout.
    Exit 0 done, 1 failed or canceled, 2 usage error.
    """
    if detach:
        refuse_ignored(["storage"], "with --detach: the worker that runs the import writes "
                       "its rejects under its own --storage",
                       hint="give it to the worker (`pgjobs --storage URI worker`), or drop "
                            "--detach to run the import here")
    options: dict[str, Any] = parse_options(extra, '{"batch_ms": 500}')
    if fmt:
        flag_option(options, "format", fmt, "--format")
    if on_duplicate:
        flag_option(options, "on_duplicate", on_duplicate, "--on-duplicate")
    if max_rejects is not None:
        flag_option(options, "max_rejects", max_rejects, "--max-rejects")
    if gzip is not None:
        flag_option(options, "gzip", gzip, "--gzip" if gzip else "--no-gzip")
    where = storage.parse(source_uri(source))  # malformed or an unknown scheme: exit 2
    if not detach:
        # Read here: a local file must exist and be readable, a store's
        # credentials resolve (storage.preflight), before anything is submitted.
        storage.preflight(where, "SOURCE", reading=True, detachable=True)
        # Where its rejects go, checked before anything is submitted (exit 2).
        storage.writable(obj.storage, "--storage")
        # S3's client (the source's reads, the rejects) is built while the job
        # is submitted and claimed, not in line before the first read.
        storage.warm_up_behind(source_uri(source), obj.storage)
    # One session submits, claims, and is the importer's control connection
    # (_run_here), as `pgjobs export`'s: a backend that has compiled the
    # submit's functions serves the heartbeats too, instead of two more cold ones.
    with obj.connect(app="pgjobs import") as conn:
        if not detach:
            require_in_process(conn, "pgjobs.claim_import(bigint,text,interval)", "import")
        job_id = int(db.scalar(conn, queries.IMPORT_SUBMIT, {
            "target": target, "scope": scope, "source": source_uri(source),
            "options": db.jsonb(options)}))
        if not quiet:
            click.echo(f"job {job_id} submitted", err=True)
        if detach:
            print_submitted(obj, job_id, as_json, conn)
            return
        _setup_logging()
        status = _run_here(obj, job_id, _Display(job_id, quiet=quiet, no_progress=no_progress),
                           as_json, conn)
    sys.exit(status)


def _run_here(obj: Context, job_id: int, display: _Display, as_json: bool,
              session: Any = None) -> int:
    """Run (and re-run after a retryable failure) the job here until it ends; when a
    worker holds it, or the gate holds it back, follow it instead.
    ``session``: the connection the job was submitted on; it claims, and the
    importer uses it as its control connection while it runs (the batches are
    copied on a connection of the importer's own). Lost meanwhile, a new one
    takes over."""
    import json

    dsn = obj.dsn()
    stop = threading.Event()

    def run(conn: Any, identity: str) -> Outcome:
        return run_in_thread(Importer(dsn, job_id, identity, obj.storage, stop=stop,
                                      on_progress=display.progress, control=conn,
                                      on_held=display.held),
                             display)

    def queued(job: dict[str, Any]) -> str:
        # The claim took nothing: "0 records" lines alone read as a hang. The
        # gate (pgjobs._writer_may_start) decides; say why. The writer it waits
        # behind, when this role may see it (pgjobs._gate_holder, as `pgjobs
        # status` says it).
        ahead = (f"job {job['waits_behind']}, the writer of {printable(job['target'])} "
                 f"scope {printable(job['scope'])}, is running or queued ahead of it"
                 if job.get("waits_behind") is not None else
                 f"another writing job of {printable(job['target'])} scope "
                 f"{printable(job['scope'])} "
                 "is running or queued ahead of it")
        return (f"job {job_id} waits its turn: {ahead} (one at a time, in submission "
                "order), or its run_at is later; it starts here then (`pgjobs list` shows "
                "the scope's jobs; Ctrl-C detaches)")

    ended = run_claimed(
        dsn, job_id, session, kind="import", claim=queries.IMPORT_CLAIM_ONE, run=run,
        display=display, stop=stop,
        follow=lambda job: display.progress(0, int(job["done"]), job["total"]),
        # Not an end (as `pgjobs export`): this command goes on when the job
        # is resumed, from the committed offset.
        notes={"paused": lambda job: f"job {job_id} is paused: `pgjobs resume {job_id}` "
                                     "continues it here (Ctrl-C detaches)",
               "queued": queued})
    if isinstance(ended, int):
        return ended  # Ctrl-C handed it back
    job = ended
    display.close()
    display.waited()
    if as_json:
        click.echo(to_json(job))
    if job["status"] == "succeeded":
        result = job["result"] or {}
        display.note(f"job {job_id} succeeded: {result.get('rows')} rows, "
                     f"{result.get('skipped')} skipped, {result.get('rejected')} rejected")
        if not as_json:
            click.echo(json.dumps(result, sort_keys=True))
        return 0
    click.echo(f"error: job {job_id} {job['status']}: "
               f"{printable(job.get('error') or 'canceled')}",
               err=True)
    return 1


class _Display(TransferDisplay):
    """The import's progress: bytes of the source read (of its size once known),
    MB/s, and records."""

    kind = "import"

    def _columns(self) -> list[Any]:
        from rich.progress import DownloadColumn, TextColumn, TransferSpeedColumn

        return [DownloadColumn(), TransferSpeedColumn(), TextColumn("{task.fields[rows]} rows")]

    def _fields(self) -> dict[str, Any]:
        return {"completed": self.bytes, "total": self.total or None, "rows": self.rows}

    def _line(self, elapsed: float) -> str:
        total = f" of {human_bytes(self.total)}" if self.total else ""
        return (f"job {self.job_id}: {self.rows:,} records, {human_bytes(self.bytes)}"
                f"{total}, {self._rate(elapsed)}")

    def progress(self, rows: int, read: int, total: int | None) -> None:
        if rows:
            self.rows = rows
        self.bytes = read
        if total is not None:
            self.total = int(total)
