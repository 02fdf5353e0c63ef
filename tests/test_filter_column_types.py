"""Every field operator on a column of every common type (docs/filters.md,
"Column types").

A filter naming a column compiles each operator against the column's type.
`{"tags": {"$in": ["a"]}}` on a `varchar[]` column failed at submit with
"operator does not exist: character varying[] = character varying": the
compiler's own SQL error, leaking. For every (type, operator) pair the
filter now either works, selecting exactly the rows the plain SQL written
next to it selects (through pgjobs.preview, pgjobs.compile_filter and
pgjobs.submit_delete / submit_export, the same compile), or is refused at
submit with 22023, a message naming the key, the operator and the column's
type, and a hint, never the text of an internal error. Which pairs are
refused is decided here (REFUSED), as the docs say.

One database and one table (a column per type, five rows, the last NULL in
every column) serve the whole matrix; jobs run to completion on the array
and json columns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import run_pages, scalar
from tests.support.databases import admin_execute, database_name, with_database
from tests.support.exports import content, run_export

Conn = psycopg.Connection[Any]


class Column(NamedTuple):
    name: str
    ddl: str                    # the column's type
    rows: list[str | None]      # SQL literals of rows 1..4 (row 5 is NULL everywhere)
    v1: Any                     # a value some row holds (JSON)
    v2: Any                     # another one
    bound: Any                  # the operand of the range operators
    sub: str                    # the operand of $contains


def pg_array(values: list[Any]) -> str:
    """The text of a PostgreSQL array literal of JSON scalars."""
    items = ["NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
             for v in values]
    return "{" + ",".join(items) + "}"


COLUMNS: list[Column] = [
    Column("c_int2", "int2", ["1", "2", "3", "-4"], 2, 3, 2, "2"),
    Column("c_int4", "int4", ["1", "2", "3", "-4"], 2, 3, 2, "2"),
    Column("c_int8", "int8", ["1", "2", "3", "-4"], 2, 3, 2, "-"),
    Column("c_numeric", "numeric", ["1.5", "2.25", "3", "-4"], 2.25, 3, 2, ".2"),
    Column("c_float8", "float8", ["0.5", "2.25", "3", "-4"], 2.25, 3, 2, ".2"),
    Column("c_text", "text", ["'alpha'", "'Beta'", "'gamma'", "'delta'"], "Beta", "gamma",
           "beta", "TA"),
    Column("c_varchar", "varchar(10)", ["'alpha'", "'Beta'", "'gamma'", "'delta'"], "Beta",
           "gamma", "beta", "ta"),
    Column("c_char", "char(4)", ["'ab'", "'Beta'", "'gamm'", "'x'"], "ab", "gamm", "b", "A"),
    Column("c_bool", "boolean", ["true", "false", "true", "false"], True, False, False, "ru"),
    Column("c_date", "date", ["'2024-01-01'", "'2024-02-01'", "'2024-03-01'", "'2023-12-31'"],
           "2024-02-01", "2024-03-01", "2024-02-01", "2024"),
    Column("c_ts", "timestamp", ["'2024-01-01 10:00'", "'2024-02-01'", "'2024-03-01'",
                                 "'2023-12-31'"],
           "2024-02-01 00:00:00", "2024-03-01", "2024-01-15", "2024"),
    Column("c_tstz", "timestamptz", ["'2024-01-01 10:00+00'", "'2024-02-01+00'",
                                     "'2024-03-01+00'", "'2023-12-31+00'"],
           "2024-02-01T00:00:00Z", "2024-03-01 00:00+00", "2024-01-15Z", "2024"),
    Column("c_interval", "interval", ["'1 hour'", "'2 days'", "'3 minutes'", "'-1 second'"],
           "2 days", "3 minutes", "1 hour", "day"),
    Column("c_uuid", "uuid", ["'00000000-0000-0000-0000-000000000001'",
                              "'00000000-0000-0000-0000-000000000002'",
                              "'10000000-0000-0000-0000-000000000001'",
                              "'ffffffff-0000-0000-0000-000000000000'"],
           "00000000-0000-0000-0000-000000000002", "10000000-0000-0000-0000-000000000001",
           "00000000-0000-0000-0000-000000000002", "0001"),
    Column("c_bytea", "bytea", ["'\\x01'", "'\\x02ff'", "'\\x03'", "'\\x'"], "\\x02ff",
           "\\x03", "\\x02", "ff"),
    Column("c_inet", "inet", ["'10.0.0.1'", "'10.0.0.2'", "'192.168.1.1'", "'::1'"],
           "10.0.0.2", "192.168.1.1", "10.0.0.2", "10.0"),
    Column("c_enum", "mood", ["'sad'", "'ok'", "'happy'", "'ok'"], "ok", "happy", "ok", "O"),
    Column("c_dtext", "dtext", ["'alpha'", "'Beta'", "'gamma'", "'delta'"], "Beta", "gamma",
           "beta", "ta"),
    Column("c_dint", "dint", ["1", "2", "3", "-4"], 2, 3, 2, "2"),
    Column("c_json", "json", ["'{\"a\": 1}'", "'[1, 2]'", "'\"x\"'", "'{\"a\": 2, \"b\": [1]}'"],
           {"a": 1}, [1, 2], 1, "a"),
    Column("c_jsonb", "jsonb", ["'{\"a\": 1}'", "'[1, 2]'", "'\"x\"'", "'{\"a\": 2, \"b\": [1]}'"],
           {"a": 1}, [1, 2], 1, "a"),
    Column("c_text_arr", "text[]", ["'{a,b}'", "'{b,c}'", "'{}'", "'{A,\"b c\",NULL}'"],
           ["a", "b"], [], "b", "B"),
    Column("c_varchar_arr", "varchar(10)[]", ["'{a,b}'", "'{b,c}'", "'{}'",
                                              "'{A,\"b c\",NULL}'"],
           ["a", "b"], [], "b", "b c"),
    Column("c_int_arr", "int[]", ["'{1,2}'", "'{2,3}'", "'{}'", "'{4,NULL}'"], [1, 2], [], 2,
           ","),
    Column("c_dtext_arr", "dtext[]", ["'{a,b}'", "'{b,c}'", "'{}'", "'{A,\"b c\",NULL}'"],
           ["a", "b"], [], "b", "nul"),
    Column("c_point", "point", ["'(1,2)'", "'(3,4)'", "'(5,6)'", "'(0,0)'"], "(3,4)", "(5,6)",
           "(3,4)", "3"),
    Column("c_ptpair", "ptpair", ["'(\"(1,2)\",1)'", "'(\"(3,4)\",2)'", "'(,3)'", "'(\"(0,0)\",)'"],
           "(\"(3,4)\",2)", "(,3)", "(,3)", "3"),
    Column("c_point_arr", "point[]", ["'{\"(1,2)\"}'", "'{\"(3,4)\"}'", "'{}'", "'{NULL}'"],
           ["(3,4)"], [], "(3,4)", "3"),
    Column("c_citext", "citext", ["'alpha'", "'Beta'", "'gamma'", "'delta'"], "beta", "gamma",
           "beta", "ta"),
    Column("c_pair", "pair", ["'(1,a)'", "'(2,b)'", "'(3,)'", "'(,x)'"], "(2,b)", "(3,)",
           "(2,a)", "a"),
    Column("c_range", "int4range", ["'[1,5)'", "'[2,3)'", "'empty'", "'(,10)'"], "[2,3)",
           "empty", "[2,3)", "2"),
]
BY_NAME = {c.name: c for c in COLUMNS}

OPS = ["eq", "literal", "ne", "gt", "gte", "lt", "lte", "in", "in_null", "nin", "contains",
       "exists", "not_exists", "null", "not", "or", "and"]
# Array columns take a scalar too: an element of the array.
ARRAY_OPS = ["eq_elem", "literal_elem", "ne_elem", "in_elems", "nin_elems", "in_mixed"]


def is_array(column: Column) -> bool:
    return column.ddl.endswith("[]")


def value_text(column: Column, value: Any) -> str:
    """The value as the text of a literal of the column's type (JSON for json)."""
    if column.ddl in ("json", "jsonb"):
        return json.dumps(value)
    if isinstance(value, list):
        return pg_array(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sql_type(column: Column) -> str:
    return {"json": "jsonb", "dtext": "text", "dint": "int",
            "dtext[]": "text[]"}.get(column.ddl, column.ddl)


def lit(column: Column, value: Any) -> str:
    return "'" + value_text(column, value).replace("'", "''") + "'::" + sql_type(column)


def elem_lit(column: Column, value: Any) -> str:
    elem = {"dtext": "text"}.get(column.ddl[:-2], column.ddl[:-2])
    return "'" + str(value).replace("'", "''") + "'::" + elem


def ref(column: Column) -> str:
    return {"json": f"{column.name}::jsonb",
            "dtext[]": f"{column.name}::text[]"}.get(column.ddl, column.name)


def case(column: Column, op: str) -> tuple[dict[str, Any], str]:
    """(filter, the plain SQL condition selecting the same rows)."""
    c, r = column.name, ref(column)
    eq, eq2 = f"{r} = {lit(column, column.v1)}", f"{r} = {lit(column, column.v2)}"
    in_ = f"{r} IN ({lit(column, column.v1)}, {lit(column, column.v2)})"
    gt = f"{r} > {lit(column, column.bound)}"
    pattern = "'%" + column.sub + "%'"
    elem = column.bound  # an element of the arrays
    has = f"{elem_lit(column, elem) if is_array(column) else ''} = ANY ({r})"
    other = {"int[]": 3, "point[]": "(0,0)"}.get(column.ddl, "c")  # another element
    overlap = (f"{r} && ARRAY[{elem_lit(column, elem)}, {elem_lit(column, other)}]"
               if is_array(column) else "")
    contains = f"{r}::text ILIKE {pattern}"  # an array's text: '{a,"b c"}'"
    table: dict[str, tuple[Any, str]] = {
        "eq": ({"$eq": column.v1}, eq),
        "literal": (column.v1, eq),
        "ne": ({"$ne": column.v1}, f"NOT coalesce({eq}, false)"),
        "gt": ({"$gt": column.bound}, gt),
        "gte": ({"$gte": column.bound}, f"{r} >= {lit(column, column.bound)}"),
        "lt": ({"$lt": column.bound}, f"{r} < {lit(column, column.bound)}"),
        "lte": ({"$lte": column.bound}, f"{r} <= {lit(column, column.bound)}"),
        "in": ({"$in": [column.v1, column.v2]}, in_),
        "in_null": ({"$in": [column.v1, None]}, f"{eq} OR {c} IS NULL"),
        "nin": ({"$nin": [column.v1, column.v2]}, f"NOT coalesce({in_}, false)"),
        "contains": ({"$contains": column.sub}, contains),
        "exists": ({"$exists": True}, f"{c} IS NOT NULL"),
        "not_exists": ({"$exists": False}, f"{c} IS NULL"),
        "null": (None, f"{c} IS NULL"),
        "not": ({"$not": {"$eq": column.v1}}, f"NOT coalesce({eq}, false)"),
        "eq_elem": ({"$eq": elem}, has),
        "literal_elem": (elem, has),
        "ne_elem": ({"$ne": elem}, f"NOT coalesce({has}, false)"),
        "in_elems": ({"$in": [elem, other]}, overlap),
        "nin_elems": ({"$nin": [elem, other]}, f"NOT coalesce({overlap}, false)"),
        "in_mixed": ({"$in": [column.v1, elem]}, f"{eq} OR {has}"),
    }
    if op == "or":
        return ({"$or": [{c: column.v1}, {c: column.v2}]},
                f"coalesce({eq}, false) OR coalesce({eq2}, false)")
    if op == "and":
        return ({"$and": [{c: {"$exists": True}}, {"$not": {c: column.v1}}]},
                f"{c} IS NOT NULL AND NOT coalesce({eq}, false)")
    operand, condition = table[op]
    return {c: operand}, condition


# The pairs refused, by design (docs/filters.md, "Column types"):
# * $contains where the column's text depends on session settings or has
#   no fixed form (floats, times, bytea, composites, points);
# * the range operators on arrays: an array's order is no order a filter
#   means;
# * every comparison on a type without equality (point, a composite or an
#   array of one), and on citext (its operators are not pg_catalog's): only
#   the column's presence is tested there.
PRESENCE = {"exists", "not_exists", "null"}
NO_EQUALITY = {"c_point", "c_ptpair", "c_point_arr", "c_citext"}
REFUSED: set[tuple[str, str]] = (
    {(c, "contains") for c in ("c_float8", "c_date", "c_ts", "c_tstz", "c_interval", "c_bytea",
                               "c_pair")}
    | {(c.name, op) for c in COLUMNS if c.ddl.endswith("[]") for op in ("gt", "gte", "lt", "lte")}
    | {(c, op) for c in NO_EQUALITY for op in OPS + ARRAY_OPS if op not in PRESENCE})

INTERNAL = ("operator does not exist", "could not identify", "invalid input syntax",
            "malformed", "cannot cast", "does not exist", "function ")


@pytest.fixture(scope="module")
def matrix(cluster_url: str, template_dsn: str) -> Iterator[Conn]:
    """One database for the module: the table t, a column per type, rows 1..5."""
    template = psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]
    name = database_name("coltypes")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        with psycopg.connect(with_database(cluster_url, name), autocommit=True) as conn:
            conn.execute("""
                CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
                CREATE DOMAIN dtext AS text;
                CREATE DOMAIN dint AS int;
                CREATE TYPE pair AS (a int, b text);
                CREATE TYPE ptpair AS (p point, n int);
                CREATE EXTENSION IF NOT EXISTS citext""")
            columns = ", ".join(f"{c.name} {c.ddl}" for c in COLUMNS)
            conn.execute(f"""
                CREATE TABLE t (id bigint NOT NULL, s int NOT NULL, {columns}, doc jsonb,
                                created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                                PRIMARY KEY (s, id))""")
            for i in range(4):
                values = ", ".join(str(c.rows[i]) for c in COLUMNS)
                names = ", ".join(c.name for c in COLUMNS)
                conn.execute(f"INSERT INTO t (id, s, {names}) VALUES ({i + 1}, 1, {values})")
            conn.execute("INSERT INTO t (id, s) VALUES (5, 1)")
            for i, doc in enumerate(DOCUMENTS):
                conn.execute("UPDATE t SET doc = %s WHERE id = %s", (json.dumps(doc), i + 1))
            conn.execute("SELECT pgjobs.register_target('t', 'id', 's', 'created_at', 'doc')")
            yield conn
    finally:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def plain_ids(conn: Conn, condition: str) -> list[int]:
    return [r[0] for r in conn.execute(
        f"SELECT id FROM t WHERE s = 1 AND coalesce(({condition}), false) ORDER BY id")]


