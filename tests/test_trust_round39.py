"""Round 39, an attacker's pass (h9): what a filter clause does on the rows,
not only on the typed NULL the compiler tries it on.

1. `$contains` on a column of a nondeterministic collation (a
   case-insensitive ICU column, declared on the column or on its domain, a
   key column too) compiled and test-evaluated cleanly: the compiler tries
   every column clause on a NULL of the column's type, and ILIKE refuses a
   nondeterministic collation only when it reads a value. So the submit of
   a delete, backfill or export was accepted, the job then failed its
   first page with 0A000, and while it was pending every read of its scope
   failed too: pgjobs.visible, visible_count and a client's own query
   around pgjobs.mask raised "nondeterministic collations are not
   supported for ILIKE" for every role that read the scope (and preview
   gave the raw 0A000, without a hint). The clause now matches under the
   database's default collation, which is deterministic and the same in
   every session (pgjobs._compile_filter_column_op): the job, its preview,
   the mask and the reads all run, and agree.
2. The same class on a json column: a filter compares it as jsonb, and the
   clause cast the column (col::jsonb), which raises on a value json holds
   and jsonb refuses (a \u0000 escape, a lone surrogate, a number past
   numeric's range: 22P05, 22P02, 22003). Any filter on the column, even
   $exists, passed its submit, failed its job, and while pending failed
   every read of the scope. pgjobs._json_as_jsonb reads such a value as a
   JSON string of its text.
3. pgjobs.visible returned to_jsonb(row), the same cast: one such row
   failed every page of its scope, filter or not. It reads json columns
   through pgjobs._json_as_jsonb too.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import run_pages, scalar
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

# Where the nondeterministic collation sits, and which column is the key.
SHAPES = [
    pytest.param("text COLLATE ci", "id", id="column-collation"),
    pytest.param("varchar(20) COLLATE ci", "id", id="varchar-column-collation"),
    pytest.param("ci_text", "id", id="domain-collation"),
    pytest.param("text COLLATE ci", "label", id="key-column"),
]

# Each selects rows 1..8 of a scope (labels 'ACME-n' / 'acme-n'), never
# rows 9 and 10 ('other-n').
FILTERS = [
    {"label": {"$contains": "cM"}},
    {"$or": [{"label": {"$contains": "CME-"}}, {"n": -1}]},
    {"$not": {"label": {"$contains": "OTHER"}}},
    {"label": {"$not": {"$contains": "tHeR"}}},
]


def _make(conn: Conn, label_type: str, key: str) -> None:
    conn.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', "
                 "deterministic = false)")
    conn.execute("CREATE DOMAIN ci_text AS text COLLATE ci")
    conn.execute(f"""CREATE TABLE t (id bigint NOT NULL, s integer NOT NULL,
                                     label {label_type} NOT NULL, n integer,
                                     created_at timestamptz NOT NULL
                                         DEFAULT now() - interval '1 hour')""")
    conn.execute(f"CREATE INDEX ON t (s, {key})")
    conn.execute("""INSERT INTO t (id, s, label, n)
                    SELECT g + 100 * s, s,
                           CASE WHEN g > 8 THEN 'other-' WHEN g % 2 = 0 THEN 'ACME-'
                                ELSE 'acme-' END || g, g
                      FROM generate_series(1, 10) g, generate_series(1, 2) s""")
    conn.execute("SELECT pgjobs.register_target('t', %s, 's', 'created_at')", (key,))


def _ids(conn: Conn, scope: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM t WHERE s = %s ORDER BY id", (scope,))]


def _reads(conn: Conn, scope: str, filter_: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every read path says of the scope, as one client would read it."""
    mask = scalar(conn, "SELECT pgjobs.mask('t', %s)", (scope,))
    return {
        "visible_count": scalar(conn, "SELECT pgjobs.visible_count('t', %s, %s::jsonb)",
                                (scope, json.dumps(filter_ or {}))),
        "visible": sorted(int(r[0]) for r in conn.execute(
            "SELECT v ->> 'id' FROM pgjobs.visible('t', %s, %s::jsonb) v",
            (scope, json.dumps(filter_ or {})))),
        # (The mask's ILIKE patterns hold '%': doubled for psycopg's placeholders.)
        "mask": scalar(conn, "SELECT count(*) FROM t WHERE s = %s::integer AND ("
                       + mask.replace("%", "%%") + ")", (scope,)),
    }


