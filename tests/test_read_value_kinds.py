"""Every value a table can hold is readable by every read path.

One table with a column per awkward type (json and json nested in arrays,
composites and domains; numerics, floats, infinite dates, bytea, control
characters, enums, ranges, arrays with NULLs and odd bounds, xml, money, ...)
and one scope per value kind: the kind's row beside an ordinary row. Each read
path reads each kind's scope: pgjobs.visible (a page, with and without a delete
pending on the scope, the mask path), pgjobs.visible_count, pgjobs.preview (and
`pgjobs delete --dry-run`, which prints it: no CLI command prints a target's
rows) and an export in csv, jsonl and parquet. The rule checked:

- visible returns to_jsonb of the plain row, except that a json value jsonb
  refuses (a \\u0000 escape, a lone surrogate, a number past numeric's range),
  wherever it sits (the column, a json[] element, a composite's field, a
  domain over json, a nested array of composites), comes back as a JSON string
  of its text (pgjobs._json_value_jsonb); the scope's other rows read as
  ever. jsonb keeps one member of duplicate keys and orders keys: visible
  returns jsonb and promises what to_jsonb gives.
- the jsonl export writes row_to_json of the plain row (json keeps duplicate
  keys, key order and every escape), csv writes what COPY writes, parquet what
  csv writes for a column it holds as a string.
- except that a column holding an array whose lower bounds are not all 1
  (BOUNDED) is its PostgreSQL text, a JSON string, in visible and jsonl, and
  parquet refuses it in a list column (tests/test_array_bounds.py has the
  class); so is a json[] holding a JSON array or a JSON null, or of two
  dimensions (AS_TEXT; tests/test_import_jsonl_nested.py has the class).

One database for the whole module: a case is a scope of its own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support.databases import admin_execute, database_name, with_database
from tests.support.exports import content, plain_copy, run_export, submit_export

Conn = psycopg.Connection[Any]

COLUMNS = """
  id bigint PRIMARY KEY, scope int NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
  v_json json, v_jarr json[], v_comp kv_comp, v_jdom kv_jdom, v_carr kv_comp[], v_nest kv_nest,
  v_num numeric, v_f8 float8, v_date date, v_ts timestamp, v_tstz timestamptz, v_iv interval,
  v_bytea bytea, v_text text, v_enum kv_mood, v_range int4range, v_mrange int4multirange,
  v_iarr int[], v_tarr text[], v_xml xml, v_money money, v_bit bit varying, v_tsv tsvector,
  v_point point, v_inet inet, v_cidr cidr, v_pos kv_pos, v_jsonb jsonb
"""
TYPES = """
  CREATE TYPE kv_comp AS (n int, j json);
  CREATE TYPE kv_nest AS (label text, items kv_comp[]);
  CREATE DOMAIN kv_jdom AS json;
  CREATE DOMAIN kv_pos AS int CHECK (VALUE > 0);
  CREATE TYPE kv_mood AS ENUM ('sad', 'ok', 'happy');
