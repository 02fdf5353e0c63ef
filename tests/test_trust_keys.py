"""Never a "succeeded" with matching rows left (issue 9, item 5).

A keyset walk cannot reach a NULL key, so registration requires the key
column to be NOT NULL (55000, with the ALTER TABLE in the hint), and the
runner re-checks it at every page: a job whose key lost NOT NULL after
registration fails clearly. A range delete that reaches the end of its
scope verifies that nothing matches any more and sweeps what does; rows a
DELETE cannot remove (a trigger keeps them) fail the job instead of being
reported deleted.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, run_pages, scalar

Conn = psycopg.Connection[Any]


def make_table(conn: Conn, rows: int = 40) -> None:
    build_target(conn, "k", "id bigint NOT NULL, s int NOT NULL, n int, created_at timestamptz"
                 " NOT NULL DEFAULT now() - interval '1 hour'", scope="s", index="unique")
    conn.execute("INSERT INTO k (id, s, n) SELECT g, s, g FROM generate_series(1, %s) g,"
                 " generate_series(1, 2) s", (rows,))


def status(conn: Conn, job_id: int) -> tuple[str, str | None, int]:
    row = conn.execute("SELECT status, error, done FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize("column", ["id", "weird Key"])
def test_a_nullable_key_is_refused_with_the_alter_table(conn: Conn, column: str) -> None:
    conn.execute(f"""CREATE SCHEMA "odd schema";
                     CREATE TABLE "odd schema".t ("{column}" bigint, s int NOT NULL,
                                                  created_at timestamptz NOT NULL);
                     CREATE UNIQUE INDEX ON "odd schema".t (s, "{column}")""")
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as exc:
        conn.execute("SELECT pgjobs.register_target('\"odd schema\".t', %s, 's', 'created_at')",
                     (column,))
    hint = exc.value.diag.message_hint or ""
    quoted = column if column.isidentifier() else f'"{column}"'
    assert hint == f'ALTER TABLE "odd schema".t ALTER COLUMN {quoted} SET NOT NULL;'
    conn.execute(hint)  # the hint is the fix
    conn.execute("SELECT pgjobs.register_target('\"odd schema\".t', %s, 's', 'created_at')",
                 (column,))


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_not_null_dropped_after_registration_fails_the_job(conn: Conn, kind: str) -> None:
    make_table(conn)
    conn.execute("ALTER TABLE k ALTER COLUMN id DROP NOT NULL")
    conn.execute("UPDATE k SET id = NULL WHERE s = 1 AND id <= 5")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('k', '1', '{}', '{}', "
                          "'{\"page_size\": 7}')" if kind == "delete" else
                    "SELECT pgjobs.submit_backfill('k', '1', '{}', '{\"n\": 0}', "
                    "'{\"page_size\": 7}')")
    run_pages(conn, job_id)
    state, error, _ = status(conn, job_id)
    assert state == "failed"
    assert error is not None and "NOT NULL" in error and "ALTER TABLE" in error
    # Nothing claims success; the mask is lifted from what is left.
    assert scalar(conn, "SELECT pgjobs.visible_count('k', '1')") == scalar(
        conn, "SELECT count(*) FROM k WHERE s = 1")


def test_an_export_refuses_a_key_that_lost_not_null(conn: Conn) -> None:
    make_table(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_export('k', '1')")
    conn.execute("ALTER TABLE k ALTER COLUMN id DROP NOT NULL")
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as exc:
        conn.execute("SELECT * FROM pgjobs.export_chunk_sql(%s, NULL, 10)", (job_id,))
    assert "SET NOT NULL" in (exc.value.diag.message_hint or "")


def test_rows_the_range_walk_missed_are_swept_before_success(conn: Conn) -> None:
    """Make the walk skip keys 4..30 (its cursor jumps, as if they had been
    behind it): the end-of-scope check finds them and sweeps them."""
    make_table(conn)
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('k', '1', '{}', ARRAY['17'],
                                                      '{"page_size": 3, "strategy": "range"}')""")
    jumped = False

    def jump(state: str) -> None:
        nonlocal jumped
        checkpoint = scalar(conn, "SELECT checkpoint FROM pgjobs.jobs WHERE id = %s", (job_id,))
        if not jumped and checkpoint and checkpoint.get("after") == "3":
            conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint || %s::jsonb "
                         "WHERE id = %s", (json.dumps({"after": "30"}), job_id))
            jumped = True

    run_pages(conn, job_id, each=jump)
    assert jumped
    state, error, done = status(conn, job_id)
    assert state == "succeeded", error
    assert scalar(conn, "SELECT array_agg(id) FROM k WHERE s = 1") == [17]
    assert done == 39
    assert scalar(conn, "SELECT count(*) FROM k WHERE s = 2") == 40
    assert scalar(conn, "SELECT pgjobs.mask('k', '1')") == "true"


def test_rows_a_trigger_keeps_fail_a_range_delete(conn: Conn) -> None:
    make_table(conn)
    conn.execute("""
        CREATE FUNCTION keep_odd() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RETURN CASE WHEN OLD.id % 10 = 1 THEN NULL ELSE OLD END; END $$;
        CREATE TRIGGER keep BEFORE DELETE ON k FOR EACH ROW EXECUTE FUNCTION keep_odd();""")
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('k', '1', '{}', '{}',
                                                      '{"page_size": 6}')""")
    states = run_pages(conn, job_id)
    assert len(states) < 50
    state, error, done = status(conn, job_id)
    assert state == "failed"
    assert error is not None and "trigger or rule" in error and "4 rows" in error
    assert done == 36
    assert scalar(conn, "SELECT count(*) FROM k WHERE s = 1") == 4
