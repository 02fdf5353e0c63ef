"""Scope and key columns of every common type (issue 9, item 1).

Every literal pgjobs builds for a target's column is cast to the column's
full type, format_type(atttypid, atttypmod): a bare type name drops the
modifiers ('acme0001'::character is 'a'), and a char(n) scope then deletes
another tenant. For each type: a delete of one scope leaves every other
scope intact (including scopes that are prefixes or truncations of it),
exclusions keep exactly their rows, the cursor advances and the job ends,
and visible, visible_count and mask agree with the final state.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import run_pages, scalar

Conn = psycopg.Connection[Any]

# (scope column type, scopes as text): the first is deleted, the others must
# survive; several are prefixes, truncations or near values of the first.
SCOPE_TYPES: list[tuple[str, list[str]]] = [
    ("character(8)", ["acme0001", "a", "acme", "acme0002"]),
    ("character varying(8)", ["acme0001", "a", "acme", "acme000"]),
    ("numeric(6,2)", ["1.50", "1", "1.51", "15"]),
    ("bit(4)", ["1000", "1010", "0001", "1100"]),
    ("timestamp", ["2030-01-01 00:00:00", "2030-01-01 00:00:00.000001", "2030-01-02"]),
    ("timestamptz", ["2030-01-01 00:00:00+00", "2030-01-01 00:00:01+00",
                     "2030-01-01 00:00:00+01"]),
    ("date", ["2030-01-02", "2030-01-01", "2030-01-03"]),
    ("uuid", ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002",
              "10000000-0000-0000-0000-000000000001"]),
    ('text COLLATE "C"', ["acme0001", "a", "Acme0001", "acme"]),
    ("double precision", ["0.1", "0.30000000000000004", "0.3", "1e-300"]),
    ("real", ["0.1", "0.1000001", "1.5", "3.4e38"]),
    ("bigint", ["10", "1", "100", "-10"]),
]

# (key column type, SQL producing the key from g = 1..14). Keys are chosen
# so that truncation or rounding to the bare type collides (k0001 vs k0002).
KEY_TYPES: list[tuple[str, str]] = [
    ("character(8)", "'key' || lpad(g::text, 5, '0')"),
    ("character varying(8)", "'key' || lpad(g::text, 5, '0')"),
    ("numeric(8,3)", "g * 1.125"),
    ("bit(8)", "g::bit(8)"),
    ("timestamp", "timestamp '2030-01-01' + g * interval '1.5 microseconds'"),
    ("timestamptz", "timestamptz '2030-01-01 00:00+00' + g * interval '1 second'"),
    ("date", "date '2030-01-01' + g"),
    ("uuid", "md5(g::text)::uuid"),
    ('text COLLATE "C"', "chr(64 + g) || CASE WHEN g % 2 = 0 THEN 'a' ELSE 'B' END"),
    ("double precision", "g * 0.1"),
    ("real", "(g * 0.1)::real"),
    ("interval", "g * interval '1 hour 1 microsecond'"),
]


def icu_available(conn: Conn) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'"))


def scope_table(conn: Conn, scope_type: str, scopes: list[str]) -> None:
    conn.execute(f"""
        CREATE TABLE t (id bigint NOT NULL, s {scope_type} NOT NULL, n int,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, id))""")
    for i, scope in enumerate(scopes):
        conn.execute("INSERT INTO t (id, s, n) SELECT g, %s, g FROM generate_series(1, 10) g",
                     (scope,))
        assert i + 1 == scalar(conn, "SELECT count(DISTINCT s) FROM t"), (scope, "collides")
    conn.execute("SELECT pgjobs.register_target('t', 'id', 's', 'created_at')")


def assert_scope_delete(conn: Conn, scopes: list[str]) -> None:
    """Delete the first scope but key 3; the others stay whole."""
    before = {s: scalar(conn, "SELECT count(*) FROM t WHERE s = %s", (s,)) for s in scopes[1:]}
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('t', %s, '{}', ARRAY['3'],
                                                      '{"page_size": 3}')""", (scopes[0],))
    # While queued, the mask hides exactly the doomed rows.
    assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (scopes[0],)) == 1
    for s in scopes[1:]:
        assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (s,)) == before[s]
        assert scalar(conn, "SELECT pgjobs.mask('t', %s)", (s,)) == "true"
    states = run_pages(conn, job_id)
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job_id,)).fetchone() or (None, None)
    assert status == "succeeded", (states, error)
    assert scalar(conn, "SELECT array_agg(id) FROM t WHERE s = %s", (scopes[0],)) == [3]
    for s in scopes[1:]:
        assert scalar(conn, "SELECT count(*) FROM t WHERE s = %s", (s,)) == before[s], s
        assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (s,)) == before[s]
    assert scalar(conn, "SELECT pgjobs.mask('t', %s)", (scopes[0],)) == "true"
    assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (scopes[0],)) == 1
    assert scalar(conn, "SELECT array_agg((v ->> 'id')::int) FROM pgjobs.visible('t', %s) v",
                  (scopes[0],)) == [3]


