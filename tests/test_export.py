"""Exports: content against a plain COPY, formats, gzip, file:// and S3 (moto),
bad inputs, cancel, prune's orphans, and the command line."""

from __future__ import annotations

import gzip
import json
import os
import urllib.request
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.poller import storage
from pgjobs.poller.worker import Worker
from tests.support import (
    add_items,
    content,
    job,
    jsonl_reference,
    leftovers,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    scalar,
    submit_export,
)

Conn = psycopg.Connection[Any]
ALL_COLUMNS = ["id", "tenant", "created_at", "doc", "note", "amount", "js", "noise"]
SMALL = {"chunk_rows": 17, "part_size": 2048}


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn)


@pytest.fixture(params=["file", "s3"])
def destination(request: pytest.FixtureRequest) -> str:
    fixture = "local_dir" if request.param == "file" else "bucket"
    return str(request.getfixturevalue(fixture))


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_equals_plain_copy_with_filter_cutoff_and_mask(
        conn: Conn, dsn: str, items: None, destination: str, fmt: str, gz: bool) -> None:
    # A pending delete of kind "b" rows masks them; the filter keeps nested.x < 4.
    conn.execute("""SELECT pgjobs.submit_delete('items', '1', '{"kind": "b"}')""")
    job_id = submit_export(conn, "1", {"nested.x": {"$lt": 4}},
                           {"format": fmt, "gzip": gz, **SMALL})
    add_items(conn, 1001, 30, created="now()")  # after the cutoff: never exported
    outcome = run_export(dsn, job_id, destination)
    assert outcome.status == "succeeded", outcome

    select = ("SELECT * FROM items WHERE tenant = 1 AND id <= 300 "
              "AND (doc->'nested'->>'x')::int < 4 AND doc->>'kind' <> 'b' ORDER BY id")
    result = outcome.result
    assert result is not None
    expected_rows = conn.execute(f"SELECT count(*) FROM ({select}) s").fetchone()
    assert expected_rows is not None and result["rows"] == expected_rows[0] > 20
    assert result["format"] == fmt and result["parts"] > (0 if gz else 2)
    assert result["uri"].endswith(f"items/1/{job_id}.{fmt}" + (".gz" if gz else ""))
    assert result["uri"].startswith(destination.rstrip("/"))
    data = content(result)
    if fmt == "csv":
        assert data == plain_copy(conn, select)
    else:
        lines = data.split(b"\n")
        assert lines[-1] == b""
        parsed = [json.loads(line) for line in lines[:-1]]
        assert parsed == jsonl_reference(conn, select)
        assert all(list(p) == ALL_COLUMNS for p in parsed)
    if gz:
        # One gzip member per part: still one valid gzip file.
        assert object_bytes(result)[:2] == b"\x1f\x8b"
    assert leftovers(destination, {result["uri"]}) == []
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["done"] == result["rows"]
    assert row["result"] == result


def test_columns_and_document_fields(conn: Conn, dsn: str, items: None, local_dir: str) -> None:
    # A field no row has is refused unless allowed (tests/test_unknown_fields.py);
    # allowed, it exports as empty.
    job_id = submit_export(conn, "2", {}, {"columns": ["note", "id", "nested.x", "s", "arr",
                                                       "missing.field"],
                                           "allow_unknown_fields": True})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.result is not None
    assert content(outcome.result) == plain_copy(conn, """
        SELECT note, id, doc #>> '{nested,x}' AS "nested.x", doc #>> '{s}' AS s,
               doc #>> '{arr}' AS arr, doc #>> '{missing,field}' AS "missing.field"
          FROM items WHERE tenant = 2 ORDER BY id""")

    job_id = submit_export(conn, "2", {"kind": "a"},
                           {"format": "jsonl", "columns": ["id", "nested", "js", "s"]})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.result is not None
    parsed = [json.loads(line) for line in content(outcome.result).splitlines()]
    expected = [{"id": r[0], "nested": r[1], "js": r[2], "s": r[3]} for r in conn.execute(
        "SELECT id, doc->'nested', js::jsonb, doc->'s' FROM items "
        "WHERE tenant = 2 AND doc->>'kind' = 'a' ORDER BY id")]
    assert parsed == expected


