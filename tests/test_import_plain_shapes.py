"""Lock-in (h78 review of h75): on a plain table the import reads a batch sent
with its records for suspects before writing it, tries each alone and writes
the others in one INSERT. Refusals the read cannot see (a duplicate key in
the batch or against a row already there, an exclusion constraint, a foreign
key to a missing row, a CHECK on a generated column) and a file whose every
record is refused end as one record a batch: the rows, the rejects (line,
the database's reason, record), the counts, and with max_rejects at the
number of refused records and one below it, the same failure at the same
line. Record 2 is refused by a cast, so every later batch is sent with its
records; batches of one record are the reference, compared with the whole
file in one batch and with batches of 4 records. Found nothing: kept as
lock-in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allow, import_outcome, job, run_in_batches, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

HEADER = "id,name,qty,lo,parent\n"
LINES = 14
# Records refused (beyond record 2) and what each holds.
SHAPES: dict[str, dict[int, dict[str, str]]] = {
    "duplicate_in_batch": {6: {"name": "p05"}, 7: {"name": "p01"}, LINES: {"name": "p13"}},
    "duplicate_existing": {1: {"name": "old"}, 9: {"name": "old"}},
    "exclusion": {5: {"lo": "40"}, 10: {"lo": "10"}, LINES: {"lo": "132"}},
    "foreign_key": {4: {"parent": "999"}, 10: {"parent": "998"}},  # (12: its parent 11)
    "generated_check": {3: {"qty": "60"}, 8: {"qty": "70"}, LINES: {"qty": "51"}},
    "every_record": {n: {"qty": "x"} for n in range(1, LINES + 1)},
}


def source(shape: str) -> str:
    out = [HEADER]
    for n in range(1, LINES + 1):
        values = {"id": str(n), "name": f"p{n:02d}", "qty": str(n), "lo": str(n * 10),
                  "parent": ""}
        if n == 2:
            values["qty"] = "two"
        if n == 12:
            values["parent"] = "11"
        values.update(SHAPES[shape].get(n, {}))
        out.append(",".join(values[k] for k in HEADER.strip().split(",")) + "\n")
    return "".join(out)


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    build_target(conn, "shaped", """
            id bigint NOT NULL,
            scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            name text NOT NULL,
            qty integer,
            twice integer GENERATED ALWAYS AS (qty * 2) STORED CHECK (twice <= 100),
            lo integer,
            parent bigint,
            EXCLUDE USING gist (int4range(lo, lo + 5) WITH &&)""", index="unique")
    conn.execute("CREATE UNIQUE INDEX shaped_name ON shaped (scope, name)")
    conn.execute("ALTER TABLE shaped ADD FOREIGN KEY (scope, parent) "
                 "REFERENCES shaped (scope, id)")
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    return path


def outcome(conn: Conn, job_id: int) -> dict[str, Any]:
    found = import_outcome(conn, job_id, "SELECT id, name, qty, lo, parent FROM shaped "
                                         "WHERE scope = %s AND name <> 'old' ORDER BY id")
    conn.execute("DELETE FROM shaped WHERE scope = %s AND name <> 'old'",
                 (int(job(conn, job_id)["scope"]),))
    return found


@pytest.mark.parametrize("below", [0, 1])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_plain_table_refuses_as_one_record_a_batch(
        conn: Conn, dsn: str, folder: Path, tmp_path: Path, shape: str, below: int) -> None:
    body = source(shape)
    path = folder / "shaped.csv"
    path.write_text(body)
    uri = f"file://{path}"
    for scope in (1, 2, 9):
        conn.execute("INSERT INTO shaped (id, scope, name, lo) VALUES (1000, %s, 'old', %s)",
                     (scope, -1000 * scope))
    refused = len({2, *SHAPES[shape]})
    options = {"max_rejects": refused - below}
    ref = submit_import(conn, uri, "9", options, target="shaped")
    run_in_batches(dsn, ref, tmp_path / "store", 1)
    want = outcome(conn, ref)
    assert want["status"] == ("succeeded" if not below else "failed"), want["error"]
    assert len(want["rejects"]) >= refused - below
    record = len(body.splitlines(keepends=True)[1])
    for scope, batch in enumerate([len(body), len(HEADER) + 4 * record], 1):
        job_id = submit_import(conn, uri, str(scope), options, target="shaped")
        run_in_batches(dsn, job_id, tmp_path / "store", batch)
        got = outcome(conn, job_id)
        if below:  # (the rows of the batches before the failing one stay)
            got["rows"] = want["rows"] = None
            got["counts"] = want["counts"] = None
        assert got == want, batch
