"""The read for suspects evaluates every CHECK of every record; the database
stops at a record's first refusal (NOT NULL before the CHECKs, the CHECKs in
name order). A CHECK that raises an error of its own (a function raising
P0001 for a value) on a record the database refuses for an earlier reason
failed the read, the batch and the job, where one record a batch rejects
that record with the database's reason (h78 review of h75: since h75 every
batch sent with its records is read first). An error at a record of the read
makes it a suspect: the database decides it alone, and a record whose CHECK
raises there fails the job as one record a batch does. Lock-in: a CHECK
function raising a data exception (22023), which the read took before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allow, import_outcome, run_in_batches, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

HEADER = "id,name,qty,code\n"
LINES = 12
# The record refused (record 9): what it holds, and the database's reason.
CASES = {
    "not_null": ({"name": "", "code": "boom"}, 'null value in column "name"'),
    "check_before": ({"qty": "-1", "code": "boom"}, '"a_qty"'),
    "data_exception": ({"name": "", "code": "bang"}, 'null value in column "name"'),
    "raises_alone": ({"code": "bang"}, "bang refused"),
}


def source(case: str, at: int) -> str:
    out = [HEADER]
    for n in range(1, LINES + 1):
        values = {"id": str(n), "name": f"p{n:02d}", "qty": str(n), "code": "ok"}
        if n == 3:
            values["qty"] = "x"  # refused: so later batches are sent with their records
        if n == at:
            values.update(CASES[case][0])
        out.append(",".join(values[k] for k in HEADER.strip().split(",")) + "\n")
    return "".join(out)


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    conn.execute("""CREATE FUNCTION code_ok(p text) RETURNS boolean LANGUAGE plpgsql
                    IMMUTABLE AS $$
                    BEGIN
                        IF p = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;
                        IF p = 'bang' THEN
                            RAISE EXCEPTION 'bang refused' USING ERRCODE = '22023';
                        END IF;
                        RETURN true;
                    END $$""")
    build_target(conn, "coded", """
            id bigint NOT NULL,
            scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            name text NOT NULL,
            qty integer CONSTRAINT a_qty CHECK (qty > 0),
            code text CONSTRAINT b_code CHECK (code_ok(code))""", index="unique")
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    return path


def outcome(conn: Conn, job_id: int) -> dict[str, Any]:
    return import_outcome(conn, job_id, "SELECT id, name, qty, code FROM coded "
                                        "WHERE scope = %s ORDER BY id")


@pytest.mark.parametrize("at", [9, LINES])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_check_that_raises_in_the_read_leaves_the_verdict_to_the_database(
        conn: Conn, dsn: str, folder: Path, tmp_path: Path, case: str, at: int) -> None:
    body = source(case, at)
    path = folder / "coded.csv"
    path.write_text(body)
    uri = f"file://{path}"
    ref = submit_import(conn, uri, "9", {"max_rejects": 100}, target="coded")
    run_in_batches(dsn, ref, tmp_path / "store", 1)
    want = outcome(conn, ref)
    conn.execute("DELETE FROM coded WHERE scope = 9")
    # (One record a batch read its record for suspects too, failing alike
    # before: the database's verdict, as COPY gives it, is written here.)
    assert want["status"] == "succeeded", want["error"]
    assert [r[0] for r in want["rejects"]] == [4, at + 1]
    assert CASES[case][1] in want["rejects"][1][1], want["rejects"]
    assert [r[0] for r in want["rows"]] == [n for n in range(1, LINES + 1) if n not in (3, at)]
    record = len(body.splitlines(keepends=True)[1])
    for scope, batch in enumerate([len(body), len(HEADER) + 5 * record], 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 100}, target="coded")
        run_in_batches(dsn, job_id, tmp_path / "store", batch)
        assert outcome(conn, job_id) == want, batch
