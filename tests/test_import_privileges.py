"""The submitter's rights, checked again when a job runs, and column-level grants.

The engine (delete, backfill) and the worker (export, import) act on the target
with pgjobs' own rights, on behalf of the role that submitted the job. Whatever
that role lost after the submit (a REVOKE, the role itself, a row-level security
policy that now confines it) stops the job before it touches a row: failed, not
retried, with the privilege named (at the claim, which no longer starts the
attempt: tests/test_requeue_attempts.py; mid-import, at the next batch).
Imports accept column-level INSERT (and, for on_duplicate update, UPDATE)
grants that cover the columns the source writes, and refuse otherwise, naming
the column."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.export import Exporter
from pgjobs.poller.importer import Importer
from tests.support import (
    LOSSES,
    allowed_folder,
    claim_import,
    drop_client,
    job,
    lose_right,
    people_client,
    scalar,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs client role with every privilege on `people` (scope 1 holds 5 rows)."""
    role = people_client(conn, "imp_priv")
    conn.execute("INSERT INTO people (tenant, name, age) "
                  "SELECT 1, 'p' || i, i FROM generate_series(1, 5) i")
    yield role
    drop_client(conn, role)


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    return allowed_folder(conn, tmp_path)


def as_role(conn: Conn, role: str, fn: Callable[[], int]) -> int:
    with acting_as(conn, role):
        return fn()


def snapshot(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, tenant, name, age FROM people ORDER BY id").fetchall()


def run_import(dsn: str, job_id: int, folder: Path, **kw: Any) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
                    **kw).run().status


# --- run-time re-check, every kind the engine or the worker runs --------------------

KINDS = ["delete", "backfill", "export", "import", "import_update"]


