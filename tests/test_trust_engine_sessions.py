"""Sessions a client may dress as pgjobs' engine.

`application_name` is the client's to set (any role, at connection start or
with SET): a `pgjobs_client` that connects as `pgjobs run` or `pgjobs worker`
runs nothing (it may not claim a job), so no reader may take it for the
engine. Doctor's pg_cron check ("the engine is driven by N connected `pgjobs
run` sessions instead"), its `workers.listening` check and the engine's wait
note (tried in pg_cron's database: tests/test_trust_cron_names.py) read
pg_stat_activity; each counts a session only when its role may
run the engine, the rule pg_cron's job names go through too
(`pgjobs._engine_runner`, tests/test_trust_cron_names.py). Every reader is
tried with the client's look-alike (which must not count) and, as the
control, with an engine role's session of the same name (which must), so a
reader that stops reading sessions fails here too.

A role that runs the engine without being a member of `pgjobs_admin` counts
too: pgjobs' owner (`pgjobs run --loop` as the role that migrated, on a
managed service whose master user is no superuser) or a role with its
rights. It may call `pgjobs.run`, so doctor must not say no engine runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_items, scalar, submit_export
from tests.support.roles import make_role

Conn = psycopg.Connection[Any]


def _login_dsn(conn: Conn, dsn: str, label: str, *grants: str) -> Iterator[str]:
    """A LOGIN role given ``grants`` (make_role's): its DSN; dropped after."""
    role = make_role(conn, label, "ALTER ROLE {role} LOGIN", *grants)
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["user"] = role
    try:
        yield psycopg.conninfo.make_conninfo(**params)
    finally:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE usename = %s", (role,))
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def client_dsn(conn: Conn, dsn: str) -> Iterator[str]:
    """A LOGIN pgjobs_client of no rights on any table: its DSN."""
    yield from _login_dsn(conn, dsn, "lookalike", "GRANT pgjobs_client TO {role}")


@pytest.fixture
def owner_member_dsn(conn: Conn, dsn: str) -> Iterator[str]:
    """A LOGIN role with the rights of schema pgjobs' owner (a member of it),
    not of pgjobs_admin: it may run the engine. Its DSN."""
    owner = scalar(conn, "SELECT nspowner::regrole::text FROM pg_namespace"
                         " WHERE nspname = 'pgjobs'")
    yield from _login_dsn(conn, dsn, "owner_member", f"GRANT {owner} TO {{role}}")


def runner_problem(conn: Conn) -> dict[str, Any]:
    """Doctor's last pg_cron finding: where pg_cron cannot run pgjobs here
    (every per-test database), the one a `pgjobs run` session settles."""
    cur = conn.execute("SELECT * FROM pgjobs.doctor() WHERE check_name LIKE 'pg_cron.%'")
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()][-1]


def workers_listening(conn: Conn) -> str:
    return str(scalar(conn, "SELECT status FROM pgjobs.doctor()"
                            " WHERE check_name = 'workers.listening'"))


def test_a_clients_pgjobs_run_session_does_not_drive_the_engine(
        conn: Conn, client_dsn: str, make_conn: Callable[..., Conn]) -> None:
    before = runner_problem(conn)
    assert before["status"] == "warn", before
    with psycopg.connect(client_dsn, application_name="pgjobs run"):
        after = runner_problem(conn)
        assert (after["status"], after["fix"]) == ("warn", before["fix"]), after
        assert "connected `pgjobs run`" not in after["detail"], after
    # The control: an engine role's session of that name does drive it.
    make_conn(application_name="pgjobs run")
    assert runner_problem(conn)["status"] == "ok"


def test_a_clients_pgjobs_worker_session_does_not_take_exports(
        conn: Conn, client_dsn: str, make_conn: Callable[..., Conn]) -> None:
    make_items(conn, rows=10)
    submit_export(conn, "1")
    assert workers_listening(conn) == "warn"
    with psycopg.connect(client_dsn, application_name="pgjobs worker"):
        assert workers_listening(conn) == "warn"
    make_conn(application_name="pgjobs worker")
    assert workers_listening(conn) == "ok"


@pytest.mark.parametrize("reader", ["pg_cron", "workers.listening"])
def test_an_engine_session_of_the_owner_s_rights_counts(
        conn: Conn, owner_member_dsn: str, reader: str) -> None:
    """The role runs the engine (pgjobs.run is its to call) though it is no
    pgjobs_admin member: its `pgjobs run` or `pgjobs worker` session is the
    engine's to every reader."""
    if reader == "workers.listening":
        make_items(conn, rows=10)
        submit_export(conn, "1")
    before = runner_problem(conn) if reader == "pg_cron" else workers_listening(conn)
    name = "pgjobs run" if reader == "pg_cron" else "pgjobs worker"
    with psycopg.connect(owner_member_dsn, application_name=name, autocommit=True) as engine:
        assert not scalar(engine, "SELECT pg_has_role('pgjobs_admin', 'MEMBER')")
        engine.execute("CALL pgjobs.run('1 second')")  # it is the engine
        after = runner_problem(conn) if reader == "pg_cron" else workers_listening(conn)
    if reader == "pg_cron":
        assert (before["status"], after["status"]) == ("warn", "ok"), after
    else:
        assert (before, after) == ("warn", "ok")
