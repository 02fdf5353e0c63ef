"""A suspect the database accepts keeps its place in line (h78 review of h75).

On a plain table the batch's suspects (pgjobs._import_suspects) are tried
alone, before the records ahead of them are written. The read also takes
records the database accepts: a string with trailing spaces past the
column's length (varchar(3), a domain over varchar(3), varchar(3)[] given
'ab' and three spaces), which the assignment cuts and the read, casting
string types without their length, compares as changed. Such a record
tried alone was refused for a reason that depends on the rows before it:
a foreign key to a record earlier in the same batch (a parent and its
child in one file). It was rejected with 23503, which one
record a batch (and COPY) accepts. Since h75 every batch sent with its
records goes to that read first, so a batch after one with a refused record
lost such a child with no bad record of its own; before h75 only a batch with
a refused record did.

Each case compares to the reference of one record a batch: a refused record
at line 4 (so later batches are sent with their records) and, later, a child
of the record before it written with a value the read takes as suspect. One
batch for the whole file and batches of 5 records (the child in the second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allow, import_outcome, run_in_batches, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

HEADER = "id,name,code,label,tag,tags,amount,at,parent\n"
GOOD = {"code": "abc", "label": "abc", "tag": "abc", "tags": "{abc}", "amount": "1.50",
        "at": "2024-01-01 00:00:00"}
# A value the database accepts (the assignment cuts a string's trailing
# spaces to the column's length) that the read for suspects takes as
# changed by the cast (it reads string types without their length). And
# lock-in: char(3) (whose values compare without trailing spaces),
# numeric(5,2) and timestamp(0) (which the read casts with their scale,
# rounded as the assignment rounds them): not suspects.
ROUNDED = {"varchar": {"code": "ab   "}, "char": {"label": "ab   "},
           "domain": {"tag": "ab   "}, "array": {"tags": '"{""ab   "",c}"'},
           "numeric": {"amount": "1.234"}, "timestamp": {"at": "2024-01-01 00:00:00.6"}}
LINES = 12
BAD_AT, CHILD_AT = 3, 9  # records (line = record + 1)


def source(kind: str, child_at: int) -> str:
    out = [HEADER]
    for n in range(1, LINES + 1):
        values = {"id": str(n), "name": f"p{n:02d}", **GOOD, "parent": ""}
        if n == BAD_AT:
            values["code"] = "toolong"  # refused: 22001
        if n == child_at:
            values.update(ROUNDED[kind], parent=str(n - 1))
        out.append(",".join(values[k] for k in HEADER.strip().split(",")) + "\n")
    return "".join(out)


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    conn.execute("CREATE DOMAIN short AS varchar(3) CHECK (VALUE <> 'zzz')")
    build_target(conn, "tree", """
            id bigint NOT NULL,
            scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            name text NOT NULL,
            code varchar(3),
            label char(3),
            tag short,
            tags varchar(3)[],
            amount numeric(5,2),
            at timestamp(0),
            parent bigint""", index="unique")
    conn.execute("ALTER TABLE tree ADD FOREIGN KEY (scope, parent) REFERENCES tree (scope, id)")
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    return path


def outcome(conn: Conn, job_id: int) -> dict[str, Any]:
    return import_outcome(conn, job_id, "SELECT id, name, code, label, tag, tags, amount, at, "
                                        "parent FROM tree WHERE scope = %s ORDER BY id")


@pytest.mark.parametrize("child_at", [CHILD_AT, LINES])
@pytest.mark.parametrize("kind", sorted(ROUNDED))
def test_a_suspect_the_database_accepts_lands_after_the_records_before_it(
        conn: Conn, dsn: str, folder: Path, tmp_path: Path, kind: str,
        child_at: int) -> None:
    body = source(kind, child_at)
    path = folder / "tree.csv"
    path.write_text(body)
    uri = f"file://{path}"
    ref = submit_import(conn, uri, "9", {"max_rejects": 100}, target="tree")
    assert run_in_batches(dsn, ref, tmp_path / "store", 1) == "succeeded"
    want = outcome(conn, ref)
    conn.execute("DELETE FROM tree WHERE scope = 9")
    assert [r[0] for r in want["rejects"]] == [BAD_AT + 1]
    assert len(want["rows"]) == LINES - 1
    record = len(body.splitlines(keepends=True)[1])
    for scope, batch in enumerate([len(body), len(HEADER) + 5 * record], 1):
        job_id = submit_import(conn, uri, str(scope), {"max_rejects": 100}, target="tree")
        assert run_in_batches(dsn, job_id, tmp_path / "store", batch) == "succeeded"
        assert outcome(conn, job_id) == want, batch
