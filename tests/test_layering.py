"""The package's layout reads like its architecture: imports run one way,
sql -> core (pgjobs/) -> poller/ -> ui/ -> cli/, and the core holds no dead
code (every SQL constant is sent, every connector helper is called).

Static checks over the source files: they catch a new upward import (the
demo importing the poller from the core, the connector importing the
embedded cluster) or a constant left behind when its caller went.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> (installed package, layer). A module may import its own layer
# and the ones below it, never one above.
LAYERS = {"pgjobs": ("pgjobs", 0), "poller": ("pgjobs.poller", 1), "ui": ("pgjobs.ui", 2),
          "cli": ("pgjobs.cli", 3)}
CALLERS = ("pgjobs", "poller", "ui", "cli", "tests", "bench", "docs")


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (len of the matched prefix, layer)
    for package, layer in LAYERS.values():
        if (module == package or module.startswith(package + ".")) and (
                best is None or len(package) > best[0]):
            best = (len(package), layer)
    return None if best is None else best[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "lazy_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            # pgjobs/lazy.py's stand-in imports its module on first use: an import.
            found.append((node.lineno, node.args[0].value))
    return found


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_imports_run_one_way(folder: str) -> None:
    own = LAYERS[folder][1]
    upward = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in _sources(folder) for line, module in _imports(path)
              if (_layer_of(module) or 0) > own]
    assert not upward, upward


def test_the_layer_rule_sees_each_spelling() -> None:
    """The checker itself: each way of naming an upper layer is seen."""
    assert _layer_of("pgjobs.poller.export") == 1 and _layer_of("pgjobs.poller") == 1
    assert _layer_of("pgjobs.cli.demo") == 3 and _layer_of("pgjobs.ui") == 2
    assert _layer_of("pgjobs.db") == 0 and _layer_of("pgjobs") == 0
    assert _layer_of("psycopg") is None and _layer_of("pgjobs_other") is None


def test_core_modules_import_no_cycle() -> None:
    """Within the core, no two modules import each other, directly or through others
    (db.py and embedded.py did: the DSN is now resolved in cli/dsn.py)."""
    modules = {p.stem for p in _sources("pgjobs")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for path in _sources("pgjobs"):
        for _, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "pgjobs" and len(parts) > 1 and parts[1] in modules:
                edges[path.stem].add(parts[1])
    edges = {m: {t for t in targets if t != m} for m, targets in edges.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt})
                   for nxt in edges[start] - seen)

    cycles = sorted(m for m in modules if reaches(m, m, set()))
    assert not cycles, cycles


def _uses(name: str, *, outside: Path) -> bool:
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for folder in CALLERS:
        for path in (ROOT / folder).rglob("*.py"):
            if path != outside and pattern.search(path.read_text()):
                return True
    return False


def test_every_sql_constant_is_sent() -> None:
    path = ROOT / "pgjobs" / "queries.py"
    names = [t.id for node in ast.parse(path.read_text()).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
    assert len(names) > 50
    dead = [name for name in names if not _uses(name, outside=path)]
    assert not dead, f"constants of pgjobs/queries.py nothing sends: {dead}"


def test_every_connector_helper_is_called() -> None:
    path = ROOT / "pgjobs" / "db.py"
    names = [node.name for node in ast.parse(path.read_text()).body
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             and not node.name.startswith("_")]
    assert "connect" in names
    dead = [name for name in names
            if not _uses(f"db.{name}", outside=path) and not _uses(f"import {name}", outside=path)]
    assert not dead, f"helpers of pgjobs/db.py nothing calls: {dead}"


def test_declared_dependencies_are_imported() -> None:
    """Every runtime dependency of pyproject.toml is imported somewhere in the package
    (psycopg-pool was declared and never imported)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    import_names = {"google-cloud-storage": "google.cloud",
                    "azure-storage-blob": "azure.storage.blob",
                    "yoyo-migrations": "yoyo"}
    unused = []
    for requirement in declared:
        dist = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        module = import_names.get(dist, dist.replace("-", "_"))
        pattern = re.compile(rf"^\s*(from|import)\s+{re.escape(module)}\b", re.M)
        if not any(pattern.search(p.read_text()) for folder in ("pgjobs", "poller", "ui", "cli")
                   for p in (ROOT / folder).glob("*.py")):
            unused.append(dist)
    assert not unused, unused


