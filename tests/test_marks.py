"""The ``nodb`` mark (tests/conftest.py) that ``make check`` runs: it follows
each test's fixtures, so every check that reads only the code is in it and
no test that needs the suite's cluster is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         "-p", "no:xdist", *args],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line.split("[")[0] for line in out.splitlines() if "::" in line}


def test_nodb_holds_the_source_checks_and_no_database_test() -> None:
    files = ["tests/test_writing_kind.py", "tests/test_engine_kinds.py",
             "tests/test_worker_verb_inputs.py", "tests/chaos/test_engine_crashes.py"]
    marked = collected("-m", "nodb", *files)
    rest = collected("-m", "not nodb", *files)
    # Source checks, in files that also hold database tests.
    assert "tests/test_writing_kind.py::test_no_source_lists_the_writing_kinds_itself" in marked
    assert "tests/test_writing_kind.py::test_the_scanner_catches_the_list" in marked
    assert ("tests/test_worker_verb_inputs.py::"
            "test_no_message_hard_codes_an_article_before_a_kind") in marked
    # A test on a database, and a chaos test (it starts servers of its own), are not.
    assert "tests/test_writing_kind.py::test_the_column_and_the_function_agree" in rest
    assert not any(t.startswith("tests/chaos/") for t in marked)
    assert not marked & rest
    assert any(t.startswith("tests/test_engine_kinds.py") for t in marked)
