"""One rule for submit_import and submit_export (h81): every option, the
scope and the filter are checked before the storage allow-list. A submit
whose source (or destination) is outside the allow-list and that has a bad
option raises the option's own error (22023, or 55000 for on_duplicate
without a unique index to name), naming it, not 42501 about the storage: a
user fixing the allow-list first would only then learn of the option.
Before, submit_import checked the allow-list right after the source's
scheme and on_duplicate (format, gzip, max_rejects, batch_ms and every common
option came after it), and submit_export after format and gzip (chunk_rows,
part_size, columns, the filter and every common option came after it).
With the storage allowed, each case raises the same error (the check
itself is unchanged), and with every option good the storage's 42501.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import allow, make_items, make_people

Conn = psycopg.Connection[Any]

PREFIX = "file:///srv/h81-allowed"
OUTSIDE = "file:///srv/h81-elsewhere"

# option (or argument) -> (options, scope, what the error names, SQLSTATE)
COMMON: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "priority": ({"priority": "high"}, "1", "priority", "22023"),
    "max_attempts": ({"max_attempts": 0}, "1", "max_attempts", "22023"),
    "run_at": ({"run_at": "someday"}, "1", "run_at", "22023"),
    "on_conflict": ({"on_conflict": "wait"}, "1", "on_conflict", "22023"),
    "lease": ({"lease": "1 month"}, "1", "lease", "22023"),
    "unknown": ({"colour": "red"}, "1", "colour", "22023"),
    "scope": ({}, "not-a-number", "integer", "22023"),
}
IMPORT: dict[str, tuple[dict[str, Any], str, str, str]] = {
    **COMMON,
    "format": ({"format": "xml"}, "1", "format", "22023"),
    "gzip": ({"gzip": "yes"}, "1", "gzip", "22023"),
    "on_duplicate": ({"on_duplicate": "merge"}, "1", "on_duplicate", "22023"),
    "on_duplicate_index": ({"on_duplicate": "skip"}, "1", "unique index", "55000"),
    "max_rejects": ({"max_rejects": -1}, "1", "max_rejects", "22023"),
    "batch_ms": ({"batch_ms": 5}, "1", "batch_ms", "22023"),
    "allow_unknown_fields": ({"allow_unknown_fields": "no"}, "1", "allow_unknown_fields",
                             "22023"),
    "replace_non_objects": ({"replace_non_objects": 1}, "1", "replace_non_objects", "22023"),
    "max_rows_per_second": ({"max_rows_per_second": "fast"}, "1", "max_rows_per_second",
                            "22023"),
}
EXPORT: dict[str, tuple[dict[str, Any], str, str, str]] = {
    **COMMON,
    "format": ({"format": "xml"}, "1", "format", "22023"),
    "gzip": ({"gzip": "yes"}, "1", "gzip", "22023"),
    "parallel": ({"parallel": 0}, "1", "parallel", "22023"),
    "compression": ({"format": "parquet", "compression": "lz4"}, "1", "compression", "22023"),
    "row_group_bytes": ({"format": "parquet", "row_group_bytes": -1}, "1", "row_group_bytes",
                        "22023"),
    "chunk_rows": ({"chunk_rows": 0}, "1", "chunk_rows", "22023"),
    "part_size": ({"part_size": 1}, "1", "part_size", "22023"),
    "columns": ({"columns": []}, "1", "columns", "22023"),
    "columns_unknown": ({"columns": ["id", "nosuch"]}, "1", "nosuch", "22023"),
    "allow_unknown_fields": ({"allow_unknown_fields": "no"}, "1", "allow_unknown_fields",
                             "22023"),
    "filter": ({"filter": {"id": {"$near": 1}}}, "1", "$near", "22023"),
}


def raised(conn: Conn, sql: str, params: tuple[Any, ...]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        conn.execute(sql, params)
    return info.value


def submit_import(conn: Conn, case: tuple[dict[str, Any], str, str, str],
                  folder: str) -> psycopg.Error:
    options, scope, _, _ = case
    return raised(conn, "SELECT pgjobs.submit_import('people', %s, %s, %s::jsonb)",
                  (scope, f"{folder}/rows.csv", json.dumps(options)))


def submit_export(conn: Conn, case: tuple[dict[str, Any], str, str, str],
                  folder: str) -> psycopg.Error:
    options, scope, _, _ = case
    options = dict(options)
    filter_ = options.pop("filter", {})
    return raised(conn, "SELECT pgjobs.submit_export('items', %s, %s::jsonb, %s::jsonb)",
                  (scope, json.dumps(filter_), json.dumps({**options, "destination": folder})))


def check(error: psycopg.Error, case: tuple[dict[str, Any], str, str, str]) -> None:
    _, _, names, state = case
    assert (error.sqlstate, names in str(error)) == (state, True), str(error)


@pytest.mark.parametrize("name", sorted(IMPORT))
def test_submit_import_names_a_bad_option_before_the_allow_list(conn: Conn, name: str) -> None:
    make_people(conn, unique=name != "on_duplicate_index")
    allow(conn, PREFIX)
    case = IMPORT[name]
    check(submit_import(conn, case, OUTSIDE), case)
    check(submit_import(conn, case, PREFIX), case)


@pytest.mark.parametrize("name", sorted(EXPORT))
def test_submit_export_names_a_bad_option_before_the_allow_list(conn: Conn, name: str) -> None:
    make_items(conn, rows=30)
    allow(conn, PREFIX)
    case = EXPORT[name]
    check(submit_export(conn, case, OUTSIDE), case)
    check(submit_export(conn, case, PREFIX), case)


def test_with_every_option_good_the_allow_list_refuses(conn: Conn) -> None:
    make_people(conn)
    make_items(conn, rows=30)
    allow(conn, PREFIX)
    good = ({"format": "csv", "max_rejects": 3, "priority": 1}, "1", "not under an allowed",
            "42501")
    check(submit_import(conn, good, OUTSIDE), good)
    check(submit_export(conn, ({"format": "jsonl", "chunk_rows": 10}, "1", "", ""), OUTSIDE),
          ({}, "1", "not under an allowed", "42501"))
