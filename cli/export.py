"""``pgjobs export``, ``pgjobs worker`` and ``pgjobs url``: exports to object storage.

Only delegates: the SQL functions decide what an export holds
(``pgjobs.submit_export``, ``pgjobs.export_chunk_sql``), :mod:`pgjobs.poller`
streams it. See docs/exports.md.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import (
    JOB_ID,
    PRIORITY,
    TARGET,
    Context,
    a_job,
    duration_seconds,
    flag_given,
    flag_option,
    parse_json,
    parse_options,
    progress_options,
    refuse_ignored,
    require_in_process,
    require_job,
    run_claimed,
)
from pgjobs.cli.output import human_bytes, printable, to_json
from pgjobs.cli.progress import TransferDisplay, run_in_thread
from pgjobs.errors import InvalidInput, PgjobsError
from pgjobs.poller import observe, storage
from pgjobs.poller.export import (
    DEFAULT_MAX_CHUNK_ROWS,
    DEFAULT_MAX_PART_SIZE,
    Exporter,
    Outcome,
)
from pgjobs.poller.standby import (
    DEFAULT_FALLBACK,
    DEFAULT_MAX_LAG,
    DEFAULT_MAX_WAIT,
    FALLBACKS,
    ReadConfig,
    check_read_dsn,
)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        # The message alone, as text (observe.PlainFormatter): what it quotes
        # may be a client's.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(observe.PlainFormatter())
        logging.basicConfig(level=logging.WARNING, handlers=[handler])


# --- standby reads: the same options on `pgjobs export` and `pgjobs worker` ----------


def _seconds(value: float) -> str:
    return f"{value:g}s"


def read_options(func: Any) -> Any:
    """``--read-dsn``, ``--read-max-wait``, ``--read-max-lag`` and ``--read-fallback``
    (PGJOBS_READ_*), defined once for every command that runs exports, with the
    poller's defaults (poller/standby.py); :func:`read_config` turns them into its
    :class:`ReadConfig`. tests/test_standby_options.py checks the commands agree."""
    options = [
        click.option("--read-dsn", envvar="PGJOBS_READ_DSN", show_envvar=True,
                     help="Read export rows from this streaming standby (job state stays on "
                          "the primary); each chunk waits until it has replayed past the "
                          "job's submit."),
        click.option("--read-max-wait", default=_seconds(DEFAULT_MAX_WAIT), show_default=True,
                     envvar="PGJOBS_READ_MAX_WAIT", show_envvar=True,
                     help="How long a chunk waits for the standby to replay far enough (or "
                          "to answer) before --read-fallback applies."),
        click.option("--read-max-lag", default=_seconds(DEFAULT_MAX_LAG), show_default=True,
                     envvar="PGJOBS_READ_MAX_LAG", show_envvar=True,
                     help="Read a chunk on the standby only once it has replayed what the "
                          "primary had written this long ago (bounds how stale a standby "
                          "read may be)."),
        click.option("--read-fallback", type=click.Choice(list(FALLBACKS)),
                     default=DEFAULT_FALLBACK, show_default=True,
                     envvar="PGJOBS_READ_FALLBACK", show_envvar=True,
                     help="When the standby is not ready in time: read from the primary (and "
                          "go back to the standby once it has caught up), or keep waiting."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def read_config(read_dsn: str | None, read_max_wait: str, read_max_lag: str,
                read_fallback: str) -> ReadConfig | None:
    """The poller's standby settings from :func:`read_options`' values (None without
    --read-dsn); a malformed duration is a usage error (exit 2), with --read-dsn
    or without: a typo in PGJOBS_READ_MAX_WAIT went unseen until the day a
    standby was configured."""
    max_wait = duration_seconds(read_max_wait, "--read-max-wait")
    max_lag = duration_seconds(read_max_lag, "--read-max-lag", minimum=1)
    if not read_dsn:
        refuse_ignored(["read_max_wait", "read_max_lag", "read_fallback"],
                       "without --read-dsn: the export reads the primary",
                       hint="add --read-dsn (or PGJOBS_READ_DSN) to read a standby, or drop "
                            "the option")
        return None
    return ReadConfig(read_dsn, max_wait, read_fallback, max_lag)


# --- pgjobs export ----------------------------------------------------------------


@click.command()
@click.argument("target", type=TARGET)
@click.option("--scope", required=True,
              help="The scope (tenant / logical table) value, as text.")
@click.option("--filter", "filter_",
              help="Filter as JSON [default: {} = every row of the scope].")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default="csv",
              show_default=True, envvar="PGJOBS_FORMAT", show_envvar=True,
              help="csv: a header and one column per column; jsonl: one JSON object per line; "
                   "parquet: typed columns, files under a folder (needs the parquet extra, "
                   "docs/exports.md; --options '{\"compression\": \"snappy\"}' for snappy, "
                   "zstd by default).")
@click.option("--columns",
              help="Comma-separated columns and/or document fields (a.b) [default: every "
                   "column].")
@click.option("--gzip", is_flag=True, envvar="PGJOBS_GZIP", show_envvar=True,
              help="Compress the object (.gz).")
@click.option("--to", "to",
              help="Destination URI prefix, under a prefix an administrator allowed with "
                   "pgjobs.allow_storage [default: --storage].")
@click.option("--detach", is_flag=True, envvar="PGJOBS_DETACH", show_envvar=True,
              help="Only submit: print the job id and leave the export to `pgjobs worker`.")
@click.option("--priority", type=PRIORITY, envvar="PGJOBS_PRIORITY", show_envvar=True,
              help="Higher runs first, -1000000 to 1000000 [default: 0].")
@click.option("--parallel", type=click.IntRange(1, 64), envvar="PGJOBS_PARALLEL",
              show_envvar=True,
              help="Split the scope's keys into up to N parts exported side by side (by this "
                   "process and idle `pgjobs worker` slots), joined into the one object "
                   "[default: 1].")
@click.option("--options", "extra",
              help="More job options as a JSON object (e.g. chunk_rows, part_size, lease).")
@read_options
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="Print the job as one JSON object (with --detach: as submitted; else as "
                   "it ended) instead of its id or the object URI.")
@progress_options
@click.pass_obj
def export(obj: Context, target: str, scope: str, filter_: str | None, fmt: str,
           columns: str | None, gzip: bool, to: str | None, detach: bool,
           priority: int | None, parallel: int | None, extra: str | None, read_dsn: str | None,
           read_max_wait: str, read_max_lag: str, read_fallback: str,
           as_json: bool, quiet: bool, no_progress: bool) -> None:
    """Export the rows of TARGET's scope that match the filter, in key order.

    Rows created after the export is submitted, and rows that a pending delete
    will remove, are left out. Runs the export in this process (unless
    --detach), showing progress on stderr, and prints the object's URI as the
    last line of stdout. Exit 0 done, 1 failed or canceled, 2 usage error.
    """
    if detach:
        # Options of the run here that a detached export never uses: refused,
        # not dropped (`--detach --read-dsn` read the primary without a word).
        refuse_ignored(["read_dsn", "read_max_wait", "read_max_lag", "read_fallback"],
                       "with --detach: the worker that runs the export reads where its own "
                       "--read-dsn says",
                       hint="give it to the worker (`pgjobs worker --read-dsn DSN`), or drop "
                            "--detach to run the export here")
        refuse_ignored(["storage"], "with --detach: the export goes to --to or, without "
                       "it, to the worker's own --storage",
                       hint="send this export somewhere with --to URI, or drop --detach to "
                            "run it here")
    options = parse_options(extra, '{"lease": "1 minute"}')
    flag_option(options, "format", fmt, "--format", given=flag_given("fmt"))
    if gzip:
        flag_option(options, "gzip", True, "--gzip")
    if columns is not None:
        # Every entry as given (stripped): an empty one ('id,,data', '') is a
        # mistake that the submit refuses with its hint, not one to drop.
        flag_option(options, "columns", [c.strip() for c in columns.split(",")], "--columns")
    if priority is not None:
        flag_option(options, "priority", priority, "--priority")
    if parallel is not None:
        flag_option(options, "parallel", parallel, "--parallel")
    # Where it goes, checked before anything is submitted (usage error, exit 2): a
    # place no worker writes to (https://) failed the job it had submitted.
    if to:
        # Compared as the places they name (file:///tmp/x and FILE:///tmp//x/
        # are one), not as written: two spellings of one destination were
        # refused as disagreeing.
        flag_option(options, "destination", to, "--to", same=storage.same_place)
        options["destination"] = storage.writable(to, "--to", open_store=not detach,
                                                  detachable=True).uri
    if not detach:
        # Run here: the store it writes to, credentials included, is checked
        # now (storage.preflight), as a worker checks its --storage at start.
        storage.writable(obj.storage, "--storage", open_store=not to, detachable=True)
    filter_value = parse_json(filter_, "filter") if filter_ is not None else {}
    reads = None if detach else read_config(read_dsn, read_max_wait, read_max_lag,
                                            read_fallback)
    if reads is not None:
        check_read_dsn(obj.dsn(), reads)  # exit 2 before anything is submitted

    if not detach:
        # S3's client is built while the job is submitted and claimed, not in
        # line before the first part (nothing is loaded for other storage).
        storage.warm_up_behind(options.get("destination") or obj.storage)
    # One session submits, claims, and is the exporter's control connection
    # (_run_here): a backend that has compiled the submit's functions serves the
    # heartbeats and bound walks too, instead of two more cold ones.
    with obj.connect(app="pgjobs export") as conn:
        if not detach:
            require_in_process(conn, "pgjobs.claim_export(bigint,text,interval)", "export")
        job_id = int(db.scalar(conn, queries.EXPORT_SUBMIT, {
            "target": target, "scope": scope, "filter": db.jsonb(filter_value),
            "options": db.jsonb(options)}))
        if not quiet:
            click.echo(f"job {job_id} submitted", err=True)
        if detach:
            print_submitted(obj, job_id, as_json, conn)
            return
        _setup_logging()
        display = _Display(job_id, quiet=quiet, no_progress=no_progress)
        status = _run_here(obj, job_id, target, scope, filter_value, display, as_json, reads,
                           conn)
    sys.exit(status)


def print_submitted(obj: Context, job_id: int, as_json: bool, conn: Any = None) -> None:
    """A submit command's stdout: the job id, or (--json) the job as JSON (read on
    ``conn`` when given, the session that submitted it)."""
    if not as_json:
        click.echo(job_id)
        return
    if conn is not None:
        click.echo(to_json(db.get_job(conn, job_id)))
        return
    with obj.connect() as own:
        click.echo(to_json(db.get_job(own, job_id)))


def _run_here(obj: Context, job_id: int, target: str, scope: str,
              filter_value: Any, display: _Display, as_json: bool,
              reads: ReadConfig | None = None, session: Any = None) -> int:
    """Run (and re-run after a retryable failure) the job in this process until it
    ends; if a worker holds it, follow it instead. Returns the exit status.
    ``session``: the connection the job was submitted on; it claims, and the
    exporter uses it as its control connection while it runs (the data is read
    on a connection of the exporter's own). Lost meanwhile, a new one takes over."""
    dsn = obj.dsn()
    if display.show:
        # The total only the bar and the plain lines show: with --no-progress
        # or --quiet no count runs (a scan of the scope on a session of its own,
        # beside the export's, competing for the same cores).
        threading.Thread(target=display.count_total, args=(dsn, target, scope, filter_value),
                         daemon=True).start()
    stop = threading.Event()

    def run(conn: Any, identity: str) -> Outcome:
        return run_in_thread(Exporter(dsn, job_id, identity, obj.storage, stop=stop,
                                      on_progress=display.progress, reads=reads,
                                      control=conn),
                             display)

    ended = run_claimed(
        dsn, job_id, session, kind="export", claim=queries.EXPORT_CLAIM_ONE, run=run,
        display=display, stop=stop,
        follow=lambda job: display.progress(int(job["done"]), None),
        notes={"paused": lambda job: f"job {job_id} is paused: `pgjobs resume {job_id}` "
                                     "continues it here"})
    if isinstance(ended, int):
        return ended  # Ctrl-C handed it back
    job = ended
    display.close()
    if as_json:
        click.echo(to_json(job))
    if job["status"] == "succeeded":
        result = job["result"] or {}
        display.note(f"job {job_id} succeeded: {result.get('rows') or 0:,} rows, "
                     f"{human_bytes(result.get('bytes') or 0)}, sha256 {result.get('sha256')}")
        if not as_json:
            click.echo(printable(result.get("uri")))
        return 0
    click.echo(f"error: job {job_id} {job['status']}: "
               f"{printable(job.get('error') or 'canceled')}",
               err=True)
    return 1


class _Display(TransferDisplay):
    """The export's progress: rows (of the scope's estimated count once known),
    bytes written and MB/s."""

    kind = "export"

    def _columns(self) -> list[Any]:
        from rich.progress import MofNCompleteColumn, TextColumn

        return [MofNCompleteColumn(), TextColumn("rows"), TextColumn("{task.fields[rate]}")]

    def _fields(self) -> dict[str, Any]:
        # This process started the job (or resumed it): the rate is since then.
        return {"completed": self.rows, "total": self.total,
                "rate": self._written(time.monotonic() - self.started)}

    def _written(self, elapsed: float) -> str:
        return f"{human_bytes(self.bytes)}, {self._rate(elapsed)}"

    def _line(self, elapsed: float) -> str:
        total = f"/{self.total:,}" if self.total is not None else ""
        return f"job {self.job_id}: {self.rows:,}{total} rows, {self._written(elapsed)}"

    def count_total(self, dsn: str, target: str, scope: str, filter_value: Any) -> None:
        """The row count for the ETA, computed alongside (an estimate: it ignores the
        cutoff)."""
        try:
            with db.connect(dsn, app="pgjobs export count") as conn:
                self.total = int(db.scalar(conn, queries.EXPORT_COUNT, {
                    "target": target, "scope": scope, "filter": db.jsonb(filter_value)}))
        except (PgjobsError, Exception):  # noqa: BLE001 - the ETA is optional
            self.total = None

    def progress(self, rows: int, out_bytes: int | None) -> None:
        self.rows = rows
        if out_bytes is not None:
            self.bytes = out_bytes


# --- pgjobs worker ----------------------------------------------------------------


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="PGJOBS_CONCURRENCY", show_envvar=True,
              help="Exports run at once (one thread and two connections each).")
