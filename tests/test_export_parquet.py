"""Parquet exports: every file read back with pyarrow and with DuckDB, values and
types compared with the source rows; options validated at submit; files cut by
size and resumed at file boundaries (in-process and after a SIGKILL); a worker
without pyarrow fails the job naming the extra."""


from __future__ import annotations

import json
import math
import os
import signal
import sys
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.worker import Worker
from tests.support import expire_leases, job, run_export, start_worker, submit_export, wait_for

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")

Conn = psycopg.Connection[Any]

COLUMNS = ["id", "tenant", "created_at", "i2", "i4", "f4", "f8", "ok", "price", "wide", "free",
           "note", "ch", "d", "ts", "t", "u", "b", "ints", "texts", "nums", "doc", "js", "mood"]

EXPECTED_ARROW = {
    "id": pa.int64(), "tenant": pa.int32(), "created_at": pa.timestamp("us", tz="UTC"),
    "i2": pa.int16(), "i4": pa.int32(), "f4": pa.float32(), "f8": pa.float64(),
    "ok": pa.bool_(), "price": pa.decimal128(12, 3), "wide": pa.decimal256(50, 10),
    "free": pa.string(), "note": pa.string(), "ch": pa.string(), "d": pa.date32(),
    "ts": pa.timestamp("us"), "t": pa.time64("us"), "u": pa.uuid(), "b": pa.binary(),
    "ints": pa.list_(pa.int32()), "texts": pa.list_(pa.string()),
    "nums": pa.list_(pa.string()), "doc": pa.json_(pa.string()), "js": pa.json_(pa.string()),
    "mood": pa.string(),
}

DUCK_TYPES = {
    "id": "BIGINT", "tenant": "INTEGER", "created_at": "TIMESTAMP WITH TIME ZONE",
    "i2": "SMALLINT", "i4": "INTEGER", "f4": "FLOAT", "f8": "DOUBLE", "ok": "BOOLEAN",
    "price": "DECIMAL(12,3)", "note": "VARCHAR", "d": "DATE", "ts": "TIMESTAMP",
    "t": "TIME", "u": "UUID", "b": "BLOB", "ints": "INTEGER[]", "texts": "VARCHAR[]",
}


def make_typed(conn: Conn, rows: int = 200) -> None:
    """Table `typed`: one column per type the mapping knows, with NULLs, extremes,
    NaN and infinities, dates before 1970 and hostile text."""
    conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    conn.execute("""
        CREATE TABLE typed (
            id bigint PRIMARY KEY, tenant integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
            i2 smallint, i4 integer, f4 real, f8 double precision, ok boolean,
            price numeric(12,3), wide numeric(50,10), free numeric, note text, ch char(4),
            d date, ts timestamp, t time, u uuid, b bytea, ints int[], texts text[],
            nums numeric[], doc jsonb, js json, mood mood)""")
    conn.execute("CREATE INDEX typed_tenant_id ON typed (tenant, id)")
    conn.execute("SELECT pgjobs.register_target('typed', 'id', 'tenant', 'created_at', 'doc')")
    conn.execute("""
        INSERT INTO typed
        SELECT g, g % 2, now() - interval '1 hour' - g * interval '1 second 7 microseconds',
               CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 13 % 65535 - 32767)::smallint END,
               CASE WHEN g = 2 THEN 2147483647 WHEN g = 4 THEN -2147483648 ELSE g * 1001 END,
               CASE g % 5 WHEN 0 THEN 'NaN'::real WHEN 1 THEN 'Infinity'::real
                          ELSE g / 3.0 END,
               CASE g % 6 WHEN 0 THEN '-Infinity'::float8 WHEN 1 THEN NULL
                          ELSE g * 1.1e300 / 1e300 END,
               CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
               CASE WHEN g % 4 = 0 THEN NULL ELSE (g * 12345.678 - 1e6)::numeric(12,3) END,
               (g::numeric * 1e30 + 0.0123456789)::numeric(50,10) * (CASE WHEN g % 2 = 0
                    THEN -1 ELSE 1 END),
               CASE WHEN g % 3 = 0 THEN NULL ELSE 1e40 + g / 7.0 END,
               CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN E'new\\nline, "q" \\\\ \u00e9'
                          WHEN 2 THEN '' ELSE 'plain ' || g END,
               CASE WHEN g % 5 = 0 THEN NULL ELSE 'c' || (g % 10) END,
               CASE WHEN g % 9 = 0 THEN NULL ELSE date '1960-02-29' + g * 97 END,
               CASE WHEN g % 8 = 0 THEN NULL
                    ELSE timestamp '1950-06-01 12:34:56.789012' + g * interval '13 days 1 us' END,
               CASE WHEN g % 10 = 0 THEN NULL
                    ELSE time '00:00:00.000001' + g * interval '7 min' END,
               CASE WHEN g % 11 = 0 THEN NULL
                    ELSE md5(g::text)::uuid END,
               CASE WHEN g % 12 = 0 THEN NULL WHEN g % 12 = 1 THEN ''::bytea
                    ELSE decode(md5(g::text), 'hex') END,
               CASE WHEN g % 13 = 0 THEN NULL WHEN g % 13 = 1 THEN '{}'::int[]
                    ELSE ARRAY[g, NULL, -g] END,
               CASE WHEN g % 14 = 0 THEN NULL ELSE ARRAY['a,b', NULL, E'"\\\\', ''] END,
               CASE WHEN g % 15 = 0 THEN NULL ELSE ARRAY[g / 3.0, NULL]::numeric[] END,
               CASE WHEN g % 16 = 0 THEN NULL
                    ELSE jsonb_build_object('kind', CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END,
                                            'n', g, 'deep', jsonb_build_object('x', g % 3),
                                            's', E'q"\\n') END,
               CASE WHEN g % 17 = 0 THEN NULL
                    ELSE ('{"raw" : [1,  2], "g": ' || g || '}')::json END,
               (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood
          FROM generate_series(1, ROWS) g""".replace("ROWS", str(int(rows))))


