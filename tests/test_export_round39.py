"""Round 39 adversarial pass over exports (h11).

A target column that bears the name of a statement's own alias for the row:
the JSONL export's COPY named the row of its sub-select ``o``
(``row_to_json(o)``) and pgjobs.visible named the target's row ``t``
(``to_jsonb(t)``). PostgreSQL resolves a bare name to a column before a
table's whole row, so a column named ``o`` (``t``) of a composite type made
every line that column's value (the job succeeded, ``rows`` right, every
other column lost), and of another type failed the export or the read
(``function row_to_json(text) does not exist``). The row is now named
``o.*`` / ``t.*``, which is only ever the whole row.

An export's first attempt wrote over an object already at its key (another
pgjobs database's job of the same id, writing to the same storage) and
succeeded: the other job's result no longer described storage. Such a key is
now refused (42710) before anything is written."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest

from tests.support import jsonl_reference, make_items, plain_copy, run_export, submit_export
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
@pytest.mark.parametrize("column", ALIASES + ["x"])  # x: the row of a target with json columns
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



@pytest.mark.parametrize("options", [
    {"format": "csv"}, {"format": "jsonl", "gzip": True}, {"format": "parquet"},
    {"format": "csv", "parallel": 2, "chunk_rows": 10},
    {"format": "parquet", "parallel": 2, "chunk_rows": 10}],
    ids=["csv", "jsonl-gz", "parquet", "parallel-csv", "parallel-parquet"])
def test_two_databases_sharing_storage_keep_each_export_s_objects(
        fresh_database: Any, local_dir: str, options: dict[str, Any]) -> None:
    """Two pgjobs databases (staging and production, or a database restored
    from a backup beside the one it came from) whose workers write to one
    storage: each numbers its jobs from 1, so job 1 of each names the same
    object ({target}/{scope}/1.csv) or Parquet folder. The second export
    replaced the first's object and succeeded, and the first job's result
    (sha256, bytes) no longer described what storage held. The second now
    fails for good (42710, with a hint) before writing anything."""
    if options["format"] == "parquet":
        pytest.importorskip("pyarrow")
    outcomes = []
    for rows in (300, 30):
        dsn = fresh_database()
        with psycopg.connect(dsn, autocommit=True) as conn:
            make_items(conn, rows=rows)
            job = submit_export(conn, "1", {}, options)
        outcomes.append(run_export(dsn, job, local_dir))
    first, second = outcomes
    assert first.job_id == second.job_id  # the same key: the case at hand
    assert first.status == "succeeded" and first.result is not None, first
    assert second.status == "failed", second
    assert second.error is not None and "[42710]" in second.error
    assert "a folder of their own" in second.error and "pgjobs.retry(" in second.error
    for uri in first.result["uris"]:
        with open(uri.removeprefix("file://"), "rb") as f:
            data = f.read()
        if len(first.result["uris"]) == 1:
            assert hashlib.sha256(data).hexdigest() == first.result["sha256"]
            assert len(data) == first.result["bytes"]
    if options["format"] == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        assert sum(pq.read_table(u.removeprefix("file://")).num_rows
                   for u in first.result["uris"]) == first.result["rows"] == 100


def test_an_export_that_wrote_its_object_finishes_again_after_a_retry(
        conn: Conn, dsn: str, local_dir: str) -> None:
    """The refusal is of objects this job did not write: a job whose
    checkpoint names its key (here: succeeded, reset to run again from its
    checkpoint as a retry would) writes over its own object."""
    make_items(conn)
    job = submit_export(conn, "1", {}, {"format": "csv"})
    first = run_export(dsn, job, local_dir)
    assert first.status == "succeeded", first
    conn.execute("UPDATE pgjobs.jobs SET status = 'queued', result = NULL, finished_at = NULL, "
                 "checkpoint = jsonb_build_object('v', checkpoint -> 'v', 'uri', %s::text) "
                 "WHERE id = %s", [first.result["uri"] if first.result else None, job])
    again = run_export(dsn, job, local_dir)
    assert again.status == "succeeded", again
    assert again.result is not None and first.result is not None
    assert again.result["sha256"] == first.result["sha256"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_two_databases_sharing_a_bucket_keep_each_export_s_objects(
        fresh_database: Any, bucket: str, fmt: str) -> None:
    """The same on S3 (moto): the second job's HEAD (a listing, for a Parquet
    folder) finds the first's object, and the second fails, writing nothing."""
    from tests.support import object_bytes
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    outcomes = []
    for rows in (300, 30):
        dsn = fresh_database()
        with psycopg.connect(dsn, autocommit=True) as conn:
            make_items(conn, rows=rows)
            job = submit_export(conn, "1", {}, {"format": fmt})
        outcomes.append(run_export(dsn, job, bucket))
    first, second = outcomes
    assert first.status == "succeeded" and first.result is not None, first
    assert second.status == "failed" and "[42710]" in (second.error or ""), second
    if fmt == "csv":
        assert len(object_bytes(first.result)) == first.result["bytes"]  # and its sha256