def assert_clean_refusal(error: psycopg.Error, column: Column, filter_: dict[str, Any],
                         type_names: tuple[str, str]) -> None:
    diag = error.diag
    message = diag.message_primary or ""
    assert error.sqlstate == "22023", (error.sqlstate, message)
    assert column.name in message, message
    assert any(name in message for name in type_names), (type_names, message)
    assert diag.message_hint, message
    for text in INTERNAL:
        assert text not in message.lower(), message
    # The field operator refused ($eq for a literal value).
    assert re.search(r'operator "\$(eq|ne|gt|gte|lt|lte|in|nin|contains)"', message), message


def outcome(conn: Conn, sql: str, params: Any) -> Any:
    """The call's result, or the psycopg.Error it raised."""
    try:
        return scalar(conn, sql, params)
    except psycopg.Error as error:
        return error


# Document fields (dotted paths) under the same operators: they compare as
# jsonb, a value only with values of its own JSON type (docs/filters.md).
DOCUMENTS: list[dict[str, Any]] = [
    {"d": {"n": 1, "s": "alpha", "b": True, "arr": ["a", "b"], "o": {"k": 1}}},
    {"d": {"n": 2, "s": "Beta", "b": False, "arr": ["b"], "o": {"k": 2}}},
    {"d": {"n": 2.0, "s": "gamma", "arr": [], "o": {"k": None}}},
    {"d": {"n": "2", "s": 5, "b": None, "arr": "a", "o": [1]}},
]
PATHS: list[Column] = [
    Column("d.n", "doc", [], 2, 1, 1, "2"),
    Column("d.s", "doc", [], "Beta", "gamma", "b", "TA"),
    Column("d.b", "doc", [], True, False, False, "ru"),
    Column("d.arr", "doc", [], ["a", "b"], [], "a", "a"),
    Column("d.o", "doc", [], {"k": 1}, {"k": 2}, 1, "k"),
]


