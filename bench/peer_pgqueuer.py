"""PgQueuer's own drain benchmark, reduced to one measurement, for bench/claim.py.

Runs under a Python that has PgQueuer (``pip install -r bench/requirements-peer.txt``,
best in a virtualenv of its own: it is never a pgjobs dependency). It follows
PgQueuer's ``tools/benchmark.py`` drain strategy: enqueue JOBS no-op jobs with
PgQueuer's own ``Queries.enqueue``, then WORKERS ``PgQueuer`` instances (one
asyncpg connection each) consume them with ``batch_size`` BATCH in drain mode,
completing each batch through PgQueuer's own buffered ``log_jobs``. Prints one
JSON line ``{"rate": jobs per second}``.

    python bench/peer_pgqueuer.py DSN JOBS WORKERS BATCH
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def main(dsn: str, jobs: int, workers: int, batch: int) -> float:
    import asyncpg
    from pgqueuer import PgQueuer, types
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    setup = Queries(AsyncpgDriver(await asyncpg.connect(dsn=dsn)))
    if not await setup.has_table("pgqueuer"):
        await setup.install()
    await setup.clear_statistics_log()
    await setup.clear_queue()
    await setup.enqueue(["fetch"] * jobs, [b"" for _ in range(jobs)], [0] * jobs)

    queues = [Queries(AsyncpgDriver(await asyncpg.connect(dsn=dsn))) for _ in range(workers)]
    done = 0

    async def consume(q: Queries) -> None:
        pgq = PgQueuer(q.driver, queries=q)

        @pgq.entrypoint("fetch")
        async def fetch(job: Job) -> None:
            nonlocal done
            done += 1

        await pgq.run(batch_size=batch, mode=types.QueueExecutionMode.drain)

    began = time.perf_counter()
    await asyncio.gather(*(consume(q) for q in queues))
    elapsed = time.perf_counter() - began
    if done != jobs:
        raise SystemExit(f"pgqueuer: {done} of {jobs} jobs processed")
    return jobs / elapsed


if __name__ == "__main__":
    dsn, jobs, workers, batch = sys.argv[1], *map(int, sys.argv[2:5])
    print(json.dumps({"rate": asyncio.run(main(dsn, jobs, workers, batch))}))
