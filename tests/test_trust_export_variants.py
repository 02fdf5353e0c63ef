"""A succeeded export holds exactly the rows it promised, byte for byte: the
variants an outside checker tries next, over file:// and S3 (moto, staged
parts), CSV, JSON Lines (each plain and gzip) and Parquet, one stream and
``parallel: 2``.

- ``empty``: a scope with no rows; the object(s) hold the header only (CSV),
  nothing (JSONL) or one schema-only file (Parquet), and the result says 0.
- ``huge-row``: one row larger than a part and than a chunk's byte bound
  (1.2 MiB among rows of a few hundred bytes, ``part_size`` 1 KiB).
- ``same-prefix``: two exports of the same scope to the same destination at
  the same time, on two threads: two objects, each the whole scope.

Each checks the stored bytes against the result's ``bytes`` and ``sha256``,
and the content against an independent reference: a plain COPY (CSV), the
rows' ``to_jsonb`` (JSONL), pyarrow and DuckDB (Parquet)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.poller import storage
from tests.support import (
    build_target,
    jsonl_reference,
    make_items,
    plain_copy,
    run_export,
    submit_export,
)

Conn = psycopg.Connection[Any]

FORMATS = {
    "csv": {"format": "csv"},
    "csv-gzip": {"format": "csv", "gzip": True},
    "jsonl": {"format": "jsonl"},
    "jsonl-gzip": {"format": "jsonl", "gzip": True},
    "parquet": {"format": "parquet"},
}
SMALL = {"chunk_rows": 7, "part_size": 1024}


def _prefix(request: pytest.FixtureRequest, store: str) -> str:
    return str(request.getfixturevalue("local_dir" if store == "file" else "bucket"))


def _stored(result: dict[str, Any]) -> list[bytes]:
    """Every object the result names, checked against its bytes and sha256 (of
    the objects' bytes in order)."""
    blobs = [storage.read(u) for u in result["uris"]]
    whole = b"".join(blobs)
    assert len(whole) == result["bytes"]
    assert hashlib.sha256(whole).hexdigest() == result["sha256"]
    return blobs


def _check(conn: Conn, result: dict[str, Any], options: dict[str, Any], select: str,
           tmp_path: Path) -> None:
    """The result's objects hold exactly the rows of ``select``, as an
    independent reader reads them."""
    expected_rows = len(conn.execute(select).fetchall())
    assert result["rows"] == expected_rows
    blobs = _stored(result)
    if options["format"] == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        pa = pytest.importorskip("pyarrow")
        table = pa.concat_tables([pq.read_table(io.BytesIO(b)) for b in blobs])
        source = conn.execute(f"SELECT id, tenant, note, noise FROM ({select}) s").fetchall()
        got = list(zip(*(table.column(c).to_pylist()
                         for c in ("id", "tenant", "note", "noise")), strict=True))
        assert got == source
        duckdb = pytest.importorskip("duckdb")
        files = []
        for i, b in enumerate(blobs):
            path = tmp_path / f"read-{i:05d}.parquet"
            path.write_bytes(b)
            files.append(str(path))
        rows = duckdb.sql(f"SELECT id, note FROM read_parquet({files!r})").fetchall()
        assert rows == [(r[0], r[2]) for r in source]
        return
    data = b"".join(blobs)
    if options.get("gzip"):
        data = gzip.decompress(data)
    if options["format"] == "csv":
        assert data == plain_copy(conn, select)
    else:
        assert [json.loads(line) for line in data.splitlines()] == jsonl_reference(conn, select)
        assert data == b"" or data.endswith(b"\n")


def _exactly(conn: Conn, dsn: str, prefix: str, scope: str, options: dict[str, Any],
             tmp_path: Path) -> None:
    """An export of ``scope`` succeeds holding exactly the scope's rows."""
    out = run_export(dsn, submit_export(conn, scope, {}, options), prefix)
    assert out.status == "succeeded", out.error
    assert out.result is not None
    _check(conn, out.result, options,
           f"SELECT * FROM items WHERE tenant = {int(scope)} ORDER BY id", tmp_path)


@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("store", ["file", "s3"])
@pytest.mark.parametrize("case", ["empty", "huge-row"])
def test_an_empty_scope_or_a_row_larger_than_a_part_is_exported_exactly(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, tmp_path: Path,
        case: str, store: str, fmt: str, parallel: int) -> None:
    """``empty``: scope 7 has no rows. ``huge-row``: row 31 (tenant 1,
    mid-scope) holds 1.2 MiB of poorly compressible text, past part_size and
    past the 1 MiB floor of a chunk's byte bound."""
    make_items(conn, rows=60)
    if case == "huge-row":
        conn.execute("UPDATE items SET note = (SELECT string_agg(md5(g::text), '') "
                     "FROM generate_series(1, 40000) g) || E'\\n\"end\"' WHERE id = 31")
    _exactly(conn, dsn, _prefix(request, store), "7" if case == "empty" else "1",
             {**FORMATS[fmt], **SMALL, "parallel": parallel}, tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("store", ["file", "s3"])
def test_two_exports_to_one_prefix_at_once_each_hold_the_whole_scope(
        conn: Conn, dsn: str, request: pytest.FixtureRequest, tmp_path: Path,
        store: str, fmt: str) -> None:
    make_items(conn, rows=300)
    prefix = _prefix(request, store)
    options = {**FORMATS[fmt], **SMALL}
    jobs = [submit_export(conn, "1", {}, options) for _ in range(2)]
    outcomes: dict[int, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(job_id: int) -> None:
        try:
            start.wait()
            outcomes[job_id] = run_export(dsn, job_id, prefix)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    results = []
    for job_id in jobs:
        out = outcomes[job_id]
        assert out.status == "succeeded", out.error
        assert out.result is not None
        results.append(out.result)
    assert set(results[0]["uris"]).isdisjoint(results[1]["uris"])
    for result in results:
        _check(conn, result, options, "SELECT * FROM items WHERE tenant = 1 ORDER BY id",
               tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_that_are_not_utf8_fail_the_export_saying_so(
        cluster_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """A SQL_ASCII database stores any bytes (0xff, a lone 0xe9). An export
    (written in UTF8) of a scope holding them fails saying which bytes, in
    every format, never succeeds with other bytes; a scope of the same
    database without them is exported exactly."""
    from pgjobs.migrate import migrate
    from tests.support.databases import admin_execute, database_name, with_database

    # Sessions in UTF8, as the export's data connection is (`pgjobs migrate`
    # in a SQL_ASCII session fails: see h184's report).
    monkeypatch.setenv("PGCLIENTENCODING", "UTF8")
    name = database_name("ascii")
    admin_execute(cluster_url, f"CREATE DATABASE {name} TEMPLATE template0 "
                  "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        dsn = with_database(cluster_url, name)
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            build_target(conn, "items", "id bigint PRIMARY KEY, tenant int NOT NULL, "
                         "created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', "
                         "note text, doc jsonb", scope="tenant")
            # Tenant 1 (odd ids) holds bytes that are not UTF-8, in a text
            # column and in a document; tenant 0 only ASCII.
            conn.execute(r"""INSERT INTO items (id, tenant, note, doc)
                SELECT g, g % 2, CASE WHEN g % 4 = 1 THEN E'caf\xe9 \xff\xfe end'
                                      ELSE 'plain, "q" ' || g END,
                       jsonb_build_object('s', CASE WHEN g % 6 = 3 THEN E'\xff' ELSE 'x' END)
                  FROM generate_series(1, 40) g""")
            options = {**FORMATS[fmt], **SMALL}
            bad = run_export(dsn, submit_export(conn, "1", {}, options), f"file://{tmp_path}/x")
            assert bad.status == "failed", bad.result
            assert "invalid byte sequence" in str(bad.error)
            out = run_export(dsn, submit_export(conn, "0", {}, options), f"file://{tmp_path}/x")
            assert out.status == "succeeded", out.error
            assert out.result is not None
            if fmt == "parquet":
                assert out.result["rows"] == 20
                _stored(out.result)
                return
            _check(conn, out.result, options, "SELECT * FROM items WHERE tenant = 0 ORDER BY id",
                   tmp_path)
    finally:
        admin_execute(cluster_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _records(result: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The records of the result's objects, each as a dict of its columns."""
    blobs = _stored(result)
    if fmt == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        return [r for b in blobs for r in pq.read_table(io.BytesIO(b)).to_pylist()]
    data = b"".join(blobs)
    if result.get("gzip"):
        data = gzip.decompress(data)
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines()]
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    return [dict(zip(rows[0], (int(r[0]), *r[1:]), strict=True)) for r in rows[1:]]


@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_writes_during_the_export_never_lose_a_row_nobody_touched(
        conn: Conn, dsn: str, make_conn: Any, local_dir: str, monkeypatch: pytest.MonkeyPatch,
        fmt: str, parallel: int) -> None:
    """Before each chunk begins, another session deletes a row of the scope,
    updates another's note, inserts a row created now (after the cutoff:
    never exported) and one created an hour ago (either way), and once, a
    delete job of the scope's kind-b rows is submitted (the mask: its rows
    are left out of the chunks read after it). The export succeeds; its
    result counts exactly the records its objects hold, each key once in
    key order; every row of the scope nobody touched is there, as stored;
    nothing created after the submit is."""
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {"format": fmt, "chunk_rows": 7, "part_size": 1024,
                                           "parallel": parallel})
    at_submit = [r[0] for r in conn.execute("SELECT id FROM items WHERE tenant = 1 ORDER BY id")]
    writer = make_conn()
    lock = threading.Lock()
    touched: set[int] = set()
    late: set[int] = set()
    turn = iter(range(10_000))

    def churn() -> None:
        with lock:
            i = next(turn)
            gone, changed = at_submit[(i * 7) % len(at_submit)], at_submit[(i * 11 + 3) % 300 // 3]
            touched.update((gone, changed))
            writer.execute("DELETE FROM items WHERE id = %s", (gone,))
            writer.execute("UPDATE items SET note = note || ' changed' WHERE id = %s", (changed,))
            # Keys between the scope's keys (ids of tenant 1 are 1 mod 3 below 300).
            writer.execute("INSERT INTO items (id, tenant, created_at, note) VALUES "
                           "(%s, 1, now(), 'late'), (%s, 1, now() - interval '1 hour', 'old')",
                           (1000 + 2 * i, 1001 + 2 * i))
            late.add(1000 + 2 * i)
            if i == 3:
                writer.execute("SELECT pgjobs.submit_delete('items'::regclass, '1', "
                               "'{\"kind\": \"b\"}'::jsonb)")

    begin, copy_then_begin = db.begin_chunk, db.copy_then_begin

    def begin_churned(*args: Any, **kwargs: Any) -> Any:
        churn()
        return begin(*args, **kwargs)

    def copy_then_begin_churned(*args: Any, **kwargs: Any) -> Any:
        churn()
        return copy_then_begin(*args, **kwargs)

    monkeypatch.setattr(db, "begin_chunk", begin_churned)
    monkeypatch.setattr(db, "copy_then_begin", copy_then_begin_churned)
    out = run_export(dsn, job_id, local_dir)
    monkeypatch.undo()
    assert out.status == "succeeded", out.error
    assert out.result is not None
    records = _records(out.result, fmt)
    keys = [int(r["id"]) for r in records]
    assert out.result["rows"] == len(records)
    assert keys == sorted(set(keys))
    assert next(turn) > 4, "the export read too few chunks to be attacked"
    assert not late & set(keys)
    masked = {r[0] for r in conn.execute("SELECT id FROM items WHERE doc->>'kind' = 'b'")}
    untouched = [k for k in at_submit if k not in touched and k not in masked]
    assert set(untouched) <= set(keys)
    # The scope's last keys are read long after the delete job was submitted.
    assert masked & set(at_submit[-10:])
    assert not masked & set(at_submit[-10:]) & set(keys)
    if fmt == "jsonl":
        stored = {r["id"]: r for r in jsonl_reference(
            conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")}
        assert [r for r in records if r["id"] in set(untouched)] == [
            stored[k] for k in untouched]

