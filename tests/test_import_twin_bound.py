"""The read behind an import's look-alike test is bounded, and a row of NULL
created_at counts as one from before the job where the job cannot write one.

An import judges each new field against the scope's rows from before the
job (pgjobs._scope_keys_at with p_before, the job's cutoff): the first 1,000
of them in key order. To find them it walked the scope in key order past
every row dated after the cutoff: an import into a scope that grew by
millions since the cutoff read them all, once per new field (per level of
a nested path). It now visits at most the scope's first 10,000 rows in key
order and judges with the rows from before the job among them.

Rows are counted as read by the statistics of the test's own transaction
(pg_stat_xact_user_tables: rows a sequential scan read plus rows an index
scan fetched), never by time. Every entry point of the read: the read
itself, and an import's field (CSV, JSON Lines; a top-level name, a nested
path under a parent as written, a path under a parent's twin, one read a
level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allowed_folder, build_target, one_record, scalar, submit_import

Conn = psycopg.Connection[Any]

# What the read may visit, whatever the scope holds (the bound documented
# in docs/imports.md), with room for the catalog's own rows of the target.
VISITED = 10_000

ROWS_READ = ("SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) "
             "FROM pg_stat_xact_user_tables WHERE relid = 'grown'::regclass")


@pytest.fixture
def grown(conn: Conn) -> str:
    """Target `grown` whose scope 1 holds 30,000 rows dated after now (keys
    1..30000, field "other") before one row from long ago (key 90000,
    fields "status" and "nest": {"a": 1}); analyzed."""
    build_target(conn, "grown", "id bigint NOT NULL, scope integer NOT NULL, "
                 "created_at timestamptz DEFAULT now(), data jsonb NOT NULL DEFAULT '{}'",
                 document="data")
    conn.execute("INSERT INTO grown VALUES (90000, 1, now() - interval '1 day', "
                 "'{\"status\": \"keep\", \"nest\": {\"a\": 1}}')")
    conn.execute("INSERT INTO grown SELECT g, 1, now() + interval '1 hour', '{\"other\": 1}' "
                 "FROM generate_series(1, 30000) g")
    conn.execute("ANALYZE grown")
    return "grown"


def _rows_read(conn: Conn, statement: str, params: tuple[Any, ...] = ()) -> tuple[int, Any]:
    """Rows of `grown` the statement read (in one transaction, rolled back),
    and what it returned (or the SQLSTATE it raised)."""
    with conn.transaction(force_rollback=True):
        before = int(scalar(conn, ROWS_READ))
        try:
            with conn.transaction():
                got: Any = scalar(conn, statement, params)
        except psycopg.Error as exc:
            got = exc.sqlstate
        return int(scalar(conn, ROWS_READ)) - before, got


def test_the_read_of_the_rows_from_before_visits_a_bounded_number(
        conn: Conn, grown: str) -> None:
    read, keys = _rows_read(conn, "SELECT pgjobs._scope_keys_at(r, '1', '{}', now()) "
                                  "FROM pgjobs.target_registry r "
                                  "WHERE r.target = 'grown'::regclass")
    assert read <= VISITED, read
    # The row from before is past the bound: judged with what was read.
    assert keys is None


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("field", "reads"), [("Status", 1), ("nest.A", 2), ("NEST.a", 3)])
def test_an_imports_field_reads_a_bounded_number_of_rows(
        conn: Conn, tmp_path: Path, grown: str, fmt: str, field: str, reads: int) -> None:
    """The statement a batch builds (pgjobs._import_insert_sql, where each
    new field is judged): at most the bound per read; a dotted path at most
    a read of its parent as written, of the top and ("NEST.a") of the twin
    parent."""
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, fmt, {"id": "1", field: "x"})
    job_id = submit_import(conn, f"file://{source}", "1", {"format": fmt}, target=grown)
    read, _ = _rows_read(conn, "SELECT pgjobs._import_insert_sql(j, r, ARRAY['id', %s]) "
                               "FROM pgjobs.jobs j, pgjobs.target_registry r "
                               "WHERE j.id = %s AND r.target = j.target", (field, job_id))
    assert read <= VISITED * reads, read


@pytest.fixture
def undated(conn: Conn) -> Any:
    """Builds target `undated` whose scope 1 holds one row of NULL created_at
    with field "status"; `default` is the created_at column's default (or
    None)."""
    conn.execute("CREATE DOMAIN stamped AS timestamptz DEFAULT now()")
    conn.execute("CREATE DOMAIN restamped AS stamped")

    def build(default: str | None, column_type: str = "timestamptz") -> str:
        build_target(conn, "undated", "id bigint NOT NULL, scope integer NOT NULL, "
                     f"created_at {column_type} {'DEFAULT ' + default if default else ''}, "
                     "data jsonb NOT NULL DEFAULT '{}'", document="data")
        conn.execute("INSERT INTO undated VALUES (1, 1, NULL, '{\"status\": \"keep\"}')")
        return "undated"
    return build


@pytest.mark.parametrize(("default", "column_type", "counted"), [
    ("now()", "timestamptz", True), ("clock_timestamp()", "timestamptz", True),
    ("'2020-01-01'", "timestamp", True),
    # The domain's default (or its base domain's) dates the rows alike.
    (None, "stamped", True), (None, "restamped", True),
    # No default: an import's own rows (created_at not in its source) are
    # NULL too, and must not judge its later fields.
    (None, "timestamptz", False), ("NULL", "timestamptz", False), ("NULL", "stamped", False)])
def test_a_row_of_null_created_at_counts_as_before_the_job_where_a_default_dates_the_jobs_rows(
        conn: Conn, undated: Any, default: str | None, column_type: str, counted: bool) -> None:
    undated(default, column_type)
    keys = scalar(conn, "SELECT pgjobs._scope_keys_at(r, '1', '{}', now()) "
                        "FROM pgjobs.target_registry r WHERE r.target = 'undated'::regclass")
    assert keys == (["status"] if counted else None)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_import_judges_its_field_by_a_row_of_null_created_at(
        conn: Conn, tmp_path: Path, undated: Any, fmt: str) -> None:
    """Such a row's "status" makes the source's "Status" a twin (22023)."""
    undated("now()")
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, fmt, {"id": "2", "Status": "x"})
    job_id = submit_import(conn, f"file://{source}", "1", {"format": fmt}, target="undated")
    with pytest.raises(psycopg.Error) as raised:
        scalar(conn, "SELECT pgjobs._import_insert_sql(j, r, ARRAY['id', 'Status']) "
                     "FROM pgjobs.jobs j, pgjobs.target_registry r "
                     "WHERE j.id = %s AND r.target = j.target", (job_id,))
    assert raised.value.sqlstate == "22023"
    assert 'document field "status"' in str(raised.value)
