"""CLI guards for destructive commands: `--dry-run` (preview, nothing written),
the terminal confirmation (through a real pseudo-terminal), `--yes`, and
operands that no environment variable can steer (every command walked)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pexpect
import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.common import OPERANDS
from pgjobs.cli.main import main
from tests.support import make_rows_target, scalar, seed, wait_for

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def rows(conn: Conn) -> Conn:
    seed(conn, make_rows_target(conn), 300)
    return conn


def jobs(conn: Conn) -> list[Any]:
    return conn.execute("SELECT id, kind, payload FROM pgjobs.jobs ORDER BY id").fetchall()


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


# --- operands never come from the environment ------------------------------------


def test_no_operand_of_any_command_reads_the_environment() -> None:
    checked = 0
    for path, command in walk(main):
        assert not (command.context_settings or {}).get("auto_envvar_prefix"), path
        for param in command.params:
            where = f"pgjobs {' '.join(path)} {param.name}"
            if isinstance(param, click.Argument) or param.name in OPERANDS:
                assert not param.envvar, f"{where} reads {param.envvar}"
                checked += 1
    assert checked >= 15
    # The operands the style guide names are all among those checked.
    names = {p.name for _, c in walk(main) for p in c.params}
    assert {"target", "scope", "filter_", "set_", "exclude", "columns"} <= names


def test_auto_envvar_prefix_is_not_used_by_the_entry_point(rows: Conn, dsn: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # click's auto_envvar_prefix would read PGJOBS_DELETE_SCOPE and the like.
    monkeypatch.setenv("PGJOBS_DELETE_SCOPE", "1")
    monkeypatch.setenv("PGJOBS_DELETE_FILTER", '{"k": 1}')
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows"])
    assert result.exit_code == 2 and "--scope" in result.output
    assert jobs(rows) == []


ENV = {"PGJOBS_FILTER": '{"k": 1}', "PGJOBS_SCOPE": "2", "PGJOBS_EXCLUDE": "3 6",
       "PGJOBS_SET": '{"label": "env"}', "PGJOBS_OPTIONS": '{"allow_unknown_fields": true}',
       "PGJOBS_COLUMNS": "id", "PGJOBS_TO": "file:///tmp/elsewhere", "PGJOBS_YES": "1",
       "PGJOBS_DRY_RUN": "1", "PGJOBS_SOURCE": "/etc/passwd"}


def test_leftover_variables_do_not_steer_a_delete(rows: Conn, dsn: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows",
                                       "--scope", "1"])
    assert result.exit_code == 0, result.output
    [(job_id, kind, payload)] = jobs(rows)
    assert kind == "delete" and payload == {"filter": {}, "exclude": []}
    assert scalar(rows, "SELECT scope FROM pgjobs.jobs") == "1"
    assert scalar(rows, "SELECT options FROM pgjobs.jobs") == {}
    # And without --scope the variable does not stand in: a usage error.
    again = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows"])
    assert again.exit_code == 2 and "--scope" in again.output


def test_leftover_variables_do_not_steer_a_backfill_or_export(
        rows: Conn, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["--dsn", dsn, "backfill", "user_table_rows",
                                       "--scope", "1", "--filter", "{}", "--set",
                                       '{"n": 1}'])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["--dsn", dsn, "export", "user_table_rows",
                                       "--scope", "1", "--detach"])
    assert result.exit_code == 0, result.output
    (_, _, backfill), (_, _, export) = jobs(rows)
    assert backfill["filter"] == {} and backfill["set"] == {"n": 1}
    assert export["filter"] == {} and export["destination"] is None
    assert "label" in export["columns"]


# --- --dry-run --------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["delete", "user_table_rows", "--scope", "1", "--filter", '{"k": 1}', "--exclude", "6"],
    ["backfill", "user_table_rows", "--scope", "1", "--filter", '{"k": 1}',
     "--set", '{"n": 0}'],
])
def test_dry_run_prints_the_preview_and_writes_nothing(rows: Conn, dsn: str,
                                                       args: list[str]) -> None:
    before = scalar(rows, "SELECT md5(string_agg(t::text, ',' ORDER BY id))"
                          " FROM user_table_rows t")
    result = CliRunner().invoke(main, ["--dsn", dsn, *args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = scalar(rows, """SELECT pgjobs.preview('user_table_rows', '1', '{"k": 1}',
                               %s::text[], %s::jsonb)""",
                      (["6"] if args[0] == "delete" else [],
                       json.dumps({"kind": args[0]})))
    for key in ("matches", "exact", "scope_rows", "sample", "unknown_fields", "kind"):
        assert shown[key] == expected[key], key
    assert jobs(rows) == []
    assert scalar(rows, "SELECT md5(string_agg(t::text, ',' ORDER BY id))"
                        " FROM user_table_rows t") == before


def test_dry_run_names_unknown_fields(rows: Conn, dsn: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows", "--scope",
                                       "1", "--filter", '{"stauts": {"$ne": "keep"}}',
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unknown_fields"] == ["stauts"]
    # ... which the submit itself refuses: one line, exit 2.
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows", "--scope",
                                       "1", "--filter", '{"stauts": {"$ne": "keep"}}'])
    assert result.exit_code == 2 and '"stauts"' in result.output
    assert "allow_unknown_fields" in result.output
    assert jobs(rows) == []


@pytest.mark.parametrize("held", ['"text"', "[1, 2]", "7"])
def test_dry_run_names_rows_a_set_cannot_merge_into(rows: Conn, dsn: str, held: str) -> None:
    key = scalar(rows, "SELECT min(id) FROM user_table_rows WHERE table_id = 1"
                       " AND created_at <= now()")
    rows.execute("UPDATE user_table_rows SET data = jsonb_set(data, '{nest}', %s::jsonb)"
                 " WHERE id = %s", (held, key))
    args = ["--dsn", dsn, "backfill", "user_table_rows", "--scope", "1", "--filter", "{}",
            "--set", '{"nest.z": 1}']
    result = CliRunner().invoke(main, [*args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["non_object_rows"] == 1
    assert shown["non_object_first"] == {
        "key": str(key), "path": "nest",
        "type": scalar(rows, "SELECT jsonb_typeof(%s::jsonb)", (held,))}
    # ... which the submit itself refuses: one line, exit 2.
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and '"nest"' in result.output
    assert "replace_non_objects" in result.output
    assert jobs(rows) == []


def test_off_a_terminal_a_delete_submits_as_before(rows: Conn, dsn: str) -> None:
    # CliRunner's stdin and stdout are not terminals: scripts keep working.
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "user_table_rows",
                                       "--scope", "1", "--filter", '{"k": 2}'])
    assert result.exit_code == 0, result.output
    assert len(jobs(rows)) == 1


# --- the question, through a pseudo-terminal -----------------------------------------


def spawn(dsn: str, *args: str, command: list[str] | None = None,
          codec_errors: str = "strict") -> pexpect.spawn:
    """`pgjobs ARGS` on a pseudo-terminal (or ``command`` ARGS). PYTHONFAULTHANDLER:
    a child that hangs prints every thread's stack on SIGABRT (:func:`ended`).
    ``codec_errors="replace"`` reads a terminal that echoes bytes that are not
    UTF-8."""
    if command is None:
        exe = Path(sys.executable).parent / "pgjobs"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "pgjobs.cli.main"]
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PGJOBS_") or k == "DATABASE_URL")}
    env.update(PGJOBS_DSN=dsn, COLUMNS="200", TERM="dumb", PYTHONFAULTHANDLER="1")
    return pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8",
                         codec_errors=codec_errors, timeout=60, dimensions=(50, 200))


def ended(child: pexpect.spawn) -> str:
    """What the child printed until it exited (then closed). A child still running
    after the spawn's timeout fails the test with what it printed and, from
    faulthandler on SIGABRT, where each of its threads stood."""
    if child.expect([pexpect.EOF, pexpect.TIMEOUT]) == 0:
        said = str(child.before)
        child.close()
        return said
    said = str(child.before)
    child.kill(signal.SIGABRT)
    child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=30)
    stacks = str(child.before)
    child.close(force=True)
    pytest.fail(f"the child did not exit within {child.timeout} s; it printed:\n{said}\n"
                f"its stacks on SIGABRT:\n{stacks}")


DELETE = ("delete", "user_table_rows", "--scope", "1", "--filter", '{"k": 3}')
BACKFILL = ("backfill", "user_table_rows", "--scope", "1", "--filter", '{"k": 3}',
            "--set", '{"n": 9}')


@pytest.mark.parametrize("command", [DELETE, BACKFILL], ids=["delete", "backfill"])
@pytest.mark.parametrize("answer", ["n", ""])
def test_on_a_terminal_no_submits_nothing(rows: Conn, dsn: str, command: tuple[str, ...],
                                          answer: str) -> None:
    matches = scalar(rows, "SELECT (pgjobs.preview('user_table_rows', '1', '{\"k\": 3}'))"
                           "->'matches'")
    child = spawn(dsn, *command)
    child.expect(rf"{command[0]} {matches} of \d+ rows")
    child.expect("first keys: ")
    child.expect(rf"Submit this {command[0]}\? \[y/N\]")
    child.sendline(answer)  # "" takes the default: no
    child.expect("not submitted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert jobs(rows) == []


@pytest.mark.parametrize("command", [DELETE, BACKFILL], ids=["delete", "backfill"])
def test_on_a_terminal_yes_submits(rows: Conn, dsn: str, command: tuple[str, ...]) -> None:
    child = spawn(dsn, *command)
    child.expect(rf"Submit this {command[0]}\? \[y/N\]")
    child.sendline("y")
    child.expect(r"job (\d+) submitted")
    job_id = int(child.match.group(1))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [j[0] for j in jobs(rows)] == [job_id]
    assert jobs(rows)[0][1] == command[0]


def test_on_a_terminal_yes_flag_skips_the_question(rows: Conn, dsn: str) -> None:
    child = spawn(dsn, *DELETE, "--yes")
    index = child.expect([r"Submit this", r"job \d+ submitted"])
    assert index == 1
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and len(jobs(rows)) == 1


def test_on_a_terminal_unknown_fields_are_refused_without_a_question(rows: Conn,
                                                                    dsn: str) -> None:
    child = spawn(dsn, "delete", "user_table_rows", "--scope", "1", "--filter",
                  '{"stauts": {"$ne": "keep"}}')
    index = child.expect([r"Submit this", r'"stauts"'])
    assert index == 1
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and jobs(rows) == []


def test_on_a_terminal_dry_run_draws_a_table(rows: Conn, dsn: str) -> None:
    child = spawn(dsn, *DELETE, "--dry-run")
    child.expect("preview")
    child.expect("matches")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and jobs(rows) == []


# --- prune with a short retention ---------------------------------------------------


def _finished(conn: Conn, age: str = "1 second") -> list[int]:
    """A delete and an export, succeeded `age` ago (by default a moment ago: an
    export's object just handed to its user)."""
    ids = []
    for kind in ("delete", "export"):
        if kind == "delete":
            job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', "
                                  "'{\"k\": 3}')")
        else:
            job_id = scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1', '{}')")
        conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() "
                     "- %s::interval WHERE id = %s", (age, job_id))
        ids.append(int(job_id))
    return ids


