"""A part's claim that raises: retried when transient, the job failed when not.

The job's worker claims its parts from threads of its own; a claim that
raised ended its thread silently, and the next thread, 0.25 s later, met
the same error: a claim that could never succeed (a privilege revoked, a
function gone) kept the job running, its lease renewed, for ever. Now the
job's worker judges each claim error by the one retry policy
(pgjobs.retryable_sqlstate): a transient one is said and the claim tried
again; any other fails the attempt with it, recorded with one SQLSTATE.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs.errors import sqlstates
from pgjobs.poller.export import Exporter, Outcome
from tests.support import (
    ITEMS_TENANT_1,
    MANY_PARTS,
    job,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
SIGNATURE = "bigint, text, interval"


def claims_raise(conn: Conn, sqlstate: str, times: int) -> None:
    """The first `times` claims of a part raise `sqlstate` (counted by a
    sequence: a raise rolls back anything transactional)."""
    conn.execute("CREATE SEQUENCE public.claim_faults")
    conn.execute(f"ALTER FUNCTION pgjobs.claim_export_part({SIGNATURE}) "
                 "RENAME TO claim_export_part_real")
    conn.execute(f"""
        CREATE FUNCTION pgjobs.claim_export_part(p_id bigint, p_worker text,
            p_lease interval DEFAULT '30 seconds') RETURNS SETOF pgjobs.export_parts
        LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('public.claim_faults') <= {times} THEN
                RAISE EXCEPTION 'the claim met an error' USING ERRCODE = '{sqlstate}';
            END IF;
            RETURN QUERY SELECT * FROM pgjobs.claim_export_part_real(p_id, p_worker, p_lease);
        END $$""")


@pytest.mark.parametrize("sqlstate", ["40P01", "57014", "53200"])
def test_a_transient_claim_error_claims_again(conn: Conn, dsn: str, local_dir: str,
                                              sqlstate: str) -> None:
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    claims_raise(conn, sqlstate, 3)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, ITEMS_TENANT_1)
    assert job(conn, job_id)["attempts"] == 1


@pytest.mark.parametrize("sqlstate", ["42501", "XX000", "22023"])
def test_a_claim_error_no_retry_fixes_fails_the_job_with_it(
        conn: Conn, dsn: str, local_dir: str, sqlstate: str) -> None:
    make_items(conn, rows=300)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2})
    claims_raise(conn, sqlstate, 1_000_000)
    [(_, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'w')",
                                 (job_id,)).fetchall()
    stop = threading.Event()
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(
        Exporter(dsn, job_id, worker, local_dir, stop=stop).run()), daemon=True)
    thread.start()
    try:
        # Synchronised on the job's state: it claimed parts unseen for ever.
        wait_for(lambda: job(conn, job_id)["status"] == "failed", what="the job failed")
    finally:
        stop.set()
        thread.join()
    assert box[0].status == "failed", box
    row = job(conn, job_id)
    assert row["status"] == "failed" and "the claim met an error" in row["error"], row
    assert sqlstates(row["error"]) == [sqlstate], row["error"]
    assert row["attempts"] == 1
