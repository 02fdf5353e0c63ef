"""An excluded key the guard accepts is a key the delete keeps, for every key type.

The guard on `exclude` (pgjobs._require_known_keys) and the exclusion itself
(pgjobs._exclusion_clause: an inline list, or pgjobs.job_exclusions past 100
keys) must agree on what a key names: a key form that the guard accepts but
the exclusion does not match would delete the row the user meant to keep. Each
case writes the kept row's key in another form (white space, case, leading
zeros, another time zone or date style, braces) and runs the delete to its
end. The oracle half: a key of no row, another scope's key and another
scope's key hidden by that scope's pending delete give the same error, field
by field, at submit and at preview.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import run_pages, scalar

Conn = psycopg.Connection[Any]

# (column type, the kept row's key as inserted, the same key written otherwise)
FORMS = [
    ("integer", "7", " 007"),
    ("bigint", "7", "+7"),
    ("numeric", "1.5", "1.50"),
    ("numeric(6,2)", "1.5", "15e-1"),
    ("text", "ab", "ab"),
    ("varchar(5)", "ab", "ab"),
    ("char(4)", "ab", "ab  "),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"),
    ("date", "2030-03-04", "04/03/2030"),
    ("timestamptz", "2030-03-04 10:00+00", "2030-03-04 12:00+02"),
    ("timestamp", "2030-03-04 10:00", "2030-03-04T10:00:00.000"),
    ("double precision", "0.1", "1e-1"),
    ('text COLLATE "C"', "ab", "ab"),
]


def _table(conn: Conn, name: str, typ: str, rows: list[str]) -> None:
    base = typ.split(" COLLATE")[0]
    conn.execute(f"""
        CREATE TABLE {name} (id {typ} NOT NULL, s text NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON {name} (s, id)""")
    conn.execute(f"INSERT INTO {name} (id, s) SELECT unnest(%s::text[])::{base}, 'a'", (rows,))
    conn.execute(f"INSERT INTO {name} (id, s) SELECT unnest(%s::text[])::{base}, 'b'", (rows,))
    conn.execute(f"SELECT pgjobs.register_target('{name}', 'id', 's', 'created_at')")


@pytest.mark.parametrize(("typ", "row", "written"), FORMS, ids=[f[0] for f in FORMS])
def test_a_key_written_in_another_form_keeps_its_row(conn: Conn, typ: str, row: str,
                                                     written: str) -> None:
    # DMY for the date form, a time zone ahead of UTC for the timestamptz one:
    # the key is read in the submitter's session, the delete runs elsewhere.
    conn.execute("SET DateStyle = 'ISO, DMY'")
    conn.execute("SET TimeZone = 'Asia/Tokyo'")
    _table(conn, "kt", typ, [row])
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('kt', 'a', '{}', %s::text[], '{}')",
                    ([written],))
    conn.execute("RESET DateStyle")
    conn.execute("RESET TimeZone")
    run_pages(conn, int(job_id))
    assert scalar(conn, "SELECT count(*) FROM kt WHERE s = 'a'") == 1


@pytest.mark.parametrize(("typ", "make_row", "make_key"), [
    ("integer", lambda g: str(g), lambda g: f" {g:04d}"),
    ("uuid", lambda g: f"00000000-0000-0000-0000-{g:012d}",
     lambda g: f"{{00000000000000000000{g:012d}}}".upper()),
    ("varchar(12)", lambda g: f"k{g}", lambda g: f"k{g}"),
    ("char(8)", lambda g: f"k{g}", lambda g: f"k{g} "),
], ids=["integer", "uuid", "varchar", "char"])
def test_a_long_list_keeps_every_row_it_names(conn: Conn, typ: str, make_row: Any,
                                              make_key: Any) -> None:
    # 150 keys: the list goes to pgjobs.job_exclusions where the key type
    # allows it; every key the guard accepted keeps its row.
    _table(conn, "kl", typ, [make_row(g) for g in range(1, 161)])
    keys = [make_key(g) for g in range(1, 151)]
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('kl', 'a', '{}', %s::text[], '{}')",
                    (keys,))
    run_pages(conn, int(job_id))
    assert scalar(conn, "SELECT count(*) FROM kl WHERE s = 'a'") == 150
    assert scalar(conn, "SELECT count(*) FROM kl WHERE s = 'b'") == 160


def _said(conn: Conn, sql: str, keys: list[str]) -> tuple[Any, ...]:
    with conn.transaction(), pytest.raises(psycopg.Error) as exc:
        conn.execute(sql, (keys,))
    error = exc.value
    return (error.sqlstate, error.diag.message_primary, error.diag.message_detail,
            error.diag.message_hint, error.diag.context is None)


@pytest.mark.parametrize("entry", ["submit_delete", "preview"])
def test_no_field_tells_another_scopes_keys_from_keys_of_no_row(conn: Conn, entry: str) -> None:
    _table(conn, "ko", "text", [f"k{g}" for g in range(1, 21)])
    # Scope b's pending delete hides its k5 (and keeps the rest).
    conn.execute("SELECT pgjobs.submit_delete('ko', 'b', '{}', %s::text[], '{}')",
                 ([f"k{g}" for g in range(1, 21) if g != 5],))
    conn.execute("DELETE FROM ko WHERE s = 'a' AND id IN ('k3', 'k4', 'k5')")
    sql = f"SELECT pgjobs.{entry}('ko', 'a', '{{}}', %s::text[], '{{}}')"
    # k3: no row of a, a row of b; k4 likewise; k5: b's row hidden by b's
    # pending delete; zz: no row anywhere. Alone, and past the ten named.
    shown = {key: _said(conn, sql, [key]) for key in ("k3", "k4", "k5", "zz")}
    assert len({tuple(s[:1] + s[2:]) for s in shown.values()}) == 1, shown
    for key, said in shown.items():
        assert said[0] == "22023"
        assert said[1] == f"exclude names a key that no row of scope 'a' has: \"{key}\""
    many = {key: _said(conn, sql, [f"x{g}" for g in range(12)] + [key, "k1"])
            for key in ("k3", "k5", "zz")}
    assert len(set(many.values())) == 1, many
    assert "and 3 more" in many["zz"][1]
