"""sql/schema.sql is the schema a fresh `pgjobs migrate` leaves, exactly.

The file is generated (`make schema`, which runs this test with
PGJOBS_WRITE_SCHEMA=1 so it is written from the same kind of throwaway
database it is checked against); this test fails when a migration or a
function file changed and the file was not regenerated.
"""

from __future__ import annotations

import difflib
import os

import psycopg

from pgjobs import schema


def _current(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return schema.dump(dsn, str(row[0]))


def test_schema_sql_is_current(dsn: str) -> None:
    current = _current(dsn)
    target = schema.path()
    if os.environ.get("PGJOBS_WRITE_SCHEMA") == "1":
        target.write_text(current)
    stored = target.read_text() if target.exists() else ""
    diff = "".join(difflib.unified_diff(stored.splitlines(True), current.splitlines(True),
                                        "sql/schema.sql", "a fresh migrate", n=1))
    assert not diff, f"sql/schema.sql is stale: run `make schema`\n{diff[:4000]}"


def test_schema_sql_names_every_table_and_function(dsn: str) -> None:
    """The file is the whole schema, not a prefix: every table and every routine of
    schema pgjobs appears in it (a dump cut short or filtered too eagerly fails)."""
    text = schema.path().read_text()
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'pgjobs'::regnamespace "
            "AND relkind IN ('r', 'p', 'v')").fetchall()]
        routines = [r[0] for r in conn.execute(
            "SELECT DISTINCT proname FROM pg_proc "
            "WHERE pronamespace = 'pgjobs'::regnamespace").fetchall()]
    assert tables and routines
    missing = [t for t in tables if f"pgjobs.{t} " not in text and f"pgjobs.{t}\n" not in text]
    missing += [r for r in routines if f"pgjobs.{r}(" not in text]
    assert not missing, missing


def test_normalize_drops_what_varies_by_machine() -> None:
    raw = ("--\n-- Dumped from database version 15.8\n-- Dumped by pg_dump version 15.8\n"
           "SET statement_timeout = 0;\n\\restrict abc\n"
           "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
           "CREATE TABLE pgjobs.t (a int);\nALTER TABLE pgjobs.t OWNER TO alice;\n"
           "GRANT ALL ON TABLE pgjobs.t TO alice_admin;\n")
    out = schema.normalize(raw, "alice")
    assert "15.8" not in out and "SET statement_timeout" not in out
    assert "restrict" not in out and "set_config" not in out and "\n\n\n" not in out
    assert "OWNER TO SUPERUSER;" in out and "TO alice_admin;" in out
    assert out.startswith(schema.HEADER)
    assert schema.normalize(raw, "bob") != out  # the superuser's name is what is replaced
