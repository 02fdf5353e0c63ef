"""Types whose comparison operators live outside pg_catalog (extension types
such as citext and ltree): pgjobs builds its SQL under search_path
pg_catalog, where `=` on citext silently compares as text while a client
that splices the mask compares case-insensitively, and ltree has no `=` at
all. Such columns cannot be a key or a scope, nor be compared in a filter:
refused with 22023 and a hint, never a raw 42883 or a mask that disagrees
with the pages (issue 9, items 1 and 4, found by an adversarial pass)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

Conn = psycopg.Connection[Any]


def _table(conn: Conn, key: str, scope: str, extra: str = "") -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
    conn.execute("CREATE EXTENSION IF NOT EXISTS ltree")
    conn.execute("CREATE DOMAIN ci_name AS citext")
    conn.execute(f"""CREATE TABLE ext (k {key} NOT NULL, s {scope} NOT NULL, {extra}
                     created_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("CREATE INDEX ON ext (s, k)")


@pytest.mark.parametrize(("key", "scope", "role"), [
    ("citext", "int", "key"), ("ltree", "int", "key"), ("ci_name", "int", "key"),
    ("bigint", "citext", "scope"), ("bigint", "ltree", "scope"), ("bigint", "ci_name", "scope"),
])
def test_extension_typed_keys_and_scopes_are_refused(conn: Conn, key: str, scope: str,
                                                     role: str) -> None:
    _table(conn, key, scope)
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.register_target('ext', 'k', 's', 'created_at')")
    assert f"cannot be the {role}" in str(info.value)
    assert "built-in type" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize("column", ["name citext", "path ltree", "name ci_name"])
def test_filters_on_extension_typed_columns_are_refused(conn: Conn, column: str) -> None:
    _table(conn, "bigint", "int", f"{column},")
    conn.execute("SELECT pgjobs.register_target('ext', 'k', 's', 'created_at')")
    field = column.split()[0]
    for call in ("SELECT pgjobs.submit_delete('ext', '1', %s::jsonb)",
                 "SELECT pgjobs.visible_count('ext', '1', %s::jsonb)",
                 "SELECT pgjobs.submit_export('ext', '1', %s::jsonb)"):
        with pytest.raises(errors.InvalidParameterValue) as info:
            conn.execute(call, (f'{{"{field}": "Bob"}}',))
        assert "pg_catalog" in str(info.value)
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_built_in_types_behind_domains_and_enums_still_work(conn: Conn) -> None:
    conn.execute("CREATE DOMAIN tenant_name AS text CHECK (VALUE <> '')")
    conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    conn.execute("""CREATE TABLE fine (k bigint NOT NULL, s tenant_name NOT NULL, m mood,
                                       created_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("CREATE INDEX ON fine (s, k)")
    conn.execute("INSERT INTO fine (k, s, m) SELECT g, 'acme', 'ok' FROM generate_series(1, 5) g")
    conn.execute("SELECT pgjobs.register_target('fine', 'k', 's', 'created_at')")
    assert conn.execute("""SELECT pgjobs.visible_count('fine', 'acme', '{"m": "ok"}')"""
                        ).fetchone() == (5,)


def test_operators_planted_for_built_in_types_do_not_refuse_them(conn: Conn) -> None:
    """Only types defined outside pg_catalog are judged: an `=` on bigint that
    some role adds in public changes nothing for pgjobs, which never sees it."""
    conn.execute("""
        CREATE FUNCTION public.eq_planted(bigint, bigint) RETURNS boolean
            LANGUAGE sql IMMUTABLE AS 'SELECT false';
        CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint,
                                  FUNCTION = public.eq_planted);
        CREATE TABLE plain (k bigint NOT NULL, s bigint NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON plain (s, k);
        INSERT INTO plain (k, s) SELECT g, 1 FROM generate_series(1, 4) g;
    """)
    conn.execute("SELECT pgjobs.register_target('plain', 'k', 's', 'created_at')")
    assert conn.execute("""SELECT pgjobs.visible_count('plain', '1', '{"k": 2}')"""
                        ).fetchone() == (1,)
