"""A job's submitter is its role by oid (pgjobs._is_submitter, policy
jobs_client_read, pgjobs._has_jobs_on): the indexes of pgjobs.jobs serve
that, and none is kept for the name at submit, which nothing compares
(jobs_submitter_idx, 0045, read by nothing since 0163 and 0180; dropped by
0181: every submit paid its insert)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support import make_target, scalar

Conn = psycopg.Connection[Any]

INDEXED_COLUMNS = """
SELECT i.indexrelid::regclass::text, a.attname::text
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = 'pgjobs.jobs'::regclass
"""


def test_no_index_of_the_jobs_is_kept_for_the_submitters_name(conn: Conn) -> None:
    indexed = conn.execute(INDEXED_COLUMNS).fetchall()
    assert [name for name, column in indexed if column == "submitted_by"] == []
    # The oid is indexed, with the target (a client's own jobs on a table).
    assert ("pgjobs.jobs_submitter_target_idx", "submitted_by_oid") in indexed


def test_a_clients_own_jobs_on_a_target_are_one_probe_of_the_oid_index(conn: Conn) -> None:
    """pgjobs._has_jobs_on (a session's tenancy keys cover the targets its
    role has jobs on) reads the oid index, in the caller's transaction."""
    make_target(conn)
    conn.execute("SELECT pgjobs.submit('thumbnail', 'items', '1', '{}')")
    with conn.transaction(force_rollback=True):
        before = scalar(conn, "SELECT pg_stat_get_xact_numscans("
                              "'pgjobs.jobs_submitter_target_idx'::regclass)")
        assert scalar(conn, "SELECT pgjobs._has_jobs_on(current_user, 'items')") is True
        after = scalar(conn, "SELECT pg_stat_get_xact_numscans("
                             "'pgjobs.jobs_submitter_target_idx'::regclass)")
    assert after == before + 1
