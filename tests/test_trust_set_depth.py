"""A backfill's set cannot make each page's guard grow with the square of its
depth, and hostile keys and values round-trip exactly into the stored SQL.

pgjobs._set_guard writes, for each object of the set's document patch, a test
of the row's value at that place, written out from the document down: a set
of 6 kB nesting a value 1,000 levels deep ({"x": {"a": {"a": ...}}}: the 16
segment limit bounds a key's path, nothing bounded its value) wrote 23 MB of
guard, took 26 s to submit, and its pages did not end in 15 minutes; a 64 kB
set nests 13,000 levels. pgjobs._compile_set (submit and preview) now
refuses a patch whose objects nest more than 32 levels deep, or whose guard
would pass about 16 MB (many objects under long keys): 22023 with a hint.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import build_target, run_pages, scalar
from tests.test_set_native_merge import merged

Conn = psycopg.Connection[Any]


def _docs(conn: Conn) -> None:
    build_target(conn, "docs", """id bigint PRIMARY KEY, table_id integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now() - interval '1 day', label text,
        data jsonb""", scope="table_id", document="data")
    conn.execute("""INSERT INTO docs (id, table_id, data) VALUES
                    (1, 1, '{}'), (2, 1, '{"a": {"b": 1}}'), (3, 2, '{"x": 1}'), (4, 1, NULL)""")


def _chain(depth: int, leaf: str = "1", key: str = "a") -> str:
    return f'{{"{key}": ' * depth + leaf + "}" * depth


def _submit(conn: Conn, set_text: str) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('docs', '1', '{}'::jsonb, %s::jsonb, "
                      "'{\"allow_unknown_fields\": true}'::jsonb)", (set_text,)))


def _refused(conn: Conn, set_text: str) -> str:
    """The submit's and the preview's refusal (22023 with a hint), the same."""
    messages = []
    for call in ("SELECT pgjobs.submit_backfill('docs', '1', '{}'::jsonb, %s::jsonb)",
                 "SELECT pgjobs.preview('docs', '1', '{}'::jsonb, '{}'::text[], "
                 "jsonb_build_object('kind', 'backfill', 'set', %s::jsonb))"):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err, conn.transaction():
            conn.execute(call, (set_text,))
        assert err.value.diag.message_hint, err.value
        messages.append(str(err.value.diag.message_primary))
    assert messages[0] == messages[1], messages
    return messages[0]


@pytest.mark.parametrize("set_text", [
    _chain(34),                                        # objects 33 levels deep
    '{"x": ' + _chain(1000) + "}",                     # the 6 kB set of the report
    '{"x": ' + _chain(9_000) + "}",                    # 63 kB of nesting
    '{"' + ".".join("p" * 16) + '": ' + _chain(18) + "}",  # a 16-segment path, then 18 more
    '{"a.b": ' + _chain(32) + ', "c": 1}',             # 1 + 32 levels
    '{"ok": 1, "arr": [1], "deep": ' + _chain(40, key='k\\"q') + "}",
])
def test_a_set_nesting_objects_past_32_levels_is_refused(conn: Conn, set_text: str) -> None:
    _docs(conn)
    if len(set_text) <= 65_536:
        assert "32 levels" in _refused(conn, set_text)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_set_of_many_objects_under_long_keys_is_refused(conn: Conn) -> None:
    _docs(conn)
    chain = ".".join(c * 2000 for c in "abcdefghijklmno")  # 15 levels of 2,000 bytes
    patch = {chain: {f"k{i}": {} for i in range(200)}}
    assert len(json.dumps(patch)) < 65_536
    assert "limit is 16777216" in _refused(conn, json.dumps(patch))


@pytest.mark.parametrize("deep", [
    lambda: '{"x": ' + _chain(32) + "}",               # exactly 32 levels
    lambda: '{"' + ".".join("p" * 16) + '": ' + _chain(17) + "}",
    lambda: '{"x": [' + _chain(200) + "]}",             # inside an array: a value, no place
])
def test_sets_at_the_limit_run_and_set_what_the_merge_says(conn: Conn, deep: Any) -> None:
    _docs(conn)
    set_text = deep()
    guard = scalar(conn, "SELECT length(p_ok) FROM pgjobs._set_guard((SELECT r FROM "
                   "pgjobs.target_registry r WHERE r.target = 'docs'::regclass), %s::jsonb)",
                   (set_text,))
    assert guard is not None and guard < 1_048_576
    before = dict(conn.execute("SELECT id, data FROM docs").fetchall())
    job_id = _submit(conn, set_text)
    run_pages(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    patch: dict[str, Any] = {}
    for key, value in json.loads(set_text).items():
        node = patch
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = merged(node.get(leaf), value)
    after = dict(conn.execute("SELECT id, data FROM docs").fetchall())
    assert after == {k: (merged(v, patch) if k != 3 else v) for k, v in before.items()}


HOSTILE = ["it's", "a''b", "back\\slash", "\\'", "$$", "$t$", "$t$ DROP TABLE docs; $t$",
           "*/", "/*", "-- x", "%s", "%(x)s", "%", "\\u0041", "é✓€", "\t\n\r", "a.b",
           "NULL", "{}", "[]", "' || (SELECT 1) || '", "E'x", "\\x00", "x" * 100]


@pytest.mark.parametrize("settings", [
    ["SET standard_conforming_strings = off", "SET backslash_quote = on",
     "SET escape_string_warning = off"],
    ["SET client_encoding = 'SQL_ASCII'", "SET DateStyle = 'SQL, DMY'",
     "SET extra_float_digits = -15", "SET search_path = pg_temp, public"],
])
def test_hostile_keys_and_values_are_set_exactly_under_any_session(
        conn: Conn, make_conn: Any, settings: list[str]) -> None:
    """Keys (nested, flat) and values of quotes, backslashes, dollar tags,
    comment marks, %-placeholders, escapes: compiled in a session with hostile
    settings, run in another, each row's document is the merge's, nothing else
    changes."""
    _docs(conn)
    # (a key starting with $ is an operator's name, refused: those get a prefix)
    keys = [("k" + k if k.startswith("$") else k) for k in HOSTILE if "." not in k]
    patch: dict[str, Any] = {f"n.{k}": k for k in keys}
    patch.update({k: {"v": k, "w": [k, None, 1.5, -0.0, 10**30]} for k in keys[:12]})
    patch["deep"] = {k: {k: k} for k in keys[12:]}
    submitter = make_conn()
    for setting in settings:
        submitter.execute(setting)
    before = dict(conn.execute("SELECT id, data FROM docs").fetchall())
    job_id = _submit(submitter, json.dumps(patch))
    assigned = scalar(conn, "SELECT assignments FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert "DROP TABLE" in assigned  # inside a literal, as data
    runner = make_conn()
    runner.execute("SET standard_conforming_strings = off")
    run_pages(runner, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    nested: dict[str, Any] = {}
    for key, value in patch.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = merged(node.get(leaf), value)
    after = dict(conn.execute("SELECT id, data FROM docs").fetchall())
    want = {k: (merged(v, nested) if k != 3 else v) for k, v in before.items()}
    assert after == want


@pytest.mark.parametrize("segments", [301, 400, 5000])
def test_an_import_field_nesting_past_300_levels_is_refused_with_a_hint(
        conn: Conn, segments: int) -> None:
    """A CSV header or JSONL key "a.a.a..." of a thousand parts ended the
    import on "stack depth limit exceeded" (54001, whose hint is to raise
    max_stack_depth); 400 did too: refused, 22023 (300 import: the limit)."""
    _docs(conn)
    job = ("jsonb_populate_record(NULL::pgjobs.jobs, '{\"id\": 1, \"kind\": \"import\", "
           "\"scope\": \"1\", \"payload\": {\"format\": \"csv\"}, \"options\": {}}')")
    for fields in ([".".join(["a"] * segments)], ["id", "x." + ".".join(["é'"] * segments)]):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err, conn.transaction():
            conn.execute(f"SELECT pgjobs._import_insert_sql({job}, r, %s::text[]) "  # type: ignore[arg-type]
                         "FROM pgjobs.target_registry r WHERE r.target = 'docs'::regclass",
                         (fields,))
        assert "the limit is 300" in str(err.value) and err.value.diag.message_hint
    fine = ".".join(["a"] * 300)
    assert scalar(conn, "SELECT length(pgjobs._import_document_expr(ARRAY[%s], ARRAY['x']))",
                  (fine,)) > 0
