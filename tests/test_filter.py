"""The filter language: the PL/pgSQL compiler against a Python reference,
malformed filters, hostile input, and target registration.

Scale the property test with PGJOBS_FUZZ_EXAMPLES (default 200).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

from tests.support import build_target, job, scalar
from tests.support.filter_reference import matches

FUZZ_EXAMPLES = int(os.environ.get("PGJOBS_FUZZ_EXAMPLES", "200"))

# --- fixture data -------------------------------------------------------------

# Hostile and tricky strings. No upper-case non-ASCII letters: $contains is
# case-insensitive and PostgreSQL's lower() of those depends on the locale.
STRINGS = [
    "", "a", "A", "abc", "ABC", "b", "hello world", "O'Brien", "'; DROP TABLE ftest; --",
    "$$", "$1$", "back\\slash", "100%", "under_score", 'quote"d', "é", "中文", "😀", "null",
    "NULL", "true", "5", "x'); drop table t; --", "%_\\", "zürich", "a_c", "a%c",
]
NUMBERS: list[Any] = [0, 1, -1, 2, 5, 10, 1.5, -0.5, 2.0, 100, 10**12]
SCALARS: list[Any] = STRINGS + NUMBERS + [True, False, None]
COMPOUNDS: list[Any] = [[], [1, 2], ["a"], {}, {"k": 1}, {"k": [1, {"z": None}]}]
DOC_KEYS = ["a", "b", "c", "we'; --"]
HOSTILE_FIELD = "x'); drop table ftest; --"
# Fields that exist in the data come up three times as often as missing ones.
DOC_FIELDS = ["a", "b", "c", "n", "n.a", "n.b", "we'; --"] * 3 + [
    "n.a.z", "zz", "k.l", "a.b", HOSTILE_FIELD, "d$"]
COLUMN_VALUES: dict[str, list[Any]] = {
    "id": list(range(0, 90, 7)),
    "table_id": [1, 2, 3, 4],
    "name": STRINGS,
    "score": [-1, 0, 1, 2, 5, 10, 100],
    "active": [True, False],
}
COLUMNS = {"id", "table_id", "name", "score", "active", "created_at", "data"}
ALPHABET = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Lu", "Lt"), exclude_characters="\x00"
) | st.sampled_from("ABCXYZ'\"\\%_$")


def _doc_value(rnd: random.Random) -> Any:
    return rnd.choice(COMPOUNDS) if rnd.random() < 0.1 else rnd.choice(SCALARS)


def make_rows(seed: int = 20240601, count: int = 120) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(count):
        doc: Any
        if rnd.random() < 0.08:
            doc = None
        else:
            doc = {k: _doc_value(rnd) for k in DOC_KEYS if rnd.random() < 0.6}
            r = rnd.random()
            if r < 0.5:
                doc["n"] = {k: _doc_value(rnd) for k in ("a", "b") if rnd.random() < 0.7}
            elif r < 0.65:
                doc["n"] = _doc_value(rnd)
        rows.append({
            "id": i,
            "table_id": rnd.choice([1, 2, 3]),
            "name": rnd.choice(STRINGS + [None]),
            "score": rnd.choice(COLUMN_VALUES["score"] + [None]),
            "active": rnd.choice([True, False, None]),
            "data": doc,
        })
    return rows


def create_fixture(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    build_target(conn, "ftest", """id bigint PRIMARY KEY, table_id integer NOT NULL, name text,
                 score integer, active boolean,
                 created_at timestamptz NOT NULL DEFAULT now(), data jsonb""",
                 scope="table_id", document="data", index_name="ftest_table_id_id_idx")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ftest (id, table_id, name, score, active, data)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
            [(r["id"], r["table_id"], r["name"], r["score"], r["active"],
              None if r["data"] is None else json.dumps(r["data"])) for r in rows],
        )


def compile_filter(conn: psycopg.Connection[Any], flt: Any, target: str = "ftest") -> str:
    row = conn.execute("SELECT pgjobs.compile_filter(%s::regclass, %s::jsonb)",
                       (target, json.dumps(flt))).fetchone()
    assert row is not None
    return str(row[0])


def collation_key(conn: psycopg.Connection[Any], strings: list[str]) -> dict[str, int]:
    """Rank of each string in the database's default collation."""
    ordered = conn.execute("SELECT s FROM unnest(%s::text[]) s GROUP BY s ORDER BY s",
                           (strings,)).fetchall()
    return {s: i for i, (s,) in enumerate(ordered)}


