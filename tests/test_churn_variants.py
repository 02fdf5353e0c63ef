"""Churn variants on the job tables: what a claim reads does not grow with
the history of finished work that prune has not removed yet.

Finished jobs stay in pgjobs.jobs (and their items and export parts in
pgjobs.job_items and pgjobs.export_parts) for the retention prune keeps,
24 hours by default: a busy queue holds many times more finished work than
live work. A claim that walks that history reads more at every poll the
longer the day goes, and every idle worker polls. Each check counts the
rows a call reads from pgjobs' tables (pg_stat_xact_user_tables, in the
call's own transaction, rolled back) with no history and with a history of
finished jobs, items and parts, and asserts the two are the same. Counts,
never timings. The helper claim of a parallel export's part read every part
of every finished export (ordered by job id over the whole table).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import MANY_PARTS, make_items, scalar, submit_export

Conn = psycopg.Connection[Any]
# Finished jobs of each kind in the history: parts and items are many times more.
HISTORY = 300
PARTS_PER_EXPORT = 16
ITEMS_PER_JOB = 20
SLACK = 12
READS = """
SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)::bigint
  FROM pg_stat_xact_user_tables WHERE schemaname = 'pgjobs'
"""
ANALYZE = "ANALYZE pgjobs.jobs, pgjobs.job_items, pgjobs.export_parts"


@pytest.fixture(autouse=True)
def items(conn: Conn) -> None:
    make_items(conn, rows=240, tenants=3)


def _reads(conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> int:
    """Rows `sql` reads from pgjobs' tables; its effects are rolled back."""
    conn.execute("BEGIN")
    try:
        before = int(scalar(conn, READS))
        conn.execute(sql, params).fetchall()
        return int(scalar(conn, READS)) - before
    finally:
        conn.execute("ROLLBACK")


def _columns(conn: Conn, table: str, without: set[str]) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum", (table,))
    return [r[0] for r in rows if r[0] not in without]


def _finished_copies(conn: Conn, kind: str, fanout: bool, copies: int) -> list[int]:
    """`copies` succeeded jobs of `kind`, made from the first job's row, as prune
    finds them (inserted finished: no dead row versions of their own)."""
    set_ = {"status": "'succeeded'", "finished_at": "now()", "lease_expires_at": "NULL",
            "pause_requested_at": "NULL", "cancel_requested_at": "NULL",
            "kind": "%(kind)s", "fanout": "%(fanout)s", "scope": "'2'"}
    cols = _columns(conn, "pgjobs.jobs", {"id"})
    values = [set_.get(c, f"j.{c}") for c in cols]
    return [int(r[0]) for r in conn.execute(
        f"INSERT INTO pgjobs.jobs ({', '.join(cols)}) SELECT {', '.join(values)} "
        "FROM pgjobs.jobs j, generate_series(1, %(copies)s) "
        "WHERE j.id = (SELECT min(id) FROM pgjobs.jobs) RETURNING id",
        {"kind": kind, "fanout": fanout, "copies": copies})]


def _history(conn: Conn) -> None:
    """Finished exports with their parts, finished fan-out jobs with their items."""
    done = _finished_copies(conn, "export", False, HISTORY)
    conn.execute("INSERT INTO pgjobs.export_parts (job_id, part, status, done) "
                 "SELECT j, p, 'succeeded', 10 FROM unnest(%s::bigint[]) j, "
                 "generate_series(1, %s) p", (done, PARTS_PER_EXPORT))
    done = _finished_copies(conn, "thumb", True, HISTORY)
    conn.execute("INSERT INTO pgjobs.job_items (job_id, payload, status, finished_at) "
                 "SELECT j, to_jsonb(i), 'succeeded', now() FROM unnest(%s::bigint[]) j, "
                 "generate_series(1, %s) i", (done, ITEMS_PER_JOB))
    _finished_copies(conn, "delete", False, HISTORY)
    conn.execute(ANALYZE)


def _running_export(conn: Conn) -> int:
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 4})
    identity = scalar(conn, "SELECT worker FROM pgjobs.claim_export(%s, 'c', '1 minute')",
                      (job_id,))
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, identity)) == 4
    return job_id


def _with_and_without_history(conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn.execute(ANALYZE)  # the same statistics' plans, with and without history
    for _ in range(2):  # warm: the first call of a session plans and caches
        _reads(conn, sql, params)
    quiet = _reads(conn, sql, params)
    _history(conn)
    for _ in range(2):
        _reads(conn, sql, params)
    busy = _reads(conn, sql, params)
    # A plan may differ by a probe or two with the new statistics; a walk of
    # the history reads thousands.
    assert busy <= quiet + SLACK, (quiet, busy)


def test_a_helper_part_claim_reads_nothing_of_finished_exports(conn: Conn) -> None:
    _running_export(conn)
    _with_and_without_history(
        conn, "SELECT * FROM pgjobs.claim_export_part(NULL, 'helper', '1 minute')")


def test_a_helper_part_claim_with_no_export_running_reads_nothing_of_them(
        conn: Conn) -> None:
    _with_and_without_history(
        conn, "SELECT * FROM pgjobs.claim_export_part(NULL, 'helper', '1 minute')")


def test_a_given_part_claim_reads_nothing_of_finished_exports(conn: Conn) -> None:
    job_id = _running_export(conn)
    _with_and_without_history(
        conn, "SELECT * FROM pgjobs.claim_export_part(%s, 'own', '1 minute')", (job_id,))


def test_an_export_claim_reads_nothing_of_finished_jobs(conn: Conn) -> None:
    submit_export(conn, "1")
    _with_and_without_history(
        conn, "SELECT * FROM pgjobs.claim(ARRAY['export', 'import'], 'w', '1 minute', 4)")


def test_an_item_claim_reads_nothing_of_finished_items(conn: Conn) -> None:
    scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items'::regclass, '1', '[1, 2, 3]'::jsonb)")
    _with_and_without_history(
        conn, "SELECT * FROM pgjobs.claim_items(ARRAY['thumb'], 'w', '1 minute', 2)")
