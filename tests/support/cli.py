"""The command line as a test runs it: the entry point of this interpreter's
installation, and an environment with nothing left in it that steers a
pgjobs command (every PGJOBS_* variable and DATABASE_URL), so that a
developer's shell never changes what a test checks. Fifteen test files
built that environment, and eleven found the entry point, each its own way."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def pgjobs_command() -> list[str]:
    """The installed entry point, else the module."""
    # The entry point installed beside this interpreter (the venv's), never
    # another installation's found on PATH.
    exe = Path(sys.executable).parent / "pgjobs"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pgjobs.cli.main"]


def steers_pgjobs(name: str) -> bool:
    """A variable a pgjobs command reads: a PGJOBS_* setting or DATABASE_URL."""
    return name.startswith("PGJOBS_") or name == "DATABASE_URL"


def cli_env(**settings: str) -> dict[str, str]:
    """This process's environment for a `pgjobs` subprocess: without any
    variable that :func:`steers_pgjobs`, then ``settings`` (PGJOBS_DSN=...)."""
    env = {k: v for k, v in os.environ.items() if not steers_pgjobs(k)}
    env.update(settings)
    return env


def unset_ambient_settings(monkeypatch: pytest.MonkeyPatch, *also: str) -> None:
    """For an in-process command line (click's CliRunner): every variable
    that :func:`steers_pgjobs`, and each of ``also``, unset for the test."""
    for name in list(os.environ):
        if steers_pgjobs(name) or name in also:
            monkeypatch.delenv(name, raising=False)
