"""Operator safety of the lock waits of pgjobs' own commands."""

from __future__ import annotations

from typing import Any

import psycopg

from pgjobs.migrate import migrate
from tests.support import scalar

Conn = psycopg.Connection[Any]


def test_migrate_after_a_killed_migrate_is_not_locked_out(dsn: str, conn: Conn) -> None:
    """A migrate killed (SIGKILL, a lost connection) while yoyo applied a
    migration left yoyo's lock row behind, and every later `pgjobs migrate`
    failed after 10 s: 'Process N has locked this database (run yoyo
    break-lock ...)'. Under pgjobs' own migrate lock such a row is a dead
    run's, and is cleared."""
    conn.execute("INSERT INTO pgjobs.yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    summary = migrate(dsn)
    assert summary["migrations_applied"] == []
    assert scalar(conn, "SELECT count(*) FROM pgjobs.yoyo_lock") == 0
