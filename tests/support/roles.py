"""Throwaway roles for the privilege and trust tests: one way to make and drop
them (five test files wrote the same two helpers out); one way to run
statements as a role, in a transaction of its own (:func:`in_role`,
:func:`scalar_as`) or on the session (:func:`acting_as`), where some thirty
test files each wrote their own SET ROLE runner; and the client ceiling's
helpers: what the engine counts for a role, clients made under a
max_item_bytes_per_client (three test files wrote those out)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

Conn = Any


def make_role(conn: Conn, label: str, *grants: str, prefix: str = "pgjobs_test") -> str:
    """A NOLOGIN role named ``{prefix}_{label}_{pid}`` (dropped first if a
    killed run left it), then each of ``grants`` with ``{role}`` filled in."""
    role = f"{prefix}_{label}_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    for grant in grants:
        conn.execute(grant.format(role=role))
    return role


def drop_role(conn: Conn, role: str) -> None:
    """Back to the session's own role, then drop ``role`` with what it owns."""
    conn.execute("RESET ROLE")
    conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


ROWS_GRANT = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
"""Every right on the seeded user_table_rows, for :func:`make_role`."""

CLIENT_ROOM = ("SELECT role, kept_bytes, max_item_bytes_per_client, room_bytes, "
               "jobs_keeping_bytes, held FROM pgjobs.client_room()")
"""The caller's own room, every column in order."""