def test_empty_scope_gives_a_header_only_or_an_empty_object(
        conn: Conn, dsn: str, items: None, local_dir: str) -> None:
    csv_job = submit_export(conn, "7", {}, {"gzip": True})
    jsonl_job = submit_export(conn, "7", {}, {"format": "jsonl"})
    csv_result = run_export(dsn, csv_job, local_dir).result
    jsonl_result = run_export(dsn, jsonl_job, local_dir).result
    assert csv_result is not None and jsonl_result is not None
    assert gzip.decompress(object_bytes(csv_result)) == \
        b"id,tenant,created_at,doc,note,amount,js,noise\n"
    assert csv_result["rows"] == 0
    assert object_bytes(jsonl_result) == b"" and jsonl_result["bytes"] == 0


def test_text_and_uuid_keys(conn: Conn, dsn: str, local_dir: str) -> None:
    conn.execute("CREATE TABLE t (k text NOT NULL, s text NOT NULL, c timestamptz NOT NULL "
                 "DEFAULT now() - interval '1 minute', v text)")
    conn.execute("CREATE INDEX ON t (s, k)")
    conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'c')")
    conn.execute("INSERT INTO t (k, s, v) SELECT 'k' || g || E'\\'\"', 'a b', g::text "
                 "FROM generate_series(1, 55) g")
    job_id = submit_export(conn, "a b", {}, {"chunk_rows": 4, "part_size": 1024}, target="t")
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.result is not None
    assert outcome.result["uri"].endswith(f"/t/a=20b/{job_id}.csv")  # one-to-one: not a_b
    # (A key column must be NOT NULL: tests/test_trust_keys.py.)
    assert content(outcome.result) == plain_copy(
        conn, "SELECT * FROM t WHERE s = 'a b' ORDER BY k")


# --- bad inputs ------------------------------------------------------------------