@pytest.fixture
def typed(conn: Conn) -> None:
    make_typed(conn)


def source_rows(conn: Conn, scope: int = 1, columns: list[str] = COLUMNS) -> list[tuple[Any, ...]]:
    cols = ", ".join(columns)
    return conn.execute(f"SELECT {cols} FROM typed WHERE tenant = %s ORDER BY id",
                        (scope,)).fetchall()


def local_path(uri: str) -> str:
    assert uri.startswith("file://")
    return uri[len("file://"):]


def read_arrow(result: dict[str, Any]) -> Any:
    tables = [pq.read_table(local_path(u)) for u in result["uris"]]
    return pa.concat_tables(tables)


def same(column: str, expected: Any, got: Any) -> bool:
    """A source value (psycopg) and a value read back from Parquet."""
    if expected is None or got is None:
        return expected is None and got is None
    if column in ("f4", "f8"):
        if math.isnan(expected):
            return math.isnan(got)
        return bool(got == expected or math.isclose(got, expected, rel_tol=1e-6))
    if column in ("doc", "js"):
        return bool(json.loads(got) == (expected if column == "doc" else json.loads(
            json.dumps(expected))))
    if column == "free":
        return Decimal(got) == expected
    if column == "nums":
        return [None if v is None else Decimal(v) for v in got] == expected
    if column == "u":
        return uuid.UUID(str(got)) == expected if not isinstance(got, bytes) else \
            uuid.UUID(bytes=got) == expected
    if column == "mood":
        return bool(got == str(expected))
    return bool(got == expected)