@contextlib.contextmanager
def in_role(conn: Conn, role: str, scopes: str | None = None) -> Iterator[Conn]:
    """The block run as ``role`` in a transaction of its own (SET LOCAL ROLE,
    as a tier does per request), with pgjobs.allowed_scopes = ``scopes``
    where given: committed when the block ends, rolled back when it raises
    (the error goes on as psycopg raised it); the role and the scopes end
    with the transaction."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        if scopes is not None:
            conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, true)", (scopes,))
        yield conn


@contextlib.contextmanager
def acting_as(conn: Conn, role: str | None, scopes: str | None = None) -> Iterator[Conn]:
    """The block run as ``role`` on the session (SET ROLE; None: the
    session's own role), with pgjobs.allowed_scopes = ``scopes`` where given;
    each statement commits on its own. Afterwards, even when the block
    raises, RESET ROLE (and RESET pgjobs.allowed_scopes)."""
    if role is not None:
        conn.execute(f"SET ROLE {role}")
    if scopes is not None:
        conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (scopes,))
    try:
        yield conn
    finally:
        conn.execute("RESET ROLE")
        if scopes is not None:
            conn.execute("RESET pgjobs.allowed_scopes")


def session_as(make_conn: Any, role: str, *, before: tuple[str, ...] = (),
               **kwargs: Any) -> Conn:
    """A new session (``make_conn(**kwargs)``) acting as ``role`` for the
    rest of its life: each statement of ``before`` first (a superuser's
    setting, such as track_functions, kept under the role), then SET ROLE;
    committed at once on a session that is not autocommit, so the role
    outlives its first transaction."""
    session = make_conn(**kwargs)
    for statement in before:
        session.execute(statement)
    session.execute(f"SET ROLE {role}")
    if not session.autocommit:
        session.commit()
    return session


def row_as(conn: Conn, role: str, sql: str, params: Any = None) -> Any:
    """The first row of ``sql`` run as ``role`` (:func:`in_role`), as a tuple;
    None where it returns no row."""
    with in_role(conn, role):
        row = conn.execute(sql, params).fetchone()
        return None if row is None else tuple(row)


def scalar_as(conn: Conn, role: str, sql: str, params: Any = None) -> Any:
    """The one value of ``sql`` run as ``role`` (:func:`row_as`; it must return a row)."""
    row = row_as(conn, role, sql, params)
    assert row is not None
    return row[0]


def function_calls_as(conn: Conn, role: str, sql: str) -> dict[str, int]:
    """Run ``sql`` as ``role``; the calls each pgjobs function made in it. The
    view pg_stat_xact_user_functions also holds counts of earlier
    transactions not yet reported (PostgreSQL 15 reports at most once a
    second), and nothing is reported inside a transaction: its counts
    after sql less those before, in one transaction."""
    counts = ("SELECT funcname, calls FROM pg_stat_xact_user_functions "
              "WHERE schemaname = 'pgjobs'")
    with conn.transaction():
        conn.execute("SET LOCAL track_functions = 'all'")
        before = dict(conn.execute(counts).fetchall())
        conn.execute(f"SET LOCAL ROLE {role}")
        conn.execute(sql).fetchall()
        conn.execute("RESET ROLE")
        after = dict(conn.execute(counts).fetchall())
    return {name: calls - before.get(name, 0) for name, calls in after.items()
            if calls != before.get(name, 0)}


def kept_bytes(conn: Conn, role: str) -> int:
    """What the engine counts for the role (its jobs' kept bytes), read as an
    administrator."""
    from tests.support import scalar

    return int(scalar(conn, "SELECT coalesce(sum(kept_bytes), 0) FROM pgjobs.jobs "
                            "WHERE submitted_by = %s", (role,)))


def kept_total(conn: Conn, role: str) -> int:
    """The client's running total of kept bytes (its row of
    pgjobs.client_room_locks, 0 without one), checked equal to what its jobs
    count (:func:`kept_bytes`)."""
    from tests.support import scalar

    total = int(scalar(conn, "SELECT coalesce(max(l.kept_bytes), 0) FROM pgjobs.client_room_locks l"
                             " JOIN pg_roles r ON r.oid = l.submitter_oid WHERE r.rolname = %s",
                       (role,)))
    assert total == kept_bytes(conn, role)
    return total


def item_bytes(conn: Conn, role: str) -> int:
    """The item bytes the role's jobs hold (pgjobs.jobs.item_bytes), read as
    an administrator."""
    from tests.support import scalar

    return int(scalar(conn, "SELECT sum(item_bytes) FROM pgjobs.jobs WHERE submitted_by = %s",
                      (role,)))


def submit_padded(conn: Conn, role: str, kind: str, scope: str, size: int) -> int:
    """A job of ``kind`` submitted as ``role`` whose arguments keep about
    4096 + ``size`` bytes (a pad the engine counts against the client's room)."""
    return int(scalar_as(conn, role, "SELECT pgjobs.submit(%s, 'user_table_rows', %s, "
                                     "%s::jsonb)",
                         (kind, scope, json.dumps({"pad": "x" * (4096 + size)}))))


@contextlib.contextmanager
def roles_under_ceiling(conn: Conn, prefix: str, ceiling: int,
                        kinds: dict[str, str | None]) -> Iterator[dict[str, str]]:
    """Roles on a seeded user_table_rows (:data:`ROWS_GRANT`), each name of
    ``kinds`` a member of ``pgjobs_{kind}`` (None: of neither), made with the
    label ``{prefix}{name}``, under max_item_bytes_per_client = ``ceiling``;
    afterwards the ceiling unset and the roles dropped."""
    from tests.support import make_rows_target, seed

    seed(conn, make_rows_target(conn), 30)
    made = {name: make_role(conn, f"{prefix}{name}",
                            *([] if kind is None else [f"GRANT pgjobs_{kind} TO {{role}}"]),
                            ROWS_GRANT)
            for name, kind in kinds.items()}
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_item_bytes_per_client": ceiling}),))
    try:
        yield made
    finally:
        conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
        for role in made.values():
            drop_role(conn, role)


# The verbs that take a job id (API.md), each with a valid call: %s the id.
CONTROL_VERBS = {
    "cancel": "SELECT pgjobs.cancel(%s)",
    "pause": "SELECT pgjobs.pause(%s)",
    "resume": "SELECT pgjobs.resume(%s)",
    "retry": "SELECT pgjobs.retry(%s)",
    "add_items": "SELECT pgjobs.add_items(%s, '[{\"b\": 1}]')",
}


# The client ceilings' tests (tests/test_trust_client_room.py,
# tests/test_trust_client_kept.py): one submit of each kind, as a client may
# make it; each to its own scope (``%(scope)s``), so the per-scope writers'
# ceiling never answers for the per-client ones.
CLIENT_SOURCE_PREFIX = "file:///srv/pgjobs-client"
CLIENT_SUBMITS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', %(scope)s, '{\"n\": 1}', "
              "'{}', '{\"allow_unknown_fields\": true}')",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', %(scope)s, '{\"n\": 1}', "
                "'{\"label\": \"x\"}', '{\"allow_unknown_fields\": true}')",
    "export": "SELECT pgjobs.submit_export('user_table_rows', %(scope)s)",
    "import": "SELECT pgjobs.submit_import('user_table_rows', %(scope)s, "
              f"'{CLIENT_SOURCE_PREFIX}/a.csv')",
    "custom": "SELECT pgjobs.submit('resize', 'user_table_rows', %(scope)s)",
    "items": "SELECT pgjobs.submit_items('resize', 'user_table_rows', %(scope)s, "
             "'[{\"a\": 1}]')",
}


@pytest.fixture
def client_roles(conn: Conn) -> Iterator[dict[str, str]]:
    """Three roles that may submit every kind of CLIENT_SUBMITS on a seeded
    user_table_rows: ``client`` and ``other`` (pgjobs_client members, each a
    client with its own ceilings) and ``admin`` (a pgjobs_admin member, held
    to none). Registered in tests/conftest.py's pytest_plugins."""
    from tests.support import make_rows_target, seed

    seed(conn, make_rows_target(conn), 30)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (CLIENT_SOURCE_PREFIX,))
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "cclient", "GRANT pgjobs_client TO {role}", grant)
    other = make_role(conn, "cother", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "cadmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "other": other, "admin": admin}
    for role in (client, other, admin):
        drop_role(conn, role)
