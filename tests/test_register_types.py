"""A column type that registers is one pgjobs can use (a new user's case: a
target that registered but whose every submit failed with 42883). For key
and scope columns of built-in types, enums and domains over each: either
register_target refuses the column with 22023 and a hint, or a delete of
one scope by a filter on the key deletes exactly that scope's matching rows.
Refusals are asserted for the types that cannot be compared."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import job, run_job

Conn = psycopg.Connection[Any]

# name: (type declarations, column type, two distinct values in order)
TYPES: dict[str, tuple[str, str, tuple[str, str]]] = {
    "enum": ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')", "mood", ("sad", "happy")),
    "domain over enum": ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
                         " CREATE DOMAIN dmood AS mood", "dmood", ("sad", "happy")),
    "domain over domain over enum": ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
                                     " CREATE DOMAIN dmood AS mood; CREATE DOMAIN ddmood AS dmood",
                                     "ddmood", ("sad", "happy")),
    "domain over int": ("CREATE DOMAIN dint AS integer CHECK (VALUE > 0)", "dint", ("1", "7")),
    "domain over text": ("CREATE DOMAIN dtext AS text", "dtext", ("a", "b")),
    "domain over uuid": ("CREATE DOMAIN duuid AS uuid", "duuid",
                         ("00000000-0000-0000-0000-000000000001",
                          "00000000-0000-0000-0000-000000000002")),
    "domain over date": ("CREATE DOMAIN ddate AS date", "ddate", ("2024-01-01", "2024-02-01")),
}
REFUSED = {"domain over enum", "domain over domain over enum"}


@pytest.mark.parametrize("role", ["key", "scope"])
@pytest.mark.parametrize("name", sorted(TYPES))
def test_a_column_type_that_registers_can_be_used(conn: Conn, name: str, role: str) -> None:
    declare, type_, (low, high) = TYPES[name]
    conn.execute(declare)
    key_type, scope_type = (type_, "integer") if role == "key" else ("bigint", type_)
    conn.execute(f"CREATE TABLE t (k {key_type} NOT NULL, s {scope_type} NOT NULL,"
                 " created_at timestamptz NOT NULL DEFAULT now() - interval '1 minute',"
                 " PRIMARY KEY (s, k))")
    try:
        conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'created_at')")
    except errors.InvalidParameterValue as exc:
        assert name in REFUSED, exc
        assert f"cannot be the {role}" in str(exc) and exc.diag.message_hint
        assert conn.execute("SELECT count(*) FROM pgjobs.targets").fetchone() == (0,)
        return
    assert name not in REFUSED
    keys, scopes = ((low, high), ("1", "2")) if role == "key" else (("1", "2"), (low, high))
    conn.execute(f"INSERT INTO t (k, s) SELECT k::{key_type}, s::{scope_type}"
                 " FROM unnest(%s::text[]) k, unnest(%s::text[]) s", (list(keys), list(scopes)))
    # Deletes the row of the first scope whose key is above the first key.
    job_id = conn.execute("SELECT pgjobs.submit_delete('t', %s, %s::jsonb)",
                          (scopes[0], f'{{"k": {{"$gt": "{keys[0]}"}}}}')).fetchone()[0]
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    left = set(conn.execute("SELECT k::text, s::text FROM t").fetchall())
    assert left == {(keys[0], scopes[0]), (keys[0], scopes[1]), (keys[1], scopes[1])}


@pytest.mark.parametrize("type_", ["xml", "json", "point", "int4range", "integer[]"])
def test_a_scope_no_btree_orders_is_refused_by_its_type(conn: Conn, type_: str) -> None:
    """A scope type that no btree orders (so no (scope, key) index of it can be
    built) is refused for its type, with 22023 and a hint naming scope types,
    not told to create that index. xml passed the type rule through its cast
    to text (binary, but for assignment only: not one an index would use)."""
    conn.execute(f"CREATE TABLE t (k bigint NOT NULL PRIMARY KEY, s {type_} NOT NULL,"
                 " created_at timestamptz NOT NULL DEFAULT now())")
    with pytest.raises(errors.InvalidParameterValue) as raised:
        conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'created_at')")
    assert 'column "s"' in str(raised.value) and "cannot be the scope" in str(raised.value)
    hint = raised.value.diag.message_hint or ""
    assert "A scope needs a type" in hint and "CREATE INDEX" not in hint, hint
    assert conn.execute("SELECT count(*) FROM pgjobs.targets").fetchone() == (0,)

