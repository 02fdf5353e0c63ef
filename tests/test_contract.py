"""The installed product against its public contract, API.md, read as written.

tests/contract/API.md is the contract as given to the project (copied
verbatim; where the original is present, /work/shared/API.md, the copy must
equal it). Every SQL signature it writes (`pgjobs.fn(p_a type DEFAULT x,
...) RETURNS t`, in code blocks and prose) must be a function of the
installed schema with those argument names in that order, those types,
defaults equal to the documented ones, and that return type; the database
may add trailing arguments with defaults, never change one. Every command
line of its CLI section must name a command, its operands and options, the
choices it lists and the defaults it shows. A rename, a dropped default or
a changed return type fails here, not in a user's script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest

from pgjobs.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "tests" / "contract" / "API.md"
ORIGINAL = Path("/work/shared/API.md")
Conn = psycopg.Connection[Any]

SIGNATURE = re.compile(
    r"pgjobs\.([a-z_]+)\(((?:[^()]|\([^()]*\))*)\)(?:\s+RETURNS\s+((?:SETOF\s+)?[\w.\[\]]+))?")
TYPES = {"int": "integer", "bool": "boolean", "int4": "integer", "int8": "bigint"}


def _split(text: str) -> list[str]:
    """Top-level comma-separated pieces (quotes and brackets kept whole)."""
    pieces, depth, quote, current = [], 0, False, ""
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        if ch == "," and not quote and depth == 0:
            pieces.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _argument(piece: str) -> tuple[str, str, str | None]:
    """'p_lease interval DEFAULT '30 seconds'' -> (name, type, default)."""
    piece = re.sub(r"^(IN|OUT|INOUT)\s+", "", " ".join(piece.split()))
    head, _, default = piece.partition(" DEFAULT ")
    name, _, type_ = head.partition(" ")
    type_ = TYPES.get(type_.strip(), type_.strip())
    return name, type_, (default.strip() or None)


def documented() -> dict[str, tuple[list[tuple[str, str, str | None]], str | None]]:
    """name -> (arguments, return type or None) of every signature API.md writes."""
    text = re.sub(r"--[^\n]*", "", CONTRACT.read_text())
    found: dict[str, tuple[list[tuple[str, str, str | None]], str | None]] = {}
    for m in SIGNATURE.finditer(text):
        name, args, returns = m.group(1), m.group(2).strip(), m.group(3)
        pieces = _split(args)
        if pieces and not all(re.match(r"p_\w+\s+\w", p) for p in pieces):
            continue  # a call such as pgjobs.schedule() in prose, not a signature
        if not pieces and returns is None and f"pgjobs.{name}()" not in text:
            continue
        arguments = [_argument(p) for p in pieces]
        if name in found and found[name][1] is not None and returns is None:
            continue  # a second mention without RETURNS adds nothing
        found[name] = (arguments, " ".join(returns.split()) if returns else None)
    return found


def test_the_copy_is_the_contract() -> None:
    if not ORIGINAL.exists():
        pytest.skip("the original contract is not on this machine")
    assert CONTRACT.read_text() == ORIGINAL.read_text(), (
        "tests/contract/API.md differs from the contract: copy it again")


def test_the_contract_has_the_signatures_to_check() -> None:
    names = set(documented())
    assert len(names) >= 35
    assert {"register_target", "submit_delete", "claim", "claim_items", "run", "schedule",
            "unschedule", "cancel", "set_defaults", "visible", "stats"} <= names


def _installed(conn: Conn) -> dict[str, list[tuple[list[tuple[str, str, str | None]], str]]]:
    rows = conn.execute("""
        SELECT p.proname, pg_get_function_arguments(p.oid),
               coalesce(pg_get_function_result(p.oid), 'procedure')
          FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace""").fetchall()
    found: dict[str, list[tuple[list[tuple[str, str, str | None]], str]]] = {}
    for name, args, result in rows:
        arguments = [_argument(p) for p in _split(args) if not p.startswith("OUT ")]
        found.setdefault(name, []).append((arguments, result))
    return found


def _same_value(conn: Conn, type_: str, documented_: str, actual: str) -> bool:
    return bool(conn.execute(
        f"SELECT ({documented_})::{type_} IS NOT DISTINCT FROM ({actual})::{type_}").fetchone()[0])  # type: ignore[index]


def _fits(conn: Conn, doc: list[tuple[str, str, str | None]], returns: str | None,
          actual: list[tuple[str, str, str | None]], result: str) -> list[str]:
    problems = []
    if [a[0] for a in actual[:len(doc)]] != [d[0] for d in doc]:
        return [f"arguments {[a[0] for a in actual]}, documented {[d[0] for d in doc]}"]
    for (name, type_, default), (_, actual_type, actual_default) in zip(doc, actual, strict=False):
        if type_ != actual_type:
            problems.append(f"{name} is {actual_type}, documented {type_}")
        elif default is not None and (
                actual_default is None or not _same_value(conn, type_, default, actual_default)):
            problems.append(f"{name} defaults to {actual_default}, documented {default}")
    problems += [f"added argument {name} has no default"
                 for name, _, default in actual[len(doc):] if default is None]
    if returns is not None and returns != result:
        problems.append(f"returns {result}, documented {returns}")
    return problems


def test_every_documented_function_has_its_documented_signature(conn: Conn) -> None:
    installed = _installed(conn)
    problems = []
    for name, (arguments, returns) in sorted(documented().items()):
        if name not in installed:
            problems.append(f"pgjobs.{name}: no such function")
            continue
        tries = [_fits(conn, arguments, returns, actual, result)
                 for actual, result in installed[name]]
        if all(tries):
            problems.append(f"pgjobs.{name}: " + "; ".join(min(tries, key=len)))
    assert not problems, "\n".join(problems)


def test_the_signature_check_catches_drift(conn: Conn) -> None:
    """The check above can fail: a renamed argument, a changed default, another
    return type, an added argument without a default."""
    claim = [("p_kinds", "text[]", None), ("p_worker", "text", None),
             ("p_lease", "interval", "'30 seconds'"), ("p_limit", "integer", "1")]
    (actual, result), = _installed(conn)["claim"]
    assert _fits(conn, claim, "SETOF pgjobs.jobs", actual, result) == []
    assert _fits(conn, [("p_kind", "text[]", None)], None, actual, result)
    assert _fits(conn, claim[:2] + [("p_lease", "interval", "'1 minute'")], None,
                 actual, result)
    assert _fits(conn, claim, "SETOF pgjobs.job_items", actual, result)
    assert _fits(conn, claim[:1], None, [actual[0], (actual[1][0], actual[1][1], None)],
                 result)


# --- the command line ---------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()
              ) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        found[prefix + (name,)] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, prefix + (name,)))
    return found


def _cli_lines() -> list[str]:
    """One command line per command: "pgjobs pause JOB | resume JOB" is two, and
    "pgjobs dev up | down | status" names dev's subcommands."""
    section = CONTRACT.read_text().split("## Command line", 1)[1]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    groups = {name for name, c in cli_main.commands.items() if isinstance(c, click.Group)}
    lines = []
    for line in block.splitlines():
        line = re.split(r"\s{3,}", line.strip())[0]  # a description after wide space
        first, *more = [p.strip() for p in line.split(" | ")]
        lines.append(first)
        group = first.split()[1]
        prefix = f"pgjobs {group} " if group in groups else "pgjobs "
        lines += [prefix + p for p in more]
    return lines


