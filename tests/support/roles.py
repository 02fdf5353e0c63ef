"""Throwaway roles for the privilege and trust tests: one way to make and drop
them (five test files wrote the same two helpers out)."""

from __future__ import annotations

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
