"""A client's text reaches an operator as text on every channel, not only
`list`, `status` and `items` (h159; stop 60's tests/test_trust_terminal_text.py).

Found open on main, each now closed where its channel is made:

- `pgjobs doctor` printed a finding's detail (a storage error quoting an
  object a client's job named, a throttling reason, a role) as stored, piped
  and in its table: ``doctor.shown`` passes each field through printable.
- click's usage errors echo the argument they refuse: a bad value and an
  unknown option with repr, an extra argument raw (``Got unexpected extra
  argument (...)``); common.usage_error shows the message through printable.
- `watch`'s end line for a backfill that left rows unchanged quoted a row's
  key (a tenant's data) raw; `follow`'s lines now pass printable where they
  are printed (_Out.emit, _Out.note, TransferDisplay.note: no rich markup
  read there either).
- The worker's log lines (poller.observe's TextFormatter) wrote a message and
  a traceback as given: a client's error text with a newline forged a log
  line in the journal, ESC steered a terminal. observe.PlainFormatter shows
  every line through printable and indents a traceback's lines.
- The dashboard HTML-escaped every value but let a bidirectional override or
  a control through (``gnp.exe`` read as ``exe.png``): page.e is printable
  then escape.
- /metrics wrote a worker's name (a client's choice at claim) with its ESC:
  prometheus-client escapes only the newline, the quote and the backslash.

test_every_output_line_shows_a_rows_text_as_text scans the command line's
code so the next line printed cannot slip past.
"""

from __future__ import annotations

import ast
import io
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.rows import dict_row

from pgjobs.cli.main import main
from tests.support import make_target, scalar
from tests.support.hostile import FORGED_LINE, FORGED_LINE_SHOWN, UNSHOWN
from tests.support.ui import request, serving

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parent.parent

# A forged log line (tests/support/hostile.py), as stored and as shown; and
# with a NUL (storable in a Python string, a log message, a click argument;
# not in PostgreSQL text).
HOSTILE, SHOWN = FORGED_LINE, FORGED_LINE_SHOWN
HOSTILE_DB = HOSTILE  # no NUL: PostgreSQL text cannot hold one
WITH_NUL = HOSTILE + "\x00end"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_JSON", "PGJOBS_LIMIT",
                "PGJOBS_DOCTOR_FAIL_ON"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, *args])
    return invoke


def _clean(text: str) -> str:
    """The text, holding no character a reader's terminal or eye acts on but
    the newline and the tab that end lines and part columns."""
    assert not UNSHOWN.findall(text), repr(text)
    return text


# --- click's usage errors -----------------------------------------------------


@pytest.mark.parametrize("args", [["list", "--limit", WITH_NUL],
                                  ["list", "--status", HOSTILE],
                                  ["items", "1", "--status", HOSTILE],
                                  ["list", "--" + HOSTILE],
                                  ["status", "1", HOSTILE]])
def test_a_usage_error_quotes_the_argument_as_text(args: list[str]) -> None:
    """click quotes a bad value and an unknown option with repr, but not an
    extra argument (``Got unexpected extra argument (...)``): that reached
    the terminal raw on main."""
    result = CliRunner().invoke(main, ["--dsn", "postgresql://127.0.0.1:1/none", *args])
    assert result.exit_code == 2, result.output
    [line] = _clean(result.stderr).splitlines()
    assert line.startswith("error: ") and "[22023]" in line, line
    assert "\\x1b]0;owned\\x07" in line and "\\u202egnp.exe" in line, line


# --- pgjobs doctor ------------------------------------------------------------


@pytest.fixture
def gave_up(conn: Conn) -> None:
    """An object deletion that gave up, its error quoting the object (a key
    under the scope a client's export named)."""
    conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id, attempts, last_error) "
                 "VALUES ('file:///tmp/x', 1, 10, %s)", (HOSTILE_DB,))


def test_doctor_piped_shows_a_findings_text_as_text(
        cli: Callable[..., Result], gave_up: None) -> None:
    result = cli("doctor")
    out = _clean(result.stdout + result.stderr)
    assert SHOWN in out, out
    # Each finding is one line (and its fix one more): nothing forged.
    assert not any(line.startswith("OK  forged") for line in out.splitlines()), out


