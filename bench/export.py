"""Streaming exports of pgjobs against a plain COPY, measured in one run.

Run from the repository root:

    python bench/export.py                          # 1M-row scope of a 2M-row relation
    python bench/export.py --rows 200000 --rss-rows 0 --repeat 1     # quick
    python bench/export.py --dsn postgresql://postgres@127.0.0.1:5499/postgres

With ``--dsn`` (a server URL whose user may CREATE DATABASE) the benchmark
creates its own database ``pgjobs_bench_export_<pid>`` there and drops it at the
end (``--keep`` keeps it); without, it starts a throwaway cluster.

The relation is a shared multi-tenant table like ``user_table_rows(id,
table_id, data jsonb, created_at)`` with about 170 bytes of CSV per row; rows
arrive in chunks of 100 per tenant, so the exported scope (table_id 1,
``--rows`` rows) is interleaved with other tenants' rows (as many again) over
the whole heap.

Measured in the same run, best of ``--repeat``:

- baseline: one plain ``COPY (SELECT * ... WHERE table_id = 1 ORDER BY id) TO
  STDOUT`` (CSV, header) written to a local file by this process;
- ``pgjobs export`` to ``file://`` (submit, claim, stream, complete), goal <= 1.1x;
- ``pgjobs export`` to S3 on a local moto server (its own process), goal <= 1.3x;
- the storage floor, no database: the same bytes uploaded to the same moto server
  by botocore's multipart calls (the exporter's client and settings, the same part
  size: create, parts one after another, complete), and ``COPY + floor`` (what a
  pipeline that does not overlap reading and uploading would cost): how much of
  the S3 export's gap to the plain COPY is moto itself. The read-back of the object
  (an export verifies what it stored by reading it back) prints on the same row;
- with ``--profile FILE``: the S3 export once more under cProfile, every thread
  of the exporting process (reader and uploader), stats written to FILE;
- the CPU seconds this process spent in each timed run (median; every thread of
  an export), beside each row: on a machine whose cores are busy, wall time
  follows the CPU spent, and this figure moves less with the load;
- peak RSS of a process exporting the ``--rows`` scope and one of ``--rss-rows``
  rows (goal <= 150 MB, flat in the row count), and of one exporting the
  ``--rows`` scope to S3 (its read-back holds buffers of its own).

With ``--alternate N`` the timed part is N rounds instead, each a plain COPY
then the exports (``file://``, then S3 unless ``--no-s3``; their order swapped
every other round), every ratio against its own round's COPY, and the rounds'
median, smallest and largest ratio printed: on a machine shared with other
work, a best-of-N of each kind, taken minutes apart, compares a quiet minute
with a busy one. Beside each wall ratio is a CPU ratio: this process's CPU
plus that of the database cluster's processes (the postmaster and its
children, ended ones included; read from ``/proc``, so only for a cluster on
this machine that this user may read, else ``-``). ``--phases`` adds, under
each round, where each export's time went (submit, claim, up to the first
COPY, the COPYs, the gaps between them, the tail after the last COPY), and for
``file://`` what the uploader thread spent beside them (its parts' pwrite and
fdatasync, the hashing, the checkpoints) and the CPU each cost (the parts'
writes and hashing, their fdatasyncs, the read-back), and each export's CPU split into
this process's and the cluster's, beside the round's COPY's (on busy cores
wall time follows the CPU: where the gap is), and of the cluster's, the
session that submits, claims and is the exporter's control connection (the
keyset bounds walked ahead, the heartbeats, the complete) apart from the data
connection's chunks. ``--durable-copy`` adds, in each
round, the plain COPY followed by one ``fdatasync`` of its file, and each
export's ratio against that as well (an export makes every part durable; the
goal's baseline does not sync). ``--server-copy`` adds, in each round, the
same COPY written by the server itself (``COPY ... TO 'file'``: no protocol,
no client; a server on this machine whose user may write server files, as the
throwaway cluster's is), and each export's ratio against that as well.
``--phases`` also prints the CPU one SHA-256 pass over the round's bytes costs
(a ``file://`` export makes one: the object's running hash while streaming,
which gives each part's prefix digest) and one pass of the parts' seals
(AES-GMAC; it makes two: each part sealed as written, and the read-back at
the end, which checks the seals).
Each export runs as `pgjobs export` does: one connection submits, claims and
is the exporter's control connection; ``--separate`` adds, in the same rounds,
each export run as before (a connection each for the submit, the claim and the
control; labelled ``sep``).

Every export's SHA-256 is checked against the baseline file: same bytes.
The figures print as a table with ratios; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.support.pgcluster`

from _common import server, with_database  # noqa: E402

from pgjobs.migrate import migrate  # noqa: E402
from pgjobs.poller.export import DEFAULT_MAX_PART_SIZE, Exporter, copy_out  # noqa: E402

TABLE = "user_table_rows"
CHUNK = 100
# This process's CPU seconds (every thread: the export's reader, part writer and
# bound walker) of each timed run, by kind: on a machine whose cores are busy,
# wall time follows the CPU spent, and this figure moves less with the load.
CPU: dict[str, list[float]] = {}

SETUP = f"""
CREATE TABLE {TABLE} (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    table_id   integer     NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL
);
"""

# Rows arrive in chunks of CHUNK: with `others`, every other chunk belongs to
# one of tenants 100..149, so the scope is interleaved with as many other rows.
FILL = f"""
INSERT INTO {TABLE} (id, table_id, data, created_at)
SELECT %(base)s + g,
       CASE WHEN NOT %(others)s OR (g / {CHUNK}) %% 2 = 0 THEN %(scope)s
            ELSE 100 + (g / {CHUNK}) %% 50 END,
       jsonb_build_object('name', 'customer ' || g, 'email', 'user' || g || '@example.com',
                          'status', (ARRAY['open', 'paused', 'closed'])[1 + g %% 3],
                          'score', g %% 1000, 'city', 'Springfield'),
       now() - interval '1 day'
  FROM generate_series(%(first)s::integer, %(last)s::integer) g
