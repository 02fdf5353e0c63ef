"""A value the client wrote is never changed by a cast to the column's length (h71).

An explicit cast to a string or bit string type with a length (varchar(n),
char(n), bit(n), varbit(n), a domain over one, an array of them) cuts or pads
silently where an UPDATE or COPY refuses the value. Imports had it
(tests/test_import_typmod.py); these pin the other places a client's value
meets such a column, over the same types: a backfill's set refuses a value
that does not fit at submit (22023, with a hint), where the cut value would
have been set on every row; a filter ({"v": value}, {"v": {"$in": [...]}})
compares the value as written, so 'abcdefgh' does not match the row 'abcde'
(preview, which shares the submit's compile); a delete's exclude list refuses
a key the key column's length would change. The controls numeric(5,2) and
timestamp(0) round as an UPDATE does: the backfill is accepted.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

# name: (column type, the row's value, a value that differs only past the length)
CASES: dict[str, tuple[str, str, Any]] = {
    "varchar": ("varchar(5)", "abcde", "abcdefgh"),
    "char": ("char(5)", "abcde", "abcdefgh"),
    "bit": ("bit(5)", "10101", "1010111"),
    "varbit": ("varbit(5)", "10101", "1010111"),
    "domain": ("code5", "abcde", "abcdefgh"),
    "array": ("varchar(5)[]", "{abcde}", "{abcdefgh}"),
}


@pytest.fixture
def typed(conn: Conn, request: pytest.FixtureRequest) -> tuple[str, str, Any]:
    type_sql, stored, _ = CASES[request.param]
    conn.execute("CREATE DOMAIN code5 AS varchar(5)")
    build_target(conn, "typed", f"""
            id bigint NOT NULL, scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(), v {type_sql}, k {type_sql},
            n numeric(5,2), t timestamp(0)""")
    conn.execute("INSERT INTO typed (id, scope, v) VALUES (1, 1, %s), (2, 1, NULL)", (stored,))
    return CASES[request.param]


@pytest.mark.parametrize("typed", list(CASES), indirect=True)
def test_a_backfill_refuses_a_value_its_column_would_cut(
        conn: Conn, typed: tuple[str, str, Any]) -> None:
    _, _, longer = typed
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT pgjobs.submit_backfill('typed', '1', '{}', %s::jsonb)",
                     (psycopg.types.json.Jsonb({"v": longer}),))
    assert info.value.sqlstate == "22023", info.value
    assert info.value.diag.message_hint, info.value
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


@pytest.mark.parametrize("typed", list(CASES), indirect=True)
def test_a_filter_compares_the_value_as_written(
        conn: Conn, typed: tuple[str, str, Any]) -> None:
    type_sql, stored, longer = typed
    filters: list[dict[str, Any]] = [{"v": longer}]
    if not type_sql.endswith("[]"):  # ($in over an array column: 22023, no such operator)
        filters.append({"v": {"$in": [longer, longer + longer[-1]]}})
    for filter_ in filters:
        found = conn.execute("SELECT pgjobs.preview('typed', '1', %s::jsonb)",
                             (psycopg.types.json.Jsonb(filter_),)).fetchone()
        assert found is not None and found[0]["matches"] == 0, (filter_, found)
    found = conn.execute("SELECT pgjobs.preview('typed', '1', %s::jsonb)",
                         (psycopg.types.json.Jsonb({"v": stored}),)).fetchone()
    assert found is not None and found[0]["matches"] == 1, found


@pytest.mark.parametrize("name", ["varchar", "char", "domain"])
def test_an_exclude_list_refuses_a_key_its_column_would_cut(conn: Conn, name: str) -> None:
    type_sql, stored, longer = CASES[name]
    conn.execute("CREATE DOMAIN code5 AS varchar(5)")
    build_target(conn, "keyed", f"""
            id {type_sql} NOT NULL, scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()""")
    conn.execute("INSERT INTO keyed (id, scope) VALUES (%s, 1)", (stored,))
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT pgjobs.submit_delete('keyed', '1', '{}', %s)", ([longer],))
    assert info.value.sqlstate == "22023", info.value
    assert info.value.diag.message_hint, info.value


@pytest.mark.parametrize("typed", ["varchar"], indirect=True)
def test_a_backfill_rounds_a_numeric_and_a_time_as_an_update_does(
        conn: Conn, typed: tuple[str, str, Any]) -> None:
    """The assignments the submit compiles set what an UPDATE of the values
    the client wrote sets (row 1), compared with that UPDATE (row 2)."""
    values = {"n": "1.005", "t": "2024-01-01 00:00:00.6"}
    row = conn.execute("SELECT pgjobs._compile_set(r, %s::jsonb) FROM pgjobs.target_registry r "
                       "WHERE r.target = 'typed'::regclass",
                       (psycopg.types.json.Jsonb(values),)).fetchone()
    assert row is not None
    conn.execute(f"UPDATE typed SET {row[0]} WHERE id = 1")
    conn.execute("UPDATE typed SET n = %s, t = %s WHERE id = 2", (values["n"], values["t"]))
    got = conn.execute("SELECT n::text, t::text FROM typed ORDER BY id").fetchall()
    assert got == [("1.01", "2024-01-01 00:00:01")] * 2
