"""A reg* value written into a target column reads one way at every entry point (h194).

h189 made an oid-alias (regclass, regtype, ...) key and filter value read
one way: its oid or its schema-qualified name is the object, an
unqualified name is refused with pgjobs._oid_alias_hint's hint (pgjobs
reads names with its own search_path, not the caller's), and what a job
stores is the oid, never a name a rename gives to another object. The
entry points that write such a value into a column did not:

- an import (CSV and JSON Lines) cast the value's text with ``::regclass``,
  a cast of its own that reads a name only: a regclass given by its oid
  (the text pgjobs stores for one, pgjobs._canonical_text) failed the
  whole job;
  an unqualified name was rejected with the raw "relation does not exist";
- a backfill's ``set`` gave the raw 42P01 for an unqualified name, and
  stored a name in the job ('public.h194_ka'::regclass), read again by
  each page: a rename between the submit and a page set another table.

Parametrized over the entry points (import CSV, import JSON Lines, backfill
set) and the column types (regclass, a domain over it, regtype, regclass[]).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, run_job, scalar, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

ENTRIES = ["import-csv", "import-jsonl", "backfill-set"]

# The column types (rv's column v_<type>, v_regclass_arr for regclass[]).
TYPES = ["regclass", "reg_dom", "regtype", "regclass[]"]


@pytest.fixture
def rv(conn: Conn) -> Conn:
    """Target rv (key id, scope s) with a column v of each type in TYPES,
    tables h194_ka, h194_kb and type h194_ty in public."""
    conn.execute("CREATE TABLE h194_ka (); CREATE TABLE h194_kb (); "
                 "CREATE TYPE h194_ty AS (a int); CREATE DOMAIN reg_dom AS regclass")
    build_target(conn, "rv", """
            id bigint NOT NULL, s int NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
            v_regclass regclass, v_reg_dom reg_dom, v_regtype regtype,
            v_regclass_arr regclass[]""", key="id", scope="s")
    conn.execute("INSERT INTO rv (id, s) VALUES (1, 1)")
    return conn


def oid_type(type_sql: str) -> str:
    return "oid[]" if type_sql.endswith("[]") else "oid"


def spellings(conn: Conn, type_sql: str) -> tuple[Any, Any, Any, str]:
    """(by oid, schema-qualified, unqualified, the oid text stored)."""
    if type_sql == "regtype":
        oid = str(scalar(conn, "SELECT 'public.h194_ty'::regtype::oid"))
        return oid, "public.h194_ty", "h194_ty", oid
    ka = str(scalar(conn, "SELECT 'public.h194_ka'::regclass::oid"))
    if type_sql == "regclass[]":
        kb = str(scalar(conn, "SELECT 'public.h194_kb'::regclass::oid"))
        return ([ka, kb], ["public.h194_ka", "public.h194_kb"], ["h194_ka", "public.h194_kb"],
                f"{{{ka},{kb}}}")
    return ka, "public.h194_ka", "h194_ka", ka


def write(conn: Conn, dsn: str, tmp_path: Path, entry: str, column: str, value: Any) -> Any:
    """Write value into rv's row (id 1, scope 1) column `column` through
    `entry`. Returns None, or the refusal: the reject's reason of an
    import, the error of a backfill's submit."""
    if entry == "backfill-set":
        try:
            with conn.transaction():
                job_id = scalar(conn, "SELECT pgjobs.submit_backfill('rv', '1', '{}', %s)",
                                (json.dumps({column: value}),))
        except psycopg.errors.InvalidParameterValue as exc:
            return exc
        run_job(conn, job_id)
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)) == "succeeded"
        return None
    conn.execute("DELETE FROM rv")
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    allow(conn, f"file://{folder}")
    if entry == "import-csv":
        text = ("{" + ",".join(value) + "}") if isinstance(value, list) else value
        body = f'id,{column}\n1,"{text}"\n'
        path = folder / "rv.csv"
    else:
        body = json.dumps({"id": 1, column: value}) + "\n"
        path = folder / "rv.jsonl"
    path.write_text(body)
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 10}, target="rv")
    status = Importer(dsn, job_id, claim_import(dsn, job_id),
                      f"file://{tmp_path / 'store'}").run().status
    assert status == "succeeded"
    return scalar(conn, "SELECT min(reason) FROM pgjobs.import_rejects WHERE job_id = %s",
                  (job_id,))