@pytest.mark.parametrize(("scope_type", "scopes"), SCOPE_TYPES, ids=[t for t, _ in SCOPE_TYPES])
def test_a_delete_of_one_scope_leaves_every_other_scope(conn: Conn, scope_type: str,
                                                        scopes: list[str]) -> None:
    scope_table(conn, scope_type, scopes)
    assert_scope_delete(conn, scopes)


def test_icu_scope(conn: Conn) -> None:
    if not icu_available(conn):
        pytest.skip("this server has no ICU")
    scopes = ["acme0001", "a", "Acme0001", "acme"]
    scope_table(conn, 'text COLLATE "und-x-icu"', scopes)
    assert_scope_delete(conn, scopes)


def key_table(conn: Conn, key_type: str, key_sql: str) -> list[str]:
    conn.execute(f"""
        CREATE TABLE t (k {key_type} NOT NULL, s int NOT NULL, n int,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, k))""")
    conn.execute(f"INSERT INTO t (k, s, n) SELECT {key_sql}, s, g "
                 "FROM generate_series(1, 14) g, generate_series(1, 2) s")
    assert scalar(conn, "SELECT count(*) FROM t") == 28, "keys collide"
    conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'created_at')")
    return [r[0] for r in conn.execute("SELECT k::text FROM t WHERE s = 1 ORDER BY k")]


