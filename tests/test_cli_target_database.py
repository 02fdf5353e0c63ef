"""A TARGET database.schema.table naming another database is a usage error.

`pgjobs delete otherdb.public.t ...` reached PostgreSQL, which refused it as
"cross-database references are not implemented [0A000]", exit 1 and no hint.
The TARGET type (pgjobs.cli.common.require_this_database) now refuses it
before the command does anything: exit 2, 0A000, a hint to connect to that
database with --dsn. A three-part name PostgreSQL reads in the current
database (its name folded, quoted, blanks around the dots) goes on as before.

Each name is tried on the server itself (`name::regclass`): the CLI refuses
exactly the names PostgreSQL refuses with 0A000, in every command that takes
a TARGET.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import build_target

Conn = psycopg.Connection[Any]

# The database part of each name, from the current database's name.
SPELLINGS = {
    "other": lambda db: "otherdb",
    "current": lambda db: db,
    "current_upper_unquoted": lambda db: db.upper(),
    "current_quoted": lambda db: f'"{db}"',
    "current_upper_quoted": lambda db: f'"{db.upper()}"',
    "current_with_suffix": lambda db: db + "x",
    "current_blanks": lambda db: f" {db} ",
    "current_prefix": lambda db: db[:-1],
    "quoted_other_with_dot": lambda db: '"a.b"',
    "current_past_63_bytes": lambda db: db + "x" * 70,
}


def dry_run(dsn: str, target: str) -> Any:
    return CliRunner().invoke(main, ["--dsn", dsn, "delete", target, "--scope", "1",
                                     "--filter", '{"id": 1}', "--dry-run", "--json"])


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_three_part_names_as_postgresql_reads_them(conn: Conn, dsn: str, spelling: str) -> None:
    build_target(conn, "t", "id bigint PRIMARY KEY, scope int NOT NULL, "
                            "created_at timestamptz NOT NULL DEFAULT now()")
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    name = f"{SPELLINGS[spelling](row[0])}.public.t"
    try:
        conn.execute("SELECT %s::regclass", (name,))
        refused = False
    except psycopg.Error as exc:
        refused = exc.sqlstate == "0A000"
    result = dry_run(dsn, name)
    if refused:
        assert result.exit_code == 2, result.output
        assert "names database" in result.output and "[0A000]" in result.output
        assert "--dsn" in result.output and "public.t" in result.output
        assert "cross-database" not in result.output  # never PostgreSQL's own words
    else:
        assert result.exit_code == 0, result.output


COMMANDS = {
    "delete": ["delete", "T", "--scope", "1", "--filter", '{"id": 1}', "--yes"],
    "backfill": ["backfill", "T", "--scope", "1", "--filter", "{}", "--set", '{"n": 1}',
                 "--yes"],
    "export": ["export", "T", "--scope", "1", "--detach"],
    "import": ["import", "T", "file:///tmp/rows.csv", "--scope", "1", "--detach"],
    "doctor": ["doctor", "T"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_another_database(conn: Conn, dsn: str, command: str) -> None:
    build_target(conn, "t", "id bigint PRIMARY KEY, scope int NOT NULL, n int, "
                            "created_at timestamptz NOT NULL DEFAULT now()")
    args = [a if a != "T" else "otherdb.public.t" for a in COMMANDS[command]]
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    assert result.exit_code == 2, result.output
    assert "names database 'otherdb'" in result.output, result.output
    assert "connect to that database with --dsn" in result.output
    row = conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone()
    assert row == (0,)
