"""Every use of a target judges its registration again (pgjobs._target ->
pgjobs._registration_problem), and that verdict depends on more of the
catalog than the table's own columns: here a role that may create objects in
some schema defines `=` for the scope's (or key's) enum type, and the table's
pg_attribute rows do not change at all. The target must be refused anyway.

This is why pgjobs._target keeps no verdict cache keyed on the columns'
(attnum, atttypid, attcollation): such a cache would let this through
(docs/engine.md, "Registration, checked at every use").
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, scalar

Conn = psycopg.Connection[Any]

FINGERPRINT = """
    SELECT array_agg(ARRAY[attnum::int, atttypid::int, attcollation::int, attnotnull::int]
                     ORDER BY attnum)
      FROM pg_attribute WHERE attrelid = 'moods'::regclass AND attnum > 0"""


@pytest.mark.parametrize(("key", "scope"), [("m", "tenant"), ("id", "m")])
def test_an_operator_defined_elsewhere_refuses_a_registered_target(conn: Conn, key: str,
                                                                  scope: str) -> None:
    conn.execute("CREATE TYPE mood AS ENUM ('calm', 'cross')")
    build_target(conn, "moods", """id bigint NOT NULL, tenant text NOT NULL, m mood NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 key=key, scope=scope)
    conn.execute("INSERT INTO moods VALUES (1, 'a', 'calm')")
    value = "a" if scope == "tenant" else "calm"
    scalar(conn, "SELECT pgjobs.submit_delete('moods', %s, '{}')", (value,))
    before = scalar(conn, FINGERPRINT)
    role = f"pgjobs_test_opmaker_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        conn.execute(f"CREATE SCHEMA ops AUTHORIZATION {role}")
        conn.execute(f"SET ROLE {role}")
        conn.execute("""
            CREATE FUNCTION ops.mood_eq(mood, mood) RETURNS boolean LANGUAGE sql
                IMMUTABLE AS $f$ SELECT true $f$;
            CREATE OPERATOR ops.= (LEFTARG = mood, RIGHTARG = mood, FUNCTION = ops.mood_eq)""")
        conn.execute("RESET ROLE")
        assert scalar(conn, FINGERPRINT) == before  # the table itself did not change
        for call in ("SELECT pgjobs.submit_delete('moods', %s, '{}')",
                     "SELECT pgjobs.visible_count('moods', %s)",
                     "SELECT pgjobs.preview('moods', %s)"):
            with pytest.raises(errors.InvalidParameterValue, match="not in pg_catalog"):
                conn.execute(call, (value,))
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP SCHEMA IF EXISTS ops CASCADE")
        conn.execute(f"DROP ROLE {role}")
