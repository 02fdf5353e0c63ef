"""Issue 9, item 17: bytes that are not UTF-8 in any argument, option value or
PGJOBS_* setting (a scope, an exclusion, a table name, a DSN...) are a usage
error: one line on stderr, exit 2, no traceback, before any command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pgjobs.cli.main import main

BAD = os.fsdecode(b"ac\xffme\xfe")  # what Python makes of such bytes: lone surrogates


def _commands() -> Iterator[tuple[list[str], click.Command]]:
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield [name, sub_name], sub
        else:
            yield [name], command


def _argvs() -> Iterator[list[str]]:
    """For every command: the bad text as a positional operand and as each option's
    value; and as the value of each global option."""
    for path, command in _commands():
        yield [*path, BAD]
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                yield [*path, param.opts[0], BAD]
        args = [p for p in command.params if isinstance(p, click.Argument)]
        if args:
            yield [*path, *(["public.t"] * (len(args) - 1)), BAD]
    for option in ("--dsn", "--storage"):
        yield [option, BAD, "list"]
        yield [f"{option}={BAD}", "list"]


def _one_line_exit_2(code: object, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "is not valid UTF-8" in lines[0], err


@pytest.mark.parametrize("argv", list(_argvs()), ids=lambda a: " ".join(a).replace(BAD, "BAD"))
def test_every_command_and_option_refuses_undecodable_bytes(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(argv, prog_name="pgjobs")
    _one_line_exit_2(exc.value.code, capsys.readouterr().err)


@pytest.mark.parametrize("name", ["PGJOBS_DSN", "DATABASE_URL", "PGJOBS_STORAGE",
                                  "PGJOBS_SCOPE", "PGJOBS_FILTER", "PGJOBS_EXCLUDE",
                                  "PGJOBS_RETENTION"])
def test_settings_from_the_environment_refuse_undecodable_bytes(
        name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(name, BAD)
    with pytest.raises(SystemExit) as exc:
        main.main(["list"], prog_name="pgjobs")
    err = capsys.readouterr().err
    _one_line_exit_2(exc.value.code, err)
    assert name in err


def _process(argv: list[bytes], env: dict[bytes, bytes] | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "pgjobs"
    command = [os.fsencode(str(exe))] if exe.exists() else [
        os.fsencode(sys.executable), b"-m", b"pgjobs.cli.main"]
    environment = {k: v for k, v in os.environb.items()
                   if not (k.startswith(b"PGJOBS_") or k == b"DATABASE_URL")}
    environment.update(env or {})
    return subprocess.run([*command, *argv], env=environment, capture_output=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("argv", "env"), [
    ([b"delete", b"public.items", b"--scope", b"ac\xffme"], {}),
    ([b"delete", b"public.items", b"--scope", b"1", b"--exclude", b"\xc3\x28"], {}),
    ([b"backfill", b"public.it\xe9ms", b"--scope", b"1", b"--set", b"{}"], {}),
    ([b"export", b"items", b"--scope", b"\xed\xa0\x80"], {}),  # an encoded surrogate
    ([b"--dsn", b"host=/tmp dbname=\xff", b"list"], {}),
    ([b"status", b"1"], {b"PGJOBS_DSN": b"postgresql:///\xfe"}),
    ([b"list"], {b"DATABASE_URL": b"postgresql:///\x80"}),
    ([b"export", b"items"], {b"PGJOBS_SCOPE": b"\xff"}),
    ([b"doctor", b"\xff"], {}),
])
def test_as_a_process_one_line_and_exit_2(argv: list[bytes], env: dict[bytes, bytes]) -> None:
    done = _process(argv, env)
    err = done.stderr.decode("utf-8", "replace")
    _one_line_exit_2(done.returncode, err)
    assert done.stdout == b""


def test_valid_utf8_is_not_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["list", "--status", "z\u00fcrich \u4e2d\u6587 \U0001f600"], prog_name="pgjobs")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "not valid UTF-8" not in err  # click's own usage error
