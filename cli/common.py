"""What every `pgjobs` subcommand shares: the context object, the error-
printing group, and the parsers of JSON and duration arguments. Subcommand
modules import from here, never from :mod:`pgjobs.cli.main`, so running
``python -m pgjobs.cli.main`` imports no module twice."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from pgjobs import db
from pgjobs.cli.dsn import configured_dsn, resolve_dsn
from pgjobs.errors import InvalidInput, PgjobsError

DEFAULT_STORAGE = "file://./pgjobs-exports"

OPERANDS = frozenset({"target", "scope", "filter_", "set_", "exclude", "columns", "source",
                      "extra", "to", "on_duplicate", "max_rejects", "yes", "dry_run"})
"""Parameter names that are never read from an environment variable: what a command
acts on (target, scope, filter, set, exclude, columns, source), the job's own options
and destination (--options, --to), what an import does to existing rows and bad
records (--on-duplicate, --max-rejects), and the guards (--yes, --dry-run). A variable left
in a shell (PGJOBS_FILTER from an export) must not steer a destructive command; only
connection and configuration options (--dsn, --storage, ...) read the environment.
tests/test_cli_guards.py walks every command for it."""


@dataclass
class Context:
    """What every subcommand gets as ``ctx.obj``."""

    dsn_option: str | None
    storage: str
    _dsn: str | None = field(default=None, repr=False)

    def dsn(self, *, start_embedded: bool = False) -> str:
        """The resolved DSN: --dsn, PGJOBS_DSN, DATABASE_URL, else the embedded cluster
        when it is running (said on stderr). Only ``pgjobs demo`` passes
        ``start_embedded``; otherwise a stopped cluster stays stopped: exit 2 with a
        hint (:func:`pgjobs.cli.dsn.resolve_dsn`)."""
        if self._dsn is None:
            embedded = configured_dsn(self.dsn_option) is None
            self._dsn = resolve_dsn(self.dsn_option, start_embedded=start_embedded)
            if embedded:
                click.echo(f"using the embedded cluster {self._dsn} (no --dsn, PGJOBS_DSN or "
                           "DATABASE_URL)", err=True)
        return self._dsn

    def connect(self, **kwargs: Any) -> Any:
        return db.connect(self.dsn(), **kwargs)


def _not_utf8(text: str) -> bool:
    """Python hands undecodable bytes of argv and the environment over as lone
    surrogates (surrogateescape); they cannot be sent to PostgreSQL as text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(text: str) -> str:
    """The text with its undecodable bytes written as \\xNN, for one error line."""
    return repr(os.fsencode(text))[2:-1]


def check_utf8(args: Sequence[str], environ: dict[str, str]) -> str | None:
    """The error line for the first argument, option value or setting read from the
    environment (PGJOBS_*, DATABASE_URL) that is not valid UTF-8, else None."""
    for position, arg in enumerate(args, 1):
        if _not_utf8(arg):
            return f"argument {position} ({_shown(arg)}) is not valid UTF-8"
    for name in sorted(environ):
        if not (name.startswith("PGJOBS_") or name == "DATABASE_URL"):
            continue
        if _not_utf8(name) or _not_utf8(environ[name]):
            return f"environment variable {_shown(name)} is not valid UTF-8"
    return None


class Group(click.Group):
    """Turns PgjobsError into one line on stderr and its exit code; refuses input that
    is not valid UTF-8 before any command sees it."""

    def main(self, args: Sequence[str] | None = None, *extra: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        problem = check_utf8(argv, dict(os.environ))
        if problem is not None:
            click.echo(f"error: {problem}", err=True)
            sys.exit(2)
        return super().main(argv, *extra, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgjobsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


def parse_json(value: str | None, what: str) -> Any:
    """A JSON command-line argument, or a usage error naming it."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except RecursionError:
        raise InvalidInput(f"{what} nests too deeply to parse",
                           hint="filters nest at most 16 levels (docs/filters.md)") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}",
                           hint=f"quote it for the shell, e.g. --{what} '{{\"status\": \"done\"}}'"
                           ) from None


_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_NUMBER = r"\d+(?:\.\d+)?"
_PG_UNIT = (r"(?:microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?"
            r"|days?|weeks?|months?|mons?|years?|us|ms|s|m|h|d|w|y)")
_PG_INTERVAL = re.compile(
    rf"(?:{_NUMBER}\s*{_PG_UNIT}|\d+:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?)"
    rf"(?:\s+(?:{_NUMBER}\s*{_PG_UNIT}|\d+:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?))*",
    re.IGNORECASE)


def parse_duration(text: str) -> str:
    """'50s', '5m', '24h', '7d', '250ms', a number of seconds, or a PostgreSQL interval
    ('1 hour 30 minutes', '1 day 02:00'), as interval text. Anything else is a usage
    error here, before any connection is made."""
    value = text.strip()
    if re.fullmatch(_NUMBER, value):
        return f"{value} seconds"
    for suffix in sorted(_UNITS, key=len, reverse=True):
        number = value[: -len(suffix)]
        if value.endswith(suffix) and re.fullmatch(_NUMBER, number):
            return f"{number} {_UNITS[suffix]}"
    if _PG_INTERVAL.fullmatch(value):
        return value
    raise InvalidInput(f"invalid duration {text!r}",
                       hint="use e.g. 50s, 5m, 24h, 7d or '1 hour 30 minutes'")
