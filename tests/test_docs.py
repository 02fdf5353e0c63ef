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


def test_readme_sql_example_runs(conn: Any) -> None:
    """The README's ten lines of SQL work as written (pg_cron aside: the test
    database is not pg_cron's, so schedule() is left out)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sql\n", 1)[1].split("```", 1)[0]
    conn.execute("""
        CREATE TABLE user_table_rows (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, table_id int NOT NULL,
            data jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON user_table_rows (table_id, id);
        INSERT INTO user_table_rows (table_id, data)
        SELECT 42, jsonb_build_object('status', 'archived', 'amount', i)
          FROM generate_series(1, 20) i;
        -- The README's excluded keys: rows the filter matches, which it keeps
        -- (a key of no row is refused: tests/test_trust_exclude_keys.py).
        INSERT INTO user_table_rows (id, table_id, data) OVERRIDING SYSTEM VALUE
        VALUES (1001, 42, '{"status": "archived", "amount": 1}'),
               (1003, 42, '{"status": "archived", "amount": 3}');
    """)
    statements = [s.strip() for s in block.split(";") if s.strip()]
    ran = 0
    for statement in statements:
        if "pgjobs.schedule()" in statement:
            continue
        conn.execute(statement)
        ran += 1
    assert ran == len(statements) - 1 >= 6
    # rows with amount < 10 (9 of 1..20), minus the excluded keys 1001 and 1003
    row = conn.execute(
        "SELECT pgjobs.visible_count('user_table_rows', '42')").fetchone()
    assert row == (13,)


def test_every_markdown_table_is_one_block() -> None:
    """A row of a table (a line that starts with `|`) continues a table or opens
    one with its header and `|---` rule: a paragraph dropped inside a table
    left its last rows as plain text (README's Layout lost its tests/, bench/,
    docs/ row so), and the page rendered without them. Code blocks aside."""
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines, fenced = path.read_text().splitlines(), False
        for i, line in enumerate(lines):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if fenced or not line.startswith("|"):
                continue
            continues = i > 0 and lines[i - 1].startswith("|")
            opens = i + 1 < len(lines) and lines[i + 1].replace(" ", "").startswith("|-")
            if not (continues or opens):
                broken.append(f"{path.relative_to(ROOT)}:{i + 1}: {line[:60]}")
    assert broken == [], "\n".join(broken)
