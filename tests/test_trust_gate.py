"""The gate and custom kinds (issue 9, item 14): a queued writer that is not
due yet and never started holds no gate (anyone allowed to submit an import
could otherwise block a scope until its run_at); a writer waiting for a
retry's backoff still holds it. A custom kind needs UPDATE on the target
(pgjobs._kind_privilege, shared by submit and cancel)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import claim, job, make_rows_target, run_job, scalar, seed, who
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
# An import's source (never read here) under an allowed prefix: imports are
# submitted with pgjobs.submit_import only (pgjobs.submit refuses the kind).
SOURCE = "file:///pgjobs-gate-src/a.csv"


@pytest.fixture
def inserter(conn: Conn) -> Iterator[str]:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    role = f"pgjobs_gate_ins_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT INSERT ON user_table_rows TO {role}")
    conn.execute("SELECT pgjobs.allow_storage('file:///pgjobs-gate-src')")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def _far_import(conn: Conn, role: str) -> int:
    with acting_as(conn, role):
        job_id = scalar(conn, f"SELECT pgjobs.submit_import('user_table_rows', '1', '{SOURCE}',"
                              """ '{"run_at": "2100-01-01T00:00:00Z"}')""")
    return int(job_id)


def test_a_far_future_import_does_not_block_later_writers(conn: Conn, inserter: str) -> None:
    far = _far_import(conn, inserter)
    delete = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    run_job(conn, delete)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (delete,)) == "succeeded"
    backfill = scalar(conn, """SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}',"""
                            """ '{"n": 1}', '{"on_conflict": "reject"}')""")
    run_job(conn, backfill)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (backfill,)) == "succeeded"
    # The far import itself is still queued, and runs in order once due.
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (far,)) == "queued"


def test_a_due_import_nobody_claimed_holds_no_gate(conn: Conn, inserter: str) -> None:
    """A writer an outside worker runs (import) that no worker claimed within
    10 minutes of becoming due stops holding the gate: an INSERT-only role
    cannot stall a scope's deletes with a due job that nobody runs."""
    far = _far_import(conn, inserter)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '11 minutes' WHERE id = %s",
                 (far,))
    delete = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    run_job(conn, delete)
    assert job(conn, delete)["status"] == "succeeded"
    conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                 """ '{"on_conflict": "reject"}')""")


def test_a_claimed_import_holds_the_gate(conn: Conn, inserter: str) -> None:
    first = scalar(conn, f"SELECT pgjobs.submit_import('user_table_rows', '1', '{SOURCE}')")
    assert claim(conn, "w", ["import"]) == [first]
    delete = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    with pytest.raises(errors.ObjectInUse):
        run_job(conn, delete)
    with pytest.raises(errors.ObjectInUse):
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                     """ '{"on_conflict": "reject"}')""")


def test_a_due_delete_holds_the_gate_for_later_writers(conn: Conn, inserter: str) -> None:
    first = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    later = scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                         """'{"n": 5}')""")
    with pytest.raises(errors.ObjectInUse):
        run_job(conn, later)
    with pytest.raises(errors.ObjectInUse):
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                     """ '{"on_conflict": "reject"}')""")
    run_job(conn, first)
    run_job(conn, later)


def test_a_writer_waiting_for_its_retry_keeps_its_place(conn: Conn, inserter: str) -> None:
    first = scalar(conn, f"SELECT pgjobs.submit_import('user_table_rows', '1', '{SOURCE}')")
    assert claim(conn, "w", ["import"]) == [first]
    conn.execute("SELECT pgjobs.fail(%s, %s, 'flaky')", (first, who(conn, first, "w")))
    status, run_at_future = conn.execute(
        "SELECT status, run_at > now() FROM pgjobs.jobs WHERE id = %s", (first,)).fetchone() \
        or (None, None)
    assert (status, run_at_future) == ("queued", True)
    delete = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    with pytest.raises(errors.ObjectInUse):
        run_job(conn, delete)
    with pytest.raises(errors.ObjectInUse):
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                     """ '{"on_conflict": "reject"}')""")


@pytest.mark.parametrize("kind", ["custom", "reindex_tenant", "notify_crm"])
def test_custom_kinds_need_update(conn: Conn, inserter: str, kind: str) -> None:
    conn.execute(f"GRANT SELECT, INSERT, DELETE ON user_table_rows TO {inserter}")
    conn.execute(f"SET ROLE {inserter}")
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute("SELECT pgjobs.submit(%s, 'user_table_rows', '1')", (kind,))
    assert "lacks UPDATE" in str(exc.value)
    assert "GRANT UPDATE ON public.user_table_rows" in (exc.value.diag.message_hint or "")
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    conn.execute(f"GRANT UPDATE ON user_table_rows TO {inserter}")
    conn.execute(f"SET ROLE {inserter}")
    assert scalar(conn, "SELECT pgjobs.submit(%s, 'user_table_rows', '1')", (kind,)) > 0


def test_cancel_uses_the_same_map(conn: Conn, inserter: str) -> None:
    """Another role may cancel a custom job only with UPDATE on its target."""
    job_id = scalar(conn, "SELECT pgjobs.submit('custom', 'user_table_rows', '1')")
    conn.execute(f"GRANT SELECT, INSERT, DELETE, TRUNCATE ON user_table_rows TO {inserter}")
    conn.execute(f"SET ROLE {inserter}")
    with pytest.raises(errors.InsufficientPrivilege, match="lacks UPDATE"):
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    conn.execute("RESET ROLE")
    conn.execute(f"GRANT UPDATE ON user_table_rows TO {inserter}")
    conn.execute(f"SET ROLE {inserter}")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True


def test_kind_privilege_map(conn: Conn) -> None:
    assert dict(conn.execute(
        "SELECT k, pgjobs._kind_privilege(k) FROM unnest(ARRAY['delete', 'backfill', 'import',"
        " 'export', 'anything']) k").fetchall()) == {
        "delete": "DELETE", "backfill": "UPDATE", "import": "INSERT", "export": "SELECT",
        "anything": "UPDATE"}


def test_a_freshly_due_import_holds_the_gate(conn: Conn, inserter: str) -> None:
    """Within its first 10 minutes due an import holds its place (a worker may
    be claiming it in a transaction not yet committed)."""
    first = scalar(conn, f"SELECT pgjobs.submit_import('user_table_rows', '1', '{SOURCE}')")
    delete = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    with pytest.raises(errors.ObjectInUse):
        run_job(conn, delete)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '11 minutes' WHERE id = %s",
                 (first,))
    run_job(conn, delete)
    assert job(conn, delete)["status"] == "succeeded"
