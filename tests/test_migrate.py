"""`pgjobs migrate`: idempotent, safe when run twice at once; every function
has a file and every file a function; plpgsql_check reports nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from pgjobs.migrate import function_files, migrate
from tests.support import migrate_at_once

Conn = psycopg.Connection[Any]


def test_migrate_twice_in_a_row(empty_dsn: str) -> None:
    first = migrate(empty_dsn)
    assert first["migrations_applied"]
    second = migrate(empty_dsn)
    assert second["migrations_applied"] == []
    assert second["functions_applied"] == first["functions_applied"]


def test_migrate_twice_at_the_same_moment(empty_dsn: str) -> None:
    results, failures = migrate_at_once(empty_dsn)
    assert failures == []
    applied = sorted(len(r["migrations_applied"]) for r in results)
    assert applied[0] == 0 and applied[1] >= 1
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_roles_exist_and_are_nologin(conn: Conn) -> None:
    rows = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles "
                             "WHERE rolname IN ('pgjobs_admin', 'pgjobs_client')").fetchall())
    assert rows == {"pgjobs_admin": False, "pgjobs_client": False}


def routines_in_database(conn: Conn) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace")}


def test_every_function_has_a_file_and_every_file_a_function(conn: Conn) -> None:
    files = {p.stem for p in function_files() if p.stem != "zz_grants"}
    assert routines_in_database(conn) == files
    for path in function_files():
        if path.stem == "zz_grants":
            continue
        text = path.read_text()
        defined = set(re.findall(
            r"CREATE OR REPLACE (?:FUNCTION|PROCEDURE) pgjobs\.(\w+)\s*\(", text))
        assert defined == {path.stem}, f"{path.name} must define exactly pgjobs.{path.stem}"


def test_every_public_routine_is_documented(conn: Conn) -> None:
    undocumented = [r[0] for r in conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.proname !~ '^_'
           AND obj_description(p.oid, 'pg_proc') IS NULL""")]
    assert undocumented == []


def test_plpgsql_check_reports_nothing(conn: Conn) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    findings = conn.execute("""
        SELECT p.oid::regprocedure::text, c.lineno, c.level, c.message
          FROM pg_proc p
          JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
          CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, fatal_errors => false) c
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND p.prorettype <> 'trigger'::regtype""").fetchall()
    assert findings == []


def test_nothing_in_pgjobs_is_executable_by_public(conn: Conn) -> None:
    public = [r[0] for r in conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND has_function_privilege('public', p.oid, 'EXECUTE')""")]
    assert public == []


def test_sql_ships_inside_the_package() -> None:
    from importlib import resources

    root = Path(str(resources.files("pgjobs.sql")))
    assert (root / "migrations" / "0001.initial.sql").is_file()
    assert (root / "functions" / "zz_grants.sql").is_file()


def test_fresh_database_factory_is_isolated(fresh_database: Callable[[], str]) -> None:
    a, b = fresh_database(), fresh_database()
    with psycopg.connect(a, autocommit=True) as ca:
        ca.execute("CREATE TABLE only_here (x int)")
    with psycopg.connect(b) as cb:
        assert cb.execute("SELECT to_regclass('only_here')").fetchone() == (None,)


def test_every_raised_error_carries_a_sqlstate_and_a_hint() -> None:
    """Each RAISE EXCEPTION in sql/functions names a standard SQLSTATE and tells the
    user what to do next (the fuzz suite found filter errors without a hint)."""
    missing = []
    for path in function_files():
        text = path.read_text()
        for match in re.finditer(r"RAISE EXCEPTION.*?;[ \t]*\n", text, re.S):
            statement = match.group(0)
            if "ERRCODE" not in statement or "HINT" not in statement:
                line = text[: match.start()].count("\n") + 1
                missing.append(f"{path.name}:{line}")
    assert missing == []
