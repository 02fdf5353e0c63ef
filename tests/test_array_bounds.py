"""Arrays whose lower bounds are not 1 keep them on every read path, as a class.

'[0:1]={a,b}'::text[] is not '{a,b}': to_jsonb and row_to_json write both as
["a", "b"], so pgjobs.visible and the jsonl export dropped the bounds and the
import read back another value; Parquet's list wrote them as if they started
at 1. The rule (pgjobs._array_bounds_test, docs/exports.md "Arrays"):

- a value that holds an array whose lower bounds are not all 1, wherever it
  sits (the column, a domain over an array, a field of a composite, an element
  of an array of composites), is written by visible and jsonl as its
  PostgreSQL text, a JSON string, which the import reads back exactly;
- a value whose arrays all start at 1 is written as it always was (pinned
  byte for byte against row_to_json / to_jsonb);
- csv writes PostgreSQL's text form (COPY's), bounds and all;
- parquet refuses a list column's value that does not start at 1 (0A000,
  naming the column), as it refuses one of two dimensions; a composite is a
  string column holding its text, bounds and all.

Each variant is a scope of its own in one database for the module; the round
trip exports a scope and imports it into an empty copy of the table, then
compares each column with IS NOT DISTINCT FROM (array equality compares the
bounds) and by its text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import (
    admin_execute,
    allow,
    build_target,
    content,
    database_name,
    job,
    run_export,
    run_import,
    submit_export,
    submit_import,
    with_database,
)

Conn = psycopg.Connection[Any]

TYPES = """
  CREATE TYPE ab_comp AS (label text, items int[]);
  CREATE DOMAIN ab_dom AS int[];
