"""A column an import writes that a table under the target (a partition at
any level, a DEFAULT partition, an inheritance child) GENERATES while the
target does not: PostgreSQL 15 computes the child's own value whatever the
INSERT into the target gave, so the import would store the child's value in
place of the record's without a word. The scope column is refused at submit
and at each attempt (pgjobs._import_scope_writable); any other column the
source names when a batch maps it (pgjobs._import_insert_sql), as a
generated column of the target itself is. Both through one check,
pgjobs._import_generated_below, whose hint is the fix PostgreSQL accepts: a
child's inherited column cannot DROP EXPRESSION, so the hint detaches it
(or leaves the inheritance), drops the expression and attaches it again;
the tests run the hint's statements and import after them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller.importer import Importer
from tests.support import allowed_folder, claim_import, job, submit_import
from tests.support.targets import build_target

Conn = psycopg.Connection[Any]

COLUMNS = """id bigint NOT NULL, tenant integer NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(), name text, g integer"""
CHILD = """(id bigint NOT NULL, tenant integer NOT NULL {tenant},
            created_at timestamptz NOT NULL DEFAULT now(), name text, g integer {g})"""
GENERATED = "GENERATED ALWAYS AS ({}) STORED"


def _shape(conn: Conn, shape: str, column: str) -> str:
    """The target `parted` and, under it, the table generating `column`
    (returned), of the given shape."""
    child = CHILD.format(tenant=GENERATED.format(2) if column == "tenant" else "",
                         g=GENERATED.format("id * 10") if column == "g" else "")
    if shape == "inherit":
        build_target(conn, "parted", COLUMNS, scope="tenant")
        conn.execute(f"CREATE TABLE parted_2 {child}")
        conn.execute("ALTER TABLE parted_2 INHERIT parted")
        return "parted_2"
    build_target(conn, "parted", f"{COLUMNS}) PARTITION BY LIST (tenant", scope="tenant")
    conn.execute("CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1)")
    if shape == "list":
        conn.execute(f"CREATE TABLE parted_2 {child}")
        conn.execute("ALTER TABLE parted ATTACH PARTITION parted_2 FOR VALUES IN (2)")
        return "parted_2"
    if shape == "default":
        conn.execute(f"CREATE TABLE parted_d {child}")
        conn.execute("ALTER TABLE parted ATTACH PARTITION parted_d DEFAULT")
        return "parted_d"
    assert shape == "two_levels", shape
    conn.execute("CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2) "
                 "PARTITION BY RANGE (id)")
    conn.execute(f"CREATE TABLE parted_2_low {child}")
    conn.execute("ALTER TABLE parted_2 ATTACH PARTITION parted_2_low "
                 "FOR VALUES FROM (MINVALUE) TO (1000)")
    return "parted_2_low"


def _source(folder: Path, fmt: str) -> str:
    path = folder / f"in.{fmt}"
    path.write_text("id,name,g\n1,a,7\n2,b,8\n" if fmt == "csv"
                    else '{"id": 1, "name": "a", "g": 7}\n{"id": 2, "name": "b", "g": 8}\n')
    return f"file://{path}"


def _run(conn: Conn, dsn: str, folder: Path, job_id: int) -> dict[str, Any]:
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    return job(conn, job_id)


def _apply_hint(conn: Conn, hint: str) -> None:
    """The hint's statements, as a user would paste them."""
    fix = hint.split(": ", 1)[1].split(" (or load", 1)[0]
    for statement in fix.split("; "):
        assert statement.startswith("ALTER TABLE "), hint
        conn.execute(statement)


