"""Where the written-out merges (pgjobs._import_merge_sql, pgjobs._jsonb_merge_sql)
could part from the functions they replaced, held to them.

* Which place a rejected record names. pgjobs._import_doc_merge merges a
  record's keys in the order jsonb keeps them (shorter first, then byte by
  byte) and raises at the first place the row holds a value the record would
  replace; the expression merged the parents of a level in the text's order
  ("aa" before "b", "p100" before "p99", "abc" before "é"), so a record whose
  row holds such values at two places was rejected naming the other one.
* Statement size. Each parent's text holds its place's path about ten times,
  written out from the document down: fields nested under long names made a
  statement of hundreds of megabytes from a header of a few (20 fields 16
  levels deep under 8,000-character names: 180 MB, 16 s to write), where the
  record's own document writes each name once; a backfill's 32 kB set under
  long keys compiled to 3.9 MB, stored with the job and parsed by each page.
  Past about 1 MB the merge is the function's call, as before.
* Keys that need quoting, JSONL values of every shape, a document column of
  a domain type in a partitioned target with triggers that change the
  document: end to end, each row as the function says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    build_target,
    claim_import,
    make_people,
    run_pages,
    scalar,
    submit_import,
)
from tests.support import job as job_of
from tests.test_import import do_import
from tests.test_import_merge_native import compare
from tests.test_set_native_merge import merged, native

Conn = psycopg.Connection[Any]


def _failure(conn: Conn, function: str, base: Any, record: Any) -> str:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err, conn.transaction():
        conn.execute(f"SELECT pgjobs.{function}(%s::jsonb, %s::jsonb)",
                     (json.dumps(base), json.dumps(record)))
    return str(err.value.diag.message_primary)


@pytest.mark.parametrize("first, second", [
    ("b", "aa"),        # shorter first, where the text's order puts "aa" first
    ("p99", "p100"),
    ("é", "abc"),       # two bytes before three
    ("ab", "é"),        # same length: byte by byte
    ("Z", "a"),
    ("x y", "it's"),
])
def test_a_record_rejected_at_two_places_names_the_first_the_function_meets(
        conn: Conn, first: str, second: str) -> None:
    base = {first: 1, second: "s", "keep": {"k": 0}}
    record = {first: {"x": 1}, second: {"y": 2}, "keep": {"z": 3}}
    paths = [f"{second}.y", f"{first}.x", "keep.z"]
    assert f'at "{first}"' in _failure(conn, "_import_doc_merge", base, record)
    compare(conn, base, record, paths, True)
    # A level down, and past 50 parents (jsonb_build_object's calls).
    compare(conn, {"top": base}, {"top": record}, [f"top.{p}" for p in paths], True)
    many = {f"w{i}": {"v": i} for i in range(60)}
    compare(conn, {**base, **{k: {} for k in many}}, {**record, **many},
            paths + [f"{k}.v" for k in many], True)


def test_an_import_rejected_at_two_places_names_the_same_one(conn: Conn, dsn: str,
                                                             tmp_path: Path) -> None:
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    conn.execute("""INSERT INTO people (id, tenant, name, data)
                    VALUES (1, 1, 'p', '{"b": 1, "aa": "s"}')""")
    want = _failure(conn, "_import_doc_merge", {"b": 1, "aa": "s"},
                    {"b": {"x": "1"}, "aa": {"y": "2"}})
    job = do_import(conn, dsn, src, "two.csv", b"id,aa.y,b.x\n1,2,1\n",
                    options={"on_duplicate": "update"})
    assert job["status"] == "failed"
    assert want in job["error"] and 'at "b"' in want, job["error"]


QUOTED = ["it's", 'a"b', "back\\slash", "{br}", "a,b", "NULL", " ", "ké✓", "E'x", "a b"]


@pytest.mark.parametrize("refuse", [True, False], ids=["refuse", "replace_non_objects"])
def test_keys_that_need_quoting_merge_as_the_function_does(conn: Conn, refuse: bool) -> None:
    paths = [f"{q}.{QUOTED[(i + 1) % len(QUOTED)]}" for i, q in enumerate(QUOTED)]
    paths += [f"{QUOTED[0]}.in {q}" for q in QUOTED[1:4]]
    record: dict[str, Any] = {}
    for n, path in enumerate(paths):
        node = record
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = [n, None, {"$o": n}][n % 3]  # a JSONL value's key may start with $
    for base in ({q: {"keep": q} for q in QUOTED},
                 {q: ({"keep": 1} if n % 2 else n) for n, q in enumerate(QUOTED)},
                 {QUOTED[0]: {QUOTED[1]: "s"}}, None, {}):
        compare(conn, base, record, paths, refuse)


def test_fields_under_long_names_merge_by_the_call(conn: Conn) -> None:
    """The statement stays of the header's order of size, and merges as the
    function does."""
    deep = [".".join(chr(97 + j) * 4000 + str(i) for j in range(16)) for i in range(4)]
    shared = [f"{'K' * 10_000}.p{i}.v" for i in range(100)]
    for paths in (deep, shared):
        expr = scalar(conn, "SELECT pgjobs._import_merge_sql('b', 'r', %s::text[], true)",
                      (paths,))
        assert len(expr) < 1_048_576, len(expr)
    record = {"K" * 10_000: {f"p{i}": {"v": i} for i in range(100)}}
    compare(conn, {"K" * 10_000: {"p1": {"w": 0}, "p2": 5}}, record, shared, True)
    compare(conn, {"K" * 10_000: {"p1": {"w": 0}}}, record, shared, False)


def test_hundreds_of_parents_under_short_names_are_still_written_out(conn: Conn) -> None:
    paths = [f"address.p{i}.v" for i in range(500)]
    expr = scalar(conn, "SELECT pgjobs._import_merge_sql('b', 'r', %s::text[], true)", (paths,))
    assert expr.startswith("CASE") and len(expr) < 1_048_576
    record = {"address": {f"p{i}": {"v": i} for i in range(500)}}
    compare(conn, {"address": {f"p{i}": {"w": i} for i in range(0, 500, 3)}}, record, paths,
            True)


def test_a_set_under_long_keys_is_merged_by_the_call(conn: Conn) -> None:
    patch: dict[str, Any] = {f"c{i}": {"v": i} for i in range(54)}
    for level in range(8):
        patch = {chr(97 + level) * 3900: patch}
    assert len(json.dumps(patch)) < 65_536
    assert native(conn, {}, patch) is None  # declined: the caller calls the function
    # A value 16 levels down is written once per level: bounded all the same.
    deep: dict[str, Any] = {"big": "x" * 60_000}
    for level in range(15):
        deep = {chr(97 + level): deep}
    expr = scalar(conn, "SELECT pgjobs._jsonb_merge_sql('d', %s::jsonb)", (json.dumps(deep),))
    assert expr is None or len(expr) <= 1_048_576
    base = {"a": {"b": {"keep": 1}}}
    assert native(conn, base, deep) in (None, merged(base, deep))


def test_a_backfill_under_long_keys_sets_what_the_function_does(conn: Conn) -> None:
    build_target(conn, "lk", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 data jsonb""", scope="table_id", document="data")
    long_key = "k" * 3900
    patch: dict[str, Any] = {f"c{i}": {"v": i} for i in range(54)}
    for level in range(8):
        patch = {f"{level}{long_key}": patch}
    documents = [{}, {f"0{long_key}": {"keep": 1}}, {"other": 1}, None]
    for key, document in enumerate(documents, 1):
        conn.execute("INSERT INTO lk (id, table_id, data) VALUES (%s, 1, %s::jsonb)",
                     (key, None if document is None else json.dumps(document)))
    compiled = scalar(conn, "SELECT pgjobs._compile_set(r, %s::jsonb) FROM "
                      "pgjobs.target_registry r WHERE r.target = 'lk'::regclass",
                      (json.dumps(patch),))
    assert "_jsonb_merge(" in compiled and len(compiled) < 100_000
    job_id = int(scalar(conn, "SELECT pgjobs.submit_backfill('lk', '1', '{}'::jsonb, %s::jsonb)",
                        (json.dumps(patch),)))
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    got = dict(conn.execute("SELECT id, data FROM lk").fetchall())
    assert got == {k: merged(d, patch) for k, d in enumerate(documents, 1)}