def assert_key_delete(conn: Conn, keys: list[str]) -> None:
    kept = [keys[2], keys[7]]
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('t', '1', '{}', %s,
                                                      '{"page_size": 3}')""", (kept,))
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == 2
    states = run_pages(conn, job_id)
    status, error, done = conn.execute("SELECT status, error, done FROM pgjobs.jobs WHERE id = %s",
                                       (job_id,)).fetchone() or (None, None, None)
    assert status == "succeeded", (states, error)
    assert done == len(keys) - 2
    assert [r[0] for r in conn.execute("SELECT k::text FROM t WHERE s = 1 ORDER BY k")] == kept
    assert scalar(conn, "SELECT count(*) FROM t WHERE s = 2") == len(keys)
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == 2
    # visible pages through the other scope by key, whatever the key's type.
    seen: list[str] = []
    after = None
    while True:
        page = [r[0] for r in conn.execute(
            "SELECT v ->> 'k' FROM pgjobs.visible('t', '2', '{}', %s, 4) v", (after,))]
        seen += page
        if len(page) < 4:
            break
        after = page[-1]
    assert len(seen) == len(keys) == len(set(seen))


@pytest.mark.parametrize(("key_type", "key_sql"), KEY_TYPES, ids=[t for t, _ in KEY_TYPES])
def test_keys_of_every_type_page_exclude_and_end(conn: Conn, key_type: str,
                                                 key_sql: str) -> None:
    keys = key_table(conn, key_type, key_sql)
    assert_key_delete(conn, keys)


def test_icu_key(conn: Conn) -> None:
    if not icu_available(conn):
        pytest.skip("this server has no ICU")
    keys = key_table(conn, 'text COLLATE "und-x-icu"',
                     "chr(64 + g) || CASE WHEN g % 2 = 0 THEN 'a' ELSE 'B' END")
    assert_key_delete(conn, keys)


def nondeterministic(conn: Conn) -> None:
    if not icu_available(conn):
        pytest.skip("this server has no ICU")
    conn.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', "
                 "deterministic = false)")


def test_a_nondeterministic_scope_is_refused(conn: Conn) -> None:
    """'ACME' and 'acme' would be one tenant with two spellings: refused."""
    nondeterministic(conn)
    conn.execute("""CREATE TABLE t (id bigint NOT NULL, s text COLLATE ci NOT NULL,
                                    created_at timestamptz NOT NULL, PRIMARY KEY (s, id))""")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.register_target('t', 'id', 's', 'created_at')")
    assert "nondeterministic" in str(exc.value)
    assert "GENERATED" in (exc.value.diag.message_hint or "")


def test_a_nondeterministic_key_works(conn: Conn) -> None:
    """A case-insensitive key: the walk, the cursor and exclusions follow the
    column's collation (an exclusion 'KEY00003' keeps the row 'key00003')."""
    nondeterministic(conn)
    keys = key_table(conn, "text COLLATE ci", "'key' || lpad(g::text, 5, '0')")
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('t', '1', '{}', ARRAY['KEY00003'],
                                                      '{"page_size": 3}')""")
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, "SELECT array_agg(k::text) FROM t WHERE s = 1") == ["key00003"]
    assert scalar(conn, "SELECT count(*) FROM t WHERE s = 2") == len(keys)


@pytest.mark.parametrize("scope_type", ["text[]", "jsonb", "int4range"])
def test_a_scope_type_without_one_spelling_is_refused(conn: Conn, scope_type: str) -> None:
    conn.execute(f"""CREATE TABLE t (id bigint NOT NULL, s {scope_type} NOT NULL,
                                     created_at timestamptz NOT NULL)""")
    conn.execute("CREATE INDEX ON t USING btree (s, id)")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.register_target('t', 'id', 's', 'created_at')")
    assert "scope" in str(exc.value)


def test_a_scope_the_type_would_truncate_or_round_is_refused(conn: Conn) -> None:
    """'acme0001x' is not a char(8) value: an explicit cast would truncate it
    to tenant 'acme0001'; '1.005' is not a numeric(6,2) value."""
    scope_table(conn, "character(8)", ["acme0001", "a"])
    for bad in ["acme0001x", "acme00012"]:
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.submit_delete('t', %s)", (bad,))
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.visible_count('t', %s)", (bad,))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    conn.execute("DROP TABLE t")
    scope_table(conn, "numeric(6,2)", ["1.01", "1"])
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_delete('t', '1.005')")
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1.010')") == 10


def test_filter_values_compare_as_sql_compares_them(conn: Conn) -> None:
    """A filter value is cast to the column's type without its modifiers, as
    plain SQL compares `c = 'acme0001x'`: never truncated or rounded into
    another row's value (nor cast to the bare name, char(1))."""
    conn.execute("""CREATE TABLE t (id bigint NOT NULL, s int NOT NULL, c character(8),
                                    a numeric(6,2), b bit(4),
                                    created_at timestamptz NOT NULL, PRIMARY KEY (s, id));
                    INSERT INTO t VALUES (1, 1, 'acme0001', 1.01, '1010', now()),
                                         (2, 1, 'a', 1.00, '1000', now());""")
    conn.execute("SELECT pgjobs.register_target('t', 'id', 's', 'created_at')")
    cases = [({"c": "acme0001"}, [1]), ({"c": "acme0001x"}, []), ({"c": "a"}, [2]),
             ({"c": "a   "}, [2]), ({"a": {"$gt": 1.005}}, [1]), ({"a": 1.005}, []),
             ({"a": "1.0"}, [2]), ({"b": "1010"}, [1]), ({"b": "10100"}, []),
             ({"b": "1"}, [])]
    for filter_, expected in cases:
        got = scalar(conn, """SELECT coalesce(array_agg((v ->> 'id')::int), '{}')
                                FROM pgjobs.visible('t', '1', %s::jsonb) v""",
                     (json.dumps(filter_),))
        assert got == expected, filter_
        where = scalar(conn, "SELECT pgjobs.compile_filter('t', %s::jsonb)",
                       (json.dumps(filter_),))
        assert scalar(conn, "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM t "
                            f"WHERE {where}") == expected


def test_an_exclusion_the_key_type_would_change_is_refused(conn: Conn) -> None:
    key_table(conn, "character(8)", "'key' || lpad(g::text, 5, '0')")
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_delete('t', '1', '{}', ARRAY['key000031'])")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