# --- filter strategies ------------------------------------------------------------

_pool = st.sampled_from(SCALARS)
json_scalar = st.one_of(_pool, _pool, _pool, st.text(ALPHABET, max_size=6), st.integers(-3, 12))
json_any = st.one_of(json_scalar, st.sampled_from(COMPOUNDS))
ordered_scalar = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS),
                           st.booleans())
# Lists and needles are never empty: an empty $nin or $contains (or a negated
# empty $in) is refused (tests/test_trust_empty_operands.py, which checks the
# empty operands still taken against the reference).
needle = st.one_of(st.sampled_from([s for s in STRINGS if s]),
                   st.text(ALPHABET, min_size=1, max_size=4))


def doc_ops() -> st.SearchStrategy[dict[str, Any]]:
    op = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), json_any),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered_scalar),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(json_any, min_size=1, max_size=4)),
        st.tuples(st.just("$contains"), needle),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    return st.lists(op, min_size=1, max_size=2).map(dict)


def doc_cond() -> st.SearchStrategy[Any]:
    ops = doc_ops()
    return st.one_of(json_any, ops, ops.map(lambda o: {"$not": o}),
                     json_scalar.map(lambda v: {"$not": v}))


def col_cond(column: str) -> st.SearchStrategy[Any]:
    values = st.sampled_from(COLUMN_VALUES[column])
    if column == "id":
        values = st.one_of(values, values.map(str))  # a numeric string casts fine
    nullable = st.one_of(values, st.none())
    op = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), nullable),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), values),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(nullable, min_size=1, max_size=4)),
        st.tuples(st.just("$contains"), needle),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    ops = st.lists(op, min_size=1, max_size=2).map(dict)
    return st.one_of(nullable, ops, ops.map(lambda o: {"$not": o}))


field_entry = st.one_of(
    st.sampled_from(DOC_FIELDS).flatmap(lambda f: doc_cond().map(lambda c: (f, c))),
    st.sampled_from(sorted(COLUMN_VALUES)).flatmap(lambda f: col_cond(f).map(lambda c: (f, c))),
)
leaf_node = st.lists(field_entry, max_size=2).map(dict)
# A node nested under $and / $or / $not always holds a condition: a branch {}
# makes its $or hold for every row, which is refused
# (tests/test_trust_empty_operands.py).
branch_leaf = st.lists(field_entry, min_size=1, max_size=2).map(dict)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.tuples(leaf_node, st.sampled_from(["$and", "$or"]),
                  st.lists(children, min_size=1, max_size=3)).map(lambda t: {**t[0], t[1]: t[2]}),
        st.tuples(leaf_node, children).map(lambda t: {**t[0], "$not": t[1]}),
    )


filters = st.recursive(branch_leaf, _extend, max_leaves=8)


def negated_empty_object(node: Any, negated: bool = False, field: str | None = None) -> bool:
    """Whether a filter holds a field's empty object where it takes every row
    not holding exactly {}: {} negated ({"$not": {"a": {}}}, {"a": {"$not":
    {}}}), {"$eq": {}} negated, {"$ne": {}} as written; two negations
    cancel. Refused (22023) by pgjobs._empty_operands; json_any generates {}
    (COMPOUNDS), so the property asserts the refusal for these and compares
    every other filter with the reference."""
    if field is None:
        if not isinstance(node, dict):
            return False
        for key, value in node.items():
            if key in ("$and", "$or") and isinstance(value, list):
                if any(negated_empty_object(x, negated) for x in value):
                    return True
            elif key == "$not":
                if negated_empty_object(value, not negated):
                    return True
            elif not key.startswith("$") and negated_empty_object(value, negated, key):
                return True
        return False
    if negated and node == {}:
        return True
    if isinstance(node, dict) and node and all(k.startswith("$") for k in node):
        for key, value in node.items():
            if key == "$not" and negated_empty_object(value, not negated, field):
                return True
            if value == {} and ((key == "$ne" and not negated) or (key == "$eq" and negated)):
                return True
    return False


