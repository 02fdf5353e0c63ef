"""Job rows and targets are as private as the targets (issue 9, item 12):
a pgjobs_client sees in pgjobs.jobs only the jobs it submitted and the jobs
of targets it may SELECT from (policy jobs_client_read, migration 0006),
and in pgjobs.targets only the targets it may SELECT from; admins see all."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
SSN = "123-45-6789"


def _table(conn: Conn, name: str) -> None:
    conn.execute(f"""
        CREATE TABLE {name} (id bigint NOT NULL, table_id int NOT NULL, data jsonb,
                             created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON {name} (table_id, id);
        INSERT INTO {name} (id, table_id, data)
        SELECT i, 1 + i % 2, jsonb_build_object('ssn', '{SSN}') FROM generate_series(1, 10) i;
        SELECT pgjobs.register_target('{name}', 'id', 'table_id', 'created_at', 'data');""")


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    _table(conn, "pub")
    _table(conn, "secret")
    made = {}
    for name, parent in (("reader", "pgjobs_client"), ("owner", "pgjobs_client"),
                         ("admin", "pgjobs_admin")):
        role = f"pgjobs_vis_{name}_{PID}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE {parent}")
        made[name] = role
    conn.execute(f"GRANT SELECT, DELETE ON pub TO {made['reader']}")
    conn.execute(f"GRANT SELECT, UPDATE, DELETE ON pub, secret TO {made['owner']}")
    yield made
    conn.execute("RESET ROLE")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _as(conn: Conn, role: str, sql: str, params: Any = None) -> Any:
    with acting_as(conn, role):
        return conn.execute(sql, params).fetchall()


def _secret_jobs(conn: Conn, role: str) -> dict[str, int]:
    conn.execute(f"SET ROLE {role}")
    jobs = {
        # Key 7 names no row on purpose (the job, not the rows, is what is seen).
        "delete": scalar(conn, "SELECT pgjobs.submit_delete('secret', '1', %s::jsonb, '{7}',"
                               " '{\"allow_unknown_keys\": true}')",
                         (json.dumps({"ssn": SSN}),)),
        "backfill": scalar(conn, "SELECT pgjobs.submit_backfill('secret', '2', %s::jsonb,"
                                 " '{\"note\": 1}')", (json.dumps({"ssn": SSN}),)),
        "pub": scalar(conn, "SELECT pgjobs.submit_delete('pub', '2', %s::jsonb)",
                      (json.dumps({"ssn": SSN}),)),
    }
    conn.execute("RESET ROLE")
    # A finished export with a result URI and an error text naming rows.
    conn.execute("UPDATE pgjobs.jobs SET error = %s, result = %s WHERE id = %s",
                 (f"row with ssn {SSN} failed", json.dumps({"uri": "s3://b/secret.csv"}),
                  jobs["backfill"]))
    return jobs


def test_reader_sees_no_job_of_a_table_it_cannot_read(conn: Conn,
                                                      roles: dict[str, str]) -> None:
    jobs = _secret_jobs(conn, roles["owner"])
    seen = _as(conn, roles["reader"], "SELECT id, target::text FROM pgjobs.jobs ORDER BY id")
    # The job on pub (which it may read) only: no filter, exclusion, predicate,
    # result or error of secret's jobs.
    assert seen == [(jobs["pub"], "pub")]
    text = json.dumps(_as(conn, roles["reader"], "SELECT to_jsonb(j) FROM pgjobs.jobs j"))
    assert "secret" not in text
    for column in ("payload", "predicate", "result", "error", "options"):
        assert _as(conn, roles["reader"], f"SELECT count(*) FROM pgjobs.jobs WHERE "
                   f"{column}::text LIKE '%%secret%%' OR target = 'secret'::regclass") == [(0,)]


def test_reader_sees_its_own_jobs_even_without_select(conn: Conn,
                                                      roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['reader']}")
    own = scalar(conn, "SELECT pgjobs.submit_delete('pub', '1')")
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE SELECT ON pub FROM {roles['reader']}")
    assert _as(conn, roles["reader"], "SELECT id FROM pgjobs.jobs") == [(own,)]


def test_targets_lists_only_readable_tables(conn: Conn, roles: dict[str, str]) -> None:
    assert _as(conn, roles["reader"], "SELECT target::text FROM pgjobs.targets") == [("pub",)]
    assert sorted(_as(conn, roles["owner"], "SELECT target::text FROM pgjobs.targets")) == [
        ("pub",), ("secret",)]
    # A leaky function in the caller's WHERE sees only what the view lets through.
    conn.execute("CREATE FUNCTION leak(t regclass) RETURNS boolean LANGUAGE plpgsql COST 0.0001"
                 " AS $$ BEGIN RAISE NOTICE 'saw %', t; RETURN true; END $$")
    conn.execute("GRANT EXECUTE ON FUNCTION leak(regclass) TO PUBLIC")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    _as(conn, roles["reader"], "SELECT * FROM pgjobs.targets WHERE leak(target)")
    assert notices == ["saw pub"]


def test_admin_sees_everything(conn: Conn, roles: dict[str, str]) -> None:
    jobs = _secret_jobs(conn, roles["owner"])
    assert {r[0] for r in _as(conn, roles["admin"], "SELECT id FROM pgjobs.jobs")} == set(
        jobs.values())
    assert len(_as(conn, roles["admin"], "SELECT * FROM pgjobs.targets")) == 2


def test_allowed_scopes_still_narrow_the_view(conn: Conn, roles: dict[str, str]) -> None:
    jobs = _secret_jobs(conn, roles["owner"])
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    assert _as(conn, roles["owner"], "SELECT id FROM pgjobs.jobs") == [(jobs["delete"],)]
    assert _as(conn, roles["reader"], "SELECT id FROM pgjobs.jobs") == []


def test_cancel_of_a_job_the_caller_cannot_see_is_an_unknown_id(conn: Conn) -> None:
    """No existence oracle: another role's job on a table the caller cannot
    read answers P0002 like an id that was never used, naming nothing."""
    import os

    conn.execute("CREATE TABLE secret_payroll (id bigint PRIMARY KEY, s int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE INDEX ON secret_payroll (s, id)")
    conn.execute("SELECT pgjobs.register_target('secret_payroll', 'id', 's', 'created_at')")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('secret_payroll', '1')")
    role = f"pgjobs_vis_nobody_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    try:
        conn.execute(f"SET ROLE {role}")
        messages = []
        for probe in (job_id, job_id + 1000):
            with pytest.raises(psycopg.errors.NoDataFound) as info:
                conn.execute("SELECT pgjobs.cancel(%s)", (probe,))
            messages.append(((info.value.diag.message_primary or "").replace(str(probe), "N"),
                             info.value.diag.message_hint))
        assert messages[0] == messages[1]
        assert "secret_payroll" not in repr(messages)
        conn.execute("RESET ROLE")
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
