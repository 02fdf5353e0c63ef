"""A JSONL record of many fields (h151): each record names its own fields,
and the statement that reads them was built comparing every field with every
field before it (a name given twice, document paths overlapping) and, for
the document, splitting every path again for every top-level name: a
record of 5,000 fields (a 70 KB line) held the batch, and its scope's writer
gate, for about a minute. A record now names at most 1,600 fields (as many
as a table has columns) or is rejected like a record naming a bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors

from tests.support import allowed_folder, job, make_people, run_import, submit_import

Conn = psycopg.Connection[Any]

JSONL_FIELDS = 1600


def _import(conn: Conn, dsn: str, tmp_path: Path, lines: list[dict[str, Any]],
            **options: Any) -> dict[str, Any]:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    (folder / "wide.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    job_id = submit_import(conn, f"file://{folder}/wide.jsonl", "1", options)
    run_import(dsn, job_id, f"file://{folder}/store")
    return job(conn, job_id)


def _wide(width: int, **extra: Any) -> dict[str, Any]:
    return {**extra, **{f"f{i}": i for i in range(width - len(extra))}}


def test_a_record_of_more_fields_than_a_table_has_columns_is_rejected(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """Fails on main: the record of 1,601 fields was imported (slowly)."""
    row = _import(conn, dsn, tmp_path,
                  [{"name": "before"}, _wide(JSONL_FIELDS + 1, name="wide"),
                   {"name": "after"}],
                  max_rejects=1, allow_unknown_fields=True)
    assert row["status"] == "succeeded", row["error"]
    rejects = conn.execute("SELECT line, reason FROM pgjobs.import_rejects WHERE job_id = %s",
                           (row["id"],)).fetchall()
    assert len(rejects) == 1 and rejects[0][0] == 2, rejects
    assert (f"the record names {JSONL_FIELDS + 1} fields, more than the {JSONL_FIELDS} "
            "a JSON Lines import reads") in rejects[0][1], rejects
    names = conn.execute("SELECT name FROM people WHERE tenant = 1 ORDER BY id").fetchall()
    assert names == [("before",), ("after",)]


def test_the_refusal_names_the_limit_with_a_hint(conn: Conn, dsn: str,
                                                 tmp_path: Path) -> None:
    """Fails on main: pgjobs._import_insert_sql built the statement."""
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    job_id = submit_import(conn, f"file://{folder}/x.jsonl", "1", {})
    fields = [f"f{i}" for i in range(JSONL_FIELDS + 1)]
    try:
        conn.execute("SELECT pgjobs._import_insert_sql(j, pgjobs._target(j.target), %s)"
                     " FROM pgjobs.jobs j WHERE j.id = %s", (fields, job_id))
    except errors.InvalidParameterValue as exc:
        assert exc.diag.sqlstate == "22023"
        assert exc.diag.message_primary == (
            f"the record names {JSONL_FIELDS + 1} fields, more than the {JSONL_FIELDS} "
            "a JSON Lines import reads")
        assert "on_duplicate" in (exc.diag.message_hint or ""), exc.diag.message_hint
        conn.rollback()
    else:
        raise AssertionError("a record of 1,601 fields was accepted")
    # At the limit the statement is built.
    sql = conn.execute("SELECT pgjobs._import_insert_sql(j, pgjobs._target(j.target), %s)"
                       " FROM pgjobs.jobs j WHERE j.id = %s",
                       (fields[:JSONL_FIELDS], job_id)).fetchone()
    assert sql is not None and sql[0]


def test_a_record_at_the_limit_imports(conn: Conn, dsn: str, tmp_path: Path) -> None:
    row = _import(conn, dsn, tmp_path, [_wide(JSONL_FIELDS, name="wide")],
                  allow_unknown_fields=True)
    assert row["status"] == "succeeded", row["error"]
    got = conn.execute("SELECT name, data FROM people WHERE tenant = 1").fetchall()
    assert len(got) == 1 and got[0][0] == "wide" and len(got[0][1]) == JSONL_FIELDS - 1
