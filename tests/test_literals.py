"""Stored SQL (job predicates, the mask) must mean the same in every session:
values are fixed at submit in the submitter's settings and written in a
canonical form the runner's settings cannot reinterpret."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support import build_target, scalar

Conn = psycopg.Connection[Any]


def make_rows(conn: Conn) -> None:
    build_target(conn, "rows", "id bigint PRIMARY KEY, scope int NOT NULL, due timestamptz,"
                 " created_at timestamptz NOT NULL DEFAULT now()")
    conn.execute("""
        INSERT INTO rows (id, scope, due)
        SELECT i, 1, timestamptz '2030-04-03 00:00:00+00' + (i - 50) * interval '1 hour'
          FROM generate_series(1, 100) i""")


def test_filter_values_are_canonical_whatever_the_datestyle(conn: Conn) -> None:
    make_rows(conn)
    conn.execute("SET datestyle = 'SQL, DMY'")
    conn.execute("SET timezone = 'UTC'")
    sql = scalar(conn, """SELECT pgjobs.compile_filter('rows', '{"due": {"$lt": "03/04/2030"}}')""")
    # 3 April 2030 in DMY, written back in ISO 8601.
    assert "2030-04-03T00:00:00+00:00" in sql
    now_sql = scalar(conn, """SELECT pgjobs.compile_filter('rows', '{"due": {"$lt": "now"}}')""")
    assert "'now'" not in now_sql  # fixed at compile time, not re-evaluated later


def test_a_delete_submitted_under_dmy_runs_right_in_an_iso_session(
        conn: Conn, make_conn: Any) -> None:
    make_rows(conn)
    conn.execute("SET datestyle = 'SQL, DMY'")
    conn.execute("SET timezone = 'America/New_York'")
    job_id = scalar(conn, """
        SELECT pgjobs.submit_delete('rows', '1', '{"due": {"$lt": "03/04/2030 00:00 UTC"}}',
                                    ARRAY['1'], '{"page_size": 7}')""")
    expected = scalar(conn, "SELECT count(*) FROM rows WHERE due < '2030-04-03 00:00+00' "
                      "AND id <> 1")
    assert expected == 48
    runner = make_conn()
    runner.execute("SET datestyle = 'ISO, MDY'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert scalar(runner, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(runner, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)) == expected
    assert scalar(runner, "SELECT count(*) FROM rows") == 100 - expected


def test_timestamp_keys_survive_the_cursor_in_any_datestyle(conn: Conn, make_conn: Any) -> None:
    conn.execute("""
        CREATE TABLE events (at timestamp NOT NULL, scope text NOT NULL,
                             created_at timestamp NOT NULL DEFAULT '2000-01-01',
                             PRIMARY KEY (scope, at));
        INSERT INTO events (at, scope)
        SELECT timestamp '2030-01-01' + i * interval '1 day', 't' FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('events', 'at', 'scope', 'created_at');
    """)
    conn.execute("SET datestyle = 'SQL, DMY'")
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('events', 't', '{}',
                             ARRAY['05/01/2030'], '{"page_size": 3}')""")
    runner = make_conn()
    runner.execute("SET datestyle = 'Postgres, MDY'")
    runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert scalar(runner, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    # Only the excluded key (5 January 2030, written DMY by the submitter) is left.
    keys = scalar(runner, "SELECT array_agg(to_char(at, 'YYYY-MM-DD')) FROM events")
    assert keys == ["2030-01-05"]
