"""The read path's fixed costs were cut without changing an answer.

pgjobs._canonical_scope casts the common scope types (integer, bigint,
smallint, uuid, text, without modifiers) by static expressions instead of
dynamic SQL. A domain over the same type takes the general path, so a column
of the type and a column of a domain over it must give the same canonical
text, or the same 22023, for every spelling (signs, zeros, spaces, case,
braces, overflow, garbage), and so must the reads that canonicalise: visible,
visible_count, mask and a delete's stored scope.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import scalar

Conn = psycopg.Connection[Any]

SPELLINGS = {
    "integer": ["1", "01", " 1", "+1", "-0", "1 ", "2147483647", "2147483648", "-2147483648",
                "1.0", "1e3", "0x10", "", "abc", "١"],
    "bigint": ["42", "0042", "+42", " -7 ", "9223372036854775807", "9223372036854775808",
               "4.2", "", "x"],
    "smallint": ["7", "007", "32767", "32768", "-32768", "-32769", " 3", "three"],
    "uuid": ["12345678-1234-1234-1234-123456789ABC", "{12345678-1234-1234-1234-123456789abc}",
             "123456781234123412341234567890ab", "12345678-1234-1234-1234-12345678", "", "x"],
    "text": ["acme", " acme ", "", "NULL", "it's", "a\\b", "Ünïcode", "{1,2}"],
}


def canonical(conn: Conn, table: str, scope: str) -> tuple[str, str | None]:
    try:
        with conn.transaction():
            value = scalar(conn, "SELECT pgjobs._canonical_scope(r, %s)"
                                 " FROM pgjobs.target_registry r WHERE r.target = %s::regclass",
                           (scope, table))
        return "ok", value
    except psycopg.Error as error:
        return str(error.sqlstate), None


@pytest.mark.parametrize("type_", sorted(SPELLINGS))
def test_the_static_casts_canonicalise_as_the_general_path(conn: Conn, type_: str) -> None:
    conn.execute(f"CREATE DOMAIN scope_dom AS {type_}")
    for table, column_type in (("plain_t", type_), ("dom_t", "scope_dom")):
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, tenant {column_type} NOT NULL,"
                     " created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"CREATE INDEX ON {table} (tenant, id)")
        conn.execute(f"SELECT pgjobs.register_target('{table}', 'id', 'tenant', 'created_at')")
    seen_ok = seen_error = 0
    for scope in SPELLINGS[type_]:
        fast = canonical(conn, "plain_t", scope)
        general = canonical(conn, "dom_t", scope)
        assert fast == general, (type_, scope)
        seen_ok += fast[0] == "ok"
        seen_error += fast[0] != "ok"
        if fast[0] != "ok":
            assert fast[0] == "22023"
            for call in ("SELECT count(*) FROM pgjobs.visible('plain_t', %s)",
                         "SELECT pgjobs.visible_count('plain_t', %s)",
                         "SELECT pgjobs.mask('plain_t', %s)"):
                with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
                    conn.execute(call, (scope,))
    assert seen_ok and (seen_error or type_ == "text")
    # A delete stores the canonical scope, and the reads of every spelling
    # of it see its mask.
    good = [s for s in SPELLINGS[type_] if canonical(conn, "plain_t", s)[0] == "ok"]
    conn.execute("SELECT pgjobs.submit_delete('plain_t', %s)", (good[0],))
    stored = scalar(conn, "SELECT scope FROM pgjobs.jobs ORDER BY id DESC LIMIT 1")
    assert stored == canonical(conn, "plain_t", good[0])[1]
    for spelling in good:
        if canonical(conn, "plain_t", spelling)[1] == stored:
            assert scalar(conn, "SELECT pgjobs.mask('plain_t', %s)", (spelling,)) != "true"
