"""pgjobs.visible's second read (a page whose to_jsonb refused a json value,
read again through pgjobs._json_value_jsonb) over the column TYPES a table
may have, not the values (tests/test_read_value_kinds.py):

- names: composite field names, type names and schema names that must be
  quoted in the SQL text built from them (a quote, a dot, a space, upper
  case, unicode, a dollar, a name of one of the built text's own aliases).
  Each holds a refused json that comes back as the string of its text.
  Lock-in: they read right before this file was written too.
- walks: a column whose type holds no json but is a composite of two fields
  of a composite of two fields ... (2^depth paths through few types), beside
  a json column. Any data exception of its table's page (a bad cursor from
  any client too) made the read follow every path: 16 levels, 65536 calls
  of pgjobs._json_value_jsonb and seconds of a backend per call. Each type is
  now judged once: the calls are counted (track_functions), not timed.
- too large: a column whose type holds json in thousands of places. The
  text built doubled with each level (10 levels: 436 kB of SQL, planned for
  the page); now it stops at 256 kB and the page's own error stands (22P05),
  as for any read it cannot take apart. The scope's other reads go on.

One database for the module; a case is a table or a scope of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.databases import admin_execute, database_name, with_database

Conn = psycopg.Connection[Any]

NUL = r'{"a":"x\u0000y"}'

# (label, schema of the type, type name, field name)
NAMES = [
    ("quote", "public", 'we"ird', 'f"q'),
    ("dot", "public", "a.b", "x.y"),
    ("space", "public", "two words", "two words"),
    ("upper", "public", "Upper", "Field"),
    ("unicode", "public", "typé", "champ_é"),
    ("dollar", "public", "d$1", "$1"),
    ("alias_c", "public", "c", "c"),
    ("alias_s1", "public", "s1", "s1"),
    ("alias_e", "public", "e", "e"),
    ("json_name", "public", "json", "json"),
    ("text_name", "public", "text", "text"),
    ("own_schema", 'Sch "x".y', "t", "a"),
]

DEPTH = 16
"""Levels of the json-free composite of composites (2^16 paths, 17 types)."""


def _ident(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


@pytest.fixture(scope="module")
def types_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    from tests.conftest import TEMPLATE

    name = database_name("types")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _, schema, typ, field in NAMES:
            if schema != "public":
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")  # type: ignore[arg-type]
            conn.execute(f"CREATE TYPE {_ident(schema, typ)} AS "  # type: ignore[arg-type]
                         f"(n int, {_ident(field)} json)")
        columns = ", ".join(f"v{n} {_ident(schema, typ)}"
                            for n, (_, schema, typ, _) in enumerate(NAMES, start=1))
        conn.execute(f"CREATE TABLE names (id bigint PRIMARY KEY, scope int NOT NULL, "  # type: ignore[arg-type]
                     f"created_at timestamptz NOT NULL DEFAULT now(), {columns})")
        conn.execute("CREATE INDEX ON names (scope, id)")
        conn.execute("CREATE INDEX ON names (scope, created_at)")
        conn.execute("SELECT pgjobs.register_target('names'::regclass, 'id', 'scope', "
                     "'created_at', NULL, '{}'::jsonb)")
        for n, (_, schema, typ, _) in enumerate(NAMES, start=1):
            conn.execute(f"INSERT INTO names (id, scope, v{n}) VALUES "  # type: ignore[arg-type]
                         f"({n}, {n}, ROW(7, %s)::{_ident(schema, typ)})", (NUL,))
        # Without json: m0 (a int, b int), m1 (a m0, b m0), ... mDEPTH.
        conn.execute("CREATE TYPE m0 AS (a int, b int)")
        for level in range(1, DEPTH + 1):
            conn.execute(f"CREATE TYPE m{level} AS (a m{level - 1}, b m{level - 1})")  # type: ignore[arg-type]
        conn.execute(f"CREATE DOMAIN md AS m{DEPTH}")  # type: ignore[arg-type]
        # With json everywhere: l0 (a json, b json), l1 (a l0, b l0), ... l10.
        conn.execute("CREATE TYPE l0 AS (a json, b json)")
        for level in range(1, 11):
            conn.execute(f"CREATE TYPE l{level} AS (a l{level - 1}, b l{level - 1})")  # type: ignore[arg-type]
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def tconn(types_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(types_dsn, autocommit=True) as conn:
        yield conn


def _register(conn: Conn, table: str, columns: str) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, scope int NOT NULL, "
                         "created_at timestamptz NOT NULL DEFAULT now(), {})").format(
        sql.Identifier(table), sql.SQL(columns)))  # type: ignore[arg-type]
    conn.execute(sql.SQL("CREATE INDEX ON {} (scope, id)").format(sql.Identifier(table)))
    conn.execute(sql.SQL("CREATE INDEX ON {} (scope, created_at)").format(sql.Identifier(table)))
    conn.execute("SELECT pgjobs.register_target(%s::regclass, 'id', 'scope', 'created_at', "
                 "NULL, '{}'::jsonb)", (table,))


@pytest.mark.parametrize("n,label,field", [(n, c[0], c[3]) for n, c in enumerate(NAMES, start=1)],
                         ids=[c[0] for c in NAMES])
def test_field_and_type_names_are_quoted(tconn: Conn, n: int, label: str, field: str) -> None:
    """Lock-in: every name in the built SQL is quoted (or a literal), every
    type named by its OID: the refused json comes back as its text."""
    rows = [r[0] for r in tconn.execute("SELECT * FROM pgjobs.visible('names', %s)", (str(n),))]
    assert len(rows) == 1
    assert rows[0][f"v{n}"] == {"n": 7, field: NUL}
    assert all(rows[0][f"v{k}"] is None for k in range(1, len(NAMES) + 1) if k != n)


def _calls_of_one_visible(conn: Conn, *args: Any) -> tuple[int, str | None]:
    """pgjobs._json_value_jsonb's calls in one pgjobs.visible call, and the
    SQLSTATE it raised (None: it returned)."""
    state = None
    with conn.transaction():
        conn.execute("SET LOCAL track_functions = 'pl'")
        try:
            with conn.transaction():
                conn.execute("SELECT * FROM pgjobs.visible(%s, %s, %s, %s)", args).fetchall()
        except psycopg.Error as exc:
            state = exc.sqlstate
        calls = conn.execute(
            "SELECT coalesce(pg_stat_get_xact_function_calls("
            "'pgjobs._json_value_jsonb(text,regtype,integer)'::regprocedure), 0)").fetchone()
        assert calls is not None
    return int(calls[0]), state


@pytest.mark.parametrize("column_type", [f"m{DEPTH}", "md", f"m{DEPTH}[]", "md[]"])
@pytest.mark.parametrize("after", [None, "not a key"], ids=["refused_json", "bad_cursor"])
def test_json_free_type_graph_is_walked_once(tconn: Conn, column_type: str,
                                             after: str | None) -> None:
    """A json-free composite of composites beside a json column: the second
    read judges its type once, not once per path (2^16), whether the page
    failed on a refused json or on a client's bad cursor."""
    table = f"walk_{column_type.replace('[]', '_arr')}_{'cursor' if after else 'json'}"
    _register(tconn, table, f"j json, m {column_type}")
    tconn.execute(sql.SQL("INSERT INTO {} (id, scope, j) VALUES (1, 1, %s)").format(
        sql.Identifier(table)), (NUL,))
    calls, state = _calls_of_one_visible(tconn, table, "1", "{}", after)
    assert state == (None if after is None else "22023")
    # A call or two per column (the five), never one per path.
    assert calls <= 20, calls
    if after is None:
        rows = [r[0] for r in tconn.execute("SELECT * FROM pgjobs.visible(%s, '1')", (table,))]
        assert [(r["j"], r["m"]) for r in rows] == [(NUL, None)]


@pytest.mark.parametrize("column_type", ["l10", "l10[]"])
def test_json_in_too_many_places_lets_the_page_error_stand(tconn: Conn, column_type: str) -> None:
    """A type holding json in 2^11 places: the SQL built to read each apart
    stops at its limit; the page's own error stands (22P05, as before there
    was a second read), and the scope's other rows read as ever."""
    table = "wide_" + column_type.replace("[]", "_arr")
    _register(tconn, table, f"j json, l {column_type}")
    tconn.execute(sql.SQL("INSERT INTO {} (id, scope, j) VALUES (1, 1, %s), (2, 2, '{{}}')").format(
        sql.Identifier(table)), (NUL,))
    with pytest.raises(psycopg.Error) as raised:
        tconn.execute("SELECT * FROM pgjobs.visible(%s, '1')", (table,)).fetchall()
    assert raised.value.sqlstate == "22P05"
    rows = [r[0] for r in tconn.execute("SELECT * FROM pgjobs.visible(%s, '2')", (table,))]
    assert [(r["id"], r["j"]) for r in rows] == [(2, {})]