@pytest.mark.parametrize("replace", [False, True], ids=["refuse", "replace_non_objects"])
def test_a_domain_document_of_a_partitioned_target_with_triggers(
        conn: Conn, dsn: str, tmp_path: Path, replace: bool) -> None:
    """JSONL keys that need quoting, values that are objects, arrays and null
    at several levels, a BEFORE INSERT trigger that changes the record's
    document (EXCLUDED is what it made: an object added makes that level the
    call's) and a BEFORE UPDATE one, a domain's CHECK: each row as the
    function says, each refused record rejected with the function's reason."""
    conn.execute("""
        CREATE DOMAIN doc_t AS jsonb CHECK (VALUE IS NULL OR NOT VALUE ? 'forbidden');
        CREATE TABLE pdocs (id bigint NOT NULL, tenant integer NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now(), data doc_t)
            PARTITION BY HASH (tenant);
        CREATE TABLE pdocs_0 PARTITION OF pdocs FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE pdocs_1 PARTITION OF pdocs FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        CREATE UNIQUE INDEX ON pdocs (tenant, id);
        CREATE FUNCTION stamp(p_id bigint, p_doc jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
            AS $$ SELECT CASE WHEN jsonb_typeof(p_doc) <> 'object' THEN p_doc
                              WHEN p_id % 2 = 0 THEN p_doc || '{"ins": {"t": 1}}'
                              ELSE p_doc || '{"ins": "s"}' END $$;
        CREATE FUNCTION on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.data := public.stamp(NEW.id, NEW.data); RETURN NEW; END $$;
        CREATE FUNCTION on_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.data := NEW.data::jsonb || '{"upd": 1}'::jsonb; RETURN NEW; END $$;
        CREATE TRIGGER ins BEFORE INSERT ON pdocs FOR EACH ROW EXECUTE FUNCTION on_insert();
        CREATE TRIGGER upd BEFORE UPDATE ON pdocs FOR EACH ROW EXECUTE FUNCTION on_update();
        SELECT pgjobs.register_target('pdocs', 'id', 'tenant', 'created_at', 'data');
        ALTER TABLE pdocs DISABLE TRIGGER ins;
        ALTER TABLE pdocs DISABLE TRIGGER upd""")
    documents: list[Any] = [
        {"it's": {"k": 1}, 'a"b': {"c,d": {"k": 2}}, "ins": {"old": 1}},
        {"it's": "keep me", 'a"b': {"c,d": [1]}},
        {'a"b': {"c,d": None}, "ké✓": 5},
        {"it's": {"x": {"y": 1}}, "{br}": {}},
        None,
        {"forbidden_not": 1},
        [1, 2],
        {"ins": 7},
    ]
    for key, document in enumerate(documents, 1):
        conn.execute("INSERT INTO pdocs (id, tenant, data) VALUES (%s, 1, %s::jsonb)",
                     (key, None if document is None else json.dumps(document)))
    conn.execute("ALTER TABLE pdocs ENABLE TRIGGER ins; ALTER TABLE pdocs ENABLE TRIGGER upd")
    values: list[Any] = [{"$o": {"p": 1}}, [1, {"q": 2}], None, "s", 3]
    records = []
    for key in range(1, len(documents) + 2):
        record: dict[str, Any] = {"id": key, "it's.x": values[key % 5],
                                  'a"b.c,d.back\\slash': values[(key + 1) % 5]}
        if key % 3 == 0:
            record["{br}.NULL"] = values[(key + 2) % 5]
        if key == 6:
            record["forbidden"] = 1
        records.append(record)
    src = allowed_folder(conn, tmp_path)
    options: dict[str, Any] = {"on_duplicate": "update", "max_rejects": 20,
                               "allow_unknown_fields": True}
    if replace:
        options["replace_non_objects"] = True
    function = "_jsonb_merge" if replace else "_import_doc_merge"
    want: dict[int, Any] = {}
    reasons: dict[int, str] = {}
    for line, record in enumerate(records, 1):
        key = record["id"]
        fields: dict[str, Any] = {}
        for path, value in record.items():
            if path == "id":
                continue
            node = fields
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        old = documents[key - 1] if key <= len(documents) else None
        try:
            with conn.transaction():
                doc = scalar(conn, f"SELECT pgjobs.{function}(%s::jsonb, "
                             "public.stamp(%s, %s::jsonb))::text",
                             (json.dumps(old), key, json.dumps(fields)))
                if key > len(documents):
                    doc = scalar(conn, "SELECT public.stamp(%s, %s::jsonb)::text",
                                 (key, json.dumps(fields)))
                else:
                    doc = scalar(conn, "SELECT (%s::jsonb || '{\"upd\": 1}')::text", (doc,))
                # (as the import names it: from a path without public)
                conn.execute("SET LOCAL search_path = pg_catalog")
                scalar(conn, "SELECT %s::public.doc_t", (doc,))
            want[key] = json.loads(doc)
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.CheckViolation) as exc:
            want[key] = old
            reasons[line] = str(exc.diag.message_primary)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (src / "p.jsonl").write_text(data, encoding="utf-8")
    job_id = submit_import(conn, f"file://{src}/p.jsonl", "1", options, target="pdocs")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    job = job_of(conn, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["rejected"] == len(reasons), (job["result"], reasons)
    assert bool(reasons) and (len(reasons) > 1) != replace
    got = dict(conn.execute("SELECT id, data FROM pdocs").fetchall())
    assert got == want
    rejects = [json.loads(x) for x in storage.read(job["result"]["rejects_uri"]).splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == reasons


@pytest.mark.parametrize("replace", [False, True], ids=["guarded", "replace_non_objects"])
def test_a_backfill_of_columns_and_fields_into_a_domain_document_with_a_trigger(
        conn: Conn, replace: bool) -> None:
    """A set of a column and nested fields, written out, into a document of a
    domain type whose BEFORE UPDATE trigger changes it: each row as the
    function's merge gives, rows a parent of which holds a value left out
    unless the job says replace_non_objects."""
    conn.execute("""
        CREATE DOMAIN bdoc AS jsonb CHECK (VALUE IS NULL OR jsonb_typeof(VALUE) <> 'number');
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.data := NEW.data::jsonb || '{"touched": {"by": "trigger"}}'::jsonb;
                  RETURN NEW; END $$""")
    build_target(conn, "bk", """id bigint PRIMARY KEY, table_id integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 label text, data bdoc""", scope="table_id", document="data")
    documents: list[Any] = [{"meta": {"k": 1, "it's": {"x": 0}}}, {"meta": "flat"}, None,
                            {"meta": {"it's": [1]}}, "text", {"touched": 5, "z": None}]

    def blocked(document: Any) -> bool:
        return not replace and (
            not isinstance(document, dict | None)
            or (isinstance(document, dict) and (
                not isinstance(document.get("meta"), dict | None)
                or not isinstance((document.get("meta") or {}).get("it's"), dict | None))))

    # Rows it would be refused for (pgjobs._set_guard) hold them only once submitted.
    for key, document in enumerate(documents, 1):
        conn.execute("INSERT INTO bk (id, table_id, data) VALUES (%s, 1, %s::jsonb)",
                     (key, "{}" if blocked(document) else
                      None if document is None else json.dumps(document)))
    set_ = {"label": "set", "meta.flag": 1, "meta.it's.y": {"ké": None}, "top": [1]}
    compiled = scalar(conn, "SELECT pgjobs._compile_set(r, %s::jsonb) FROM "
                      "pgjobs.target_registry r WHERE r.target = 'bk'::regclass",
                      (json.dumps(set_),))
    assert "_jsonb_merge(" not in compiled, compiled
    options = {"replace_non_objects": True} if replace else {"allow_unknown_fields": True}
    job_id = int(scalar(conn, "SELECT pgjobs.submit_backfill('bk', '1', '{}'::jsonb, "
                        "%s::jsonb, %s::jsonb)", (json.dumps(set_), json.dumps(options))))
    for key, document in enumerate(documents, 1):
        if blocked(document):
            conn.execute("UPDATE bk SET data = %s::jsonb WHERE id = %s",
                         (json.dumps(document), key))
    conn.execute("CREATE TRIGGER touch BEFORE UPDATE ON bk FOR EACH ROW EXECUTE FUNCTION touch()")
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    patch = {"meta": {"flag": 1, "it's": {"y": {"ké": None}}}, "top": [1]}
    want: dict[int, Any] = {}
    for key, document in enumerate(documents, 1):
        want[key] = (None, document) if blocked(document) else (
            "set", {**merged(document, patch), "touched": {"by": "trigger"}})
    got = {k: (label, data) for k, label, data in conn.execute("SELECT id, label, data FROM bk")}
    assert got == want
