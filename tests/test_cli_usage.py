"""Issue 15, the command line: usage errors, --options and durations behave the
same in every command, before any connection is made.

- Click's own usage errors (unknown option, missing option, bad choice, bad
  number, unknown command, extra argument) print the documented one line
  ``error: MESSAGE (hint: see `pgjobs CMD --help`)`` and exit 2, for every
  command of the tree (walked, so a new command is covered too).
- ``--options`` is checked as parsed: anything but a JSON object is a usage
  error on every command that takes it (never a traceback, never ``dict()`` of
  a list of pairs).
- One duration parser: every duration option accepts the same spellings
  (``1 minute`` included) and refuses the same ones, naming the option; the
  seconds Python computes equal PostgreSQL's for the interval SQL is given.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.common import duration_seconds, parse_duration
from pgjobs.cli.main import main
from tests.support.cli import cli_env, pgjobs_command, unset_ambient_settings

Conn = psycopg.Connection[Any]

# Nothing listens here: a command that got past its arguments fails to connect
# (exit 1, "error: ..."), which tells "accepted" from "refused" (exit 2).
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))
    else:
        yield path, command


COMMANDS = [path for path, _ in walk(main)]


def assert_usage_line(result: Result, *fragments: str) -> None:
    """Exit 2 and exactly one line on stderr, in the documented form."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not result.stderr.startswith("Usage:"), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "(hint: see `pgjobs" in lines[0] and "--help`)" in lines[0], result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