@pytest.mark.parametrize("type_sql", TYPES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_a_reg_value_reads_as_its_oid_or_qualified_name_and_an_unqualified_name_is_refused(
        rv: Conn, dsn: str, tmp_path: Path, entry: str, type_sql: str) -> None:
    """The oid and the schema-qualified name write the object's oid; an
    unqualified name is refused with the hint every other entry point gives
    (write it schema-qualified or as its oid), never written, never the raw
    lookup error alone."""
    column = "v_" + type_sql.replace("[]", "_arr")
    by_oid, qualified, unqualified, stored = spellings(rv, type_sql)
    for value in (by_oid, qualified):
        refused = write(rv, dsn, tmp_path, entry, column, value)
        assert refused is None, (value, refused)
        got = scalar(rv, f"SELECT {column}::{oid_type(type_sql)}::text "
                         "FROM rv WHERE id = 1")
        assert got == stored, (value, got)
    rv.execute(f"UPDATE rv SET {column} = NULL")
    refused = write(rv, dsn, tmp_path, entry, column, unqualified)
    assert refused is not None, unqualified
    text = (str(refused.diag.message_hint) if isinstance(refused, psycopg.Error)
            else str(refused))
    assert "schema-qualified" in text and "oid" in text, (refused, text)
    assert scalar(rv, f"SELECT count({column}) FROM rv") == 0


@pytest.mark.parametrize("type_sql", ["regclass", "reg_dom", "regclass[]"])
def test_a_backfill_s_reg_value_survives_a_rename_before_its_page(
        rv: Conn, type_sql: str) -> None:
    """A backfill stored its set value by name ('public.h194_ka'::regclass)
    and each page read it again: renaming h194_ka away and h194_kb to its
    name between the submit and the run set h194_kb's oid on the rows, and
    the job succeeded. The value is stored by oid now."""
    column = "v_" + type_sql.replace("[]", "_arr")
    _, qualified, _, stored = spellings(rv, type_sql)
    job_id = scalar(rv, "SELECT pgjobs.submit_backfill('rv', '1', '{}', %s)",
                    (json.dumps({column: qualified}),))
    rv.execute("ALTER TABLE h194_ka RENAME TO h194_ka_old; "
               "ALTER TABLE h194_kb RENAME TO h194_ka; ALTER TABLE h194_ka_old RENAME TO h194_kb")
    run_job(rv, job_id)
    assert scalar(rv, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    got = scalar(rv, f"SELECT {column}::{oid_type(type_sql)}::text "
                     "FROM rv WHERE id = 1")
    assert got == stored, got


@pytest.mark.parametrize("type_sql", TYPES)
def test_a_backfill_preview_refuses_an_unqualified_reg_name_as_its_submit_does(
        rv: Conn, type_sql: str) -> None:
    """pgjobs.preview of a backfill compiles its set as the submit does
    (pgjobs._compile_set): the same 22023 and hint for an unqualified name,
    and the oid and the qualified name pass."""
    column = "v_" + type_sql.replace("[]", "_arr")
    by_oid, qualified, unqualified, _ = spellings(rv, type_sql)
    sql = "SELECT pgjobs.preview('rv', '1', '{}', '{}', %s)"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc, rv.transaction():
        rv.execute(sql, (json.dumps({"kind": "backfill", "set": {column: unqualified}}),))
    hint = str(exc.value.diag.message_hint)
    assert "schema-qualified" in hint and "oid" in hint, (exc.value, hint)
    for value in (by_oid, qualified):
        rv.execute(sql, (json.dumps({"kind": "backfill", "set": {column: value}}),))
