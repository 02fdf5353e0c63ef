"""A value a Parquet column cannot hold fails the export naming it, with a hint.

An infinite date or timestamp, or NaN in a numeric(p,s) column (a Parquet
decimal), has no Parquet form. A Parquet export of such a row failed with the
conversion's own words and no hint: `cannot subtract infinite dates`,
`cannot convert infinity to bigint` (0A000), pyarrow's `The string 'NaN' is
not a valid decimal128 number` (no SQLSTATE) (found in the hX pass). It now
fails for good with the column, the value, a SQLSTATE (22008, 22003) and a
hint (csv or jsonl, or a filter that leaves those rows out); scopes without
such a value, and NULLs, export as before.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import build_target, job, run_export, submit_export

Conn = psycopg.Connection[Any]

pq = pytest.importorskip("pyarrow.parquet")

COLUMNS = {"d": "date", "tz": "timestamptz", "ts": "timestamp", "n": "numeric(8,2)",
           "w": "numeric(40,3)"}
# scope -> (column, value, SQLSTATE)
BAD = {2: ("d", "infinity", "22008"), 3: ("d", "-infinity", "22008"),
       4: ("tz", "infinity", "22008"), 5: ("ts", "-infinity", "22008"),
       6: ("n", "NaN", "22003"), 7: ("w", "NaN", "22003")}


@pytest.fixture
def target(conn: Conn) -> str:
    build_target(conn, "odd", "id bigint NOT NULL, scope int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour', "
                 + ", ".join(f"{c} {t}" for c, t in COLUMNS.items()))
    conn.execute("INSERT INTO odd (id, scope, d, tz, ts, n, w) VALUES "
                 "(1, 1, '2020-01-02', '2020-01-02 03:04:05+00', '2020-01-02 03:04:05', 1.5, 2),"
                 "(2, 1, NULL, NULL, NULL, NULL, NULL)")
    for scope, (column, value, _) in BAD.items():
        conn.execute(f"INSERT INTO odd (id, scope, {column}) VALUES (1, %s, %s)", (scope, value))
        conn.execute("INSERT INTO odd (id, scope, d) VALUES (2, %s, '2021-01-01')", (scope,))
    return "odd"


@pytest.mark.parametrize("scope", sorted(BAD))
def test_a_value_parquet_cannot_hold_fails_naming_it(conn: Conn, dsn: str, local_dir: str,
                                                     target: str, scope: int) -> None:
    column, value, sqlstate = BAD[scope]
    job_id = submit_export(conn, str(scope), options={"format": "parquet"}, target=target)
    outcome = run_export(dsn, job_id, local_dir)
    row = job(conn, job_id)
    assert (outcome.status, row["status"]) == ("failed", "failed"), row
    assert row["attempts"] == 1  # not retried: the data says so
    error = row["error"]
    assert f"column {column} holds {value}" in error, error
    assert f"[{sqlstate}]" in error and "hint:" in error and "jsonl" in error, error


def test_scopes_without_such_a_value_export_as_before(conn: Conn, dsn: str, local_dir: str,
                                                      target: str) -> None:
    """The guard decides per row: a scope whose rows hold ordinary values and NULLs
    exports every row (a guard evaluated as the query is planned failed them all)."""
    job_id = submit_export(conn, "1", options={"format": "parquet"}, target=target)
    assert run_export(dsn, job_id, local_dir).status == "succeeded", job(conn, job_id)["error"]
    result = job(conn, job_id)["result"]
    path = result["uris"][0].removeprefix("file://")
    table = pq.read_table(path).to_pylist()
    assert [r["id"] for r in table] == [1, 2]
    assert str(table[0]["d"]) == "2020-01-02" and str(table[0]["n"]) == "1.50"
    assert all(table[1][c] is None for c in COLUMNS)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_still_carry_them(conn: Conn, dsn: str, local_dir: str, target: str,
                                        fmt: str) -> None:
    for scope in sorted(BAD):
        job_id = submit_export(conn, str(scope), options={"format": fmt}, target=target)
        assert run_export(dsn, job_id, local_dir).status == "succeeded"
        assert job(conn, job_id)["result"]["rows"] == 2