"""

CHILD = """
import sys, time
from pgjobs.poller.export import Exporter
import psycopg
dsn, job, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with psycopg.connect(dsn, autocommit=True) as c:
    row = c.execute("SELECT worker FROM pgjobs.claim_export(%s, 'bench-child', '60 seconds')",
                    (job,)).fetchone()
out = Exporter(dsn, job, row[0], uri).run()
assert out.status == 'succeeded', out
# VmHWM: this process's peak resident set (ru_maxrss of a child would include
# the parent's at fork time).
print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
"""


def fill(conn: psycopg.Connection[Any], scope: int, count: int, base: int,
         others: bool = True) -> int:
    """`count` rows of tenant `scope`, interleaved with `count` rows of other tenants
    when `others`; returns the number of rows inserted."""
    total = 2 * count if others else count
    step = 500_000
    for first in range(0, total, step):
        last = min(first + step, total) - 1
        conn.execute(FILL, {"base": base, "scope": scope, "first": first, "last": last,
                            "others": others})
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto() -> Iterator[str]:
    """A moto S3 server in its own process (it must not share our GIL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cluster_cpu(postmaster: int | None) -> float | None:
    """CPU seconds spent so far by the postmaster ``postmaster`` and its children
    (backends, the walwriter, ...), those it has reaped included (their time is
    in its ``cutime``/``cstime``); None when its processes cannot be read."""
    if postmaster is None:
        return None
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(name) == postmaster or int(fields[1]) == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def postmaster_of(dsn: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine and its
    processes can be read (the parent of this connection's backend), else None."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
        try:
            with open(f"/proc/{backend}/cmdline", "rb") as handle:
                if b"postgres" not in handle.read():
                    return None  # a remote server: some other local process
            with open(f"/proc/{backend}/stat") as handle:
                text = handle.read()
        except OSError:
            return None
    return int(text[text.rindex(")") + 2:].split()[1])


def backend_cpu(pid: int) -> float | None:
    """CPU seconds one backend of a cluster on this machine has spent so far (its
    own, not its children's); None when its process cannot be read (a remote
    server, another user's cluster)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def timed(postmaster: int | None) -> Iterator[list[float | None]]:
    """Yields a list that holds, once the block ends, (wall seconds, CPU seconds
    of this process and of the cluster, or None when the cluster's are unknown,
    then this process's CPU seconds and the cluster's apart, the latter None
    when unknown)."""
    out: list[float | None] = []
    server0, cpu0, started = cluster_cpu(postmaster), time.process_time(), time.perf_counter()
    yield out
    elapsed, cpu, server1 = time.perf_counter() - started, time.process_time() - cpu0, \
        cluster_cpu(postmaster)
    on_server = None if server0 is None or server1 is None else server1 - server0
    out += [elapsed, None if on_server is None else cpu + on_server, cpu, on_server]


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def seal_file(path: str) -> float:
    """The CPU seconds of one pass of the parts' seals (AES-GMAC, as an export's
    part writer and read-back compute them) over ``path``, read as sha256_file
    reads it."""
    from pgjobs.poller.upload import Seals

    started = time.process_time()
    seal = Seals().part(0)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            seal.update(block)
    seal.tag()
    return time.process_time() - started


def baseline(dsn: str, scope: int, path: str, durable: bool = False) -> float:
    """Plain COPY of the scope in key order to a local file; ``durable``: then one
    ``fdatasync`` of the file, timed too (an export to ``file://`` makes every
    part durable before it checkpoints it; the plain COPY, the goal's baseline,
    leaves its bytes in the page cache)."""
    with psycopg.connect(dsn, autocommit=True) as conn, open(path, "wb") as out:
        buffer = bytearray()

        def sink(data: memoryview) -> None:
            buffer.extend(data)
            if len(buffer) >= 8 << 20:
                out.write(buffer)
                buffer.clear()

        started, cpu = time.perf_counter(), time.process_time()
        copy_out(conn, f"COPY (SELECT * FROM {TABLE} WHERE table_id = {scope} ORDER BY id) "
                       "TO STDOUT WITH (FORMAT csv, HEADER true)", sink)
        out.write(buffer)
        out.flush()
        if durable:
            os.fdatasync(out.fileno())
        CPU.setdefault("copy+sync" if durable else "copy", []).append(
            time.process_time() - cpu)
        return time.perf_counter() - started


def prepare(dsn: str, rows: int, rss_rows: int) -> int:
    """Migrate, create and fill the relation (scope 1: `rows` rows interleaved with as
    many others; scope 3: `rss_rows` rows), index and register it; its row count.
    Shared by every export benchmark."""
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The rows commit synchronously: VACUUM marks a page all-visible only once
        # the commit of its rows is flushed, which the throwaway cluster's
        # synchronous_commit=off delays. Left so, about two thirds of the pages
        # stay not all-visible, and every chunk's keyset bound (an index-only walk
        # of the (scope, key) btree, docs/exports.md) reads the heap as well: a
        # table autovacuum has visited does not look like that.
        conn.execute("SET synchronous_commit = on")
        conn.execute(SETUP)
        inserted = fill(conn, 1, rows, 0)
        if rss_rows:
            fill(conn, 3, rss_rows, inserted, others=False)
        conn.execute(f"CREATE INDEX ON {TABLE} (table_id, id)")
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        conn.execute(f"SELECT pgjobs.register_target('{TABLE}', 'id', 'table_id', "
                     "'created_at', 'data')")
        total = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        visible = conn.execute("SELECT relallvisible::float8 / greatest(relpages, 1) "
                               "FROM pg_class WHERE oid = %s::regclass", (TABLE,)).fetchone()
    assert total is not None and visible is not None
    print(f"all-visible pages: {visible[0]:.0%}")
    return int(total[0])


def submit(dsn: str, scope: int, destination: str,
           options: dict[str, Any] | None = None,
           conn: psycopg.Connection[Any] | None = None) -> int:
    """Allow the destination and submit the export (on ``conn`` when given, else
    on a connection of its own); the job's id."""
    import json

    with contextlib.ExitStack() as stack:
        if conn is None:
            conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute("SELECT pgjobs.allow_storage(%s)", (destination,))
        row = cur.execute("SELECT pgjobs.submit_export(%s::regclass, %s, '{}', %s::jsonb)",
                           (TABLE, str(scope), json.dumps({"destination": destination,
                                                           **(options or {})}))).fetchone()
    assert row is not None
    return int(row[0])


def claim(conn: psycopg.Connection[Any], job: int) -> str:
    row = conn.cursor(row_factory=tuple_row).execute(
        "SELECT worker FROM pgjobs.claim_export(%s, 'bench', '60 seconds')", (job,)).fetchone()
    assert row is not None
    return str(row[0])


def pgjobs_export(dsn: str, scope: int, destination: str,
                  separate: bool = False) -> tuple[float, dict[str, Any]]:
    """Submit, claim and run one export in this process as `pgjobs export` does:
    one connection submits, claims and is the exporter's control connection, the
    exporter reads on one of its own; (seconds, result). ``separate``: as it did
    before, the submit and the claim on a new connection each and the exporter's
    control connection a third."""
    started, cpu = time.perf_counter(), time.process_time()
    # A session as `pgjobs export` opens it (pgjobs.db.connect: dict rows).
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        job = submit(dsn, scope, destination, conn=None if separate else conn)
        if separate:
            with psycopg.connect(dsn, autocommit=True) as other:
                worker = claim(other, job)
        else:
            worker = claim(conn, job)
        outcome = Exporter(dsn, job, worker, destination,
                           control=None if separate else conn).run()
    elapsed = time.perf_counter() - started
    CPU.setdefault(destination.split(":", 1)[0], []).append(time.process_time() - cpu)
    assert outcome.status == "succeeded" and outcome.result, outcome
    return elapsed, outcome.result


def part_size(dsn: str, job: int) -> int:
    """The part size an export uploaded with: its payload's, clamped as the worker
    clamps it (``--max-part-size``, default DEFAULT_MAX_PART_SIZE)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT (payload->>'part_size')::bigint FROM pgjobs.jobs "
                           "WHERE id = %s", (job,)).fetchone()
    assert row is not None
    return min(int(row[0]), DEFAULT_MAX_PART_SIZE)


def storage_floor(path: str, bucket: str, key: str, part: int) -> tuple[float, float, float]:
    """(parts, complete, read-back) seconds: the file's bytes uploaded in parts of
    ``part`` bytes through the exporter's own botocore client (same settings), one
    part after another, completed, then read back and checked part by part as an
    export's verification does. No database: what moto costs by itself."""
    from pgjobs.poller import s3client, storage

    client = s3client.Client(bucket)
    started = time.perf_counter()
    upload_id = client.create(key)
    etags: list[str] = []
    digests: list[list[Any]] = []
    with open(path, "rb") as src:
        while True:
            # A bytearray, as the exporter's parts are: sent as it is (botocore
            # would wrap bytes in a BytesIO and send that in small reads).
            data = bytearray(part)
            size = src.readinto(data)
            if not size:
                break
            del data[size:]
            etag, sha256 = client.upload_part(key, upload_id, len(etags) + 1, data)
            etags.append(etag)
            digests.append([size, sha256])
    uploaded = time.perf_counter()
    client.complete(key, upload_id, etags)
    completed = time.perf_counter()
    storage.check_object(storage.parse(f"s3://{bucket}/{key}"), digests)
    return uploaded - started, completed - uploaded, time.perf_counter() - completed


def profile_export(dsn: str, scope: int, destination: str, out: str) -> float:
    """One export under cProfile, every thread of this process included (the
    uploader thread too); the stats go to ``out`` (read them with pstats)."""
    import cProfile
    import pstats
    import threading

    profilers = [cProfile.Profile()]

    def join(*_: Any) -> None:  # the first event of a new thread: a profiler of its own
        profilers.append(cProfile.Profile())
        profilers[-1].enable()

    threading.setprofile(join)
    profilers[0].enable()
    try:
        elapsed, _ = pgjobs_export(dsn, scope, destination)
    finally:
        profilers[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(profilers[0])
    for other in profilers[1:]:
        other.create_stats()
        stats.add(other)
    stats.dump_stats(out)
    return elapsed


@contextmanager
def phases() -> Iterator[dict[str, list[tuple[float, float]]]]:
    """Within the block, the (start, end) perf_counter of each chunk's COPY
    (``copy``; with the next chunk's BEGIN and statement when they travel with
    it), each chunk's BEGIN and statement sent on their own (``begin``), the wait for the
    last parts to be written (``last part``), the finalize (``finalize``) and
    its read-back (``read-back``), and each keyset bound walked ahead on the
    control connection (``walk``) of the exports run in this process, by
    wrapping the exporter's own functions."""
    from pgjobs import db
    from pgjobs.poller import export, upload_file

    spans: dict[str, list[tuple[float, float]]] = {}
    # A chunk's COPY: copy_out, or (from the primary, a chunk following) with
    # the next chunk's BEGIN and statement in the same query (copy_then_begin).
    wrapped = [(export, "copy_out", "copy"), (db, "copy_then_begin", "copy"),
               (db, "begin_chunk", "begin"),
               (export._Uploader, "close", "last part"),
               (export.Exporter, "_finalize", "finalize"),
               (export.Exporter, "_verify_stored", "read-back"),
               # file://'s part writes (on the uploader thread, beside the COPYs):
               # the whole write_part, its pwrite, its fdatasync (on a thread of
               # its own, while the part and the object are hashed), and each
               # part's checkpoint (the heartbeat).
               (upload_file.LocalUpload, "write_part", "part"),
               (upload_file, "write_at", "pwrite"), (upload_file, "_fdatasync", "fsync"),
               (export._Control, "heartbeat", "heartbeat"),
               # Each keyset bound walked ahead, on the control connection.
               (export.Exporter, "_walk_bound", "walk")]
    originals = [getattr(owner, attr) for owner, attr, _ in wrapped]

    # The CPU each one spent, kept as spans (0, seconds) under "<name> cpu": the
    # calling thread's own (a part's write and its fdatasync run on two
    # threads), the whole process's for the read-back (its runs on threads of
    # their own, in the tail where the other threads wait).
    clocks = {"read-back": time.process_time}

    def timing(func: Any, name: str) -> Any:
        clock = clocks.get(name, time.thread_time)

        def call(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), clock()
            try:
                return func(*args, **kwargs)
            finally:
                spans.setdefault(name, []).append((started, time.perf_counter()))
                spans.setdefault(f"{name} cpu", []).append((0.0, clock() - cpu))
        return call

    for (owner, attr, name), func in zip(wrapped, originals, strict=True):
        setattr(owner, attr, timing(func, name))
    try:
        yield spans
    finally:
        for (owner, attr, _), func in zip(wrapped, originals, strict=True):
            setattr(owner, attr, func)


def phased_export(dsn: str, scope: int, destination: str,
                  separate: bool = False) -> tuple[float, dict[str, Any], str]:
    """Like pgjobs_export, with where its time went, as one line: the submit (its
    connect included) and the claim (on the same connection, as `pgjobs export`
    does; ``separate``: each on a connection of its own, as it did before), the
    exporter up to its first COPY (connections, job, upload, the first chunk's
    statement), the chunks' COPYs, the gaps between them (each chunk's BEGIN and
    statement, the part handed over), and the tail after the last COPY (the
    last part written, the finalize with its read-back, the complete). With a
    cluster on this machine, also the CPU of the session that submits, claims
    and is the exporter's control connection (the bounds walked ahead, the
    heartbeats, the complete), apart from the rest of the cluster's (the data
    connection's chunks)."""
    started = time.perf_counter()
    # A session as `pgjobs export` opens it (pgjobs.db.connect: dict rows).
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        control_cpu = None if separate else backend_cpu(conn.info.backend_pid)
        job = submit(dsn, scope, destination, conn=None if separate else conn)
        submitted = time.perf_counter()
        if separate:
            with psycopg.connect(dsn, autocommit=True) as other:
                worker = claim(other, job)
        else:
            worker = claim(conn, job)
        claimed = time.perf_counter()
        with phases() as spans:
            outcome = Exporter(dsn, job, worker, destination,
                               control=None if separate else conn).run()
        ended = time.perf_counter()
        if control_cpu is not None:
            spent = backend_cpu(conn.info.backend_pid)
            control_cpu = None if spent is None else spent - control_cpu
    assert outcome.status == "succeeded" and outcome.result, outcome
    copies = spans["copy"]

    def total(name: str) -> float:
        return sum(end - start for start, end in spans.get(name, []))

    between = sum(b[0] - a[1] for a, b in zip(copies, copies[1:], strict=False))
    line = (f"submit {submitted - started:.2f} claim {claimed - submitted:.2f} "
            f"to 1st COPY {copies[0][0] - claimed:.2f} COPYs {len(copies)}x "
            f"{total('copy'):.2f} between {between:.2f} (statements "
            f"{total('begin') - (spans['begin'][0][1] - spans['begin'][0][0]):.2f}) "
            f"tail {ended - copies[-1][1]:.2f} (last part {total('last part'):.2f}, "
            f"finalize {total('finalize'):.2f}, read-back {total('read-back'):.2f})")
    if spans.get("part"):
        # The uploader thread, beside the COPYs: what each part costs it.
        line += (f"\n{'':13}uploader: {len(spans['part'])} parts {total('part'):.2f} "
                 f"(pwrite {total('pwrite'):.2f}, fdatasync {total('fsync'):.2f}, "
                 "the rest the longer of the fdatasync and hashing the part and the "
                 "object), "
                 f"{len(spans.get('heartbeat', []))} heartbeats {total('heartbeat'):.2f}"
                 f"\n{'':13}CPU: the parts {total('part cpu'):.2f} (pwrite "
                 f"{total('pwrite cpu'):.2f}, the rest hashing), their fdatasyncs "
                 f"{total('fsync cpu'):.2f}, the read-back {total('read-back cpu'):.2f}")
    if control_cpu is not None:
        # The keyset bounds walked ahead (an index-only walk of every key of the
        # scope, beside the COPYs) are most of it.
        line += (f"\n{'':13}server CPU: the control session {control_cpu:.2f} (submit, "
                 f"claim, {len(spans.get('walk', []))} bounds walked ahead (their "
                 f"round trips {total('walk'):.2f}s), heartbeats, complete); the rest "
                 "of the cluster's is the data connection's")
    return ended - started, outcome.result, line


def peak_rss(dsn: str, scope: int, destination: str,
             options: dict[str, Any] | None = None) -> tuple[float, int]:
    """(MB, rows): peak resident set of a fresh process running one export."""
    job = submit(dsn, scope, destination, options)
    done = subprocess.run([sys.executable, "-c", CHILD, dsn, str(job), destination],
                          cwd=str(Path(__file__).resolve().parent.parent), check=True,
                          capture_output=True, text=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT (result->>'rows')::bigint FROM pgjobs.jobs WHERE id = %s",
                            (job,)).fetchone()
    assert rows is not None
    return int(done.stdout.split()[-1]) / 1024, int(rows[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="server URL whose user may CREATE DATABASE "
                                      "[default: a throwaway cluster]")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the exported scope (the relation holds twice as many)")
    parser.add_argument("--rss-rows", type=int, default=5_000_000,
                        help="rows of the scope for the peak RSS run (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed runs")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) run")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--profile", metavar="FILE",
                        help="also run the S3 export under cProfile (all threads), stats to FILE")
    parser.add_argument("--alternate", type=int, metavar="N", default=0,
                        help="time N rounds of COPY and exports alternated, each ratio "
                             "against its own round's COPY (instead of best of --repeat)")
    parser.add_argument("--phases", action="store_true",
                        help="with --alternate: also print where each export's time went")
    parser.add_argument("--durable-copy", action="store_true",
                        help="with --alternate: also time, in each round, the plain COPY "
                             "followed by one fdatasync of its file, and each export's "
                             "ratio against that (the goal's ratio stays against the "
                             "plain COPY)")
    parser.add_argument("--server-copy", action="store_true",
                        help="with --alternate: also time, in each round, the same COPY "
                             "written by the server itself (COPY ... TO 'file', no client; "
                             "a server on this machine, a user who may write server files) "
                             "and each export's ratio against that")
    parser.add_argument("--separate", action="store_true",
                        help="with --alternate: also run each export with the submit, the "
                             "claim and the control on a connection each (as before), "
                             "labelled 'sep'")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pgjobs-bench-export-")
    with server(args.dsn) as url:
        server_url, description = url
        name = f"pgjobs_bench_export_{os.getpid()}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        dsn = with_database(server_url, name)
        try:
            run(dsn, description, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if not args.keep:
                with psycopg.connect(server_url, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(dsn: str, description: str, args: argparse.Namespace, workdir: str) -> None:
    print(f"server: {description}")
    started = time.perf_counter()
    total = prepare(dsn, args.rows, args.rss_rows)
    print(f"setup: {total:,} rows in {time.perf_counter() - started:.1f}s")
    if args.alternate:
        alternate(dsn, args, workdir)
        return

    base_file = os.path.join(workdir, "baseline.csv")
    base = min(baseline(dsn, 1, base_file) for _ in range(args.repeat))
    size = os.path.getsize(base_file)
    base_sha = sha256_file(base_file)

    results: list[tuple[str, float, str, float]] = []
    file_dest = f"file://{workdir}/exports"
    times = []
    for _ in range(args.repeat):
        elapsed, result = pgjobs_export(dsn, 1, file_dest)
        assert result["sha256"] == base_sha, "file export differs from the plain COPY"
        os.unlink(result["uri"][len("file://"):])
        times.append(elapsed)
    results.append(("pgjobs export -> file://", min(times), "goal <= 1.1x",
                    statistics.median(CPU["file"])))

    floor: tuple[float, float, float] | None = None
    s3_rss: tuple[float, int] | None = None
    if not args.no_s3:
        import boto3

        with moto() as endpoint:
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                              AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pgjobs-bench")
            times, floors = [], []
            for n in range(args.repeat):
                # Side by side: the floor, then the export, in each repetition.
                elapsed, result = pgjobs_export(dsn, 1, "s3://pgjobs-bench/exports/")
                assert result["sha256"] == base_sha, "S3 export differs from the plain COPY"
                times.append(elapsed)
                part = part_size(dsn, int(result["uri"].rsplit("/", 1)[1].split(".")[0]))
                floors.append(storage_floor(base_file, "pgjobs-bench", f"floor/{n}.csv", part))
            results.append(("pgjobs export -> s3 (local moto)", min(times), "goal <= 1.3x",
                            statistics.median(CPU["s3"])))
            floor = min(floors, key=lambda f: f[0] + f[1])
            s3_rss = peak_rss(dsn, 1, "s3://pgjobs-bench/exports/")
            if args.profile:
                seconds = profile_export(dsn, 1, "s3://pgjobs-bench/exports/", args.profile)
                print(f"profiled S3 export: {seconds:.2f}s, stats in {args.profile}")
    os.unlink(base_file)

    print(f"\nexport of {args.rows:,} rows ({size / 1e6:.0f} MB of CSV, "
          f"{size / args.rows:.0f} B/row) from a {2 * args.rows:,}-row relation, "
          f"best of {args.repeat}:")
    print(f"  {'plain COPY -> local file (baseline)':<38} {base:7.2f}s "
          f"{size / base / 1e6:7.1f} MB/s   1.00x  (client CPU "
          f"{statistics.median(CPU['copy']):.2f}s)")
    for label, seconds, goal, cpu in results:
        print(f"  {label:<38} {seconds:7.2f}s {size / seconds / 1e6:7.1f} MB/s "
              f"{seconds / base:6.2f}x  ({goal}; client CPU {cpu:.2f}s)")
    if floor is not None:
        parts, complete, readback = floor
        upload = parts + complete
        print(f"  {'storage floor: botocore -> moto, no db':<38} {upload:7.2f}s "
              f"{size / upload / 1e6:7.1f} MB/s {upload / base:6.2f}x  (parts {parts:.2f}s + "
              f"complete {complete:.2f}s; read-back {readback:.2f}s)")
        print(f"  {'plain COPY + storage floor':<38} {base + upload:7.2f}s "
              f"{size / (base + upload) / 1e6:7.1f} MB/s {(base + upload) / base:6.2f}x  "
              "(reading, then uploading: no overlap)")
    print("  every export's sha256 equals the baseline file's")

    if s3_rss is not None:
        print(f"  peak RSS exporting {s3_rss[1]:>11,} rows to S3: {s3_rss[0]:6.0f} MB"
              "  (goal <= 150 MB)")
    rss = [peak_rss(dsn, 1, file_dest)]
    if args.rss_rows:
        rss.append(peak_rss(dsn, 3, file_dest))
    for megabytes, rows in rss:
        print(f"  peak RSS exporting {rows:>11,} rows: {megabytes:6.0f} MB"
              "  (goal <= 150 MB, flat in row count)")


def cpu_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def server_copy(dsn: str, scope: int, path: str) -> float:
    """The same COPY written to ``path`` by the server itself (``COPY ... TO
    'file'``: no protocol, no client), timed: what the database alone costs.
    The server must run on this machine and the user may write server files
    (a superuser or a member of ``pg_write_server_files``; the throwaway
    cluster's user is one)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        try:
            conn.execute(sql.SQL(f"COPY (SELECT * FROM {TABLE} WHERE table_id = {scope} "
                                 "ORDER BY id) TO {} WITH (FORMAT csv, HEADER true)")
                         .format(sql.Literal(path)))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SystemExit(f"--server-copy: {exc} (hint: use a superuser or a member of "
                             "pg_write_server_files in --dsn, or drop --server-copy)") from None
        return time.perf_counter() - started


def alternate(dsn: str, args: argparse.Namespace, workdir: str) -> None:
    """N rounds of a plain COPY then the exports, each ratio against its round's COPY."""
    postmaster = postmaster_of(dsn)
    if args.server_copy and postmaster is None:
        raise SystemExit("--server-copy: the server does not run on this machine (hint: "
                         "drop --dsn to use a throwaway cluster, or drop --server-copy)")
    base_file = os.path.join(workdir, "baseline.csv")
    server_file = os.path.join(workdir, "server", "server.csv")
    if args.server_copy:
        # The server's own user writes it (the throwaway cluster may run as
        # another user): a folder it may write, in a workdir it may cross.
        os.mkdir(os.path.dirname(server_file))
        os.chmod(os.path.dirname(server_file), 0o777)
        os.chmod(workdir, 0o711)
    file_dest = f"file://{workdir}/exports"
    # label: (destination, separate connections as before); with --separate each
    # export is also run the previous way ("sep"), in the same rounds.
    kinds = {"file://": (file_dest, False)}
    if args.separate:
        kinds["file sep"] = (file_dest, True)
    ratios: dict[str, list[tuple[float, float | None]]] = {kind: [] for kind in kinds}
    loads: list[float] = []
    against_durable: dict[str, list[float]] = {}  # --durable-copy
    against_server: dict[str, list[float]] = {}  # --server-copy
    client_over_server: list[float] = []
    with contextlib.ExitStack() as stack:
        if not args.no_s3:
            import boto3

            endpoint = stack.enter_context(moto())
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                              AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pgjobs-bench")
            kinds["s3"] = ("s3://pgjobs-bench/exports/", False)
            ratios["s3"] = []
            if args.separate:
                kinds["s3 sep"] = ("s3://pgjobs-bench/exports/", True)
                ratios["s3 sep"] = []
        for n in range(args.alternate):
            loads.append(os.getloadavg()[0])
            with timed(postmaster) as copy:
                base = baseline(dsn, 1, base_file)  # its connect not timed, as before
            hashing = time.process_time()
            base_sha = sha256_file(base_file)
            hashing = time.process_time() - hashing
            sealing = seal_file(base_file) if args.phases else 0.0
            base_cpu = copy[1]
            line = f"round {n + 1}: COPY {base:.2f}s"
            on_server: float | None = None
            if args.server_copy:
                on_server = server_copy(dsn, 1, server_file)
                assert sha256_file(server_file) == base_sha, "the server's COPY differs"
                os.unlink(server_file)
                client_over_server.append(base / on_server)
                line += f" (server-side COPY {on_server:.2f}s)"
            durable: float | None = None
            if args.durable_copy:
                durable = baseline(dsn, 1, base_file, durable=True)
                line += f" (COPY+fdatasync {durable:.2f}s)"
            splits: list[str] = []
            order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
            for kind in order:
                with timed(postmaster) as export:
                    if args.phases:
                        _, result, split = phased_export(dsn, 1, *kinds[kind])
                        splits.append(f"    {kind:<8} {split}")
                    else:
                        _, result = pgjobs_export(dsn, 1, *kinds[kind])
                assert result["sha256"] == base_sha, f"{kind} export differs from the COPY"
                if kinds[kind][0] == file_dest:
                    os.unlink(result["uri"][len("file://"):])
                seconds, cpu = export[0], export[1]
                assert seconds is not None
                if args.phases:
                    # Where the CPU went: this process (reader, part writer, bound
                    # walker) and the cluster (data and control backends), each
                    # against the round's COPY: on a machine whose cores are busy,
                    # wall time follows these.
                    splits.append(f"    {kind:<8} CPU: this process {cpu_seconds(export[2])} "
                                  f"(COPY {cpu_seconds(copy[2])}), the cluster "
                                  f"{cpu_seconds(export[3])} (COPY {cpu_seconds(copy[3])})")
                cpu_ratio = None if cpu is None or not base_cpu else cpu / base_cpu
                ratios[kind].append((seconds / base, cpu_ratio))
                line += (f" | {kind} {seconds:.2f}s {seconds / base:.2f}x"
                         f" (CPU {'-' if cpu_ratio is None else f'{cpu_ratio:.2f}x'})")
                if durable:
                    against_durable.setdefault(kind, []).append(seconds / durable)
                    line += f" {seconds / durable:.2f}x of COPY+fdatasync"
                if on_server:
                    against_server.setdefault(kind, []).append(seconds / on_server)
                    line += f" {seconds / on_server:.2f}x of the server-side COPY"
            print(f"{line} | load {loads[-1]:.1f}", flush=True)
            for split in splits:
                print(split, flush=True)
            if args.phases:
                # A file:// export hashes its bytes once with SHA-256, while
                # streaming (each part's prefix digest read off it), and seals
                # each part as written; its read-back checks the seals
                # (docs/exports.md, *Verified before it completes*).
                print(f"    sha256   one pass over the round's bytes (read from the page "
                      f"cache) {hashing:.2f}s CPU; a file:// export makes one", flush=True)
                print(f"    seals    one pass of the parts' seals (AES-GMAC) over them "
                      f"{sealing:.2f}s CPU; a file:// export makes two (writing, "
                      "reading back)", flush=True)
    os.unlink(base_file)
    print(f"\nexport of {args.rows:,} rows, {args.alternate} alternated rounds, load "
          f"{min(loads):.1f} to {max(loads):.1f}; ratios against each round's COPY "
          "(wall; CPU of this process and the cluster):")
    for kind, values in ratios.items():
        wall = [w for w, _ in values]
        cpus = [c for _, c in values if c is not None]
        cpu_text = (f"CPU median {statistics.median(cpus):.2f}x ({min(cpus):.2f}-"
                    f"{max(cpus):.2f})" if cpus else "CPU -")
        print(f"  {kind:<8} median {statistics.median(wall):.2f}x "
              f"({min(wall):.2f}-{max(wall):.2f}); {cpu_text}")
        if kind in against_server:
            servers = against_server[kind]
            print(f"  {'':<8} against the server-side COPY: median "
                  f"{statistics.median(servers):.2f}x ({min(servers):.2f}-{max(servers):.2f})")
        if kind in against_durable:
            durables = against_durable[kind]
            print(f"  {'':<8} against COPY+fdatasync: median "
                  f"{statistics.median(durables):.2f}x ({min(durables):.2f}-{max(durables):.2f})")
    if client_over_server:
        print(f"  the plain COPY against the server-side COPY: median "
              f"{statistics.median(client_over_server):.2f}x ({min(client_over_server):.2f}-"
              f"{max(client_over_server):.2f})")
    print("  every export's sha256 equals its round's COPY")


if __name__ == "__main__":
    main()