def submit(conn: Conn, kind: str, src: Path) -> int:
    if kind == "delete":
        sql, args = ("SELECT pgjobs.submit_delete('people', '1')", ())
    elif kind == "backfill":
        sql, args = ("SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                     (json.dumps({"name": "changed"}),))
    elif kind == "export":
        sql, args = ("SELECT pgjobs.submit_export('people', '1')", ())
    else:
        path = src / f"{kind}.csv"
        path.write_bytes(b"id,name\n1,changed\n100,new\n" if kind == "import_update"
                         else b"name,age\nnew,1\n")
        options = {"on_duplicate": "update"} if kind == "import_update" else {}
        return submit_import(conn, f"file://{path}", "1", options)
    return int(scalar(conn, sql, args))


def lose(conn: Conn, role: str, kind: str, loss: str) -> None:
    privilege = {"delete": "DELETE", "backfill": "UPDATE", "export": "SELECT",
                 "import": "INSERT", "import_update": "UPDATE"}[kind]
    lose_right(conn, role, privilege, loss)


def run(conn: Conn, dsn: str, kind: str, job_id: int, src: Path) -> None:
    """Runs the job as its runner would: the claim first, which fails a job whose
    submitter lost a right (then there is nothing to run)."""
    if kind in ("delete", "backfill"):
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        return
    claim = "claim_export" if kind == "export" else "claim_import"
    claimed = conn.execute(f"SELECT worker FROM pgjobs.{claim}(%s, 'test')",
                           (job_id,)).fetchall()
    if not claimed:
        return
    runner = Exporter if kind == "export" else Importer
    runner(dsn, job_id, claimed[0][0], f"file://{src}/store").run()


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_right_lost_after_submit_fails_the_job_before_it_writes(
        conn: Conn, dsn: str, client: str, src: Path, kind: str, loss: str) -> None:
    job_id = as_role(conn, client, lambda: submit(conn, kind, src))
    before = snapshot(conn)
    lose(conn, client, kind, loss)
    run(conn, dsn, kind, job_id, src)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "permission denied" in row["error"] and client in row["error"], row["error"]
    assert "cannot be started" in row["error"]  # at the claim
    assert row["attempts"] == 0  # none started, none retried: a retry cannot fix it
    assert snapshot(conn) == before
    if kind == "export":
        assert not list((src / "store").rglob("*.csv*")) if (src / "store").exists() else True


@pytest.mark.parametrize("kind", KINDS)
def test_rights_kept_run_as_before(conn: Conn, dsn: str, client: str, src: Path,
                                   kind: str) -> None:
    job_id = as_role(conn, client, lambda: submit(conn, kind, src))
    run(conn, dsn, kind, job_id, src)
    assert job(conn, job_id)["status"] == "succeeded", job(conn, job_id)["error"]


def test_a_grant_revoked_mid_import_stops_it_at_the_next_batch(
        conn: Conn, dsn: str, make_conn: Callable[..., Conn], client: str, src: Path) -> None:
    path = src / "big.csv"
    path.write_bytes(b"name,age\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(2000)))
    job_id = as_role(conn, client, lambda: submit_import(conn, f"file://{path}"))
    admin = make_conn()
    batches: list[int] = []

    def revoke_after_first(records: int, done: int, total: int | None) -> None:
        batches.append(records)
        if len(batches) == 1:
            admin.execute(f"REVOKE INSERT ON people FROM {client}")

    status = run_import(dsn, job_id, src, batch_bytes=4096, on_progress=revoke_after_first)
    row = job(conn, job_id)
    assert status == "failed" and row["status"] == "failed"
    assert "lacks INSERT" in row["error"]
    # The first batch stays (committed while the grant held); nothing after it.
    inserted = scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") - 5
    assert inserted == batches[0] and 0 < inserted < 2000


# --- column-level grants -----------------------------------------------------------


@pytest.fixture
def column_client(conn: Conn, client: str) -> str:
    """The client with INSERT only on (tenant, name) and UPDATE only on (name)."""
    conn.execute(f"REVOKE INSERT, UPDATE ON people FROM {client}")
    conn.execute(f"GRANT INSERT (tenant, name, id) ON people TO {client}")
    conn.execute(f"GRANT UPDATE (name) ON people TO {client}")
    return client


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_column_grants_covering_the_source_are_enough(
        conn: Conn, dsn: str, column_client: str, src: Path, fmt: str) -> None:
    path = src / f"ok.{fmt}"
    path.write_bytes(b"name\nx\ny\n" if fmt == "csv" else b'{"name": "x"}\n{"name": "y"}\n')
    job_id = as_role(conn, column_client, lambda: submit_import(conn, f"file://{path}"))
    assert run_import(dsn, job_id, src) == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people WHERE name IN ('x', 'y')") == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_column_not_granted_fails_the_import_naming_it(
        conn: Conn, dsn: str, column_client: str, src: Path, fmt: str) -> None:
    path = src / f"bad.{fmt}"
    path.write_bytes(b"name,age\nx,1\n" if fmt == "csv"
                     else b'{"name": "x"}\n{"name": "y", "age": 2}\n')
    before = snapshot(conn)
    # max_rejects does not turn a missing privilege into a rejected record.
    job_id = as_role(conn, column_client,
                     lambda: submit_import(conn, f"file://{path}", "1", {"max_rejects": 10}))
    assert run_import(dsn, job_id, src) == "failed"
    row = job(conn, job_id)
    assert "lacks INSERT on column age of public.people" in row["error"], row["error"]
    assert row["attempts"] == 1
    assert snapshot(conn) == before


def test_a_document_field_needs_insert_on_the_document_column(
        conn: Conn, dsn: str, column_client: str, src: Path) -> None:
    path = src / "doc.csv"
    path.write_bytes(b"name,colour\nx,red\n")
    job_id = as_role(conn, column_client, lambda: submit_import(conn, f"file://{path}"))
    assert run_import(dsn, job_id, src) == "failed"
    assert "lacks INSERT on column data of public.people" in job(conn, job_id)["error"]


def test_on_duplicate_update_needs_update_on_the_columns_it_overwrites(
        conn: Conn, dsn: str, column_client: str, src: Path) -> None:
    first = scalar(conn, "SELECT min(id) FROM people WHERE tenant = 1")
    ok = src / "ok.csv"
    ok.write_bytes(b"id,name\n%d,renamed\n" % first)
    job_id = as_role(conn, column_client, lambda: submit_import(
        conn, f"file://{ok}", "1", {"on_duplicate": "update"}))
    assert run_import(dsn, job_id, src) == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT name FROM people WHERE id = %s", (first,)) == "renamed"

    conn.execute(f"GRANT INSERT (age) ON people TO {column_client}")
    bad = src / "bad.csv"
    bad.write_bytes(b"id,name,age\n%d,again,7\n" % first)
    before = snapshot(conn)
    job_id = as_role(conn, column_client, lambda: submit_import(
        conn, f"file://{bad}", "1", {"on_duplicate": "update"}))
    assert run_import(dsn, job_id, src) == "failed"
    assert "lacks UPDATE on column age of public.people" in job(conn, job_id)["error"]
    assert snapshot(conn) == before


def test_submit_needs_insert_on_the_scope_column(conn: Conn, client: str, src: Path) -> None:
    conn.execute(f"REVOKE INSERT, UPDATE ON people FROM {client}")
    conn.execute(f"GRANT INSERT (name, age) ON people TO {client}")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="column tenant"):
        submit_import(conn, f"file://{src}/x.csv")
    conn.execute("RESET ROLE")
    conn.execute(f"GRANT INSERT (tenant) ON people TO {client}")
    conn.execute(f"SET ROLE {client}")
    assert submit_import(conn, f"file://{src}/x.csv") > 0
    # on_duplicate update needs UPDATE on some column
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="UPDATE"):
        submit_import(conn, f"file://{src}/x.csv", "2", {"on_duplicate": "update"})
    conn.execute("RESET ROLE")
    conn.execute(f"GRANT UPDATE (name) ON people TO {client}")
    conn.execute(f"SET ROLE {client}")
    assert submit_import(conn, f"file://{src}/y.csv", "2", {"on_duplicate": "update"}) > 0
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 2


