"""Every option of every mode of a command is either used or refused.

An option given on the command line that the chosen mode ignores is a usage
error (exit 2, one line naming the option and the mode, a hint), never
dropped without a word: `delete --no-progress` without --wait printed the job id
as ever, `export --detach --no-progress`, `delete --dry-run --yes` (nothing is
asked), `watch --quiet` without a job (every event prints), and the group's
`--storage` before a command that never touches storage (`pgjobs --storage
s3://b/p delete ...`, `url`, `status`).

The walk is over click's own parameters of each command, in each of its modes,
so a new option must be classified here (SAMPLES) before the suite passes, and
a mode that starts ignoring an option is caught. No database: the DSN points
where nothing listens, so a command that got past its checks fails to connect
(08001), which is how "used" reads here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.common import NO_DATABASE_COMMANDS, STORAGE_COMMANDS
from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
SOURCE = "@SOURCE@"  # replaced by a readable file of the test's tmp_path

# The command line of each command, its modes (the options that choose them) and
# a sample value for every other option it has.
COMMANDS: dict[str, dict[str, list[str]]] = {
    "delete": {"base": ["delete", "items", "--scope", "1"]},
    "backfill": {"base": ["backfill", "items", "--scope", "1", "--filter", "{}",
                          "--set", '{"a": 1}']},
    "export": {"base": ["export", "items", "--scope", "1"]},
    "import": {"base": ["import", "items", SOURCE, "--scope", "1"]},
    "watch": {"base": ["watch"]},
    "run": {"base": ["run"]},
    "worker": {"base": ["worker", "--once"]},
}
MODES: dict[str, dict[str, list[str]]] = {
    "delete": {"submit": [], "wait": ["--wait"], "run": ["--run"], "dry-run": ["--dry-run"]},
    "backfill": {"submit": [], "wait": ["--wait"], "run": ["--run"],
                 "dry-run": ["--dry-run"]},
    "export": {"here": [], "detach": ["--detach"]},
    "import": {"here": [], "detach": ["--detach"]},
    "watch": {"all": [], "one job": ["7"]},
    "run": {"once": [], "loop": ["--loop"]},
    "worker": {"no metrics": []},  # with --metrics-port it would serve: not walked
}
MODE_PARAMS = {"wait", "run_here", "dry_run", "detach", "job_id", "loop", "metrics_port",
               "once", "target", "source", "scope", "filter_", "set_"}
SAMPLES: dict[str, list[str]] = {
    "priority": ["--priority", "5"], "on_conflict": ["--on-conflict", "reject"],
    "page_size": ["--page-size", "100"], "extra": ["--options", "{}"],
    "as_json": ["--json"], "yes": ["--yes"], "quiet": ["--quiet"], "quiet_short": ["-q"],
    "no_progress": ["--no-progress"], "exclude": ["--exclude", "k"],
    "fmt": ["--format", "jsonl"], "columns": ["--columns", "id"], "gzip": ["--gzip"],
    "to": ["--to", "@TO@"], "parallel": ["--parallel", "2"],
    "read_dsn": ["--read-dsn", UNREACHABLE], "read_max_wait": ["--read-max-wait", "5s"],
    "read_max_lag": ["--read-max-lag", "5s"], "read_fallback": ["--read-fallback", "wait"],
    "on_duplicate": ["--on-duplicate", "skip"], "max_rejects": ["--max-rejects", "3"],
    "timeout": ["--timeout", "1s"], "budget": ["--budget", "5s"], "idle": ["--idle", "2s"],
    "runners": ["--runners", "2"], "concurrency": ["--concurrency", "2"],
    "lease": ["--lease", "60s"], "poll": ["--poll", "1s"], "stale_after": ["--stale-after", "2h"],
    "max_chunk_rows": ["--max-chunk-rows", "500"], "max_part_size": ["--max-part-size", "2048"],
    "storage_retry": ["--storage-retry", "1m"], "metrics_host": ["--metrics-host", "127.0.0.1"],
    "log_format": ["--log-format", "json"],
}
# What each mode ignores (by parameter name; "quiet_short" is -q): refused.
REFUSED: dict[tuple[str, str], set[str]] = {
    ("delete", "submit"): {"no_progress"},
    ("delete", "dry-run"): {"quiet", "quiet_short", "no_progress", "yes"},
    ("backfill", "submit"): {"no_progress"},
    ("backfill", "dry-run"): {"quiet", "quiet_short", "no_progress", "yes"},
    ("export", "here"): {"read_max_wait", "read_max_lag", "read_fallback"},
    ("export", "detach"): {"no_progress", "read_dsn", "read_max_wait", "read_max_lag",
                           "read_fallback"},
    ("import", "detach"): {"no_progress"},
    ("watch", "all"): {"quiet", "quiet_short", "no_progress"},
    ("run", "once"): {"idle"},
    ("worker", "no metrics"): {"metrics_host", "read_max_wait", "read_max_lag",
                               "read_fallback"},
}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    unset_ambient_settings(monkeypatch, "DEMO_ROWS")
    # Where a run here writes, from the environment (which never counts as given).
    monkeypatch.setenv("PGJOBS_STORAGE", (tmp_path / "store").as_uri())


def _options(command: click.Command) -> list[str]:
    names = [p.name or "" for p in command.params
             if isinstance(p, click.Option) and p.name not in MODE_PARAMS]
    return [*names, *(["quiet_short"] if "quiet" in names else [])]


def _cases() -> Iterator[tuple[str, str, str]]:
    for name, modes in MODES.items():
        for option in _options(main.commands[name]):
            for mode in modes:
                yield name, mode, option


CASES = list(_cases())


def test_every_option_of_every_walked_command_has_a_sample() -> None:
    """A new option of a command with modes is classified here (used or refused
    in each mode) before the suite passes."""
    for name in MODES:
        missing = [o for o in _options(main.commands[name]) if o not in SAMPLES]
        assert not missing, f"{name}: give {missing} a sample and say in REFUSED where " \
                            "a mode ignores it"


def _invoke(args: list[str], tmp_path: Path) -> Result:
    source = tmp_path / "in.csv"
    source.write_text("key,data\n1,{}\n")
    to = (tmp_path / "out").as_uri()
    args = [str(source) if a == SOURCE else to if a == "@TO@" else a for a in args]
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])


@pytest.mark.parametrize(("command", "mode", "option"), CASES,
                         ids=[f"{c} [{m}] {o}" for c, m, o in CASES])
def test_an_option_is_used_or_refused_in_each_mode(command: str, mode: str, option: str,
                                                   tmp_path: Path) -> None:
    result = _invoke([*COMMANDS[command]["base"], *MODES[command][mode], *SAMPLES[option]],
                     tmp_path)
    assert "Traceback" not in result.output, result.output
    if option in REFUSED.get((command, mode), set()):
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        long_name = SAMPLES["quiet" if option == "quiet_short" else option][0]
        assert lines[0].startswith(f"error: {long_name} would be ignored"), lines[0]
        assert "[22023]" in lines[0] and "(hint: " in lines[0], lines[0]
        assert result.stdout == "", result.stdout
    else:
        assert "would be ignored" not in result.stderr, result.stderr
        assert result.exit_code == 1 and "[08001]" in result.stderr, result.output


@pytest.mark.parametrize(("variable", "args"), [
    ("PGJOBS_NO_PROGRESS", ["delete", "items", "--scope", "1"]),
    ("PGJOBS_NO_PROGRESS", ["export", "items", "--scope", "1", "--detach"]),
    ("PGJOBS_QUIET", ["watch"]),
    ("PGJOBS_QUIET", ["delete", "items", "--scope", "1", "--dry-run"]),
])
def test_the_same_option_from_the_environment_gives_way(
        variable: str, args: list[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """One environment serves every command: PGJOBS_NO_PROGRESS set for the
    waiting ones is not refused where nothing is followed."""
    monkeypatch.setenv(variable, "1")
    result = _invoke(args, tmp_path)
    assert "would be ignored" not in result.stderr, result.stderr
    assert result.exit_code == 1 and "[08001]" in result.stderr, result.output


def _leaves(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _leaves(command.commands[name], (*path, name))
    else:
        yield path


# Every command (walked) but dev up/down, which would start or stop a cluster if
# the refusal were missing; `dev status` stands for the dev group.
NOT_STORAGE = [path for path in _leaves(main)
               if path[0] not in STORAGE_COMMANDS and path not in (("dev", "up"),
                                                                   ("dev", "down"))]
_OPERANDS = {"job_id": "7", "target": "items"}


@pytest.mark.parametrize("path", NOT_STORAGE, ids=[" ".join(p) for p in NOT_STORAGE])
def test_storage_on_a_command_that_never_touches_storage_is_refused(
        path: tuple[str, ...], tmp_path: Path) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    operands = [_OPERANDS.get(p.name or "", "x") for p in command.params
                if isinstance(p, click.Argument) and p.required]
    args = COMMANDS[path[0]]["base"] if path[0] in COMMANDS else [*path, *operands]
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, "--storage",
                                       (tmp_path / "s").as_uri(), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --storage would be ignored by `pgjobs {' '.join(path)}`")
    assert "(hint: drop --storage" in lines[0], lines[0]


def test_storage_commands_are_the_ones_that_read_it() -> None:
    """STORAGE_COMMANDS against the code: the commands whose module reads the
    group's storage (obj.storage)."""
    root = Path(__file__).resolve().parent.parent / "cli"
    readers = {path.stem for path in root.glob("*.py") if "obj.storage" in path.read_text()}
    assert readers == {"export", "importing", "main", "ui"}, readers
    assert {"export", "import", "worker", "demo", "ui"} == STORAGE_COMMANDS


