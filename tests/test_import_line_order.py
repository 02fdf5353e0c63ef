"""A JSONL import acts on its records in line order, whatever keys each names.

pgjobs.import_batch inserts a JSONL batch with one statement per set of keys
(a missing key takes its default). It used to take each set's records
together, in the order each set was first met: with `on_duplicate: update`,
`{"id": 1, "name": "a"}`, `{"id": 1, "name": "b", "age": 3}`, `{"id": 1,
"name": "c"}` left the row as line 2 said (name "b"), not as the last line
did; `skip` kept a record other than the first of its key, and `error`
rejected the wrong line (found in the hX pass). The result is checked here
against a reference that applies the records one by one, in line order, as
a reader of the file expects.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]


def reference(records: list[dict[str, Any]], mode: str) -> tuple[dict[int, dict[str, Any]],
                                                                  list[int], int, int, int]:
    """Rows by id (name, age), the rejected lines, inserted, updated and skipped
    counts, as the records applied one by one in line order give them (with
    update, a record naming only the key has nothing to write: skipped)."""
    rows: dict[int, dict[str, Any]] = {}
    rejected: list[int] = []
    inserted = updated = skipped = 0
    for line, record in enumerate(records, 1):
        key = record["id"]
        given = {k: v for k, v in record.items() if k != "id"}
        if key not in rows:
            rows[key] = {"name": None, "age": None, **given}
            inserted += 1
        elif mode == "update" and given:
            rows[key].update(given)
            updated += 1
        elif mode == "error":
            rejected.append(line)
        else:
            skipped += 1
    return rows, rejected, inserted, updated, skipped


def run_import(conn: Conn, dsn: str, folder: Path, name: str, records: list[dict[str, Any]],
               mode: str, scope: str) -> dict[str, Any]:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", scope,
                           {"on_duplicate": mode, "max_rejects": len(records)})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    return row


def check(conn: Conn, row: dict[str, Any], records: list[dict[str, Any]], mode: str,
          scope: str) -> None:
    rows, rejected, inserted, updated, skipped = reference(
        [dict(r, id=int(r["id"])) for r in records], mode)
    got = {r[0]: {"name": r[1], "age": r[2]} for r in conn.execute(
        "SELECT id, name, age FROM people WHERE tenant = %s", (int(scope),))}
    assert got == rows
    result = row["result"]
    assert (result["inserted"], result["updated"]) == (inserted, updated), result
    assert result["skipped"] == skipped, result
    assert result["rejected"] == len(rejected), result
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line",
        (row["id"],))]
    assert lines == rejected


@pytest.mark.parametrize("mode", ["update", "skip", "error"])
def test_the_last_record_of_a_key_wins_across_sets_of_keys(conn: Conn, dsn: str,
                                                           tmp_path: Path, mode: str) -> None:
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    records = [{"id": 1, "name": "a"}, {"id": 1, "name": "b", "age": 3},
               {"id": 1, "name": "c"}, {"id": 2, "name": "x", "age": 1},
               {"id": 2, "name": "y"}, {"id": 3, "age": 9}, {"id": 2, "age": 5},
               # one key spelt three ways, in three sets of keys
               {"id": 4, "name": "p"}, {"id": "04", "name": "q", "age": 2},
               {"id": " 4 ", "age": 7}]
    row = run_import(conn, dsn, folder, "order.jsonl", records, mode, "1")
    check(conn, row, records, mode, "1")


@pytest.mark.parametrize("mode", ["update", "skip", "error"])
@pytest.mark.parametrize("seed", range(4))
def test_random_key_sets_match_line_order(conn: Conn, dsn: str, tmp_path: Path, mode: str,
                                          seed: int) -> None:
    """Records of a few keys, each naming a random subset of the fields (so sets
    of keys interleave), with the key given as a number or a string."""
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for line in range(1, 301):
        record: dict[str, Any] = {"id": rng.randint(1, 12)}
        if rng.random() < 0.5:
            record["name"] = f"n{line}"
        if rng.random() < 0.5:
            record["age"] = line
        records.append(record)
    row = run_import(conn, dsn, folder, f"r{seed}.jsonl",
                     [dict(r, id=str(r["id"])) if i % 3 == 0 else r
                      for i, r in enumerate(records)], mode, "2")
    check(conn, row, records, mode, "2")


def test_records_without_the_key_still_go_in_by_set(conn: Conn, dsn: str,
                                                    tmp_path: Path) -> None:
    """No record names the key: each gets a new one, none meets another, and
    every record lands (identity keys are assigned set by set, as documented)."""
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    records = [{"name": f"n{i}"} if i % 2 else {"name": f"n{i}", "age": i} for i in range(40)]
    path = folder / "nokey.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", "3")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    assert job(conn, job_id)["result"]["inserted"] == 40
    got = sorted(r[0] for r in conn.execute("SELECT name FROM people WHERE tenant = 3"))
    assert got == sorted(r["name"] for r in records)
