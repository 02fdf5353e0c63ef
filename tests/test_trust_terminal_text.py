"""What a client stores reaches an operator's terminal only as text (an
attacker's pass over the client-facing surface, h158).

Found: `pgjobs list`, `status`, `items` and the end line of `watch` printed a
job's scope, a job's or an item's error and an item's worker as stored. A
client chooses its scope (any text on an unregistered target) and what its
items' errors echo, and an administrator's `pgjobs list` shows every
client's jobs: an ESC sequence there set the operator's window title or
clipboard (OSC, which click never strips), moved the cursor to rewrite the
lines around it (on a terminal click strips nothing), and a newline or a tab
forged a `status: succeeded` line or a column. Now every such value passes
pgjobs.cli.output.printable: C0 and C1 controls, line separators and
bidirectional overrides are written as their escapes; --json was already
safe (JSON escapes them). The same for every `error:` line (a message
quoting a scope), the first keys a delete's question names and the
--dry-run table (the target's data; the table also reads no rich markup).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import make_rows_target, make_target, scalar
from tests.support.hostile import (
    FORGED_STATUS,
    FORGED_STATUS_FLAT,
    FORGED_STATUS_SHOWN,
    UNSHOWN,
)

Conn = psycopg.Connection[Any]

# A forged status line (tests/support/hostile.py), as stored and as shown;
# items' error column runs blanks together (FLAT).
HOSTILE, SHOWN, FLAT = FORGED_STATUS, FORGED_STATUS_SHOWN, FORGED_STATUS_FLAT


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_JSON", "PGJOBS_LIMIT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def job(conn: Conn) -> Iterator[int]:
    """A fan-out job of a client, scope HOSTILE, whose one item failed with
    HOSTILE as its error (a worker echoing the item), claimed by a worker
    named HOSTILE-ish; the job failed with the same error."""
    make_target(conn)
    job = int(scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, %s, "
                           "'[1, 2]', '{\"max_attempts\": 1}')", (HOSTILE,)))
    (item, worker), _ = conn.execute(
        "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], %s, '5 minutes', 2)",
        ("w\x1b[8m",)).fetchall()
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)", (item, worker, HOSTILE))
    conn.execute("UPDATE pgjobs.jobs SET error = %s WHERE id = %s", (HOSTILE, job))
    yield job


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, *args])
    return invoke


def _clean(result: Result) -> str:
    """Both streams, holding no character a terminal acts on but the newline
    and the tab that end lines and part columns."""
    both = result.stdout + result.stderr
    assert not UNSHOWN.findall(both), repr(both)
    return both


@pytest.mark.parametrize("command", [["list"], ["status"], ["items"],
                                     ["items", "--status", "failed"]])
def test_a_clients_text_reaches_the_terminal_as_text(
        cli: Callable[..., Result], job: int, command: list[str]) -> None:
    args = [*command, str(job)] if command != ["list"] else command
    both = _clean(cli(*args))
    assert (FLAT if command[0] == "items" else SHOWN) in both, both
    # No line is forged: each line of status is one key.
    if command == ["status"]:
        keys = [line.split(":", 1)[0] for line in both.splitlines()]
        assert keys.count("status") == 1, both


def test_list_keeps_its_columns(cli: Callable[..., Result], job: int) -> None:
    [line] = [line for line in cli("list").stdout.splitlines()
              if line.startswith(f"{job}\t")]
    assert line.split("\t")[3] == SHOWN


def test_items_shows_the_worker_as_text(cli: Callable[..., Result], job: int) -> None:
    both = _clean(cli("items", str(job)))
    assert "w\\x1b[8m" in both


def test_json_is_whole_and_safe(cli: Callable[..., Result], job: int) -> None:
    """--json carries the text as stored, JSON-escaped (no raw control)."""
    result = cli("status", str(job), "--json")
    _clean(result)
    assert json.loads(result.stdout)["scope"] == HOSTILE


def test_an_error_line_quotes_the_input_as_text(
        conn: Conn, cli: Callable[..., Result]) -> None:
    """The database's message quotes the scope given (22023: not a value of
    the scope column): the error line shows it escaped, on one line."""
    make_rows_target(conn)
    result = cli("delete", "user_table_rows", "--scope", HOSTILE, "--filter", '{"n": 1}',
                 "--yes")
    assert result.exit_code == 2, result.output
    both = _clean(result)
    [line] = both.splitlines()
    assert line.startswith(f"error: scope '{SHOWN}' is not a valid integer"), line


def test_a_deletes_question_shows_the_targets_keys_as_text(
        conn: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The question before a delete on a terminal names the first keys, the
    target's data (a tenant writes them): escaped, one line each."""
    conn.execute("CREATE TABLE texts (id text PRIMARY KEY, scope int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE INDEX ON texts (scope, id)")
    conn.execute("SELECT pgjobs.register_target('texts', 'id', 'scope', 'created_at')")
    conn.execute("INSERT INTO texts (id, scope) VALUES (%s, 1)", (HOSTILE,))
    monkeypatch.setattr("pgjobs.cli.jobs._interactive", lambda: True)
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "texts",
                                       "--scope", "1"], input="n\n")
    assert result.exit_code == 1, result.output
    both = _clean(result)
    assert f"first keys: {SHOWN}" in both.splitlines(), both


def test_a_preview_table_reads_no_markup_in_the_keys(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run on a terminal draws a rich table: a key holding rich markup
    ("[link=...]", an OSC 8 hyperlink once drawn) shows as the text it is."""
    import sys

    from pgjobs.cli.jobs import _print_preview

    key = "[link=https://example.com/x]click[/link]\x1b[2J"
    shown = {"kind": "delete", "target": "texts", "scope": "1", "exact": True, "matches": 1,
             "scope_rows": 1, "time_limit_ms": 500, "sample": [key], "unknown_fields": [],
             "predicate": "true"}
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    _print_preview(shown, False)
    out = capsys.readouterr().out
    assert "]8;" not in out, repr(out)             # no hyperlink drawn
    assert "[link=https://example.com/x]click[/link]\\x1b[2J" in out, out