def doc_case(path: Column, op: str) -> tuple[dict[str, Any], str]:
    """(filter, plain SQL) on a document path: jsonb equality, ranges within
    the operand's JSON type, $contains on strings, null for missing or null."""
    v = "(doc #> '{" + path.name.replace(".", ",") + "}')"

    def lit(value: Any) -> str:
        return "'" + json.dumps(value).replace("'", "''") + "'::jsonb"

    def typed(sql_op: str, value: Any) -> str:
        return f"{v} {sql_op} {lit(value)} AND jsonb_typeof({v}) = jsonb_typeof({lit(value)})"

    eq, eq2 = f"{v} = {lit(path.v1)}", f"{v} = {lit(path.v2)}"
    is_null = f"({v} IS NULL OR {v} = 'null')"
    f, name = path.name, path.name
    table: dict[str, tuple[dict[str, Any], str]] = {
        "eq": ({f: {"$eq": path.v1}}, eq),
        "literal": ({f: path.v1}, eq),
        "ne": ({f: {"$ne": path.v1}}, f"NOT coalesce({eq}, false)"),
        "gt": ({f: {"$gt": path.bound}}, typed(">", path.bound)),
        "gte": ({f: {"$gte": path.bound}}, typed(">=", path.bound)),
        "lt": ({f: {"$lt": path.bound}}, typed("<", path.bound)),
        "lte": ({f: {"$lte": path.bound}}, typed("<=", path.bound)),
        "in": ({f: {"$in": [path.v1, path.v2]}}, f"{eq} OR {eq2}"),
        "in_null": ({f: {"$in": [path.v1, None]}}, f"{eq} OR {is_null}"),
        "nin": ({f: {"$nin": [path.v1, path.v2]}}, f"NOT coalesce({eq} OR {eq2}, false)"),
        "contains": ({f: {"$contains": path.sub}},
                     f"jsonb_typeof({v}) = 'string' AND {v} #>> '{{}}' ILIKE '%{path.sub}%'"),
        "exists": ({f: {"$exists": True}}, f"{v} IS NOT NULL"),
        "not_exists": ({f: {"$exists": False}}, f"{v} IS NULL"),
        "null": ({f: None}, is_null),
        "not": ({f: {"$not": {"$eq": path.v1}}}, f"NOT coalesce({eq}, false)"),
        "or": ({"$or": [{name: path.v1}, {name: path.v2}]},
               f"coalesce({eq}, false) OR coalesce({eq2}, false)"),
        "and": ({"$and": [{name: {"$exists": True}}, {"$not": {name: path.v1}}]},
                f"{v} IS NOT NULL AND NOT coalesce({eq}, false)"),
    }
    if op == "elem":  # an element of an array field: not equal (jsonb equality)
        return {f: "a"}, f"{v} = '\"a\"'"
    return table[op]


