"""Exports whose workers are SIGKILLed at random moments (streaming, between a
part and its checkpoint, while finalizing): every export still ends
``succeeded`` with an object byte-identical to an uninterrupted run and to a
reference COPY, its sha256 right, and no upload leftovers once swept."""


from __future__ import annotations

import gzip
import json
import subprocess
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgjobs.poller.worker import Worker
from tests.chaos.support import FULL, RESTARTS, record, rng, scaled
from tests.support import (
    jsonl_reference,
    leftovers,
    make_items,
    object_bytes,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
# Small parts and chunks: many checkpoints per export, so kills land mid-stream.
GRAIN = {"chunk_rows": 5, "part_size": 1024}
# A short job lease: a killed worker's export is rescued within ~2 s. Kills cost
# attempts: allow plenty.
CHAOS = {"lease": "2 seconds", "max_attempts": 100}
VARIANTS: list[dict[str, Any]] = [{}, {"gzip": True}, {"format": "jsonl"},
                                  {"format": "jsonl", "gzip": True}]
TENANTS = 3


def _select(tenant: int) -> str:
    return f"SELECT * FROM items WHERE tenant = {tenant} ORDER BY id"


def _check_content(conn: Conn, options: dict[str, Any], tenant: int, data: bytes) -> None:
    text = gzip.decompress(data) if options.get("gzip") else data
    if options.get("format") == "jsonl":
        lines = [json.loads(line) for line in text.decode().splitlines()]
        assert lines == jsonl_reference(conn, _select(tenant))
    else:
        assert text == plain_copy(conn, _select(tenant))


def _running_holders(conn: Conn) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """pid of the worker process -> its running exports (id, checkpoint)."""
    held: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for job_id, worker, checkpoint in conn.execute(
            "SELECT id, worker, checkpoint FROM pgjobs.jobs WHERE kind = 'export' "
            "AND status = 'running' AND lease_expires_at > now()"):
        parts = str(worker).split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            held.setdefault(int(parts[2]), []).append((job_id, checkpoint or {}))
    return held


@pytest.mark.chaos
def test_sigkill_workers_at_random_moments(conn: Conn, dsn: str, local_dir: str) -> None:
    random_ = rng("export_kills")
    target_kills = scaled(4, 24)
    make_items(conn, rows=scaled(1200, 3000), tenants=TENANTS)
    # One uninterrupted run per variant and tenant: the bytes every resumed run
    # must reproduce.
    expected: dict[tuple[int, int], bytes] = {}
    variants = VARIANTS if FULL else VARIANTS[:3]
    for v, options in enumerate(variants):
        for tenant in range(TENANTS):
            job_id = submit_export(conn, str(tenant), {}, {**GRAIN, **options})
            outcome = run_export(dsn, job_id, local_dir)
            assert outcome.result is not None, outcome.error
            data = object_bytes(outcome.result)
            _check_content(conn, options, tenant, data)
            expected[(v, tenant)] = data

    kills: list[dict[str, Any]] = []
    finished: list[int] = []
    workers: list[subprocess.Popen[str]] = []
    started = time.monotonic()
    try:
        while len(kills) < target_kills:
            # A round: every variant of every tenant, submitted at once.
            round_jobs = {submit_export(conn, str(tenant), {}, {**GRAIN, **options, **CHAOS}):
                          (v, tenant)
                          for v, options in enumerate(variants) for tenant in range(TENANTS)}
            while len(workers) < 2:
                workers.append(_worker(dsn, local_dir, len(workers)))
            while len(kills) < target_kills:
                time.sleep(random_.uniform(0.1, 1.5))
                pending = conn.execute(
                    "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s) "
                    "AND status IN ('queued', 'running')", (list(round_jobs),)).fetchone()
                if not pending or pending[0] == 0:
                    break
                held = _running_holders(conn)
                victims = [i for i, w in enumerate(workers) if w.pid in held]
                if random_.random() < 0.3:
                    # Now and then, aim at the short window between the finalizing
                    # checkpoint and the object becoming visible.
                    victims = [i for i in victims if any(
                        ck.get("phase") == "finalizing" for _, ck in held[workers[i].pid])
                    ] or victims
                if not victims:
                    continue
                i = random_.choice(victims)
                workers[i].kill()
                workers[i].communicate(timeout=10)
                kills.append({"pid": workers[i].pid, "at": round(time.monotonic() - started, 2),
                              "jobs": [{"id": j, "phase": ck.get("phase", "claimed"),
                                        "parts": ck.get("parts", 0)}
                                       for j, ck in held[workers[i].pid]]})
                workers[i] = _worker(dsn, local_dir, i)
            # No more kills this round: let the survivors finish.
            wait_for(lambda ids=list(round_jobs): conn.execute(
                "SELECT bool_and(status NOT IN ('queued', 'running')) FROM pgjobs.jobs "
                "WHERE id = ANY(%s)", (ids,)).fetchone() == (True,),
                timeout=180, what="every export of the round to end", tolerate=RESTARTS)
            for job_id, (v, tenant) in round_jobs.items():
                status, result, error = conn.execute(
                    "SELECT status, result, error FROM pgjobs.jobs WHERE id = %s",
                    (job_id,)).fetchone() or (None, None, None)
                assert status == "succeeded" and result is not None, (job_id, status, error)
                data = object_bytes(result)  # size and sha256 checked against the result
                assert data == expected[(v, tenant)], f"job {job_id} differs"
                _check_content(conn, variants[v], tenant, data)
                finished.append(job_id)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                try:
                    w.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.communicate()

    # What the killed workers left behind (temporary files) is swept by a worker's
    # housekeeping once the jobs are over.
    sweeper = Worker(dsn, local_dir, stale_after=timedelta(0), on_event=lambda _: None)
    sweeper._connect()
    try:
        sweeper.housekeeping()
    finally:
        sweeper._close()
    uris = {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE status = 'succeeded'")}
    assert leftovers(local_dir, uris) == []

    attempts = [r[0] for r in conn.execute(
        "SELECT attempts FROM pgjobs.jobs WHERE id = ANY(%s)", (finished,))]
    phases: dict[str, int] = {}
    for kill in kills:
        for j in kill["jobs"]:
            phases[j["phase"]] = phases.get(j["phase"], 0) + 1
    record("export_sigkill", {
        "kills": len(kills), "exports": len(finished), "all_succeeded_byte_identical": True,
        "jobs_hit_by_phase": phases, "max_attempts_used": max(attempts),
        "seconds": round(time.monotonic() - started, 1)})
    assert len(kills) >= target_kills


def _worker(dsn: str, destination: str, n: int) -> subprocess.Popen[str]:
    # Sleep a little after each checkpointed part and before the object is made
    # visible, so that random kills land in every phase. Worker 0 runs two exports
    # at once.
    args = ["--concurrency", "2"] if n == 0 else []
    return start_worker(dsn, destination, *args, delays="part=0.02,finalize=0.3")
