"""`pgjobs migrate` installs pgjobs in a SQL_ASCII database from a session in
the database's own encoding (no PGCLIENTENCODING set): psycopg reads text as
bytes there, and a name read back and sent again must stay text. Every
pgjobs session (db.connect, yoyo's through migrate.yoyo_uri, the data and
dashboard connections) asks for UTF-8 (db.CLIENT_ENCODING)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgjobs.migrate import migrate
from tests.support.databases import admin_execute, database_name, with_database


@pytest.fixture
def ascii_dsn(cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("PGCLIENTENCODING", raising=False)
    name = database_name("ascii")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE template0 "
                  "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        yield with_database(cluster_url, name)
    finally:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrate_installs_into_a_sql_ascii_database(ascii_dsn: str) -> None:
    migrate(ascii_dsn)
    assert migrate(ascii_dsn) is not None
