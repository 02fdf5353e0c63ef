"""Small input gaps closed at their shared checks.

- A NULL job id given to a verb that controls a job (add_items, cancel,
  pause, resume, retry: pgjobs._controlled_job) is a bad argument, 22023 with
  a hint, not P0002 "job <NULL> does not exist".
- export_part_heartbeat checks what it records as heartbeat does
  (pgjobs._check_progress): a negative done (the job's done is the sum of
  its parts'), a checkpoint that is not an object; and its lease as the
  part's claim does (pgjobs._check_claim_args).
- A queued row whose run_at is -infinity or infinity (older releases
  accepted them) no longer breaks pgjobs.stats() or pgjobs.doctor() with
  22008: no migration rewrites such rows, so the readers cope.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]


@pytest.mark.parametrize("call", [
    "SELECT pgjobs.add_items(NULL, '[{\"a\": 1}]')",
    "SELECT pgjobs.cancel(NULL)",
    "SELECT pgjobs.pause(NULL)",
    "SELECT pgjobs.resume(NULL)",
    "SELECT pgjobs.retry(NULL)",
    # A worker's lookups by id too (pgjobs._require_job_id, the one check).
    "CALL pgjobs.run_job(NULL)",
    "SELECT * FROM pgjobs.claim_export(NULL, 'w', '30 seconds')",
    "SELECT * FROM pgjobs.claim_import(NULL, 'w', '30 seconds')",
    "SELECT * FROM pgjobs.export_chunk_sql(NULL, NULL, 5)",
    "SELECT pgjobs.export_parquet_columns(NULL)",
])
def test_a_null_job_id_is_a_bad_argument(conn: Conn, call: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="job id must not be null") as info:
        conn.execute(call)
    assert "submit returned" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(("args", "message"), [
    ("-5, NULL, '30 seconds'", "done must be a count"),
    ("-1, '{}', '30 seconds'", "done must be a count"),
    ("NULL, '\"x\"', '30 seconds'", "checkpoint must be a JSON object"),
    ("NULL, '[1]', '30 seconds'", "checkpoint must be a JSON object"),
    ("1, NULL, NULL", "lease must be"),
    ("1, NULL, '-1 second'", "lease must be"),
])
def test_export_part_heartbeat_refuses_what_heartbeat_refuses(conn: Conn, args: str,
                                                             message: str) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 30)
    job_id = scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', "
                          "'{\"parallel\": 2}')")
    [(worker,)] = conn.execute("SELECT worker FROM pgjobs.claim_export(%s, 'w', '30 seconds')",
                               (job_id,)).fetchall()
    assert scalar(conn, "SELECT pgjobs.export_parts_split(%s, %s)", (job_id, worker)) == 2
    [(part, owner)] = conn.execute("SELECT part, worker FROM pgjobs.claim_export_part(%s, 'p')",
                                   (job_id,)).fetchall()
    with pytest.raises(errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT pgjobs.export_part_heartbeat(%s, %s, %s, {args})",
                     (job_id, part, owner))
    assert scalar(conn, "SELECT pgjobs.export_part_heartbeat(%s, %s, %s, 3)",
                  (job_id, part, owner)) is True
    # What was recorded is what the valid heartbeat said.
    assert scalar(conn, "SELECT done FROM pgjobs.export_parts WHERE job_id = %s AND part = %s",
                  (job_id, part)) == 3
    assert scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job_id,)) == 3


@pytest.mark.parametrize("run_at", ["-infinity", "infinity"])
def test_stats_and_doctor_read_rows_with_an_infinite_run_at(conn: Conn, run_at: str) -> None:
    t = make_rows_target(conn)
    seed(conn, t, 30)
    odd = scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', '1')")
    due = scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', '2')")
    # As an older release stored it (the submit refuses it now).
    conn.execute("UPDATE pgjobs.jobs SET run_at = %s::timestamptz WHERE id = %s", (run_at, odd))
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '1 hour' WHERE id = %s",
                 (due,))
    stats = scalar(conn, "SELECT pgjobs.stats()")
    assert sum(q["jobs"] for q in stats["queue"]) == 2
    oldest = stats["oldest_queued"]
    if run_at == "-infinity":
        assert oldest["id"] == odd and oldest["age_seconds"] is None
    else:
        assert oldest["id"] == due and oldest["age_seconds"] >= 3600
    rows = conn.execute("SELECT check_name, status, detail FROM pgjobs.doctor() "
                        "WHERE check_name = 'jobs.queued_age'").fetchall()
    assert rows and rows[0][1] == "warn"
    assert str(due) in rows[0][2]


@pytest.mark.parametrize("run_at", ["-infinity", "infinity"])
def test_the_job_readers_show_an_infinite_run_at_as_none(conn: Conn, run_at: str) -> None:
    """`pgjobs status` (pgjobs.db.get_job) and the dashboard's lists read
    run_at into a Python datetime, which holds no infinity: psycopg raised
    DataError for the row. They read it as None now."""
    from psycopg.rows import dict_row

    from pgjobs import db, queries

    seed(conn, make_rows_target(conn), 3)
    odd = scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', '1')")
    conn.execute("UPDATE pgjobs.jobs SET run_at = %s::timestamptz WHERE id = %s", (run_at, odd))
    conn.row_factory = dict_row  # type: ignore[assignment]
    row = db.get_job(conn, odd)
    assert row is not None and row["id"] == odd and row["run_at"] is None
    params = {"before": None, "kind": None, "status": None, "target": None, "scope": None,
              "scope_keys": [], "limit": 10}
    [listed] = conn.execute(queries.UI_JOBS, params).fetchall()
    assert listed["run_at"] is None
    [one] = conn.execute(queries.UI_JOB, {"id": odd}).fetchall()
    assert one["run_at"] is None and one["status"] == "queued"
