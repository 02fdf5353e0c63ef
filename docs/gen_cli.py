"""Generate docs/cli.md, the `pgjobs` command-line reference, from the click commands.

    python docs/gen_cli.py           # rewrite docs/cli.md
    python docs/gen_cli.py --check   # exit 1 when docs/cli.md is out of date

tests/test_cli.py fails when the file and the commands disagree.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click

DOC = Path(__file__).resolve().parent / "cli.md"

HEADER = """\
# `pgjobs` command line

<!-- Generated from the click commands by docs/gen_cli.py; do not edit by hand.
     Regenerate with `python docs/gen_cli.py`. -->

Every command finds its database the same way: `--dsn`, else `PGJOBS_DSN`, else
`DATABASE_URL`, else the embedded local cluster (`pgjobs dev up`, started when
needed). Global options go before the command: `pgjobs --dsn URL status 42`.
Every option can also be set through the environment variable shown next to it
(flags take `1`/`true`/`yes`; repeatable options take space-separated values).

Errors are one line on stderr, `error: MESSAGE [SQLSTATE] (hint: HINT)`, never a
traceback for a user mistake.
"""

EXIT_STATUS = [
    ("0", "Done; for `status`, `watch JOB` and `--wait`: the job succeeded."),
    ("1", "The job failed or was canceled, or the command failed: unknown job (`P0002`), "
          "database unreachable, pg_cron missing (`55000`), a writing job already pending "
          "with `on_conflict: reject` (`55006`), permission denied (`42501`), a verb that "
          "does not apply to the job's status (`55000`), `cancel` of a job that had "
          "already succeeded or failed (`55000`)."),
    ("2", "Usage error (`22023`): unknown option, bad argument or duration (`run "
          "--budget 0s` included), invalid JSON, a DSN that does not parse, a TARGET that "
          "is no table name, a flag and `--options` that disagree, or arguments "
          "the database rejects as invalid (`22023`, `42P01`, `3F000` for a schema that "
          "does not exist)."),
    ("3", "`status` and `watch JOB --timeout`: the job is still queued or running; "
          "`dev status`: the embedded cluster is not running."),
    ("130", "Interrupted (Ctrl-C, or SIGTERM): `watch`, `delete`/`backfill` `--wait` or "
            "`--run`, `export` and `import` detach, or hand the job back."),
]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    """Every command, depth first, subcommands by name."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], (*path, name))


def envvars(option: click.Option) -> list[str]:
    if not option.envvar:
        return []
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar)


def help_text(command: click.Command) -> str:
    """The command's docstring as markdown paragraphs (click's \\b and \\f honoured)."""
    text = inspect.cleandoc(command.help or "").split("\f")[0]
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def option_type(option: click.Option) -> str:
    if option.is_flag:
        return "flag"
    if isinstance(option.type, click.Choice):
        return " \\| ".join(str(c) for c in option.type.choices)
    return option.type.name.upper()


def option_default(option: click.Option) -> str:
    default = option.default
    unset = type(default).__name__ == "Sentinel"  # click >= 8.3: no default given
    if unset or callable(default) or default is None or option.is_flag or default in ((), []):
        return ""
    return f"`{default}`"


def usage(path: tuple[str, ...], command: click.Command) -> str:
    pieces = [p.make_metavar(click.Context(command)) if isinstance(p, click.Argument) else ""
              for p in command.params]
    arguments = " ".join(p for p in pieces if p)
    words = ["pgjobs", *(("[GLOBAL OPTIONS]",) if path else ()), *path]
    if any(isinstance(p, click.Option) for p in command.params):
        words.append("[OPTIONS]")
    if isinstance(command, click.Group):
        words.append("COMMAND")
    if arguments:
        words.append(arguments)
    return " ".join(words)


def options_table(command: click.Command) -> list[str]:
    rows = ["| Option | Type | Default | Environment | Description |", "|---|---|---|---|---|"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("help",):
            continue
        flags = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        env = ", ".join(f"`{e}`" for e in envvars(param))
        rows.append(f"| {flags} | {option_type(param)} | {option_default(param)} | {env} "
                    f"| {cell(param.help or '')} |")
    return rows if len(rows) > 2 else []


def render(root: click.Command | None = None) -> str:
    if root is None:
        from pgjobs.cli.main import main as root
    lines = [HEADER, "## Exit status", "", "| Status | Meaning |", "|---|---|"]
    lines += [f"| {code} | {meaning} |" for code, meaning in EXIT_STATUS]
    lines += ["", "## Environment variables", "",
             "| Variable | Option | Commands |", "|---|---|---|"]
    by_var: dict[tuple[str, str], list[str]] = {}
    for path, command in walk(root):
        for param in command.params:
            if isinstance(param, click.Option):
                for var in envvars(param):
                    by_var.setdefault((var, param.opts[0]), []).append(
                        " ".join(path) if path else "(global)")
    for (var, flag), commands in sorted(by_var.items()):
        lines.append(f"| `{var}` | `{flag}` | {', '.join(commands)} |")
    lines += ["", "Also read: `DATABASE_URL` (after `PGJOBS_DSN`); `PGJOBS_HOME` by every "
              "command that falls back to the embedded cluster; the standard `AWS_*` variables "
              "(`AWS_ENDPOINT_URL` included) for `s3://` storage.", "", "## Commands", ""]
    for path, command in walk(root):
        lines.append(f"{'#' * min(3 + max(len(path) - 1, 0), 4)} `{' '.join(('pgjobs', *path))}`")
        lines += ["", "```", usage(path, command), "```", "", help_text(command), ""]
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            lines += ["Arguments: " + ", ".join(
                f"`{p.make_metavar(click.Context(command))}`"
                + ("" if p.required else " (optional)") for p in arguments), ""]
        table = options_table(command)
        if table:
            lines += [*table, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