@click.option("--once", is_flag=True, envvar="PGJOBS_ONCE", show_envvar=True,
              help="Exit when no export is left to claim and none is running.")
@click.option("--lease", default="30s", show_default=True, envvar="PGJOBS_LEASE",
              show_envvar=True, help="Lease of a claimed job; heartbeats renew it.")
@click.option("--poll", default="2s", show_default=True, envvar="PGJOBS_POLL", show_envvar=True,
              help="Poll for jobs this often besides LISTEN (100ms to 1h).")
@click.option("--stale-after", default="1h", show_default=True, envvar="PGJOBS_STALE_AFTER",
              show_envvar=True,
              help="Remove upload leftovers of finished jobs once this old.")
@click.option("--max-chunk-rows", type=click.IntRange(1, 1_000_000),
              default=DEFAULT_MAX_CHUNK_ROWS, show_default=True,
              envvar="PGJOBS_MAX_CHUNK_ROWS", show_envvar=True,
              help="Largest chunk_rows a job may ask for; larger requests are clamped.")
@click.option("--max-part-size", type=click.IntRange(1024, 1024 ** 3),
              default=DEFAULT_MAX_PART_SIZE, show_default=True,
              envvar="PGJOBS_MAX_PART_SIZE", show_envvar=True,
              help="Largest part_size (bytes) a job may ask for; larger requests are clamped. "
                   "A worker holds a few parts per running export in memory.")