SHAPES = ["list", "default", "two_levels", "inherit"]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_generated_scope_under_the_target_is_refused_and_the_hint_fixes_it(
        conn: Conn, dsn: str, tmp_path: Path, shape: str) -> None:
    child = _shape(conn, shape, "tenant")
    folder = allowed_folder(conn, tmp_path)
    with pytest.raises(psycopg.Error) as caught:
        submit_import(conn, _source(folder, "csv"), "2", {"max_rejects": 10}, "parted")
    assert caught.value.sqlstate == "22023", caught.value
    assert f'the scope column "tenant" of public.{child}, a table under public.parted' \
        in str(caught.value), caught.value
    conn.rollback()
    _apply_hint(conn, caught.value.diag.message_hint or "")
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, "csv"), "2",
                                                target="parted"))
    assert row["status"] == "succeeded", row["error"]
    assert conn.execute("SELECT tenant, id, g FROM parted ORDER BY id").fetchall() == [
        (2, 1, 7), (2, 2, 8)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_column_the_source_names_generated_under_the_target_never_gets_its_value(
        conn: Conn, dsn: str, tmp_path: Path, shape: str, fmt: str) -> None:
    """The source's g is 7 and 8; the child would store 10 and 20. CSV: the
    job fails at its header; JSON Lines: each record naming g is rejected,
    as for a column the target itself generates. Never a row with the
    child's value."""
    _shape(conn, shape, "g")
    folder = allowed_folder(conn, tmp_path)
    row = _run(conn, dsn, folder, submit_import(conn, _source(folder, fmt), "2",
                                                {"max_rejects": 10}, "parted"))
    assert conn.execute("SELECT id, g FROM parted WHERE g IS DISTINCT FROM id + 6"
                        ).fetchall() == []
    reasons = [r[0] for r in conn.execute("SELECT reason FROM pgjobs.import_rejects")]
    said = " ".join(reasons) + " " + (row["error"] or "")
    assert 'column "g" of public.' in said and "a table under public.parted" in said, row


def test_a_partition_generating_a_column_attached_after_submit_stops_the_import(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    build_target(conn, "parted", f"{COLUMNS}) PARTITION BY LIST (tenant", scope="tenant")
    folder = allowed_folder(conn, tmp_path)
    job_id = submit_import(conn, _source(folder, "csv"), "2", {"max_rejects": 10}, "parted")
    conn.execute(f"CREATE TABLE parted_2 {CHILD.format(tenant='', g=GENERATED.format('0'))}")
    conn.execute("ALTER TABLE parted ATTACH PARTITION parted_2 FOR VALUES IN (2)")
    row = _run(conn, dsn, folder, job_id)
    assert row["status"] == "failed", row
    assert 'column "g" of public.parted_2' in row["error"], row["error"]
    assert conn.execute("SELECT count(*) FROM parted").fetchone() == (0,)


def test_a_partition_generating_the_scope_attached_between_batches_stops_the_import(
        conn: Conn, make_conn: Any, dsn: str, tmp_path: Path) -> None:
    """Checked at each batch, not only at the attempt's start: the rows after
    the ATTACH would have the partition's tenant 99. The batches before it
    stay (committed, the job's own scope)."""
    build_target(conn, "parted", f"{COLUMNS}) PARTITION BY RANGE (id", scope="tenant")
    conn.execute("CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (200)")
    folder = allowed_folder(conn, tmp_path)
    path = folder / "in.csv"
    path.write_text("id,name\n" + "".join(f"{i},{'n' * 90}\n" for i in range(1, 400)))
    job_id = submit_import(conn, f"file://{path}", "2", {"max_rejects": 10}, "parted")
    other = make_conn(autocommit=True)
    batches = [0]

    def progress(records: int, read: int, total: int | None) -> None:
        batches[0] += 1
        if batches[0] == 1:
            other.execute(f"CREATE TABLE parted_high "
                          f"{CHILD.format(tenant=GENERATED.format(99), g='')}")
            other.execute("ALTER TABLE parted ATTACH PARTITION parted_high "
                          "FOR VALUES FROM (200) TO (MAXVALUE)")

    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
             on_progress=progress, batch_bytes=5000).run()
    row = job(conn, job_id)
    assert batches[0] >= 1
    assert row["status"] == "failed", row
    assert 'the scope column "tenant" of public.parted_high' in row["error"], row["error"]
    assert conn.execute("SELECT count(*) FROM parted WHERE tenant <> 2").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM parted").fetchone()[0] > 0
