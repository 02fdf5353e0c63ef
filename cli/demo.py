"""``pgjobs demo``: the main job on a realistic table, end to end.

Builds a shared relation shaped like a spreadsheet product's rows
(``demo.user_table_rows``: DEMO_ROWS rows over 200 tenant tables, jsonb
data), registers it, then shows with live progress: a filtered "select all
except these" delete of one tenant table with a masked read in the middle,
a backfill of a field, an export, and the export imported back into a new
tenant table, and ends with a summary table.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pgjobs import db, queries, units
from pgjobs.cli.output import per_second, printable
from pgjobs.cli.progress import Waits, bar_columns
from pgjobs.errors import Conflict, InvalidInput, NotReady, PgjobsError, install_hint

if TYPE_CHECKING:
    from rich.console import Console

TARGET = "demo.user_table_rows"
DEMO_FOLDER = "demo"
"""The folder under --storage that holds every demo run's objects, one folder
per cluster below it and one per run below that (:func:`run_folder`)."""
STORAGE_HINT = ("the demo writes under --storage, by default ./pgjobs-exports in the folder it "
                "runs from: run it from a folder this user may write in, or pass --storage "
                "file:///a/folder/this/user/may/write (or set PGJOBS_STORAGE)")


@dataclass
class Outcome:
    job: str
    job_id: int
    rows: int
    seconds: float
    status: str
    # What the job waited on (Waits.lines): printed under its bar.
    waits: list[str] = field(default_factory=list)


def _connect(dsn: str, app: str) -> Any:
    """A session of the demo, its search_path pinned to pg_catalog, pg_temp: the
    demo runs as whoever may create its schema (often a superuser), and on the
    login's path (`"$user", public`) its fill and counts took a function or
    operator a role with CREATE on public had planted there as a better match
    (`||(text, integer)`, `=(integer, text)` for an untyped parameter) and ran
    it with the demo's rights. Every name the demo sends is qualified."""
    conn = db.connect(dsn, app=app)
    try:
        db.execute(conn, queries.PINNED_SEARCH_PATH)
    except BaseException:
        conn.close()
        raise
    return conn


