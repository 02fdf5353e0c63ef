"""Issue 13, the command line's start-up: a subcommand's module is imported only
when that subcommand runs (or is looked up), so `pgjobs --help`, `pgjobs
--version` and the commands defined in cli/main.py do not import the poller,
the storage clients, the importer and the dashboard (~0.25 s of imports
before anything ran), and one-shot `pgjobs export` does not import the others.

`pgjobs --help` lists the lazy commands with a summary kept beside their
names in cli/main.py; these tests hold it to the command's own help, and the
listing to the one click makes from the imported commands."""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
from typing import Any

import click
import pytest
from click.testing import CliRunner

LAZY_MODULES = {"pgjobs.cli.control", "pgjobs.cli.dev", "pgjobs.cli.doctor",
                "pgjobs.cli.export", "pgjobs.cli.importing", "pgjobs.cli.items",
                "pgjobs.cli.jobs",
                "pgjobs.cli.ui", "pgjobs.poller.storage", "pgjobs.poller.export",
                "pgjobs.poller.importer", "pgjobs.poller.worker"}

IMPORTED = """
import sys
from pgjobs.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)))
"""


def imported(*args: str) -> set[str]:
    """The modules a fresh `pgjobs ARGS` process has imported when it ends (run
    outside the checkout: its egg-info beside the install is a second
    distribution to --version)."""
    done = subprocess.run([sys.executable, "-c", IMPORTED, *args], capture_output=True,
                          text=True, timeout=60, check=True, cwd=tempfile.gettempdir())
    return set(done.stdout.split("\n")[-2].split())


@pytest.mark.parametrize(("args", "loads"), [
    (["--help"], set()),
    (["--version"], set()),
    (["status", "--help"], set()),
    (["list", "--help"], set()),
    (["export", "--help"], {"pgjobs.cli.export", "pgjobs.poller.storage",
                            "pgjobs.poller.export"}),
    (["delete", "--help"], {"pgjobs.cli.jobs"}),
    (["dev", "--help"], {"pgjobs.cli.dev"}),
    (["pause", "--help"], {"pgjobs.cli.control"}),
], ids=["help", "version", "status", "list", "export", "delete", "dev", "pause"])
def test_a_command_imports_only_its_own_module(args: list[str], loads: set[str]) -> None:
    assert imported(*args) & LAZY_MODULES == loads


def _lazy() -> Any:
    from pgjobs.cli.common import LazyCommands
    from pgjobs.cli.main import main

    assert isinstance(main.commands, LazyCommands)
    return main.commands


LAZY = ["backfill", "delete", "dev", "doctor", "export", "import", "items", "pause", "resume",
        "retry", "ui", "url", "worker"]


def test_every_command_outside_main_is_lazy() -> None:
    assert sorted(_lazy()._lazy) == LAZY


@pytest.mark.parametrize("name", LAZY)
def test_the_listed_summary_is_the_commands_own(name: str) -> None:
    """The summary `pgjobs --help` shows without importing the command is the
    first paragraph of its help, as click would take it."""
    commands = _lazy()
    stand_in = commands.shown(name) if name not in commands._loaded else None
    command = commands[name]
    assert command.name == name and not command.hidden and command.short_help is None
    first = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert commands._lazy.get(name, (None, None, first))[2] == first
    if stand_in is not None:
        for limit in (20, 45, 74, 200):
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


@pytest.mark.parametrize("width", [60, 80, 200])
def test_the_help_lists_the_same_lines_as_the_imported_commands(width: int) -> None:
    """`pgjobs --help` from the stand-ins equals click's own listing of the
    imported commands, at every width."""
    from pgjobs.cli.main import main

    lazily = CliRunner().invoke(main, ["--help"], terminal_width=width).output
    loaded = {name: main.commands[name] for name in main.commands}
    eager = click.Group(name=main.name, commands=loaded, params=main.params,
                        help=main.help, context_settings=main.context_settings)
    assert lazily == CliRunner().invoke(eager, ["--help"], terminal_width=width).output


BROKEN = """
import importlib.abc
import sys

failure = {"key": KeyError("PGJOBS_SOME_SETTING"),
           "import": ImportError("No module named 'uvicorn'")}[sys.argv.pop(1)]


class Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pgjobs.cli.ui":
            raise failure
        return None


sys.meta_path.insert(0, Broken())
from pgjobs.cli.main import main
main(sys.argv[1:], prog_name="pgjobs")
"""


@pytest.mark.parametrize("failure", ["key", "import"])
def test_a_command_whose_module_cannot_load_says_so(failure: str) -> None:
    """Found by the review of h46: a KeyError raised while a lazy command's
    module was imported read as an unknown command (`error: No such command
    'ui'. Did you mean 'ui'?`, exit 2: Mapping.get swallows KeyError), and an
    ImportError printed a traceback. Both are one line naming the command,
    with a hint; the other commands still work."""
    done = subprocess.run([sys.executable, "-c", BROKEN, failure, "ui", "--help"],
                          capture_output=True, text=True, timeout=60,
                          cwd=tempfile.gettempdir())
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: cannot load `pgjobs ui`: "), done.stderr
    assert "No such command" not in done.stderr and "Traceback" not in done.stderr
    assert "(hint: " in done.stderr and len(done.stderr.strip().splitlines()) == 1
    other = subprocess.run([sys.executable, "-c", BROKEN, failure, "status", "--help"],
                           capture_output=True, text=True, timeout=60,
                           cwd=tempfile.gettempdir())
    assert other.returncode == 0 and other.stdout.startswith("Usage: pgjobs status")
