"""Round 39 adversarial pass over exports (h11).

A target column that bears the name of a statement's own alias for the row:
the JSONL export's COPY named the row of its sub-select ``o``
(``row_to_json(o)``) and pgjobs.visible named the target's row ``t``
(``to_jsonb(t)``). PostgreSQL resolves a bare name to a column before a
table's whole row, so a column named ``o`` (``t``) of a composite type made
every line that column's value (the job succeeded, ``rows`` right, every
other column lost), and of another type failed the export or the read
(``function row_to_json(text) does not exist``). The row is now named
``o.*`` / ``t.*``, which is only ever the whole row."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import jsonl_reference, plain_copy, run_export, submit_export
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

ALIASES = ["o", "t", "pgjobs_t"]


def _make(conn: Conn, column: str, column_type: str) -> None:
    conn.execute("CREATE TYPE pair AS (a int, b text)")
    build_target(conn, "things", f"id bigint PRIMARY KEY, scope int NOT NULL, "
                 f"created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', "
                 f"{column} {column_type}, note json")
    value = "(5,z)" if column_type == "pair" else "v"
    conn.cursor().executemany(
        f"INSERT INTO things (id, scope, {column}, note) VALUES (%s, 1, %s, %s)",
        [(i, value, '{"k":\n1}') for i in range(1, 8)])


def _expected(column: str, column_type: str) -> Any:
    return {"a": 5, "b": "z"} if column_type == "pair" else "v"


def _read(uri: str) -> list[dict[str, Any]]:
    with open(uri.removeprefix("file://"), encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().splitlines()]


@pytest.mark.parametrize("column_type", ["pair", "text"])
@pytest.mark.parametrize("column", ALIASES)
@pytest.mark.parametrize("options", [{}, {"columns": ["id", "{c}"]},
                                     {"chunk_rows": 2, "parallel": 2}],
                         ids=["all", "columns", "parallel"])
def test_jsonl_row_is_the_row_whatever_its_columns_are_named(
        conn: Conn, dsn: str, local_dir: str, column: str, column_type: str,
        options: dict[str, Any]) -> None:
    _make(conn, column, column_type)
    options = {k: ([c.format(c=column) for c in v] if k == "columns" else v)
               for k, v in options.items()}
    job = submit_export(conn, "1", {}, {"format": "jsonl", **options}, target="things")
    outcome = run_export(dsn, job, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    rows = _read(outcome.result["uri"])
    assert [r["id"] for r in rows] == list(range(1, 8))
    for r in rows:
        assert r[column] == _expected(column, column_type)
        if "columns" not in options:
            assert r["note"] == {"k": 1} and "created_at" in r


@pytest.mark.parametrize("column_type", ["pair", "text"])
@pytest.mark.parametrize("column", ALIASES)
def test_visible_row_is_the_row_whatever_its_columns_are_named(
        conn: Conn, column: str, column_type: str) -> None:
    _make(conn, column, column_type)
    rows = [r[0] for r in conn.execute(
        "SELECT * FROM pgjobs.visible('things', '1', '{}', NULL, 3)").fetchall()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert all(r[column] == _expected(column, column_type) and r["scope"] == 1 for r in rows)


@pytest.mark.parametrize("column", ALIASES + ["r"])
def test_csv_and_parquet_of_columns_named_like_aliases(conn: Conn, dsn: str, local_dir: str,
                                                      column: str) -> None:
    """The other formats name no row, and stay so (a guard): csv is the plain
    COPY's bytes, parquet has every column and row."""
    _make(conn, column, "pair")
    job = submit_export(conn, "1", {}, {"format": "csv", "chunk_rows": 3}, target="things")
    outcome = run_export(dsn, job, local_dir)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    with open(outcome.result["uri"].removeprefix("file://"), "rb") as f:
        assert f.read() == plain_copy(conn, "SELECT * FROM things WHERE scope = 1 ORDER BY id")
    assert jsonl_reference(conn, "SELECT * FROM things ORDER BY id")[0][column] == {"a": 5,
                                                                                   "b": "z"}
    pq = pytest.importorskip("pyarrow.parquet")
    job = submit_export(conn, "1", {}, {"format": "parquet"}, target="things")
    outcome = run_export(dsn, job, local_dir)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    tables = [pq.read_table(u.removeprefix("file://")) for u in outcome.result["uris"]]
    assert sum(t.num_rows for t in tables) == 7
    assert tables[0].column_names == ["id", "scope", "created_at", column, "note"]
    assert tables[0].column("id").to_pylist()[:1] == [1]