def _job_ids(conn: Conn) -> list[int]:
    return [r[0] for r in jobs(conn)]


@pytest.mark.parametrize("answer", ["n", ""])
def test_on_a_terminal_a_short_retention_asks_and_no_prunes_nothing(
        rows: Conn, dsn: str, answer: str) -> None:
    ids = _finished(rows)
    child = spawn(dsn, "prune", "--retention", "0")
    child.expect(r"--retention 0 deletes 2 finished job\(s\), the newest finished .*"
                 r"the objects of 1 succeeded export\(s\) are queued for deletion")
    child.expect(r"Prune them\? \[y/N\]")
    child.sendline(answer)
    child.expect("nothing pruned")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert _job_ids(rows) == ids
    assert scalar(rows, "SELECT count(*) FROM pgjobs.storage_deletions") == 0


@pytest.mark.parametrize("how", ["answer", "flag"])
def test_on_a_terminal_a_short_retention_prunes_when_told(rows: Conn, dsn: str,
                                                          how: str) -> None:
    _finished(rows, "40 minutes")
    if how == "answer":
        child = spawn(dsn, "prune", "--retention", "30m")
        child.expect(r"Prune them\? \[y/N\]")
        child.sendline("y")
    else:
        child = spawn(dsn, "prune", "--retention", "0", "--yes")
    child.expect(r'"deleted": 2')
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert _job_ids(rows) == []