@pytest.mark.parametrize("label_type, key", SHAPES)
@pytest.mark.parametrize("filter_", FILTERS, ids=["plain", "or", "not-field", "not-op"])
def test_contains_on_a_nondeterministic_column_runs_and_every_read_with_it(
        conn: Conn, label_type: str, key: str, filter_: dict[str, Any]) -> None:
    _make(conn, label_type, key)
    preview = scalar(conn, "SELECT pgjobs.preview('t', '1', %s::jsonb)", (json.dumps(filter_),))
    assert preview["matches"] == 8
    # The same filter in a read: case-insensitive, as $contains says.
    assert _reads(conn, "1", filter_)["visible_count"] == 8
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                    (json.dumps(filter_),))
    # While the delete is pending, every read of the scope runs and hides
    # exactly its rows; the other scope reads as it is.
    assert _reads(conn, "1") == {"visible_count": 2, "visible": [109, 110], "mask": 2}
    assert _reads(conn, "2")["visible_count"] == 10
    assert run_pages(conn, job_id)[-1] == "done"
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert _ids(conn, 1) == [109, 110]
    assert _ids(conn, 2) == list(range(201, 211))


@pytest.mark.parametrize("label_type, key", SHAPES)
def test_a_backfill_and_an_export_with_contains_on_such_a_column(
        conn: Conn, label_type: str, key: str) -> None:
    _make(conn, label_type, key)
    filter_ = json.dumps(FILTERS[0])
    job_id = scalar(conn, "SELECT pgjobs.submit_backfill('t', '1', %s::jsonb, '{\"n\": 0}')",
                    (filter_,))
    assert run_pages(conn, job_id)[-1] == "done"
    assert [r[0] for r in conn.execute("SELECT id FROM t WHERE n = 0 ORDER BY id")] == \
        list(range(101, 109))
    # An export's rows are those the visible read gives for its filter.
    export_id = scalar(conn, "SELECT pgjobs.submit_export('t', '1', %s::jsonb)", (filter_,))
    sql = scalar(conn, "SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 1000)",
                 (export_id,))
    with conn.cursor().copy(sql) as copy:
        lines = b"".join(bytes(chunk) for chunk in copy).decode().splitlines()
    assert len(lines) == 1 + 8  # the header and rows 101..108


# --- 2. a json column's values jsonb cannot hold ----------------------------------------

# json keeps what JSON's grammar allows; jsonb refuses a \u0000 escape, a
# lone surrogate and a number past numeric's range.
ODD_JSON = {2: '{"a": "\\u0000"}', 3: '{"a": 1e200000}', 4: '"\\ud800"'}
JSON_CASES = [
    ({"p": {"a": 1}}, [1]),
    ({"p": {"$ne": {"a": 1}}}, [2, 3, 4, 5, 6]),
    ({"p": {"$in": [{"a": 2}, {"a": 1}]}}, [1, 6]),
    ({"p": {"$nin": [{"a": 2}]}}, [1, 2, 3, 4, 5]),
    ({"p": None}, [5]),
    ({"p": {"$exists": True}}, [1, 2, 3, 4, 6]),
    ({"p": {"$gt": 1}}, [1, 6]),
    ({"p": {"$contains": "a"}}, [1, 2, 3, 6]),
    ({"$not": {"p": {"a": 2}}}, [1, 2, 3, 4, 5]),
]


def _make_json(conn: Conn, column_type: str) -> None:
    conn.execute("CREATE DOMAIN json_doc AS json")
    conn.execute(f"""CREATE TABLE j (id bigint NOT NULL, s integer NOT NULL, p {column_type},
                                     created_at timestamptz NOT NULL
                                         DEFAULT now() - interval '1 hour')""")
    conn.execute("CREATE INDEX ON j (s, id)")
    for scope in (1, 2):
        for i, text in {1: '{"a": 1}', 5: None, 6: '{"a": 2}', **ODD_JSON}.items():
            conn.execute("INSERT INTO j (id, s, p) VALUES (%s, %s, %s::json)",
                         (i + 100 * scope, scope, text))
    conn.execute("SELECT pgjobs.register_target('j', 'id', 's', 'created_at')")


@pytest.mark.parametrize("column_type", ["json", "json_doc"])
@pytest.mark.parametrize("filter_, expected", JSON_CASES,
                         ids=[json.dumps(f) for f, _ in JSON_CASES])
