"""The typo guard: submit_delete, submit_backfill and submit_export refuse a
filter (or an export's columns) naming a document path that no row of the scope
has (22023, the path named), unless {"allow_unknown_fields": true}.

Tested as a class: every operator, every nesting ($and / $or / $not, the folded
$or of 9+ equalities), dotted paths, every submit kind, the option, columns
(never unknown), JSON null (a field that exists), other scopes, an empty scope,
allowed_scopes ordering, and the row bound (pgjobs.field_check_rows).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import Target, insert_row, job, make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]

KINDS = ["delete", "backfill", "export"]


def submit(conn: Conn, kind: str, scope: str, filter_: dict[str, Any],
           options: dict[str, Any] | None = None) -> int:
    opts = json.dumps(options or {})
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb,"
                                " '{}', %s::jsonb)", (scope, json.dumps(filter_), opts)))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', %s, %s::jsonb,"
                                " '{\"label\": \"x\"}', %s::jsonb)",
                          (scope, json.dumps(filter_), opts)))
    return int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb,"
                            " %s::jsonb)", (scope, json.dumps(filter_), opts)))


def _queued(conn: Conn, job_id: int, kind: str) -> Any:
    """The filter of job_id, checked to be a queued job of `kind`."""
    row = job(conn, job_id)
    assert (row["kind"], row["status"]) == (kind, "queued"), row
    return row["payload"]["filter"]


@pytest.fixture
def rows(conn: Conn) -> Conn:
    target = make_rows_target(conn)
    seed(conn, target, 300)  # data: {"k", "name", "nest": {"a"}}
    conn.execute("UPDATE user_table_rows SET data = data || '{\"z\": null}' WHERE id = 6")
    conn.execute("UPDATE user_table_rows SET data = data || '{\"only2\": 1}'"
                 " WHERE table_id = 2 AND id = (SELECT max(id) FROM user_table_rows"
                 " WHERE table_id = 2)")
    return conn


# Every operator and nesting, on a missing top-level field and on missing
# nested ones (nest.b: nest exists; k.x: k is a number; nope.a: nothing).
MISSING = ["stauts", "nest.b", "k.x", "nope.a"]
SHAPES = [
    lambda f: {f: "keep"},
    lambda f: {f: {"$eq": 1}},
    lambda f: {f: {"$ne": "keep"}},
    lambda f: {f: {"$gt": 1}},
    lambda f: {f: {"$gte": "a"}},
    lambda f: {f: {"$lt": 1}},
    lambda f: {f: {"$lte": True}},
    lambda f: {f: {"$in": [1, 2]}},
    lambda f: {f: {"$in": list(range(20))}},
    lambda f: {f: {"$nin": ["a"]}},
    lambda f: {f: {"$nin": list(range(20))}},
    lambda f: {f: {"$contains": "x"}},
    lambda f: {f: {"$exists": True}},
    lambda f: {f: {"$exists": False}},
    lambda f: {f: None},
    lambda f: {f: {"$eq": {"a": 1}}},
    lambda f: {f: {"$not": {"$eq": 1}}},
    lambda f: {"k": 1, f: 2},
    lambda f: {"$and": [{"k": 1}, {f: 2}]},
    lambda f: {"$or": [{"k": 1}, {f: 2}]},
    lambda f: {"$not": {f: 2}},
    lambda f: {"$or": [{"$and": [{"name": "n1"}, {"$not": {f: {"$gt": 0}}}]}]},
    # 9+ equalities of one field in an $or fold into one $in.
    lambda f: {"$or": [{f: i} for i in range(10)]},
]


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_every_operator_and_nesting_is_refused(rows: Conn, shape: int) -> None:
    for kind in KINDS:
        for field in MISSING:
            filter_ = SHAPES[shape](field)
            before = scalar(rows, "SELECT count(*) FROM pgjobs.jobs")
            with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
                submit(rows, kind, "1", filter_)
            assert f'"{field}"' in str(info.value), (kind, filter_)
            assert "allow_unknown_fields" in (info.value.diag.message_hint or "")
            assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == before
            # The option lets the same job through.
            submit(rows, kind, "1", filter_, {"allow_unknown_fields": True})
            assert scalar(rows, "SELECT count(*) FROM pgjobs.jobs") == before + 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_unknown_path_is_named(rows: Conn, kind: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        submit(rows, kind, "1", {"k": 1, "stauts": {"$ne": "keep"},
                                 "$or": [{"nest.b": 1}, {"nest.a": 1}]})
    message = str(info.value)
    assert '"stauts"' in message and '"nest.b"' in message
    assert '"nest.a"' not in message and '"k"' not in message


@pytest.mark.parametrize("filter_", [
    {}, {"k": 1}, {"nest.a": {"$gt": 0}}, {"name": {"$ne": "x"}},
    {"$or": [{"k": i} for i in range(12)]},
    {"$not": {"nest": {"$exists": False}}},
    # Columns are never unknown, whatever the operator.
    {"n": 1}, {"label": {"$exists": False}}, {"label": None}, {"created_at": {"$lt": "2000-01-01"}},
    # JSON null is a field that exists.
    {"z": None}, {"z": {"$exists": False}},
])
def test_known_fields_and_columns_pass(rows: Conn, filter_: dict[str, Any]) -> None:
    for kind in KINDS:
        job_id = submit(rows, kind, "1", filter_)
        assert _queued(rows, job_id, kind) == filter_


@pytest.mark.parametrize("kind", KINDS)
def test_a_field_of_another_scope_only_is_unknown(rows: Conn, kind: str) -> None:
    submit(rows, kind, "2", {"only2": 1})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='"only2"'):
        submit(rows, kind, "1", {"only2": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_scope_refuses_nothing(rows: Conn, kind: str) -> None:
    # A job on a scope without rows changes nothing (rows inserted after the
    # submit are never the job's), so nothing is refused there.
    job_id = submit(rows, kind, "99", {"stauts": {"$ne": "keep"}})
    assert _queued(rows, job_id, kind) == {"stauts": {"$ne": "keep"}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["yes", 1, None, [True], {"x": True}])
def test_the_option_must_be_a_boolean(rows: Conn, kind: str, value: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="allow_unknown_fields"):
        submit(rows, kind, "1", {"k": 1}, {"allow_unknown_fields": value})


@pytest.mark.parametrize("kind", KINDS)
def test_false_is_the_default(rows: Conn, kind: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='"stauts"'):
        submit(rows, kind, "1", {"stauts": 1}, {"allow_unknown_fields": False})


def test_export_columns_are_checked(rows: Conn) -> None:
    submit(rows, "export", "1", {}, {"columns": ["id", "n", "nest.a", "z", "name"]})
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        submit(rows, "export", "1", {}, {"columns": ["id", "nest.a", "nmae"]})
    assert '"nmae"' in str(info.value) and 'option "columns"' in str(info.value)
    submit(rows, "export", "1", {}, {"columns": ["id", "nmae"], "allow_unknown_fields": True})


def test_other_kinds_reject_the_option(rows: Conn) -> None:
    rows.execute("CREATE TABLE items (id bigint PRIMARY KEY, scope int NOT NULL)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="allow_unknown_fields"):
        rows.execute("SELECT pgjobs.submit('custom', 'items', '1', '{}',"
                     " '{\"allow_unknown_fields\": true}')")


def test_set_creates_fields_and_is_not_checked(rows: Conn) -> None:
    job_id = scalar(rows, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{\"k\": 1}',"
                          " '{\"brand_new.field\": 1}')")
    assert _queued(rows, job_id, "backfill") == {"k": 1}
    # ... and the job creates the field on exactly the rows of its filter.
    rows.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert scalar(rows, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                        " AND data -> 'brand_new' ->> 'field' = '1'") == scalar(
        rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
              " AND data @> '{\"k\": 1}' AND created_at <= now()")
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE data ? 'brand_new'"
                        " AND NOT (table_id = 1 AND data @> '{\"k\": 1}')") == 0


def test_allowed_scopes_are_checked_before_any_row_is_read(rows: Conn) -> None:
    rows.execute("SET pgjobs.allowed_scopes = '2'")
    for kind in KINDS:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            submit(rows, kind, "1", {"stauts": 1})


def test_the_row_bound(rows: Conn) -> None:
    # A scope of 2,500 rows where only the row of the largest key has "rare".
    rows.execute("""INSERT INTO user_table_rows (table_id, n, data, created_at)
                    SELECT 50, g, '{"k": 1}', now() - interval '1 day'
                      FROM generate_series(1, 2500) g""")
    rows.execute("""UPDATE user_table_rows SET data = '{"k": 1, "rare": 1}'
                     WHERE id = (SELECT max(id) FROM user_table_rows WHERE table_id = 50)""")
    # Found in the second chunk (1,000 rows, then the other 1,500): known.
    for kind in KINDS:
        submit(rows, kind, "50", {"rare": 1}, {"on_conflict": "queue"})
    # Past the bound (the setting's minimum, 1,000 rows), unseen means unknown:
    # refused, saying how far it looked.
    rows.execute("SET pgjobs.field_check_rows = 1000")
    for kind in KINDS:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            submit(rows, kind, "50", {"rare": 1})
        assert "first 1000 rows" in str(info.value)
        assert "field_check_rows" in (info.value.diag.message_hint or "")
        submit(rows, kind, "50", {"rare": 1}, {"allow_unknown_fields": True})
    # A field every row has is found in the first chunk, whatever the bound.
    submit(rows, "delete", "50", {"k": 1})
    rows.execute("SET pgjobs.field_check_rows = 3000")
    submit(rows, "delete", "50", {"rare": 1})


def test_unknown_fields_function_reports_bound(rows: Conn) -> None:
    rows.execute("""INSERT INTO user_table_rows (table_id, n, data)
                    SELECT 60, g, '{"k": 1}' FROM generate_series(1, 1500) g""")
    rows.execute("SET pgjobs.field_check_rows = 1000")
    unknown, complete, read = rows.execute(
        "SELECT * FROM pgjobs._unknown_fields((SELECT r FROM pgjobs.target_registry r),"
        " '60', ARRAY['k', 'zz', 'k'])").fetchone()
    assert unknown == ["zz"] and complete is False and read == 1000
    rows.execute("RESET pgjobs.field_check_rows")
    unknown, complete, read = rows.execute(
        "SELECT * FROM pgjobs._unknown_fields((SELECT r FROM pgjobs.target_registry r),"
        " '60', ARRAY['zz', 'k'])").fetchone()
    assert unknown == ["zz"] and complete is True and read == 1500


def test_compile_filter_paths(rows: Conn) -> None:
    paths = scalar(rows, """SELECT (pgjobs._compile_filter('user_table_rows',
        '{"n": 1, "a.b": 1, "$or": [{"c": 1}, {"$not": {"a.b": 2, "d": {"$not": {"$gt": 1}}}}],
          "label": {"$exists": true}}')).p_paths""")
    assert sorted(paths) == ["a.b", "c", "d"]  # each once, columns never


def test_inserted_row_makes_a_field_known(rows: Conn) -> None:
    target = Target("user_table_rows", "bigint", "int", True)
    for kind in KINDS:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match='"fresh"'):
            submit(rows, kind, "3", {"fresh": 1})
    insert_row(rows, target, "3", data={"fresh": 1})
    for kind in KINDS:
        assert _queued(rows, submit(rows, kind, "3", {"fresh": 1}), kind) == {"fresh": 1}
