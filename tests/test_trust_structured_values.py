"""Values whose JSON form is not their SQL text (adversarial pass h3).

pgjobs prints every value it stores or compares through
pgjobs._canonical_text, from to_jsonb. For an array, a composite or an
oidvector, to_jsonb builds a JSON array or object (`[1, 2]`,
`{"a": 1}`), which does not read back as the value: a filter on an array or
composite column was refused as a "malformed literal", and an oidvector
(which has a btree with equalimage) registered as a key or a scope and then
failed every job, read and filter on it. The canonical text of such a value
is its type's own output, printed under the settings pgjobs pins, and it
reads back as an equal value in any session.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import build_target, run_job, scalar

Conn = psycopg.Connection[Any]

# (type, declarations, values as the application writes them)
VALUES: list[tuple[str, str, list[str]]] = [
    ("integer[]", "", ["{1,2}", "{}", "{NULL,3}", "{{1,2},{3,4}}"]),
    ("text[]", "", ['{"a,b",c}', '{" x ","y\\"z"}', "{NULL}"]),
    ("numeric[]", "", ["{1.50,2}", "{-0.0}"]),
    ("timestamptz[]", "", ["{2030-01-02 03:04:05+07,infinity}"]),
    ("public.pair", "CREATE TYPE pair AS (a int, b text)", ["(1,x)", '(2,"a,b")', "(,)"]),
    ("oidvector", "", ["1 2", "3"]),
]
IDS = [t for t, _, _ in VALUES]


@pytest.mark.parametrize(("type_", "declare", "values"), VALUES, ids=IDS)
def test_canonical_text_reads_back_in_any_session(conn: Conn, type_: str, declare: str,
                                                  values: list[str]) -> None:
    if declare:
        conn.execute(declare)
    conn.execute("SET TimeZone = 'America/New_York'")
    conn.execute("SET DateStyle = 'SQL, DMY'")
    for value in values:
        literal = scalar(conn, "SELECT pgjobs._typed_literal(%s, %s)", (value, type_))
        assert scalar(conn, f"SELECT {literal} IS NOT DISTINCT FROM %s::{type_}",
                      (value,)) is True, (value, literal)


@pytest.mark.parametrize(("type_", "declare", "values"), VALUES, ids=IDS)
def test_a_filter_on_the_column_matches_what_sql_matches(conn: Conn, type_: str, declare: str,
                                                         values: list[str]) -> None:
    if declare:
        conn.execute(declare)
    build_target(conn, "t", f"""id bigint NOT NULL, s int NOT NULL, v {type_},
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute(f"INSERT INTO t (id, s, v) SELECT o, 1, v::{type_}"
                 " FROM unnest(%s::text[]) WITH ORDINALITY u(v, o)", (values,))
    for value in values:
        expect = scalar(conn, f"SELECT count(*) FROM t WHERE v = %s::{type_}", (value,))
        assert expect >= 1
        filter_ = json.dumps({"v": value})
        assert scalar(conn, "SELECT pgjobs.visible_count('t', '1', %s::jsonb)",
                      (filter_,)) == expect, value
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                    (json.dumps({"v": values[0]}),))
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, f"SELECT count(*) FROM t WHERE v = %s::{type_}", (values[0],)) == 0
    assert scalar(conn, "SELECT count(*) FROM t") == len(values) - 1


@pytest.mark.parametrize("role", ["key", "scope"])
def test_an_oidvector_key_or_scope_works_exactly(conn: Conn, role: str) -> None:
    """oidvector has a btree whose equal values are the same value: it
    registers as a key or a scope, so it must work."""
    key, scope = ("oidvector", "int") if role == "key" else ("bigint", "oidvector")
    build_target(conn, "t", f"""k {key} NOT NULL, s {scope} NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 key="k", scope="s")
    keys, scopes = (["1 2", "1 3", "2"], ["1", "2"]) if role == "key" else \
        (["1", "2", "3"], ["1 2", "3"])
    conn.execute(f"INSERT INTO t (k, s) SELECT k::{key}, s::{scope}"
                 " FROM unnest(%s::text[]) k, unnest(%s::text[]) s", (keys, scopes))
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('t', %s, %s::jsonb, '{}',
                                                       '{"page_size": 1}')""",
                    (scopes[0], json.dumps({"k": {"$gt": keys[0]}})))
    # What a plain DELETE of the same rows would keep (oidvector orders by
    # length first: '2' < '1 2').
    keep = set(conn.execute(f"""SELECT k::text, s::text FROM t
                                 WHERE NOT (s = %s::{scope} AND k > %s::{key})""",
                            (scopes[0], keys[0])).fetchall())
    assert len(keep) < len(keys) * len(scopes)
    assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (scopes[0],)) == \
        sum(1 for _, s in keep if s == scopes[0])
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert set(conn.execute("SELECT k::text, s::text FROM t").fetchall()) == keep