def test_doctor_on_a_terminal_shows_a_findings_text_as_text(
        conn: Conn, gave_up: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from pgjobs import db, queries
    from pgjobs.cli.doctor import _print_rich

    conn.row_factory = dict_row
    findings = db.rows(conn, queries.DOCTOR, {"target": None})
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "400")
    _print_rich(findings)
    out = capsys.readouterr().out
    # rich draws colour (ESC [ ... m) on a terminal; nothing else steers.
    assert not UNSHOWN.findall(re.sub("\x1b\\[[0-9;]*m", "", out)), repr(out)
    assert "\\x1b]0;owned\\x07" in out and "\\u202egnp.exe" in out, out


# --- watch's end lines --------------------------------------------------------


def test_watch_shows_a_rows_key_as_text(conn: Conn, cli: Callable[..., Result]) -> None:
    """A backfill that left a row unchanged names its key, a tenant's data."""
    make_target(conn)
    job = int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'items'::regclass, '1')"))
    conn.execute(
        "UPDATE pgjobs.jobs SET kind = 'backfill', status = 'succeeded', finished_at = now(), "
        "result = jsonb_build_object('skipped', 1, 'skipped_first', "
        "jsonb_build_object('key', %s::text, 'path', 'a', 'type', 'string')) WHERE id = %s",
        (HOSTILE_DB, job))
    result = cli("watch", str(job))
    out = _clean(result.stdout + result.stderr)
    assert f"key {SHOWN}" in out, out


def test_a_transfer_note_reads_no_markup_and_shows_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    from pgjobs.cli.progress import TransferDisplay

    display = TransferDisplay(7)  # stderr is no terminal here: plain lines
    display.note(f"job 7 waits its turn: scope {HOSTILE}")
    err = _clean(capsys.readouterr().err)
    assert err == f"job 7 waits its turn: scope {SHOWN}\n", err


# --- the worker's log lines ---------------------------------------------------

_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) ")


def test_a_log_line_shows_a_clients_text_as_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    """What a worker logs quotes a client's error text, a scope, a file name:
    each record stays one line (a traceback's lines indented under it)."""
    from pgjobs.poller import observe

    log = logging.getLogger("pgjobs.worker")
    with observe.logs_to_stderr("text"):
        log.warning("job 5 failed: %s", WITH_NUL)
        try:
            raise RuntimeError(HOSTILE)
        except RuntimeError:
            log.exception("job 6 import of %s stopped", HOSTILE)
    err = _clean(capsys.readouterr().err)
    lines = err.splitlines()
    starts = [line for line in lines if not line.startswith("    ")]
    assert len(starts) == 2 and all(_RECORD.match(line) for line in starts), err
    assert starts[0].endswith(f"job 5 failed: {SHOWN}\\x00end"), err
    # The exception's message goes on over indented lines: its newline ends a
    # traceback line, never starts a record; nothing else in it steers.
    assert "    RuntimeError: t\\x1b]0;owned\\x07\\x1b[2J\\r" in lines, err
    assert "    OK  forged\\tx\\x9b2J\\u202egnp.exe\\u2028z" in lines, err


def test_the_commands_own_log_lines_show_text() -> None:
    """`pgjobs export` and `import` log a library's warnings as the message
    alone (cli.export._setup_logging): as text too."""
    from pgjobs.poller.observe import PlainFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    record = logging.LogRecord("pgjobs.export", logging.WARNING, __file__, 1,
                               "retrying %s", (HOSTILE,), None)
    handler.emit(record)
    assert _clean(stream.getvalue()) == f"retrying {SHOWN}\n"


# --- the dashboard and /metrics -------------------------------------------------


@pytest.fixture
def hostile_jobs(conn: Conn) -> dict[str, int]:
    """A client's fan-out job whose scope, error and item error are HOSTILE,
    and a running custom job claimed under a HOSTILE worker name."""
    make_target(conn)
    items = int(scalar(conn, "SELECT pgjobs.submit_items('doc', 'items'::regclass, %s, "
                             "'[1]', '{\"max_attempts\": 1}')", (HOSTILE_DB,)))
    (item, worker), = conn.execute(
        "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w', '5 minutes', 1)"
    ).fetchall()
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)", (item, worker, HOSTILE_DB))
    conn.execute("UPDATE pgjobs.jobs SET error = %s WHERE id = %s", (HOSTILE_DB, items))
    running = int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'items'::regclass, '2')"))
    conn.execute("SELECT pgjobs.claim(ARRAY['thumbnail'], %s)", ("w\x1b]0;x\x07\u202eq",))
    return {"items": items, "running": running}


