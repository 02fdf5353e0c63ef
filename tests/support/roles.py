"""Throwaway roles for the privilege and trust tests: one way to make and drop
them (five test files wrote the same two helpers out)."""

from __future__ import annotations

import os
from typing import Any

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
