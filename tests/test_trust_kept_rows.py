"""A backfill never reports success for rows a trigger kept (adversarial pass hT).

A delete whose rows a BEFORE DELETE trigger or a rule keeps fails, naming
them (test_trust_keys). A backfill did not: a BEFORE UPDATE row trigger that
returns NULL keeps its row out of the page's UPDATE, which just counts one
row fewer, and the job ended `succeeded` with those rows never set (found
with `RETURN CASE WHEN OLD.id % 4 = 0 THEN NULL ELSE NEW END`: 10 of 20
rows set, done = 10, status succeeded). A page now counts (and locks) its
rows first when the target or any table under it has such a trigger, and
an UPDATE that sets fewer raises 27000: the page is undone and the job
fails for good, its error saying how many rows and why.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import build_target, job, run_job, run_pages, scalar

Conn = psycopg.Connection[Any]

KEEP_EVERY_4TH = """CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN RETURN CASE WHEN OLD.id % 4 = 0 THEN NULL ELSE NEW END; END$$"""


def _table(conn: Conn, *, partitioned: bool = False) -> None:
    columns = """id bigint NOT NULL, scope text NOT NULL, status text, n int,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'"""
    if partitioned:
        conn.execute(f"CREATE TABLE t ({columns}) PARTITION BY LIST (scope)")
        conn.execute("CREATE TABLE t_a PARTITION OF t FOR VALUES IN ('a')")
        conn.execute("CREATE TABLE t_b PARTITION OF t FOR VALUES IN ('b')")
        conn.execute("CREATE INDEX ON t (scope, id)")
        conn.execute("SELECT pgjobs.register_target('t', 'id', 'scope', 'created_at')")
    else:
        build_target(conn, "t", columns)
    conn.execute("""INSERT INTO t (id, scope, status, n)
                    SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'x', g
                      FROM generate_series(1, 40) g""")


def _backfill(conn: Conn, filter_: dict[str, Any], options: dict[str, Any]) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('t', 'a', %s::jsonb, "
                            "'{\"status\": \"y\"}', %s::jsonb)",
                      (json.dumps(filter_), json.dumps(options))))


def _set(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM t WHERE scope = 'a' AND status = 'y'"))


@pytest.mark.parametrize(("filter_", "options"), [
    ({}, {}),
    ({}, {"page_size": 3}),
    ({"n": {"$gt": 10}}, {"page_size": 4}),
    ({"status": "x"}, {}),
])
def test_a_backfill_whose_rows_a_trigger_keeps_fails(conn: Conn, filter_: dict[str, Any],
                                                     options: dict[str, Any]) -> None:
    _table(conn)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, filter_, options)
    states = run_pages(conn, job_id)
    row = job(conn, job_id)
    assert states[-1] == "failed"
    assert row["status"] == "failed", row
    assert "not updated" in row["error"] and "BEFORE UPDATE trigger" in row["error"]
    assert "SQLSTATE 27000" in row["error"]
    # Not retried: the trigger keeps them on every attempt.
    assert row["attempts"] == 1
    # What it reports done is what it set; the failing page was undone.
    assert row["done"] == _set(conn)
    assert scalar(conn, "SELECT count(*) FROM t WHERE scope = 'b' AND status = 'y'") == 0


def test_a_trigger_on_a_partition_is_seen_from_the_partitioned_target(conn: Conn) -> None:
    _table(conn, partitioned=True)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t_a FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {"page_size": 5})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "BEFORE UPDATE trigger" in row["error"]
    assert row["done"] == _set(conn)


def test_run_job_fails_it_too(conn: Conn) -> None:
    """The engine's own path (CALL pgjobs.run_job) pages through the same check."""
    _table(conn)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {})
    run_job(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "BEFORE UPDATE trigger" in row["error"]


@pytest.mark.parametrize("trigger", [
    # A trigger that lets every row through (stamps a column) is no reason to fail.
    ("CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS "
     "$$BEGIN NEW.n := NEW.n + 1000; RETURN NEW; END$$",
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()"),
    # A disabled trigger keeps nothing.
    (KEEP_EVERY_4TH,
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep(); "
     "ALTER TABLE t DISABLE TRIGGER keep"),
    # Nor does one on another event, or a statement trigger.
    (KEEP_EVERY_4TH,
     "CREATE TRIGGER keep BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION keep()"),
    ("CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH STATEMENT EXECUTE FUNCTION keep()"),
])
def test_triggers_that_keep_no_row_let_the_backfill_succeed(conn: Conn,
                                                            trigger: tuple[str, str]) -> None:
    _table(conn)
    for statement in trigger:
        conn.execute(statement)
    job_id = _backfill(conn, {}, {"page_size": 3})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    assert row["done"] == 20 == _set(conn)
