"""Issue 9, item 16: clients do not set the worker's memory. The worker clamps a
job's chunk_rows and part_size to its own maxima and records the effective
values in the checkpoint; a chunk is bounded by bytes as well as rows (rolled
back and read again with fewer keys when its output passes chunk_bytes); a
resumed export still writes the same bytes, even under a worker with other
maxima."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgjobs import queries
from pgjobs.poller.export import (
    DEFAULT_MAX_CHUNK_ROWS,
    DEFAULT_MAX_PART_SIZE,
    FIRST_ROW_BYTES,
    Exporter,
    _first_limit,
    _next_limit,
)
from tests.support import (
    LONG_LEASE,
    checkpoint_parts,
    expire_leases,
    job,
    object_bytes,
    plain_copy,
    reader_statements,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
GREEDY = {"chunk_rows": 1_000_000, "part_size": 1024 ** 3}
MiB = 1024 * 1024


def make_wide(conn: Conn, rows: int, kb: int) -> None:
    """Table `wide`: `rows` rows of about `kb` KB of poorly compressible text each."""
    conn.execute("""
        CREATE TABLE wide (id bigint PRIMARY KEY, tenant int NOT NULL, body text,
                           created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour');
        CREATE INDEX ON wide (tenant, id);
        SELECT pgjobs.register_target('wide', 'id', 'tenant', 'created_at');
    """)
    conn.execute("""
        INSERT INTO wide (id, tenant, body)
        SELECT g, 1, (SELECT string_agg(md5(g::text || '-' || i::text), '')
                        FROM generate_series(1, %s) i)
          FROM generate_series(1, %s) g""", (kb * 1024 // 32, rows))


def add_rows(conn: Conn, first: int, rows: int, kb: float) -> None:
    """`rows` more rows of tenant 1 in `wide` from id `first`, of about `kb` KB each."""
    conn.execute("""
        INSERT INTO wide (id, tenant, body)
        SELECT g, 1, (SELECT string_agg(md5(g::text || '-' || i::text), '')
                        FROM generate_series(1, %s::integer) i)
          FROM generate_series(%s::bigint, %s::bigint) g""", (max(int(kb * 1024) // 32, 1), first,
                                                first + rows - 1))


def run(dsn: str, job_id: int, storage_uri: str, **maxima: int) -> Any:
    name = f"test-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        claimed = c.execute("SELECT id, worker FROM pgjobs.claim_export(%s, %s, '30 seconds')",
                            (job_id, name)).fetchall()
    assert [r[0] for r in claimed] == [job_id]
    return Exporter(dsn, job_id, claimed[0][1], storage_uri, **maxima).run()


def test_greedy_options_are_clamped_and_recorded(conn: Conn, dsn: str, tmp_path: Path) -> None:
    make_wide(conn, rows=40, kb=4)
    job_id = submit_export(conn, "1", {}, GREEDY, target="wide")
    outcome = run(dsn, job_id, f"file://{tmp_path}", max_chunk_rows=7, max_part_size=20_000)
    assert outcome.status == "succeeded", outcome
    ck = job(conn, job_id)["checkpoint"]
    assert (ck["chunk_rows"], ck["part_size"], ck["chunk_bytes"]) == (7, 20_000, MiB)
    assert outcome.result["parts"] >= 6  # ~160 KB cut into parts of about 20 KB
    assert object_bytes(outcome.result) == plain_copy(
        conn, "SELECT * FROM wide WHERE tenant = 1 ORDER BY id")


def test_defaults_clamp_too(conn: Conn, dsn: str, tmp_path: Path) -> None:
    make_wide(conn, rows=3, kb=1)
    job_id = submit_export(conn, "1", {}, GREEDY, target="wide")
    assert run(dsn, job_id, f"file://{tmp_path}").status == "succeeded"
    ck = job(conn, job_id)["checkpoint"]
    assert (ck["chunk_rows"], ck["part_size"]) == (DEFAULT_MAX_CHUNK_ROWS, DEFAULT_MAX_PART_SIZE)


def test_within_the_maxima_a_job_keeps_its_own_values(conn: Conn, dsn: str,
                                                      tmp_path: Path) -> None:
    make_wide(conn, rows=3, kb=1)
    job_id = submit_export(conn, "1", {}, {"chunk_rows": 2, "part_size": 4096}, target="wide")
    assert run(dsn, job_id, f"file://{tmp_path}").status == "succeeded"
    ck = job(conn, job_id)["checkpoint"]
    assert (ck["chunk_rows"], ck["part_size"], ck["limit"]) == (2, 4096, 2)


@pytest.mark.parametrize("options", [{}, {"format": "jsonl", "gzip": True}],
                         ids=["csv", "jsonl-gzip"])
def test_a_chunk_is_bounded_by_bytes(conn: Conn, dsn: str, tmp_path: Path,
                                     options: dict[str, Any]) -> None:
    # 6 MB of rows in what the job asks to be one chunk: read in chunks of ~1 MiB.
    make_wide(conn, rows=150, kb=40)
    job_id = submit_export(conn, "1", {}, {**GREEDY, **options}, target="wide")
    outcome = run(dsn, job_id, f"file://{tmp_path}", max_part_size=1024)
    assert outcome.status == "succeeded", outcome
    ck = job(conn, job_id)["checkpoint"]
    assert ck["chunk_bytes"] == MiB and 1 <= ck["limit"] <= 26
    assert outcome.result["parts"] >= 5
    if not options:
        assert object_bytes(outcome.result) == plain_copy(
            conn, "SELECT * FROM wide WHERE tenant = 1 ORDER BY id")


@given(limit=st.integers(1, 10_000), chunk_rows=st.integers(1, 10_000),
       chunk_bytes=st.integers(1, 8 * MiB), rows=st.integers(0, 10_000),
       row_bytes=st.integers(1, 100_000))
def test_the_next_chunk_limit_fills_chunk_bytes_within_bounds(
        limit: int, chunk_rows: int, chunk_bytes: int, rows: int, row_bytes: int) -> None:
    """After a chunk of `rows` rows of `row_bytes` each: never fewer keys than now,
    never more than chunk_rows or twice as many, and grown only as far as rows of
    this size fill nine tenths of chunk_bytes."""
    limit = min(limit, chunk_rows)
    output = rows * row_bytes
    following = _next_limit(limit, chunk_rows, chunk_bytes, rows, output)
    assert limit <= following <= max(limit, min(chunk_rows, 2 * limit))
    if following > limit:
        assert following * row_bytes <= chunk_bytes * 9 // 10
        assert following == min(chunk_rows, 2 * limit) or (
            (following + 1) * row_bytes > chunk_bytes * 9 // 10)


@pytest.mark.parametrize("options", [{}, {"format": "jsonl", "gzip": True}],
                         ids=["csv", "jsonl-gzip"])
def test_no_chunk_of_rows_narrower_than_first_row_bytes_is_read_twice(
        conn: Conn, dsn: str, tmp_path: Path, options: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of about 200 bytes, under the default chunk_rows and a 1 MiB
    chunk_bytes: the first chunk asks for keys that fill it at FIRST_ROW_BYTES a
    row, then chunks grow to fill it, and no chunk overflows. The first chunk
    used to ask for chunk_rows keys (50,000 rows of 200 bytes: 10 MB), was read
    to 1 MiB, rolled back and read again: every export of rows wider than
    chunk_bytes / chunk_rows read a chunk_bytes of rows twice."""
    make_wide(conn, rows=0, kb=1)
    add_rows(conn, 1, 12_000, 0.2)
    sent = reader_statements(monkeypatch)
    job_id = submit_export(conn, "1", {}, options, target="wide")
    outcome = run(dsn, job_id, f"file://{tmp_path}", max_part_size=1024)
    assert outcome.status == "succeeded", outcome
    ck = job(conn, job_id)["checkpoint"]
    assert (ck["chunk_rows"], ck["chunk_bytes"]) == (DEFAULT_MAX_CHUNK_ROWS, MiB)
    cursors = [params["after"] for query, params in sent
               if query == queries.EXPORT_CHUNK_SQL]
    assert len(cursors) >= 3 and len(set(cursors)) == len(cursors), cursors
    assert ck["limit"] >= _first_limit(DEFAULT_MAX_CHUNK_ROWS, MiB)
    if not options:
        assert ck["limit"] > _first_limit(DEFAULT_MAX_CHUNK_ROWS, MiB)  # grown to fill it
        assert object_bytes(outcome.result) == plain_copy(
            conn, "SELECT * FROM wide WHERE tenant = 1 ORDER BY id")


def test_the_first_chunk_limit_fills_chunk_bytes_at_first_row_bytes() -> None:
    for chunk_rows in (1, 7, 1000, 50_000, 1_000_000):
        for chunk_bytes in (1, MiB, 4 * MiB, 8 * MiB):
            first = _first_limit(chunk_rows, chunk_bytes)
            assert 1 <= first <= chunk_rows
            assert first in (1, chunk_rows) or first * FIRST_ROW_BYTES <= chunk_bytes * 9 // 10
            assert first == 1 or first == chunk_rows or (
                (first + 1) * FIRST_ROW_BYTES > chunk_bytes * 9 // 10)


def test_chunks_grow_back_after_wide_rows(conn: Conn, dsn: str, tmp_path: Path) -> None:
    """30 rows of 40 KB overflow a 1 MiB chunk; the 3,000 rows of 0.5 KB after them
    are read in chunks that fill it again (about 1,800 keys). A limit that stayed
    where the wide rows left it (it halved to a dozen keys and held) read them in
    hundreds of chunks, each a round trip, a transaction and a keyset bound."""
    make_wide(conn, rows=30, kb=40)
    add_rows(conn, 31, 3000, 0.5)
    job_id = submit_export(conn, "1", {}, GREEDY, target="wide")
    outcome = run(dsn, job_id, f"file://{tmp_path}", max_part_size=1024)
    assert outcome.status == "succeeded", outcome
    ck = job(conn, job_id)["checkpoint"]
    assert ck["chunk_bytes"] == MiB and ck["limit"] >= 1000, ck["limit"]
    assert object_bytes(outcome.result) == plain_copy(
        conn, "SELECT * FROM wide WHERE tenant = 1 ORDER BY id")


def test_a_uniform_export_is_read_in_chunks_that_fill_chunk_bytes(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """Rows of one size: after the first overflow every chunk holds at least 80% of
    what fits (the rule halved the limit whenever a chunk landed at the edge)."""
    make_wide(conn, rows=150, kb=40)
    job_id = submit_export(conn, "1", {}, GREEDY, target="wide")
    outcome = run(dsn, job_id, f"file://{tmp_path}", max_part_size=1024)
    assert outcome.status == "succeeded", outcome
    row_bytes = outcome.result["bytes"] / 150
    assert job(conn, job_id)["checkpoint"]["limit"] >= 0.8 * MiB / row_bytes


def _peak_rss_kb(dsn: str, storage_uri: str, tmp_path: Path, *args: str) -> int:
    """Run `pgjobs worker --once` in a process of its own; the peak RSS (KiB) it
    reached while working, above what its imports left resident: the peak is
    reset (Linux /proc/self/clear_refs) once every module is loaded, and read
    back (VmHWM) at exit."""
    out = tmp_path / f"rss-{uuid.uuid4().hex[:6]}"
    code = ("import atexit, sys\n"
            "import obstore, pgjobs.poller.worker, pgjobs.poller.export\n"
            "from pgjobs.cli.main import main\n"
            "def peak():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith(('VmHWM', 'VmRSS')):\n"
            "            yield int(line.split()[1])\n"
            "base = list(peak())[1]\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "atexit.register(lambda: open(sys.argv[1], 'w').write(str(list(peak())[0] - base)))\n"
            "main(sys.argv[2:], prog_name='pgjobs')\n")
    done = subprocess.run([sys.executable, "-c", code, str(out), "--dsn", dsn, "--storage",
                           storage_uri, "worker", "--once", "--poll", "0.2", *args],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return int(out.read_text())


def test_peak_memory_does_not_follow_what_the_job_asks(conn: Conn, dsn: str,
                                                       tmp_path: Path) -> None:
    """A job asking for one 1M-row chunk and 1 GiB parts over a ~60 MB export: the
    worker (maxima 1 MiB parts) stays within a few MB of what a tiny export costs
    it (measured 6-22 MB above it on a loaded machine); unbounded, it held the
    whole export (twice: chunk and part)."""
    make_wide(conn, rows=1500, kb=40)
    conn.execute("INSERT INTO wide (id, tenant, body) VALUES (1000000, 2, 'tiny')")
    storage_uri = f"file://{tmp_path}/out"
    submit_export(conn, "2", {}, GREEDY, target="wide")
    small = _peak_rss_kb(dsn, storage_uri, tmp_path, "--max-part-size", str(MiB))
    job_id = submit_export(conn, "1", {}, GREEDY, target="wide")
    big = _peak_rss_kb(dsn, storage_uri, tmp_path, "--max-part-size", str(MiB))
    row = job(conn, job_id)
    assert row["status"] == "succeeded" and row["result"]["bytes"] > 58 * MiB
    assert big - small < 30 * 1024, (small, big)


@pytest.mark.parametrize("shrinking", [False, True], ids=["uniform", "wide-then-narrow"])
def test_resume_is_byte_identical_under_a_worker_with_other_maxima(
        conn: Conn, dsn: str, tmp_path: Path, shrinking: bool) -> None:
    make_wide(conn, rows=240, kb=20)  # ~5 MB: ~1 MiB chunks once the limit shrinks
    if shrinking:  # then the limit grows again, chunk after chunk: the same on resume
        add_rows(conn, 241, 4000, 0.5)
    options = {**GREEDY, "format": "jsonl", "gzip": True}
    storage_uri = f"file://{tmp_path}/out"
    reference = submit_export(conn, "1", {}, options, target="wide")
    first_run = run(dsn, reference, storage_uri, max_part_size=1024, max_chunk_rows=500)
    assert first_run.status == "succeeded" and first_run.result["parts"] >= 4
    expected = object_bytes(first_run.result)

    job_id = submit_export(conn, "1", {}, options, target="wide")
    first = start_worker(dsn, storage_uri, "--once", "--lease", LONG_LEASE,
                         "--max-part-size", "1024", "--max-chunk-rows", "500",
                         delays="part=0.5")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 2, what="two parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    ck = job(conn, job_id)["checkpoint"]
    assert (ck["chunk_rows"], ck["part_size"], ck["chunk_bytes"]) == (500, 1024, MiB)
    expire_leases(conn, job_id)
    second = start_worker(dsn, storage_uri, "--once", "--max-part-size", str(64 * MiB),
                          "--max-chunk-rows", "3")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["checkpoint"]["history"][-1]["part"] >= 2  # continued, not restarted
    assert (row["checkpoint"]["chunk_rows"], row["checkpoint"]["part_size"]) == (500, 1024)
    assert object_bytes(row["result"]) == expected
