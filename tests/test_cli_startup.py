"""Issue 13, the command line's start-up as a class: no command's `--help`,
nor `pgjobs --version`, imports a client library, and a file:// export in
the worker imports none of the other stores' clients nor Parquet's.

`pgjobs --help` imported psycopg (~0.11 s of its ~0.19 s over a bare
interpreter) through the connector and the error mapping, and `pgjobs
export --help` obstore through the storage module, though neither connects
nor stores anything. The clients are now imported on first use
(pgjobs/lazy.py). These tests walk the click group, nested groups included,
so a command added later is held to it too, and import every module of the
core, the poller and the CLI, so a client imported at the top of a module
is caught even before a command imports it. Nothing here measures time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest

from tests.support import job, make_rows_target, seed
from tests.support.cli import cli_env

Conn = psycopg.Connection[Any]

CLIENTS = ("psycopg", "psycopg_pool", "botocore", "boto3", "obstore", "pyarrow", "duckdb",
           "starlette", "uvicorn", "sse_starlette", "prometheus_client", "opentelemetry",
           "yoyo", "rich", "azure", "google")
"""Top-level packages a command that only prints its help must not import."""

NETWORK = ("http", "ssl", "_ssl", "email")
"""The standard library's HTTP client and TLS (~15 ms): only an https:// import
source and a TLS failure's wording use them, so no command's help imports them
(`--version` reads package metadata, which parses with ``email``)."""

FOREIGN_TO_FILE = tuple(c for c in CLIENTS if c not in ("psycopg", "obstore", "opentelemetry"))
"""What a file:// CSV or JSON-lines export has no use for: the other stores'
clients, Parquet's writer and reader, the dashboard's, metrics' and the
migration tool's. psycopg runs it; obstore may serve a store; opentelemetry-api,
when installed, is how the worker learns whether a tracer provider was set
(docs/observability.md: its spans)."""

RUN = """
import json
import sys

from pgjobs.cli.main import main

try:
    main(sys.argv[1:], prog_name="pgjobs")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run(*args: str, env: dict[str, str] | None = None) -> tuple[Any, set[str]]:
    """A fresh `pgjobs ARGS` process: its exit code and the top-level packages
    it has imported when it ends (run outside the checkout, as the installed
    command is)."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          timeout=120, check=True, cwd=tempfile.gettempdir(), env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], {name.split(".")[0] for name in report["modules"]}


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group under `pgjobs`, nested groups walked (`dev up`)."""
    from pgjobs.cli.main import main

    found: list[tuple[str, ...]] = []

    def walk(group: click.Group, path: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, (path, name)
            found.append((*path, name))
            if isinstance(command, click.Group):
                walk(command, (*path, name))

    walk(main, ())
    return found


COMMANDS = _command_paths()


def test_the_walk_finds_every_command_and_nested_ones() -> None:
    """The parametrization below is only as good as the walk."""
    from pgjobs.cli.main import main

    top = {path[0] for path in COMMANDS}
    assert top == set(main.list_commands(click.Context(main)))
    assert {"export", "worker", "import", "ui", "status", "migrate"} <= top
    assert [path for path in COMMANDS if len(path) > 1], COMMANDS  # `dev up` and so on


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",)],
                         ids=["help", "h", "version"])
def test_the_top_level_imports_no_client(args: tuple[str, ...]) -> None:
    code, imported = run(*args)
    assert code == 0
    assert sorted(imported & set(CLIENTS)) == []


VERSION_WITHOUT_SCAN = """
import importlib.metadata


def scan():
    raise AssertionError("packages_distributions(): read every installed distribution")


importlib.metadata.packages_distributions = scan
from pgjobs.cli.main import main

main(["--version"], prog_name="pgjobs")
"""


def test_the_version_is_read_from_its_own_distribution() -> None:
    """`pgjobs --version` named the import package (pgjobs), not the
    distribution (pgjobs-engine): click then mapped it through
    importlib.metadata.packages_distributions(), which reads the file list
    of every installed distribution (~0.09 s in the dev virtualenv)."""
    done = subprocess.run([sys.executable, "-c", VERSION_WITHOUT_SCAN], capture_output=True,
                          text=True, timeout=60, cwd=tempfile.gettempdir())
    from importlib.metadata import version

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"pgjobs, version {version('pgjobs-engine')}\n"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_a_commands_help_imports_no_client(path: tuple[str, ...]) -> None:
    code, imported = run(*path, "--help")
    assert code == 0
    assert sorted(imported & set(CLIENTS)) == []
    assert sorted(imported & set(NETWORK)) == []


PACKAGES = ("pgjobs", "pgjobs.poller", "pgjobs.cli")
"""The core, the poller and the CLI (the dashboard, pgjobs.ui, is starlette's)."""

IMPORT_EACH = """
import importlib
import json
import pkgutil
import sys

clients = set(sys.argv[1].split(","))
brought: dict[str, list[str]] = {}
for package in sys.argv[2:]:
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__,
                                     package + "."):
        if info.ispkg:
            continue
        before = {name.split(".")[0] for name in sys.modules}
        importlib.import_module(info.name)
        new = {name.split(".")[0] for name in sys.modules} - before
        if new & clients:
            brought[info.name] = sorted(new & clients)
        brought.setdefault("", []).append(info.name)
print(json.dumps(brought))
"""


def test_importing_any_module_imports_no_client() -> None:
    """Each module of the core, the poller and the CLI, imported in turn in one
    process, brings in no client: whatever a command imports at start-up,
    it imports none (each client is imported where it is first used)."""
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH, ",".join(CLIENTS), *PACKAGES],
                          capture_output=True, text=True, timeout=120, check=True,
                          cwd=tempfile.gettempdir())
    brought = json.loads(done.stdout.strip().splitlines()[-1])
    modules = brought.pop("")
    assert {"pgjobs.db", "pgjobs.errors", "pgjobs.poller.storage", "pgjobs.poller.export",
            "pgjobs.poller.worker", "pgjobs.cli.main", "pgjobs.cli.export"} <= set(modules)
    assert brought == {}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_export_in_the_worker_imports_no_other_client(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str) -> None:
    """`pgjobs worker --once` runs a CSV or JSON-lines export to file:// to its
    end without importing botocore, Google's or Azure's client, pyarrow, the
    dashboard's or metrics' packages (no --metrics-port), yoyo or rich."""
    seed(conn, make_rows_target(conn), 300)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tmp_path}/",))
    row = conn.execute("SELECT pgjobs.submit_export('user_table_rows'::regclass, '1', "
                       "'{}'::jsonb, %s::jsonb)", (json.dumps({"format": fmt}),)).fetchone()
    assert row is not None
    env = cli_env()
    code, imported = run("--dsn", dsn, "--storage", f"file://{tmp_path}/out", "worker",
                         "--once", env=env)
    assert code in (0, None)
    done = job(conn, int(row[0]))
    assert done["status"] == "succeeded", done
    assert Path(done["result"]["uri"].removeprefix("file://")).stat().st_size > 0
    assert "psycopg" in imported  # it did run the export, in this process
    assert sorted(imported & set(FOREIGN_TO_FILE)) == []
