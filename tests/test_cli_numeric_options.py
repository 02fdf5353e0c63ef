"""Every numeric option of every command has a range, and a value outside it is
a usage error (exit 2, one line, [22023]) before any connection is made: `worker
--poll 0` polled in a busy loop, `run --idle 0` called pgjobs.run back to back on
an idle queue, `--priority 99999999999999999999` reached the server and came
back worded as an option of --options' JSON, `ui --port 0` announced
http://localhost:0/, `demo --rows` had no ceiling. Integer options are checked
by walking the click tree (a new unbounded one fails the walk); duration options
by their own table of bounds (tests/test_cli_usage.py holds their spellings)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.common import PRIORITY
from pgjobs.cli.main import main
from tests.support import make_rows_target
from tests.support.cli import unset_ambient_settings

Conn = psycopg.Connection[Any]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def _numeric_options(command: click.Command = main, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Parameter]]:
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _numeric_options(sub, (*path, name))
    for param in command.params:
        if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
            yield path, param


NUMERIC = sorted(_numeric_options(), key=lambda item: (item[0], item[1].name or ""))
# What each command needs besides the option to get as far as its checks.
PREFIX = {("delete",): ["t", "--scope", "1"], ("backfill",): ["t", "--scope", "1",
                                                              "--filter", "{}", "--set", "{}"],
          ("export",): ["t", "--scope", "1"], ("import",): ["t", "file:///x.csv", "--scope", "1"],
          ("worker",): ["--once"], ("run",): ["--loop"]}


def _id(item: tuple[tuple[str, ...], click.Parameter]) -> str:
    return f"{' '.join(item[0])} {item[1].opts[0]}"


def test_the_walk_finds_the_numeric_options() -> None:
    found = {_id(item) for item in NUMERIC}
    assert {"worker --concurrency", "delete --priority", "export --priority", "list --limit",
            "ui --port", "demo --rows", "run --runners"} <= found, found


@pytest.mark.parametrize("item", NUMERIC, ids=_id)
def test_every_numeric_option_has_both_bounds(item: tuple[tuple[str, ...],
                                                          click.Parameter]) -> None:
    kind = item[1].type
    assert isinstance(kind, (click.IntRange, click.FloatRange)), (_id(item), kind)
    assert kind.min is not None and kind.max is not None, (_id(item), kind)


def _invoke(path: tuple[str, ...], *args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *path, *PREFIX.get(path, []), *args])


def _outside(kind: click.IntRange | click.FloatRange) -> list[str]:
    assert kind.min is not None and kind.max is not None
    values = [kind.min - 1, kind.max + 1, 10**20, -(10**20)]
    if kind.min > 0:
        values.append(0)
    if kind.min >= 0:
        values.append(-1)
    return [str(v) for v in values]


@pytest.mark.parametrize("item", NUMERIC, ids=_id)
def test_every_numeric_option_refuses_values_outside_its_range(
        item: tuple[tuple[str, ...], click.Parameter]) -> None:
    path, param = item
    kind = param.type
    assert isinstance(kind, (click.IntRange, click.FloatRange))
    option = param.opts[0]
    for value in _outside(kind):
        result = _invoke(path, f"{option}={value}")
        assert result.exit_code == 2, (option, value, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "[22023]" in lines[0] and "(hint: " in lines[0], lines[0]
        assert "Traceback" not in result.output


DURATION_BOUNDS = {
    ("worker", "--poll"): ["0", "0s", "50ms", "1h 1s", "2d"],
    ("run", "--idle"): ["0", "0s", "99ms", "1 day 1 second", "2d"],
}


@pytest.mark.parametrize("option", sorted(DURATION_BOUNDS), ids=" ".join)
def test_waits_between_polls_are_bounded(option: tuple[str, str]) -> None:
    """A poll or idle wait of 0 is a busy loop; one past its maximum a worker or
    runner that looks dead."""
    path, name = (option[0],), option[1]
    for value in DURATION_BOUNDS[option]:
        result = _invoke(path, name, value)
        assert result.exit_code == 2, (option, value, result.output)
        assert result.stderr.startswith(f"error: invalid {name} {value!r}: from 0.1s to "), \
            result.stderr
    # Inside the bounds (100ms, 1.5, 250ms, 1h ...): tests/test_cli_usage.py's
    # test_every_duration_option_takes_every_spelling.


def test_the_priority_range_is_the_databases(conn: Conn, dsn: str) -> None:
    """Both ends of --priority are taken by the submit, and one past either end
    is refused by the database too: the CLI's range is not narrower or wider."""
    make_rows_target(conn)
    assert PRIORITY.min is not None and PRIORITY.max is not None
    for value in (PRIORITY.min, PRIORITY.max):
        result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows",
                                           "--scope", "1", "--yes", "--priority", str(value)])
        assert result.exit_code == 0, result.output
    for value in (PRIORITY.min - 1, PRIORITY.max + 1):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', "
                         "jsonb_build_object('priority', %s::int))", (value,))
