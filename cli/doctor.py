"""``pgjobs doctor [TARGET]``: prints the findings of ``pgjobs.doctor()``.

Only delegates: every check lives in the SQL function (docs/operations.md,
"pgjobs doctor"). On a terminal the findings are a table followed by the
fixes, unwrapped so they copy and paste; piped, one line per finding
(``STATUS  check  target  detail``) and an indented ``  fix: ...`` line under
each finding that is not ok; the count per status goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pgjobs import db, queries
from pgjobs.cli.common import TARGET, Context
from pgjobs.cli.output import printable

STATUSES = ("ok", "warn", "fail")
_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def needs_fixing(findings: list[dict[str, Any]], fail_on: str) -> bool:
    """True when a finding is at least as bad as ``fail_on`` ('warn' or 'fail')."""
    worst = STATUSES.index(fail_on)
    return any(STATUSES.index(f["status"]) >= worst for f in findings)


def plain_lines(findings: list[dict[str, Any]]) -> list[str]:
    """The piped format: ``STATUS  check  target  detail`` and ``  fix: SQL``."""
    lines: list[str] = []
    # A finding quotes what it found (a target's name, a role, a throttling
    # reason, a storage error naming an object a client's job wrote), each
    # field shown through printable: raw, a newline there forged a finding
    # (``OK  ...``) and ESC steered the terminal. --json prints them as
    # stored (JSON escapes those characters).
    for f in findings:
        lines.append(f"{f['status'].upper():<4}  {printable(f['check_name'])}  "
                     f"{printable(f['target'] or '-')}  {printable(f['detail'])}")
        if f["fix"]:
            lines.append(f"  fix: {printable(f['fix'])}")
    return lines


def summary(findings: list[dict[str, Any]]) -> str:
    counts = {s: sum(1 for f in findings if f["status"] == s) for s in STATUSES}
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES)


def _print_rich(findings: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(show_lines=False, header_style="bold")
    for column in ("Status", "Check", "Target", "Detail"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(Text(f["status"].upper(), style=_STYLES.get(f["status"], "")),
                      Text(printable(f["check_name"])), Text(printable(f["target"] or "-")),
                      Text(printable(f["detail"] or "")))
    console.print(table)
    fixes = [f for f in findings if f["fix"]]
    if fixes:
        console.print(Text("Fixes", style="bold"))
        for f in fixes:
            console.print(Text(f"  {printable(f['check_name'])} "
                               f"{printable(f['target'] or '')}".rstrip(),
                               style=_STYLES.get(f["status"], "")))
            # soft_wrap: long SQL stays one line, so it copies and pastes.
            console.print(Text(f"    {printable(f['fix'])}"), soft_wrap=True)
    console.print(Text(summary(findings)))


@click.command()
@click.argument("target", type=TARGET, required=False)
@click.option("--fail-on", type=click.Choice(["warn", "fail"]), default="warn",
              show_default=True, envvar="PGJOBS_DOCTOR_FAIL_ON", show_envvar=True,
              help="Exit 1 when a finding is at least this bad (warn: anything that needs "
                   "fixing).")
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="Print the findings as one JSON array.")
@click.pass_obj
def doctor(obj: Context, target: str | None, fail_on: str, as_json: bool) -> None:
    """Check pg_cron, every registered target (or only TARGET) and the jobs, and print
    the exact SQL or command that fixes each finding.

    Checks: pg_cron installed, preloaded, serving this database and running
    pgjobs (or a connected `pgjobs run` session of a role that may call pgjobs.run
    driving the engine, or pg_cron running it from its own database with
    cron.schedule_in_database); per target
    the table and its columns, the (scope, key) btree index, a btree_gin
    (scope, document jsonb_path_ops) index for document filters, the autovacuum
    scale factor and dead tuples; running jobs with an expired lease, or with
    no heartbeat for over half their lease (and a minute); pg_cron's run history
    of pgjobs; objects of pruned exports not deleted from storage after a day;
    without TARGET, clients keeping more than 80% of max_item_bytes_per_client, and
    objects of schema pgjobs owned by a role whose rights the schema's owner lacks
    (`pgjobs migrate` refuses them: engine.ownership).

    Exit status: 0 nothing to fix, 1 something needs fixing (any warn or fail;
    with --fail-on fail, only a fail), 2 TARGET is unknown or not registered.
    """
    with obj.connect() as conn:
        findings = db.rows(conn, queries.DOCTOR, {"target": target})
    if as_json:
        click.echo(json.dumps(findings))
    elif sys.stdout.isatty():
        _print_rich(findings)
    else:
        for line in plain_lines(findings):
            click.echo(line)
        click.echo(summary(findings), err=True)
    sys.exit(1 if needs_fixing(findings, fail_on) else 0)
