"""A database without pgjobs (or with an older one): the same error whichever
command meets it first.

`pgjobs list` and `status` reached the view pgjobs.jobs first (42P01, which
mapped to the usage error of a misspelt table: exit 2), `doctor`, `run`,
`worker` and `export` a function or the schema (3F000: exit 1), for the one
condition "run `pgjobs migrate` here". Now every missing pgjobs object is
:class:`pgjobs.errors.NotInstalled`: one line, the migrate hint, exit 1, as a
database that does not exist exits 1 (docs/command-line.md). `watch` of every
job only LISTENed, which succeeds in any database: it waited forever; it
checks first now.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.cli import cli_env, pgjobs_command

COMMANDS = [("list",), ("status", "1"), ("cancel", "1"), ("pause", "1"), ("retry", "1"),
            ("doctor",), ("run",), ("prune",), ("watch",), ("watch", "1"),
            ("delete", "t", "--scope", "1", "--filter", "{}", "--yes")]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a[:2]) for a in COMMANDS])
def test_a_database_without_pgjobs_is_one_error_exit_1(empty_dsn: str,
                                                       args: tuple[str, ...]) -> None:
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=empty_dsn)
    done = subprocess.run([*command, *args], env=env, text=True, capture_output=True,
                          timeout=120, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "run `pgjobs migrate` here" in lines[0], done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)
