"""The engine's own grants on a target (docs/operations.md, "Which role
should own and run pgjobs"): with pgjobs owned by an ordinary role and a
target owned by another, the engine role (the owner of pgjobs' functions,
which runs the pages, export reads and import inserts) needs its own
grants on the table. register_target refuses a table the engine cannot
SELECT, a submit a job whose kind needs a privilege the engine lacks, both
with 42501 and the GRANT in the hint; doctor's target.grants warns when a
registered target lost them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

PID = os.getpid()
ENGINE = f"pgjobs_test_eng_{PID}"
APP = f"pgjobs_test_eapp_{PID}"
RUNNER = f"pgjobs_test_erun_{PID}"
REGISTER = ("SELECT pgjobs.register_target('owned', 'id', 'scope', 'created_at', "
            "p_options => '{\"tune_autovacuum\": false}')")


@pytest.fixture
def owned(conn: Conn) -> Iterator[None]:
    """pgjobs owned by ENGINE (NOLOGIN, not a superuser); table `owned`
    owned by APP, a member of ENGINE (so trusted), with no grant to ENGINE."""
    for role in (APP, RUNNER, ENGINE):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {ENGINE} NOLOGIN")
    conn.execute(f"CREATE ROLE {RUNNER} IN ROLE pgjobs_admin, {ENGINE}")
    conn.execute(f"CREATE ROLE {APP} NOLOGIN IN ROLE {RUNNER}")
    conn.execute(f"ALTER SCHEMA pgjobs OWNER TO {ENGINE}")
    statements = [r[0] for r in conn.execute("""
        SELECT format('ALTER ROUTINE %%s OWNER TO %%I', p.oid::regprocedure, %s::text)
          FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace
        UNION ALL
        SELECT format('ALTER TABLE %%s OWNER TO %%I', c.oid::regclass, %s::text)
          FROM pg_class c
         WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind IN ('r', 'v')""",
        (ENGINE, ENGINE)).fetchall()]
    for statement in statements:
        conn.execute(statement)
    conn.execute(f"""
        CREATE TABLE owned (id bigint NOT NULL, scope int NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now(), note text);
        CREATE INDEX ON owned (scope, id);
        INSERT INTO owned (id, scope, created_at)
        SELECT i, 1 + i % 2, now() - interval '1 day' FROM generate_series(1, 20) i;
        ALTER TABLE owned OWNER TO {APP};
    """)
    yield
    conn.execute("RESET ROLE")
    conn.execute("DELETE FROM pgjobs.jobs")
    conn.execute("DELETE FROM pgjobs.target_registry")
    conn.execute("DROP TABLE owned")
    for role in (APP, RUNNER, ENGINE):
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _grant(conn: Conn, hint: str) -> None:
    """Run the GRANT a hint gives, as the table's owner (as the hint says)."""
    grant = hint[hint.index("GRANT "):]
    conn.execute(f"SET ROLE {APP}")
    conn.execute(grant)
    conn.execute(f"SET ROLE {RUNNER}")


def _status(conn: Conn, job: int) -> tuple[Any, ...]:
    return conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                        (job,)).fetchone() or ()


def test_register_refuses_a_table_the_engine_cannot_read_then_the_hint_works(
        conn: Conn, owned: None) -> None:
    """No grant: register_target refuses (42501) with the GRANT; with it,
    a delete is refused at submit with its GRANT; with that too, the
    delete runs end to end."""
    conn.execute(f"SET ROLE {RUNNER}")
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute(REGISTER)
    assert ENGINE in str(refused.value)
    hint = refused.value.diag.message_hint or ""
    assert f"GRANT SELECT ON public.owned TO {ENGINE};" in hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.target_registry") == 0
    _grant(conn, hint)
    conn.execute(REGISTER)

    conn.execute(f"SET ROLE {APP}")
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute("SELECT pgjobs.submit_delete('owned', '1', '{}')")
    hint = refused.value.diag.message_hint or ""
    assert f"GRANT DELETE ON public.owned TO {ENGINE};" in hint, hint
    assert "delete" in str(refused.value)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    _grant(conn, hint)

    conn.execute(f"SET ROLE {APP}")
    job = scalar(conn, "SELECT pgjobs.submit_delete('owned', '1', '{}')")
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    assert _status(conn, job) == ("succeeded", None)
    assert scalar(conn, "SELECT count(*) FROM owned WHERE scope = 1") == 0
    assert scalar(conn, "SELECT count(*) FROM owned WHERE scope = 2") == 10