@pytest.mark.parametrize(("options", "needle"), [
    ({"format": "xml"}, 'option "format"'),
    ({"gzip": "yes"}, 'option "gzip"'),
    ({"columns": ["id", "nope"]}, "nope"),
    ({"columns": "id"}, 'option "columns"'),
    ({"columns": ["id", "id"]}, "twice"),
    ({"destination": "ftp://x/"}, 'option "destination"'),
    ({"destination": "s3://"}, 'option "destination"'),
    ({"chunk_rows": 0}, "chunk_rows"),
    ({"part_size": 10}, "part_size"),
    ({"bogus": 1}, 'unknown option "bogus"'),
])
def test_bad_options_raise_22023_before_anything_is_written(
        conn: Conn, options: dict[str, Any], needle: str) -> None:
    conn.execute("CREATE TABLE plain (id bigint NOT NULL, tenant int, created_at timestamptz)")
    conn.execute("CREATE INDEX ON plain (tenant, id)")
    conn.execute("SELECT pgjobs.register_target('plain', 'id', 'tenant', 'created_at')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=needle):
        submit_export(conn, "1", {}, options, target="plain")
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_bad_filter_scope_and_target(conn: Conn, items: None) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"\$regex"):
        submit_export(conn, "1", {"note": {"$regex": "x"}})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="scope"):
        submit_export(conn, "not a number")
    conn.execute("CREATE TABLE unregistered (id int)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not registered"):
        submit_export(conn, "1", target="unregistered")
    with pytest.raises(psycopg.errors.UndefinedTable):
        submit_export(conn, "1", target="no_such_table")
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_unwritable_directory_fails_the_job_with_the_reason(
        conn: Conn, dsn: str, items: None, tmp_path: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{blocker}",))
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{blocker}/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert outcome.status == "failed"
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "cannot write" in row["error"] and str(blocker) in row["error"]
    assert blocker.read_text() == "not a directory"


def test_missing_bucket_fails_the_job_and_leaves_nothing(
        conn: Conn, dsn: str, items: None, s3_env: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage('s3://no-such-bucket')")
    job_id = submit_export(conn, "1", {}, {"destination": "s3://no-such-bucket/x/"})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert outcome.status == "failed", outcome
    row = job(conn, job_id)
    assert row["status"] == "failed" and "NoSuchBucket" in row["error"]


def test_missing_credentials_fail_the_job_with_a_clear_error(
        conn: Conn, dsn: str, items: None, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # Never reach a real metadata service from a test.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
    storage.forget_stores()
    conn.execute("SELECT pgjobs.allow_storage(%s)", (bucket,))
    job_id = submit_export(conn, "1", {}, {"destination": bucket})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert outcome.status == "failed", outcome
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert "credentials" in row["error"], row["error"]


def test_a_vanished_column_fails_the_job_for_good(conn: Conn, dsn: str, items: None,
                                                 local_dir: str) -> None:
    job_id = submit_export(conn, "1", {}, {**SMALL, "max_attempts": 3})
    conn.execute("ALTER TABLE items RENAME COLUMN note TO note2")
    outcome = run_export(dsn, job_id, local_dir)
    # A column of the export vanished: not something a retry fixes.
    assert outcome.status == "failed" and "note" in (outcome.error or "")
    conn.execute("ALTER TABLE items RENAME COLUMN note2 TO note")
    assert job(conn, job_id)["status"] == "failed"
    assert leftovers(local_dir, set()) == []


# --- cancel, prune, housekeeping ----------------------------------------------------


def test_cancel_stops_at_the_next_part_and_leaves_no_object(
        conn: Conn, dsn: str, items: None, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setenv("PGJOBS_EXPORT_DELAYS", "part=0.05")
    job_id = submit_export(conn, "1", {}, SMALL)
    box: list[Any] = []
    runner = threading.Thread(target=lambda: box.append(run_export(dsn, job_id, bucket)))
    runner.start()
    from tests.support import checkpoint_parts, wait_for

    wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, what="two parts")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    runner.join(timeout=30)
    assert box and box[0].status == "canceled"
    assert job(conn, job_id)["status"] == "canceled"
    assert storage.list_paths(bucket) == []


def test_prune_queues_the_object_and_a_worker_deletes_it(
        conn: Conn, dsn: str, items: None, bucket: str, local_dir: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage(%s)", (bucket,))
    s3_job = submit_export(conn, "1", {}, {"destination": bucket})
    file_job = submit_export(conn, "2", {}, {})
    s3_uri = run_export(dsn, s3_job, bucket).result["uri"]  # type: ignore[index,unused-ignore]
    file_uri = run_export(dsn, file_job, local_dir).result["uri"]  # type: ignore[index,unused-ignore]
    assert storage.exists(s3_uri) and storage.exists(file_uri)
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None and summary[0]["objects_queued"] == 2

    worker = Worker(dsn, local_dir, once=True, poll=0.1)
    worker.run()
    assert not storage.exists(s3_uri) and not storage.exists(file_uri)
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)


def test_storage_deletion_errors_are_kept_and_retried_later(
        conn: Conn, dsn: str, tmp_path: Any) -> None:
    conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id) "
                 "VALUES ('ftp://nowhere/x', 1), ('file:///nonexistent/gone.csv', 2)")
    started = conn.execute("SELECT clock_timestamp()").fetchone()
    assert started is not None
    # A storage of its own: a worker's turn also sweeps its storage for stale
    # uploads, and a sweep of all of /tmp on a busy machine outlasted the
    # backoff the assertion below compares with the clock after the run.
    Worker(dsn, f"file://{tmp_path}", once=True, poll=0.1).run()
    # The first retry is due 30 s (plus jitter) after the failed attempt began,
    # which began after `started`.
    rows = conn.execute("SELECT job_id, attempts, last_error, "
                        "retry_at >= %s + interval '30 seconds' "
                        "FROM pgjobs.storage_deletions", (started[0],)).fetchall()
    # A missing object counts as deleted; a bad URI stays, with its error, for later.
    assert len(rows) == 1 and rows[0][0] == 1 and rows[0][1] == 1
    assert "ftp" in rows[0][2] and rows[0][3] is True


def test_sweep_removes_leftovers_of_jobs_that_ended(
        conn: Conn, dsn: str, items: None, bucket: str, local_dir: str) -> None:
    import hashlib

    ended = submit_export(conn, "1", {}, SMALL)
    running = submit_export(conn, "2", {}, SMALL)
    # A failed export's upload serves pgjobs.retry until the job is pruned.
    failed = submit_export(conn, "0", {}, SMALL)
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() WHERE id = %s",
                 (ended,))
    conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now() WHERE id = %s",
                 (failed,))
    for row in (ended, running, failed):
        for prefix in (bucket,):
            loc = storage.object_location(prefix, f".pgjobs-staging/{row}/a1-x/000001")
            store = storage.store_for(loc)
            import obstore

            obstore.put(store, loc.path, hashlib.sha256(b"x").digest())
        tmp = storage.parse(local_dir).path + f"/items/1/.{row}.csv.pgjobs-a1-x.tmp"
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
    worker = Worker(dsn, bucket, once=True, stale_after=timedelta(0))
    worker._connect()
    assert worker.housekeeping()["swept"] == 1
    assert sorted(p.split("/")[-3] for p in storage.list_paths(bucket)) == \
        sorted([str(running), str(failed)])
    worker.storage_uri = local_dir
    assert worker.housekeeping()["swept"] == 1
    worker._close()
    remaining = storage.list_paths(local_dir)
    assert sorted(os.path.basename(p) for p in remaining) == \
        sorted([f".{running}.csv.pgjobs-a1-x.tmp", f".{failed}.csv.pgjobs-a1-x.tmp"])


