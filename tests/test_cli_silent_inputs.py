"""Nothing a user sets is dropped without a word.

- An environment variable that holds only blanks (`PGJOBS_DSN="  "`) is a
  usage error naming it, for every variable the command line reads: every
  option's ``envvar`` of every command (walked, so a new one is covered), and
  the ones read outside click (DATABASE_URL, PGJOBS_HOME). PGJOBS_DSN='  '
  connected to libpq's defaults; PGJOBS_JSON and PGJOBS_DETACH read it as
  false. An empty variable (`export PGJOBS_DSN=`) still counts as unset.
- An option given on the command line that the chosen mode ignores is a usage
  error naming both (`export --detach --read-dsn`: the worker reads with its
  own --read-dsn), while the same option from the environment gives way.

No database: the DSN points where nothing listens, so a command that got past
its checks fails to connect (08001).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch, "DEMO_ROWS")


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


def _variables() -> list[tuple[tuple[str, ...], str]]:
    """(a command that reads it, variable) for every option's envvar of the tree."""
    found: dict[str, tuple[str, ...]] = {}
    for path, command in walk(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                names = [param.envvar] if isinstance(param.envvar, str) else param.envvar
                for name in names:
                    # A group's own option: run one of its subcommands.
                    where = path if not isinstance(command, click.Group) else (
                        *path, "status")
                    found.setdefault(name, where)
    return sorted((where, name) for name, where in found.items())


VARIABLES = _variables()
OUTSIDE_CLICK = ["DATABASE_URL", "PGJOBS_HOME"]  # read by cli/dsn.py, pgjobs/embedded.py


def test_the_walk_finds_the_variables_of_every_kind_of_option() -> None:
    names = {name for _, name in VARIABLES}
    for name in ("PGJOBS_DSN", "PGJOBS_STORAGE", "PGJOBS_HOME", "PGJOBS_JSON",
                 "PGJOBS_DETACH", "PGJOBS_READ_DSN", "PGJOBS_LIMIT", "PGJOBS_BUDGET",
                 "DEMO_ROWS"):
        assert name in names, name


def test_every_variable_read_outside_click_is_tested() -> None:
    """A new os.environ read of a PGJOBS_* variable (or DATABASE_URL) in cli/ or
    pgjobs/ must be an option's envvar or listed in OUTSIDE_CLICK, whose blank
    values are tested below."""
    options = {name for _, name in VARIABLES}
    read = set()
    for path in [*ROOT.glob("cli/*.py"), *ROOT.glob("pgjobs/*.py")]:
        text = path.read_text()
        read |= set(re.findall(r"environ(?:\.get)?[\[(]\s*[\"']((?:PGJOBS_\w+)|DATABASE_URL)",
                               text))
        for group in re.findall(r"for \w+ in \(([^)]*)\):\s*\n\s*\w+ = os\.environ", text):
            read |= set(re.findall(r"[\"'](\w+)[\"']", group))
    assert read, "the scan found no environment read: the pattern is stale"
    assert read - options <= set(OUTSIDE_CLICK), read - options - set(OUTSIDE_CLICK)


def _refused_naming(result: Result, name: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: environment variable {name} is blank"), lines[0]
    assert "[22023]" in lines[0] and f"(hint: give {name} a" in lines[0], lines[0]


@pytest.mark.parametrize("blank", ["  ", "\t", " \n "], ids=["spaces", "tab", "newline"])
@pytest.mark.parametrize(("path", "name"), VARIABLES, ids=[n for _, n in VARIABLES])
def test_a_blank_variable_is_refused_naming_it(path: tuple[str, ...], name: str, blank: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, blank)
    _refused_naming(CliRunner().invoke(main, list(path)), name)


@pytest.mark.parametrize("name", OUTSIDE_CLICK)
def test_a_blank_variable_read_outside_click_is_refused(name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL (no --dsn, no PGJOBS_DSN) and PGJOBS_HOME (where the embedded
    cluster would be) are read by every command that looks for its database."""
    monkeypatch.setenv(name, "   ")
    _refused_naming(CliRunner().invoke(main, ["list"]), name)


@pytest.mark.parametrize("name", ["PGJOBS_DSN", "DATABASE_URL", "PGJOBS_STORAGE", "PGJOBS_JSON"])
def test_an_empty_variable_still_counts_as_unset(name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "")
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "list"])
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output


# --- options a mode ignores --------------------------------------------------------

IGNORED = [
    # (the command line, the option refused, the option or mode that makes it moot)
    (["export", "items", "--scope", "1", "--detach", "--read-dsn", UNREACHABLE],
     "--read-dsn", "--detach"),
    (["export", "items", "--scope", "1", "--detach", "--read-max-wait", "5s"],
     "--read-max-wait", "--detach"),
    (["export", "items", "--scope", "1", "--detach", "--read-max-lag", "5s"],
     "--read-max-lag", "--detach"),
    (["export", "items", "--scope", "1", "--detach", "--read-fallback", "wait"],
     "--read-fallback", "--detach"),
    (["--storage", "file:///tmp/x", "export", "items", "--scope", "1", "--detach"],
     "--storage", "--detach"),
    (["--storage", "file:///tmp/x", "export", "items", "--scope", "1", "--detach", "--to",
      "file:///tmp/y"], "--storage", "--detach"),
    (["--storage", "file:///tmp/x", "import", "items", "/tmp/in.csv", "--scope", "1",
      "--detach"], "--storage", "--detach"),
    (["export", "items", "--scope", "1", "--read-fallback", "wait"],
     "--read-fallback", "--read-dsn"),
    (["export", "items", "--scope", "1", "--read-max-wait", "5s"],
     "--read-max-wait", "--read-dsn"),
    (["worker", "--once", "--read-max-lag", "5s"], "--read-max-lag", "--read-dsn"),
    (["worker", "--once", "--read-fallback", "primary"], "--read-fallback", "--read-dsn"),
    (["worker", "--once", "--metrics-host", "0.0.0.0"], "--metrics-host", "--metrics-port"),
    (["run", "--idle", "5s"], "--idle", "--loop"),
    (["ui", "--token", "a-token-long-enough-1234", "--token-file", "/etc/hostname"],
     "--token-file", "--token"),
]


@pytest.mark.parametrize(("args", "option", "because"), IGNORED,
                         ids=[f"{a[0] if a[0] != '--storage' else a[2]} {o} {b}"
                              for a, o, b in IGNORED])
def test_an_option_the_mode_ignores_is_a_usage_error(args: list[str], option: str,
                                                     because: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {option} would be ignored"), lines[0]
    assert because in lines[0] and "[22023]" in lines[0] and "(hint: " in lines[0], lines[0]
    assert "submitted" not in result.output


def test_detach_hint_sends_read_dsn_to_the_worker() -> None:
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "export", "items", "--scope", "1",
                                       "--detach", "--read-dsn", UNREACHABLE])
    assert "pgjobs worker --read-dsn" in result.stderr, result.stderr


@pytest.mark.parametrize(("variable", "value", "args"), [
    ("PGJOBS_READ_DSN", UNREACHABLE, ["export", "items", "--scope", "1", "--detach"]),
    ("PGJOBS_READ_FALLBACK", "wait", ["export", "items", "--scope", "1", "--detach"]),
    ("PGJOBS_STORAGE", "file:///tmp/x", ["export", "items", "--scope", "1", "--detach"]),
    ("PGJOBS_STORAGE", "file:///tmp/x", ["import", "items", "/tmp/in.csv", "--scope", "1",
                                         "--detach"]),
    ("PGJOBS_READ_FALLBACK", "wait", ["export", "items", "--scope", "1", "--to",
                                      "file:///tmp/y"]),
    ("PGJOBS_METRICS_HOST", "0.0.0.0", ["worker", "--once"]),
    ("PGJOBS_IDLE", "5s", ["run"]),
])
def test_the_same_option_from_the_environment_gives_way(
        variable: str, value: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One environment serves the worker and the submitting commands: a setting
    there for one mode is not refused in the other."""
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output


# --- a blank variable that is not read ------------------------------------------------


def _option_of(name: str) -> tuple[click.Command, click.Option]:
    """The command (a group for a group's own option) and the option reading ``name``."""
    for _, command in walk(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar and name in (
                    [param.envvar] if isinstance(param.envvar, str) else param.envvar):
                return command, param
    raise AssertionError(name)


@pytest.mark.parametrize(("path", "name"), VARIABLES, ids=[n for _, n in VARIABLES])
def test_help_works_whatever_the_environment(path: tuple[str, ...], name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`--help` reads no option's value: the command a blank variable was refused
    for still shows its help (the user looking up what the variable is for)."""
    monkeypatch.setenv(name, "  ")
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and "is blank" not in result.output


@pytest.mark.parametrize(("path", "name"), VARIABLES, ids=[n for _, n in VARIABLES])
def test_an_option_on_the_command_line_overrides_a_blank_variable(
        path: tuple[str, ...], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every option's variable is judged only when it would be read: given on the
    command line (each of its spellings, `--opt=value` too), the option wins and
    its variable is never looked at."""
    from pgjobs.cli.common import blank_variable

    monkeypatch.setenv(name, "  ")
    command, option = _option_of(name)
    assert blank_variable(command) == name  # the check is live
    for opt in (*option.opts, *option.secondary_opts):
        given = [opt] if option.is_flag else [opt, "x"]
        assert blank_variable(command, given=["--", *given]) == name  # operands, not options
        assert blank_variable(command, given=given) is None, opt
        if not option.is_flag and opt.startswith("--"):
            assert blank_variable(command, given=[f"{opt}=x"]) is None, opt


def test_dsn_on_the_command_line_overrides_a_blank_pgjobs_dsn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Repro: a wrapper's PGJOBS_DSN='  ' left in the environment refused
    `pgjobs --dsn URL list`, whose --dsn is what is used."""
    monkeypatch.setenv("PGJOBS_DSN", "  ")
    monkeypatch.setenv("PGJOBS_JSON", " ")
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "list", "--json"])
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output


def test_only_the_variable_click_reads_of_a_list_is_judged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An option read from the first of several variables that is set (DEMO_ROWS
    after PGJOBS_DEMO_ROWS): a blank one after the one read is never read."""
    from pgjobs.cli.common import blank_variable

    command, _ = _option_of("DEMO_ROWS")
    monkeypatch.setenv("DEMO_ROWS", "  ")
    monkeypatch.setenv("PGJOBS_DEMO_ROWS", "10")
    assert blank_variable(command) is None
    monkeypatch.delenv("PGJOBS_DEMO_ROWS")
    assert blank_variable(command) == "DEMO_ROWS"


def test_a_token_file_on_the_command_line_beats_the_token_of_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Repro: PGJOBS_UI_TOKEN set for every run, `pgjobs ui --token-file F` was
    refused as ignored: the command line wins over the environment (here the
    file is read, and its short token refused, which proves it was)."""
    monkeypatch.setenv("PGJOBS_UI_TOKEN", "a-token-long-enough-1234")
    (tmp_path / "token").write_text("short\n")
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "ui", "--token-file",
                                       str(tmp_path / "token")])
    assert result.exit_code == 2, result.output
    assert "too short" in result.stderr and "would be ignored" not in result.stderr
