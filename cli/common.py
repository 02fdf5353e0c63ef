"""What every `pgjobs` subcommand shares: the context object, the error-
printing group, and the parsers of JSON and duration arguments. Subcommand
modules import from here, never from :mod:`pgjobs.cli.main`, so running
``python -m pgjobs.cli.main`` imports no module twice."""

from __future__ import annotations

import decimal
import json
import os
import re
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from pgjobs import db, errors, queries
from pgjobs.cli.dsn import configured_dsn, resolve_dsn
from pgjobs.errors import UNKNOWN_JOB_HINT as UNKNOWN_JOB_HINT
from pgjobs.errors import (
    ConnectionFailed,
    InvalidDsn,
    InvalidInput,
    NoDatabase,
    NotFound,
    PermissionDenied,
    PgjobsError,
    printable,
)
from pgjobs.units import a_job as a_job

DEFAULT_STORAGE = "file://./pgjobs-exports"

OPERANDS = frozenset({"target", "scope", "filter_", "set_", "exclude", "columns", "source",
                      "extra", "to", "on_duplicate", "max_rejects", "yes", "dry_run",
                      "after"})
"""Parameter names that are never read from an environment variable: what a command
acts on (target, scope, filter, set, exclude, columns, source), the job's own options
and destination (--options, --to), what an import does to existing rows and bad
records (--on-duplicate, --max-rejects), the guards (--yes, --dry-run), and where
a page starts (`items --after`: a cursor left in a shell would skip items unsaid).
A variable left in a shell (PGJOBS_FILTER from an export) must not steer a
destructive command; only
connection and configuration options (--dsn, --storage, ...) read the environment.
tests/test_cli_guards.py walks every command for it."""


