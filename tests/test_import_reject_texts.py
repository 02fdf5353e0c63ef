"""A record the database refuses is kept in pgjobs.import_rejects as the worker
read it, whatever its text holds: the worker sends the batch's record texts to
pgjobs.import_batch as one JSON array (a text[] parameter cost about 10 us a
record to adapt, sent for every batch of a source with bad records spread
through it; h75), so quotes, backslashes, braces, commas, a line end inside a
quoted field, tabs and characters beyond ASCII must come back unchanged, for
each way the database refuses a record (a value that does not cast, a CHECK)
and for CSV and JSONL alike. Lock-in: the text[] parameter kept them too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

TEXTS = {
    "quotes": 'say "hi", then \'bye\'',
    "backslash-braces": 'a\\b {x,y} \\N NULL',
    "newline-inside": "two\nlines",
    "tab-and-unicode": "t\tab \u00e9\u4e2d\U0001f600 \u2028",
    "json-like": '["a", {"b": 1}]',
}
REFUSALS = {"check": -1, "cast": "x"}  # age: CHECK (age >= 0); an integer


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("refusal", sorted(REFUSALS))
@pytest.mark.parametrize("text", sorted(TEXTS))
def test_a_refused_record_is_kept_as_read(conn: Conn, dsn: str, tmp_path: Path, fmt: str,
                                          refusal: str, text: str) -> None:
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    bad = REFUSALS[refusal]
    if fmt == "csv":
        records = [f"good{i},{i}\n" for i in range(6)]
        records[3] = f"{csv_field(TEXTS[text])},{bad}\n"
        data = "name,age\n" + "".join(records)
        first_line = 2
    else:
        records = [json.dumps({"name": f"good{i}", "age": i}) + "\n" for i in range(6)]
        records[3] = json.dumps({"name": TEXTS[text], "age": bad}, ensure_ascii=False) + "\n"
        data = "".join(records)
        first_line = 1
    path = src / f"in.{fmt}"
    path.write_bytes(data.encode())
    job_id = submit_import(conn, f"file://{path}", options={"format": fmt, "max_rejects": 5})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert (row["result"]["rows"], row["result"]["rejected"]) == (5, 1)
    kept = conn.execute("SELECT line, record FROM pgjobs.import_rejects WHERE job_id = %s",
                        (job_id,)).fetchall()
    assert [k[0] for k in kept] == [first_line + 3]
    assert kept[0][1] in (records[3], records[3].rstrip("\n")), kept
    names = sorted(r[0] for r in conn.execute("SELECT name FROM people"))
    assert names == [f"good{i}" for i in range(6) if i != 3]