@pytest.mark.parametrize("path", [p.name for p in PATHS])
def test_every_operator_on_a_document_field(matrix: Conn, path: str) -> None:
    column = next(p for p in PATHS if p.name == path)
    failures = []
    for op in OPS + ["elem"]:
        filter_, condition = doc_case(column, op)
        doc = json.dumps(filter_)
        try:
            preview = scalar(matrix, "SELECT pgjobs.preview('t', '1', %s)", (doc,))
            compiled = scalar(matrix, "SELECT pgjobs.compile_filter('t', %s)", (doc,))
            with matrix.transaction(force_rollback=True):
                scalar(matrix, "SELECT pgjobs.submit_delete('t', '1', %s)", (doc,))
            expected = plain_ids(matrix, condition)
            assert preview["matches"] == len(expected), (preview, condition)
            assert preview["sample"] == [str(i) for i in expected], (preview, condition)
            assert [r[0] for r in matrix.execute(
                f"SELECT id FROM t WHERE s = 1 AND coalesce(({compiled}), false) ORDER BY id"
            )] == expected, (compiled, condition)
        except (AssertionError, psycopg.Error) as error:
            failures.append(f"{doc}: {str(error)[:400]}")
    assert not failures, "\n".join(failures)


# Every submit path (delete, export, backfill) is run on these columns'
# cases, and a delete's and an export's on every refused case; the others go
# through pgjobs.preview and pgjobs.compile_filter (the same compile,
# pgjobs._compile_filter), which keeps the matrix to seconds.
SUBMITTED = {"c_text_arr", "c_int_arr", "c_json"}


