"""Adversarial review r2: an import with on_duplicate needs the rights PostgreSQL
asks of the same INSERT ... ON CONFLICT run by the submitter itself.

ON CONFLICT DO UPDATE reads the existing row (the conflict columns, the scope
column its WHERE compares, a document merged into): PostgreSQL refuses it to a
role without SELECT on those columns, and the job's inserted-vs-updated counts
would tell such a role which keys exist. pgjobs refuses the same role at submit,
and fails the job (nothing written) when SELECT is revoked after the submit."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    allowed_folder,
    claim_import,
    insert_row,
    job,
    make_people,
    make_rows_target,
    run_import,
    run_job,
    scalar,
    submit_delete,
    submit_import,
)
from tests.test_partitioned import leaves, make_partitioned, scope_leaves

Conn = psycopg.Connection[Any]


@pytest.fixture
def blind(conn: Conn) -> Iterator[str]:
    """A pgjobs client with INSERT and UPDATE on `people` but no SELECT."""
    role = f"r2_blind_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    make_people(conn)
    conn.execute("INSERT INTO people (tenant, name, age) "
                 "SELECT 1, 'p' || i, i FROM generate_series(1, 5) i")
    conn.execute(f"GRANT INSERT, UPDATE ON people TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    return allowed_folder(conn, tmp_path)


def snapshot(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, tenant, name, data FROM people ORDER BY id").fetchall()


def test_postgres_itself_refuses_do_update_without_select(conn: Conn, blind: str) -> None:
    conn.execute(f"SET ROLE {blind}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO people AS t (id, tenant, name) VALUES (1, 1, 'x') "
                     "ON CONFLICT (tenant, id) DO UPDATE SET name = EXCLUDED.name")
    conn.execute("RESET ROLE")


@pytest.mark.parametrize("grant", ["", "SELECT (name)"])
def test_on_duplicate_update_without_select_is_refused_at_submit(
        conn: Conn, blind: str, src: Path, grant: str) -> None:
    if grant:
        conn.execute(f"GRANT {grant} ON people TO {blind}")
    path = src / "rows.csv"
    path.write_bytes(b"id,name\n1,changed\n100,new\n")
    conn.execute(f"SET ROLE {blind}")
    try:
        with pytest.raises(errors.InsufficientPrivilege) as raised:
            submit_import(conn, f"file://{path}", "1", {"on_duplicate": "update"})
    finally:
        conn.execute("RESET ROLE")
    assert "SELECT" in str(raised.value)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_select_on_the_read_columns_is_enough(conn: Conn, dsn: str, blind: str,
                                              src: Path) -> None:
    conn.execute(f"GRANT SELECT (id, tenant) ON people TO {blind}")
    path = src / "rows.csv"
    path.write_bytes(b"id,name\n1,changed\n100,new\n")
    conn.execute(f"SET ROLE {blind}")
    job_id = submit_import(conn, f"file://{path}", "1", {"on_duplicate": "update"})
    conn.execute("RESET ROLE")
    status = Importer(dsn, job_id, claim_import(dsn, job_id),
                      f"file://{src}/store").run().status
    assert status == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT name FROM people WHERE id = 1") == "changed"


def test_select_revoked_after_submit_fails_the_import_before_it_writes(
        conn: Conn, dsn: str, blind: str, src: Path) -> None:
    conn.execute(f"GRANT SELECT ON people TO {blind}")
    path = src / "rows.csv"
    path.write_bytes(b"id,name\n1,changed\n100,new\n")
    conn.execute(f"SET ROLE {blind}")
    job_id = submit_import(conn, f"file://{path}", "1", {"on_duplicate": "update"})
    conn.execute("RESET ROLE")
    before = snapshot(conn)
    conn.execute(f"REVOKE SELECT ON people FROM {blind}")
    # The claim fails it (pgjobs._start_attempts): nothing is handed to a worker.
    assert conn.execute("SELECT * FROM pgjobs.claim_import(%s, 'w')", (job_id,)).fetchall() == []
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "lacks SELECT" in row["error"] and blind in row["error"], row["error"]
    assert snapshot(conn) == before


def test_merging_into_a_document_needs_select_on_it(conn: Conn, dsn: str, blind: str,
                                                     src: Path) -> None:
    conn.execute(f"GRANT SELECT (id, tenant) ON people TO {blind}")
    # PostgreSQL refuses the merge (it reads t.data) to this role ...
    conn.execute(f"SET ROLE {blind}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO people AS t (id, tenant, data) VALUES (1, 1, '{}') "
                     "ON CONFLICT (tenant, id) DO UPDATE SET data = t.data || EXCLUDED.data")
    path = src / "doc.csv"
    path.write_bytes(b"id,color\n1,red\n100,blue\n")
    job_id = submit_import(conn, f"file://{path}", "1", {"on_duplicate": "update"})
    conn.execute("RESET ROLE")
    before = snapshot(conn)
    # ... and so does pgjobs: the batch's statement names the column.
    status = Importer(dsn, job_id, claim_import(dsn, job_id),
                      f"file://{src}/store").run().status
    row = job(conn, job_id)
    assert status == "failed" and row["status"] == "failed", row
    assert "lacks SELECT on column data" in row["error"], row["error"]
    assert snapshot(conn) == before



# --- a delete's statistics refresh on a partitioned target -------------------------


@pytest.mark.parametrize("layout", ["list", "hash"])
def test_statistics_refresh_of_a_partitioned_target_reads_only_the_scopes_leaves(
        conn: Conn, make_conn: Any, layout: str) -> None:
    # pgjobs._maybe_analyze ran ANALYZE on the partitioned parent, which takes
    # a lock on (and samples) every tenant's partition: with another scope's
    # partition held ACCESS EXCLUSIVE the refresh waited lock_timeout on each
    # page and was skipped every time, so a large delete of scope 1 never
    # refreshed the statistics of the partitions its pages read.
    target = make_partitioned(conn, layout)
    conn.execute("INSERT INTO user_table_rows (table_id, n) "
                 "SELECT 1, i FROM generate_series(1, 25000) i")
    other = sorted(leaves(conn) - scope_leaves(conn, layout, "1"))[0]
    holder = make_conn(autocommit=False)
    holder.execute(f"LOCK TABLE {other} IN ACCESS EXCLUSIVE MODE")
    try:
        job_id = submit_delete(conn, target, "1", options={"page_size": 2000})
        run_job(conn, job_id)
        row = job(conn, job_id)
        assert row["status"] == "succeeded", row["error"]
        # Analyzed although another tenant's partition stayed locked throughout.
        assert (row["checkpoint"] or {}).get("analyzes", 0) >= 1, row["checkpoint"]
    finally:
        holder.rollback()


# --- checks that held: the caller's settings, and what a delete leaves ----------------

SETTINGS = ["default_statistics_target", "jit", "lock_timeout", "statement_timeout",
            "enable_seqscan", "enable_indexscan", "enable_bitmapscan"]


@pytest.mark.parametrize("filter_", [{"k": 1}, {}])
@pytest.mark.parametrize("strategy", ["range", "collect"])
def test_a_delete_leaves_the_callers_settings_and_only_its_rows(
        conn: Conn, strategy: str, filter_: dict[str, Any]) -> None:
    target = make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (table_id, n, data, created_at) "
                 "SELECT 1 + (g % 3 = 0)::int, g % 7, jsonb_build_object('k', g % 5), "
                 "now() - interval '1 day' FROM generate_series(1, 40000) g")
    later = insert_row(conn, target, "1", data={"k": 1})  # moved past the cutoff below
    conn.execute("SET default_statistics_target = 57; SET jit = on; "
                 "SET lock_timeout = '7s'; SET statement_timeout = '9min'")
    before = {s: scalar(conn, f"SELECT current_setting('{s}')") for s in SETTINGS}
    excluded = scalar(conn, "SELECT min(id)::text FROM user_table_rows "
                            "WHERE table_id = 1 AND data @> '{\"k\": 1}'")
    job_id = submit_delete(conn, target, "1", filter_, exclude=[excluded],
                           options={"strategy": strategy, "page_size": 1000})
    conn.execute("UPDATE user_table_rows SET created_at = now() + interval '1 hour' "
                 "WHERE id = %s::bigint", (later,))
    run_job(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    after = {s: scalar(conn, f"SELECT current_setting('{s}')") for s in SETTINGS}
    assert after == before
    left = {str(r[0]) for r in conn.execute(
        "SELECT id FROM user_table_rows WHERE table_id = 1 AND data @> %s::jsonb",
        (json.dumps(filter_),))}
    assert excluded in left and left <= {excluded, later}, left
    assert row["done"] == row["total"] == row["result"]["deleted"]
    if not filter_:
        assert "analyzes" in row["checkpoint"], row["checkpoint"]  # the setting came back
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2") == 13333


@pytest.mark.parametrize("mode", ["skip", "update"])
def test_partitioned_import_counts_match_a_plain_tables(conn: Conn, dsn: str, tmp_path: Path,
                                                         mode: str) -> None:
    # Held: a key twice in one batch, a key another scope holds, a key that exists:
    # the NOT EXISTS count of a partitioned target agrees with xmax on a plain one.
    results: dict[bool, Any] = {}
    for part in (False, True):
        name = "pp" if part else "pl"
        conn.execute(f"CREATE TABLE {name} (id bigint NOT NULL, tenant int NOT NULL, name text, "
                     "created_at timestamptz NOT NULL DEFAULT now())"
                     + (" PARTITION BY LIST (tenant)" if part else ""))
        if part:
            conn.execute(f"CREATE TABLE {name}_1 PARTITION OF {name} FOR VALUES IN (1)")
            conn.execute(f"CREATE TABLE {name}_d PARTITION OF {name} DEFAULT")
        conn.execute(f"CREATE UNIQUE INDEX ON {name} (tenant, id)")
        conn.execute(f"SELECT pgjobs.register_target('{name}', 'id', 'tenant', 'created_at')")
        conn.execute(f"INSERT INTO {name} VALUES (1, 1, 'a'), (2, 2, 'b')")
        folder = tmp_path / name
        folder.mkdir()
        allow(conn, f"file://{folder}")
        src = folder / "x.csv"
        src.write_text("id,name\n1,x\n2,y\n3,z\n3,w\n1,v\n")
        jid = submit_import(conn, f"file://{src}", "1",
                            {"on_duplicate": mode, "max_rejects": 10}, target=name)
        run_import(dsn, jid, f"file://{folder}/store")
        r = job(conn, jid)
        counts = {k: r["result"].get(k) for k in ("inserted", "updated", "skipped", "rejected")}
        results[part] = (r["status"], counts, conn.execute(
            f"SELECT id, tenant, name FROM {name} ORDER BY 1, 2").fetchall())
    assert results[True] == results[False]
