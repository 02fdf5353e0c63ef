"""Adversarial review r1 of the merged session work: checks that held.

complete_many's fence judged per (id, worker) pair: swapped identities,
duplicate ids with one stale and one valid identity, a stale identity of a
job retaken by another worker, and an expired lease all leave the job as it
was, while the valid pairs of the same call complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import expire_lease, job, make_target, run_job, scalar, submit

Conn = psycopg.Connection[Any]


def _claim(conn: Conn, worker: str, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, worker FROM pgjobs.claim(%s, %s, '30 seconds', %s)",
                        (["custom"], worker, limit)).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_complete_many_fences_each_pair(conn: Conn) -> None:
    make_target(conn)
    for _ in range(4):
        submit(conn)
    (a, wa), (b, wb), (c, wc), (d, wd) = _claim(conn, "w", 4)
    # d's lease expires: its identity no longer holds the lease.
    expire_lease(conn, d)
    ids = [a, b, c, c, d]
    workers = [wb, wb, "w#stale", wc, wd]  # a with b's identity: fenced off
    done = conn.execute("SELECT * FROM pgjobs.complete_many(%s, %s)", (ids, workers)).fetchall()
    assert sorted(int(r[0]) for r in done) == sorted([b, c])
    assert job(conn, a)["status"] == "running"
    assert job(conn, b)["status"] == "succeeded"
    assert job(conn, c)["status"] == "succeeded"
    assert job(conn, d)["status"] != "succeeded"


# --- a filtered delete/backfill reads rows: SELECT is needed, at submit and run --------


@pytest.fixture
def writer_only(conn: Conn) -> Iterator[str]:
    """A pgjobs_client role with DELETE and UPDATE but no SELECT on `rows`."""
    role = f"pgjobs_r1_writer_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute("""
        CREATE TABLE rows (id bigint PRIMARY KEY, scope int NOT NULL, data jsonb,
                           created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON rows (scope, id);
        INSERT INTO rows (id, scope, data)
            SELECT i, i % 2, jsonb_build_object('salary', i * 1000) FROM generate_series(1, 20) i;
        SELECT pgjobs.register_target('rows', 'id', 'scope', 'created_at', 'data');
    """)
    conn.execute(f"GRANT DELETE, UPDATE ON rows TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_delete_or_backfill_without_select_is_refused(conn: Conn, writer_only: str) -> None:
    """PostgreSQL itself refuses `DELETE FROM rows WHERE data->>'salary' > ...` to a role
    without SELECT; pgjobs accepted the job (and its `done` told how many rows matched)."""
    conn.execute(f"SET ROLE {writer_only}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("DELETE FROM rows WHERE scope = 1 AND (data->>'salary')::int > 5000")
    for sql in ("""SELECT pgjobs.submit_delete('rows', '1', '{"salary": {"$gt": 5000}}')""",
                "SELECT pgjobs.submit_delete('rows', '1', '{}')",
                """SELECT pgjobs.submit_backfill('rows', '1', '{"salary": {"$gt": 5000}}',
                                                 '{"x": 1}')"""):
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            conn.execute(sql)
        assert "SELECT" in str(exc.value)
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM rows") == 20


def test_select_revoked_after_submit_stops_the_job(conn: Conn, writer_only: str) -> None:
    conn.execute(f"GRANT SELECT ON rows TO {writer_only}")
    conn.execute(f"SET ROLE {writer_only}")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('rows', '1', %s::jsonb)",
                    ('{"salary": {"$gt": 5000}}',))
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT ON rows FROM {writer_only}")
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT count(*) FROM rows") == 20
