"""An operand option named after `--` (`pgjobs delete t --scope 1 -- --scope
2`) is refused in the project's own words, as one given twice is: after `--`
click reads it as an argument and said "Got unexpected extra arguments
(--scope 2)", which named neither the option nor what `--` did to it.
Walks every command and each of its operand options (pgjobs.cli.common.OPERANDS)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pgjobs.cli.common import OPERANDS
from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings
from tests.test_cli_usage import COMMANDS

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


CASES = [(path, option.opts[-1], not option.is_flag)
         for path in COMMANDS
         for option in _command(path).params
         if isinstance(option, click.Option) and option.name in OPERANDS]


@pytest.mark.parametrize("path, opt, takes_value", CASES,
                         ids=[f"{' '.join(p)} {o}" for p, o, _ in CASES])
def test_an_operand_after_the_end_of_options_is_refused_in_words(
        path: tuple[str, ...], opt: str, takes_value: bool) -> None:
    args = [*path, "t", "--", opt, *(["v"] if takes_value else [])]
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {opt} after `--` is an argument"), lines[0]
    assert "[22023]" in lines[0] and f"(hint: give {opt} once, before `--`" in lines[0]


def test_a_plain_argument_after_the_end_of_options_is_still_clicks_extra_argument() -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "delete", "t", "--scope", "1",
                                       "--", "extra"])
    assert result.exit_code == 2
    assert "extra" in result.stderr and "[22023]" in result.stderr