def test_a_filter_on_a_json_column_reads_every_value_the_column_holds(
        conn: Conn, column_type: str, filter_: dict[str, Any], expected: list[int]) -> None:
    _make_json(conn, column_type)
    text = json.dumps(filter_)
    assert scalar(conn, "SELECT pgjobs.preview('j', '1', %s::jsonb)", (text,))["matches"] == \
        len(expected)
    assert scalar(conn, "SELECT pgjobs.visible_count('j', '1', %s::jsonb)", (text,)) == \
        len(expected)
    assert sorted(int(r[0]) for r in conn.execute(
        "SELECT v ->> 'id' FROM pgjobs.visible('j', '1', %s::jsonb) v", (text,))) == \
        [100 + i for i in expected]
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('j', '1', %s::jsonb)", (text,))
    kept = sorted(100 + i for i in range(1, 7) if i not in expected)
    mask = scalar(conn, "SELECT pgjobs.mask('j', '1')").replace("%", "%%")
    assert scalar(conn, f"SELECT count(*) FROM j WHERE s = 1 AND ({mask})") == len(kept)
    assert scalar(conn, "SELECT pgjobs.visible_count('j', '1')") == len(kept)
    assert scalar(conn, "SELECT pgjobs.visible_count('j', '2')") == 6
    assert sorted(int(r[0]) for r in conn.execute(
        "SELECT v ->> 'id' FROM pgjobs.visible('j', '1') v")) == kept
    # A reader's session that plans parallel scans: the clause's exception
    # block (a subtransaction) must keep the plan serial, not fail it.
    with conn.transaction():
        force = "debug_parallel_query" if conn.info.server_version >= 160000 \
            else "force_parallel_mode"  # the same setting, renamed in 16
        conn.execute(f"SET LOCAL {force} = on")
        assert scalar(conn, f"SELECT count(*) FROM j WHERE s = 1 AND ({mask})") == len(kept)
        assert scalar(conn, "SELECT pgjobs.visible_count('j', '1')") == len(kept)
    assert run_pages(conn, job_id)[-1] == "done"
    assert [r[0] for r in conn.execute("SELECT id FROM j WHERE s = 1 ORDER BY id")] == kept
    assert scalar(conn, "SELECT count(*) FROM j WHERE s = 2") == 6


def test_a_client_reads_around_a_mask_on_a_json_column(conn: Conn) -> None:
    """The mask's text calls pgjobs._json_as_jsonb in the client's own query:
    a pgjobs_client may run it."""
    _make_json(conn, "json")
    role = make_role(conn, "json_reader", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, DELETE ON j TO {role}")
    try:
        conn.execute(f"SET ROLE {role}")
        scalar(conn, "SELECT pgjobs.submit_delete('j', '1', %s::jsonb)",
               (json.dumps({"p": {"a": 1}}),))
        mask = scalar(conn, "SELECT pgjobs.mask('j', '1')").replace("%", "%%")
        assert "pgjobs._json_as_jsonb(" in mask
        assert scalar(conn, f"SELECT count(*) FROM j WHERE s = 1 AND ({mask})") == 5
        assert scalar(conn, "SELECT pgjobs.visible_count('j', '1')") == 5
    finally:
        drop_role(conn, role)


def test_visible_returns_every_row_of_a_scope_with_json_values_jsonb_refuses(
        conn: Conn) -> None:
    """pgjobs.visible returned to_jsonb(row), which raised on such a value:
    one row failed every page of its scope. It comes back as a JSON string
    of its text; every other value as to_jsonb gives it."""
    _make_json(conn, "json_doc")
    conn.execute("ALTER TABLE j ADD COLUMN q json DEFAULT '[1, {\"b\": null}]'")
    rows = {int(r["id"]): r for (r,) in conn.execute("SELECT v FROM pgjobs.visible('j', '1') v")}
    assert sorted(rows) == list(range(101, 107))
    for i, text in ODD_JSON.items():
        assert rows[100 + i]["p"] == text
    assert rows[101]["p"] == {"a": 1} and rows[105]["p"] is None
    assert all(r["q"] == [1, {"b": None}] for r in rows.values())
    plain = {int(r["id"]): r for (r,) in conn.execute(
        "SELECT to_jsonb(j) FROM j WHERE s = 1 AND id IN (101, 105, 106)")}
    assert all(rows[k] == plain[k] for k in plain)
