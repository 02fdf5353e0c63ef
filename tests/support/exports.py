"""Shared pieces of the export tests: an `items` target with hostile content,
references built from a plain COPY, and helpers to run exports in-process or in
a worker process. The storage fixtures (S3 through moto, Azurite, GCS, a local
directory) are in tests/support/storage.py."""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

from pgjobs import db
from pgjobs.poller import s3client, storage
from pgjobs.poller.export import DEFAULT_STORAGE_RETRY, Exporter, Outcome
from tests.support.jobs import expire_lease, job, scalar
from tests.support.targets import build_target
from tests.support.waiting import wait_for

Conn = psycopg.Connection[Any]

NASTY = [
    "plain",
    'quote "double" and \'single\'',
    "back\\slash \\\\ and \\N and \\.",
    "comma, semicolon; pipe|",
    "new\nline and\r\ncrlf and \rcr",
    "tab\there",
    "unicode: h\u00e9llo \u2713 \U0001f600 \u4e2d\u6587",
    "\\.",
    "",
    "  padded  ",
    "ctrl \x01 \x02 \x1f",
    '{"looks": "like json"}',
    "NULL",
]

# Export options that make a small export many chunks and many multipart parts.
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
# What an export of the items' scope 1 must hold: the SELECT its plain-COPY
# reference reads.
ITEMS_TENANT_1 = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"
# Export options that take S3's native multipart path with the smallest parts it
# allows (the `big` fixture's tenant 1 is four of them), and the SELECT of
# that tenant's plain-COPY reference.
NATIVE_S3 = {"part_size": s3client.MIN_PART, "chunk_rows": 40}
BIG_TENANT_1 = "SELECT * FROM big WHERE tenant = 1 ORDER BY id"


def make_items(conn: Conn, rows: int = 300, tenants: int = 3) -> None:
    """Table `items` (key id, scope tenant, document doc) with `rows` rows spread over
    `tenants` tenants, created an hour ago, full of values that break naive CSV or
    JSON writers."""
    build_target(conn, "items", """
            id bigint PRIMARY KEY,
            tenant integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
            doc jsonb,
            note text,
            amount numeric,
            js json,
            noise text""", scope="tenant", document="doc", index_name="items_tenant_id_idx")
    add_items(conn, 1, rows, tenants)


def add_items(conn: Conn, first: int, count: int, tenants: int = 3,
              created: str = "now() - interval '1 hour'") -> None:
    data = []
    for i in range(first, first + count):
        nasty = NASTY[i % len(NASTY)]
        doc = {"kind": "ab"[i % 2], "n": i, "s": nasty, "nested": {"x": i % 5},
               "arr": [1, "\\", None]}
        # Poorly compressible, so that gzip parts come out at test sizes too.
        noise = "".join(hashlib.md5(f"{i}-{k}".encode()).hexdigest() for k in range(8))
        data.append((i, i % tenants, json.dumps(doc), None if i % 11 == 0 else nasty,
                     f"{i}.50", '{"raw":\n [1, 2],\t"s": "x\\ny"}', noise))
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO items (id, tenant, created_at, doc, note, amount, js, noise) "
            f"VALUES (%s, %s, {created}, %s::jsonb, %s, %s::numeric, %s::json, %s)", data)


def plain_copy(conn: Conn, select: str, header: bool = True) -> bytes:
    """The reference: a plain COPY of a SELECT, as CSV."""
    out = bytearray()
    with conn.cursor() as cur, cur.copy(
            f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER {str(header).lower()})") as cp:
        for block in cp:
            out += block
    return bytes(out)


def jsonl_reference(conn: Conn, select: str) -> list[dict[str, Any]]:
    """The reference for jsonl: each row as to_jsonb (parsed), in order (r.*: a
    column named r is not the row)."""
    return [r[0] for r in conn.execute(f"SELECT to_jsonb(r.*) FROM ({select}) r")]


def submit_export(conn: Conn, scope: str = "1", filter_: dict[str, Any] | None = None,
                  options: dict[str, Any] | None = None, target: str = "items") -> int:
    row = conn.execute("SELECT pgjobs.submit_export(%s::regclass, %s, %s::jsonb, %s::jsonb)",
                       (target, scope, json.dumps(filter_ or {}),
                        json.dumps(options or {}))).fetchone()
    assert row is not None
    return int(row[0])


def run_export(dsn: str, job_id: int, storage_uri: str, worker: str | None = None,
               lease: str = "30 seconds",
               storage_retry: float = DEFAULT_STORAGE_RETRY) -> Outcome:
    """Claim job_id and run it in this process (``storage_retry``: seconds a part
    keeps being retried while storage fails, the worker's --storage-retry)."""
    worker = worker or f"test-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        claimed = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, %s, %s::interval)",
                               (job_id, worker, lease)).fetchall()
    assert [r[0] for r in claimed] == [job_id], f"job {job_id} was not claimable"
    return Exporter(dsn, job_id, claimed[0][1], storage_uri, storage_retry=storage_retry).run()


def new_bucket(endpoint: str) -> str:
    """A new bucket on the S3 server at ``endpoint`` (moto's test credentials, not
    the environment's); its export prefix s3://bucket/exports/."""
    import boto3

    name = f"pgjobs-{uuid.uuid4().hex[:12]}"
    # A session of its own: boto3's default session keeps the AWS_* files and
    # profile of the first test that used it, not this test's environment.
    boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing").create_bucket(Bucket=name)
    return f"s3://{name}/exports/"


