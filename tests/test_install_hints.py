"""One spelling of how to install an optional extra (parquet, observe, ui).

pgjobs is installed from a clone (docs/quickstart.md): the docs said
`pip install -e '.[ui]'` there, while `pgjobs demo`'s last line and the
hints of `pgjobs ui`, `pgjobs worker --metrics-port` and a worker without
pyarrow said `pip install 'pgjobs-engine[...]'`, which outside the
environment pgjobs is installed in asks the package index for a name pgjobs
is not published under. Every hint now comes from
:func:`pgjobs.errors.install_hint`, which names the extra, both ways (the
clone's line and the installed distribution's) and the packages it brings;
the code and the docs are searched here for any other spelling.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pgjobs import errors
from pgjobs.errors import PgjobsError, install_hint

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ("pgjobs", "cli", "poller", "ui")  # the folders of the pgjobs package (pyproject)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A way of saying how to install something: pip or pipx, or the distribution's
# extra spelt out (rich's markup escapes its bracket: pgjobs-engine\[ui]).
SAYS_INSTALL = re.compile(r"\bpipx?\s+install\b|pgjobs-engine\\?\[")
EXTRAS = ("parquet", "observe", "ui")


def _declared_extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _code_files() -> list[Path]:
    return sorted(p for folder in PACKAGE for p in (ROOT / folder).rglob("*.py"))


def test_the_extras_named_are_the_declared_ones() -> None:
    assert set(EXTRAS) <= set(_declared_extras())


@pytest.mark.parametrize("extra", EXTRAS)
def test_the_hint_names_the_extra_both_ways_and_its_packages(extra: str) -> None:
    hint = install_hint(extra)
    assert f"pip install -e '.[{extra}]' in the pgjobs clone" in hint
    assert f"pip install 'pgjobs-engine[{extra}]' in the environment pgjobs-engine" in hint
    for requirement in _declared_extras()[extra]:
        assert requirement.replace(" ", "") in hint, (requirement, hint)


def test_no_code_spells_an_install_hint_but_the_helper() -> None:
    """Every hint, help text and docstring of the package: only install_hint
    says `pip install` or names the distribution's extra."""
    helper = inspect.getsource(errors.install_hint)
    found = []
    for path in _code_files():
        text = path.read_text()
        if path == ROOT / "pgjobs" / "errors.py":
            text = text.replace(helper, "")
        found += [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: "
                  f"{m.group(0)}" for m in SAYS_INSTALL.finditer(text)]
    assert not found, found


def test_the_docs_install_an_extra_only_from_the_clone() -> None:
    """Every `pip install` / `pipx install` of the README and docs (prose too,
    a line break inside the command included) installs the clone with
    declared extras; the distribution's extra is never spelt there."""
    wrong, seen = [], 0
    declared = _declared_extras()
    for page in DOCS:
        text = page.read_text()
        for match in SAYS_INSTALL.finditer(text):
            after = text[match.start():match.start() + 80]
            said = re.match(r"pip\s+install\s+-e\s+'\.\[([a-z,]+)\]'|"
                            r"pipx\s+install\s+'\.\[([a-z,]+)\]'", after)
            if said is None:
                # the command named, not run: "a bare `pip install`", "never `pip install pgjobs`"
                if not re.match(r"pip\s+install(\s+pgjobs)?`", after):
                    wrong.append(f"{page.name}: {after.splitlines()[0]}")
                continue
            seen += 1
            names = (said.group(1) or said.group(2)).split(",")
            wrong += [f"{page.name}: no extra {n!r}" for n in names if n not in declared]
    assert seen >= 5 and not wrong, wrong


def _ui_hint(monkeypatch: pytest.MonkeyPatch) -> str:
    import importlib.util

    from pgjobs.ui import require_extra

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(PgjobsError) as raised:
        require_extra()
    return str(raised.value.hint)


def _observe_hint(monkeypatch: pytest.MonkeyPatch) -> str:
    from pgjobs.poller import observe

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(PgjobsError) as raised:
        observe.start_metrics(9)
    return str(raised.value.hint)


def _parquet_hint(monkeypatch: pytest.MonkeyPatch) -> str:
    from pgjobs.poller import parquet

    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(PgjobsError) as raised:
        parquet.load_pyarrow()
    return str(raised.value.hint)


@pytest.mark.parametrize("extra, hint_of", [
    ("ui", _ui_hint), ("observe", _observe_hint), ("parquet", _parquet_hint)])
def test_every_missing_extra_is_hinted_by_the_helper(
        extra: str, hint_of: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hint_of(monkeypatch).startswith(install_hint(extra))


def test_the_demo_points_at_the_dashboard_with_the_helper() -> None:
    """The demo's last line, printed through rich (whose markup would eat
    '[ui]'): the helper's hint, whole."""
    from rich.console import Console

    from pgjobs.cli import demo

    console = Console(record=True, width=1000)
    console.print(demo._next_line())
    assert f"({install_hint('ui')})" in console.export_text()