@dataclass
class Context:
    """What every subcommand gets as ``ctx.obj``."""

    dsn_option: str | None
    storage: str
    _dsn: str | None = field(default=None, repr=False)
    dsn_from_env: bool = False
    """--dsn's value came from PGJOBS_DSN, not from the command line."""

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

    def dsn_source(self) -> str | None:
        """Where the DSN came from (an error's hint names it, never the DSN, which
        may hold a password): --dsn, PGJOBS_DSN, DATABASE_URL, or None for the
        embedded cluster."""
        if self.dsn_option:
            return "PGJOBS_DSN" if self.dsn_from_env else "--dsn"
        return "DATABASE_URL" if configured_dsn(None) else None

    def connection_hint(self, exc: PgjobsError) -> str:
        """The hint of a DSN that cannot be parsed or a server that cannot be reached."""
        source = self.dsn_source()
        if source is None:
            return ("the embedded cluster did not answer: see `pgjobs dev status`, or set "
                    "--dsn / PGJOBS_DSN / DATABASE_URL")
        if isinstance(exc, InvalidDsn):
            return (f"fix {source}: a URL such as postgresql://USER@HOST:5432/DBNAME, or "
                    "key=value pairs such as 'host=HOST port=5432 dbname=DBNAME'")
        return (f"check {source} (postgresql://USER@HOST:5432/DBNAME): is the server up, and "
                "do that database and role exist?")


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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Group(click.Group):
    """Turns PgjobsError into one line on stderr and its exit code; refuses input that
    is not valid UTF-8 before any command sees it."""

    def main(self, args: Sequence[str] | None = None, *extra: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        problem = check_utf8(argv, dict(os.environ))
        if problem is not None:
            click.echo(f"error: {printable(problem)}", err=True)
            sys.exit(2)
        if threading.current_thread() is not threading.main_thread():
            return super().main(argv, *extra, **kwargs)
        # SIGTERM (kill, timeout, systemd's or Kubernetes' stop) as Ctrl-C, in
        # every command: Python's default ended the process at once, so `delete
        # --run` left its CALL pgjobs.run_job running on the server, orphaned, the
        # job going on though its user had stopped it, and an in-process export
        # kept its claim until its lease ran out. Ctrl-C's path hands the job
        # back and says so. `run` and `worker` install their own handler.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return super().main(argv, *extra, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            usage_error(exc)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        own = blank_own_option(ctx)
        if own is not None:
            raise blank_refused(own, command_words(ctx))
        helping = help_asked(ctx, args)  # `--help` reads no value: it always works
        variable = None if helping else blank_variable(ctx.command, parsed=ctx)
        if variable is not None:
            raise blank_variable_refused(variable)
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not helping:
            variable = blank_variable(command, given=rest)
            if variable is not None:
                raise blank_variable_refused(variable)
        if command is not None and not isinstance(command, click.Group):
            given_twice = repeated_operand(command, rest)
            if given_twice is not None:
                raise InvalidInput(f"{given_twice} is given twice; only the last would "
                                   "count, without a word",
                                   hint=f"give {given_twice} once")
            blank = blank_option(command, rest)
            if blank is not None:
                raise blank_refused(blank, f"{command_words(ctx)} {name}")
            after = operand_after_end(command, rest)
            if after is not None:
                # `delete t --scope 1 -- --scope 2`: after `--` it is no option;
                # click said "Got unexpected extra arguments (--scope 2)".
                raise InvalidInput(f"{after} after `--` is an argument, not the option "
                                   f"{after}: `--` ends the options",
                                   hint=f"give {after} once, before `--` (see `pgjobs "
                                        f"{name} --help`)")
        return name, command, rest


    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgjobsError as exc:
            connecting = isinstance(exc, (ConnectionFailed, InvalidDsn)) \
                and not isinstance(exc, NoDatabase)
            if connecting and exc.hint is None and isinstance(ctx.obj, Context):
                exc.hint = ctx.obj.connection_hint(exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            usage_error(exc)
        except KeyboardInterrupt:
            # Ctrl-C outside a wait (while connecting, submitting): one line and
            # 130, as a waiting command's detach, never click's "Aborted!" (1).
            click.echo("interrupted", err=True)
            sys.exit(130)


ANSWER_ROUND = 0.1
"""Seconds the question waits for an answer before Python looks for a Ctrl-C
again (psycopg waits on the server in rounds of 0.1 s for the same reason)."""


def confirm(question: str) -> bool:
    """The one yes/no question of a command on a terminal (default no), on stderr.
    Ctrl-D (end of input) answers no: the caller says what it did not do (exit 1).
    Ctrl-C interrupts, as anywhere else in a command: "interrupted", exit 130.
    click.confirm turned both into its Abort, which printed "Aborted!" with exit 1,
    saying neither that nothing was submitted nor that it was interrupted; and it
    read the answer in one blocking read, which a Ctrl-C could miss (:func:`_answer`)."""
    while True:
        click.echo(f"{question} [y/N]: ", nl=False, err=True)
        try:
            answer = _answer().strip().lower()
        except EOFError:
            click.echo(err=True)  # end the prompt's line
            return False
        except KeyboardInterrupt:
            click.echo(err=True)
            raise  # PgjobsGroup.invoke: "interrupted", 130
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        click.echo("Error: invalid input", err=True)


def _answer() -> str:
    """One line from stdin, without what follows it; EOFError at its end (Ctrl-D).

    On a terminal the wait is in rounds (:data:`ANSWER_ROUND`), each ending in
    Python code, never one blocking read: Python's SIGINT handler only sets a
    flag that the interpreter acts on between bytecodes, so a Ctrl-C that came
    after the last of them and before the read() began (pressed as the question
    showed: click.confirm, through Python's input, writes the question and
    reads the answer in one C call) was noted and never acted on, the command
    deaf until a line came; as was one the kernel gave to another thread while
    the read waited.
    tests/test_cli_guards.py's Ctrl-C at the question hung about once a CI run.

    The answer is the first line, read up to its newline whatever the reads
    hand over, as Python's input reads it (:func:`_terminal_line`)."""
    stream = sys.stdin
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # no file: CliRunner's input
        fd = -1
    if fd < 0 or not os.isatty(fd):
        line = stream.readline()
        if not line:
            raise EOFError
        click.echo(line.rstrip("\r\n"), err=True)  # as a terminal echoes it
        return line
    return _terminal_line(fd).decode(stream.encoding or "utf-8", errors="replace")


_typed_ahead = bytearray()
"""What a terminal handed over after the line :func:`_terminal_line` returned:
the next lines, for the next question (Python's input keeps them in sys.stdin's
buffer)."""


def _terminal_line(fd: int) -> bytes:
    """The next line of the terminal ``fd``, its newline dropped; EOFError at the
    end of input, also when it cuts a line short (an answer is a whole line: a
    "y" then Ctrl-D is no answer, and no is the default).

    A read hands over what the terminal has, not a line: one os.read(fd, 4096)
    was taken for the answer, and a terminal out of canonical mode (`stty
    -icanon`, left by a program before) handed over a pasted "n\ny" whole
    (refused as "invalid input", the "y" lost), a "yes" typed slowly in pieces,
    and a line of 5,000 bytes as 4,096 then the rest, whose tail ("y") then
    answered yes; in canonical mode a Ctrl-D in mid-line handed over its first
    part ("ye", then "s"). Reads now gather bytes up to the first newline; what
    came after it waits in :data:`_typed_ahead`."""
    import select

    while b"\n" not in _typed_ahead:
        while not select.select([fd], [], [], ANSWER_ROUND)[0]:
            pass  # a Ctrl-C that came meanwhile is raised here, between bytecodes
        data = os.read(fd, 4096)
        if not data:
            _typed_ahead.clear()  # a line cut short by the end of input answers nothing
            raise EOFError
        _typed_ahead.extend(data)
    end = _typed_ahead.index(b"\n")
    line = bytes(_typed_ahead[:end])
    del _typed_ahead[:end + 1]
    return line


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's subcommands by name, where a lazy one is imported the first time
    it is looked up: ``lazy`` maps its name to ``(module, attribute, summary)``.
    `pgjobs --help`, `pgjobs status` and `pgjobs export` imported every
    subcommand's module (the poller, the storage clients, the importer, the
    dashboard), ~0.25 s before anything ran. ``summary`` is the first paragraph
    of its help, what `pgjobs --help` lists without importing it
    (:meth:`shown`); tests/test_cli_lazy.py checks it is the command's own."""

    def __init__(self, loaded: Mapping[str, click.Command],
                 lazy: dict[str, tuple[str, str, str]]) -> None:
        self._loaded = {name: checks_moot(command) for name, command in loaded.items()}
        self._lazy = {name: spec for name, spec in lazy.items() if name not in loaded}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            import importlib

            module, attribute, _ = self._lazy[name]
            try:
                self._loaded[name] = checks_moot(
                    getattr(importlib.import_module(module), attribute))
            except Exception as exc:
                # Not a KeyError, which Mapping.get reads as "no such command"
                # (`pgjobs ui` said "No such command 'ui'. Did you mean 'ui'?").
                raise errors.PgjobsError(
                    f"cannot load `pgjobs {name}`: {type(exc).__name__}: {exc}",
                    sqlstate="58000",
                    hint="the installation is incomplete or broken: reinstall pgjobs "
                         "(with the extra the command needs, e.g. pgjobs[ui])") from exc
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = checks_moot(command)

    def __delitem__(self, name: str) -> None:
        if name in self._lazy:
            del self._lazy[name]
            self._loaded.pop(name, None)
        else:
            del self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter([*self._loaded, *(n for n in self._lazy if n not in self._loaded)])

    def __len__(self) -> int:
        return len(set(self._loaded) | set(self._lazy))

    def shown(self, name: str) -> click.Command:
        """The command as a group's help lists it: itself once imported, else a
        stand-in with its name and summary."""
        if name in self._loaded:
            return self._loaded[name]
        return click.Command(name, help=self._lazy[name][2])


class LazyGroup(Group):
    """:class:`Group` whose subcommands are :class:`LazyCommands`: its help lists
    them without importing them; running one imports its module alone."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            super().format_commands(ctx, formatter)
            return
        shown = [(name, commands.shown(name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in shown if not command.hidden]
        if shown:
            # As click's own: three times the default spacing.
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in shown])


def repeated_operand(command: click.Command, args: Sequence[str]) -> str | None:
    """The first operand option (OPERANDS: what a command acts on, its options and
    destination) that ``args`` give more than once, or None. Click keeps the last
    of a repeated option without a word, so `delete t --filter '{"status":
    "archived"}' ... --filter '{}'` (a script's extra arguments appended) deleted
    the whole scope, and a second --scope moved the command to another tenant.
    Flags (--yes) and options that take many values (--exclude) may repeat."""
    takes_value: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and not param.count:
            for opt in (*param.opts, *param.secondary_opts):
                takes_value[opt] = param
    seen: set[str] = set()
    at = 0
    while at < len(args):
        token = args[at]
        if token == "--":
            break
        opt = token.split("=", 1)[0] if token.startswith("--") else token
        option = takes_value.get(opt)
        at += 1 if "=" in token or option is None else 2  # an option's value is not an option
        if option is None or option.multiple or option.name not in OPERANDS:
            continue
        if option.name in seen:
            return option.opts[-1]
        seen.add(option.name)
    return None


BLANK_TAKEN = frozenset({"scope", "exclude", "filter_", "set_", "extra", "columns",
                         "budget", "idle", "retention", "timeout", "expires", "lease", "poll",
                         "stale_after", "storage_retry", "read_max_wait", "read_max_lag"})
"""Text options whose empty value is not refused by :func:`blank_option`: a
scope or a key is a value of the user's column (a text one may be ''), which
the database judges; the JSON, list and duration ones have parsers of their
own that refuse it in their own words (`invalid --budget ''`)."""


def _blank_checked(param: click.Parameter) -> bool:
    return (isinstance(param, click.Option) and not param.is_flag and not param.count
            and isinstance(param.type, (click.types.StringParamType, click.Path))
            and param.name not in BLANK_TAKEN)


def blank_option(command: click.Command, args: Sequence[str]) -> str | None:
    """The first text option of ``command`` that ``args`` give an empty (or blank)
    value, or None. Click hands '' over, and every such option read it as not
    given: `--dsn "$PROD_DSN"` with the variable unset went to DATABASE_URL or
    the embedded cluster, `dev down --home "$HOME_DIR"` stopped the default
    cluster, `export --to ""` wrote to --storage, `--read-dsn ""` read the
    primary. Options in :data:`BLANK_TAKEN` are judged elsewhere."""
    takes_value: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and not param.count:
            for opt in (*param.opts, *param.secondary_opts):
                takes_value[opt] = param
    at = 0
    while at < len(args):
        token = args[at]
        if token == "--":
            return None
        opt, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        option = takes_value.get(opt)
        if option is None:
            at += 1
            continue
        if not eq:
            if at + 1 >= len(args):
                return None  # click says the value is missing
            value = args[at + 1]
        at += 1 if eq else 2
        if _blank_checked(option) and not value.strip():
            return option.opts[-1]
    return None


def blank_refused(option: str, where: str) -> InvalidInput:
    """The usage error of ``option`` given an empty value in command ``where``."""
    return InvalidInput(f"{option} is empty (an empty value is not the option left out)",
                        hint=f"give {option} a value, or leave {option} out for its default "
                             f"(see `{where} --help`)")


def blank_variable(command: click.Command, *, parsed: click.Context | None = None,
                   given: Sequence[str] = ()) -> str | None:
    """The first environment variable one of ``command``'s options reads (its
    ``envvar``) that holds only blanks, or None. Click takes an empty variable
    for an unset one (the shell's way to unset it: `export PGJOBS_DSN=`), but
    '  ' is a value: PGJOBS_DSN='  ' connected to libpq's defaults, PGJOBS_JSON
    and PGJOBS_DETACH read it as false, PGJOBS_STORAGE as a storage URI. Every
    option's variable, whatever its type: the check is the variable's, not the
    parser's (:func:`blank_env` for the ones read outside click).

    Only a variable that would be read: not one whose option the command line
    gives (``--dsn URL`` with a blank PGJOBS_DSN left in the environment was
    refused though the option overrides it), judged from the ``parsed``
    context of a group (its parameter's source) or the ``given`` arguments of
    a command not parsed yet."""
    on_line = _options_in(command, given)
    for param in command.params:
        if not isinstance(param, click.Option) or not param.envvar:
            continue
        if param.name in on_line or (parsed is not None and parsed.get_parameter_source(
                param.name or "") != click.core.ParameterSource.ENVIRONMENT):
            continue
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
        for name in names:
            if blank_env(name):
                return name
            if os.environ.get(name):
                break  # click reads the first one set: those after it are not read
    return None


def _options_in(command: click.Command, args: Sequence[str]) -> set[str]:
    """The names of ``command``'s options that ``args`` give (before ``--``)."""
    names = {opt: param.name for param in command.params if isinstance(param, click.Option)
             for opt in (*param.opts, *param.secondary_opts)}
    found: set[str] = set()
    for token in args:
        if token == "--":
            break
        name = names.get(token.split("=", 1)[0] if token.startswith("--") else token)
        if name:
            found.add(name)
    return found


def help_asked(ctx: click.Context, args: Sequence[str]) -> bool:
    """Whether ``args`` (before ``--``) ask for a command's help: it reads no
    option's value, so a bad environment never stands in its way."""
    names = set(ctx.help_option_names)
    for token in args:
        if token == "--":
            return False
        if token in names:
            return True
    return False


def blank_env(name: str) -> bool:
    """Whether the environment variable ``name`` is set to blanks only (not empty)."""
    value = os.environ.get(name)
    return bool(value) and not str(value).strip()


def blank_variable_refused(name: str) -> InvalidInput:
    """The usage error of the environment variable ``name`` holding only blanks."""
    return InvalidInput(f"environment variable {name} is blank (only whitespace), which is "
                        "neither a value nor unset",
                        hint=f"give {name} a value, or unset it (`unset {name}`; an empty "
                             f"{name}= counts as unset)")


def command_words(ctx: click.Context) -> str:
    """``pgjobs`` and the (sub)command names of ``ctx``, however the program was run."""
    names: list[str] = []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["pgjobs", *names])


def blank_own_option(ctx: click.Context) -> str | None:
    """The first of a group's own text options (``pgjobs --dsn ''``) given an empty
    value on the command line, or None (:func:`blank_option`'s rule)."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if (_blank_checked(param) and isinstance(value, str) and not value.strip()
                and ctx.get_parameter_source(param.name or "")
                == click.core.ParameterSource.COMMANDLINE):
            return param.opts[-1]
    return None


def operand_after_end(command: click.Command, args: Sequence[str]) -> str | None:
    """An operand option of ``command`` (OPERANDS) named after ``--``, where
    click reads it as a positional argument, or None: ``delete t --scope 1 --
    --scope 2`` meant a second scope, which the project refuses as it refuses
    one given twice (:func:`repeated_operand`), in its own words."""
    if "--" not in args:
        return None
    names = {opt for param in command.params
             if isinstance(param, click.Option) and param.name in OPERANDS
             for opt in (*param.opts, *param.secondary_opts)}
    for token in args[list(args).index("--") + 1:]:
        opt = token.split("=", 1)[0]
        if opt in names:
            return opt
    return None


BIGINT_MAX = 2**63 - 1


class JobId(click.ParamType):  # type: ignore[type-arg]  # generic since click 8.5
    """A job's id: ASCII digits, 1 to 2^63-1 (bigint, as pgjobs.jobs.id). Python's
    int() took far more: Arabic-Indic digits and 1_000 named job 3 and job 1000,
    and an id past bigint reached pgjobs.cancel as numeric, refused as
    "function pgjobs.retry(numeric) does not exist" with the hint of a database
    without pgjobs. The one type of every JOB argument."""

    name = "job_id"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]+", text, re.ASCII) or not 1 <= int(text) <= BIGINT_MAX:
            self.fail(f"{value!r} is not a job id: a whole number from 1 to {BIGINT_MAX} "
                      "(`pgjobs list` shows them)", param, ctx)
        return int(text)


JOB_ID = JobId()


TARGET_HINT = ("name the table as in SQL: items, public.items or \"My Items\" (quoted, "
               "case kept); SELECT target FROM pgjobs.targets lists the registered ones")


_SQL_BLANKS = " \t\n\r\f"
"""What PostgreSQL's scanner takes for a blank (scanner_isspace): a no-break
space and a vertical tab (not Python's whitespace here) are part of a name,
as any other character."""


def target_name_parts(text: str) -> list[str] | None:
    """The names of a table name as PostgreSQL's regclass reads it
    (SplitIdentifierString: dot-separated, each unquoted name folded to lower
    case, a quoted one kept with "" for a quote, blanks around each ignored);
    None when it is no name at all: empty, an empty part (``a..b``), an
    unterminated quote, or something after a name that is not a dot."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SQL_BLANKS:
            i += 1
        if i < n and text[i] == '"':
            name, i = [], i + 1
            while True:
                end = text.find('"', i)
                if end < 0:
                    return None
                name.append(text[i:end])
                i = end + 1
                if i < n and text[i] == '"':
                    name.append('"')
                    i += 1
                    continue
                break
            part = "".join(name)
        else:
            start = i
            while i < n and text[i] != "." and text[i] not in _SQL_BLANKS:
                i += 1
            part = text[start:i].lower()
        if not part:
            return None
        parts.append(part)
        while i < n and text[i] in _SQL_BLANKS:
            i += 1
        if i == n:
            return parts
        if text[i] != ".":
            return None
        i += 1


class TargetName(click.ParamType):  # type: ignore[type-arg]  # generic since click 8.5
    """A TARGET: a table name as SQL writes one (``items``, ``public.items``,
    ``"My Items"``), at most database.schema.table. PostgreSQL refused the
    others itself, with no hint and as a runtime error (exit 1): ``''`` and
    ``'"x'`` as "invalid name syntax [42602]", ``a.b.c.d`` as "improper
    relation name [42601]". The one type of every TARGET argument: a usage
    error (exit 2, 22023) naming it, before any connection."""

    name = "target"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        parts = target_name_parts(text)
        if parts is None:
            raise InvalidInput(f"TARGET {text!r} is not a table name", hint=TARGET_HINT)
        if len(parts) > 3:
            raise InvalidInput(f"TARGET {text!r} is not a table name: at most "
                               "database.schema.table, not "
                               f"{len(parts)} dotted names", hint=TARGET_HINT)
        if len(parts) == 3 and ctx is not None:
            require_this_database(ctx, text, parts)
        return text


def require_this_database(ctx: click.Context, text: str, parts: list[str]) -> None:
    """A TARGET database.schema.table whose database is not the one the command
    connects to: a usage error (exit 2, 0A000) with a hint, before the command
    does anything. PostgreSQL refused it itself, as "cross-database references
    are not implemented" and exit 1 with no hint. PostgreSQL decides which
    name is this database (the server is asked: its folding, quoting and
    truncation, compared exactly), so a name it accepts passes here too.
    Only a three-part name connects for this."""
    obj = ctx.find_object(Context)
    if obj is None:
        return
    with obj.connect(app="pgjobs") as conn:
        current = db.other_database(conn, text)
    if current is None:
        return
    raise InvalidInput(
        f"TARGET {text!r} names database {parts[0]!r}, and this command is connected to "
        f"database {current!r}: PostgreSQL reads no table of another database",
        sqlstate="0A000",
        hint=f"connect to that database with --dsn (e.g. --dsn "
             f"postgresql://USER@HOST:5432/{urllib.parse.quote(parts[0], safe='')}) and name "
             f"the table {'.'.join(_sql_name(p) for p in parts[1:])}, or leave the database "
             f"part out if {current!r} is meant")


def _sql_name(name: str) -> str:
    """A name as SQL writes it: bare when it reads back as itself, else quoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


TARGET = TargetName()

PRIORITY = click.IntRange(-1_000_000, 1_000_000)
"""--priority: the range pgjobs._insert_job_row takes for option "priority" (the SQL
decides; this only keeps a typo such as 99999999999999999999 from reaching it
as numeric and being judged as an option of --options' JSON).
tests/test_cli_numeric_options.py checks both ends against the database."""

def unknown_job(job_id: int) -> NotFound:
    """The one error of every command given a JOB that names no job (or one this role
    may not see): the same line and hint whether the command looked the job up
    itself (status, watch, url) or a SQL verb said P0002 (cancel, pause, resume,
    retry, whose SQL hint is worded for SQL callers), and the dashboard's
    (pgjobs.errors.unknown_job, the one wording). tests/test_cli_job_ids.py runs
    every command that takes a JOB."""
    return errors.unknown_job(job_id)


def require_job(conn: db.Connection, job_id: int) -> dict[str, Any]:
    """The job's row, or :func:`unknown_job`."""
    job = db.get_job(conn, job_id)
    if job is None:
        raise unknown_job(job_id)
    return dict(job)


def job_verb(conn: db.Connection, job_id: int,
             verb: Callable[[db.Connection, int], bool]) -> tuple[bool, dict[str, Any]]:
    """Run a job verb (db.cancel, db.pause, db.resume, db.retry) and read the job
    back: what it changed and the row as it is now. An unknown id, said by the
    verb (P0002) or found gone when read back (pruned in between: an assert
    failed there before), is :func:`unknown_job`."""
    try:
        changed = verb(conn, job_id)
    except NotFound as exc:
        if exc.sqlstate != "P0002":
            raise
        raise unknown_job(job_id) from None
    return changed, require_job(conn, job_id)


def usage_error(exc: click.ClickException) -> NoReturn:
    """Click's own errors (an unknown option, a missing --scope, a bad choice) in
    the documented form: one line ``error: MESSAGE (hint: ...)`` on stderr, exit 2
    for a usage error. ``pgjobs`` or ``pgjobs dev`` alone still print their help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # click 8.2+: a group called bare
        exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:  # the root is `pgjobs`, however run
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    where = " ".join(["pgjobs", *names])
    # One line, whatever it quotes: click echoes the argument it refused
    # (`Invalid value for '--limit': '\x1b]0;...' is not a valid integer`),
    # the operator's own or one a script copied from a client's value.
    message = printable(" ".join(exc.format_message().split()))
    command = getattr(getattr(exc, "ctx", None), "command", None)
    option = getattr(exc, "option_name", None) or ""
    if (isinstance(exc, click.NoSuchOption) and re.fullmatch(r"-[0-9]+", option)
            and any(p.name == "job_id" for p in getattr(command, "params", []))):
        # `pgjobs cancel -1`: click reads a negative number as an option.
        message = (f"{option!r} is not a job id: a whole number from 1 to {BIGINT_MAX} "
                   "(`pgjobs list` shows them)")
    # 22023 as every bad argument: a script reads the same bracket whichever
    # side refused the input.
    click.echo(f"error: {message} [22023] (hint: see `{where} --help`)", err=True)
    sys.exit(exc.exit_code)


def require_in_process(conn: db.Connection, claim: str, kind: str) -> None:
    """Refuse, before anything is submitted, an export or import the CLI would run in
    its own process for a role that may not claim it (``claim``: the claim
    function's signature; pgjobs_client may not). The submit went through before
    and the claim failed, so the command exited 1 with PostgreSQL's bare
    ``permission denied for function claim_export`` while the job it had queued
    stayed queued for a worker: a second try queued a second job."""
    if not db.scalar(conn, queries.MAY_EXECUTE, {"function": claim}):
        raise PermissionDenied(
            f"this role may not run the {kind} in this process: it lacks EXECUTE on "
            f"{claim}, an administrator's function (pgjobs_admin); nothing was submitted",
            hint="add --detach to submit it for `pgjobs worker` (which runs as a member of "
                 "pgjobs_admin), or connect as a member of pgjobs_admin (see "
                 'docs/operations.md, "Roles")')


# What each JSON argument's "not valid JSON" hint shows: an example of that
# argument, not a filter for every one (--options '{"status": "done"}' was
# no option at all).
_JSON_EXAMPLES = {"filter": '{"status": "done"}', "set": '{"status": "archived"}',
                  "options": '{"max_attempts": 3}'}


class _Refused(Exception):
    """What a JSON argument says that its parsed value would not: raised from
    json.loads' hooks, turned into a usage error by parse_json."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: JSON keeps only the last of
    a repeated key, so `{"status": "archived", "status": {"$exists": true}}`
    silently lost its first condition and matched more than it said."""
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise _Refused(f"names key {json.dumps(key)} twice in one object; JSON keeps only "
                           "the last, so the first would be ignored", "")
        value[key] = item
    return value


def _number(text: str) -> decimal.Decimal:
    """A non-integer exactly as written (PostgreSQL's numeric reads it so),
    never a float, which rounded 1.00000000000000001 to 1.0 and 1e-400 to
    0.0; refused past numeric's range (pgjobs.db.jsonb_number)."""
    try:
        return db.jsonb_number(text)
    except ValueError as exc:
        raise _Refused(f"holds a number PostgreSQL cannot read: {exc}",
                       "write a smaller number, or quote it as a string") from None


def _integer(text: str) -> int | decimal.Decimal:
    # Past Python's int conversion limit (4300 digits) an integer stays exact
    # as a Decimal, rather than raising ValueError out of json.loads.
    return int(text) if len(text) <= 4000 else _number(text)


def _constant(text: str) -> NoReturn:
    raise _Refused(f"holds {text}, which is not a JSON number",
                   "write a number, or quote it as a string")


_DUPLICATE_HINTS = {
    "filter": 'join both conditions with $and, e.g. '
              '{"$and": [{"n": {"$gt": 1}}, {"n": {"$lt": 9}}]}',
}


def parse_json(value: str | None, what: str, example: str | None = None) -> Any:
    """A JSON command-line argument, or a usage error naming it (its hint shows
    `example`, else the usual example of --`what`). What the text says is what
    is sent: a key given twice in one object is refused (JSON keeps only the
    last), a number keeps every digit (a non-integer is a ``decimal.Decimal``,
    sent as written by :func:`pgjobs.db.jsonb`, never rounded through a
    float), and NaN, Infinity and numbers past PostgreSQL's numeric, which
    jsonb does not take, are refused."""
    if value is None:
        return None
    try:
        return json.loads(value, object_pairs_hook=_object, parse_float=_number,
                          parse_int=_integer, parse_constant=_constant)
    except _Refused as exc:
        raise InvalidInput(f"{what} {exc}", hint=exc.hint or _DUPLICATE_HINTS.get(
            what, "give each key once")) from None
    except RecursionError:
        raise InvalidInput(f"{what} nests too deeply to parse",
                           hint="filters nest at most 16 levels (docs/filters.md)") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}",
                           hint=f"quote it for the shell, e.g. --{what} "
                                f"'{example or _JSON_EXAMPLES.get(what, '{}')}'") from None


def parse_options(value: str | None, example: str = '{"max_attempts": 3}') -> dict[str, Any]:
    """``--options``: a JSON object, checked as parsed (before any conversion, so
    ``true`` or ``[["a", 1]]`` is a usage error, not a traceback nor an object).
    The one parser of every command's --options."""
    if value is None:
        return {}
    parsed = parse_json(value, "options", example)
    if not isinstance(parsed, dict):  # null, true, 1, "x", [...] alike
        raise InvalidInput(f"--options must be a JSON object, not {type(parsed).__name__}",
                           hint=f"e.g. --options '{example}'")
    return dict(parsed)


def flag_option(options: dict[str, Any], key: str, value: Any, flag: str, *,
                given: bool = True, same: Callable[[Any, Any], bool] | None = None) -> None:
    """Put what the flag ``flag`` says (``--format jsonl``) into ``options``,
    the job's options that --options began: the one place every command
    merges a flag with --options. A flag and --options that say the same is
    fine; that disagree (``--format csv --options '{"format": "jsonl"}'``)
    are a usage error naming both, never one silently kept (the flag used to
    win, and a flag's default, ``export --format csv``, even over an
    --options that alone named the format). ``given``: the flag was given
    (on the command line or by its variable), not only its default, which
    fills a key --options leaves out and never overrides one it gives.
    ``same``: how the two are compared when the value has more than one
    spelling, the normal form the server would store (a destination URI:
    pgjobs.poller.storage.same_place), so two spellings of one value agree and
    two values never do."""
    if key not in options:
        options[key] = value
        return
    if not given or (same or _same_option)(options[key], value):
        return
    shown = json.dumps({key: options[key]}, default=str)
    wanted = json.dumps(value, default=str)
    raise InvalidInput(
        f"{flag} and --options disagree: {flag} says {wanted}, --options {shown}",
        hint=f"give {key} once: either {flag} or \"{key}\" in --options")


def _same_option(given: Any, value: Any) -> bool:
    """Whether --options' ``given`` says what a flag's ``value`` does: 3 and
    3.0 alike, but never true and 1 (Python's True == 1)."""
    if isinstance(given, bool) or isinstance(value, bool):
        return given is value
    return bool(given == value)


def flag_given(name: str) -> bool:
    """Whether the current command's parameter ``name`` was set on the command
    line or by its environment variable, not left at its default."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT,
                          click.core.ParameterSource.DEFAULT_MAP)


def on_command_line(name: str) -> str | None:
    """The option ``name`` (a parameter of the current command, or of a group above
    it: ``storage``) as written (``--read-dsn``) when it was given on the command
    line, else None. An option set by its environment variable gives way where a
    combination makes it moot: one environment serves several commands."""
    ctx: click.Context | None = click.get_current_context(silent=True)  # None: no command
    while ctx is not None:
        for param in ctx.command.params:
            if param.name == name and isinstance(param, click.Option):
                if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                    # Its long name (--quiet, not -q), whichever spelling was typed.
                    return next((o for o in param.opts if o.startswith("--")), param.opts[-1])
                return None
        ctx = ctx.parent
    return None


def refuse_ignored(names: Sequence[str], because: str, hint: str) -> None:
    """The one usage error (exit 2, 22023) of an option the command would ignore
    without a word: the first of ``names`` given on the command line (never one
    from the environment) is refused, ``because`` saying which option or mode
    makes it moot (`export --detach --read-dsn`: the worker reads with its own
    --read-dsn; `worker --metrics-host` without --metrics-port serves nothing)."""
    for name in names:
        option = on_command_line(name)
        if option is not None:
            raise InvalidInput(f"{option} would be ignored {because}", hint=hint)


@dataclass(frozen=True)
class Moot:
    """Options (parameter names) that a mode of a command makes moot: ``when`` reads
    the command's parsed parameters and says whether the mode is on; ``because``
    and ``hint`` are :func:`refuse_ignored`'s."""

    names: tuple[str, ...]
    when: Callable[[Mapping[str, Any]], bool]
    because: str
    hint: str


_NOT_FOLLOWED = Moot(
    ("no_progress",), lambda p: not (p.get("wait") or p.get("run_here") or p.get("dry_run")),
    "without --wait or --run: the command submits and prints the job id, and follows "
    "nothing, so there is no progress to drop",
    "add --wait (or --run) to follow the job, or drop the option")
_DRY_RUN = Moot(
    ("quiet", "no_progress", "yes"), lambda p: bool(p.get("dry_run")),
    "with --dry-run: it prints the preview on stdout, submits nothing and asks nothing",
    "drop the option to preview, or drop --dry-run to submit (on a terminal it asks first; "
    "--yes skips the question)")
_DETACHED = Moot(
    ("no_progress",), lambda p: bool(p.get("detach")),
    "with --detach: the job is only submitted, nothing runs or is followed here, so there "
    "is no progress to drop",
    "drop --no-progress (--quiet still drops the 'submitted' note), or drop --detach to run "
    "the job here")

MOOT: dict[str, tuple[Moot, ...]] = {
    "delete": (_DRY_RUN, _NOT_FOLLOWED),
    "backfill": (_DRY_RUN, _NOT_FOLLOWED),
    "export": (_DETACHED,),
    "import": (_DETACHED,),
    "watch": (Moot(
        ("quiet", "no_progress"), lambda p: p.get("job_id") is None,
        "without JOB_ID: every job's events print as they come, one line each, with no "
        "progress bar or notes to drop",
        "name a job (`pgjobs watch ID`) to follow it with progress, or drop the option"),),
}
"""Every option a mode of a command ignores, by command: refused (exit 2) before
the command runs (:func:`checks_moot`), never dropped without a word. Options a
command's own code refuses stay there (`export --detach --read-dsn`, `run --idle`
without --loop: :func:`refuse_ignored` calls). tests/test_cli_option_modes.py walks
every option of these commands in each of their modes."""


STORAGE_COMMANDS = frozenset({"export", "import", "worker", "demo", "ui"})
"""The commands that read the group's --storage (where exports go, rejects of imports
land); on any other, --storage given on the command line is refused as ignored."""


NO_DATABASE_COMMANDS = frozenset({"dev"})
"""The commands that never read the group's --dsn (`pgjobs dev up` starts the
embedded cluster wherever --dsn pointed); given on the command line, it is refused
as ignored."""


def checks_moot(command: click.Command) -> click.Command:
    """``command`` with its callback refusing, before anything else, the options
    that :data:`MOOT` says its mode ignores (a group's subcommands: each of them).
    Applied to every command of the `pgjobs` group as it is looked up
    (:class:`LazyCommands`), so no command can forget it."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            checks_moot(sub)
        return command
    rules = MOOT.get(command.name or "", ())
    callback = command.callback
    if callback is None or getattr(callback, "_checks_moot", False):
        return command

    def checked(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        words = command_words(ctx).split()  # `pgjobs dev up`: the command is dev
        top = words[1] if len(words) > 1 else command.name
        if top not in STORAGE_COMMANDS:
            refuse_ignored(["storage"], f"by `{command_words(ctx)}`: only "
                           f"{', '.join(sorted(STORAGE_COMMANDS))} read or write storage",
                           hint="drop --storage (`pgjobs url` finds an export's objects "
                                "from the job itself)")
        if top in NO_DATABASE_COMMANDS:
            refuse_ignored(["dsn"], f"by `{command_words(ctx)}`: it manages the embedded "
                           "local cluster only, and connects to no other database",
                           hint="drop --dsn (`pgjobs dev up` prints the local cluster's DSN; "
                                "other commands use it while it runs and no DSN is given)")
        for rule in rules:
            if rule.when(ctx.params):
                refuse_ignored(rule.names, rule.because, rule.hint)
        return callback(*args, **kwargs)

    checked._checks_moot = True  # type: ignore[attr-defined]
    checked.__doc__ = callback.__doc__
    checked.__name__ = getattr(callback, "__name__", "command")
    command.callback = checked
    return command


# One grammar for every duration option (--budget, --lease, --expires, --retention,
# --timeout, ...): a number of seconds, a number with a short unit (50s, 5m, 24h,
# 7d, 250ms) or a PostgreSQL interval ('1 hour 30 minutes', '1 day 02:00').
# parse_duration gives the interval text SQL takes; duration_seconds the seconds
# Python waits; both accept exactly the same spellings.
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_NUMBER = r"\d+(?:\.\d+)?"
_PG_UNIT = (r"(?:microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?"
            r"|days?|weeks?|months?|mons?|years?|us|ms|s|m|h|d|w|y)")
_CLOCK = r"\d+:\d{2}(?::\d{2}(?:\.\d+)?)?"
_PG_INTERVAL = re.compile(
    rf"(?:{_NUMBER}\s*{_PG_UNIT}|{_CLOCK})(?:\s+(?:{_NUMBER}\s*{_PG_UNIT}|{_CLOCK}))*",
    re.IGNORECASE)
_PART = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>{_PG_UNIT})|(?P<clock>{_CLOCK})",
                   re.IGNORECASE)


def _unit_seconds(unit: str) -> float:
    unit = unit.lower()
    if unit in ("m", "min", "mins", "minute", "minutes"):
        return 60.0
    if unit in ("mon", "mons", "month", "months"):
        return 2592000.0
    if unit in ("us", "microsecond", "microseconds"):
        return 1e-6
    if unit in ("ms", "millisecond", "milliseconds"):
        return 1e-3
    return {"s": 1.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31557600.0}[unit[0]]


def _invalid_duration(text: str, what: str) -> InvalidInput:
    return InvalidInput(f"invalid {what} {text!r}",
                        hint="use e.g. 30s, 5m, 24h, 7d or '1 hour 30 minutes'")


def _interval_text(text: str, what: str) -> str:
    """The interval text of a duration's spelling, or a usage error; any length."""
    value = text.strip()
    if re.fullmatch(_NUMBER, value):
        return f"{value} seconds"
    for suffix in sorted(_UNITS, key=len, reverse=True):
        number = value[: -len(suffix)]
        if value.endswith(suffix) and re.fullmatch(_NUMBER, number):
            return f"{number} {_UNITS[suffix]}"
    if not _PG_INTERVAL.fullmatch(value):
        raise _invalid_duration(text, what)
    return value


_LONGEST = 1000 * 31557600.0
"""The longest duration any option takes (pgjobs.prune's retention, 1000 years).
Anything longer is refused here: 99999999999999d overflowed PostgreSQL's interval
on its way in (22015, no hint of pgjobs') before any function could judge it."""


def parse_duration(text: str, what: str = "duration") -> str:
    """'50s', '5m', '24h', '7d', '250ms', a number of seconds, or a PostgreSQL interval
    ('1 hour 30 minutes', '1 day 02:00'), as interval text, at most 1000 years.
    Anything else is a usage error here, before any connection is made."""
    value = _interval_text(text, what)
    if _seconds(value) > _LONGEST:
        raise InvalidInput(f"invalid {what} {text!r}: at most 1000 years",
                           hint="use e.g. 30s, 5m, 24h, 7d or '1 hour 30 minutes'")
    return value


def duration_seconds(text: str, what: str = "duration", *, minimum: float | None = None,
                     maximum: float | None = None) -> float:
    """The same spellings as :func:`parse_duration`, as seconds (a month counts 30
    days, a year 365.25, as PostgreSQL's epoch of an interval does); outside
    [minimum, maximum] is a usage error naming the option."""
    seconds = _seconds(_interval_text(text, what))  # its own range first, then 1000 years
    low = minimum is not None and seconds < minimum
    high = maximum is not None and seconds > maximum
    if low or high:
        raise InvalidInput(f"invalid {what} {text!r}: {_range(minimum, maximum)}",
                           hint="use e.g. 30s, 5m, 24h, 7d or '1 hour 30 minutes'")
    parse_duration(text, what)  # at most 1000 years, as every duration
    return seconds


def _seconds(value: str) -> float:
    """The seconds of interval text :func:`_interval_text` accepted."""
    if re.fullmatch(rf"{_NUMBER} seconds", value):
        return float(value.split()[0])
    seconds = 0.0
    for part in _PART.finditer(value):
        if part.group("clock"):
            fields = [float(f) for f in part.group("clock").split(":")]
            seconds += fields[0] * 3600 + fields[1] * 60 + (fields[2] if len(fields) > 2
                                                             else 0.0)
        else:
            seconds += float(part.group("number")) * _unit_seconds(part.group("unit"))
    return seconds


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum:g}s to {maximum:g}s"
    if minimum is not None:
        return f"at least {minimum:g}s"
    return f"at most {maximum:g}s"


def progress_options(func: Any) -> Any:
    """``--quiet`` / ``--no-progress``, the same on every command that waits for a
    job or submits one (they are configuration, so they have PGJOBS_* variables)."""
    func = click.option("--no-progress", is_flag=True, envvar="PGJOBS_NO_PROGRESS",
                        show_envvar=True,
                        help="No progress bar or progress lines (notes and the result "
                             "still print).")(func)
    func = click.option("--quiet", "-q", is_flag=True, envvar="PGJOBS_QUIET", show_envvar=True,
                        help="Print only the result (stdout) and errors: no progress, no "
                             "notes on stderr.")(func)
    return func


# --- one-shot `pgjobs export` and `pgjobs import`: run the job here -------------

FINAL = ("succeeded", "failed", "canceled")


def hand_back(dsn: str, job_id: int, display: Any, stop: threading.Event,
              identity: str | None) -> int:
    """Ctrl-C in `pgjobs export` or `pgjobs import`: the job is not canceled.
    If this process was running it, its thread has stopped (``stop``): the
    part or batch in flight is checkpointed and the job handed back
    (pgjobs.release) for `pgjobs worker` to resume. The release is made here
    too, fenced on this process's claim (``identity``), for an interrupt that
    came before the thread ran (a no-op when the thread released it). If a
    worker was running it, it goes on. Says how to follow or cancel it; exit
    130, as every waiting command."""
    import contextlib

    from pgjobs.cli.output import EXIT_INTERRUPTED, detached

    stop.set()
    display.close()
    if identity is not None:
        with contextlib.suppress(PgjobsError), db.connect(dsn, app="pgjobs release") as conn:
            db.scalar(conn, queries.EXPORT_RELEASE, {"id": job_id, "worker": identity})
    detached(job_id, ran_here=identity is not None)
    return EXIT_INTERRUPTED


def run_claimed(dsn: str, job_id: int, session: Any, *, kind: str, claim: str,
                run: Callable[[Any, str], Any], display: Any, stop: threading.Event,
                follow: Callable[[dict[str, Any]], None],
                notes: dict[str, Callable[[dict[str, Any]], str]]) -> dict[str, Any] | int:
    """The claim loop of one-shot `pgjobs export` and `pgjobs import`: claim the
    job (``claim``, on ``session``, the connection it was submitted on) and
    ``run(conn, identity)`` it here, again after a retryable failure; while a
    worker holds it, or it waits (paused, queued behind the gate), follow it:
    ``follow(job)`` each half second, and ``notes[status](job)`` once each
    time the job comes to that status. Returns the job once it has ended, or
    the exit status after Ctrl-C handed it back (:func:`hand_back`). A lost
    ``session`` is replaced by one of this loop's own (named `pgjobs KIND`)."""
    import contextlib
    import time

    worker = db.worker_name(kind)
    identity: str | None = None  # this process's claim while it holds one
    said: str | None = None  # the status whose note was said last
    try:
        with contextlib.ExitStack() as owned:
            conn = session

            def usable() -> Any:
                nonlocal conn
                if conn is None or conn.closed or conn.broken:
                    conn = owned.enter_context(db.connect(dsn, app=f"pgjobs {kind}"))
                return conn

            while True:
                claimed = db.rows(usable(), claim,
                                  {"id": job_id, "worker": worker, "lease": "30 seconds"})
                if claimed:
                    # Each claim has its own identity (name#token): the fence.
                    identity = str(claimed[0]["worker"])
                    outcome = run(conn, identity)
                    identity = None  # the runner released, completed or lost it
                    if outcome.status in ("retrying", "lost", "released"):
                        if outcome.error:
                            display.note(f"job {job_id} {outcome.status}: {outcome.error}")
                        continue
                job = db.get_job(usable(), job_id)
                if job is None:
                    raise NotFound(f"job {job_id} disappeared", sqlstate="P0002")
                if job["status"] in FINAL:
                    return job
                if job["status"] in notes and said != job["status"]:
                    # Not an end: this command goes on when the job does.
                    display.note(notes[job["status"]](job))
                said = job["status"]
                follow(job)
                display.tick()
                time.sleep(0.5)
    except KeyboardInterrupt:
        return hand_back(dsn, job_id, display, stop, identity)