@pytest.mark.parametrize(("submit", "privileges"), [
    ("SELECT pgjobs.submit_backfill('owned', '1', '{}', '{\"note\": \"x\"}')", "UPDATE"),
    ("SELECT pgjobs.submit_import('owned', '1', 'memory://b/x.csv')", "INSERT"),
    ("SELECT pgjobs.submit_import('owned', '1', 'memory://b/x.csv',"
     " '{\"on_duplicate\": \"update\"}')", "INSERT, UPDATE"),
])
def test_each_writing_kind_is_refused_at_submit_without_its_privilege(
        conn: Conn, owned: None, submit: str, privileges: str) -> None:
    conn.execute(f"GRANT SELECT ON owned TO {ENGINE}")
    conn.execute("CREATE UNIQUE INDEX ON owned (scope, id)")
    conn.execute("SELECT pgjobs.allow_storage('memory://b')")
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute(REGISTER)
    conn.execute(f"SET ROLE {APP}")
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute(submit)
    hint = refused.value.diag.message_hint or ""
    assert f"GRANT {privileges} ON public.owned TO {ENGINE};" in hint, hint
    conn.execute("RESET ROLE")
    conn.execute(hint[hint.index("GRANT "):])
    conn.execute(f"SET ROLE {APP}")
    assert scalar(conn, submit) > 0


def test_doctor_warns_when_the_engine_lost_its_grants(conn: Conn, owned: None) -> None:
    conn.execute(f"GRANT SELECT, DELETE ON owned TO {ENGINE}")
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute(REGISTER)

    def grants() -> tuple[Any, ...]:
        conn.execute("RESET ROLE")  # doctor reads settings a runner may not
        return conn.execute("SELECT status, detail, fix FROM pgjobs.doctor('owned')"
                            " WHERE check_name = 'target.grants'").fetchone() or ()

    assert grants()[0] == "ok"
    conn.execute(f"SET ROLE {APP}")
    job = scalar(conn, "SELECT pgjobs.submit_delete('owned', '1', '{}')")
    conn.execute(f"REVOKE DELETE ON owned FROM {ENGINE}")
    conn.execute(f"SET ROLE {RUNNER}")
    status, detail, fix = grants()
    assert status == "warn" and "delete" in detail
    assert fix == f"As the owner of public.owned: GRANT DELETE ON public.owned TO {ENGINE};"
    conn.execute(f"SET ROLE {APP}")
    conn.execute(f"REVOKE SELECT ON owned FROM {ENGINE}")
    conn.execute(f"GRANT DELETE ON owned TO {ENGINE}")
    conn.execute(f"SET ROLE {RUNNER}")
    status, detail, fix = grants()
    assert status == "warn" and f"GRANT SELECT ON public.owned TO {ENGINE};" in fix
    assert job


def test_export_and_delete_are_refused_at_submit_after_select_is_revoked(
        conn: Conn, owned: None) -> None:
    """SELECT revoked after registration: every kind that reads is refused
    at submit with the GRANT, not queued to fail at its first page."""
    conn.execute(f"GRANT SELECT, DELETE ON owned TO {ENGINE}")
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute(REGISTER)
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT ON owned FROM {ENGINE}")
    conn.execute(f"SET ROLE {APP}")
    for submit in ("SELECT pgjobs.submit_export('owned', '1')",
                   "SELECT pgjobs.submit_delete('owned', '1', '{}')",
                   "SELECT pgjobs.submit_delete('owned', '1', '{\"note\": \"x\"}', '{3}')"):
        with pytest.raises(errors.InsufficientPrivilege) as refused:
            conn.execute(submit)
        hint = refused.value.diag.message_hint or ""
        assert f"GRANT SELECT ON public.owned TO {ENGINE};" in hint, (submit, hint)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_resume_is_refused_after_the_engine_lost_the_kinds_privilege(
        conn: Conn, owned: None) -> None:
    """Resume (and retry) queue a job again: refused with the GRANT when
    the engine lost the privilege the job's kind needs since its submit."""
    conn.execute(f"GRANT SELECT, DELETE ON owned TO {ENGINE}")
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute(REGISTER)
    conn.execute(f"SET ROLE {APP}")
    job = scalar(conn, "SELECT pgjobs.submit_delete('owned', '1', '{}')")
    conn.execute("SELECT pgjobs.pause(%s)", (job,))
    conn.execute(f"REVOKE DELETE ON owned FROM {ENGINE}")
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute("SELECT pgjobs.resume(%s)", (job,))
    hint = refused.value.diag.message_hint or ""
    assert f"GRANT DELETE ON public.owned TO {ENGINE};" in hint, hint
    assert _status(conn, job)[0] == "paused"
    conn.execute(f"GRANT DELETE ON owned TO {ENGINE}")
    conn.execute("SELECT pgjobs.resume(%s)", (job,))
    conn.execute(f"SET ROLE {RUNNER}")
    conn.execute("CALL pgjobs.run_job(%s)", (job,))
    assert _status(conn, job) == ("succeeded", None)