# --- click's usage errors -----------------------------------------------------------


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_unknown_option_is_one_error_line_exit_2(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--no-such-option")
    assert_usage_line(result, "No such option",
                      f"see `pgjobs {' '.join(path)} --help`")


@pytest.mark.parametrize("path", [p for p, c in walk(main)
                                  if any(isinstance(x, click.Argument) and x.required
                                         for x in c.params)], ids=" ".join)
def test_missing_argument_is_one_error_line_exit_2(path: tuple[str, ...]) -> None:
    assert_usage_line(invoke(*path), "Missing argument")


@pytest.mark.parametrize("args, fragment", [
    (("delete", "t"), "Missing option '--scope'"),
    (("backfill", "t", "--scope", "1", "--filter", "{}"), "Missing option '--set'"),
    (("export", "t"), "Missing option '--scope'"),
    (("import", "t", "f.csv"), "Missing option '--scope'"),
    (("list", "--status", "nonsense"), "Invalid value for '--status'"),
    (("list", "--limit", "0"), "Invalid value for '--limit'"),
    (("status", "abc"), "Invalid value for 'JOB_ID'"),
    (("export", "t", "--scope", "1", "--format", "xml"), "Invalid value for '--format'"),
    (("worker", "--concurrency", "many"), "Invalid value for '--concurrency'"),
    (("no-such-command",), "No such command 'no-such-command'"),
    (("dev", "sideways"), "No such command 'sideways'"),
    (("cancel", "1", "2"), "Got unexpected extra argument (2)"),
    (("--no-such-global",), "No such option"),
])
def test_usage_errors_of_every_kind(args: tuple[str, ...], fragment: str) -> None:
    assert_usage_line(invoke(*args), fragment)


def test_a_usage_error_quoting_a_line_break_stays_one_line() -> None:
    assert_usage_line(invoke("list", "--status", "a\nb"), "Invalid value for '--status'")


def test_bare_groups_still_print_their_help() -> None:
    for args in ([], ["dev"]):
        result = CliRunner().invoke(main, args)
        assert "Usage:" in result.output and "Commands:" in result.output, result.output
        assert not result.output.startswith("error:")


def test_a_real_process_prints_the_same_line() -> None:
    env = cli_env()
    proc = subprocess.run([*pgjobs_command(), "--dsn", UNREACHABLE, "delete", "t", "--bogus"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: No such option '--bogus'. [22023] (hint: see `pgjobs delete --help`)"]


# --- --options ----------------------------------------------------------------------


OPTIONS_COMMANDS = {
    "delete": ("delete", "t", "--scope", "1", "--yes"),
    "backfill": ("backfill", "t", "--scope", "1", "--filter", "{}", "--set", '{"a": 1}',
                 "--yes"),
    "export": ("export", "t", "--scope", "1", "--detach"),
    "import": ("import", "t", "/tmp/x.csv", "--scope", "1", "--detach"),
}
NOT_OBJECTS = ["true", "false", "null", "1", "1.5", '"x"', "[]", '[["a", 1]]', '[["a", 1], '
               '["b", 2]]']


def test_every_command_with_options_is_covered() -> None:
    takes = {" ".join(p) for p, c in walk(main) if any(x.name == "extra" for x in c.params)}
    assert takes == set(OPTIONS_COMMANDS)


@pytest.mark.parametrize("command", sorted(OPTIONS_COMMANDS))
@pytest.mark.parametrize("value", NOT_OBJECTS)
def test_options_that_are_not_an_object_are_refused(command: str, value: str) -> None:
    result = invoke(*OPTIONS_COMMANDS[command], "--options", value)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and result.exception is None or isinstance(
        result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --options must be a JSON object"), (
        result.stderr)


@pytest.mark.parametrize("command", sorted(OPTIONS_COMMANDS))
def test_an_object_passes_the_options_check(command: str) -> None:
    # Past the check, the command tries to connect: exit 1, a connection error.
    result = invoke(*OPTIONS_COMMANDS[command], "--options", '{"priority": 1}')
    assert result.exit_code == 1, result.output
    assert "--options" not in result.stderr


# --- durations ----------------------------------------------------------------------


DURATION_OPTIONS = {
    "run --budget": ("run", "--budget"),
    "run --idle": ("run", "--loop", "--idle"),
    "prune --retention": ("prune", "--retention"),
    "schedule --retention": ("schedule", "--retention"),
    "watch --timeout": ("watch", "1", "--timeout"),
    "url --expires": ("url", "1", "--expires"),
    "worker --lease": ("worker", "--once", "--lease"),
    "worker --poll": ("worker", "--once", "--poll"),
    "worker --stale-after": ("worker", "--once", "--stale-after"),
    "worker --storage-retry": ("worker", "--once", "--storage-retry"),
    "worker --read-max-wait": ("worker", "--once", "--read-dsn", UNREACHABLE,
                               "--read-max-wait"),
    "worker --read-max-lag": ("worker", "--once", "--read-dsn", UNREACHABLE,
                              "--read-max-lag"),
    "export --read-max-wait": ("export", "items", "--scope", "1", "--read-dsn", UNREACHABLE,
                               "--read-max-wait"),
    "export --read-max-lag": ("export", "items", "--scope", "1", "--read-dsn", UNREACHABLE,
                              "--read-max-lag"),
}
GOOD = ["1 minute", "90s", "5m", "1h", "1.5", "2 minutes 30 seconds", "1 hour 30 minutes",
        "01:30", "250ms", "1d", "1 day"]
BAD = ["banana", "", "-5s", "5x", "1 fortnight", "1 minute ago", "5 m s"]
LIMITED = {"url --expires": 7 * 86400, "worker --lease": 86400, "worker --poll": 3600,
           "run --idle": 86400}


def test_every_duration_option_is_covered() -> None:
    """An option whose help gives an example duration is in DURATION_OPTIONS."""
    found = set()
    for path, command in walk(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.type == click.STRING and any(
                    f"--{word}" in param.opts for word in (
                        "budget", "idle", "retention", "timeout", "expires", "lease",
                        "poll", "stale-after", "storage-retry", "read-max-wait",
                        "read-max-lag")):
                found.add(f"{' '.join(path)} {param.opts[0]}")
    assert found - {"doctor --timeout"} <= set(DURATION_OPTIONS), found
    assert set(DURATION_OPTIONS) <= found


class FakeWorker:
    """Stands in for pgjobs.poller.worker.Worker: records what the command gave it
    (the seconds each duration option became) and finds no work."""

    seen: dict[str, Any] = {}

    def __init__(self, dsn: str, storage_uri: str, **kwargs: Any) -> None:
        FakeWorker.seen = dict(kwargs)
        self.name = "fake"

    def run(self) -> bool:
        return False


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> type[FakeWorker]:
    import pgjobs.cli.export
    import pgjobs.poller.worker

    monkeypatch.setattr(pgjobs.poller.worker, "Worker", FakeWorker)
    monkeypatch.setattr(pgjobs.cli.export, "check_read_dsn", lambda *args: None)
    FakeWorker.seen = {}
    return FakeWorker


@pytest.mark.parametrize("option", sorted(DURATION_OPTIONS))
@pytest.mark.parametrize("value", GOOD)
def test_every_duration_option_takes_every_spelling(option: str, value: str,
                                                    fake_worker: type[FakeWorker]) -> None:
    seconds = duration_seconds(value)
    if option in LIMITED and seconds > LIMITED[option]:
        pytest.skip("over the option's bound")
    if option in ("worker --read-max-lag", "export --read-max-lag", "worker --lease",
                  "url --expires") and seconds < 1:
        pytest.skip("under the option's bound")
    result = invoke(*DURATION_OPTIONS[option], value)
    assert "invalid" not in result.stderr, (option, value, result.stderr)
    if option.startswith("worker "):
        assert result.exit_code == 0, (option, value, result.output)
        seen = fake_worker.seen
        got = {"--lease": seen["lease"], "--poll": seen["poll"],
               "--stale-after": seen["stale_after"].total_seconds(),
               "--storage-retry": seen["storage_retry"],
               "--read-max-wait": getattr(seen["reads"], "max_wait", None),
               "--read-max-lag": getattr(seen["reads"], "max_lag", None)}[option.split()[1]]
        assert got == pytest.approx(seconds), (option, value, seen)
    else:
        assert result.exit_code == 1, (option, value, result.output)  # then: cannot connect


@pytest.mark.parametrize("option", sorted(DURATION_OPTIONS))
@pytest.mark.parametrize("value", BAD)
def test_every_duration_option_refuses_the_same_spellings(option: str, value: str) -> None:
    result = invoke(*DURATION_OPTIONS[option], value)
    assert result.exit_code == 2, (option, value, result.output)
    name = DURATION_OPTIONS[option][-1]
    assert result.stderr.splitlines() == [
        f"error: invalid {name} {value!r} [22023] (hint: use e.g. 30s, 5m, 24h, 7d or "
        "'1 hour 30 minutes')"], result.stderr


@pytest.mark.parametrize("option, value", [("url --expires", "8d"), ("url --expires", "0s"),
                                           ("worker --lease", "2 days"),
                                           ("worker --lease", "500ms"),
                                           ("worker --read-max-lag", "0.5"),
                                           ("worker --poll", "0"), ("worker --poll", "2h"),
                                           ("run --idle", "0s"), ("run --idle", "2d"),
                                           ("export --read-max-lag", "0.5")])
def test_bounded_duration_options_name_their_bounds(option: str, value: str) -> None:
    result = invoke(*DURATION_OPTIONS[option], value)
    assert result.exit_code == 2, result.output
    assert f"invalid {DURATION_OPTIONS[option][-1]} {value!r}: " in result.stderr


SPELLINGS = [*GOOD, "7d", "24h", "3 weeks", "1 mon", "2 months", "1 year", "1 y",
             "10 mins", "3 secs", "2 hrs", "500 milliseconds", "5 us", "1 day 02:00",
             "1:02:03.5", "0.25 hours", "1 week 2 days", "42"]


def test_python_seconds_equal_postgresql_seconds(conn: Conn) -> None:
    """What Python waits and what SQL is given are the same length of time."""
    for text in SPELLINGS:
        interval = parse_duration(text)
        pg = conn.execute("SELECT extract(epoch FROM %s::interval)::float8",
                          (interval,)).fetchone()
        assert pg is not None
        assert duration_seconds(text) == pytest.approx(pg[0]), (text, interval)


TOO_LONG = ["99999999999999d", "99999999999999999s", "99999999999:00", "1001 years",
            "13000 months", "52200 weeks"]


@pytest.mark.parametrize("option", sorted(DURATION_OPTIONS))
@pytest.mark.parametrize("value", TOO_LONG)
def test_every_duration_option_refuses_a_length_postgresql_cannot_hold(
        option: str, value: str) -> None:
    """`prune --retention 99999999999999d` reached the server and overflowed its
    interval (22015, no hint); `--budget` named its 1 day only because it was
    checked before. Every duration is at most 1000 years (the longest any
    option takes), refused here with the option's own bound where it has one."""
    result = invoke(*DURATION_OPTIONS[option], value)
    name = DURATION_OPTIONS[option][-1]
    assert_usage_line_of(result, f"error: invalid {name} {value!r}: ", "[22023]")
    bound = result.stderr.split(": ", 2)[2]
    assert bound.startswith(("at most", "from ")), result.stderr


def assert_usage_line_of(result: Result, *fragments: str) -> None:
    """Exit 2, one error line on stderr holding every fragment and a hint."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "(hint: " in lines[0], result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


def test_the_longest_duration_is_one_postgresql_holds(conn: Conn) -> None:
    for text in ("1000 years", "365250d", "12000 months"):
        interval = parse_duration(text)
        assert conn.execute("SELECT %s::interval IS NOT NULL", (interval,)).fetchone() == (True,)
    assert conn.execute("SELECT pgjobs.prune(%s::interval) ? 'deleted'",
                        (parse_duration("1000 years"),)).fetchone() == (True,)


# --- job ids ---------------------------------------------------------------------------


JOB_COMMANDS = sorted(path for path, command in walk(main)
                      if any(p.name == "job_id" for p in command.params))
NOT_JOB_IDS = ["-1", "0", "-0", "9223372036854775808", "99999999999999999999999", "1.5",
               "", "abc", "1_000", "\u0663", "\uff17", "0x10", "1e3"]


def test_the_job_commands_are_the_documented_ones() -> None:
    assert [p[0] for p in JOB_COMMANDS] == sorted(
        ["cancel", "items", "pause", "resume", "retry", "status", "url", "watch"])


@pytest.mark.parametrize("path", JOB_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("value", NOT_JOB_IDS)
def test_a_job_id_is_a_positive_bigint_in_ascii_digits(path: tuple[str, ...],
                                                       value: str) -> None:
    """Python's int() named job 3 for an Arabic-Indic three and job 1000 for
    1_000; past bigint `pgjobs retry` was refused as "function
    pgjobs.retry(numeric) does not exist" with the not-installed hint; `-1`
    was click's "No such option '-1'"."""
    result = invoke(*path, value)
    assert_usage_line(result, "is not a job id: a whole number from 1 to "
                      "9223372036854775807", "[22023]")


@pytest.mark.parametrize("path", JOB_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("value", ["1", " 7 ", "9223372036854775807"])
def test_a_job_id_in_range_is_taken(path: tuple[str, ...], value: str) -> None:
    result = invoke(*path, value)
    assert result.exit_code == 1, result.output  # then: cannot connect
    assert "is not a job id" not in result.stderr


# --- an empty value ------------------------------------------------------------------
# Click hands '' over and every text option read it as not given: `--dsn
# "$PROD_DSN"` with the variable unset went to DATABASE_URL or the embedded
# cluster, `dev down --home "$DIR"` stopped the default cluster, `export --to
# ""` wrote to --storage, `--read-dsn ""` read the primary. Walked, groups'
# own options (--dsn, --storage) included, so an option added later is covered.


def walk_all(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk_all(sub, (*path, name))


JUDGED_ELSEWHERE = {"--scope", "--exclude", "--filter", "--set", "--options", "--columns"}
"""Text options that an empty value reaches: a scope or key is a value of the
user's column (a text one may be ''), the database judges it; the JSON and
list parsers refuse '' in their own words, and so do the durations
(DURATION_OPTIONS)."""


def text_options(judged_elsewhere: bool) -> list[tuple[tuple[str, ...], str]]:
    found = []
    for path, command in walk_all(main):
        for param in command.params:
            if not (isinstance(param, click.Option) and not param.is_flag
                    and isinstance(param.type, (click.types.StringParamType, click.Path))):
                continue
            option = param.opts[-1]
            elsewhere = (option in JUDGED_ELSEWHERE
                         or f"{' '.join(path)} {param.opts[0]}" in DURATION_OPTIONS)
            if elsewhere == judged_elsewhere:
                found.append((path, option))
    return found


TEXT_OPTIONS = text_options(judged_elsewhere=False)


def _with_blank(path: tuple[str, ...], option: str, spelling: list[str]) -> list[str]:
    if path and isinstance(dict(walk_all(main))[path], click.Group):
        return [*path, *spelling, "list"]
    if not path:
        return [*spelling, "list"]
    return [*path, *spelling]


def test_the_walk_finds_the_text_options() -> None:
    found = {(" ".join(p), o) for p, o in TEXT_OPTIONS}
    for opt in ("--budget", "--retention", "--lease", "--expires", "--timeout"):
        assert opt not in {o for _, o in TEXT_OPTIONS}, opt  # durations: parsed alone
    for item in [("", "--dsn"), ("", "--storage"), ("export", "--to"),
                 ("export", "--read-dsn"), ("worker", "--read-dsn"), ("dev down", "--home"),
                 ("ui", "--host"), ("worker", "--metrics-host"), ("ui", "--token-file")]:
        assert item in found, item


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should an empty value get through, no cluster is started or stopped (`dev
    down --home ''` stopped the default one, `dev up --home ' '` made one in the
    current directory), no dashboard served, no worker run."""
    import pgjobs.embedded
    import pgjobs.poller.worker
    import pgjobs.ui.app

    def reached(*args: Any, **kwargs: Any) -> Any:
        raise click.UsageError("an empty value got through")

    for module, name in [(pgjobs.embedded, "up"), (pgjobs.embedded, "down"),
                         (pgjobs.embedded, "status"), (pgjobs.ui.app, "serve"),
                         (pgjobs.poller.worker, "Worker")]:
        monkeypatch.setattr(module, name, reached)


@pytest.mark.parametrize("path, option", TEXT_OPTIONS, ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else v)
@pytest.mark.parametrize("form", ["separate", "equals", "blank"])
@pytest.mark.usefixtures("nothing_starts")
def test_every_text_option_refuses_an_empty_value(path: tuple[str, ...], option: str,
                                                  form: str) -> None:
    spelling = {"separate": [option, ""], "equals": [f"{option}="],
                "blank": [option, "  "]}[form]
    args = _with_blank(path, option, spelling)
    if path == ("ui",) or path == ("worker",):
        args = ["--dsn", UNREACHABLE, *args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    where = " ".join(["pgjobs", *path])
    assert lines[0].startswith(f"error: {option} is empty"), lines[0]
    assert "[22023] (hint: " in lines[0] and f"see `{where} --help`" in lines[0], lines[0]


@pytest.mark.parametrize("path, option", [
    (p, o) for p, o in text_options(judged_elsewhere=True)
    # --scope, --exclude: a value of the user's column, SQL judges it; --columns
    # too (tests/test_cli_new_user.py); durations: DURATION_OPTIONS above.
    if o not in ("--scope", "--exclude", "--columns")
    and f"{' '.join(p)} {o}" not in DURATION_OPTIONS],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_text_options_judged_elsewhere_still_refuse_an_empty_value(path: tuple[str, ...],
                                                                   option: str) -> None:
    required = {"delete": ["t", "--scope", "1", "--yes"],
                "backfill": ["t", "--scope", "1", "--yes",
                             *([] if option == "--filter" else ["--filter", "{}"]),
                             *([] if option == "--set" else ["--set", '{"a": 1}'])],
                "export": ["t", "--scope", "1", "--detach"],
                "import": ["t", "/tmp/x.csv", "--scope", "1", "--detach"]}[path[0]]
    result = invoke(*path, *required, option, "")
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stderr.startswith("error: ") and "[22023]" in result.stderr, result.stderr


def test_an_empty_variable_is_still_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # `export PGJOBS_READ_DSN=` is the shell's way to unset: click reads it as
    # absent, and so does pgjobs (the command goes on to connect).
    monkeypatch.setenv("PGJOBS_STORAGE", "")
    result = invoke("list")
    assert result.exit_code == 1, result.output
    assert "connection failed" in result.stderr, result.stderr


# --- --dry-run with --wait or --run ----------------------------------------------------
# The preview printed and exit 0 said nothing of a job a script then waited for.

DRY_RUN_COMMANDS = {
    "delete": ("delete", "t", "--scope", "1"),
    "backfill": ("backfill", "t", "--scope", "1", "--filter", "{}", "--set", '{"a": 1}'),
}
FOLLOW_FLAGS = [("--wait", "wait", "PGJOBS_WAIT"), ("--run", "run_here", "PGJOBS_RUN_HERE")]


def test_every_command_with_dry_run_and_a_follow_flag_is_covered() -> None:
    takes = {" ".join(p) for p, c in walk(main)
             if {"dry_run"} <= {x.name for x in c.params}
             and {n for _, n, _ in FOLLOW_FLAGS} & {x.name for x in c.params}}
    assert takes == set(DRY_RUN_COMMANDS)
    for path, command in walk(main):
        if " ".join(path) in takes:
            assert {n for _, n, _ in FOLLOW_FLAGS} <= {x.name for x in command.params}


@pytest.mark.parametrize("command", sorted(DRY_RUN_COMMANDS))
@pytest.mark.parametrize("flag, name, variable", FOLLOW_FLAGS)
def test_dry_run_with_a_follow_flag_is_a_usage_error(command: str, flag: str, name: str,
                                                     variable: str) -> None:
    result = invoke(*DRY_RUN_COMMANDS[command], "--dry-run", flag)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: --dry-run submits nothing, so {flag} has no job to follow [22023] (hint: "), lines
    assert f"see `pgjobs {command} --help`" in lines[0]


@pytest.mark.parametrize("command", sorted(DRY_RUN_COMMANDS))
@pytest.mark.parametrize("flag, name, variable", FOLLOW_FLAGS)
def test_dry_run_still_wins_over_a_follow_variable(monkeypatch: pytest.MonkeyPatch,
                                                   command: str, flag: str, name: str,
                                                   variable: str) -> None:
    monkeypatch.setenv(variable, "1")
    result = invoke(*DRY_RUN_COMMANDS[command], "--dry-run")
    assert result.exit_code == 1 and "connection failed" in result.stderr, result.output
