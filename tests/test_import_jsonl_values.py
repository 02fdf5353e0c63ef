"""A JSONL record is judged by the JSON that PostgreSQL's jsonb reads, not by
Python's: a line Python reads and jsonb refuses (NaN, Infinity, a number out of
numeric's range, \\u0000, a lone UTF-16 surrogate escape) was staged, failed
the whole batch when cast to jsonb and failed the job (22P05, 22P02, 22003),
whatever max_rejects said; one that jsonb reads and Python refused (an integer
of more than 4300 digits) was rejected. Every line here is judged as jsonb
judges it (the reference: the line cast to jsonb by the server): imported, or
rejected and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

TRICKY = [
    '{"name": "nul", "age": 1, "note": "\\u0000"}',
    '{"name": "nul-key", "age": 2, "\\u0000": 1}',
    '{"name": "high", "age": 3, "note": "\\ud800"}',
    '{"name": "low", "age": 4, "note": "x\\udfffy"}',
    '{"name": "upper", "age": 5, "note": "\\uD834"}',
    '{"name": "nan", "age": 6, "x": NaN}',
    '{"name": "inf", "age": 7, "x": [Infinity]}',
    '{"name": "-inf", "age": 8, "x": {"y": -Infinity}}',
    '{"name": "huge", "age": 9, "x": 1e1000000}',
    '{"name": "tiny", "age": 10, "x": 1e-1000000}',
    '{"name": "scale", "age": 11, "x": 0.' + "0" * 16383 + '1}',
    # A zero's exponent past numeric's bound (INT_MAX / 2), which Python reads as 0.0:
    '{"name": "zero-huge-exp", "age": 19, "x": 0e1073741823}',
    '{"name": "-zero-huge-exp", "age": 20, "x": [-0.0E+2147483648]}',
    '{"name": "zero-long-exp", "age": 21, "x": 0e00000000000000000000001073741824}',
    # Read by both:
    '{"name": "pair", "age": 12, "note": "\\ud83d\\ude00"}',
    '{"name": "escaped", "age": 13, "note": "\\\\u0000"}',
    '{"name": "big-int", "age": 14, "x": 1' + "0" * 5000 + '}',
    '{"name": "big-exp", "age": 15, "x": 1e1001}',
    '{"name": "zero-exp", "age": 16, "x": 0e5000}',
    '{"name": "fine-scale", "age": 17, "x": 0.' + "0" * 16381 + '1}',
    '{"name": "plain", "age": 18, "x": -0.5e-3}',
    '{"name": "zero-big-exp", "age": 22, "x": 0e1073741822}',
    '{"name": "zero-long-exp-fine", "age": 23, "x": 0e000000000000000000000012}',
]


def _jsonb_reads(conn: Conn, line: str) -> bool:
    try:
        with conn.transaction():
            conn.execute("SELECT %s::jsonb", (line,))
        return True
    except psycopg.Error as exc:
        if not str(exc.sqlstate).startswith("22"):
            raise
        return False


def _age(line: str) -> int:
    """The line's age (its other numbers may be past what Python converts)."""
    return int(json.loads(line, parse_int=lambda t: int(t) if len(t) < 20 else 0)["age"])


@pytest.mark.parametrize("batch", [None, 128], ids=["one_batch", "many_batches"])
def test_jsonl_records_are_judged_as_jsonb_judges_them(
        conn: Conn, dsn: str, tmp_path: Path, batch: int | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    good = [line for line in TRICKY if _jsonb_reads(conn, line)]
    assert 0 < len(good) < len(TRICKY)
    path = src / "in.jsonl"
    path.write_text("".join(line + "\n" for line in TRICKY), encoding="utf-8")
    if batch:
        monkeypatch.setenv("PGJOBS_IMPORT_DELAYS", f"bytes={batch}")
    job_id = submit_import(conn, f"file://{path}",
                           options={"format": "jsonl", "max_rejects": len(TRICKY)})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    imported = sorted(r[0] for r in conn.execute("SELECT age FROM people"))
    assert imported == sorted(_age(line) for line in good)
    result = row["result"]
    assert (result["rows"], result["rejected"], result["records"]) == (
        len(good), len(TRICKY) - len(good), len(TRICKY))
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == [n for n, line in enumerate(TRICKY, 1) if line not in good]


def test_without_max_rejects_the_first_such_record_fails_the_job_naming_its_line(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    make_people(conn)
    src = allowed_folder(conn, tmp_path)
    path = src / "in.jsonl"
    path.write_text('{"name": "a", "age": 1}\n{"name": "b", "age": 2, "x": NaN}\n',
                    encoding="utf-8")
    job_id = submit_import(conn, f"file://{path}", options={"format": "jsonl"})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["error"].startswith("line 2: invalid JSON"), row
