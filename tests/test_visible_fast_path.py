"""The read path's fold of its pre-page checks (issue 11, `visible` fixed cost).

pgjobs._visible_as and pgjobs._visible_count_as call fewer pinned functions:
the caller's privilege through pgjobs._require_role directly (not
pgjobs._require -> pgjobs._caller), both column types in one catalog read,
and the allowed_scopes check only when the list is set. None of it may keep
anything between calls: every change below that takes a read away from a
role is seen by that role's very next call in the same session (only the
target's trust verdict has its documented 1 s window, tests/test_read_verdicts.py),
and a delete another session submits masks the next read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_fold_reader_{PID}"
GROUP = f"pgjobs_fold_group_{PID}"
OTHER = f"pgjobs_fold_other_{PID}"

READS = {
    "visible": "SELECT count(*) FROM pgjobs.visible('t_fold', %s, '{}', NULL, 1000)",
    "visible_count": "SELECT pgjobs.visible_count('t_fold', %s)",
}


def _drop_roles(conn: Conn) -> None:
    for role in (READER, GROUP, OTHER):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def admin(conn: Conn) -> Iterator[Conn]:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {GROUP} NOLOGIN")
    conn.execute(f"CREATE ROLE {OTHER} NOLOGIN")
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client, {GROUP}")
    conn.execute("""
        CREATE TABLE t_fold (id bigint NOT NULL, scope int NOT NULL, data jsonb,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON t_fold (scope, id);
        INSERT INTO t_fold (id, scope, data)
        SELECT i, 1 + i % 2, '{"k": 1}' FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('t_fold', 'id', 'scope', 'created_at', 'data');""")
    conn.execute(f"GRANT SELECT ON t_fold TO {READER}")
    yield conn
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def _reader(make_conn: Callable[[], Conn]) -> Conn:
    return session_as(make_conn, READER)


def _read(session: Conn, path: str, scope: str = "1") -> int:
    with session.transaction():
        return int(scalar(session, READS[path], (scope,)))


def _refused(session: Conn, path: str, scope: str = "1") -> bool:
    try:
        _read(session, path, scope)
    except errors.InsufficientPrivilege as exc:
        assert "permission denied" in str(exc) or "refuses target" in str(exc), exc
        assert exc.diag.message_hint, exc
        return True
    return False


# Each takes SELECT on t_fold away from READER, or makes pgjobs refuse to act
# for it, in one way.
TAKE_AWAY = {
    "revoke": f"REVOKE SELECT ON t_fold FROM {READER}",
    "revoke_from_a_group": f"GRANT SELECT ON t_fold TO {GROUP};"
                           f" REVOKE SELECT ON t_fold FROM {READER};"
                           f" /* read through the group */;"
                           f" REVOKE {GROUP} FROM {READER}",
    "row_security_on": "ALTER TABLE t_fold ENABLE ROW LEVEL SECURITY;"
                       " CREATE POLICY p ON t_fold USING (scope = 1)",
    "bypassrls_taken": f"ALTER ROLE {READER} BYPASSRLS;"
                       " ALTER TABLE t_fold ENABLE ROW LEVEL SECURITY;"
                       " CREATE POLICY p ON t_fold USING (scope = 1);"
                       " /* read with BYPASSRLS */;"
                       f" ALTER ROLE {READER} NOBYPASSRLS",
    "owner_changed": f"GRANT SELECT ON t_fold TO {OTHER};"
                     f" /* read */;"
                     f" ALTER TABLE t_fold OWNER TO {OTHER}",
}


@pytest.mark.parametrize("path", sorted(READS))
@pytest.mark.parametrize("how", sorted(TAKE_AWAY))
def test_a_change_that_takes_the_read_away_is_seen_by_the_next_call(
        make_conn: Callable[[], Conn], admin: Conn, path: str, how: str) -> None:
    reader = _reader(make_conn)
    steps = TAKE_AWAY[how].split("; /* ")
    before, last = steps[:-1], steps[-1].split("*/;", 1)[-1]
    for step in before:
        for statement in step.split(";"):
            if statement.strip() and not statement.strip().startswith("/*"):
                admin.execute(statement)
    for _ in range(3):  # a warm session: plans cached, the trust verdict kept
        assert _read(reader, path) == 20
    for statement in last.split(";"):
        admin.execute(statement)
    if how == "owner_changed":
        # The target's trust (pgjobs._target_recent) has its 1 s window in the
        # session that holds a verdict; every other session refuses at once.
        assert _refused(_reader(make_conn), path)
    else:
        assert _refused(reader, path), how
    # Nothing refused is kept: an admin session still reads.
    if how != "owner_changed":
        assert _read(make_conn(), path) == 20


@pytest.mark.parametrize("path", sorted(READS))
def test_allowed_scopes_are_read_at_every_call(make_conn: Callable[[], Conn], admin: Conn,
                                               path: str) -> None:
    reader = _reader(make_conn)
    assert _read(reader, path) == 20
    for setting, scope, allowed in (("2", "1", False), ("01", "1", True), ("1, 2", "2", True),
                                    (" ", "1", True), ("x", "1", False), ("", "2", True)):
        reader.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (setting,))
        assert _refused(reader, path, scope) is not allowed, (setting, scope)
    reader.execute("RESET pgjobs.allowed_scopes")
    assert _read(reader, path, "2") == 20


@pytest.mark.parametrize("path", sorted(READS))
def test_a_delete_another_session_submits_masks_the_next_read(
        make_conn: Callable[[], Conn], admin: Conn, path: str) -> None:
    reader = _reader(make_conn)
    assert _read(reader, path) == 20
    admin.execute("SELECT pgjobs.submit_delete('t_fold', '1', '{}')")
    assert _read(reader, path) == 0
    admin.execute("INSERT INTO t_fold (id, scope, created_at) VALUES (1001, 1, now() + '1 hour')")
    assert _read(reader, path) == 1
    admin.execute("SELECT pgjobs.cancel(id) FROM pgjobs.jobs WHERE kind = 'delete'")
    assert _read(reader, path) == 21


def test_the_one_type_read_follows_alter_column_and_a_dropped_column(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    reader = _reader(make_conn)
    page = "SELECT count(*) FROM pgjobs.visible('t_fold', '1', '{}', %s, 1000)"
    assert scalar(reader, page, ("3000000000",)) == 0
    admin.execute("ALTER TABLE t_fold ALTER COLUMN id TYPE integer")
    # The cursor is now cast to integer: out of range is a 22023 naming it.
    with pytest.raises(errors.InvalidParameterValue) as info:
        scalar(reader, page, ("3000000000",))
    assert "integer" in str(info.value)
    assert scalar(reader, page, ("10",)) == 15
    admin.execute("ALTER TABLE t_fold ALTER COLUMN scope TYPE text")
    assert scalar(reader, page, ("10",)) == 15
    assert scalar(reader, "SELECT pgjobs.visible_count('t_fold', ' 1')") == 0  # text now
    admin.execute("ALTER TABLE t_fold DROP COLUMN scope CASCADE")
    for path in READS:
        with pytest.raises(errors.UndefinedColumn) as gone, reader.transaction():
            scalar(reader, READS[path], ("1",))
        assert "register it again" in (gone.value.diag.message_hint or ""), path
    admin.execute("ALTER TABLE t_fold ADD COLUMN scope int")
    admin.execute("ALTER TABLE t_fold DROP COLUMN id CASCADE")
    with pytest.raises(errors.UndefinedColumn) as gone, reader.transaction():
        scalar(reader, READS["visible"], ("1",))
    assert "register it again" in (gone.value.diag.message_hint or "")


def test_a_caller_without_select_learns_nothing_of_a_dropped_scope_column(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    """The checks keep their order: a role that may not read the target is
    refused (42501) before any column is looked for."""
    admin.execute(f"REVOKE SELECT ON t_fold FROM {READER}")
    admin.execute("ALTER TABLE t_fold DROP COLUMN scope CASCADE")
    reader = _reader(make_conn)
    for path in READS:
        assert _refused(reader, path), path