@pytest.mark.parametrize("retention", ["1h", "24h", "0"])
def test_on_a_terminal_prune_asks_only_what_is_worth_asking(rows: Conn, dsn: str,
                                                           retention: str) -> None:
    """An hour and more does not ask (the jobs are older than it, and go); nor
    does a short one that takes no job."""
    if retention != "0":
        _finished(rows, "2 days")
    child = spawn(dsn, "prune", "--retention", retention)
    index = child.expect([r"Prune them\?", r'"deleted": 2' if retention != "0"
                          else r'"deleted": 0'])
    assert index == 1
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_off_a_terminal_a_short_retention_prunes_without_asking(rows: Conn,
                                                                dsn: str) -> None:
    """A script (or pg_cron's caller) is not asked: it prunes as before."""
    _finished(rows)
    result = CliRunner().invoke(main, ["--dsn", dsn, "prune", "--retention", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] == 2
    assert _job_ids(rows) == []


_DRY_RUN_COMMANDS = {
    "delete": ["delete", "user_table_rows", "--scope", "1", "--filter", '{"k": 1}'],
    "backfill": ["backfill", "user_table_rows", "--scope", "1", "--filter", '{"k": 1}',
                 "--set", '{"n": 0}'],
}


@pytest.mark.parametrize("kind", sorted(_DRY_RUN_COMMANDS))
@pytest.mark.parametrize("extra", [
    ["--priority", "99999999"], ["--options", '{"run_at": "infinity"}'],
    ["--options", '{"page_delay": "99999999999999 days"}'],
    ["--options", '{"max_attempts": 0}'], ["--options", '{"lease": "0s"}'],
    ["--options", '{"no_such_option": 1}'],
], ids=lambda e: e[-1])
def test_dry_run_refuses_what_the_submit_refuses(rows: Conn, dsn: str, kind: str,
                                                 extra: list[str]) -> None:
    """pgjobs.preview takes none of the job's own options: `--dry-run
    --priority 99999999` (or a bad run_at, page_delay, lease...) printed the
    preview, exit 0, and the submit then refused. The dry run now says what
    the submit would, word for word, and still writes nothing."""
    args = ["--dsn", dsn, *_DRY_RUN_COMMANDS[kind], *extra]
    dry = CliRunner().invoke(main, [*args, "--dry-run", "--json"])
    real = CliRunner().invoke(main, [*args, "--yes"])
    assert real.exit_code == 2, real.output
    assert (dry.exit_code, dry.stderr) == (real.exit_code, real.stderr)
    assert dry.stdout == "" and "Traceback" not in dry.output
    assert jobs(rows) == []


@pytest.mark.parametrize("kind", sorted(_DRY_RUN_COMMANDS))
def test_dry_run_with_on_conflict_reject_behind_a_writer_says_55006(
        rows: Conn, dsn: str, kind: str) -> None:
    rows.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{\"k\": 2}')")
    queued = jobs(rows)
    args = ["--dsn", dsn, *_DRY_RUN_COMMANDS[kind], "--on-conflict", "reject", "--dry-run"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "[55006]" in result.stderr and "(hint: " in result.stderr
    assert jobs(rows) == queued  # nothing more
    # Without the conflict the dry run passes, and still writes nothing.
    result = CliRunner().invoke(main, [*args[:-3], "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == kind
    assert jobs(rows) == queued


# --- the question cut short: Ctrl-D and Ctrl-C ---------------------------------------

QUESTIONS = {
    "delete": (DELETE, r"Submit this delete\? \[y/N\]", "not submitted"),
    "backfill": (BACKFILL, r"Submit this backfill\? \[y/N\]", "not submitted"),
    "prune": (("prune", "--retention", "0"), r"Prune them\? \[y/N\]", "nothing pruned"),
}


@pytest.mark.parametrize("question", sorted(QUESTIONS))
@pytest.mark.parametrize("key", ["ctrl-d", "ctrl-c"])
def test_on_a_terminal_a_question_cut_short_says_what_happened(
        rows: Conn, dsn: str, question: str, key: str) -> None:
    """End of input (Ctrl-D) answers no: the command says what it did not do, exit
    1. Ctrl-C is an interrupt, as anywhere else: "interrupted", exit 130. Both
    gave click's bare "Aborted!" with exit 1."""
    ids = _finished(rows) if question == "prune" else []
    args, prompt, declined = QUESTIONS[question]
    child = spawn(dsn, *args)
    child.expect(prompt)
    if key == "ctrl-d":
        child.sendeof()
    else:
        child.sendintr()  # once: a person presses it once
    said = ended(child)
    assert "Aborted" not in said and "Traceback" not in said, said
    if key == "ctrl-d":
        assert declined in said, said
        assert child.exitstatus == 1, said
    else:
        assert "interrupted" in said, said
        assert child.exitstatus == 130, said
    assert _job_ids(rows) == ids  # nothing submitted, nothing pruned


MISSED_CTRL_C = """
import signal, sys, threading

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


def trip() -> None:
    signal.sigwait({signal.SIGUSR1})
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)


threading.Thread(target=trip, daemon=True).start()
from pgjobs.cli.main import main

main(prog_name="pgjobs")
"""
"""`pgjobs ARGS` with a thread that takes a SIGINT itself when the process gets a
SIGUSR1: Python's handler runs on that thread and only notes the interrupt for
the main thread, whose blocking read goes on. It is the state a Ctrl-C pressed
as the question showed left behind when it came just before the read began
(Python acts on a signal between bytecodes, and the question's input() wrote
the prompt and read the answer in one C call): noted, and never acted on."""


def _asleep(pid: int) -> bool:
    """The process's main thread is asleep in the kernel (state S): waiting."""
    stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "S"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_a_ctrl_c_the_waiting_read_did_not_see_is_still_acted_on(
        rows: Conn, dsn: str, question: str) -> None:
    """A Ctrl-C that the wait for the answer was not woken by is acted on all the
    same: "interrupted", exit 130, nothing submitted or pruned. The question read
    its answer in one blocking read (click.confirm), and such a Ctrl-C left the
    command waiting for a line: the Ctrl-C cases above hung about once per CI
    run; this one hung every time."""
    ids = _finished(rows) if question == "prune" else []
    args, prompt, _ = QUESTIONS[question]
    child = spawn(dsn, *args, command=[sys.executable, "-c", MISSED_CTRL_C])
    child.expect(prompt)
    wait_for(lambda: _asleep(child.pid), 30, "the command waiting for the answer")
    os.kill(child.pid, signal.SIGUSR1)
    said = ended(child)
    assert "interrupted" in said and "Traceback" not in said, said
    assert child.exitstatus == 130, said
    assert _job_ids(rows) == ids


QUESTION = """
import sys
from pgjobs.cli.common import confirm

try:
    print("answered", "yes" if confirm("Go on?") else "no", file=sys.stderr)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
"""


@pytest.mark.parametrize(("lines", "answer"), [
    (["y"], "yes"), (["YES"], "yes"), ([" yes "], "yes"), (["n"], "no"), (["No"], "no"),
    ([""], "no"), (["maybe", "y"], "yes"), (["oui", "", ], "no"),
])
def test_the_question_takes_yes_or_no_and_asks_again_after_anything_else(
        lines: list[str], answer: str) -> None:
    """pgjobs.cli.common.confirm on a terminal: y/yes and n/no in any case, Enter
    is no, and anything else asks again, as click.confirm did."""
    child = spawn("", command=[sys.executable, "-c", QUESTION])
    for line in lines:
        child.expect(r"Go on\? \[y/N\]: ")
        child.sendline(line)
        if line.strip().lower() not in ("y", "yes", "n", "no", ""):
            child.expect("Error: invalid input")
    said = ended(child)
    assert f"answered {answer}" in said, said
    assert child.exitstatus == 0, said


LINES = """
import sys, termios
from pgjobs.cli.common import confirm

if sys.argv[2] == "-icanon":  # as a program that left the terminal so (stty -icanon)
    attrs = termios.tcgetattr(0)
    attrs[3] &= ~termios.ICANON
    attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)
for _ in range(int(sys.argv[1])):
    print("answered", "yes" if confirm("Go on?") else "no", file=sys.stderr)
"""
"""Asks `Go on?` argv[1] times on a terminal in canonical mode, or out of it
(argv[2] == "-icanon": a read hands over whatever bytes have come)."""

EOT = b"\x04"  # Ctrl-D: in canonical mode, the end of input (or of a line's first part)


@pytest.mark.parametrize(("mode", "typed", "questions", "answers", "invalid"), [
    ("canonical", b"ye" + EOT + b"s\n", 1, ["yes"], 0),
    ("-icanon", b"n\ny\n", 2, ["no", "yes"], 0),
    ("canonical", b"n\ny\n", 2, ["no", "yes"], 0),
    ("-icanon", b"y\nsomething else\n", 1, ["yes"], 0),
    ("-icanon", b"n" * 4096 + b"y\n" + b"n\n", 1, ["no"], 1),
    ("canonical", b"y" + EOT + EOT, 1, ["no"], 0),
    ("canonical", EOT, 1, ["no"], 0),
    ("canonical", b"y\xff\n" + b"\xc3\n" + b"n\n", 1, ["no"], 2),
    ("-icanon", b"\xc3\xa9\n" + b"y\n", 1, ["yes"], 1),
], ids=["yes-in-two-reads", "pasted-n-then-y", "pasted-n-then-y-canonical",
        "pasted-y-then-more", "line-over-4096-bytes", "y-then-end-of-input",
        "end-of-input", "not-utf-8", "utf-8-then-y"])
def test_the_answer_is_the_first_whole_line(mode: str, typed: bytes, questions: int,
                                            answers: list[str], invalid: int) -> None:
    """The answer is the first line, whatever the reads hand over, and the lines
    after it are the next questions' (as input() reads them). The question took
    one os.read(fd, 4096) for its answer: out of canonical mode a pasted "n\\ny"
    came whole and was refused as invalid, the "y" lost, and the 4,097th byte
    of a long line of "n" then "y" answered yes; a "yes" handed over in two
    parts (Ctrl-D in mid-line) was two invalid answers; a "y" then Ctrl-D was a
    yes though Ctrl-D answers no. Bytes that are not UTF-8 are an invalid
    answer, asked again."""
    child = spawn("", str(questions), mode, command=[sys.executable, "-c", LINES],
                  codec_errors="replace")
    child.expect(r"Go on\? \[y/N\]: ")
    os.write(child.child_fd, typed)
    said = ended(child)
    assert "Traceback" not in said, said
    assert re.findall(r"answered (yes|no)", said) == answers, said
    assert said.count("Error: invalid input") == invalid, said
    assert child.exitstatus == 0, said


def test_every_question_goes_through_the_one_prompt() -> None:
    """A yes/no question asked with click.confirm or click.prompt directly turns
    Ctrl-D and Ctrl-C into "Aborted!" (exit 1), and its one blocking read can miss
    a Ctrl-C: every command asks through pgjobs.cli.common.confirm, which calls
    neither."""
    root = Path(__file__).resolve().parent.parent / "cli"
    direct = [f"{path.name}:{number}" for path in sorted(root.glob("*.py"))
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if any(call in line for call in ("click.confirm(", "click.prompt(",
                                               "click.termui.", "input("))]
    assert direct == [], direct
