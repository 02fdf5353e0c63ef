"""Trust, two reach paths that had no test (h74): an ON UPDATE CASCADE fired
by a backfill, and a policy subquery reaching a client's relation added
while a job runs (not at registration).

pgjobs._untrusted_roles follows every table whose foreign key references the
target with an ON DELETE or ON UPDATE action; a backfill may set a column
such a key references (its key, scope and created_at columns it may not), so
its pages fire the cascade, and the referencing table's AFTER triggers run
as the role running the job. And it follows the relations a policy's
subquery reads; a policy added to a reached table while a job runs is seen
at the runner's next full check (at most 1 s of pages later: see
docs/engine.md, "Whose code runs").

Both pass on main too: they are the regression tests the brief asked for.
The engine is the test's superuser, the embedded default and worst case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import reach, scalar
from tests.test_trust_reached_tables import CLIENT

Conn = psycopg.Connection[Any]

KINDS = reach.KINDS
_changed = reach.changed


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    with reach.trusted_world(conn):
        yield


def test_a_backfill_that_sets_a_referenced_column_cascades_and_is_covered(
        conn: Conn, world: None) -> None:
    """ON UPDATE CASCADE fired by a backfill: it may set a column a foreign
    key references (note, with id, here), and the cascade then runs (an
    engine-owned child: its rows follow); a client-owned child's makes the
    target untrusted (the cascade's AFTER triggers would run as the engine)."""
    conn.execute("CREATE TABLE tenant.kin (n bigint, note text, FOREIGN KEY (n, note)"
                 " REFERENCES tenant.rows (id, note) ON UPDATE CASCADE)")
    conn.execute("INSERT INTO tenant.kin SELECT id, note FROM tenant.rows")
    job = int(scalar(conn, KINDS["backfill"]))
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM tenant.kin WHERE note = 'x'") == 20
    conn.execute("ALTER TABLE tenant.kin OWNER TO " + CLIENT)
    assert conn.execute("SELECT role_name, reason FROM pgjobs._untrusted_roles('tenant.rows')"
                        ).fetchall() == [(CLIENT, "owns table tenant.kin")]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(KINDS["backfill"])
    # Its key, scope and created_at columns a backfill may not set at all.
    conn.execute("ALTER TABLE tenant.kin OWNER TO CURRENT_USER")
    for column in ("id", "scope", "created_at"):
        with pytest.raises(psycopg.errors.Error, match="backfill cannot set"):
            conn.execute("SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}', %s)",
                         (f'{{"{column}": 1}}',))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_policy_added_while_a_job_runs_is_refused_at_the_next_check(
        conn: Conn, world: None, kind: str) -> None:
    """A policy reading a client's view added to a reached table after the
    job's pages began: the next full check (here forced by a verdict made a
    second old, as the 1 s window makes it) fails the job before its page
    writes a row, and the client's function never ran."""
    job, worker = reach.start_job(conn, kind)
    conn.execute("ALTER TABLE tenant.mine ENABLE ROW LEVEL SECURITY;"
                 " CREATE POLICY p ON tenant.mine WITH CHECK"
                 " (id IN (SELECT id FROM tenant.peek) OR true)")
    stale = {"worker": worker, "at": time.time() - 2}
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint, '{verified}', %s)"
                 " WHERE id = %s", (json.dumps(stale), job))
    assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "failed"
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job,)).fetchone() or (None, None)
    assert status == "failed" and "refuses target tenant.rows" in error and CLIENT in error
    assert "tenant.peek" in error or "tenant.grab_read" in error, error
    assert _changed(conn, kind) == 1
    assert conn.execute("SELECT who, su, what FROM tenant.log").fetchall() == []