# --- the command line --------------------------------------------------------------


def test_cli_export_runs_in_process_and_prints_the_uri_last(
        conn: Conn, dsn: str, items: None, local_dir: str) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "items",
                                  "--scope", "1", "--filter", '{"kind": "a"}', "--format",
                                  "csv", "--columns", "id,note,s"])
    assert result.exit_code == 0, result.output
    uri = result.stdout.strip().splitlines()[-1]
    assert uri.startswith("file://") and uri.endswith(".csv")
    assert storage.read(uri) == plain_copy(
        conn, "SELECT id, note, doc->>'s' AS s FROM items WHERE tenant = 1 "
              "AND doc->>'kind' = 'a' ORDER BY id")
    assert "succeeded" in result.stderr

    job_id = int(conn.execute("SELECT max(id) FROM pgjobs.jobs").fetchone()[0])  # type: ignore[index]
    result = runner.invoke(main, ["--dsn", dsn, "url", str(job_id)])
    assert result.exit_code == 0 and result.stdout.strip() == storage.parse(uri).path


def test_cli_detach_then_worker_then_presigned_url(
        conn: Conn, dsn: str, items: None, bucket: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage(%s)", (bucket,))
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", dsn, "export", "items", "--scope", "2", "--gzip",
                                  "--to", bucket, "--detach"])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    assert job(conn, job_id)["status"] == "queued"

    result = runner.invoke(main, ["--dsn", dsn, "--storage", "file:///unused", "worker",
                                  "--once", "--poll", "0.1"])
    assert result.exit_code == 0, result.output
    row = job(conn, job_id)
    assert row["status"] == "succeeded"

    result = runner.invoke(main, ["--dsn", dsn, "url", str(job_id), "--expires", "10m"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("http://127.0.0.1") and "X-Amz-Signature" in link
    with urllib.request.urlopen(link, timeout=10) as response:  # noqa: S310 - local moto
        body = response.read()
    assert body == object_bytes(row["result"])
    assert gzip.decompress(body) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 2 ORDER BY id")


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "xml"], "'xml' is not one of"),
    (["--filter", "{nope"], "filter is not valid JSON"),
    (["--filter", '{"$nope": 1}'], "$nope"),
    (["--to", "ftp://x/y"], "unsupported storage scheme"),
    (["--columns", "id,a..b"], "a..b"),
])
def test_cli_usage_errors_exit_2_with_one_line(
        conn: Conn, dsn: str, items: None, local_dir: str, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "export", "items",
                                       "--scope", "1", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_cli_failed_export_exits_1(conn: Conn, dsn: str, items: None, tmp_path: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    checked = storage.preflight

    def then_blocked(*args: Any, **kwargs: Any) -> None:
        # The command checks the destination before it submits (a prefix under a
        # regular file is refused there, exit 2); a file put in the folder's
        # place between that check and the worker's write fails the job.
        checked(*args, **kwargs)
        blocker.write_text("x")

    monkeypatch.setattr(storage, "preflight", then_blocked)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{blocker}",))
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", "file:///unused", "export",
                                       "items", "--scope", "1", "--to", f"file://{blocker}/out"])
    assert result.exit_code == 1, result.output
    assert "failed" in result.stderr and "cannot write" in result.stderr
    assert result.stdout.strip() == ""


