"""The engine's fixed costs per call, cut without giving anything up (issue 11,
bulk speed): the expired-lease sweep runs on no claiming path unless a lease
has expired, and then rescues at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.export_support import make_items, submit_export
from tests.helpers import claim, expire_lease, job, scalar, submit
from tests.import_support import allow, make_people, submit_import
from tests.targets import make_rows_target, seed, submit_delete

Conn = psycopg.Connection[Any]


def sweeps(conn: Conn) -> int:
    """Sweep UPDATEs run in this transaction (pgjobs._rescue_sweep's calls)."""
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_rescue_sweep'"""))


def probes(conn: Conn) -> int:
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_rescue_expired'"""))


def _claim(tx: Conn, ids: dict[str, int]) -> None:
    claim(tx, "w", kinds=["nothing-of-this-kind"])


def _claim_export(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT * FROM pgjobs.claim_export(%s, 'w')", (ids["export"],)).fetchall()


def _claim_import(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT * FROM pgjobs.claim_import(%s, 'w')", (ids["import"],)).fetchall()


def _claim_id(tx: Conn, ids: dict[str, int]) -> None:  # run_job's claim
    tx.execute("SELECT pgjobs._run_job_claim(%s)", (ids["delete"],)).fetchall()


def _prune(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT pgjobs.prune()").fetchall()


ENTRY_POINTS: dict[str, Callable[[Conn, dict[str, int]], None]] = {
    "claim": _claim, "claim_export": _claim_export, "claim_import": _claim_import,
    "run_job": _claim_id, "prune": _prune,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_sweep_unless_a_lease_expired(make_conn: Any, conn: Conn, entry: str) -> None:
    """Every path that rescues expired leases probes first: no sweep UPDATE
    while none has expired, and the sweep (rescuing the job at once) when one
    has."""
    conn.execute("CREATE TABLE items_custom (id bigint PRIMARY KEY, scope int NOT NULL)")
    make_items(conn)
    make_people(conn)
    allow(conn, "file:///tmp/")
    target = make_rows_target(conn)
    seed(conn, target, 30)
    ids = {"export": submit_export(conn), "import": submit_import(conn, "file:///tmp/x.csv"),
           "delete": submit_delete(conn, target, "1")}
    stuck = submit(conn, target="items_custom")
    assert claim(conn, "w") == [stuck]
    call = ENTRY_POINTS[entry]

    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    call(tx, ids)
    assert probes(tx) >= 1
    assert sweeps(tx) == 0
    assert job(tx, stuck)["status"] == "running"
    tx.rollback()

    tx.execute("SET track_functions = 'pl'")
    expire_lease(tx, stuck)
    call(tx, ids)
    assert sweeps(tx) == 1
    rescued = job(tx, stuck)
    assert rescued["status"] == "queued"
    assert rescued["lease_expires_at"] is None
    tx.rollback()


def test_the_probe_returns_the_sweeps_shape(conn: Conn) -> None:
    """Callers (prune reports it) get the same counts with or without a sweep."""
    conn.execute("CREATE TABLE items_custom (id bigint PRIMARY KEY, scope int NOT NULL)")
    idle = scalar(conn, "SELECT pgjobs._rescue_expired()")
    assert idle == {"retried": 0, "failed": 0, "canceled": 0, "paused": 0}
    stuck = submit(conn, target="items_custom")
    assert claim(conn, "w") == [stuck]
    expire_lease(conn, stuck)
    assert scalar(conn, "SELECT pgjobs._rescue_expired()") == {
        "retried": 1, "failed": 0, "canceled": 0, "paused": 0}