# Modules that may import psycopg, each with why. The connector (pgjobs/db.py)
# owns psycopg; the poller names its connection type and error class through it
# (db.Connection, db.Error), so no other module starts importing psycopg.
PSYCOPG_ALLOWED = {
    "pgjobs/db.py": "the connector: the one module that owns psycopg",
    "pgjobs/errors.py": "maps psycopg's exception classes to PgjobsError, in one place",
    "pgjobs/migrate.py": "hands yoyo a psycopg URL (psycopg.conninfo parses the DSN)",
}


def _imports_psycopg(path: Path) -> bool:
    return any(module == "psycopg" or module.startswith("psycopg.")
               for _, module in _imports(path))


def test_psycopg_is_imported_only_where_allowed() -> None:
    importing = {str(path.relative_to(ROOT)) for folder in LAYERS for path in _sources(folder)
                 if _imports_psycopg(path)}
    assert importing <= set(PSYCOPG_ALLOWED), sorted(importing - set(PSYCOPG_ALLOWED))
    # An exception whose module no longer imports psycopg is struck off the list.
    stale = set(PSYCOPG_ALLOWED) - importing
    assert not stale, f"no longer import psycopg, remove from PSYCOPG_ALLOWED: {sorted(stale)}"


def test_the_psycopg_rule_sees_each_spelling(tmp_path: Path) -> None:
    for source in ("import psycopg", "from psycopg import pq", "import psycopg.rows",
                   "from psycopg.conninfo import conninfo_to_dict",
                   "def f():\n    from psycopg import sql\n",
                   'pq = lazy_module("psycopg.pq")'):
        (tmp_path / "m.py").write_text(source)
        assert _imports_psycopg(tmp_path / "m.py"), source
    (tmp_path / "m.py").write_text("import psycopg_pool_other\nfrom pgjobs import db\n")
    assert not _imports_psycopg(tmp_path / "m.py")


def test_the_copy_loop_and_the_connection_loss_test_live_in_the_connector() -> None:
    """Issue 13 item 7, done so far: the exporter's COPY loop and the connection-loss
    test are the connector's (poller/export.py only names them)."""
    from pgjobs import db
    from pgjobs.poller import export

    assert export.copy_out is db.copy_out and export.connection_lost is db.connection_lost
    source = (ROOT / "poller" / "export.py").read_text()
    assert "def copy_out" not in source and "def connection_lost" not in source
    assert "pgconn" not in source and "select.select" not in source


def test_the_poller_connections_copy_in_and_errors_live_in_the_connector() -> None:
    """Issue 13 item 7, the rest: the importer's data connection and COPY FROM, the
    standby's identity check, and the type and error class the poller's connections
    and attempt loops name are the connector's (no poller module imports psycopg)."""
    import psycopg

    from pgjobs import db

    assert db.Error is psycopg.Error and db.Connection == psycopg.Connection[db.Row]
    assert callable(db.copy_in) and callable(db.connect_writer)
    assert callable(db.server_identity)
    for module in ("export", "importer", "parallel", "standby", "worker"):
        source = (ROOT / "poller" / f"{module}.py").read_text()
        assert not _imports_psycopg(ROOT / "poller" / f"{module}.py"), module
        assert "psycopg." not in source and "Jsonb" not in source, module
    importer = (ROOT / "poller" / "importer.py").read_text()
    assert "cur.copy(" not in importer and "db.copy_in(" in importer
    assert "db.connect_writer(" in importer
    standby = (ROOT / "poller" / "standby.py").read_text()
    assert "def identity" not in standby and "db.server_identity(" in standby