def check_values(conn: Conn, result: dict[str, Any], scope: int = 1) -> None:
    expected = source_rows(conn, scope)
    table = read_arrow(result)
    assert table.num_rows == len(expected) == result["rows"]
    for name, kind in EXPECTED_ARROW.items():
        assert table.schema.field(name).type == kind, name
    got = table.to_pylist()
    for row, back in zip(expected, got, strict=True):
        for name, value in zip(COLUMNS, row, strict=True):
            assert same(name, value, back[name]), (name, row[0], value, back[name])

    # An independent reader: DuckDB, on the files as written.
    files = ", ".join(f"'{local_path(u)}'" for u in result["uris"])
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    described = dict(db.execute(
        f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet([{files}]))"
    ).fetchall())
    for name, kind in DUCK_TYPES.items():
        assert described[name] == kind, (name, described[name])
    duck = db.execute(f"SELECT {', '.join(COLUMNS)} FROM read_parquet([{files}]) "
                      "ORDER BY id").fetchall()
    assert len(duck) == len(expected)
    for row, back in zip(expected, duck, strict=True):
        for name, value, other in zip(COLUMNS, row, back, strict=True):
            if name in ("created_at",) and other is not None:
                other = other.astimezone(UTC)
            if name == "wide" and isinstance(other, float):
                # DuckDB's decimals stop at 38 digits: it reads decimal256 as DOUBLE.
                assert value is not None and math.isclose(other, float(value), rel_tol=1e-12)
                continue
            assert same(name, value, other), ("duckdb", name, row[0], value, other)


@pytest.mark.parametrize("compression", ["zstd", "snappy"])
def test_parquet_types_and_values_read_back_with_pyarrow_and_duckdb(
        conn: Conn, dsn: str, typed: None, local_dir: str, compression: str) -> None:
    job_id = submit_export(conn, "1", target="typed",
                           options={"format": "parquet", "compression": compression})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    result = job(conn, job_id)["result"]
    assert result["format"] == "parquet" and result["uri"].endswith("/")
    assert len(result["uris"]) == 1 and result["uris"][0].startswith(result["uri"])
    meta = pq.ParquetFile(local_path(result["uris"][0])).metadata
    assert meta.row_group(0).column(0).compression == compression.upper()
    check_values(conn, result)


