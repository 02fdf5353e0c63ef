"""`pgjobs.doctor` split into one function per group of checks (issue 11,
structure): its output is the output of the doctor before the split, row for
row and in order, for every group's findings, ok and not ok, with and
without p_target. The reference is the last release's doctor
(tests/upgrade/previous_sql), installed beside it under another name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import claim, expire_lease, make_rows_target, make_target, seed, submit

Conn = psycopg.Connection[Any]
BEFORE = Path(__file__).resolve().parent / "upgrade" / "previous_sql" / "functions" / "doctor.sql"


@pytest.fixture
def before(conn: Conn) -> Conn:
    text = BEFORE.read_text(encoding="utf-8")
    text = text[:text.index("COMMENT ON FUNCTION")]
    old = "CREATE OR REPLACE FUNCTION pgjobs.doctor("
    assert text.count(old) == 1
    conn.execute(text.replace(old, "CREATE FUNCTION public.doctor_before(").encode())
    return conn


# Checks added since the reference, each the last rows of a doctor without
# a target; every other row is the reference's. clients.kept_bytes (stop 58)
# and engine.ownership (stop 63) are in that reference; none is new since.
ADDED_LAST: tuple[str, ...] = ()


def same_output(conn: Conn, target: str | None = None) -> list[tuple[Any, ...]]:
    # One transaction: now() and the statistics snapshot are the same for both.
    with conn.transaction():
        after = conn.execute("SELECT * FROM pgjobs.doctor(%s::regclass)", (target,)).fetchall()
        was = conn.execute("SELECT * FROM public.doctor_before(%s::regclass)",
                           (target,)).fetchall()
    added = [r for r in after if r[0] in ADDED_LAST]
    assert after[len(after) - len(added):] == added  # after the reference's rows
    if ADDED_LAST:
        assert (len(added) >= 1) == (target is None), added
    after = after[:len(after) - len(added)]
    assert after == was
    return after


def test_an_empty_installation(before: Conn) -> None:
    rows = same_output(before)
    assert {r[0] for r in rows} >= {"pg_cron.installed", "engine.owner", "jobs.leases",
                                    "jobs.paused", "workers.listening", "storage.deletions"}


def test_every_group_with_findings(before: Conn, make_conn: Callable[..., Conn]) -> None:
    conn = before
    good = make_rows_target(conn, "good_rows")
    seed(conn, good, 60)
    conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    conn.execute("CREATE INDEX ON good_rows USING gin (table_id, data jsonb_path_ops)")
    # A document target without its gin index, with autovacuum left at the default.
    make_rows_target(conn, "no_gin_rows")
    conn.execute("ALTER TABLE no_gin_rows SET (autovacuum_vacuum_scale_factor = 0.2)")
    # A target whose (scope, key) index is gone, and dead tuples.
    bare = make_rows_target(conn, "bare_rows", document=False)
    seed(conn, bare, 3000)
    conn.execute("DROP INDEX bare_rows_table_id_id_idx")
    conn.execute("DELETE FROM bare_rows WHERE n % 2 = 0")
    conn.execute("SELECT pg_stat_force_next_flush()")
    # A registered column renamed, and a registered table dropped.
    make_rows_target(conn, "renamed_rows", document=False)
    conn.execute("ALTER TABLE renamed_rows RENAME COLUMN table_id TO tenant_id")
    make_rows_target(conn, "dropped_rows", document=False)
    conn.execute("DROP TABLE dropped_rows")
    # Jobs: an expired lease, a hung worker, a paused writer with a writer
    # behind it, a throttled job, queued imports and old storage deletions.
    make_target(conn)
    expired = submit(conn, "custom")
    assert claim(conn, "w", ["custom"]) == [expired]
    hung = submit(conn, "custom", scope="3")
    assert claim(conn, "w", ["custom"]) == [hung]
    conn.execute("UPDATE pgjobs.jobs SET started_at = now() - interval '1 hour', "
                 "heartbeat_at = now() - interval '1 hour' WHERE id = %s", (hung,))
    paused = submit(conn, "import", target="good_rows", scope="1")
    submit(conn, "import", target="good_rows", scope="1")
    conn.execute("UPDATE pgjobs.jobs SET status = 'paused' WHERE id = %s", (paused,))
    throttled = submit(conn, "custom", scope="2")
    conn.execute("""UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object('throttled',
                        jsonb_build_object('since', now(), 'reason', 'replica lag'))
                     WHERE id = %s""", (throttled,))
    submit(conn, "import", target="good_rows", scope="3")
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '1 hour' "
                 "WHERE kind = 'import' AND status = 'queued'")
    conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id, queued_at) "
                 "VALUES ('s3://b/old', 1, now() - interval '2 days')")

    expire_lease(conn, expired)
    rows = same_output(conn)
    not_ok = {r[0] for r in rows if r[1] != "ok"}
    assert not_ok >= {"target.exists", "target.columns", "target.key_index",
                      "target.document_index", "target.autovacuum", "jobs.leases",
                      "jobs.heartbeats", "jobs.paused", "jobs.throttled", "jobs.queued_age",
                      "workers.listening", "storage.deletions"}, rows
    for target in ("good_rows", "no_gin_rows", "bare_rows"):
        same_output(conn, target)
    # A registration the table no longer matches: the doctor reports it
    # instead of failing on it (since stop 25, whose doctor is the reference
    # now), row for row as the reference does.
    same_output(conn, "renamed_rows")
    renamed = conn.execute("SELECT check_name, status FROM pgjobs.doctor('renamed_rows'::regclass)"
                           " WHERE check_name LIKE 'target.%'").fetchall()
    assert renamed == [("target.columns", "fail")]
    # A `pgjobs run` session drives the engine: the pg_cron finding turns ok.
    make_conn(application_name="pgjobs run")
    same_output(conn)
    # Given up deletions.
    conn.execute("UPDATE pgjobs.storage_deletions SET attempts = 10, last_error = 'denied'")
    same_output(conn)


def test_in_pg_crons_database(cron_dsn: str) -> None:
    """The pg_cron checks that pass only in pg_cron's own database, and the
    prune job's retention read from its schedule."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        text = BEFORE.read_text(encoding="utf-8")
        text = text[:text.index("COMMENT ON FUNCTION")]
        conn.execute(text.replace("CREATE OR REPLACE FUNCTION pgjobs.doctor(",
                                  "CREATE OR REPLACE FUNCTION public.doctor_before(").encode())
        conn.execute("SELECT pgjobs.schedule()")
        assert {r[1] for r in same_output(conn) if r[0].startswith("pg_cron.")} == {"ok"}
        conn.execute("UPDATE cron.job SET command = 'SELECT pgjobs.prune(''7 days'')' "
                     "WHERE jobname = 'pgjobs.prune'")
        make_target(conn, "split_items")
        expired = submit(conn, "custom", target="split_items")
        assert claim(conn, "w", ["custom"]) == [expired]
        expire_lease(conn, expired)
        leases = [r for r in same_output(conn) if r[0] == "jobs.leases"]
        assert leases[0][4] == "SELECT pgjobs.prune('7 days');"
        conn.execute("SELECT pgjobs.unschedule()")
        same_output(conn)
    finally:
        conn.execute("SELECT pgjobs.unschedule()")
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DROP TABLE IF EXISTS split_items")
        conn.execute("DROP FUNCTION IF EXISTS public.doctor_before(regclass)")
        conn.close()
