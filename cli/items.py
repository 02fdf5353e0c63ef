"""``pgjobs items JOB``: a fan-out job's items (pgjobs.job_items), a page at a
time in id order, and their counts by status; the counts and the first failed
item are what ``pgjobs status`` adds for a fan-out job.

The items are read as the connecting role: pgjobs.job_items' row policy
shows a client the items of exactly the jobs it may see, and a job it may not
see is refused as one that does not exist (pgjobs.cli.common.unknown_job),
the same answer either way. Pages are keyset pages (``--after ITEM_ID``):
each reads the index no further than its own items, whatever the job's size.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import JOB_ID, Context, a_job, require_job
from pgjobs.cli.output import iso, printable, to_json
from pgjobs.errors import InvalidInput

ITEM_STATUSES = queries.ITEM_STATUSES

_COLUMNS = ("ID", "STATUS", "ATTEMPTS", "WORKER", "LEASE_EXPIRES_AT", "ERROR")
DEFAULT_LIMIT = 100
ERROR_WIDTH = 120
"""An error is shown on one line and cut to this many characters in text
output; --json carries it whole."""


def item_counts(conn: db.Connection, job_id: int) -> dict[str, int]:
    """The job's items by status, every status present (0 when none)."""
    counted = {row["status"]: int(row["items"])
               for row in db.rows(conn, queries.JOB_ITEM_COUNTS, {"id": job_id})}
    return {status: counted.get(status, 0) for status in ITEM_STATUSES}


def first_failed(conn: db.Connection, job_id: int) -> dict[str, Any] | None:
    """The job's failed item of the lowest id (id and error), or None."""
    found = db.rows(conn, queries.JOB_FIRST_FAILED_ITEM, {"id": job_id})
    return dict(found[0]) if found else None


def counts_line(counts: dict[str, int]) -> str:
    """``5 items: 1 queued, 2 succeeded, 2 failed`` (the states with none left out)."""
    total = sum(counts.values())
    some = [f"{n:,} {status}" for status, n in counts.items() if n]
    return f"{total:,} item{'' if total == 1 else 's'}" + (f": {', '.join(some)}" if some
                                                            else "")


def one_line(error: str | None, width: int = ERROR_WIDTH) -> str:
    """An error on one line (its blanks run together, any other control
    character as printable shows it), cut to ``width``."""
    if error is None:
        return "-"
    flat = printable(" ".join(error.split()))
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def require_fanout(conn: db.Connection, job_id: int) -> dict[str, Any]:
    """The job's row when it is a fan-out job; a job this role cannot see is
    unknown_job (as `pgjobs status` says), any other job a usage error."""
    job = require_job(conn, job_id)
    if not db.scalar(conn, queries.JOB_FANOUT, {"id": job_id}):
        raise InvalidInput(
            f"job {job_id} is {a_job(str(job['kind']))}, not a fan-out job: it has no items",
            hint=f"`pgjobs status {job_id}` shows its progress; items belong to jobs "
                 "submitted with pgjobs.submit_items (docs/fanout.md)")
    return job


def _cells(item: dict[str, Any]) -> list[str]:
    lease = item["lease_expires_at"]
    return [str(item["id"]), item["status"], str(item["attempts"]),
            printable(item["worker"] or "-"),
            "-" if lease is None else str(iso(lease)), one_line(item["error"])]


def _table(items: list[dict[str, Any]]) -> list[str]:
    table = [list(_COLUMNS)] + [_cells(item) for item in items]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in table]


def _next_page(job_id: int, after: int, status: str | None, limit: int) -> str:
    words = ["pgjobs", "items", str(job_id), "--after", str(after)]
    if status is not None:
        words += ["--status", status]
    if limit != DEFAULT_LIMIT:
        words += ["--limit", str(limit)]
    return " ".join(words)


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--status", "status_", envvar="PGJOBS_ITEM_STATUS", show_envvar=True,
              type=click.Choice(ITEM_STATUSES), default=None,
              help="Only items in this status.")
@click.option("--limit", envvar="PGJOBS_LIMIT", show_envvar=True,
              type=click.IntRange(1, 10000), default=DEFAULT_LIMIT, show_default=True,
              help="At most this many items (one page).")
@click.option("--after", type=click.IntRange(0, 2**63 - 1), default=0,
              help="Start after this item id: the next page (stderr names it).")
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="One JSON object per item and line (JSON lines), payload and result "
                   "included.")
@click.pass_obj
def items(obj: Context, job_id: int, status_: str | None, limit: int, after: int,
          as_json: bool) -> None:
    """List a fan-out job's items in id order (id, status, attempts, worker, lease, error).

    One page of --limit items after --after (a keyset page: as quick at the
    millionth item as at the first); stderr says the job's items counted by
    status and, when more follow, the command that prints the next page. On a
    terminal: a header and aligned columns; piped: tab-separated lines; errors
    on one line, cut to 120 characters (--json: whole, with payload and
    result). A job that is not a fan-out job is a usage error (exit 2).
    """
    with obj.connect() as conn:
        require_fanout(conn, job_id)
        page = [dict(row) for row in db.rows(conn, queries.JOB_ITEMS_PAGE, {
            "id": job_id, "status": status_, "after": after, "limit": limit + 1})]
        counts = item_counts(conn, job_id)
    more = len(page) > limit
    page = page[:limit]
    if as_json:
        for item in page:
            click.echo(to_json(item))
    elif sys.stdout.isatty():
        for line in _table(page):
            click.echo(line)
    else:
        for item in page:
            click.echo("\t".join(_cells(item)))
    click.echo(f"job {job_id}: {counts_line(counts)}", err=True)
    if more:
        click.echo(f"next page: {_next_page(job_id, page[-1]['id'], status_, limit)}",
                   err=True)