def check(conn: Conn, column: Column, op: str, type_names: tuple[str, str]) -> None:
    """One (column, operator) case: the rows of its plain SQL, or a clean refusal."""
    filter_, condition = case(column, op)
    doc = json.dumps(filter_)
    refused = (column.name, op) in REFUSED
    results = [outcome(conn, "SELECT pgjobs.preview('t', '1', %s)", (doc,)),
               outcome(conn, "SELECT pgjobs.compile_filter('t', %s)", (doc,))]
    calls = ["SELECT pgjobs.submit_delete('t', '1', %s)",
             "SELECT pgjobs.submit_export('t', '1', %s)"]
    if column.name in SUBMITTED:
        calls.append("SELECT pgjobs.submit_backfill('t', '1', %s, '{\"c_int2\": 7}')")
    if refused or column.name in SUBMITTED:
        for call in calls:
            with conn.transaction(force_rollback=True):
                results.append(outcome(conn, call, (doc,)))
    if refused:
        for result in results:
            assert isinstance(result, psycopg.Error), (filter_, result)
            assert_clean_refusal(result, column, filter_, type_names)
        return
    for result in results:
        assert not isinstance(result, psycopg.Error), (filter_, str(result))
    preview, compiled = results[0], results[1]
    expected = plain_ids(conn, condition)
    assert preview["matches"] == len(expected), (filter_, condition, preview)
    assert preview["sample"] == [str(i) for i in expected], (filter_, condition, preview)
    got = [r[0] for r in conn.execute(
        f"SELECT id FROM t WHERE s = 1 AND coalesce(({compiled}), false) ORDER BY id")]
    assert got == expected, (filter_, compiled, condition)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_every_operator_on_a_column_type(matrix: Conn, name: str) -> None:
    column = BY_NAME[name]
    # The column's type as declared, or (a domain) the type values are cast to.
    type_names = matrix.execute(
        "SELECT format_type(atttypid, NULL), format_type(pgjobs._loose_type(atttypid), NULL) "
        "FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = %s", (name,)).fetchone()
    failures = []
    for op in OPS + (ARRAY_OPS if is_array(column) else []):
        try:
            check(matrix, column, op, type_names)
        except AssertionError as error:
            failures.append(f"{name} {op}: {str(error)[:400]}")
    assert not failures, "\n".join(failures)


