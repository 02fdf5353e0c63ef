"""A Parquet file's writer killed mid-write leaves no temporary file once the
export ends.

A ``file://`` Parquet file is written to a temporary name of its own
(``.{name}.pgjobs-{token}.tmp``, a random token), fsynced, then linked into
place. The worker dies (in process: nothing after runs, as under SIGKILL)
with that temporary file written and not yet linked; the checkpoint named
the file as ``writing``. Then the next attempt finishes the export (a single
one, or the part of a parallel one), or the job is canceled: the folder
then holds exactly the files the result names, or nothing. Before, the
temporary file stayed until the stale-upload sweep an hour later (the flaky
``.tmp`` of test_export_parquet_parallel's SIGKILL test: its worker killed
at a random moment, now and then inside this write).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest

from pgjobs.poller import parallel, storage
from pgjobs.poller.export import Exporter, Outcome
from pgjobs.poller.worker import Worker
from tests.support import job, leftovers, make_items, run_export, submit_export

Conn = psycopg.Connection[Any]


class Killed(BaseException):
    """The worker process dies here (SIGKILL): nothing after runs."""


PARQUET = {"format": "parquet", "chunk_rows": 5, "part_size": 1024}


def _kill_mid_write(mp: pytest.MonkeyPatch, dsn: str, job_id: int, part: bool,
                    cancel: bool) -> list[str]:
    """The second file's write dies once its temporary file is on disk. A
    part's (``part``): its lease runs out at once, so this run's coordinator
    takes the part up again, as another worker would; ``cancel``: the job is
    canceled then."""
    events: list[str] = []
    create = storage._create_file
    written: list[str] = []

    def creating(path: str, data: bytes, what: str) -> bool:
        if path.endswith(".parquet") and not events:
            written.append(path)
            if len(written) == 2:
                directory, name = os.path.split(path)
                # The folder, as storage._create_file makes it when it opens
                # its temporary file: with parallel parts, the other part's
                # first file (whose create makes it) may still be on its way.
                os.makedirs(directory, exist_ok=True)
                with open(os.path.join(directory, f".{name}.pgjobs-deadbeef0001.tmp"),
                          "wb") as f:
                    f.write(data[: len(data) // 2])
                events.append("killed")
                with psycopg.connect(dsn, autocommit=True) as c:
                    if cancel:
                        c.execute("SELECT pgjobs.cancel(%s)", (job_id,))
                    if part:
                        _leases_expired(c, job_id, job=False)
                raise Killed()
        return create(path, data, what)

    def dead(original: Any) -> Any:
        def _fail(self: Exporter, exc: BaseException) -> Outcome:
            if isinstance(exc, Killed):
                return Outcome(self.job_id, "lost", error="killed")
            return original(self, exc)
        return _fail

    mp.setattr(storage, "_create_file", creating)
    mp.setattr(Exporter, "_fail", dead(Exporter._fail))
    mp.setattr(parallel.PartExporter, "_fail", dead(parallel.PartExporter._fail))
    return events


def _leases_expired(conn: Conn, job_id: int, job: bool = True) -> None:
    if job:
        conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                     "WHERE id = %s AND status = 'running'", (job_id,))
    conn.execute("UPDATE pgjobs.export_parts SET lease_expires_at = now() - interval '1 second' "
                 "WHERE job_id = %s AND lease_expires_at IS NOT NULL", (job_id,))


@pytest.mark.parametrize("parallel_n", [1, 2])
@pytest.mark.parametrize("then", ["retried", "canceled"])
def test_a_parquet_file_killed_mid_write_leaves_no_temporary_file(
        conn: Conn, dsn: str, local_dir: str, parallel_n: int, then: str) -> None:
    make_items(conn, rows=60)
    options = {**PARQUET, **({"parallel": parallel_n} if parallel_n > 1 else {})}
    job_id = submit_export(conn, "1", {}, options)
    with pytest.MonkeyPatch.context() as mp:
        events = _kill_mid_write(mp, dsn, job_id, part=parallel_n > 1,
                                 cancel=parallel_n > 1 and then == "canceled")
        outcome = run_export(dsn, job_id, local_dir)
    assert events == ["killed"], "no second file was written"
    if parallel_n == 1:
        assert outcome.status == "lost", outcome
        assert any(".pgjobs-" in f for f in leftovers(local_dir, set())), "no temporary file"
        if then == "canceled":
            assert conn.execute("SELECT pgjobs.cancel(%s)", (job_id,)).fetchone() == (True,)
        _leases_expired(conn, job_id)
    with pytest.MonkeyPatch.context() as mp:
        # Not the stale-upload sweep (an hour after the job ended).
        mp.setattr(storage, "sweep_stale", lambda *args, **kwargs: 0)
        Worker(dsn, local_dir, once=True, poll=0.1).run()
    ended = job(conn, job_id)
    if then == "canceled":
        assert ended["status"] == "canceled", ended["error"]
        assert leftovers(local_dir, set()) == []
    else:
        assert ended["status"] == "succeeded", ended["error"]
        uris = set(ended["result"]["uris"])
        assert uris and leftovers(local_dir, uris) == []
