"""A JSON argument of the command line means exactly what its text says (h21).

`pgjobs delete/backfill/export` parse --filter, --set and --options with one
parser (cli.common.parse_json) and send the value as jsonb (db.jsonb). Python's
json.loads changed the meaning of some texts without a word:

- a key given twice in one object kept only its last value, so
  `{"status": "archived", "status": {"$exists": true}}` lost its first
  condition and deleted every row with a status;
- a non-integer number went through a float, so `{"n": {"$gt":
  1.00000000000000001}}` was sent as `$gt 1.0` (a delete took rows the text
  keeps), `1e-200000` as 0.0, and `--set '{"price": 12345678901234567.89}'`
  wrote 12345678901234568;
- NaN and Infinity (not JSON) and numbers past PostgreSQL's numeric were
  accepted, then refused by the database without a hint; an integer of more
  than 4300 digits raised a traceback.

An operand option given twice (`--filter A ... --filter B`) was the same
trap one level up: click kept the last.

Now a repeated key or operand, a non-number and a number past numeric are
usage errors (exit 2, a hint), and numbers keep every digit. Each checked
on every command that takes JSON, or every operand option.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs import db
from pgjobs.cli.common import OPERANDS, parse_json
from pgjobs.cli.main import main
from tests.support import build_target, scalar

Conn = psycopg.Connection[Any]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"

# (arguments before the JSON value, the argument's name in messages)
JSON_ARGUMENTS = [
    (["delete", "t", "--scope", "1", "--yes", "--filter"], "filter"),
    (["export", "t", "--scope", "1", "--detach", "--filter"], "filter"),
    (["backfill", "t", "--scope", "1", "--yes", "--filter", "{}", "--set"], "set"),
    (["backfill", "t", "--scope", "1", "--yes", "--set", "{\"a\": 1}", "--filter"], "filter"),
    (["delete", "t", "--scope", "1", "--yes", "--options"], "options"),
    (["export", "t", "--scope", "1", "--detach", "--options"], "options"),
    (["import", "t", "s3://b/x.csv", "--scope", "1", "--detach", "--options"], "options"),
]
IDS = [f"{a[0]}-{w}" for a, w in JSON_ARGUMENTS]

REPEATED = [
    '{"status": "archived", "status": {"$exists": true}}',
    '{"a": 1, "b": 2, "a": 1}',                                  # even the same value
    '{"$and": [{"x": 1}], "$and": [{"y": 2}]}',
    '{"$or": [{"doc": {"k": 1, "k": 2}}]}',                       # nested
    '{"n": {"$gt": 1, "$gt": 5}}',                                # an operator twice
]
NOT_NUMBERS = ['{"n": NaN}', '{"n": {"$lt": Infinity}}', '{"n": [-Infinity]}']
# Past PostgreSQL's numeric: a float made them inf (refused without a hint) or
# 0.0 (1e-200000: a filter's bound moved to 0 without a word).
OUT_OF_RANGE = ['{"n": 1e200000}', '{"n": {"$gt": 1e-200000}}', '{"n": [0e1073741823]}',
                '{"n": 1.' + "1" * 16384 + '}', '{"n": ' + "9" * 131073 + '}']


def _usage_error(result: Result) -> tuple[str, str]:
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: ") and "Traceback" not in line
    message, _, hint = line.partition(" (hint: ")
    return message, hint


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])


@pytest.mark.parametrize("text", REPEATED)
@pytest.mark.parametrize(("args", "what"), JSON_ARGUMENTS, ids=IDS)
def test_a_key_given_twice_is_refused(args: list[str], what: str, text: str) -> None:
    message, hint = _usage_error(_invoke(*args, text))
    assert f"{what} names key" in message and "twice" in message
    assert ("$and" in hint) if what == "filter" else ("each key once" in hint)


@pytest.mark.parametrize("text", NOT_NUMBERS)
@pytest.mark.parametrize(("args", "what"), JSON_ARGUMENTS, ids=IDS)
def test_nan_and_infinity_are_refused(args: list[str], what: str, text: str) -> None:
    message, hint = _usage_error(_invoke(*args, text))
    assert "is not a JSON number" in message and hint


@pytest.mark.parametrize("text", OUT_OF_RANGE, ids=range(len(OUT_OF_RANGE)))
@pytest.mark.parametrize(("args", "what"), JSON_ARGUMENTS, ids=IDS)
def test_numbers_past_numeric_are_refused(args: list[str], what: str, text: str) -> None:
    message, hint = _usage_error(_invoke(*args, text))
    assert "a number PostgreSQL cannot read" in message and "out of the range" in message
    assert "smaller number" in hint


@pytest.mark.parametrize("number", [
    "1.00000000000000001", "0.30000000000000001", "12345678901234567.89", "-0.0",
    "1e400", "1E-7", "2.5", "3", "9" * 5000, "123456789012345678901234567890",
])
def test_numbers_are_sent_with_every_digit(conn: Conn, number: str) -> None:
    """What PostgreSQL receives equals what it reads from the text itself."""
    text = f'{{"n": {{"$gt": {number}}}, "list": [{number}, {{"deep": {number}}}]}}'
    value = parse_json(text, "filter")
    assert scalar(conn, "SELECT %s::jsonb = %s::jsonb", (db.jsonb(value), text)) is True
    assert parse_json(db.json_text(value), "filter") == value  # and reads back the same


def test_repeated_keys_in_different_objects_are_fine() -> None:
    value = parse_json('{"a": {"k": 1}, "b": {"k": 2}, "$or": [{"k": 1}, {"k": 2}]}', "filter")
    assert value == {"a": {"k": 1}, "b": {"k": 2}, "$or": [{"k": 1}, {"k": 2}]}
    assert parse_json('{"n": 2.5}', "filter") == {"n": Decimal("2.5")}
    assert type(parse_json('{"n": 3}', "options")["n"]) is int  # integers stay int


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, *args])
    return invoke


@pytest.fixture
def target(conn: Conn) -> str:
    build_target(conn, "t", """id bigint NOT NULL, scope int NOT NULL, v numeric, doc jsonb,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 document="doc")
    conn.execute("""INSERT INTO t (id, scope, v, doc) VALUES
        (1, 1, 1, '{"w": 1}'), (2, 1, 1.000000000000000005, '{"w": 1.000000000000000005}'),
        (3, 1, 1.00000000000000002, '{"w": 1.00000000000000002}'), (4, 1, 2, '{"w": 2}')""")
    return "t"