# Jobs run to completion on array and json columns: an export writes exactly
# the rows of the plain SQL, a delete removes exactly them.
JOB_CASES: list[tuple[dict[str, Any], str]] = [
    ({"tags": {"$in": ["a", "c"]}}, "tags && '{a,c}'::varchar[]"),
    ({"tags": ["a", "b"]}, "tags = '{a,b}'::varchar[]"),
    ({"tags": {"$nin": [["a", "b"], []]}}, "tags IS NULL OR tags NOT IN ('{a,b}', '{}')"),
    ({"tags": {"$contains": "B"}}, "tags::text ILIKE '%B%'"),
    ({"nums": 2}, "2 = ANY (nums)"),
    ({"nums": {"$ne": 2}}, "NOT coalesce(2 = ANY (nums), false)"),
    ({"js": {"$in": [{"a": 1}, [1, 2]]}}, "js::jsonb IN ('{\"a\": 1}', '[1, 2]')"),
    ({"jb": {"$gt": 1}}, "jb > '1'::jsonb"),
]


@pytest.mark.parametrize(("filter_", "condition"), JOB_CASES,
                         ids=[json.dumps(f) for f, _ in JOB_CASES])
def test_jobs_on_array_and_json_columns(conn: Conn, dsn: str, local_dir: str,
                                        filter_: dict[str, Any], condition: str) -> None:
    array_table(conn)
    expected = plain_ids_of(conn, condition)
    assert expected, condition  # the case selects some rows, and not all of them
    assert len(expected) < 5, condition

    job_id = scalar(conn, "SELECT pgjobs.submit_export('a', '1', %s, %s)",
                    (json.dumps(filter_), json.dumps({"format": "jsonl", "columns": ["id"]})))
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert [json.loads(line)["id"] for line in content(outcome.result).splitlines()] == expected

    job_id = scalar(conn, "SELECT pgjobs.submit_delete('a', '1', %s)", (json.dumps(filter_),))
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert [r[0] for r in conn.execute("SELECT id FROM a WHERE s = 1 ORDER BY id")] == [
        i for i in range(1, 6) if i not in expected]
    assert scalar(conn, "SELECT count(*) FROM a WHERE s = 2") == 1