def open_uploads(prefix: str) -> list[Any]:
    """The multipart uploads open under an s3:// export prefix."""
    loc = storage.parse(prefix)
    return s3client.Client(loc.base.split("://", 1)[1]).list_uploads(loc.path)


def object_bytes(result: dict[str, Any]) -> bytes:
    """The object of an export result, checked against its bytes and sha256."""
    data = storage.read(result["uri"])
    assert len(data) == result["bytes"]
    assert hashlib.sha256(data).hexdigest() == result["sha256"]
    return data


def content(result: dict[str, Any]) -> bytes:
    data = object_bytes(result)
    return gzip_module.decompress(data) if result.get("gzip") else data


def start_worker(dsn: str, storage_uri: str, *args: str, delays: str = "",
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pgjobs worker` in its own process (so that it can be SIGKILLed)."""
    environment = dict(os.environ)
    environment["PGJOBS_EXPORT_DELAYS"] = delays
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, "--storage", storage_uri,
         "worker", "--poll", "0.2", *args],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# A lease for a worker a test kills: no stall of a loaded machine (a worker or
# its backend paused 2 s and more) lapses it while the worker lives.
LONG_LEASE = "60s"


def expire_leases(conn: Conn, job_id: int) -> None:
    """Make the lease of job_id and those of its export parts lapse now, once the
    worker that held them is killed and reaped: the takeover a test wants, with
    none while the worker lives. First its sessions have left the server: a
    statement it sent before the SIGKILL runs to its end (a part's claim would
    lease that part anew after this)."""
    wait_for(lambda: scalar(conn, (
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() "
        "AND (application_name = 'pgjobs' OR application_name LIKE 'pgjobs %')")),
        what="the killed worker's sessions to end")
    expire_lease(conn, job_id)
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND lease_expires_at IS NOT NULL", (job_id,))


def resume_after_kill(conn: Conn, dsn: str, storage_uri: str, job_id: int,
                      first: subprocess.Popen[str], reference: Outcome) -> dict[str, Any]:
    """Kills worker `first`, lapses its leases, and finishes job_id with a
    worker of another process; asserts the job succeeded on the S3 upload it
    had begun, kept the digests of the parts recorded before the kill, and
    wrote the bytes of `reference` (an export that was never interrupted),
    leaving no upload open. Returns the job's row."""
    first.kill()
    first.communicate(timeout=10)
    before = job(conn, job_id)["checkpoint"]
    expire_leases(conn, job_id)
    second = start_worker(dsn, storage_uri, "--once")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["checkpoint"]["upload"]["upload_id"] == before["upload"]["upload_id"]
    assert row["checkpoint"]["digests"][:before["parts"]] == before["digests"]
    assert row["result"]["sha256"] == (reference.result or {})["sha256"]
    assert object_bytes(row["result"]) == object_bytes(reference.result or {})
    assert open_uploads(storage_uri) == []
    return row


def checkpoint_parts(conn: Conn, job_id: int) -> int:
    row = conn.execute("SELECT coalesce((checkpoint->>'parts')::int, 0) FROM pgjobs.jobs "
                       "WHERE id = %s", (job_id,)).fetchone()
    return int(row[0]) if row else 0


def part_rows(conn: Conn, job_id: int) -> list[dict[str, Any]]:
    """The rows of a parallel export's parts (pgjobs.export_parts), by part."""
    cur = conn.execute("SELECT * FROM pgjobs.export_parts WHERE job_id = %s ORDER BY part",
                       (job_id,))
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def leftovers(prefix_uri: str, keep: set[str]) -> list[str]:
    """Files or objects under the prefix other than the finished objects in keep."""
    loc = storage.parse(prefix_uri)
    found = storage.list_paths(prefix_uri)
    if loc.scheme != "file":
        found = [f"{loc.base}/{p}" if loc.scheme != "memory" else f"memory:///{p}"
                 for p in found]
    else:
        found = ["file://" + p for p in found]
    return [f for f in found if f not in keep]


def reader_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every statement (text, params) sent through a cursor of the connections
    the exporter reads with (db.connect_reader), and each chunk's first
    statement (sent with its BEGIN by db.begin_chunk, or with the previous
    chunk's COPY by db.copy_then_begin), in order, for the rest of the test."""
    sent: list[tuple[str, Any]] = []

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((str(query), params))
            return super().execute(query, params, **kwargs)

    connect = db.connect_reader
    begin = db.begin_chunk
    copy_then_begin = db.copy_then_begin

    def recorded(*args: Any, **kwargs: Any) -> Any:
        c = connect(*args, **kwargs)
        c.cursor_factory = Recording
        return c

    def begin_recorded(conn: Any, sql: str, params: Any = None) -> Any:
        sent.append((sql, params))
        return begin(conn, sql, params)

    def copy_then_begin_recorded(conn: Any, copy_sql: str, sink: Any, sql: str,
                                 params: Any) -> Any:
        # The next chunk's statement, sent with this chunk's COPY: recorded
        # before the COPY, as it is sent.
        sent.append((sql, params))
        return copy_then_begin(conn, copy_sql, sink, sql, params)

    monkeypatch.setattr(db, "connect_reader", recorded)
    monkeypatch.setattr(db, "begin_chunk", begin_recorded)
    monkeypatch.setattr(db, "copy_then_begin", copy_then_begin_recorded)
    return sent
