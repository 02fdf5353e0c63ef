"""A JSON Lines record whose composite value (a JSON object read as the
type's fields) names a field twice is one rejected record naming the column
and the field, as a record naming a column twice is (the worker's
_jsonl_problem): which value is meant is not clear, and PostgreSQL's
json(b)_to_record took the last without a word. At any depth the type holds
a composite (in an array, in another composite); never inside a json or
jsonb field, whose value keeps its own keys as those types do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]


@pytest.fixture
def comps(conn: Conn) -> None:
    conn.execute("CREATE TYPE pt AS (x integer, y integer, j json, jb jsonb, d double precision)")
    conn.execute("CREATE TYPE seg AS (a pt, label text)")
    build_target(conn, "comps", """id bigint NOT NULL, tenant integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(), p pt, s seg, ps pt[]""",
                 scope="tenant")


def _import(conn: Conn, dsn: str, tmp_path: Path, lines: list[str],
            max_rejects: int = 10) -> dict[str, Any]:
    folder = allowed_folder(conn, tmp_path)
    path = folder / "in.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": max_rejects}, "comps")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job(conn, job_id)


DUPES = {
    "top": '{"id": 2, "p": {"x": 1, "x": 2, "y": 3}}',
    "nested": '{"id": 2, "s": {"a": {"x": 1, "y": 2, "y": 5}, "label": "l"}}',
    "in_array": '{"id": 2, "ps": [{"x": 1}, {"x": 1, "y": 2, "x": 9}]}',
    "exact_column": '{"id": 2, "p": {"d": 1.5, "x": 1, "d": -0.0}}',
    # the array's next dimensions: [[{..}]] reads as a two-dimensional array
    "two_dims": '{"id": 2, "ps": [[{"x": 1}], [{"x": 1, "y": 2, "x": 9}]]}',
    "three_dims": '{"id": 2, "ps": [[[{"x": 1}]], [[{"y": 1, "x": 2, "x": 9}]]]}',
    # a key spelled with an escape is the same key
    "escaped": '{"id": 2, "p": {"x": 1, "\\u0078": 2}}',
    "escaped_nested": '{"id": 2, "s": {"a": {"y": 1, "\\u0079": 2}, "label": "l"}}',
}


@pytest.mark.parametrize("where", list(DUPES))
def test_a_composite_naming_a_field_twice_is_one_rejected_record(
        conn: Conn, dsn: str, tmp_path: Path, where: str, comps: None) -> None:
    row = _import(conn, dsn, tmp_path, ['{"id": 1, "p": {"x": 1, "y": 2}}', DUPES[where],
                                        '{"id": 3, "ps": [{"x": 3}]}'])
    assert row["status"] == "succeeded", row["error"]
    assert [r[0] for r in conn.execute("SELECT id FROM comps ORDER BY id")] == [1, 3]
    rejects = conn.execute("SELECT line, reason FROM pgjobs.import_rejects").fetchall()
    field = {"top": "x", "nested": "y", "in_array": "x", "exact_column": "d", "two_dims": "x",
             "three_dims": "x", "escaped": "x", "escaped_nested": "y"}[where]
    column = {"top": "p", "nested": "s", "in_array": "ps", "exact_column": "p",
              "two_dims": "ps", "three_dims": "ps", "escaped": "p", "escaped_nested": "s"}[where]
    assert rejects == [(2, f'column "{column}": the JSON object names field "{field}" twice')], \
        rejects


def test_without_max_rejects_it_fails_the_job_naming_the_line(
        conn: Conn, dsn: str, tmp_path: Path, comps: None) -> None:
    row = _import(conn, dsn, tmp_path, [DUPES["top"]], max_rejects=0)
    assert row["status"] == "failed", row
    assert 'line 1: column "p": the JSON object names field "x" twice' in row["error"], \
        row["error"]


def test_keys_twice_inside_a_json_or_jsonb_field_are_that_fields_own(
        conn: Conn, dsn: str, tmp_path: Path, comps: None) -> None:
    row = _import(conn, dsn, tmp_path, [
        '{"id": 1, "p": {"x": 1, "j": {"k": 1, "k": 2}, "jb": {"k": 1, "k": 2}}}'])
    assert row["status"] == "succeeded", row["error"]
    assert conn.execute("SELECT (p).j::text, (p).jb::text FROM comps").fetchone() == (
        '{"k": 1, "k": 2}', '{"k": 2}')


def test_a_multidimensional_array_of_composites_without_a_field_twice_imports(
        conn: Conn, dsn: str, tmp_path: Path, comps: None) -> None:
    """The walk into an array's next dimensions rejects only a record that
    names a field twice: these go in with their values."""
    row = _import(conn, dsn, tmp_path, [
        '{"id": 1, "ps": [[{"x": 1, "y": 2}], [{"x": 3, "j": {"k": 1, "k": 2}}]]}',
        '{"id": 2, "ps": [[[{"x": 5}]]]}'])
    assert row["status"] == "succeeded", row["error"]
    assert conn.execute("SELECT id, array_ndims(ps), (ps[1][1]).y, (ps[2][1]).x, "
                        "(ps[2][1]).j::text FROM comps WHERE id = 1").fetchone() == (
        1, 2, 2, 3, '{"k": 1, "k": 2}')
    assert conn.execute("SELECT array_ndims(ps), (ps[1][1][1]).x FROM comps WHERE id = 2"
                        ).fetchone() == (3, 5)
    assert conn.execute("SELECT count(*) FROM pgjobs.import_rejects").fetchone() == (0,)
