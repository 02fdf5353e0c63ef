"""A new user's bad input, command by command (h76): each is one line on
stderr, `error: ... [SQLSTATE] (hint: ...)`, with the exit status docs/cli.md
gives, and nothing is submitted.

- A flag and --options that set the same option to different values
  (`export --format csv --options '{"format": "jsonl"}'`) are a usage error
  naming both: the flag used to win without a word, and export's default
  --format csv even overrode an --options that alone named the format (the
  export came out csv). Agreeing ones, and an --options left to itself, work.
- A TARGET that is no table name (empty, an unterminated quote, an empty
  part, more than database.schema.table) is a usage error naming it: it
  reached PostgreSQL's regclass input, exit 1 with `invalid name syntax
  [42602]` or `improper relation name [42601]` and no hint. A schema that does
  not exist (3F000) says to check the name, exit 2 as a table that does not
  exist (42P01).

One database for the module; every case runs in a fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import admin_execute, allow, make_rows_target, seed, with_database
from tests.support.cli import unset_ambient_settings
from tests.support.databases import database_name

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


@pytest.fixture(scope="module")
def database(cluster_url: str, template_dsn: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[str, str]]:
    """One migrated database for the module, with user_table_rows registered and
    seeded, a file to import and its folder allowed: (dsn, file URI)."""
    name = database_name("bad_input_cli")
    template = psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {template}")
    dsn = with_database(cluster_url, name)
    folder = tmp_path_factory.mktemp("bad_input_cli")
    source = folder / "rows.csv"
    source.write_text("id,table_id,n\n100001,1,1\n")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed(conn, make_rows_target(conn), 60)
            allow(conn, f"file://{folder}")
        yield dsn, f"file://{source}"
    finally:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(dsn: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", dsn, *args])


def jobs(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone()
    assert row is not None
    return int(row[0])


def refused(dsn: str, args: list[str], code: int, sqlstate: str, *fragments: str) -> str:
    """The one line of a refusal, after checking it and that nothing was submitted."""
    before = jobs(dsn)
    result = run(dsn, *args)
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert f"[{sqlstate}] (hint: " in line, line
    for fragment in fragments:
        assert fragment in line, line
    assert jobs(dsn) == before
    return line


# --- a flag and --options -------------------------------------------------------

def _commands(source: str) -> dict[str, list[str]]:
    return {
        "delete": ["delete", "user_table_rows", "--scope", "1", "--yes"],
        "backfill": ["backfill", "user_table_rows", "--scope", "1", "--filter", "{}",
                     "--set", '{"n": 1}', "--yes"],
        "export": ["export", "user_table_rows", "--scope", "1", "--detach"],
        "import": ["import", "user_table_rows", source, "--scope", "1", "--detach"],
    }


# (command, flag arguments, the key, a different value in --options)
DISAGREE = [
    ("delete", ["--priority", "3"], "priority", 4),
    ("delete", ["--on-conflict", "reject"], "on_conflict", "queue"),
    ("delete", ["--page-size", "10"], "page_size", 20),
    ("backfill", ["--priority", "3"], "priority", -3),
    ("backfill", ["--page-size", "10"], "page_size", 10.5),
    ("export", ["--format", "csv"], "format", "jsonl"),
    ("export", ["--gzip"], "gzip", False),
    ("export", ["--parallel", "2"], "parallel", 3),
    ("export", ["--priority", "1"], "priority", True),
    ("export", ["--columns", "id,n"], "columns", ["id"]),
    ("export", ["--to", "file:///tmp/a"], "destination", "file:///tmp/b"),
    ("import", ["--format", "csv"], "format", "jsonl"),
    ("import", ["--on-duplicate", "skip"], "on_duplicate", "update"),
    ("import", ["--max-rejects", "3"], "max_rejects", 5),
    ("import", ["--gzip"], "gzip", False),
    ("import", ["--no-gzip"], "gzip", True),
]


@pytest.mark.parametrize("command, flag, key, other", DISAGREE,
                         ids=[f"{c}-{f[0]}-{json.dumps(o)}" for c, f, _, o in DISAGREE])
def test_a_flag_and_options_that_disagree_are_a_usage_error(
        database: tuple[str, str], command: str, flag: list[str], key: str, other: Any) -> None:
    dsn, source = database
    args = [*_commands(source)[command], *flag, "--options", json.dumps({key: other})]
    refused(dsn, args, 2, "22023", f"{flag[0]} and --options disagree", f'"{key}"',
            f"give {key} once")


# (command, flag arguments, --options saying the same)
AGREE = [
    ("delete", ["--priority", "3"], {"priority": 3}),
    ("export", ["--format", "jsonl"], {"format": "jsonl"}),
    ("export", ["--gzip"], {"gzip": True}),
    ("import", ["--max-rejects", "3"], {"max_rejects": 3}),
]


@pytest.mark.parametrize("command, flag, options", AGREE,
                         ids=[f"{c}-{f[0]}" for c, f, _ in AGREE])
def test_a_flag_and_options_that_agree_submit(database: tuple[str, str], command: str,
                                              flag: list[str], options: dict[str, Any]) -> None:
    dsn, source = database
    result = run(dsn, *_commands(source)[command], *flag, "--options", json.dumps(options),
                 "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout.strip().splitlines()[-1])["id"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        payload, = conn.execute("SELECT payload FROM pgjobs.jobs WHERE id = %s",
                                (job_id,)).fetchone() or (None,)
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    for key, value in options.items():
        if key != "priority":
            assert payload[key] == value, payload


@pytest.mark.parametrize("options, key, value", [
    ({"format": "jsonl"}, "format", "jsonl"),
    ({"format": "parquet"}, "format", "parquet"),
])
def test_export_options_alone_name_the_format(database: tuple[str, str],
                                              options: dict[str, Any], key: str,
                                              value: Any) -> None:
    # --format's default (csv) fills a key --options leaves out, never one it gives.
    dsn, source = database
    result = run(dsn, *_commands(source)["export"], "--options", json.dumps(options), "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout.strip().splitlines()[-1])["id"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        payload, = conn.execute("SELECT payload FROM pgjobs.jobs WHERE id = %s",
                                (job_id,)).fetchone() or (None,)
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    assert payload[key] == value, payload


# --- TARGET ----------------------------------------------------------------------

NOT_NAMES = ["", "   ", '"unterminated', '"a"b', "a..b", ".a", "a.", "a b", "a.b.c.d",
             '"a"."b"."c"."d"']

TARGET_COMMANDS = {
    "delete": lambda t, s: ["delete", t, "--scope", "1", "--yes"],
    "backfill": lambda t, s: ["backfill", t, "--scope", "1", "--filter", "{}", "--set",
                              '{"n": 1}', "--yes"],
    "export": lambda t, s: ["export", t, "--scope", "1", "--detach"],
    "import": lambda t, s: ["import", t, s, "--scope", "1", "--detach"],
    "doctor": lambda t, s: ["doctor", t],
}


@pytest.mark.parametrize("command", sorted(TARGET_COMMANDS))
@pytest.mark.parametrize("target", NOT_NAMES)
def test_a_target_that_is_no_table_name_is_a_usage_error(
        database: tuple[str, str], command: str, target: str) -> None:
    dsn, source = database
    refused(dsn, TARGET_COMMANDS[command](target, source), 2, "22023",
            f"TARGET {target!r} is not a table name", "pgjobs.targets")


@pytest.mark.parametrize("command", sorted(TARGET_COMMANDS))
def test_a_schema_that_does_not_exist_says_to_check_the_name(
        database: tuple[str, str], command: str) -> None:
    dsn, source = database
    refused(dsn, TARGET_COMMANDS[command]("nosuchschema.user_table_rows", source), 2, "3F000",
            "nosuchschema", "check the table's name and schema")


@pytest.mark.parametrize("target", [
    "user_table_rows", " public . user_table_rows ", "PUBLIC.User_Table_Rows",
    '"public"."user_table_rows"', "public.user_table_rows",
])
def test_every_spelling_regclass_takes_still_works(database: tuple[str, str],
                                                   target: str) -> None:
    dsn, _ = database
    result = run(dsn, "delete", target, "--scope", "1", "--dry-run")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", [
    "t", "s.t", "d.s.t", " s . t ", '"a b"', '"a""b"', '"A".b', "\u00a0t", "t\u00a0x",
    "", " ", '"x', '""', "a..b", ".a", "a.", "a b", "a.b.c.d", '"a"x',
])
def test_names_split_as_postgresql_splits_them(database: tuple[str, str], text: str) -> None:
    # target_name_parts against PostgreSQL's own reading (parse_ident is the
    # same splitter, strict: it refuses what regclass refuses).
    from pgjobs.cli.common import target_name_parts

    dsn, _ = database
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute("SELECT pg_catalog.parse_ident(%s)", (text,)).fetchone()
            theirs = list(row[0]) if row else None
        except psycopg.errors.InvalidParameterValue:
            theirs = None
    assert target_name_parts(text) == theirs