@pytest.mark.parametrize("field", ["v", "w"])  # a column, a document field
def test_a_delete_keeps_what_its_bound_keeps(cli: Callable[..., Result], conn: Conn,
                                             target: str, field: str) -> None:
    """$gt 1.00000000000000001 keeps rows 1 and 2 (it was sent as $gt 1.0,
    which took row 2), as preview, the job and a plain DELETE agree."""
    text = f'{{"{field}": {{"$gt": 1.00000000000000001}}}}'
    shown = cli("delete", target, "--scope", "1", "--filter", text, "--dry-run", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["sample"] == ["3", "4"]
    result = cli("delete", target, "--scope", "1", "--filter", text, "--yes", "--run")
    assert result.exit_code == 0, result.output
    assert [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")] == [1, 2]


def test_a_backfill_writes_the_number_it_was_given(cli: Callable[..., Result], conn: Conn,
                                                   target: str) -> None:
    result = cli("backfill", target, "--scope", "1", "--filter", '{"w": 2}', "--set",
                 '{"v": 12345678901234567.89, "price": 0.30000000000000001}', "--yes",
                 "--run")
    assert result.exit_code == 0, result.output
    row = conn.execute("SELECT v::text, (doc -> 'price')::text FROM t WHERE id = 4").fetchone()
    assert row == ("12345678901234567.89", "0.30000000000000001")


def test_a_filter_with_a_repeated_key_deletes_nothing(cli: Callable[..., Result], conn: Conn,
                                                      target: str) -> None:
    result = cli("delete", target, "--scope", "1", "--yes", "--filter",
                 '{"w": 2, "w": {"$exists": true}}')
    assert result.exit_code == 2 and "twice" in result.output
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    assert scalar(conn, "SELECT count(*) FROM t") == 4


# --- an operand given twice ----------------------------------------------------------
# Click keeps the last of a repeated option without a word: `delete t --filter
# '{"status": "archived"}' ... --filter '{}'` (a script's extra arguments
# appended) deleted the whole scope, and a second --scope moved the command to
# another tenant. Every operand option of every command (OPERANDS) that takes
# one value is refused when given twice, before anything connects.


def _operand_options() -> list[tuple[list[str], str]]:
    found: list[tuple[list[str], str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        for param in command.params:
            if (isinstance(param, click.Option) and param.name in OPERANDS
                    and not param.is_flag and not param.multiple):
                found.append((path, param.opts[-1]))

    walk(main, [])
    return found


OPERAND_OPTIONS = _operand_options()


def test_the_walk_finds_the_operands_of_the_writing_commands() -> None:
    names = {(path[0], opt) for path, opt in OPERAND_OPTIONS}
    assert {("delete", "--scope"), ("delete", "--filter"), ("backfill", "--set"),
            ("export", "--to"), ("import", "--on-duplicate"), ("import", "--options")} <= names


@pytest.mark.parametrize("spelled", ["apart", "equals"])
@pytest.mark.parametrize(("path", "opt"), OPERAND_OPTIONS,
                         ids=[f"{' '.join(p)} {o}" for p, o in OPERAND_OPTIONS])
def test_an_operand_given_twice_is_refused(path: list[str], opt: str, spelled: str) -> None:
    twice = [opt, "1", opt, "2"] if spelled == "apart" else [f"{opt}=1", opt, "2"]
    message, hint = _usage_error(_invoke(*path, "t", *twice))
    assert message.startswith(f"error: {opt} is given twice; only the last would count")
    assert hint.startswith(f"give {opt} once")


@pytest.mark.parametrize("args", [
    ["delete", "t", "--scope", "1", "--exclude", "1", "--exclude", "2", "--yes", "--yes"],
    ["delete", "t", "--scope", "1", "--filter", "{}", "--priority", "1", "--priority", "2"],
    ["export", "t", "--scope", "1", "--detach", "--filter", '{"a": "--filter"}'],
    ["delete", "t", "--scope", "--filter", "--filter", "{}"],  # a value that looks like one
])
def test_what_may_repeat_still_passes(args: list[str]) -> None:
    """Options that take many values, flags, options that are not operands, and
    an option's value that reads like an option name: on to connecting."""
    result = _invoke(*args)
    assert result.exit_code == 1 and "connection failed" in result.output, result.output
