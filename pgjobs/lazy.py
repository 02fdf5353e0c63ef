"""A module imported on its first use, for the client libraries (issue 13).

``pgjobs --help``, every ``pgjobs COMMAND --help`` and ``pgjobs --version``
import the CLI, which imports the core and the poller: a client library
imported at the top of one of those modules (psycopg alone was ~0.11 s) was
paid by every command, even one that never connects.
tests/test_cli_startup.py walks every command and holds them to it.

A module that uses a client imports it for the type checker and binds a
stand-in at run time::

    if TYPE_CHECKING:
        import psycopg
    else:
        psycopg = lazy_module("psycopg")

The stand-in imports the module when an attribute is first read (a call, an
``except psycopg.Error``, an ``isinstance``) and forwards every read to it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute read."""
    return _LazyModule(name)
