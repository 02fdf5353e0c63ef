"""A new user's walk of every `pgjobs` command (the click tree, walked, so a
command added later is covered) and of the docs' pasted lines.

Each command is tried as a newcomer tries it: `--help`, its name alone, a
valid invocation against a server that does not answer, and one against a
database where `pgjobs migrate` never ran. Whatever it answers, it answers
in the documented form (docs/command-line.md, "Errors and exit status"):
exit 0, 1, 2 or 3, and an error is one line on stderr, `error: ...` with a
hint, never a traceback. What tests/test_cli_usage.py (click's usage errors,
job ids), test_cli_job_ids.py (a job that does not exist) and
test_cli_new_user.py (DSN variants on a few commands) check is not repeated.

Found by this walk: `pgjobs worker` logged its start line (`worker ...:
concurrency 1, storage ...`) before it first reached the database, so a
wrong DSN or a database without pgjobs was two lines, a claim that the
worker runs and then the error; and two docs' shell blocks told a new user
to `pip install 'pgjobs-engine[...]'`, which outside the environment pgjobs
was installed into asks the package index for that name (pgjobs is
installed from a clone), and to run `psql -c` on psql's default database
rather than "$PGJOBS_DSN".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings
from tests.test_cli_usage import walk  # the one walk of the click tree

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


COMMANDS = {path: command for path, command in walk(main)}

# A valid invocation of each command: it gets past click and its own checks
# and reaches the database. A command added later must get one here.
VALID: dict[tuple[str, ...], list[str]] = {
    ("backfill",): ["t", "--scope", "1", "--filter", "{}", "--set", '{"b": 1}', "--yes"],
    ("cancel",): ["1"],
    ("delete",): ["t", "--scope", "1", "--filter", "{}", "--yes"],
    ("demo",): [],
    ("dev", "down"): [],
    ("dev", "status"): [],
    ("dev", "up"): [],
    ("doctor",): [],
    ("export",): ["t", "--scope", "1", "--detach"],
    ("import",): ["t", "s3://bucket/rows.csv", "--scope", "1", "--detach"],
    ("items",): ["1"],
    ("list",): [],
    ("migrate",): [],
    ("pause",): ["1"],
    ("prune",): ["--yes"],
    ("resume",): ["1"],
    ("retry",): ["1"],
    ("room",): [],
    ("rotate-channel-secret",): [],
    ("run",): ["--budget", "1s"],
    ("schedule",): [],
    ("status",): ["1"],
    ("ui",): ["--port", "18765"],
    ("unschedule",): [],
    ("url",): ["1"],
    ("watch",): ["1", "--timeout", "2"],
    ("worker",): ["--once"],
}
# They manage the embedded cluster only, and refuse the group's --dsn.
LOCAL = {("dev", "down"), ("dev", "status"), ("dev", "up")}
# A database without pgjobs is what they install it into.
INSTALLS = {("migrate",), ("demo",)}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    unset_ambient_settings(monkeypatch)
    # No embedded cluster of the developer's is found or started by a dev command.
    monkeypatch.setenv("PGJOBS_HOME", str(tmp_path / "home"))


def invoke(dsn: str | None, *args: str) -> Result:
    return CliRunner().invoke(main, [*(["--dsn", dsn] if dsn else []), *args])


def assert_documented_answer(result: Result, *codes: int) -> None:
    """Exit as documented, never a traceback; an error is one line with a hint."""
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), (result.exception, result.output)
    assert "Traceback" not in result.output
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    if result.exit_code in (1, 2):
        lines = [line for line in result.stderr.splitlines()
                 if not line.startswith("using the embedded cluster")]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
        assert re.search(r"\[[0-9A-Z]{5}\] \(hint: .+\)$", lines[0]), result.stderr


def test_every_command_has_a_valid_invocation() -> None:
    assert set(VALID) == set(COMMANDS), set(VALID) ^ set(COMMANDS)
    assert set(COMMANDS) >= LOCAL | INSTALLS


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_help_says_what_the_command_does(path: tuple[str, ...]) -> None:
    result = invoke(None, *path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ") and " ".join(path) in result.stdout, \
        result.stdout
    assert COMMANDS[path].get_short_help_str(200).strip(), path


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - {("dev", "up")}), ids=" ".join)
def test_the_name_alone_is_an_answer_not_a_traceback(path: tuple[str, ...]) -> None:
    # `dev up` alone is valid and starts a cluster: test_embedded.py runs it.
    result = invoke(None if path in LOCAL else UNREACHABLE, *path)
    assert_documented_answer(result, 0, 1, 2, 3)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_a_server_that_does_not_answer_is_one_line(path: tuple[str, ...]) -> None:
    result = invoke(UNREACHABLE, *path, *VALID[path])
    if path in LOCAL:  # the group's --dsn is refused before anything starts
        assert_documented_answer(result, 2)
        assert "--dsn" in result.stderr
    else:
        assert_documented_answer(result, 1)
        assert "[08001]" in result.stderr


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - LOCAL - INSTALLS), ids=" ".join)
def test_a_database_without_pgjobs_says_to_migrate(empty_dsn: str,
                                                    path: tuple[str, ...]) -> None:
    result = invoke(empty_dsn, *path, *VALID[path])
    assert_documented_answer(result, 1)
    assert "run `pgjobs migrate` here" in result.stderr, result.stderr


# --- the docs' pasted lines -----------------------------------------------------------

BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL = {"sh", "bash", "shell", "console", ""}  # a bare block holds commands too


def _shell_lines() -> list[tuple[str, str]]:
    lines = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in BLOCK.finditer(page.read_text()):
            if match.group(1) in SHELL:
                lines += [(page.name, line) for line in match.group(2).splitlines()]
    return lines


def test_the_docs_have_shell_lines_to_check() -> None:
    assert any("pip install" in line for _, line in _shell_lines())
    assert any(line.startswith("psql ") for _, line in _shell_lines())


@pytest.mark.parametrize("page, line", [
    (page, line) for page, line in _shell_lines() if re.search(r"\bpip install\b", line)])
def test_every_pip_install_a_page_shows_installs_from_the_clone(page: str, line: str) -> None:
    """pgjobs is installed from a clone (docs/quickstart.md): a name is looked
    up on the package index wherever pgjobs-engine is not already installed."""
    assert re.search(r"pip install (-e )?'\.\[", line), f"{page}: {line}"


@pytest.mark.parametrize("page, line", [
    (page, line) for page, line in _shell_lines() if re.match(r"psql\b", line)])
def test_every_psql_a_page_shows_goes_to_the_pgjobs_database(page: str, line: str) -> None:
    """SQL goes to `psql "$PGJOBS_DSN"` (docs/quickstart.md): psql alone
    connects to the user's default database, where pgjobs is not."""
    assert line.startswith('psql "$PGJOBS_DSN"'), f"{page}: {line}"