# --- the property --------------------------------------------------------------


def test_compiled_filter_matches_reference(conn: psycopg.Connection[Any]) -> None:
    rows = make_rows()
    create_fixture(conn, rows)
    all_ids = [r["id"] for r in rows]
    ranks = collation_key(conn, STRINGS + [r["name"] for r in rows if r["name"] is not None])

    seen = {"compared": 0, "refused": 0}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(flt=filters)
    def check(flt: dict[str, Any]) -> None:
        if negated_empty_object(flt):
            with pytest.raises(errors.InvalidParameterValue,
                               match="holds for every row that does not hold exactly"):
                compile_filter(conn, flt)
            seen["refused"] += 1
            return
        seen["compared"] += 1
        expr = compile_filter(conn, flt)
        got = conn.execute(
            f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM ftest WHERE {expr}"
        ).fetchone()
        masked = conn.execute(
            "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM ftest"
            f" WHERE NOT coalesce(({expr}), false)"
        ).fetchone()
        assert got is not None and masked is not None
        want = [r["id"] for r in rows
                if matches(r, flt, COLUMNS, "data", str_key=ranks.__getitem__)]
        assert got[0] == want, expr
        assert sorted(got[0] + masked[0]) == all_ids

    check()
    assert conn.execute("SELECT count(*) FROM ftest").fetchone() == (len(rows),)
    # The refused forms are a small share: the property still compares most
    # filters with the reference.
    if FUZZ_EXAMPLES >= 50:
        assert seen["compared"] > 4 * seen["refused"], seen


# --- worked examples -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, "true"),
        ({"score": 5}, "(score OPERATOR(pg_catalog.=) '5'::integer)"),
        ({"score": None}, "(score IS NULL)"),
        ({"a.b": 1}, """(data OPERATOR(pg_catalog.@>) '{"a": {"b": 1}}'::pg_catalog.jsonb)"""),
        ({"a": {"$gt": 5}},
         "((data OPERATOR(pg_catalog.->) 'a'::pg_catalog.text) OPERATOR(pg_catalog.>) "
         "'5'::pg_catalog.jsonb AND pg_catalog.jsonb_typeof((data OPERATOR(pg_catalog.->) "
         "'a'::pg_catalog.text)) OPERATOR(pg_catalog.=) 'number'::pg_catalog.text)"),
        ({"$not": {"a": 1}},
         """(NOT coalesce(((data OPERATOR(pg_catalog.@>) '{"a": 1}'::pg_catalog.jsonb)), """
         """false))"""),
    ],
)
def test_compiled_text(conn: psycopg.Connection[Any], flt: dict[str, Any], expected: str) -> None:
    create_fixture(conn, [])
    assert compile_filter(conn, flt) == expected


def test_contains_escapes_wildcards(conn: psycopg.Connection[Any]) -> None:
    rows = [{"id": i, "table_id": 1, "name": s, "score": None, "active": None, "data": {"a": s}}
            for i, s in enumerate(["100%", "1000", "a_c", "abc", "x\\y", "xy", "QUOTE'S"])]
    create_fixture(conn, rows)
    for needle_text, want in [("0%", [0]), ("a_", [2]), ("\\", [4]), ("quote's", [6])]:
        for field in ("name", "a"):
            expr = compile_filter(conn, {field: {"$contains": needle_text}})
            got = conn.execute(f"SELECT array_agg(id ORDER BY id) FROM ftest WHERE {expr}")
            assert got.fetchone() == (want,), (field, needle_text)


