"""An import under fire: `pgjobs worker` processes SIGKILLed at random moments
(between batches and inside a batch's transaction) and PostgreSQL shut down
immediately twice (every backend killed, crash recovery; the test cluster
commits asynchronously, so a crash may also lose the last batches committed:
rows and checkpoint go together). After recovery the import finishes and the
table equals the file: no record missing, none twice."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.migrate import migrate
from tests.chaos.support import RESTARTS, immediate_restart, record, rng, scaled
from tests.support import allow, make_people, start_worker, submit_import, wait_for
from tests.test_import_resume import source

Conn = psycopg.Connection[Any]


@pytest.fixture
def cluster() -> Iterator[Any]:
    """A cluster of its own: the test shuts it down."""
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def _records(dsn: str, job_id: int) -> tuple[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT status, coalesce((checkpoint->>'records')::bigint, 0) "
                           "FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


@pytest.mark.chaos
def test_import_survives_kills_and_immediate_restarts(cluster: Any, tmp_path: Path) -> None:
    random_ = rng("import_kills")
    rows = scaled(20_000, 200_000)
    kills_wanted = scaled(6, 12)
    dsn = cluster.url()
    migrate(dsn)
    data, names = source(rows)
    (tmp_path / "big.csv").write_bytes(data)
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_people(conn)
        allow(conn, f"file://{tmp_path}")
        job_id = submit_import(conn, f"file://{tmp_path}/big.csv", "1",
                               {"lease": "2 seconds", "max_attempts": 1000})
    delays = {"PGJOBS_IMPORT_DELAYS": f"bytes={max(len(data) // 60, 4096)},staged=0.03"}
    kills = restarts = 0
    started = time.monotonic()
    while kills < kills_wanted or restarts < 2:
        status, before = _records(dsn, job_id)
        if status == "succeeded":
            break
        worker = start_worker(dsn, f"file://{tmp_path}/store", env=delays)
        try:
            wait_for(lambda b=before: _records(dsn, job_id)[1] > b
                     or _records(dsn, job_id)[0] == "succeeded",
                     timeout=90, what="a committed batch", tolerate=RESTARTS)
            time.sleep(random_.uniform(0.0, 0.2))
            if restarts < 2 and kills in (1, 3):
                immediate_restart(cluster, down=random_.uniform(0.2, 1.0))
                restarts += 1
                # The worker rides it out; let it commit again before it dies.
                wait_for(lambda: _records(dsn, job_id)[1] > 0, timeout=90,
                         what="progress after the restart", tolerate=RESTARTS)
                time.sleep(random_.uniform(0.2, 0.6))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.communicate()
        kills += 1
    worker = start_worker(dsn, f"file://{tmp_path}/store")
    try:
        wait_for(lambda: _records(dsn, job_id)[0] in ("succeeded", "failed"), timeout=300,
                 what="the import to finish", tolerate=RESTARTS)
    finally:
        worker.terminate()
        worker.communicate()
    with psycopg.connect(dsn, autocommit=True) as conn:
        status, error, result = conn.execute(
            "SELECT status, error, result FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
        assert status == "succeeded", error
        got = [r[0] for r in conn.execute("SELECT name FROM people ORDER BY name")]
    assert got == sorted(names)
    assert result["rows"] == rows
    record("import_kills", {"rows": rows, "kills": kills, "immediate_restarts": restarts,
                            "seconds": round(time.monotonic() - started, 1)})
