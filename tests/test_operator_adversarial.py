"""Adversarial checks of issue 10's operator features (reviewer r1): the
typo guard, preview, pause/resume/retry, throttling and the CLI guards, tried
the way an attacker or a new user would. Each test names the weakness it
pins down."""

from __future__ import annotations

from typing import Any

import click
import psycopg
import pytest

from pgjobs.cli.common import OPERANDS
from pgjobs.cli.main import main

Conn = psycopg.Connection[Any]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Any:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


# --- CLI: what a job does never comes from a leftover variable ----------------

# Options that decide which rows a job changes or how: a variable left in a
# shell must not steer them. `import --on-duplicate update` overwrites existing
# rows; `--max-rejects` silently drops bad records instead of failing;
# `--options` carries allow_unknown_fields and the like.
STEERING = {"on_duplicate", "max_rejects", "extra"}


def test_no_steering_option_of_any_command_reads_the_environment() -> None:
    assert STEERING <= OPERANDS
    seen = set()
    for path, command in walk(main):
        for param in command.params:
            if param.name in OPERANDS:
                assert not param.envvar, f"pgjobs {' '.join(path)} {param.name}: {param.envvar}"
                seen.add(param.name)
    assert seen >= STEERING


def test_import_ignores_leftover_steering_variables(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Any) -> None:
    # Parsed without a database: the variables must not reach the options.
    for name, value in {"PGJOBS_ON_DUPLICATE": "update", "PGJOBS_MAX_REJECTS": "1000",
                        "PGJOBS_OPTIONS": "{not json"}.items():
        monkeypatch.setenv(name, value)
    command = main.commands["import"]
    ctx = command.make_context("import", ["t", str(tmp_path / "x.csv"), "--scope", "1"])
    assert ctx.params["on_duplicate"] is None
    assert ctx.params["max_rejects"] is None
    assert ctx.params["extra"] is None
