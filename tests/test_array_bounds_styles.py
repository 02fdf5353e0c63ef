"""pgjobs.visible writes a value holding an array whose lower bounds are not
all 1 as its PostgreSQL text (pgjobs._array_bounds_test); that text must read
back as the same value in any session, whatever the styles of the session that
called visible.

It was the caller's ``::text``: under DateStyle 'SQL, DMY' a date[] '[0:0]=
{2020-01-02}' read '[0:0]={02/01/2020}', which a session in MDY order (the
default) reads as 1 February; an interval '-1 day -2 hours' under IntervalStyle
sql_standard read '-1 2:00:00', which the postgres style reads as -1 day +2
hours. to_jsonb writes a date ISO in any session, so rows of the same column
that start at 1 were right and the others wrong. The text is now printed in
fixed styles (pgjobs._value_text: DateStyle ISO, IntervalStyle postgres).

Each case: set the style in the calling session, read the row through visible,
and cast the string the page holds back to the column's type in a session of
default settings: IS NOT DISTINCT FROM the stored value (array equality
compares the bounds). Columns whose names need quoting and a column mixing
rows that start at 1 with rows that do not ride along (each row its own
rendering: a JSON array, or a string).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import admin_execute, build_target, database_name, with_database

Conn = psycopg.Connection[Any]

TABLE = """id bigint PRIMARY KEY, scope int NOT NULL,
           created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
           d date[], iv interval[], ts timestamp[], "Odd ""name"", x" date[],
           "select" interval[], dd st_date_arr[]"""
# (id, column, SQL value)
ROWS = [
    (1, "d", "'[0:1]={2020-01-02,2021-11-03}'::date[]"),
    (2, "iv", "'[0:0]={\"-1 day -2 hours\"}'::interval[]"),
    (3, "ts", "'[2:2]={\"2020-01-02 03:04:05.678\"}'::timestamp[]"),
    (4, '"Odd ""name"", x"', "'[-1:-1]={2020-01-02}'::date[]"),
    (5, '"select"', "'[0:0]={\"-3 days -4 minutes\"}'::interval[]"),
    (6, "dd", "ARRAY['[0:0]={2020-01-02}'::st_date_arr]::st_date_arr[]"),
    # The same column, rows starting at 1 (a JSON array) among them.
    (7, "d", "'{2020-01-02}'::date[]"),
    (8, '"Odd ""name"", x"', "'{2020-01-02}'::date[]"),
]
STYLES = {
    "datestyle_sql_dmy": "SET DateStyle = 'SQL, DMY'",
    "datestyle_german": "SET DateStyle = 'German'",
    "datestyle_postgres_dmy": "SET DateStyle = 'Postgres, DMY'",
    "intervalstyle_sql_standard": "SET IntervalStyle = 'sql_standard'",
    "default": "SELECT 1",
}


@pytest.fixture(scope="module")
def styles_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    from tests.conftest import TEMPLATE

    name = database_name("bstyles")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DOMAIN st_date_arr AS date[]")  # (dd: an array of it)
        build_target(conn, "st_src", TABLE, index="unique")
        for n, column, value in ROWS:
            conn.execute(f"INSERT INTO st_src (id, scope, {column}) VALUES ({n}, 1, {value})")
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def key_of(column: str) -> str:
    return column[1:-1].replace('""', '"') if column.startswith('"') else column


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("row", [r[0] for r in ROWS])
def test_visible_text_reads_back_in_any_session(styles_dsn: str, style: str, row: int) -> None:
    _, column, _ = next(r for r in ROWS if r[0] == row)
    with psycopg.connect(styles_dsn, autocommit=True) as caller:
        caller.execute(STYLES[style])
        page = [r[0] for r in caller.execute(
            "SELECT * FROM pgjobs.visible('st_src', '1', p_limit => 100)").fetchall()]
    got = next(p for p in page if p["id"] == row)[key_of(column)]
    with psycopg.connect(styles_dsn, autocommit=True) as reader:  # default styles
        typ = reader.execute(f"SELECT pg_typeof({column})::text FROM st_src WHERE id = %s",
                             (row,)).fetchone()
        assert typ is not None
        if isinstance(got, str):
            # bounds not at 1: the value's text, read back as the column's type
            same = reader.execute(f"SELECT {column} IS NOT DISTINCT FROM %s::{typ[0]} "
                                  "FROM st_src WHERE id = %s", (got, row)).fetchone()
        else:
            # starts at 1: to_jsonb's array, read back as the import reads it
            assert row in (7, 8), (row, got)
            same = reader.execute(f"SELECT {column} IS NOT DISTINCT FROM "
                                  f"ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))::{typ[0]} "
                                  "FROM st_src WHERE id = %s",
                                  (psycopg.types.json.Jsonb(got), row)).fetchone()
        assert same == (True,), (style, row, column, got)