def test_cli_url_errors(conn: Conn, dsn: str, items: None) -> None:
    job_id = submit_export(conn, "1")
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", dsn, "url", str(job_id)])
    assert result.exit_code == 2 and "queued" in result.stderr
    result = runner.invoke(main, ["--dsn", dsn, "url", "999999"])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_every_option_has_an_env_var() -> None:
    from pgjobs.cli.common import OPERANDS
    from pgjobs.cli.export import export, url, worker

    # ... but operands (scope, filter, columns, --to, --options), which never
    # read the environment (tests/test_cli_guards.py).
    for command in (export, worker, url):
        for param in command.params:
            if isinstance(param, __import__("click").Option) and param.name != "help" \
                    and param.name not in OPERANDS:
                assert param.envvar and str(param.envvar).startswith("PGJOBS_"), param.name
                assert param.show_envvar, param.name


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_document_field_whose_name_postgres_would_cut_short_is_refused(
        conn: Conn, dsn: str, items: None, local_dir: str, fmt: str) -> None:
    """A field is named in the output by its column alias, which PostgreSQL cuts
    to 63 bytes: two fields sharing those became one CSV header name twice and
    a JSON object with one key twice (a reader keeps one value), and a longer
    name came back as another field. Refused at submit, and at the chunk for a
    job queued before."""
    long = "f" * 70
    conn.execute("UPDATE items SET doc = doc || jsonb_build_object(%s::text, 1, %s::text, 2) "
                 "WHERE tenant = 2", (long + "x", long + "y"))
    columns = ["id", long + "x", long + "y"]
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        submit_export(conn, "2", {}, {"format": fmt, "columns": columns})
    assert "63 bytes" in str(caught.value) and caught.value.diag.message_hint
    # a job of the release before: the same payload, written as its submit did
    job_id = submit_export(conn, "2", {}, {"format": fmt, "columns": ["id", "s"]})
    conn.execute("UPDATE pgjobs.jobs SET payload = payload || jsonb_build_object("
                 "'columns', %s::jsonb, 'document_fields', %s::jsonb) WHERE id = %s",
                 (json.dumps(columns), json.dumps(columns[1:]), job_id))
    outcome = run_export(dsn, job_id, local_dir)
    row = job(conn, job_id)
    assert row["status"] == "failed", (outcome, row["result"])
    assert "63 bytes" in row["error"] and row["attempts"] == 1, row["error"]


def test_jsonl_exports_json_values_that_jsonb_refuses(conn: Conn, dsn: str, items: None,
                                                     local_dir: str) -> None:
    """A `json` column keeps any \\uXXXX escape (\\u0000, a lone surrogate) that
    jsonb refuses: the JSONL export normalised every json value through jsonb and
    failed on them (22P05). Such a value keeps its own text, its raw line ends
    made spaces, as every json value now does
    (test_jsonl_keeps_the_text_of_a_json_column)."""
    odd = ['{"a": "x\\u0000y",\n "b": 1}', '"\\ud800"', '{"k":\r\n"\\u00e9\\\\u0000"}',
           '[1,\n2]']
    conn.execute("DELETE FROM items WHERE tenant = 2")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items (id, tenant, js) VALUES (%s, 2, %s::json)",
                        [(10_000 + n, value) for n, value in enumerate(odd)])
    job_id = submit_export(conn, "2", {}, {"format": "jsonl", "columns": ["id", "js"]})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    lines = content(outcome.result).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 10_000 + n, "js": json.loads(value)} for n, value in enumerate(odd)]
    # A value jsonb takes keeps its text too, its raw line end made a space.
    assert lines[3] == b'{"id":10003,"js":[1, 2]}'