def _run_job_in_background(dsn: str, job_id: int) -> threading.Thread:
    """CALL pgjobs.run_job in a thread, so the demo does not wait for pg_cron's
    next tick; a run already started by pg_cron is fine too."""

    def work() -> None:
        try:
            with _connect(dsn, "pgjobs demo run_job") as conn:
                db.execute(conn, queries.RUN_JOB, {"id": job_id})
        except Conflict:
            pass  # pg_cron's run took it first; we just follow it

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _follow(console: Console, conn: Any, job_id: int, label: str,
            midway: Any = None, total: int | None = None) -> Outcome:
    """Draw a progress bar from the job row until the job ends, then say what
    it waited on, one line per cause (Waits): a job held 15 s by autovacuum on
    its table showed only its time. The bar counts what the job's done counts
    (pgjobs.units.unit: an import's bytes of its source, read as rows it said
    48,000 "rows/s" for a job whose rows went at 6,000)."""
    from rich.progress import Progress

    started = time.monotonic()
    midway_done = midway is None
    waits = Waits()
    first = db.get_job(conn, job_id)
    assert first is not None
    unit = units.unit(str(first["kind"]))
    with Progress(*bar_columns(f"[bold]{label}[/]", unit), console=console,
                  transient=False) as progress:
        task = progress.add_task(label, total=None, rate=per_second(None, unit))
        while True:
            job = db.get_job(conn, job_id)
            assert job is not None
            waits.see(job)
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=job["done"], total=job["total"] or total,
                            rate=per_second(job["done"] / elapsed, unit))
            if not midway_done and job["done"] > 0 and job["status"] == "running":
                midway_done = True
                midway(progress.console)
            if job["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.02)
    lines = waits.lines()
    for line in lines:
        console.print(f"  {label} waited: {line}", markup=False, highlight=False)
    if job["status"] != "succeeded":
        raise PgjobsError(f"{label}: job {job_id} {job['status']}: {job.get('error')}")
    return Outcome(label, job_id, int(job["done"]), time.monotonic() - started, job["status"],
                   lines)


def run_demo(dsn: str, rows: int, storage: str, console: Console | None = None) -> list[Outcome]:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pgjobs.migrate import migrate

    console = console or Console()
    console.print(f"[bold]pgjobs demo[/] on {dsn}")
    conn = _connect(dsn, "pgjobs demo")
    try:
        _one_demo_at_a_time(conn)
        migrate(dsn)
        left = earlier_demos_folder(storage)
        storage = run_folder(conn, storage)
        console.print(f"the demo writes its export (the import's source) and any rejects "
                      f"under {storage}", markup=False, highlight=False)
        if left is not None:
            console.print(f"note: {printable(left)} holds the exports of earlier pgjobs "
                          "demos, which wrote there; demos now write under "
                          f"{DEMO_FOLDER}/ and never read that folder: remove it if you no "
                          "longer want those files", markup=False, highlight=False)
        try:
            schedule = db.scalar(conn, queries.SCHEDULE, {"options": db.jsonb({})})
            console.print(f"pg_cron {schedule['pg_cron']}: engine scheduled "
                          f"({printable(schedule['jobs'][0]['schedule'])}); the demo also runs "
                          "each job right away")
        except NotReady as exc:
            console.print(f"[yellow]pg_cron unavailable[/] ({escape(printable(exc.message))}): "
                          "the demo drives the engine itself, as `pgjobs run --loop` would")

        t0 = time.monotonic()
        with console.status(f"creating {TARGET} with {rows:,} rows over 200 tenant tables"):
            for statement in queries.DEMO_SETUP.split(";"):
                db.execute(conn, statement)
            db.execute(conn, queries.DEMO_FILL, {"rows": rows})
            for statement in queries.DEMO_INDEXES.split(";"):
                db.execute(conn, statement)
            db.execute(conn, queries.DEMO_REGISTER)
        console.print(f"created {TARGET}: {rows:,} rows in {time.monotonic() - t0:.1f}s")

        outcomes: list[Outcome] = []
        scope = "1"
        keep = db.scalar(conn, queries.DEMO_KEEP) or []
        before = int(db.scalar(conn, queries.DEMO_RAW_COUNT, {"scope": scope}))
        delete_id = int(db.scalar(conn, queries.SUBMIT_DELETE, {
            "target": TARGET, "scope": scope, "filter": db.jsonb({"status": "archived"}),
            "exclude": keep, "options": db.jsonb({})}))
        console.print(f"delete: table 1, status = archived, except rows {', '.join(keep)} "
                      f"(job {delete_id}); table 1 has {before:,} rows")

        def masked_read(out: Console) -> None:
            with _connect(dsn, "pgjobs demo reader") as reader:
                raw = int(db.scalar(reader, queries.DEMO_RAW_COUNT, {"scope": scope}))
                visible = int(db.scalar(reader, queries.DEMO_VISIBLE_COUNT, {"scope": scope}))
            out.print(f"  mid-job read: {raw:,} rows still stored, pgjobs.visible_count "
                      f"shows {visible:,} (what remains after the job)")

        _run_job_in_background(dsn, delete_id)
        outcomes.append(_follow(console, conn, delete_id, "delete", masked_read))
        after = int(db.scalar(conn, queries.DEMO_RAW_COUNT, {"scope": scope}))
        console.print(f"  table 1 now has {after:,} rows")

        backfill_id = int(db.scalar(conn, queries.SUBMIT_BACKFILL, {
            "target": TARGET, "scope": "2", "filter": db.jsonb({"status": "active"}),
            "set": db.jsonb({"reviewed": True, "owner.checked_by": "pgjobs"}),
            "options": db.jsonb({})}))
        console.print(f"backfill: table 2, status = active: set reviewed, owner.checked_by "
                      f"(job {backfill_id})")
        _run_job_in_background(dsn, backfill_id)
        outcomes.append(_follow(console, conn, backfill_id, "backfill"))

        export_outcome, export_uri = _export(console, dsn, storage)
        outcomes.append(export_outcome)
        outcomes.append(_import(console, conn, dsn, storage, export_uri))
    finally:
        conn.close()

    table = Table(title="pgjobs demo")
    for column in ("job", "id", "rows", "seconds", "rows/s", "waited"):
        table.add_column(column, justify="left" if column in ("job", "waited") else "right")
    for o in outcomes:
        table.add_row(o.job, str(o.job_id), f"{o.rows:,}", f"{o.seconds:.2f}",
                      f"{o.rows / max(o.seconds, 1e-6):,.0f}",
                      "; ".join(o.waits) if o.waits else "-")
    console.print(table)
    console.print(f"export written to {export_uri}")
    console.print(_next_line())
    return outcomes


def _next_line() -> str:
    """The demo's last line (rich markup): the dashboard, with the hint that
    installs its extra (escaped: rich's markup would eat '[ui]')."""
    from rich.markup import escape

    return ("next: watch the jobs live in the dashboard: [bold]pgjobs ui[/] "
            f"({escape(install_hint('ui'))}), then open http://localhost:8765/")


def _one_demo_at_a_time(conn: Any) -> None:
    """Hold the demo's advisory lock for this session (released when it closes),
    or refuse (55006): a second `make demo` on the same database while the first
    ran dropped and refilled demo.user_table_rows under the first one's jobs
    (its import failed: the table it was given was gone)."""
    if not db.scalar(conn, queries.DEMO_LOCK):
        raise Conflict(
            "another pgjobs demo is running on this database (a session with "
            "application_name 'pgjobs demo'): this one would drop and refill "
            "demo.user_table_rows under its jobs",
            hint="wait for that demo to end, then run this one again; or run it on another "
                 "cluster (another PGJOBS_HOME) or database (--dsn)")


def earlier_demos_folder(storage: str) -> str | None:
    """The folder ``demo.user_table_rows`` under a local --storage, where demos
    before stop 61 wrote their exports ({storage}/demo.user_table_rows/2/{job
    id}.csv.gz), when it is there; else None. The demo names it and leaves it
    (they are a user's files): a user who ran `make demo` before kept a
    folder that nothing said was no longer used."""
    from pgjobs.poller import storage as stores

    location = stores.parse(storage)
    if location.scheme != "file":
        return None
    folder = os.path.join(location.path, TARGET)
    return folder if os.path.isdir(folder) else None


def run_folder(conn: Any, storage: str) -> str:
    """The folder of this run's objects: ``{storage}/demo/{cluster}/{UTC time}``,
    the cluster named by its system identifier (the database's name where
    pg_control_system() is not granted), made sure writable before anything is
    built (InvalidInput, exit 2, naming it).

    An export never writes over an object it did not write (42710, the overwrite
    guard), and its key is {target}/{scope}/{job id}: straight under --storage,
    the second demo in a folder whose earlier cluster was removed (or a
    colleague's, or another PGJOBS_HOME's) numbered its jobs from 1 again and
    its export was refused. A folder per cluster and per run holds nothing any
    earlier demo wrote."""
    from pgjobs.poller import storage as stores
    from pgjobs.poller.export import path_segment

    system, database = db.server_identity(conn)
    cluster = system if system is not None else f"database-{path_segment(database)}"
    run = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = stores.object_location(storage, f"{DEMO_FOLDER}/{cluster}/{run}").uri
    check_storage(folder, "this run's folder under --storage")
    return folder


def check_storage(uri: str, option: str = "--storage") -> None:
    """``pgjobs demo``'s check of --storage, before it starts a cluster or builds
    anything (and of its run's folder, :func:`run_folder`): as every command
    checks it (:func:`pgjobs.poller.storage.writable`), but a local folder it
    may not write in or create names the default and the way out. A user who
    typed no --storage (`make demo`) was told to give `--storage or --to` a
    folder, of a folder (./pgjobs-exports) the demo had chosen itself."""
    from pgjobs.poller import storage as stores

    location = stores.writable(uri, option)
    try:
        stores.preflight(location, option)
    except InvalidInput as exc:
        if location.scheme != "file":
            raise
        raise InvalidInput(exc.message, hint=STORAGE_HINT) from None


def _export(console: Console, dsn: str, storage: str) -> tuple[Outcome, str]:
    """Export tenant table 2 (just backfilled) as gzipped CSV, in this process, as
    `pgjobs export` does."""
    from pgjobs.poller.export import Exporter

    with _connect(dsn, "pgjobs demo export") as conn:
        total = int(db.scalar(conn, queries.DEMO_RAW_COUNT, {"scope": "2"}))
        job_id = int(db.scalar(conn, queries.EXPORT_SUBMIT, {
            "target": TARGET, "scope": "2", "filter": db.jsonb({}),
            # Without the key and the scope: the demo imports the file back into a
            # new tenant table, whose rows get keys of their own.
            "options": db.jsonb({"format": "csv", "gzip": True,
                                 "columns": ["data", "created_at"]})}))
        console.print(f"export: table 2 as gzipped CSV to {storage} (job {job_id})")
        worker = db.worker_name("demo-export")
        claimed = db.rows(conn, queries.EXPORT_CLAIM_ONE,
                          {"id": job_id, "worker": worker, "lease": "30 seconds"})
        if not claimed:
            raise PgjobsError(f"export job {job_id} was taken by another worker")
        identity = str(claimed[0]["worker"])  # the claim's own identity: the fence
        if not total:
            raise PgjobsError("table 2 is empty")
        box: list[Any] = []
        thread = threading.Thread(
            target=lambda: box.append(Exporter(dsn, job_id, identity, storage).run()),
            daemon=True)
        thread.start()
        outcome = _follow(console, conn, job_id, "export", total=total)
        thread.join()
        job = db.get_job(conn, job_id)
    assert job is not None
    result = job["result"] or {}
    console.print(f"  {result.get('rows'):,} rows, {result.get('bytes'):,} bytes, "
                  f"sha256 {str(result.get('sha256'))[:16]}...")
    return outcome, str(result.get("uri"))


def _import(console: Console, conn: Any, dsn: str, storage: str, uri: str) -> Outcome:
    """Import the exported file into tenant table 300, in this process, as
    `pgjobs import` does. The demo is the administrator: it allows the folder of
    the export as an import source first."""
    from pgjobs.poller.importer import Importer

    db.execute(conn, queries.DEMO_ALLOW_STORAGE, {"prefix": uri.rsplit("/", 1)[0]})
    job_id = int(db.scalar(conn, queries.IMPORT_SUBMIT, {
        "target": TARGET, "scope": "300", "source": uri, "options": db.jsonb({})}))
    console.print(f"import: {uri} into table 300 (job {job_id})")
    claimed = db.rows(conn, queries.IMPORT_CLAIM_ONE,
                      {"id": job_id, "worker": db.worker_name("demo-import"),
                       "lease": "30 seconds"})
    if not claimed:
        raise PgjobsError(f"import job {job_id} was taken by another worker")
    box: list[Any] = []
    thread = threading.Thread(
        target=lambda: box.append(Importer(dsn, job_id, str(claimed[0]["worker"]),
                                           storage).run()), daemon=True)
    thread.start()
    outcome = _follow(console, conn, job_id, "import")
    thread.join()
    job = db.get_job(conn, job_id)
    result = (job or {}).get("result") or {}
    console.print(f"  {result.get('rows', 0):,} rows imported into table 300 "
                  f"({result.get('rejected', 0)} rejected)")
    # done counts bytes of the source for an import: the table shows rows.
    return Outcome(outcome.job, outcome.job_id, int(result.get("rows", 0)), outcome.seconds,
                   outcome.status, outcome.waits)


def default_rows() -> int:
    return int(os.environ.get("DEMO_ROWS", "1000000"))