def test_the_short_spelling_is_named_by_its_long_name(tmp_path: Path) -> None:
    result = _invoke(["delete", "items", "--scope", "1", "--dry-run", "-y"], tmp_path)
    assert result.stderr.startswith("error: --yes would be ignored with --dry-run"), \
        result.stderr


# --- the group's --dsn, before a command that reads no database ------------------------

# `dev status` stands for the dev group (up and down would start or stop a cluster if
# the refusal were missing).
NO_DATABASE = [("dev", "status")]


def test_no_database_commands_are_the_dev_group() -> None:
    assert {"dev"} == NO_DATABASE_COMMANDS


@pytest.mark.parametrize("path", NO_DATABASE, ids=[" ".join(p) for p in NO_DATABASE])
def test_dsn_on_a_command_that_never_connects_is_refused(
        path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`pgjobs --dsn URL dev up` started (or stopped, or showed) the embedded
    cluster as if --dsn were not there: the user meant the server it names."""
    monkeypatch.setenv("PGJOBS_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["--dsn", UNREACHABLE, *path])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --dsn would be ignored by `pgjobs {' '.join(path)}`")
    assert "[22023]" in lines[0] and "(hint: drop --dsn" in lines[0], lines[0]
    assert not (tmp_path / "home").exists()


def test_dsn_from_the_environment_gives_way_to_dev(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PGJOBS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PGJOBS_DSN", UNREACHABLE)
    result = CliRunner().invoke(main, ["dev", "status"])
    assert "would be ignored" not in result.stderr, result.output
    assert result.exit_code == 3, result.output  # not running


# --- where nothing runs, or the value is not the command line's --------------------------


@pytest.mark.parametrize("args", [
    ["--storage", "s3://b/p", "status", "--help"],
    ["--storage", "s3://b/p", "--help"],
    ["--storage", "s3://b/p", "--version"],
    ["--dsn", UNREACHABLE, "dev", "status", "--help"],
    ["delete", "items", "--scope", "1", "--dry-run", "--yes", "--quiet", "--help"],
    ["watch", "--no-progress", "--help"],
], ids=lambda args: " ".join(args))
def test_help_and_version_never_refuse(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "would be ignored" not in result.output


@pytest.mark.parametrize(("default_map", "args"), [
    ({"storage": "s3://b/p"}, ["status", "7"]),
    ({"dsn": UNREACHABLE}, ["dev", "status"]),
    ({"delete": {"no_progress": True}}, ["delete", "items", "--scope", "1"]),
    ({"delete": {"yes": True, "quiet": True}}, ["delete", "items", "--scope", "1",
                                                "--dry-run"]),
    ({"watch": {"quiet": True}}, ["watch"]),
], ids=["storage", "dsn", "no-progress", "dry-run", "watch"])
def test_a_configured_default_gives_way(default_map: dict[str, object], args: list[str],
                                        monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    """A value from click's default_map (a configuration file's) is no choice made
    on this command line: never refused as ignored."""
    monkeypatch.setenv("PGJOBS_HOME", str(tmp_path / "home"))
    if "dsn" not in default_map:
        monkeypatch.setenv("PGJOBS_DSN", UNREACHABLE)
    result = CliRunner().invoke(main, args, default_map=default_map)
    assert "would be ignored" not in result.stderr, result.output
    assert result.exit_code in (1, 3), result.output