def test_a_csv_column_not_granted_fails_at_the_attempts_start_before_any_batch(
        conn: Conn, dsn: str, column_client: str, src: Path) -> None:
    """The header is known before the first batch: pgjobs.import_prepare
    checks every column it names, so a file of many batches writes none."""
    path = src / "many.csv"
    path.write_bytes(b"name,age\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(200)))
    before = snapshot(conn)
    job_id = as_role(conn, column_client,
                     lambda: submit_import(conn, f"file://{path}", "1", {"max_rejects": 10}))
    assert run_import(dsn, job_id, src, batch_bytes=64) == "failed"
    row = job(conn, job_id)
    assert "lacks INSERT on column age of public.people" in row["error"], row["error"]
    assert (row["checkpoint"] or {}).get("line") in (None, 0), row["checkpoint"]
    assert snapshot(conn) == before


def test_a_jsonl_column_not_granted_fails_at_the_batch_naming_it_and_resumes_once_granted(
        conn: Conn, dsn: str, column_client: str, src: Path) -> None:
    """A JSONL record names its own columns, known only when its batch is
    read: the batches before it stay, the job fails naming the column (not
    a rejected record), and once the grant is given a retry resumes after
    the last committed batch and writes every record once."""
    path = src / "late.jsonl"
    path.write_bytes(b"".join(b'{"name": "n%d"}\n' % i for i in range(20))
                     + b'{"name": "aged", "age": 7}\n'
                     + b"".join(b'{"name": "n%d"}\n' % i for i in range(20, 40)))
    job_id = as_role(conn, column_client,
                     lambda: submit_import(conn, f"file://{path}", "1", {"max_rejects": 10}))
    assert run_import(dsn, job_id, src, batch_bytes=64) == "failed"
    row = job(conn, job_id)
    assert "lacks INSERT on column age of public.people" in row["error"], row["error"]
    kept = scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'n%%'")
    assert 0 < kept <= 20, kept
    assert scalar(conn, "SELECT count(*) FROM pgjobs.import_rejects") == 0
    conn.execute(f"GRANT INSERT (age) ON people TO {column_client}")
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    assert run_import(dsn, job_id, src, batch_bytes=64) == "succeeded", job(conn, job_id)
    assert scalar(conn, "SELECT count(*) FROM people WHERE name LIKE 'n%%'") == 40
    assert scalar(conn, "SELECT age FROM people WHERE name = 'aged'") == 7
