"""Command-line arguments checked before anything connects (review h5).

- A JSON argument that does not parse gets a hint showing an example of that
  argument: --options used to be shown a filter ({"status": "done"}), which
  the submit then refused as an unknown option.
- `pgjobs import` with an empty SOURCE (an unset shell variable) or a local
  directory: a usage error. '' became the working directory's file:// URI.
- Every duration of the standby reads is checked whether --read-dsn is given
  or not: a typo in PGJOBS_READ_MAX_WAIT went unseen until a standby was set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.common import a_job
from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args], env=env)


def _usage_error(result: Result) -> tuple[str, str]:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: ") and "Traceback" not in line
    message, _, hint = line.partition(" (hint: ")
    return message, hint


JSON_ARGUMENTS = [
    (["delete", "t", "--scope", "1", "--yes", "--filter"], "filter"),
    (["export", "t", "--scope", "1", "--detach", "--filter"], "filter"),
    (["backfill", "t", "--scope", "1", "--yes", "--filter", "{}", "--set"], "set"),
    (["backfill", "t", "--scope", "1", "--yes", "--set", "{\"a\": 1}", "--filter"], "filter"),
    (["delete", "t", "--scope", "1", "--yes", "--options"], "options"),
    (["backfill", "t", "--scope", "1", "--yes", "--filter", "{}", "--set", "{\"a\": 1}",
      "--options"], "options"),
    (["export", "t", "--scope", "1", "--detach", "--options"], "options"),
    (["import", "t", "s3://b/x.csv", "--scope", "1", "--detach", "--options"], "options"),
]


@pytest.mark.parametrize("bad", ["{bad", "{'a': 1}", "{\"a\": }", "status=done"])
@pytest.mark.parametrize(("args", "what"), JSON_ARGUMENTS,
                         ids=[f"{a[0]}-{w}" for a, w in JSON_ARGUMENTS])
def test_a_json_argument_that_does_not_parse_shows_an_example_of_itself(
        args: list[str], what: str, bad: str) -> None:
    message, hint = _usage_error(invoke(*args, bad))
    assert f"{what} is not valid JSON" in message
    example = hint.split(f"--{what} ", 1)[1].rsplit(")", 1)[0].strip("'")
    value = json.loads(example)
    assert isinstance(value, dict) and value
    if what == "options":  # an option the command takes, not a filter
        assert "status" not in value


@pytest.mark.parametrize("source", ["", " ", "\t"])
def test_import_refuses_an_empty_source(source: str) -> None:
    for extra in ([], ["--detach"]):
        message, hint = _usage_error(invoke("import", "t", source, "--scope", "1", *extra))
        assert "SOURCE is empty" in message and "s3://" in hint


def test_import_refuses_a_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    for source in (".", "exports", "exports/", str(tmp_path)):
        message, hint = _usage_error(invoke("import", "t", source, "--scope", "1", "--detach"))
        assert "is a directory" in message and "one file" in hint


def test_import_takes_a_local_file_it_cannot_see_yet(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A file path is not checked for existence (a worker elsewhere reads it):
    past the checks, the command fails to connect (exit 1)."""
    monkeypatch.chdir(tmp_path)
    result = invoke("import", "t", "rows.csv", "--scope", "1", "--detach")
    assert result.exit_code == 1 and "connection failed" in result.output


@pytest.mark.parametrize("command", [["worker", "--once"], ["export", "t", "--scope", "1"]])
@pytest.mark.parametrize(("option", "value"), [
    ("--read-max-wait", "abc"), ("--read-max-wait", "-1s"),
    ("--read-max-lag", "soon"), ("--read-max-lag", "0"),
])
def test_standby_durations_are_checked_without_read_dsn(command: list[str], option: str,
                                                        value: str) -> None:
    message, _ = _usage_error(invoke(*command, option, value))
    assert option in message
    env_var = "PGJOBS_" + option[2:].upper().replace("-", "_")
    message, _ = _usage_error(invoke(*command, env={env_var: value}))
    assert option in message


@pytest.mark.parametrize(("kind", "words"), [
    ("export", "an export job"), ("import", "an import job"), ("delete", "a delete job"),
    ("backfill", "a backfill job"), ("thumbnail", "a thumbnail job"),
    ("upload", "an upload job"),
])
def test_a_job_puts_the_article_sql_puts(kind: str, words: str) -> None:
    assert a_job(kind) == words


@pytest.mark.parametrize("command", [["worker", "--once"], ["export", "t", "--scope", "1"]])
@pytest.mark.parametrize("read_dsn", ["garbage", "host=standby port", "host='unterminated",
                                      "postgresql://u@standby/db?no_such_parameter=1",
                                      "postgresql://u@[::1/db", "postgres://%zz@h/db"])
def test_a_read_dsn_that_does_not_parse_is_a_usage_error(command: list[str],
                                                          read_dsn: str) -> None:
    """It was warned about as a standby that "cannot be reached now", the worker
    ran on (exit 0) and every export then waited --read-max-wait for it or read
    from the primary: no retry reaches a DSN libpq cannot parse."""
    for result in (invoke(*command, "--read-dsn", read_dsn),
                   invoke(*command, env={"PGJOBS_READ_DSN": read_dsn})):
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert lines == [line for line in lines if line.startswith("error: --read-dsn: ")]
        assert len(lines) == 1 and "invalid DSN" in lines[0], result.stderr
        assert "(hint: fix --read-dsn (PGJOBS_READ_DSN)" in lines[0]
        assert "connection failed" not in result.output  # refused before connecting
