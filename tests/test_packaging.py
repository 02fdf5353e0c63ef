"""The package installs quietly and ships everything (issue 15, "Packaging").

setuptools warns "Package would be ignored" for every folder under a
mapped package directory that holds files but is not declared (sql/functions
and sql/migrations were not): these checks read pyproject.toml the way
setuptools does and fail before an install would print that warning, or
build a wheel without the SQL that `pgjobs migrate` needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORED = {"__pycache__"}


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text()))


def source_dir(package: str, mapping: dict[str, str]) -> Path | None:
    """Where setuptools reads `package` from, through tool.setuptools.package-dir."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        base = ".".join(parts[:cut])
        if base in mapping:
            return ROOT / mapping[base] / Path(*parts[cut:])
    return None


def test_every_folder_with_files_is_a_declared_package(project: dict[str, Any]) -> None:
    setuptools = project["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    declared = set(setuptools["packages"])
    undeclared = []
    for top, folder in mapping.items():
        for path in [ROOT / folder, *(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            if IGNORED & set(path.relative_to(ROOT).parts):
                continue
            if not any(f.is_file() for f in path.iterdir()):
                continue
            package = ".".join([top, *path.relative_to(ROOT / folder).parts])
            if package not in declared:
                undeclared.append(package)
    assert not undeclared, f"declare in [tool.setuptools] packages: {undeclared}"
    for package in declared:
        where = source_dir(package, mapping)
        assert where is not None and where.is_dir(), package


def test_package_data_ships_every_sql_file(project: dict[str, Any]) -> None:
    setuptools = project["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    data: dict[str, list[str]] = setuptools["package-data"]
    shipped: set[Path] = set()
    for package, patterns in data.items():
        where = source_dir(package, mapping)
        assert where is not None, package
        for pattern in patterns:
            shipped |= set(where.glob(pattern))
    sql_files = set((ROOT / "sql").rglob("*.sql"))
    assert len(sql_files) > 100
    assert sql_files - shipped == set()


def test_the_distribution_name_is_ours(project: dict[str, Any]) -> None:
    """`pgjobs` on the public index is an unrelated project: the distribution has
    its own name, and every hint that says `pip install` names it."""
    name = project["project"]["name"]
    assert name == "pgjobs-engine"
    assert project["project"]["scripts"] == {"pgjobs": "pgjobs.cli.main:main"}
    wrong = []
    for folder in ("pgjobs", "cli", "poller", "ui", "sql/functions", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sql", ".md") and path.name not in ("cli.md", "sql.md"):
                for match in re.finditer(r"pip install\s+['\"]?pgjobs(\[|['\"\s]|$)",
                                         path.read_text(), re.M):
                    wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not wrong, wrong


def test_make_venv_installs_into_its_own_venv() -> None:
    """`$(BIN)/pip` runs whatever interpreter its shebang names (a copied venv keeps
    the old one): the Makefile calls pip as `$(BIN)/python -m pip`."""
    recipes = [line for line in (ROOT / "Makefile").read_text().splitlines()
               if line.startswith("\t")]
    assert not [line for line in recipes if "$(BIN)/pip " in line]
    assert any("$(BIN)/python -m pip install -q -e '.[dev]'" in line for line in recipes)
