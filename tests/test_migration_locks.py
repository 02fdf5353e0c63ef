"""A migration builds an index on an existing pgjobs table without stopping
the engine (review of h124).

Found: migration 0135 built jobs_client_item_bytes_idx with a plain CREATE
INDEX in yoyo's transaction: it takes pgjobs.jobs in SHARE mode, so it
first queues behind any open transaction that wrote a job (a runner's page,
a worker's heartbeat) and then, queued and while it scans a table of
millions of kept jobs, holds back every other job update (claims, progress,
submits) on a live install. An index on a table earlier migrations made is
now built CONCURRENTLY in a migration marked `-- transactional: false`, whose
DROP ... CONCURRENTLY IF EXISTS first clears an invalid index a failed
build left. Migrations before 0135 are released and applied everywhere;
they are not rewritten.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from yoyo.migrations import read_sql_migration

from pgjobs.migrate import migration_files
from tests.support import make_rows_target, scalar, seed
from tests.support.waiting import waits_on_lock_or_ends

Conn = psycopg.Connection[Any]

FIRST_CHECKED = "0135"
CREATE_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(\S+)\s+ON\s+(?:ONLY\s+)?(\S+)", re.IGNORECASE)
CREATE_TABLE = re.compile(r"CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)",
                          re.IGNORECASE)


def _checked() -> list[Path]:
    return [p for p in migration_files() if p.name[:4] >= FIRST_CHECKED]


def _statements(path: Path) -> tuple[bool, list[str]]:
    """Whether yoyo runs the file in a transaction, and its statements, as
    yoyo reads them."""
    directives, _, statements = read_sql_migration(str(path))
    return directives.get("transactional", "true").lower() != "false", statements


def test_the_checked_migrations_include_the_item_bytes_index() -> None:
    assert "0135.client_item_bytes.sql" in [p.name for p in _checked()]


@pytest.mark.parametrize("path", _checked(), ids=lambda p: p.name)
def test_an_index_on_an_existing_table_is_built_concurrently(path: Path) -> None:
    transactional, statements = _statements(path)
    made_here = {m.group(1).lower() for s in statements for m in CREATE_TABLE.finditer(s)}
    for statement in statements:
        for match in CREATE_INDEX.finditer(statement):
            if match.group(3).lower() in made_here:
                continue
            assert match.group(1), f"{path.name}: {match.group(2)} is built without CONCURRENTLY"
            assert not transactional, (
                f"{path.name}: CONCURRENTLY needs '-- transactional: false'")
            assert re.search(rf"DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS\s+\S*"
                             rf"{re.escape(match.group(2).split('.')[-1])}\b",
                             path.read_text(), re.IGNORECASE), (
                f"{path.name}: an invalid {match.group(2)} from a failed build is not dropped")


def test_migration_0135_holds_back_no_job_update_on_a_live_install(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A runner holds a job row in an open transaction; the migration starts
    (and waits for it); another runner's job update must not wait behind
    the migration. Then the runner commits and the index is built, valid."""
    seed(conn, make_rows_target(conn), 3)
    jobs = [int(scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, "
                             "'[1, 2]'::jsonb)", (str(scope),))) for scope in (1, 2)]
    conn.execute("DROP INDEX pgjobs.jobs_client_item_bytes_idx")
    path = next(p for p in migration_files() if p.name.startswith("0135."))
    transactional, statements = _statements(path)

    runner = make_conn(autocommit=False)
    runner.execute("UPDATE pgjobs.jobs SET updated_at = now() WHERE id = %s", (jobs[0],))
    migrator = make_conn(autocommit=True)
    migrated = threading.Event()
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            if transactional:
                with migrator.transaction():
                    for statement in statements:
                        migrator.execute(statement.encode())
            else:
                for statement in statements:
                    migrator.execute(statement.encode())
        except BaseException as exc:  # noqa: BLE001 (reported below)
            failures.append(exc)
        finally:
            migrated.set()

    thread = threading.Thread(target=migrate)
    thread.start()
    assert waits_on_lock_or_ends(conn, migrator.info.backend_pid, migrated)
    other = make_conn(autocommit=True)
    updated = threading.Event()

    def update() -> None:
        try:
            other.execute("UPDATE pgjobs.jobs SET updated_at = now() WHERE id = %s",
                          (jobs[1],))
        finally:
            updated.set()

    updater = threading.Thread(target=update)
    updater.start()
    held_back = waits_on_lock_or_ends(conn, other.info.backend_pid, updated)
    runner.commit()
    updater.join(timeout=60)
    thread.join(timeout=60)
    assert not thread.is_alive() and not failures, failures
    assert not held_back, "a job update waited behind the migration's index build"
    assert scalar(conn, "SELECT i.indisvalid FROM pg_index i "
                        "WHERE i.indexrelid = 'pgjobs.jobs_client_item_bytes_idx'::regclass")
