"""``pgjobs dev up | down | status``: the embedded local PostgreSQL cluster.

Only delegates to :mod:`pgjobs.embedded`; see ``docs/embedded.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from pgjobs import embedded
from pgjobs.cli.common import Group
from pgjobs.cli.output import iso, to_json
from pgjobs.errors import PgjobsError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NOT_RUNNING = 3
"""``pgjobs dev status`` exit status when the cluster is not running."""


def _home_option(func: F) -> F:
    """``--home`` (env ``PGJOBS_HOME``): where the cluster lives."""

    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            # pgjobs.embedded reads the environment, so every later call
            # (including DSN resolution by other commands) sees the same home.
            os.environ["PGJOBS_HOME"] = value
        return value

    return click.option(
        "--home",
        envvar="PGJOBS_HOME",
        show_envvar=True,
        type=click.Path(file_okay=False),
        callback=remember,
        expose_value=False,
        is_eager=True,
        help="Directory of the embedded cluster [default: a per-user data directory; "
        f"{embedded.ROOT_DEFAULT_HOME} as root].",
    )(func)


def _fail(exc: PgjobsError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(cls=Group)
def dev() -> None:
    """Embedded local PostgreSQL (+pg_cron when installed) for development.

    With no DSN (--dsn, PGJOBS_DSN, DATABASE_URL), pgjobs commands use it while it is
    running; only `pgjobs dev up` and `pgjobs demo` start it.
    """


@dev.command()
@_home_option
def up() -> None:
    """Create and start the local cluster if needed; print its DSN."""
    try:
        click.echo(embedded.up())
    except PgjobsError as exc:
        _fail(exc)


@dev.command()
@_home_option
def down() -> None:
    """Stop the local cluster (fast shutdown). Its data is kept."""
    try:
        stopped = embedded.down()
    except PgjobsError as exc:
        _fail(exc)
    click.echo("stopped" if stopped else "not running")


@dev.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, envvar="PGJOBS_JSON", show_envvar=True,
              help="Print the cluster's state as one JSON object.")
def status(as_json: bool) -> None:
    """Show the local cluster. Exit 0 when running, 3 when not."""
    try:
        info = embedded.status()
    except PgjobsError as exc:
        _fail(exc)
    if as_json:
        click.echo(to_json(info))
        click.get_current_context().exit(0 if info["running"] else EXIT_NOT_RUNNING)
    width = max(len(key) for key in info)
    for key, value in info.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else iso(
            value)
        click.echo(f"{key:<{width}}  {shown}")
    click.get_current_context().exit(0 if info["running"] else EXIT_NOT_RUNNING)


if __name__ == "__main__":
    dev()