def test_hostile_field_names_and_values_never_execute(conn: psycopg.Connection[Any]) -> None:
    create_fixture(conn, make_rows(count=10))
    hostile = [
        {"x'); drop table ftest; --": 1},
        {"a": "'); DROP TABLE ftest; --"},
        {"a": {"$contains": "%'; DROP TABLE ftest; --"}},
        {"name": "'; DROP TABLE ftest; --"},
        {"name": {"$in": ["$$; DROP TABLE ftest; $$", "\\'; DROP TABLE ftest; --"]}},
        {"a.b\"; DROP TABLE ftest; --": {"$exists": True}},
        {"id": {"$gt": "1); DROP TABLE ftest; --"}},
    ]
    for flt in hostile[:-1]:
        expr = compile_filter(conn, flt)
        conn.execute(f"SELECT count(*) FROM ftest WHERE {expr}")
    with pytest.raises(errors.InvalidParameterValue, match='"id"'):
        compile_filter(conn, hostile[-1])
    assert conn.execute("SELECT count(*) FROM ftest").fetchone() == (10,)


# --- malformed filters ------------------------------------------------------------

NESTED_NOT: dict[str, Any] = {"a": 1}
for _ in range(17):
    NESTED_NOT = {"$not": NESTED_NOT}


@pytest.mark.parametrize(
    ("flt", "needle_text"),
    [
        ([], "JSON object"),
        ("x", "JSON object"),
        (None, "JSON object"),
        ({"$regex": "x"}, '"$regex"'),
        ({"data.name": {"$regex": "x"}}, 'unknown operator "$regex" at "data.name"'),
        ({"a": {"$in": 5}}, '"$in" at "a"'),
        ({"a": {"$nin": {"x": 1}}}, '"$nin" at "a"'),
        ({"a": {"$gt": None}}, '"$gt" at "a"'),
        ({"a": {"$lte": [1]}}, '"$lte" at "a"'),
        ({"a": {"$contains": 5}}, '"$contains" at "a"'),
        ({"a": {"$exists": "yes"}}, '"$exists" at "a"'),
        ({"a": {"$gt": 1, "b": 2}}, '"a" mixes operators'),
        ({"$and": {"a": 1}}, '"$and"'),
        ({"$or": [1]}, '"$or"'),
        ({"$not": [{"a": 1}]}, '"$not"'),
        ({"": 1}, "empty key"),
        ({"a..b": 1}, '"a..b"'),
        ({"a.$b": 1}, '"$b" at "a.$b"'),
        ({"score": "abc"}, '"score"'),
        ({"score": {"$in": [1, "x"]}}, '"score"'),
        ({"score": [1]}, '"score"'),
        ({"active": {"$gt": 5}}, '"active"'),
        ({"id": {"$contains": []}}, '"$contains" at "id"'),
        (NESTED_NOT, "deeper than 16"),
        ({"$or": [{"a": i} for i in range(1001)]}, "1000 clauses"),
        ({"a": {"$in": list(range(10_001))}}, "10000"),
        ({"a": "x" * 70_000}, "too large"),
    ],
)
def test_malformed_filter_raises_22023(
    conn: psycopg.Connection[Any], flt: Any, needle_text: str
) -> None:
    create_fixture(conn, [])
    with pytest.raises(errors.InvalidParameterValue) as info:
        compile_filter(conn, flt)
    assert needle_text in str(info.value)
    assert info.value.diag.sqlstate == "22023"


def _nested_not(levels: int) -> dict[str, Any]:
    """A filter `levels` objects deep: {"$not": {"$not": ... {"score": 1}}}."""
    flt: dict[str, Any] = {"score": 1}
    for _ in range(levels - 1):
        flt = {"$not": flt}
    return flt


def _sized(octets: int) -> dict[str, Any]:
    """{"name": "xx..."} whose canonical jsonb text is exactly `octets` bytes."""
    return {"name": "x" * (octets - len(json.dumps({"name": ""})))}


# (at the limit, one past it, the refusal): each documented limit is inclusive.
LIMITS = {
    "depth 16": (_nested_not(16), _nested_not(17), "deeper than 16"),
    "1000 clauses": ({"$or": [{"score": i} for i in range(999)]},  # 999 + the $or
                     {"$or": [{"score": i} for i in range(1000)]}, "more than 1000 clauses"),
    "1000 fields": ({f"f{i}": i for i in range(1000)}, {f"f{i}": i for i in range(1001)},
                    "more than 1000 clauses"),
    "10000 values": ({"score": {"$in": list(range(10_000))}},
                     {"score": {"$in": list(range(10_001))}}, "the limit is 10000"),
    "10000 values in all": ({"score": {"$in": list(range(5_000))},
                             "id": {"$nin": list(range(-5_000, 0))}},
                            {"score": {"$in": list(range(5_000))},
                             "id": {"$nin": list(range(-5_001, 0))}}, "the limit is 10000"),
    "64 KiB": (_sized(65_536), _sized(65_537), "the limit is 65536"),
}