def array_table(conn: Conn) -> None:
    """Table a: arrays and json columns, five rows of scope 1 and one of 2."""
    conn.execute("""
        CREATE TABLE a (id bigint NOT NULL, s int NOT NULL, tags varchar(10)[], nums int[],
                        js json, jb jsonb,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, id))""")
    conn.execute("""
        INSERT INTO a (id, s, tags, nums, js, jb) VALUES
            (1, 1, '{a,b}', '{1,2}', '{"a": 1}', '1'),
            (2, 1, '{b,c}', '{2,3}', '[1, 2]', '2'),
            (3, 1, '{}', '{}', '"x"', '"x"'),
            (4, 1, '{A,"b c",NULL}', '{4,NULL}', '{"a": 2}', '{"a": 1}'),
            (5, 1, NULL, NULL, NULL, NULL),
            (1, 2, '{a,b}', '{2}', '{"a": 1}', '5')""")
    conn.execute("SELECT pgjobs.register_target('a', 'id', 's', 'created_at')")


def plain_ids_of(conn: Conn, condition: str) -> list[int]:
    return [r[0] for r in conn.execute(
        f"SELECT id FROM a WHERE s = 1 AND coalesce(({condition}), false) ORDER BY id")]


def test_the_command_line_filter_on_an_array_column(conn: Conn, dsn: str) -> None:
    """`--filter` goes through the same compile: the reported `$in` on a
    varchar[] column works, and a refused operator is one line, 22023, with
    its hint."""
    array_table(conn)
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", dsn, "delete", "a", "--scope", "1", "--filter",
                                  '{"tags": {"$in": ["a", "c"]}}', "--yes"])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    run_pages(conn, job_id)
    assert [r[0] for r in conn.execute("SELECT id FROM a WHERE s = 1 ORDER BY id")] == [3, 4, 5]

    result = runner.invoke(main, ["--dsn", dsn, "delete", "a", "--scope", "1", "--filter",
                                  '{"tags": {"$gt": "a"}}', "--yes"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert '"$gt"' in lines[0] and '"tags"' in lines[0] and "[22023]" in lines[0], lines
    assert "(hint: " in lines[0], lines


@pytest.mark.parametrize("value", ["{a,b}", " {b,c}", "{}", "[0:1]={a,b}", "[1:2] = {a,b}"])
@pytest.mark.parametrize("op", ["$eq", "$ne", "$in", "$nin"])
def test_an_array_literal_written_as_a_string_is_the_whole_array(
        conn: Conn, op: str, value: str) -> None:
    """A string spelling a whole array compared the whole array before arrays
    had their own meanings, and still does: read as one element, a filter
    written then would change meaning, its $ne / $nin selecting nearly the
    whole scope (no element is "{a,b}"), a typo's blast radius. Checked
    against plain SQL through a preview and a delete run to its end."""
    array_table(conn)
    operand: Any = [value] if op in ("$in", "$nin") else value
    filter_ = json.dumps({"tags": {op: operand}})
    literal = value.replace("'", "''")
    condition = f"tags = '{literal}'::varchar(10)[]"
    if op in ("$ne", "$nin"):
        condition = f"NOT coalesce(({condition}), false)"
    expected = plain_ids_of(conn, condition)
    got = conn.execute("SELECT pgjobs.preview('a', '1', %s)", (filter_,)).fetchone()
    assert got is not None and got[0]["matches"] == len(expected), (got, expected)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('a', '1', %s)", (filter_,))
    run_pages(conn, job_id)
    kept = [r[0] for r in conn.execute("SELECT id FROM a WHERE s = 1 ORDER BY id")]
    assert kept == [i for i in range(1, 6) if i not in expected], (expected, kept)
    if op in ("$ne", "$nin"):
        assert len(expected) >= 3  # the whole array: the rows of other arrays go


@pytest.mark.parametrize(("value", "expected"),
                         [("[draft]", [2]), ("a=1", [3]), ("{", [4]), ("x}", [])])
def test_an_element_that_only_starts_like_an_array_is_an_element(
        conn: Conn, value: str, expected: list[int]) -> None:
    """Brackets that are no array literal's dimensions (a tag "[draft]"), a
    lone brace and other strings stay elements."""
    array_table(conn)
    conn.execute("UPDATE a SET tags = '{x,\"[draft]\"}' WHERE s = 1 AND id = 2")
    conn.execute("UPDATE a SET tags = '{\"a=1\"}' WHERE s = 1 AND id = 3")
    conn.execute("UPDATE a SET tags = '{\"{\"}' WHERE s = 1 AND id = 4")
    got = conn.execute("SELECT pgjobs.preview('a', '1', %s)",
                       (json.dumps({"tags": value}),)).fetchone()
    assert got is not None
    assert got[0]["matches"] == len(expected), got
    assert plain_ids_of(conn, f"'{value}' = ANY (tags)") == expected
