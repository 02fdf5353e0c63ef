"""A column of a type whose input may refuse a bad value outside class 22
(hstore XX000, ltree 42601: pgjobs._import_input_guarded) is read through a
guard, a subtransaction per value, only to tell a bad value (one rejected
record) from an error of the table (the job fails). A batch whose values are
all good goes in by the plain casts, as any other column's (the guard cost 2x
a CSV import of an hstore and ltree table, bench/import.py --shape guarded);
the guards run only once the plain statement failed, and the outcomes are
those the guards give (tests/test_import_bad_inputs.py pins them per type).

Each value's reads are counted by a domain CHECK inside a composite: the
guard reads the composite's text once to judge it and the column's cast reads
it again, so a guarded read counts two per value, a plain one one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

ROWS = 6


@pytest.fixture
def boxed(conn: Conn) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    conn.execute("CREATE TABLE reads (n integer)")
    conn.execute("""CREATE FUNCTION counted_read(h hstore) RETURNS boolean LANGUAGE plpgsql
                    AS $$ BEGIN INSERT INTO public.reads VALUES (1); RETURN true; END $$""")
    conn.execute("CREATE DOMAIN counted AS hstore CHECK (public.counted_read(VALUE))")
    conn.execute("CREATE TYPE hbox AS (h counted)")
    build_target(conn, "boxes", """id bigint NOT NULL, tenant integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(), b hbox, tags hstore""",
                 scope="tenant")


def _source(folder: Path, fmt: str, bad: int | None = None) -> str:
    path = folder / f"in.{fmt}"
    lines = ["id,b,tags"] if fmt == "csv" else []
    for i in range(1, ROWS + 1):
        tags = '"x"=>' if i == bad else f"k=>{i}"
        if fmt == "csv":
            lines.append(f'{i},"(""a=>{i}"")","{tags}"')
        else:
            quoted = json.dumps(tags)
            lines.append(f'{{"id": {i}, "b": {{"h": "a=>{i}"}}, "tags": {quoted}}}')
    path.write_text("\n".join(lines) + "\n")
    return f"file://{path}"


def _run(conn: Conn, dsn: str, folder: Path, job_id: int) -> dict[str, Any]:
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job(conn, job_id)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_good_values_of_a_guarded_type_are_read_once_by_the_plain_cast(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str, boxed: None) -> None:
    folder = allowed_folder(conn, tmp_path)
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, fmt), "1",
                                                target="boxes"))
    assert row["status"] == "succeeded", row["error"]
    assert conn.execute("SELECT count(*) FROM boxes").fetchone() == (ROWS,)
    # one read per value: no value went through the guard
    assert conn.execute("SELECT count(*) FROM reads").fetchone() == (ROWS,)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_bad_guarded_value_is_one_rejected_record_after_the_plain_cast_failed(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str, boxed: None) -> None:
    folder = allowed_folder(conn, tmp_path)
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, fmt, bad=3), "1",
                                                {"max_rejects": 1}, "boxes"))
    assert row["status"] == "succeeded", row["error"]
    assert [r[0] for r in conn.execute("SELECT id FROM boxes ORDER BY id")] == [1, 2, 4, 5, 6]
    rejects = conn.execute("SELECT line, reason FROM pgjobs.import_rejects").fetchall()
    assert len(rejects) == 1 and rejects[0][0] == (4 if fmt == "csv" else 3), rejects
    assert 'column "tags"' in rejects[0][1], rejects


@pytest.mark.parametrize("state", ["P0001", "42501", "XX000"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_error_of_the_table_still_fails_the_job_after_the_plain_cast_failed(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str, state: str, boxed: None) -> None:
    """A trigger's error, of any code (XX000 too, hstore's own code for a bad
    value), is the table's: tried again through the guards, which read every
    value as good, it fails the job, whatever max_rejects; no record is
    rejected and no row stays."""
    conn.execute(f"""CREATE FUNCTION boxes_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                         IF NEW.id = 3 THEN
                             RAISE EXCEPTION 'boxes refuse 3' USING ERRCODE = '{state}';
                         END IF;
                         RETURN NEW;
                     END $$""")
    conn.execute("CREATE TRIGGER boxes_refuse BEFORE INSERT ON boxes "
                 "FOR EACH ROW EXECUTE FUNCTION boxes_refuse()")
    folder = allowed_folder(conn, tmp_path)
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, fmt), "1",
                                                {"max_rejects": 10}, "boxes"))
    assert row["status"] == "failed", row
    assert "boxes refuse 3" in row["error"], row["error"]
    assert conn.execute("SELECT count(*) FROM pgjobs.import_rejects").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM boxes").fetchone() == (0,)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_failed_plain_statement_leaves_nothing_and_a_triggers_data_error_is_one_reject(
        conn: Conn, dsn: str, tmp_path: Path, fmt: str, boxed: None) -> None:
    """A bad hstore (record 3) fails the plain statement after a BEFORE
    trigger had written an audit row for records 1 and 2 and drawn from a
    sequence: all of it rolls back with the statement (the audit holds one
    row per stored record, each once). A trigger's data exception (class 22,
    record 5) is that record's rejection, as through the guards before the
    plain cast was tried first; the sequence only ever skips numbers."""
    conn.execute("CREATE SEQUENCE audit_n")
    conn.execute("CREATE TABLE audit (id bigint, n bigint)")
    conn.execute("""CREATE FUNCTION boxes_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                         IF NEW.id = 5 THEN
                             RAISE EXCEPTION 'boxes refuse 5' USING ERRCODE = '22012';
                         END IF;
                         INSERT INTO public.audit VALUES (NEW.id, nextval('public.audit_n'));
                         RETURN NEW;
                     END $$""")
    conn.execute("CREATE TRIGGER boxes_audit BEFORE INSERT ON boxes "
                 "FOR EACH ROW EXECUTE FUNCTION boxes_audit()")
    folder = allowed_folder(conn, tmp_path)
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, fmt, bad=3), "1",
                                                {"max_rejects": 10}, "boxes"))
    assert row["status"] == "succeeded", row["error"]
    stored = [r[0] for r in conn.execute("SELECT id FROM boxes ORDER BY id")]
    assert stored == [1, 2, 4, 6]
    assert [r[0] for r in conn.execute("SELECT id FROM audit ORDER BY id")] == stored
    numbers = [r[0] for r in conn.execute("SELECT n FROM audit ORDER BY id")]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    rejects = conn.execute("SELECT line, reason FROM pgjobs.import_rejects ORDER BY line"
                           ).fetchall()
    first = 1 if fmt == "csv" else 0
    assert [r[0] for r in rejects] == [3 + first, 5 + first], rejects
    assert 'column "tags"' in rejects[0][1] and "boxes refuse 5" in rejects[1][1], rejects
    assert row["result"]["rows"] == len(stored), row["result"]