"""
NUL = r'{"a":"x\u0000y"}'
CONTROLS = "".join(chr(c) for c in range(1, 32)) + chr(127)

# (id, column, SQL value, what visible holds for the column when jsonb refuses
# a json value in it: None when to_jsonb of the plain row reads it)
KINDS: dict[str, tuple[str, str, Any]] = {
    "json_nul": ("v_json", f"'{NUL}'::json", NUL),
    "json_nul_in_array": ("v_jarr", f"ARRAY['{NUL}'::json, '[1]', NULL]", [NUL, [1], None]),
    "json_nul_in_composite": ("v_comp", f"ROW(7, '{NUL}')::kv_comp", {"n": 7, "j": NUL}),
    "json_nul_in_domain": ("v_jdom", f"'{NUL}'::kv_jdom", NUL),
    "json_nul_in_composite_array": (
        "v_carr", f"ARRAY[ROW(1, '{NUL}'), ROW(2, '{{}}'), NULL, ROW(NULL, NULL)]::kv_comp[]",
        [{"n": 1, "j": NUL}, {"n": 2, "j": {}}, None, {"n": None, "j": None}]),
    "json_nul_nested": (
        "v_nest", f"ROW('L', ARRAY[ROW(1, '{NUL}')]::kv_comp[])::kv_nest",
        {"label": "L", "items": [{"n": 1, "j": NUL}]}),
    "json_nul_2d_array": ("v_jarr", f"ARRAY[['{NUL}'::json, '1'::json], ['2'::json, 'null'::json]]",
                          [[NUL, 1], [2, None]]),
    # (in an array literal a backslash escapes: \\u0000 is json's \u0000)
    "json_nul_array_bounds": ("v_jarr", r"""'[0:1]={1,"{\"a\":\"x\\u0000y\"}"}'::json[]""",
                              [1, NUL]),
    "json_lone_surrogate": ("v_json", r"""'"\ud800"'::json""", r'"\ud800"'),
    "json_lone_surrogate_in_array": ("v_jarr", r"""ARRAY['["\udc00"]'::json]::json[]""",
                                     [r'["\udc00"]']),
    "json_huge_number": ("v_json", "('1e' || 200000)::json", "1e200000"),
    "json_duplicate_keys": ("v_json", """'{"b":1,"a":2,"b":3}'::json""", None),
    "json_duplicate_keys_in_composite": ("v_comp", """ROW(1, '{"b":1,"a":2,"b":3}')::kv_comp""",
                                         None),
    "json_plain_in_array": ("v_jarr", """ARRAY['{"z":1,"a":[true]}'::json]""", None),
    "jsonb_value": ("v_jsonb", """'{"a":"x","n":1.50}'::jsonb""", None),
    "numeric_nan": ("v_num", "'NaN'::numeric", None),
    "numeric_infinity": ("v_num", "'-Infinity'::numeric", None),
    "numeric_1000_digits": ("v_num", "(repeat('9', 1000) || '.' || repeat('1', 300))::numeric",
                            None),
    "float8_nan": ("v_f8", "'NaN'::float8", None),
    "float8_minus_zero": ("v_f8", "'-0'::float8", None),
    "float8_infinity": ("v_f8", "'Infinity'::float8", None),
    "float8_tiny": ("v_f8", "4.9e-324::float8", None),
    "date_infinity": ("v_date", "'infinity'::date", None),
    "date_bc": ("v_date", "'0044-03-15 BC'::date", None),
    "timestamp_minus_infinity": ("v_ts", "'-infinity'::timestamp", None),
    "timestamp_bc": ("v_ts", "'4713-01-01 00:00:00 BC'::timestamp", None),
    "timestamptz_infinity": ("v_tstz", "'infinity'::timestamptz", None),
    "interval": ("v_iv", "'-1 year 2 mons 3 days -04:05:06.789'::interval", None),
    "bytea_zero_bytes": ("v_bytea", "'\\x00ff00'::bytea", None),
    "text_control_chars": ("v_text", "$t$" + CONTROLS + "\\\"',;$t$", None),
    "text_unicode": ("v_text", "'é✓\U0001F600 \u2028'", None),
    "enum": ("v_enum", "'happy'::kv_mood", None),
    "range": ("v_range", "'[1,10)'::int4range", None),
    "range_empty": ("v_range", "'empty'::int4range", None),
    "multirange": ("v_mrange", "'{[1,3), [5,)}'::int4multirange", None),
    "int_array_nulls": ("v_iarr", "'{1,NULL,3}'::int[]", None),
    "int_array_bounds": ("v_iarr", "'[0:1]={1,2}'::int[]", None),
    "int_array_2d": ("v_iarr", "'{{1,2},{3,NULL}}'::int[]", None),
    "int_array_empty": ("v_iarr", "'{}'::int[]", None),
    "text_array_nulls": ("v_tarr", """ARRAY['a', NULL, 'NULL', '"q"', '']""", None),
    "xml": ("v_xml", "'<a x=\"1\">t&amp;</a>'::xml", None),
    "money": ("v_money", "'-12.34'::money", None),
    "bit_varying": ("v_bit", "B'10110'", None),
    "tsvector": ("v_tsv", "'a:1 fat:2B cat'::tsvector", None),
    "point": ("v_point", "'(1.5,-2)'::point", None),
    "inet": ("v_inet", "'::ffff:1.2.3.4/96'::inet", None),
    "cidr": ("v_cidr", "'10.0.0.0/8'::cidr", None),
    "domain_check": ("v_pos", "42::kv_pos", None),
}
# What a Parquet column cannot store: the export fails naming the column, the
# value and what to do (pgjobs._parquet_refuse), never with a converter's words.
PARQUET_REFUSES = {"date_infinity": "infinity", "timestamp_minus_infinity": "-infinity",
                   "timestamptz_infinity": "infinity",
                   "json_nul_2d_array": "a 2-dimensional array",
                   "int_array_2d": "a 2-dimensional array"}
# Kinds whose value holds an array not starting at 1: its text in visible and
# jsonl, a JSON string (to_jsonb and row_to_json drop the bounds).
BOUNDED = {"json_nul_array_bounds", "int_array_bounds"}
PARQUET_REFUSES.update({kind: "an array starting at index 0" for kind in BOUNDED})
# Kinds whose json[] holds a JSON array or a JSON null, or has two dimensions:
# its PostgreSQL text too, in visible and jsonl (JSON would write a JSON null
# as SQL NULL's null, and an element's array as another dimension).
AS_TEXT = BOUNDED | {"json_nul_in_array", "json_nul_2d_array", "json_lone_surrogate_in_array"}
SCOPES = {kind: n for n, kind in enumerate(KINDS, start=1)}


@pytest.fixture(scope="module")
def kinds_dsn(cluster_url: str, template_dsn: str) -> Iterator[str]:
    """One database for the module: table kv, a scope per kind (key 2n: the
    kind's row; key 2n-1: an ordinary row beside it)."""
    from tests.conftest import TEMPLATE

    name = database_name("kinds")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    dsn = with_database(cluster_url, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TYPES)
        conn.execute(f"CREATE TABLE kv ({COLUMNS})")
        conn.execute("CREATE INDEX ON kv (scope, id)")
        conn.execute("CREATE INDEX ON kv (scope, created_at)")
        conn.execute("SELECT pgjobs.register_target('kv'::regclass, 'id', 'scope', "
                     "'created_at', NULL, '{}'::jsonb)")
        for kind, (column, value, _) in KINDS.items():
            n = SCOPES[kind]
            conn.execute(f"INSERT INTO kv (id, scope, v_text) VALUES ({2 * n - 1}, {n}, 'plain')")
            conn.execute(f"INSERT INTO kv (id, scope, {column}) VALUES ({2 * n}, {n}, {value})")
    yield dsn
    admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def kconn(kinds_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(kinds_dsn, autocommit=True) as conn:
        yield conn


def plain_rows(conn: Conn, n: int) -> list[dict[str, Any]]:
    """The scope's rows as visible must give them (the rule in the docstring)."""
    kind = list(KINDS)[n - 1]
    column, _, refused = KINDS[kind]
    rows = []
    for key in (2 * n - 1, 2 * n):
        if key == 2 * n and refused is not None:
            # to_jsonb of the plain row fails: every other column as to_jsonb
            # has it, the column as the rule says.
            others = ", ".join(c.strip().split()[0] for c in COLUMNS.split(",")
                               if c.strip() and c.strip().split()[0] != column)
            row = conn.execute(f"SELECT to_jsonb(r.*) FROM (SELECT {others} FROM kv"
                               f" WHERE id = {key}) r").fetchone()
            assert row is not None
            rows.append({**row[0], column: refused})
        else:
            row = conn.execute(f"SELECT to_jsonb(r.*) FROM kv r WHERE id = {key}").fetchone()
            assert row is not None
            rows.append(row[0])
        if key == 2 * n and kind in AS_TEXT:
            text = conn.execute(f"SELECT {column}::text FROM kv WHERE id = {key}").fetchone()
            assert text is not None
            rows[-1] = {**rows[-1], column: text[0]}
    return rows


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "delete_pending"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_visible_reads_every_value(kconn: Conn, kind: str, masked: bool) -> None:
    n = SCOPES[kind]
    with kconn.transaction(force_rollback=True):
        if masked:
            # A pending delete of nothing: the page reads through the mask.
            kconn.execute("SELECT pgjobs.submit_delete('kv', %s, '{\"id\": -1}')", (str(n),))
        page = [r[0] for r in kconn.execute("SELECT * FROM pgjobs.visible('kv', %s)", (str(n),))]
        assert page == plain_rows(kconn, n)
        # a page that starts at the row, and one past it
        after = [r[0] for r in kconn.execute(
            "SELECT * FROM pgjobs.visible('kv', %s, '{}', %s)", (str(n), str(2 * n - 1)))]
        assert after == plain_rows(kconn, n)[1:]
        count = kconn.execute("SELECT pgjobs.visible_count('kv', %s)", (str(n),)).fetchone()
        assert count is not None and count[0] == 2


@pytest.mark.parametrize("kind", list(KINDS))
def test_preview_reads_every_value(kconn: Conn, kind: str) -> None:
    n = SCOPES[kind]
    row = kconn.execute("SELECT pgjobs.preview('kv', %s, '{}')", (str(n),)).fetchone()
    assert row is not None
    assert row[0]["matches"] == 2
    assert sorted(row[0]["sample"]) == sorted([str(2 * n - 1), str(2 * n)])


@pytest.mark.parametrize("kind", [k for k, v in KINDS.items() if v[2] is not None])
def test_cli_dry_run_reads_every_value(kconn: Conn, kinds_dsn: str, kind: str) -> None:
    # The CLI prints no target row itself: `pgjobs delete --dry-run` prints
    # the preview (its sample is of keys) and writes nothing. The kinds whose
    # json jsonb refuses (a CLI run costs a second: the preview test has all).
    n = SCOPES[kind]
    result = CliRunner().invoke(main, ["--dsn", kinds_dsn, "delete", "kv", "--scope", str(n),
                                       "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["matches"] == 2
    assert sorted(shown["sample"]) == sorted([str(2 * n - 1), str(2 * n)])


def json_text(text: str) -> Any:
    """JSON parsed keeping every member of an object, in order."""
    return json.loads(text, object_pairs_hook=list)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_export_writes_every_value(kconn: Conn, kinds_dsn: str, local_dir: str,
                                   kind: str, fmt: str) -> None:
    n = SCOPES[kind]
    column = KINDS[kind][0]
    job_id = submit_export(kconn, str(n), {}, {"format": fmt}, target="kv")
    outcome = run_export(kinds_dsn, job_id, local_dir)
    if fmt == "parquet" and kind in PARQUET_REFUSES:
        assert outcome.status == "failed", outcome
        assert outcome.error is not None
        assert (f"column {column} holds {PARQUET_REFUSES[kind]}, which a Parquet"
                in outcome.error), outcome.error
        assert "csv or jsonl" in outcome.error, outcome.error
        return
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    data = content(outcome.result) if fmt != "parquet" else b""
    select = f"SELECT * FROM kv WHERE scope = {n} ORDER BY id"
    if fmt == "csv":
        assert data == plain_copy(kconn, select)
    elif fmt == "jsonl":
        expected = [json_text(r[0]) for r in kconn.execute(
            f"SELECT row_to_json(r.*)::text FROM ({select}) r")]
        if kind in AS_TEXT:
            text = kconn.execute(f"SELECT {column}::text FROM kv WHERE id = {2 * n}").fetchone()
            assert text is not None
            expected[1] = [(k, text[0] if k == column else v) for k, v in expected[1]]
        assert [json_text(line) for line in data.decode().split("\n")[:-1]] == expected
    else:
        import pyarrow.parquet as pq

        from pgjobs.poller import storage

        columns = [pq.read_table(storage.parse(u).path).column(column)
                   for u in outcome.result["uris"]]
        got = [v for c in columns for v in (c.to_pylist() if c.type == "string" else [])]
        reference = list(csv.DictReader(io.StringIO(plain_copy(kconn, select).decode())))
        # A column parquet holds as a string: the text csv writes.
        if got:
            assert [v if v is not None else "" for v in got] == [r[column] for r in reference]