@click.option("--storage-retry", default="10m", show_default=True,
              envvar="PGJOBS_STORAGE_RETRY", show_envvar=True,
              help="Keep retrying a part that storage fails transiently (network, 5xx) this "
                   "long within one attempt, renewing the lease and keeping the parts "
                   "written, before the attempt fails.")
@read_options
@click.option("--metrics-port", type=click.IntRange(1, 65535), envvar="PGJOBS_METRICS_PORT",
              show_envvar=True,
              help="Serve Prometheus metrics (pgjobs_worker_*) on http://HOST:PORT/metrics "
                   "(needs the observe extra, docs/observability.md).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              envvar="PGJOBS_METRICS_HOST", show_envvar=True,
              help="Address the metrics endpoint binds.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, envvar="PGJOBS_LOG_FORMAT", show_envvar=True,
              help="Log lines on stderr: text, or one JSON object a line; both carry an "
                   "ISO 8601 UTC time, the level and the job id.")
@click.pass_obj
def worker(obj: Context, concurrency: int, once: bool, lease: str, poll: str,
           stale_after: str, max_chunk_rows: int, max_part_size: int,
           storage_retry: str, read_dsn: str | None, read_max_wait: str,
           read_max_lag: str, read_fallback: str, metrics_port: int | None,
           metrics_host: str, log_format: str) -> None:
    """Run export and import jobs (and delete the objects of pruned exports) until SIGTERM.

    On SIGTERM or Ctrl-C it stops claiming, checkpoints the running jobs and
    hands them back for another worker to resume, then exits.
    """
    from pgjobs.poller.worker import Worker

    if metrics_port is None:
        refuse_ignored(["metrics_host"], "without --metrics-port: no metrics are served",
                       hint="add --metrics-port PORT (or PGJOBS_METRICS_PORT), or drop "
                            "--metrics-host")
    # Refused at start (a worker of https:// storage failed every export it claimed).
    storage.writable(obj.storage, "--storage", open_store=True)
    storage.warm_up(obj.storage)
    lease_s = duration_seconds(lease, "--lease", minimum=1, maximum=86400)
    click.get_current_context().with_resource(observe.logs_to_stderr(log_format))
    dsn = obj.dsn()
    reads = read_config(read_dsn, read_max_wait, read_max_lag, read_fallback)
    if reads is not None:
        check_read_dsn(dsn, reads)
    w = Worker(dsn, obj.storage, concurrency=concurrency, once=once, lease=lease_s,
               poll=duration_seconds(poll, "--poll", minimum=0.1, maximum=3600),
               stale_after=timedelta(seconds=duration_seconds(stale_after, "--stale-after")),
               max_chunk_rows=max_chunk_rows, max_part_size=max_part_size,
               storage_retry=duration_seconds(storage_retry, "--storage-retry"), reads=reads,
               on_start=lambda: logging.getLogger("pgjobs.worker").info(
                   "worker %s: concurrency %s, storage %s%s%s", w.name, concurrency,
                   obj.storage,
                   f", export reads from --read-dsn (after {read_max_wait}: {read_fallback})"
                   if reads else "",
                   f", metrics on http://{metrics_host}:{metrics_port}/metrics"
                   if metrics else ""))
    metrics = observe.start_metrics(metrics_port, metrics_host) if metrics_port else None
    try:
        failed = w.run()
    finally:
        if metrics is not None:
            metrics.shutdown()  # stops serving; the listening socket is closed apart
            metrics.server_close()
    sys.exit(1 if once and failed else 0)


# --- pgjobs url -------------------------------------------------------------------


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--expires", default="1h", show_default=True, envvar="PGJOBS_URL_EXPIRES",
              show_envvar=True, help="How long a presigned URL stays valid.")
@click.pass_obj
def url(obj: Context, job_id: int, expires: str) -> None:
    """Print a download URL for a finished export: presigned for object stores, the
    file's path for file://; one line per file of a Parquet export."""
    seconds = duration_seconds(expires, "--expires", minimum=1, maximum=7 * 86400)
    with obj.connect() as conn:
        job = require_job(conn, job_id)
    if job["kind"] != "export":
        raise InvalidInput(f"job {job_id} is {a_job(job['kind'])}, not an export",
                           hint="`pgjobs list` shows each job's kind; only an export has "
                                "objects to download")
    if job["status"] != "succeeded" or not (job["result"] or {}).get("uri"):
        raise InvalidInput(f"job {job_id} is {job['status']}: it has no object yet",
                           hint=f"follow it with `pgjobs watch {job_id}`")
    # An export of several objects (Parquet files) has one URL per object, a line each.
    for uri in job["result"].get("uris") or [job["result"]["uri"]]:
        click.echo(storage.sign_url(uri, timedelta(seconds=seconds)))
