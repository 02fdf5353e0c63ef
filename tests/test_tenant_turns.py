"""Turns between tenants at submit, and where they must not apply
(pgjobs._insert_job_row). Claims go by priority, then queued_at. An export or
an import runs to its end once claimed, so a tenant that queued a burst of
them held a worker's slots until the burst was done: one submitted while
exports or imports of its (target, scope) are due and pending queues an hour
after the latest of them (exports alone did, tests/test_export_turns.py;
imports share the worker's queue and the turns). The runner's kinds do not
take such turns: a job handed back at the end of a budget queues again at
now(), ahead of any turn an hour away, so another tenant's second delete
would wait behind a multi-million-row delete; the budget's round-robin
serves them. No timings: the claim order alone is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allow, make_people, scalar, submit_export, submit_import

Conn = psycopg.Connection[Any]


@pytest.fixture
def rows(conn: Conn) -> None:
    """`rows`: tenants 1-4 with 120 rows each, registered."""
    conn.execute("""
        CREATE TABLE rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           table_id int NOT NULL, data jsonb NOT NULL DEFAULT '{}',
                           created_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO rows (table_id, data)
        SELECT t, jsonb_build_object('n', i)
          FROM generate_series(1, 4) t, generate_series(1, 120) i;
        CREATE INDEX rows_scope_key ON rows (table_id, id);
        ANALYZE rows;
        SELECT pgjobs.register_target('rows', 'id', 'table_id', 'created_at', 'data');
    """)


def _delete(conn: Conn, scope: str, n: int | None = None, **options: Any) -> int:
    where = {"n": n} if n is not None else {}
    return int(scalar(conn, "SELECT pgjobs.submit_delete('rows', %s, %s::jsonb, '{}', %s::jsonb)",
                      (scope, json.dumps(where), json.dumps(options))))


def _run_small_budgets(conn: Conn, jobs: list[int], calls: int = 3000) -> list[int]:
    """CALL pgjobs.run with budgets of a few milliseconds (a page or two a
    call) until every job ended; the jobs in the order they ended."""
    order: list[int] = []
    for _ in range(calls):
        conn.execute("CALL pgjobs.run('5 milliseconds')")
        ended = [r[0] for r in conn.execute(
            "SELECT id FROM pgjobs.jobs WHERE id = ANY (%s) "
            "AND status NOT IN ('queued', 'running') ORDER BY finished_at, id", (jobs,))]
        order += [j for j in ended if j not in order]
        if len(order) == len(jobs):
            return order
    raise AssertionError(f"jobs not done after {calls} calls: {order} of {jobs}")


@pytest.mark.usefixtures("rows")
def test_a_tenants_second_delete_does_not_wait_behind_another_tenants_big_one(
        conn: Conn) -> None:
    """The big delete is handed back at every budget and queues again at
    now(): a turn an hour away for tenant 1's second delete would keep it
    behind the big one to its end."""
    conn.execute("INSERT INTO rows (table_id) SELECT 4 FROM generate_series(1, 3000)")
    big = _delete(conn, "4", page_size=50)
    conn.execute("CALL pgjobs.run('5 milliseconds')")  # started, handed back
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (big,)) == "queued"
    first = _delete(conn, "1", 1)
    second = _delete(conn, "1", 2)
    order = _run_small_budgets(conn, [big, first, second])
    assert order.index(first) < order.index(second) < order.index(big), order


@pytest.mark.usefixtures("rows")
def test_another_queues_turns_do_not_push_a_tenants_first_job(conn: Conn) -> None:
    """A tenant's pending export does not delay its first delete, nor its
    pending delete its first export: other workers claim them."""
    export = submit_export(conn, "1", target="rows")
    delete = _delete(conn, "1", 1)
    export_after = submit_export(conn, "1", target="rows")
    for job_id in (export, delete):
        assert scalar(conn, "SELECT queued_at <= now() FROM pgjobs.jobs WHERE id = %s",
                      (job_id,))
    assert scalar(conn, "SELECT queued_at > now() + interval '59 minutes' "
                        "FROM pgjobs.jobs WHERE id = %s", (export_after,))


def test_a_tenants_imports_and_exports_share_its_turns(conn: Conn, tmp_path: Path) -> None:
    """A worker with one slot claims export and import alike: a tenant's
    burst of imports lets another tenant's import go second."""
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.csv").write_text("name,age\nx,1\n")
    burst = [submit_import(conn, f"file://{tmp_path}/{name}.csv", "1") for name in "abc"]
    other = submit_import(conn, f"file://{tmp_path}/d.csv", "2")
    order = []
    while row := conn.execute("SELECT id, worker FROM pgjobs.claim(ARRAY['export', 'import'], "
                              "'w', '30 seconds', 1)").fetchone():
        order.append(int(row[0]))  # ended before the next claim: one slot
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s, '{}')", (row[0], row[1])) is True
    assert order == [burst[0], other, *burst[1:]]


def test_an_export_after_a_pending_import_of_its_scope_takes_its_turn(
        conn: Conn, tmp_path: Path) -> None:
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    (tmp_path / "a.csv").write_text("name,age\nx,1\n")
    pending = submit_import(conn, f"file://{tmp_path}/a.csv", "1")
    export = submit_export(conn, "1", target="people")
    other = submit_export(conn, "2", target="people")
    order = [int(r[0]) for r in conn.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['export', 'import'], 'w', '30 seconds', 3)")]
    assert order == [pending, other, export]