"""
TYPES_OF = {"ta": "text[]", "ia": "int[]", "comp": "ab_comp", "carr": "ab_comp[]",
            "dom": "ab_dom", "adom": "ab_dom[]"}
COLUMNS = list(TYPES_OF)
TABLE = """id bigint PRIMARY KEY, scope int NOT NULL,
           created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
           ta text[], ia int[], comp ab_comp, carr ab_comp[], dom ab_dom, adom ab_dom[]"""

# variant: (column, SQL value, whether it holds an array not starting at 1)
VARIANTS: dict[str, tuple[str, str, bool]] = {
    "1d_zero": ("ta", "'[0:1]={a,b}'::text[]", True),
    "1d_two": ("ia", "'[2:3]={1,2}'::int[]", True),
    "1d_negative": ("ia", "'[-2:-1]={5,6}'::int[]", True),
    "1d_nulls": ("ta", """'[0:2]={a,NULL,"NULL"}'::text[]""", True),
    "1d_quoting": ("ta", """'[3:4]={"x,y","q\\"}"}'::text[]""", True),
    "2d_first": ("ia", "'[0:1][1:2]={{1,2},{3,4}}'::int[]", True),
    "2d_second": ("ia", "'[1:2][0:1]={{1,2},{3,NULL}}'::int[]", True),
    "composite": ("comp", "ROW('x', '[0:1]={1,2}')::ab_comp", True),
    "composite_array": ("carr", "ARRAY[ROW('a', '{1}'), ROW('b', '[5:5]={2}'), NULL]::ab_comp[]",
                        True),
    "composite_array_bounds": ("carr", "'[0:0]={\"(a,{1})\"}'::ab_comp[]", True),
    "domain": ("dom", "'[5:6]={1,2}'::ab_dom", True),
    # An array of a domain over an array, whatever its bounds: row_to_json
    # nests each element's array as if it were a dimension ([[1, 2], [3]]).
    "domain_elements_ragged": ("adom", """'{"{1,2}","{3}"}'::ab_dom[]""", True),
    "domain_elements_rectangular": ("adom", """'{"{1,2}","{3,4}"}'::ab_dom[]""", True),
    "domain_elements_nulls": ("adom", """'{NULL,"{NULL}","{}"}'::ab_dom[]""", True),
    # Arrays that start at 1: written as they always were.
    "plain_1d": ("ta", "'{a,b}'::text[]", False),
    "plain_explicit_one": ("ia", "'[1:2]={1,2}'::int[]", False),
    "plain_2d": ("ia", "'{{1,2},{3,4}}'::int[]", False),
    "plain_nulls": ("ia", "'{1,NULL,3}'::int[]", False),
    "plain_empty": ("ia", "'{}'::int[]", False),
    "plain_composite": ("comp", "ROW('x', '{1,2}')::ab_comp", False),
    "plain_composite_array": ("carr", "ARRAY[ROW('a', '{1}'), NULL]::ab_comp[]", False),
    "plain_domain": ("dom", "'{1,2}'::ab_dom", False),
    "plain_domain_elements_empty": ("adom", "'{}'::ab_dom[]", False),
}
# (written as text for what they are, not for a bound: their text has no '[')
ELEMENT_ARRAYS = {"domain_elements_ragged", "domain_elements_rectangular",
                  "domain_elements_nulls"}
SCOPES = {name: n for n, name in enumerate(VARIANTS, start=1)}
BOUNDED = [name for name, v in VARIANTS.items() if v[2]]
PLAIN = [name for name, v in VARIANTS.items() if not v[2]]
# What Parquet refuses (a list column): the variant and the words of the error.
PARQUET_REFUSES = {"1d_zero": "an array starting at index 0",
                   "1d_two": "an array starting at index 2",
                   "1d_negative": "an array starting at index -2",
                   "1d_nulls": "an array starting at index 0",
                   "1d_quoting": "an array starting at index 3",
                   "2d_first": "a 2-dimensional array", "2d_second": "a 2-dimensional array",
                   "composite_array_bounds": "an array starting at index 0",
                   "domain": "an array starting at index 5",
                   "plain_2d": "a 2-dimensional array"}


@pytest.fixture(scope="module")
def bounds_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    """One database for the module: ab_src (a row per variant, each in a scope
    of its own) and its empty copy ab_copy."""
    from tests.conftest import TEMPLATE

    name = database_name("bounds")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TYPES)
        for table in ("ab_src", "ab_copy"):
            build_target(conn, table, TABLE, index="unique")
        for variant, (column, value, _) in VARIANTS.items():
            n = SCOPES[variant]
            conn.execute(f"INSERT INTO ab_src (id, scope, {column}) VALUES ({n}, {n}, {value})")
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def bconn(bounds_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(bounds_dsn, autocommit=True) as conn:
        yield conn


def test_the_variants_are_what_they_say(bconn: Conn) -> None:
    # (a variant "bounded" holds a '[' in its text, a plain one none)
    for variant, (column, _, bounded) in VARIANTS.items():
        row = bconn.execute(f"SELECT {column}::text FROM ab_src WHERE id = %s",
                            (SCOPES[variant],)).fetchone()
        assert row is not None and ("[" in row[0]) == (bounded and variant not in ELEMENT_ARRAYS), (
            variant, row)


def export(conn: Conn, dsn: str, storage: str, variant: str, fmt: str) -> Any:
    job_id = submit_export(conn, str(SCOPES[variant]), {}, {"format": fmt}, target="ab_src")
    return run_export(dsn, job_id, storage)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_then_import_gives_the_same_value(bconn: Conn, bounds_dsn: str, tmp_path: Path,
                                                 variant: str, fmt: str) -> None:
    storage = f"file://{tmp_path}/exports"
    allow(bconn, storage)
    n = SCOPES[variant]
    outcome = export(bconn, bounds_dsn, storage, variant, fmt)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    bconn.execute("DELETE FROM ab_copy WHERE scope = %s", (n,))
    import_id = submit_import(bconn, outcome.result["uri"], str(n), target="ab_copy")
    run_import(bounds_dsn, import_id, storage)
    imported = job(bconn, import_id)
    assert imported["status"] == "succeeded", imported
    same = ", ".join(f"s.{c} IS NOT DISTINCT FROM c.{c} AND s.{c}::text IS NOT DISTINCT FROM "
                     f"c.{c}::text" for c in COLUMNS)
    texts = ", ".join(f"c.{c}::text" for c in COLUMNS)
    rows = bconn.execute(f"SELECT {same}, {texts} FROM ab_src s JOIN ab_copy c USING (id) "
                         f"WHERE s.scope = %s", (n,)).fetchall()
    assert len(rows) == 1
    assert all(rows[0][:len(COLUMNS)]), (variant, fmt, rows[0][len(COLUMNS):])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_jsonl_writes_the_rule(bconn: Conn, bounds_dsn: str, local_dir: str,
                               variant: str) -> None:
    column, _, bounded = VARIANTS[variant]
    n = SCOPES[variant]
    outcome = export(bconn, bounds_dsn, local_dir, variant, "jsonl")
    assert outcome.status == "succeeded", outcome
    line = content(outcome.result).decode()
    row = bconn.execute(f"SELECT row_to_json(r.*)::text, {column}::text FROM ab_src r "
                        f"WHERE id = %s", (n,)).fetchone()
    assert row is not None
    if bounded:
        assert json.loads(line)[column] == row[1]
    else:
        # Today's output, byte for byte.
        assert line == row[0] + "\n"


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "delete_pending"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_visible_reads_the_rule(bconn: Conn, variant: str, masked: bool) -> None:
    column, _, bounded = VARIANTS[variant]
    n = SCOPES[variant]
    with bconn.transaction(force_rollback=True):
        if masked:
            bconn.execute("SELECT pgjobs.submit_delete('ab_src', %s, '{\"id\": -1}')", (str(n),))
        page = [r[0] for r in bconn.execute("SELECT * FROM pgjobs.visible('ab_src', %s)",
                                            (str(n),))]
    row = bconn.execute(f"SELECT to_jsonb(r.*), {column}::text FROM ab_src r WHERE id = %s",
                        (n,)).fetchone()
    assert row is not None
    expected = {**row[0], column: row[1]} if bounded else row[0]
    assert page == [expected]
    if bounded:
        # The text reads back as the value.
        same = bconn.execute(f"SELECT %s::{TYPES_OF[column]} IS NOT DISTINCT FROM {column} "
                             f"FROM ab_src WHERE id = %s", (page[0][column], n)).fetchone()
        assert same == (True,)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parquet_keeps_or_refuses(bconn: Conn, bounds_dsn: str, local_dir: str,
                                  variant: str) -> None:
    column = VARIANTS[variant][0]
    n = SCOPES[variant]
    outcome = export(bconn, bounds_dsn, local_dir, variant, "parquet")
    if variant in PARQUET_REFUSES:
        assert outcome.status == "failed", outcome
        assert outcome.error is not None
        assert (f"column {column} holds {PARQUET_REFUSES[variant]}, which a Parquet"
                in outcome.error), outcome.error
        assert "csv or jsonl" in outcome.error and "0A000" in outcome.error, outcome.error
        return
    assert outcome.status == "succeeded", outcome
    import pyarrow.parquet as pq

    from pgjobs.poller import storage

    got = [v for u in outcome.result["uris"]
           for v in pq.read_table(storage.parse(u).path).column(column).to_pylist()]
    text = bconn.execute(f"SELECT {column}::text FROM ab_src WHERE id = %s", (n,)).fetchone()
    assert text is not None
    if column == "comp":
        assert got == [text[0]]  # a string column: its text, bounds and all
    else:
        # A list of the elements (a composite element as its text, bounds and all).
        # (unnest in the select list: in FROM it spreads a composite's fields)
        elements = bconn.execute(f"SELECT ARRAY(SELECT u.e::text FROM (SELECT unnest({column}) "
                                 f"AS e) u) FROM ab_src WHERE id = %s", (n,)).fetchone()
        assert elements is not None
        assert [[None if e is None else str(e) for e in got[0]]] == [elements[0]]