def _option(command: click.Command, name: str) -> click.Parameter | None:
    return next((p for p in command.params if name in (*p.opts, *p.secondary_opts)), None)


def _check_line(line: str, commands: dict[tuple[str, ...], click.Command]) -> list[str]:
    """What in one documented command line the CLI does not have."""
    words = line.split()[1:]
    path: tuple[str, ...] = ()
    while words and re.fullmatch(r"[a-z][a-z-]*", words[0]) and path + (words[0],) in commands:
        path += (words.pop(0),)
    if not path:
        return [f"{line}: no such command"]
    command = commands[path]
    if isinstance(command, click.Group):
        return [f"{line}: {' '.join(path)} has no subcommand {words[:1]}"]
    problems = []
    # An operand is an upper-case word that is not an option's value.
    operands = [w.strip("[].") for i, w in enumerate(words)
                if re.fullmatch(r"\[?[A-Z]+\]?(?:\.\.\.)?", w)
                and not (i and words[i - 1].lstrip("[").startswith("--"))]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if len(operands) != len(arguments):
        problems.append(f"{line}: takes {[a.name for a in arguments]}, documented {operands}")
    for m in re.finditer(r"(--[a-z][a-z-]*)(?: ([^\s\]]+))?", " ".join(words)):
        name, value = m.groups()
        option = _option(command, name)
        if option is None:
            problems.append(f"{line}: no option {name}")
            continue
        if value is None or value.startswith("--") or value.isupper():
            continue
        if "|" in value:
            choices = set(getattr(option.type, "choices", ()))
            if not set(value.split("|")) <= choices:
                problems.append(f"{line}: {name} takes {sorted(choices)}, documented {value}")
        elif str(option.default) != value:
            problems.append(f"{line}: {name} defaults to {option.default!r}, documented {value}")
    return problems


def test_every_command_line_of_the_contract_exists_as_written() -> None:
    commands = _commands(cli_main)
    lines = _cli_lines()
    assert len(lines) >= 20
    problems = [problem for line in lines for problem in _check_line(line, commands)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("line", [
    "pgjobs delet TARGET --scope S",                      # no such command
    "pgjobs delete TARGET --scope S [--filtre JSON]",     # no such option
    "pgjobs delete --scope S",                            # the operand left out
    "pgjobs export TARGET --scope S [--format csv|xml]",  # a choice it lacks
    "pgjobs run [--budget 40s]",                          # another default
    "pgjobs dev up | down | stop",                        # a subcommand it lacks
])
def test_the_command_line_check_catches_drift(line: str) -> None:
    commands = _commands(cli_main)
    first, *more = line.split(" | ")
    lines = [first] + [f"pgjobs dev {p}" for p in more]
    assert any(_check_line(one, commands) for one in lines)


def test_the_global_options_are_the_documented_ones() -> None:
    dsn, storage = _option(cli_main, "--dsn"), _option(cli_main, "--storage")
    assert isinstance(dsn, click.Option) and isinstance(storage, click.Option)
    assert dsn.envvar == "PGJOBS_DSN"
    assert storage.envvar == "PGJOBS_STORAGE"
    assert storage.default == "file://./pgjobs-exports"