def test_the_dashboard_shows_a_clients_text_as_text(
        dsn: str, hostile_jobs: dict[str, int]) -> None:
    with serving(dsn) as base:
        pages = {path: request(base, "GET", path) for path in
                 ("/", f"/jobs/{hostile_jobs['items']}", f"/jobs/{hostile_jobs['running']}",
                  f"/jobs/{hostile_jobs['items']}/row")}
    for path, (status, _, body) in pages.items():
        assert status == 200, (path, body)
        html = body.decode() if isinstance(body, bytes) else body
        _clean(html.replace("\n", " "))
        assert "\\u202egnp.exe" in html or path.endswith(str(hostile_jobs["running"])), path


def test_metrics_show_a_worker_name_as_text(dsn: str, hostile_jobs: dict[str, int]) -> None:
    with serving(dsn) as base:
        status, _, body = request(base, "GET", "/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    _clean(text.replace("\n", " "))
    assert 'worker="w\\\\x1b]0;x\\\\x07\\\\u202eq"' in text, text
    assert all(line.startswith(("#", "pgjobs_")) for line in text.splitlines() if line), text


# --- the class: every line the command line prints --------------------------------

# A row's fields a client writes or chooses (its own, or a tenant's data
# copied in): printed in a text line, each must pass a function that shows
# text as text.
CLIENT_TEXT = {"scope", "target", "error", "key", "path", "detail", "fix", "reason",
               "worker", "role", "note", "uri", "name", "check_name", "message", "hint",
               "sample", "unknown_fields", "predicate", "command", "schedule", "type"}
# What shows a value as text: printable itself, the output module's text,
# JSON (which escapes every control), an error line's first line (printable),
# numbers.
SHOWS_TEXT = {"printable", "text", "to_json", "dumps", "first_line", "human_bytes", "amount",
              "per_second", "human_age", "int", "float", "len", "shown", "e", "e_lines",
              "escape", "_json_event", "shown_as_text"}
# Read raw on purpose, each shown as text where it is printed.
RAW_ON_PURPOSE = {
    # progress.note: also `watch --json`'s note, carried as stored; its text
    # lines show it through printable (_line, the bar's description).
    "progress.py: throttled.get('reason')",
}


def _reads_client_text(expr: ast.expr) -> str | None:
    """The client-text field ``expr`` reads outside a SHOWS_TEXT call, if any."""
    if isinstance(expr, ast.Call):
        func = expr.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else ""
        if name in SHOWS_TEXT:
            return None
        if name == "map" and expr.args and isinstance(expr.args[0], ast.Name) \
                and expr.args[0].id in SHOWS_TEXT:
            return None  # ", ".join(map(printable, values))
        if name == "get" and expr.args and isinstance(expr.args[0], ast.Constant) \
                and expr.args[0].value in CLIENT_TEXT:
            return str(expr.args[0].value)
    if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant) \
            and expr.slice.value in CLIENT_TEXT:
        return str(expr.slice.value)
    if isinstance(expr, ast.Attribute) and expr.attr in {"message", "hint"}:
        return expr.attr
    for child in ast.iter_child_nodes(expr):
        if isinstance(child, ast.expr):
            found = _reads_client_text(child)
            if found is not None:
                return found
    return None


def _shown_whole(tree: ast.AST) -> set[int]:
    """ids of the f-strings shown as text whole: given to a raise
    (PgjobsError.__str__ shows its message through printable) or to a
    SHOWS_TEXT call."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            inside |= {id(n) for n in ast.walk(node.exc) if isinstance(n, ast.JoinedStr)}
        if isinstance(node, ast.Call) and _reads_client_text(node) is None:
            inside |= {id(arg) for arg in node.args if isinstance(arg, ast.JoinedStr)}
    return inside


def test_every_output_line_shows_a_rows_text_as_text() -> None:
    """Every f-string in the command line's code (what it prints, or hands to
    what prints it) that reads a client's text field does so through a
    function that shows text as text, or is an error's message."""
    found: list[str] = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        raised = _shown_whole(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr) or id(node) in raised:
                continue
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    field = _reads_client_text(part.value)
                    shown = f"{path.name}: {ast.unparse(part.value)}"
                    if field is not None and shown not in RAW_ON_PURPOSE:
                        found.append(f"{path.name}:{node.lineno}: {ast.unparse(part.value)}")
    assert not found, "\n".join(found)