def test_jsonl_keeps_the_text_of_a_json_column(conn: Conn, dsn: str, items: None,
                                               local_dir: str) -> None:
    """Found by the h4 adversarial pass: the JSONL export read each `json` value
    through jsonb, so a value with a duplicate key lost a member (`{"a":1,"a":2}`
    came out `{"a": 2}`, at any depth), its keys were sorted and its numbers
    respelt (`1e2` as `100`), while csv and parquet export the stored text, and
    the job succeeded. Each value is now its stored text, its raw line ends made
    spaces (JSON holds them only between tokens)."""
    values = ['{"a":1,"a":2}', '{"z": 1, "a": {"k": "x", "k": "y"}}', '[1e2, 1.50, -0, 1E-3]',
              '{"b":\r\n 1,\n"b": 2}', '"plain"', ' 7 ', '{"t":\ttrue}', '{}']
    conn.execute("DELETE FROM items WHERE tenant = 2")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items (id, tenant, js) VALUES (%s, 2, %s::json)",
                        [(10_000 + n, value) for n, value in enumerate(values)])
    for gz in (False, True):
        job_id = submit_export(conn, "2", {}, {"format": "jsonl", "gzip": gz,
                                               "columns": ["id", "js"], "chunk_rows": 3})
        outcome = run_export(dsn, job_id, local_dir)
        assert outcome.status == "succeeded", outcome
        assert outcome.result is not None and outcome.result["rows"] == len(values)
        lines = content(outcome.result).split(b"\n")
        assert lines[-1] == b""
        assert lines[:-1] == [
            b'{"id":%d,"js":%s}' % (10_000 + n,
                                   value.replace("\r", " ").replace("\n", " ").encode())
            for n, value in enumerate(values)]


@pytest.mark.parametrize(("ddl", "value"), [
    # A domain over json: the same text as json, not caught by its type's name.
    ("CREATE DOMAIN jdom AS json", '{"a":\n 1, "z": "\\u0000"}'),
    ("CREATE DOMAIN jdom AS json", '{"a":\r\n 1}'),
    # An array of json: row_to_json writes each element's own text.
    ("CREATE DOMAIN jdom AS json[]", '{"{\\"a\\":\n 1}"}'),
    # A composite type with a json field: row_to_json nests its text too.
    ("CREATE TYPE jdom AS (j json)", '("{""a"":\n 1}")'),
])
def test_jsonl_export_of_json_kinds_keeps_one_record_a_line(conn: Conn, dsn: str, items: None,
                                                            local_dir: str, ddl: str,
                                                            value: str) -> None:
    """Found in the hR review: json keeps raw line ends between its tokens, and
    only a column of type json itself was normalised; a domain over json, or
    json[], wrote its raw line ends into the JSONL line, one record spread over
    two lines (the file no longer parses, or parses as other records)."""
    conn.execute(ddl)
    conn.execute("ALTER TABLE items ADD COLUMN jd jdom")
    conn.execute("DELETE FROM items WHERE tenant = 2")
    conn.execute("INSERT INTO items (id, tenant, jd) VALUES (10000, 2, %s::jdom)", (value,))
    job_id = submit_export(conn, "2", {}, {"format": "jsonl", "columns": ["id", "jd"]})
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    lines = content(outcome.result).splitlines()
    assert len(lines) == 1, lines
    expected = scalar(conn, "SELECT to_jsonb(jd)::text FROM items WHERE id = 10000") \
        if "\\u0000" not in value else None
    if expected is not None:
        assert json.loads(lines[0]) == {"id": 10000, "jd": json.loads(expected)}