@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_limits_are_inclusive(conn: psycopg.Connection[Any], limit: str) -> None:
    """A filter exactly at a limit compiles and selects what the reference says;
    one step past it is refused with 22023 naming the limit."""
    at, past, refusal = LIMITS[limit]
    rows = make_rows(count=40)
    create_fixture(conn, rows)
    if limit == "64 KiB":
        assert scalar(conn, "SELECT octet_length(%s::jsonb::text)", (json.dumps(at),)) == 65_536
    expr = compile_filter(conn, at)
    got = [r[0] for r in conn.execute(f"SELECT id FROM ftest WHERE {expr} ORDER BY id")]
    ranks = collation_key(conn, STRINGS + [r["name"] for r in rows if r["name"] is not None])
    want = [r["id"] for r in rows if matches(r, at, COLUMNS, "data", str_key=ranks.__getitem__)]
    assert got == want
    with pytest.raises(errors.InvalidParameterValue, match=refusal) as info:
        compile_filter(conn, past)
    assert info.value.diag.sqlstate == "22023"


def test_unknown_field_without_document(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE plain (id bigint NOT NULL, scope int, created_at timestamptz)")
    conn.execute("CREATE INDEX ON plain (scope, id)")
    conn.execute("SELECT pgjobs.register_target('plain', 'id', 'scope', 'created_at')")
    assert compile_filter(conn, {"id": {"$gte": 3}}, "plain") == \
        "(id OPERATOR(pg_catalog.>=) '3'::bigint)"
    with pytest.raises(errors.InvalidParameterValue, match='unknown field "zz"'):
        compile_filter(conn, {"zz": 1}, "plain")


def test_unregistered_target(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE stray (id bigint)")
    with pytest.raises(errors.InvalidParameterValue, match="not registered") as info:
        compile_filter(conn, {}, "stray")
    assert "register_target" in (info.value.diag.message_hint or "")
    with pytest.raises(errors.UndefinedTable):
        compile_filter(conn, {}, "no_such_table")


# --- register_target ---------------------------------------------------------------

KEY_SAMPLES: dict[str, list[Any]] = {
    "bigint": [1, 2, 3, 10],
    "text": ["a", "b", "c", "z"],
    "uuid": sorted(uuid.UUID(int=i * 7919) for i in range(1, 5)),
}
SCOPE_SAMPLES: dict[str, list[Any]] = {"integer": [1, 2], "text": ["t1", "t2"]}


@pytest.mark.parametrize(
    ("key_type", "scope_type", "with_document"),
    [("bigint", "integer", True), ("text", "text", False), ("uuid", "integer", False),
     ("uuid", "text", True), ("bigint", "text", False), ("text", "integer", True)],
)
def test_register_target_types(
    conn: psycopg.Connection[Any], key_type: str, scope_type: str, with_document: bool
) -> None:
    doc_col = ", doc jsonb" if with_document else ""
    conn.execute(f"CREATE TABLE t (k {key_type} NOT NULL, s {scope_type} NOT NULL,"
                 f" created timestamptz NOT NULL DEFAULT now(), v text{doc_col})")
    register = ("SELECT pgjobs.register_target('t', 'k', 's', 'created', %s)")
    document = "doc" if with_document else None
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as info:
        conn.execute(register, (document,))
    hint = info.value.diag.message_hint or ""
    assert hint == "CREATE INDEX CONCURRENTLY t_s_k_idx ON public.t USING btree (s, k);"
    conn.execute(hint.encode())  # autocommit: CONCURRENTLY is allowed
    conn.execute(register, (document,))
    row = conn.execute("SELECT key, scope, created_at, document, key_type::text,"
                       " scope_type::text, options FROM pgjobs.targets").fetchone()
    assert row == ("k", "s", "created", document, key_type, scope_type,
                   {"tune_autovacuum": True, "created_at_time_zone": "UTC"})

    keys, scopes = KEY_SAMPLES[key_type], SCOPE_SAMPLES[scope_type]
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO t (k, s, v{', doc' if with_document else ''})"
            f" VALUES (%s, %s, %s{', %s::jsonb' if with_document else ''})",
            [(k, s, f"v{i}", *([json.dumps({"i": i})] if with_document else []))
             for s in scopes for i, k in enumerate(keys)],
        )
    flt = {"k": {"$gt": str(keys[1])}, "s": str(scopes[0])}
    expr = compile_filter(conn, flt, "t")
    got = conn.execute(f"SELECT k FROM t WHERE {expr} ORDER BY k").fetchall()
    assert [r[0] for r in got] == keys[2:]
    if with_document:
        expr = compile_filter(conn, {"i": {"$in": [0, 3]}, "s": str(scopes[1])}, "t")
        got = conn.execute(f"SELECT k FROM t WHERE {expr} ORDER BY k").fetchall()
        assert [r[0] for r in got] == [keys[0], keys[3]]
    else:
        with pytest.raises(errors.InvalidParameterValue, match='"i"'):
            compile_filter(conn, {"i": 1}, "t")


def _make_plain(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE t (id bigint NOT NULL, tenant int NOT NULL, created timestamptz,"
                 " label text, doc jsonb, info json)")
    conn.execute("CREATE INDEX t_tenant_id_idx ON t (tenant, id)")


@pytest.mark.parametrize(
    ("args", "needle_text"),
    [
        (("nope", "tenant", "created", None), '"nope"'),
        (("id", "nope", "created", None), '"nope"'),
        (("id", "tenant", "nope", None), '"nope"'),
        (("id", "tenant", "created", "nope"), '"nope"'),
        (("doc", "tenant", "created", None), "cannot be the key"),
        (("info", "tenant", "created", None), "cannot be the key"),
        (("id", "tenant", "label", None), "cannot be the created_at"),
        (("id", "tenant", "created", "info"), "cannot be the document"),
        (("id", "tenant", "created", "label"), "cannot be the document"),
        (("id", "id", "created", None), "must differ"),
    ],
)
def test_register_target_bad_columns(
    conn: psycopg.Connection[Any], args: tuple[str, ...], needle_text: str
) -> None:
    _make_plain(conn)
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.register_target('t', %s, %s, %s, %s)", args)
    assert needle_text in str(info.value)
    if "does not exist" in str(info.value):
        assert "id, tenant, created, label, doc, info" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(
    "options", [{"bogus": 1}, {"tune_autovacuum": "yes"}, {"tune_autovacuum": None}, [], 1]
)
def test_register_target_bad_options(conn: psycopg.Connection[Any], options: Any) -> None:
    _make_plain(conn)
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created',"
                     " p_options => %s::jsonb)", (json.dumps(options),))
    assert "tune_autovacuum" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(
    "index",
    [
        "CREATE INDEX ON t (id, tenant)",                    # wrong order
        "CREATE INDEX ON t (tenant)",                        # key missing
        "CREATE INDEX ON t (tenant, id) WHERE id > 0",       # partial
        "CREATE INDEX ON t USING hash (tenant)",             # not btree
        "CREATE INDEX ON t (tenant, (id + 1))",              # expression
    ],
)
def test_register_target_rejects_unfit_index(conn: psycopg.Connection[Any], index: str) -> None:
    conn.execute("CREATE TABLE t (id bigint NOT NULL, tenant int NOT NULL, created timestamptz)")
    conn.execute(index)
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as info:
        conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created')")
    assert "USING btree (tenant, id)" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(
    "index",
    [
        "CREATE UNIQUE INDEX ON t (tenant, id, created)",   # a longer unique index
        "CREATE INDEX ON t (tenant, id) INCLUDE (created)",  # covering columns
        "CREATE INDEX ON t (tenant, id DESC, created)",      # another order, more columns
    ],
)
def test_register_target_accepts_longer_index(conn: psycopg.Connection[Any], index: str) -> None:
    """An index leading with (scope, key) and more after it is enough: the target
    registers and a job's page walk runs on it (to success, done counted)."""
    conn.execute("CREATE TABLE t (id bigint NOT NULL, tenant int NOT NULL, created timestamptz)")
    conn.execute(index)
    conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created')")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.targets WHERE target = 't'::regclass") == 1
    conn.execute("INSERT INTO t SELECT g, g % 2, now() - interval '1 day'"
                 " FROM generate_series(1, 50) g")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', '{}', '{}', '{}')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert (job(conn, job_id)["status"], job(conn, job_id)["done"]) == ("succeeded", 25)
    assert scalar(conn, "SELECT count(*) FROM t WHERE tenant = 1") == 0
    assert scalar(conn, "SELECT count(*) FROM t WHERE tenant = 0") == 25


def test_reregister_updates_and_tunes_autovacuum(conn: psycopg.Connection[Any]) -> None:
    _make_plain(conn)
    conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created', 'doc',"
                 " '{\"tune_autovacuum\": false}')")
    reloptions = "SELECT reloptions FROM pg_class WHERE oid = 't'::regclass"
    assert conn.execute(reloptions).fetchone() == (None,)
    before = conn.execute("SELECT registered_at, updated_at FROM pgjobs.targets").fetchone()

    conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created')")
    assert conn.execute(reloptions).fetchone() == (
        ["autovacuum_vacuum_scale_factor=0.02", "autovacuum_analyze_scale_factor=0.02"],
    )
    row = conn.execute("SELECT document, options, registered_at, updated_at, "
                       " (SELECT count(*) FROM pgjobs.target_registry) FROM pgjobs.targets"
                       ).fetchone()
    assert before is not None and row is not None
    assert row[0] is None and row[1] == {"tune_autovacuum": True, "created_at_time_zone": "UTC"}
    assert row[2] == before[0] and row[3] >= before[1] and row[4] == 1


