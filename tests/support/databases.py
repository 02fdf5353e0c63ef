"""Addressing the databases of a test server: tests/conftest.py makes one per
test with these; tests that make more (migrate, upgrade, CLI) use them too."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def with_database(url: str, dbname: str) -> str:
    """The same server URL naming another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def admin_execute(url: str, *statements: str) -> None:
    """Run statements one by one in autocommit (CREATE/DROP DATABASE)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]
