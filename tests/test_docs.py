"""The docs match the code: docs/sql.md is generated from the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs.reference import render

ROOT = Path(__file__).resolve().parent.parent


def test_sql_reference_is_up_to_date(dsn: str) -> None:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        expected = render(conn)
    actual = (ROOT / "docs" / "sql.md").read_text()
    assert actual == expected, (
        "docs/sql.md is out of date: python -m pgjobs.reference --dsn DSN > docs/sql.md")


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line.split("#")[0].strip() for line in lines[:8] if line.startswith("make ")]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("make test")


def test_makefile_targets_document_themselves(tmp_path: Any) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "help"):
        assert any(line.startswith(f"{target}:") and "##" in line
                   for line in makefile.splitlines()), target
