"""One export, many workers (option `parallel`): the scope's key range is split
into parts, each claimed, leased, fenced and checkpointed on its own; CSV and
JSONL come out as one object byte-identical to a `parallel: 1` export."""


from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import (
    content,
    job,
    leftovers,
    make_items,
    object_bytes,
    part_rows,
    plain_copy,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]
SMALL = {"chunk_rows": 7, "part_size": 1024}
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"


@pytest.mark.parametrize("options", [
    {}, {"format": "jsonl"}, {"gzip": True}, {"columns": ["id", "s", "note"]},
    {"format": "jsonl", "gzip": True},
], ids=["csv", "jsonl", "csv-gzip", "columns", "jsonl-gzip"])
@pytest.mark.parametrize("parallel", [2, 3])
def test_parallel_object_is_the_parallel_1_object(
        conn: Conn, dsn: str, local_dir: str, options: dict[str, Any], parallel: int) -> None:
    make_items(conn, rows=600)
    one = run_export(dsn, submit_export(conn, "1", {}, {**SMALL, **options}), local_dir)
    job_id = submit_export(conn, "1", {}, {**SMALL, **options, "parallel": parallel})
    many = run_export(dsn, job_id, local_dir)
    assert one.status == "succeeded" and many.status == "succeeded", many.error
    assert one.result is not None and many.result is not None
    if options.get("gzip"):
        # Gzip members end at other places: the same bytes once decompressed.
        assert content(many.result) == content(one.result)
    else:
        assert object_bytes(many.result) == object_bytes(one.result)
    if not options:
        assert object_bytes(many.result) == plain_copy(conn, REFERENCE)
    assert many.result["rows"] == one.result["rows"] == 200
    assert many.result["uris"] == [many.result["uri"]]
    got = part_rows(conn, job_id)
    assert len(got) == parallel
    assert all(p["status"] == "succeeded" for p in got)
    # Sized evenly: 200 keys in N ranges.
    assert max(p["done"] for p in got) - min(p["done"] for p in got) <= 1
    row = job(conn, job_id)
    assert row["done"] == 200 and row["status"] == "succeeded"
    # The parts' objects are gone: only the two exports are left.
    assert leftovers(local_dir, {one.result["uri"], many.result["uri"]}) == []


def test_parallel_with_a_filter_and_an_empty_scope(conn: Conn, dsn: str, local_dir: str) -> None:
    make_items(conn, rows=90)
    for scope, filter_ in (("1", {"kind": "a"}), ("7", {})):
        one = run_export(dsn, submit_export(conn, scope, filter_, {
            **SMALL, "allow_unknown_fields": True}), local_dir)
        many = run_export(dsn, submit_export(conn, scope, filter_, {
            **SMALL, "allow_unknown_fields": True, "parallel": 4}), local_dir)
        assert one.result is not None and many.result is not None, many.error
        assert object_bytes(many.result) == object_bytes(one.result)


def test_parallel_option_is_validated(conn: Conn) -> None:
    make_items(conn, rows=10)
    for bad in (0, 65, "2", 1.5, None, True):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
            submit_export(conn, "1", {}, {"parallel": bad})
        assert "parallel" in str(err.value)
    # Parquet in parallel: accepted (tests/test_export_parquet_parallel.py).
    parquet = submit_export(conn, "1", {}, {"format": "parquet", "parallel": 2})
    assert job(conn, parquet)["payload"]["parallel"] == 2
    job_id = submit_export(conn, "1", {}, {"parallel": 3})
    assert job(conn, job_id)["payload"]["parallel"] == 3
    assert job(conn, submit_export(conn, "1", {}, {}))["payload"]["parallel"] == 1


def test_parallel_on_s3_is_one_object(conn: Conn, dsn: str, bucket: str) -> None:
    make_items(conn, rows=600)
    one = run_export(dsn, submit_export(conn, "1", {}, {**SMALL, "format": "jsonl"}), bucket)
    many = run_export(dsn, submit_export(conn, "1", {}, {**SMALL, "format": "jsonl",
                                                         "parallel": 2}), bucket)
    assert one.result is not None and many.result is not None, many.error
    assert object_bytes(many.result) == object_bytes(one.result)
    assert [json.loads(x)["id"] for x in object_bytes(many.result).splitlines()][:2] == [1, 4]