def test_files_cut_by_size_resume_at_file_boundaries_and_hash(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_typed(conn, rows=3000)
    options = {"format": "parquet", "chunk_rows": 100, "part_size": 4096,
               "row_group_bytes": 1048576}
    job_id = submit_export(conn, "0", target="typed", options=options)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome.error
    result = job(conn, job_id)["result"]
    assert len(result["uris"]) > 3
    import hashlib
    whole = hashlib.sha256()
    for uri in result["uris"]:
        with open(local_path(uri), "rb") as f:
            whole.update(f.read())
    assert whole.hexdigest() == result["sha256"]
    assert sum(os.path.getsize(local_path(u)) for u in result["uris"]) == result["bytes"]
    check_values(conn, result, scope=0)


def test_options_are_validated_at_submit(conn: Conn, typed: None) -> None:
    bad = [{"format": "parquet", "compression": "gzip"},
           {"format": "parquet", "compression": 1},
           {"format": "parquet", "row_group_bytes": 10},
           {"format": "parquet", "row_group_bytes": "big"},
           {"format": "parquet", "gzip": True},
           {"format": "csv", "compression": "zstd"},
           {"format": "jsonl", "row_group_bytes": 1048576},
           {"format": "PARQUET"}]
    for options in bad:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            submit_export(conn, "1", target="typed", options=options)
        assert info.value.diag.message_hint, options
    job_id = submit_export(conn, "1", target="typed", options={"format": "parquet"})
    payload = job(conn, job_id)["payload"]
    assert payload["compression"] == "zstd" and payload["row_group_bytes"] == 16777216


def test_document_fields_listed_in_columns_become_a_struct(
        conn: Conn, dsn: str, typed: None, local_dir: str) -> None:
    job_id = submit_export(conn, "1", target="typed", options={
        "format": "parquet", "columns": ["id", "kind", "price", "deep.x", "n"]})
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    result = job(conn, job_id)["result"]
    table = read_arrow(result)
    assert table.schema.names == ["id", "doc", "price"]
    assert table.schema.field("doc").type == pa.struct(
        [("kind", pa.string()), ("deep.x", pa.string()), ("n", pa.string())])
    expected = conn.execute("SELECT id, doc->>'kind', doc#>>'{deep,x}', doc->>'n' FROM typed "
                            "WHERE tenant = 1 ORDER BY id").fetchall()
    got = [(r["id"], r["doc"]["kind"], r["doc"]["deep.x"], r["doc"]["n"])
           for r in table.to_pylist()]
    assert got == expected
    files = local_path(result["uris"][0])
    duck = duckdb.sql(f"SELECT id, doc['kind'], doc['n'] FROM read_parquet('{files}') "
                      "ORDER BY id").fetchall()
    assert duck == [(a, b, d) for a, b, _, d in expected]


def test_empty_scope_gives_one_empty_file_with_the_schema(
        conn: Conn, dsn: str, typed: None, local_dir: str) -> None:
    job_id = submit_export(conn, "7", target="typed", options={"format": "parquet"})
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    result = job(conn, job_id)["result"]
    assert result["rows"] == 0 and len(result["uris"]) == 1
    table = read_arrow(result)
    assert table.num_rows == 0 and table.schema.field("price").type == pa.decimal128(12, 3)


def test_a_worker_without_pyarrow_fails_the_job_naming_the_extra(
        conn: Conn, dsn: str, typed: None, local_dir: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    job_id = submit_export(conn, "1", target="typed", options={"format": "parquet"})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "pgjobs-engine[parquet]" in row["error"]


def test_sigkill_mid_export_then_another_worker_resumes_to_the_same_rows(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_typed(conn, rows=3000)
    options = {"format": "parquet", "chunk_rows": 100, "part_size": 4096, "lease": "60 seconds"}
    job_id = submit_export(conn, "0", target="typed", options=options)
    first = start_worker(dsn, local_dir, delays="part=0.3")
    try:
        wait_for(lambda: len((job(conn, job_id)["checkpoint"] or {}).get("files") or [])
                 >= 2, timeout=60, what="two files checkpointed")
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)  # reaps it and closes its pipes
    recorded = job(conn, job_id)["checkpoint"]["files"]
    written = len(recorded)
    stamps = {f["uri"]: os.stat(local_path(f["uri"])).st_mtime_ns for f in recorded}
    expire_leases(conn, job_id)
    second = start_worker(dsn, local_dir, "--once")
    try:
        _, err = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate(timeout=30)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", (row["error"], err)
    result = row["result"]
    assert len(result["uris"]) > written
    # The successor started after the files the first one had recorded: those
    # are the same files, not rewritten.
    assert result["uris"][:written] == list(stamps)
    assert {u: os.stat(local_path(u)).st_mtime_ns for u in stamps} == stamps
    check_values(conn, result, scope=0)
    # No file under the folder that the result does not list.
    folder = local_path(result["uri"])
    assert sorted(os.path.join(folder, f) for f in os.listdir(folder)) == sorted(
        local_path(u) for u in result["uris"])


def test_timestamps_are_utc_instants_whatever_the_session_time_zone(
        conn: Conn, dsn: str, typed: None, local_dir: str) -> None:
    conn.execute("ALTER DATABASE " + conn.info.dbname + " SET TimeZone = 'America/Caracas'")
    job_id = submit_export(conn, "1", target="typed", options={"format": "parquet",
                                                                 "columns": ["id", "created_at",
                                                                             "d", "ts", "t"]})
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    table = read_arrow(job(conn, job_id)["result"])
    expected = conn.execute("SELECT id, created_at, d, ts, t FROM typed WHERE tenant = 1 "
                            "ORDER BY id").fetchall()
    got = [tuple(r.values()) for r in table.to_pylist()]
    assert got == expected
    assert isinstance(got[0][1], datetime) and got[0][1].tzinfo is not None
    assert isinstance(got[0][2], date) and isinstance(got[0][4], time)


def test_s3_destination_files_read_back(conn: Conn, dsn: str, typed: None, bucket: str,
                                        tmp_path: Any) -> None:
    conn.execute("SELECT pgjobs.allow_storage(%s)", (bucket,))
    job_id = submit_export(conn, "1", target="typed", options={
        "format": "parquet", "destination": bucket, "chunk_rows": 30, "part_size": 4096})
    assert run_export(dsn, job_id, bucket).status == "succeeded"
    result = job(conn, job_id)["result"]
    assert len(result["uris"]) > 1 and all(u.startswith(result["uri"]) for u in result["uris"])
    local_uris = []
    for i, uri in enumerate(result["uris"]):
        path = tmp_path / f"{i:05d}.parquet"
        path.write_bytes(storage.read(uri))
        local_uris.append(f"file://{path}")
    check_values(conn, {**result, "uris": local_uris})


def test_cancel_removes_the_files_and_prune_queues_every_file(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    make_typed(conn, rows=2000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    options = {"format": "parquet", "chunk_rows": 50, "part_size": 4096}
    job_id = submit_export(conn, "0", target="typed", options=options)
    box: list[Any] = []
    runner = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    runner.start()
    wait_for(lambda: len((job(conn, job_id)["checkpoint"] or {}).get("files") or []) >= 2,
             what="two files")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    runner.join(timeout=60)
    assert box and box[0].status == "canceled"
    assert storage.list_paths(local_dir) == []

    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    done = submit_export(conn, "1", target="typed", options=options)
    assert run_export(dsn, done, local_dir).status == "succeeded"
    uris = job(conn, done)["result"]["uris"]
    assert len(uris) > 1 and all(storage.exists(u) for u in uris)
    # The canceled job's checkpoint still records the files its worker removed:
    # prune queues them too (pgjobs._export_objects: every object an export
    # wrote, whatever way it ended; one already gone counts as deleted).
    removed = [f["uri"] for f in job(conn, job_id)["checkpoint"]["files"]]
    assert len(removed) >= 2 and not set(removed) & set(uris)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None and summary[0]["objects_queued"] == len(uris) + len(removed)
    assert sorted(r[0] for r in conn.execute(
        "SELECT uri FROM pgjobs.storage_deletions WHERE upload IS NULL")) == sorted(uris + removed)
    # The cancel queued the canceled job's files already, each with its digest
    # (pgjobs._queue_export_objects), for when its worker could not remove them.
    assert set(removed) <= {str(r[0]) for r in conn.execute(
        "SELECT uri FROM pgjobs.storage_deletions WHERE job_id = %s "
        "AND upload ? 'object_sha256'", (job_id,))}
    Worker(dsn, local_dir, once=True, poll=0.1).run()
    assert not any(storage.exists(u) for u in uris)
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)


def test_filter_cutoff_and_pending_delete_mask_apply_as_for_csv(
        conn: Conn, dsn: str, local_dir: str) -> None:
    make_typed(conn, rows=400)
    conn.execute("SELECT pgjobs.submit_delete('typed', '0', %s::jsonb)",
                 (json.dumps({"deep.x": 1}),))  # queued, never run: its rows are masked
    job_id = submit_export(conn, "0", {"n": {"$gt": 50}}, target="typed",
                           options={"format": "parquet", "chunk_rows": 40, "part_size": 4096})
    # Created after the export's cutoff: left out.
    conn.execute("INSERT INTO typed (id, tenant, created_at, doc) VALUES "
                 "(100000, 0, now() + interval '1 hour', '{\"n\": 99999}')")
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    result = job(conn, job_id)["result"]
    got = read_arrow(result).column("id").to_pylist()
    expected = [r[0] for r in conn.execute(
        "SELECT id FROM typed WHERE tenant = 0 AND (doc->>'n')::int > 50 "
        "AND (doc#>>'{deep,x}')::int <> 1 AND id < 100000 ORDER BY id")]
    assert got == expected and len(got) > 50


def test_pause_then_resume_continues_after_the_recorded_files(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    make_typed(conn, rows=2000)
    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.1")
    job_id = submit_export(conn, "0", target="typed",
                           options={"format": "parquet", "chunk_rows": 50, "part_size": 4096})
    box: list[Any] = []
    runner = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, local_dir)))
    runner.start()
    wait_for(lambda: len((job(conn, job_id)["checkpoint"] or {}).get("files") or []) >= 2,
             what="two files")
    conn.execute("SELECT pgjobs.pause(%s)", (job_id,))
    runner.join(timeout=60)
    assert box and box[0].status == "paused"
    kept = job(conn, job_id)["checkpoint"]["files"]
    stamps = {f["uri"]: os.stat(local_path(f["uri"])).st_mtime_ns for f in kept}
    conn.execute("SELECT pgjobs.resume(%s)", (job_id,))
    monkeypatch.delenv("PGJOBS_EXPORT_DELAYS")
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    result = job(conn, job_id)["result"]
    assert result["uris"][:len(kept)] == list(stamps)
    assert {u: os.stat(local_path(u)).st_mtime_ns for u in stamps} == stamps
    check_values(conn, result, scope=0)


def test_domains_quoted_names_and_a_text_key(conn: Conn, dsn: str, local_dir: str) -> None:
    conn.execute("CREATE DOMAIN money2 AS numeric(10,2)")
    conn.execute("CREATE DOMAIN stamp AS timestamptz")
    conn.execute('CREATE TABLE "Odd Table" ("Key" text NOT NULL, "the scope" int NOT NULL, '
                 '"made ""at""" timestamptz NOT NULL DEFAULT now() - interval \'1 day\', '
                 '"Price" money2, "when" stamp, "grid" int[])')
    conn.execute('CREATE INDEX ON "Odd Table" ("the scope", "Key")')
    conn.execute("""SELECT pgjobs.register_target('"Odd Table"', 'Key', 'the scope',
                                                  'made "at"')""")
    conn.execute("""INSERT INTO "Odd Table" ("Key", "the scope", "Price", "when", grid)
                    SELECT 'k' || g, 1, g * 1.25, timestamptz '2001-02-03 04:05:06.789+05'
                           + g * interval '1 day', CASE WHEN g % 3 = 0 THEN NULL
                           ELSE ARRAY[g, -g] END
                      FROM generate_series(1, 50) g""")
    job_id = submit_export(conn, "1", target='"Odd Table"', options={"format": "parquet"})
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    table = read_arrow(job(conn, job_id)["result"])
    assert table.schema.field("Price").type == pa.decimal128(10, 2)
    assert table.schema.field("when").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field('made "at"').type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("grid").type == pa.list_(pa.int32())
    expected = conn.execute('SELECT "Key", "the scope", "made ""at""", "Price", "when", grid '
                            'FROM "Odd Table" ORDER BY "Key"').fetchall()
    assert [tuple(r.values()) for r in table.to_pylist()] == expected


def test_cli_export_parquet_prints_the_folder_and_url_one_line_per_file(
        conn: Conn, dsn: str, local_dir: str) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    make_typed(conn, rows=600)
    runner = CliRunner()
    done = runner.invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "typed",
                                "--scope", "0", "--format", "parquet", "--options",
                                '{"chunk_rows": 50, "part_size": 4096}'])
    assert done.exit_code == 0, done.output
    folder = done.stdout.strip().splitlines()[-1]
    job_id = conn.execute("SELECT max(id) FROM pgjobs.jobs").fetchone()[0]
    result = job(conn, job_id)["result"]
    assert folder == result["uri"] and len(result["uris"]) > 1
    # `url` finds the files from the job: --storage would be refused as ignored.
    urls = runner.invoke(main, ["--dsn", dsn, "url", str(job_id)])
    assert urls.exit_code == 0, urls.output
    assert len(urls.stdout.strip().splitlines()) == len(result["uris"])


def test_a_file_overwritten_before_completion_is_written_again(
        conn: Conn, dsn: str, local_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgjobs.poller import parquet

    make_typed(conn, rows=1200)
    job_id = submit_export(conn, "0", target="typed",
                           options={"format": "parquet", "chunk_rows": 50, "part_size": 4096})
    original = parquet.ParquetExport._finish

    def overwritten(self: Any) -> Any:
        # A stale writer's bytes land on the second file after it was recorded.
        with open(local_path(self.ex.state["files"][1]["uri"]), "wb") as f:
            f.write(b"PAR1 not what was written")
        return original(self)

    monkeypatch.setattr(parquet.ParquetExport, "_finish", overwritten)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "retrying" and "verification failed" in (outcome.error or "")
    assert len(job(conn, job_id)["checkpoint"]["files"]) == 1
    monkeypatch.setattr(parquet.ParquetExport, "_finish", original)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    assert run_export(dsn, job_id, local_dir).status == "succeeded"
    check_values(conn, job(conn, job_id)["result"], scope=0)
