"""Backfill jobs against real PostgreSQL: the exact row set and the exact new
values against a Python reference, casts to column types, document merges
(nested paths, nulls), bad values, forbidden columns, and the admin-only
handler run once per page."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import errors

from tests.support import (
    Conn,
    Row,
    Target,
    cutoff_of,
    insert_row,
    job,
    job_rows,
    make_rows_target,
    run_job,
    run_pages,
    scalar,
    seed,
    snapshot,
    submit_backfill,
)

HOSTILE = "'); DROP TABLE user_table_rows; --"


def merge(base: Any, patch: Any) -> Any:
    """Reference of the document merge: objects merge, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        out[key] = merge(base.get(key), value)
    return out


def nest(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out  # type: ignore[no-any-return]


CASES = [
    ("bigint", "int", True, {"k": 3}, lambda r: r["data"]["k"] == 3),
    ("text", "text", True, {"n": {"$gt": 2}, "nest.a": {"$ne": 0}},
     lambda r: r["n"] > 2 and r["data"]["nest"]["a"] != 0),
    ("uuid", "int", False, {"n": {"$in": [1, 2]}}, lambda r: r["n"] in (1, 2)),
    ("bigint", "text", False, {}, lambda r: True),
]


@pytest.mark.parametrize(("key_type", "scope_type", "document", "filter_", "match"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'doc' if c[2] else 'nodoc'}" for c in CASES])
def test_backfill_changes_exactly_the_reference_rows(
        conn: Conn, key_type: str, scope_type: str, document: bool, filter_: dict[str, Any],
        match: Callable[[Row], bool]) -> None:
    t = make_rows_target(conn, key_type=key_type, scope_type=scope_type, document=document)
    seed(conn, t)
    scope = t.scope(1)
    set_: dict[str, Any] = {"n": 99, "label": HOSTILE}
    doc_fields: dict[str, Any] = {"status": "done", "nest.b": 5, "deep.x.y": True,
                                  "k": None, "we'; --": [1, {"a": None}]}
    if document:
        set_.update(doc_fields)
    before = snapshot(conn, t)
    job_id = submit_backfill(conn, t, scope, filter_, set_, {"page_size": 41})
    cutoff = cutoff_of(conn, job_id)
    late = insert_row(conn, t, scope, n=2, data={"k": 3, "nest": {"a": 1}}, key="late")

    run_job(conn, job_id)

    changed = job_rows(before, scope, cutoff, match)
    assert changed
    after = snapshot(conn, t)
    assert set(after) == set(before) | {late}
    assert after[late]["n"] == 2 and after[late]["label"] == "inserted"
    patch: dict[str, Any] = {}
    for path, value in doc_fields.items():
        patch = merge(patch, nest(path, value))
    for key, row in before.items():
        expected = dict(row)
        if key in changed:
            expected.update(n=99, label=HOSTILE)
            if document:
                expected["data"] = merge(row["data"], patch)
        assert after[key] == expected, key
    if document:
        sample = after[next(iter(changed))]["data"]
        assert sample["nest"]["a"] in (0, 1, 2) and sample["nest"]["b"] == 5  # merged, kept
        assert sample["k"] is None and "k" in sample  # JSON null, not removed
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["done"] == done["total"] == done["result"]["updated"] == len(changed)


@pytest.fixture
def typed(conn: Conn) -> Target:
    conn.execute("""
        CREATE DOMAIN small_positive AS integer CHECK (VALUE BETWEEN 1 AND 10);
        CREATE TABLE typed (
            id bigint GENERATED ALWAYS AS IDENTITY, table_id integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now() - interval '1 minute',
            i integer, num numeric(6, 2), flag boolean, d date, ts timestamptz,
            tags text[], nums integer[], meta jsonb, note text, sp small_positive,
            twice integer GENERATED ALWAYS AS (i * 2) STORED, data jsonb);
        CREATE INDEX ON typed (table_id, id);
        SELECT pgjobs.register_target('typed', 'id', 'table_id', 'created_at', 'data');
        INSERT INTO typed (table_id, i, data)
        SELECT 1 + g % 2, g, CASE WHEN g % 3 = 0 THEN NULL
                                  WHEN g % 3 = 1 THEN '{"a": 1, "nest": 7}'
                                  ELSE '{"nest": {"keep": true}}' END::jsonb
          FROM generate_series(1, 30) g;""")
    return Target("typed", "bigint", "int", True)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_column_typed_as_a_domain_is_set_as_its_base_type(conn: Conn, depth: int) -> None:
    """A json, jsonb or array column behind a domain (over a domain ...) takes the
    JSON value as its base type does: a string stays a JSON string, an array fills
    the array, at every depth of domains."""
    conn.execute("CREATE DOMAIN doc_0 AS jsonb; CREATE DOMAIN js_0 AS json;"
                 " CREATE DOMAIN tags_0 AS text[]")
    for level in range(1, depth):
        conn.execute(f"CREATE DOMAIN doc_{level} AS doc_{level - 1};"
                     f" CREATE DOMAIN js_{level} AS js_{level - 1};"
                     f" CREATE DOMAIN tags_{level} AS tags_{level - 1}")
    top = depth - 1
    conn.execute(f"""
        CREATE TABLE dom (id bigint GENERATED ALWAYS AS IDENTITY, table_id integer NOT NULL,
                          created_at timestamptz NOT NULL DEFAULT now() - interval '1 minute',
                          meta doc_{top}, raw js_{top}, tags tags_{top});
        CREATE INDEX ON dom (table_id, id);
        SELECT pgjobs.register_target('dom', 'id', 'table_id', 'created_at');
        INSERT INTO dom (table_id) SELECT 1 + g % 2 FROM generate_series(1, 10) g;""")
    target = Target("dom", "bigint", "int", False)
    job_id = submit_backfill(conn, target, "1", {},
                             {"meta": "just a string", "raw": "also", "tags": ["a", "b,c"]})
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded", job(conn, job_id)["error"]
    rows = conn.execute("SELECT DISTINCT meta::jsonb, raw::text, tags::text[] FROM dom"
                        " WHERE table_id = 1").fetchall()
    assert rows == [("just a string", '"also"', ["a", "b,c"])]
    assert scalar(conn, "SELECT count(*) FROM dom WHERE table_id = 2 AND meta IS NOT NULL") == 0


def test_values_are_cast_to_column_types(conn: Conn, typed: Target) -> None:
    set_ = {"i": "42", "num": 12.5, "flag": True, "d": "2024-02-29",
            "ts": "2024-01-01T12:00:00+02:00", "tags": ["a", "b,c", None], "nums": [3, 1],
            "meta": "just a string", "note": 7, "sp": 3}
    job_id = submit_backfill(conn, typed, "1", {}, set_)
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    rows = conn.execute("""
        SELECT DISTINCT i, num::text, flag, d::text, ts = '2024-01-01 10:00:00+00', tags, nums,
               meta, note, sp, twice
          FROM typed WHERE table_id = 1""").fetchall()
    assert rows == [(42, "12.50", True, "2024-02-29", True, ["a", "b,c", None], [3, 1],
                     "just a string", "7", 3, 84)]
    # Scope 2 untouched.
    assert scalar(conn, "SELECT count(*) FROM typed WHERE table_id = 2 AND i = 42") == 0


def test_null_values(conn: Conn, typed: Target) -> None:
    conn.execute("UPDATE typed SET note = 'x', meta = '{}'")
    job_id = submit_backfill(conn, typed, "1", {}, {"note": None, "meta": None, "a": None})
    run_job(conn, job_id)
    rows = conn.execute("SELECT note, meta, data FROM typed WHERE table_id = 1").fetchall()
    assert all(note is None and meta is None for note, meta, _ in rows)
    assert all(data["a"] is None and "a" in data for _, _, data in rows)


def test_nested_fields_merge_into_documents_of_any_shape(conn: Conn, typed: Target) -> None:
    """With replace_non_objects, as before that option: a parent holding a
    scalar becomes an object. Without it the submit refuses those rows
    (tests/test_trust_documents.py has the classes)."""
    before = {r[0]: r[1] for r in conn.execute("SELECT id, data FROM typed WHERE table_id = 1")}
    set_ = {"nest.deep.x": 1, "nest.y": "s", "top": 0}
    with pytest.raises(errors.InvalidParameterValue, match='fields into "nest".*a number'):
        submit_backfill(conn, typed, "1", {}, set_)
    job_id = submit_backfill(conn, typed, "1", {}, set_, {"replace_non_objects": True})
    run_job(conn, job_id)
    patch = {"nest": {"deep": {"x": 1}, "y": "s"}, "top": 0}
    for key, data in conn.execute("SELECT id, data FROM typed WHERE table_id = 1"):
        assert data == merge(before[key] or {}, patch), key
    # {"nest": 7} (a number) became an object; {"nest": {"keep": true}} kept "keep".
    shapes = {json.dumps(d["nest"], sort_keys=True) for (d,) in conn.execute(
        "SELECT data FROM typed WHERE table_id = 1")}
    assert shapes == {'{"deep": {"x": 1}, "y": "s"}', '{"deep": {"x": 1}, "keep": true, "y": "s"}'}


BAD_SETS: list[Any] = [
    {"i": "abc"}, {"i": 1.5}, {"i": 1e20}, {"flag": "maybe"}, {"d": "not a date"},
    {"nums": ["x"]}, {"nums": [[1]]}, {"sp": 11}, {"num": 123456789},
    {"id": 1}, {"table_id": 2}, {"created_at": "2020-01-01T00:00:00Z"}, {"twice": 4},
    {"data": {}}, {"a..b": 1}, {".a": 1}, {"": 1}, {}, [], "x", None,
]


@pytest.mark.parametrize("set_", BAD_SETS, ids=[json.dumps(s) for s in BAD_SETS])
def test_bad_set_raises_22023_and_writes_nothing(conn: Conn, typed: Target, set_: Any) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_backfill('typed', '1', '{}', %s::jsonb)",
                      (None if set_ is None else json.dumps(set_),))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize(("filter_", "options", "scope"), [
    (None, {}, "1"),
    ({"$nope": 1}, {}, "1"),
    ({}, {"bogus": True}, "1"),
    ({}, {"page_size": -1}, "1"),
    ({}, {"handler": 42}, "1"),
    ({}, {}, "one"),
])
def test_bad_backfill_arguments_write_nothing(conn: Conn, typed: Target, filter_: Any,
                                              options: dict[str, Any], scope: str) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_backfill('typed', %s, %s::jsonb, '{\"i\": 1}', "
                     "%s::jsonb)", (scope, None if filter_ is None else json.dumps(filter_),
                                    json.dumps(options)))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_set_on_a_target_without_document_names_columns_only(conn: Conn) -> None:
    t = make_rows_target(conn, document=False)
    with pytest.raises(errors.InvalidParameterValue) as info:
        submit_backfill(conn, t, "1", {}, {"status": "x"})
    assert "status" in str(info.value)


# --- the handler ------------------------------------------------------------


HANDLER = """
CREATE TABLE public.handler_calls (call serial, keys bigint[]);
CREATE FUNCTION public.fill_labels(p_target regclass, p_keys text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_rows bigint;
BEGIN
    -- The engine runs it with search_path = pg_catalog, pg_temp: qualify names.
    INSERT INTO public.handler_calls (keys) VALUES (p_keys::bigint[]);
    EXECUTE format('UPDATE %s SET label = ''handled:'' || id WHERE id = ANY ($1::bigint[])',
                   p_target) USING p_keys;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END $$;
"""


def test_handler_runs_once_per_page_with_the_page_keys(conn: Conn) -> None:
    t = make_rows_target(conn)
    seed(conn, t)
    conn.execute(HANDLER)
    before = snapshot(conn, t)
    job_id = submit_backfill(conn, t, "2", {"k": {"$in": [1, 2]}}, {},
                             {"handler": "public.fill_labels", "page_size": 25})
    assert "fill_labels(regclass,text[])" in job(conn, job_id)["payload"]["handler"]
    states = run_pages(conn, job_id)
    assert states[-1] == "done"
    expected = job_rows(before, "2", cutoff_of(conn, job_id),
                        lambda r: r["data"]["k"] in (1, 2))
    calls = [keys for (keys,) in conn.execute("SELECT keys FROM handler_calls ORDER BY call")]
    pages = job(conn, job_id)["result"]["pages"]
    assert len(calls) == pages  # one call per page (the last may be empty)
    assert all(len(keys) <= 25 and keys == sorted(keys) for keys in calls)
    flat = [k for keys in calls for k in keys]
    assert flat == sorted(flat) and {str(k) for k in flat} == expected
    after = snapshot(conn, t)
    assert {k for k, r in after.items() if r["label"].startswith("handled:")} == expected
    assert job(conn, job_id)["done"] == len(expected)


def test_handler_must_exist_with_the_right_signature(conn: Conn) -> None:
    t = make_rows_target(conn)
    conn.execute("CREATE FUNCTION wrong(regclass, text[]) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    for name in ("no_such_function", "public.wrong", "fill_labels", "public.wrong(int)", HOSTILE,
                 "a.b.c.d", ""):
        with pytest.raises(errors.InvalidParameterValue):
            submit_backfill(conn, t, "1", {}, {}, {"handler": name})
    conn.execute(HANDLER)
    with pytest.raises(errors.InvalidParameterValue):  # handler and set together
        submit_backfill(conn, t, "1", {}, {"n": 1}, {"handler": "public.fill_labels"})
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.fixture
def role(conn: Conn) -> Iterator[Callable[[str], str]]:
    """Factory: a NOLOGIN role that is a member of the given pgjobs role only."""
    made: list[str] = []

    def make(member_of: str) -> str:
        name = f"pgjobs_t_{member_of.removeprefix('pgjobs_')}_{os.getpid()}_{len(made)}"
        conn.execute(f"DROP ROLE IF EXISTS {name}")
        conn.execute(f"CREATE ROLE {name} NOLOGIN IN ROLE {member_of}")
        conn.execute(f"GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
        made.append(name)
        return name

    yield make
    conn.execute("RESET ROLE")
    for name in made:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


def test_handler_is_admin_only(conn: Conn, role: Callable[[str], str]) -> None:
    t = make_rows_target(conn)
    conn.execute(HANDLER)
    client = role("pgjobs_client")
    admin = role("pgjobs_admin")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):  # 42501
        submit_backfill(conn, t, "1", {}, {}, {"handler": "public.fill_labels"})
    conn.execute(f"SET ROLE {admin}")
    job_id = submit_backfill(conn, t, "1", {}, {}, {"handler": "public.fill_labels"})
    conn.execute("RESET ROLE")
    assert job(conn, job_id)["submitted_by"] == admin
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1