def test_register_partitioned_target(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE p (id bigint NOT NULL, tenant int NOT NULL, created timestamptz)"
                 " PARTITION BY LIST (tenant)")
    conn.execute("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)")
    with pytest.raises(errors.ObjectNotInPrerequisiteState) as info:
        conn.execute("SELECT pgjobs.register_target('p', 'id', 'tenant', 'created')")
    hint = info.value.diag.message_hint or ""
    assert hint.startswith("CREATE INDEX p_tenant_id_idx ON public.p")  # no CONCURRENTLY
    conn.execute(hint.encode())
    conn.execute("SELECT pgjobs.register_target('p', 'id', 'tenant', 'created')")
    assert conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'p1'").fetchone() == (
        ["autovacuum_vacuum_scale_factor=0.02", "autovacuum_analyze_scale_factor=0.02"],
    )


def test_register_rejects_non_tables(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE VIEW v AS SELECT 1 AS id, 1 AS tenant, now() AS created")
    with pytest.raises(errors.InvalidParameterValue, match="not a table"):
        conn.execute("SELECT pgjobs.register_target('v', 'id', 'tenant', 'created')")
    with pytest.raises(errors.UndefinedTable):
        conn.execute("SELECT pgjobs.register_target('nope', 'id', 'tenant', 'created')")


def test_unregister_target(conn: psycopg.Connection[Any]) -> None:
    _make_plain(conn)
    with pytest.raises(errors.NoDataFound):
        conn.execute("SELECT pgjobs.unregister_target('t')")
    conn.execute("SELECT pgjobs.register_target('t', 'id', 'tenant', 'created', 'doc')")
    row = conn.execute("INSERT INTO pgjobs.jobs (kind, target, scope) VALUES"
                       " ('delete', 't', '1') RETURNING id").fetchone()
    assert row is not None
    with pytest.raises(errors.ObjectInUse) as info:
        conn.execute("SELECT pgjobs.unregister_target('t')")
    assert "cancel" in (info.value.diag.message_hint or "").lower()
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now()"
                 " WHERE id = %s", row)
    conn.execute("SELECT pgjobs.unregister_target('t')")
    assert conn.execute("SELECT count(*) FROM pgjobs.targets").fetchone() == (0,)
    with pytest.raises(errors.InvalidParameterValue, match="not registered"):
        conn.execute("SELECT pgjobs._target('t')")
