"""Deletes, backfills and an export running while the runners' backends are
terminated and PostgreSQL itself is shut down immediately (``pg_ctl -m
immediate``: every backend killed, crash recovery at restart), with writers
inserting rows into the scopes meanwhile. Runners are ``CALL pgjobs.run()``
loops that reconnect; the export worker is a ``pgjobs worker`` process that
reconnects by itself.

After recovery every job finishes; a delete removed exactly the rows of its
scope that match its filter, were created before its cutoff and are not
excluded (rows inserted meanwhile survive); every row a backfill covers was
changed exactly once (a handler counts its calls per row: a page redone after
a crash was rolled back with its cursor, so no row is counted twice); the
export is byte-identical to a plain COPY."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgjobs.migrate import migrate
from tests.chaos.support import RESTARTS, Runner, immediate_restart, record, rng, scaled
from tests.support import (
    Row,
    Target,
    cutoff_of,
    job,
    job_rows,
    make_rows_target,
    plain_copy,
    snapshot,
    start_worker,
    submit_backfill,
    submit_delete,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
JOB_OPTIONS = {"lease": "3 seconds", "max_attempts": 50}
EXPORT_GRAIN = {"chunk_rows": 20, "part_size": 2048}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A cluster of its own: the test shuts it down."""
    from tests.support.pgcluster import start_test_cluster

    cluster = start_test_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def _setup(dsn: str) -> Target:
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = make_rows_target(conn, "rows")
        conn.execute("ALTER TABLE rows ADD COLUMN hits integer NOT NULL DEFAULT 0")
        # Every row a page deletes or updates costs ~2 ms: jobs last a few
        # seconds, so faults land in the middle of them.
        conn.execute("""
            CREATE FUNCTION public.slow_rows() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.002);
                  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END $$;
            CREATE TRIGGER slow BEFORE DELETE OR UPDATE ON rows
                FOR EACH ROW EXECUTE FUNCTION public.slow_rows();
            -- A backfill handler whose effect is visibly not idempotent.
            CREATE FUNCTION public.count_hits(p_target regclass, p_keys text[])
            RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
                WITH u AS (UPDATE public.rows SET hits = hits + 1
                            WHERE id = ANY (p_keys::bigint[]) RETURNING 1)
                SELECT count(*) FROM u $$;""")
        return target


def _seed(conn: Conn, scope: int, count: int) -> None:
    """count rows in scope; every 23rd created in the future (after any cutoff)."""
    conn.execute("""
        INSERT INTO rows (table_id, n, label, data, created_at)
        SELECT %s, g %% 7, 'label ' || g, jsonb_build_object('k', g %% 5, 'name', 'n' || g),
               CASE WHEN g %% 23 = 0 THEN now() + interval '1 hour'
                    ELSE now() - interval '1 day' + g * interval '1 millisecond' END
          FROM generate_series(1, %s) g""", (scope, count))


class Writer(threading.Thread):
    """Inserts rows into the given scopes (~100/s) through every fault, keeping
    the keys whose INSERT was acknowledged."""

    def __init__(self, dsn: str, scopes: list[int]):
        super().__init__(name="chaos writer", daemon=True)
        self.dsn = dsn
        self.scopes = scopes
        self.stop = threading.Event()
        self.acked: dict[int, set[str]] = {s: set() for s in scopes}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True,
                                     application_name="chaos writer") as conn:
                    # The test cluster commits asynchronously (a crash may lose the
                    # last acknowledged commits); the writer's acks must be durable.
                    conn.execute("SET synchronous_commit = on")
                    while not self.stop.is_set():
                        scope = self.scopes[n % len(self.scopes)]
                        n += 1
                        row = conn.execute(
                            "INSERT INTO rows (table_id, n, label, data) VALUES "
                            "(%s, 1, 'inserted', '{\"k\": 1}') RETURNING id::text",
                            (scope,)).fetchone()
                        assert row is not None
                        self.acked[scope].add(row[0])
                        time.sleep(0.01)
            except psycopg.OperationalError:
                self.stop.wait(0.2)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def _terminate_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name IN ('chaos runner', 'pgjobs export', 'pgjobs worker') "
            "AND pid <> pg_backend_pid()").fetchone()
        return int(row[0]) if row else 0


def _connect(dsn: str) -> Conn:
    conn: Conn = wait_for(lambda: psycopg.connect(dsn, autocommit=True), timeout=60,
                          what="the server to accept connections", tolerate=RESTARTS)
    return conn


@pytest.mark.chaos
def test_faults_in_the_middle_of_deletes_backfills_and_exports(
        cluster: Any, tmp_path: Any) -> None:
    random_ = rng("engine_crashes")
    dsn = cluster.url()
    target = _setup(dsn)
    destination = f"file://{tmp_path}/exports"
    rounds = scaled(1, 6)
    per_scope = scaled(2000, 3000)
    runners = [Runner(dsn, f"runner-{i}") for i in range(2)]
    for runner in runners:
        runner.start()
    worker = start_worker(dsn, destination, delays="part=0.05")
    figures: dict[str, Any] = {"rounds": rounds, "restarts": 0, "terminated_backends": 0,
                               "recovery_s": [], "jobs": 0}
    started = time.monotonic()
    try:
        for r in range(rounds):
            base = 10 * (r + 1)
            scopes = {"delete": base + 1, "collect": base + 2, "handler": base + 3,
                      "set": base + 4, "export": base + 5}
            with psycopg.connect(dsn, autocommit=True) as conn:
                for scope in scopes.values():
                    _seed(conn, scope, per_scope)
                before = snapshot(conn, target)
                exclude = random_.sample(
                    sorted(k for k, row in before.items()
                           if row["table_id"] == str(scopes["delete"])), 50)
                jobs: dict[str, int] = {
                    "delete": submit_delete(conn, target, str(scopes["delete"]),
                                            {"k": {"$ne": 0}}, exclude, JOB_OPTIONS),
                    "collect": submit_delete(conn, target, str(scopes["collect"]), {"k": 1},
                                             None, {**JOB_OPTIONS, "strategy": "collect"}),
                    "handler": submit_backfill(conn, target, str(scopes["handler"]),
                                               {"k": {"$ne": 3}},
                                               {}, {**JOB_OPTIONS,
                                                    "handler": "public.count_hits"}),
                    "set": submit_backfill(conn, target, str(scopes["set"]), {"k": {"$in": [1, 2]}},
                                           {"label": "backfilled", "status": "x"}, JOB_OPTIONS),
                    "export": submit_export(conn, str(scopes["export"]), {},
                                            {**EXPORT_GRAIN, **JOB_OPTIONS}, target="rows"),
                }
                # Rows inserted from now on are newer than every cutoff: they must
                # survive, even those matching a delete's filter.
                writer = Writer(dsn, [scopes["delete"], scopes["collect"], scopes["export"]])
                writer.start()
                # Two faults per round, in random order: terminate the runners' and
                # the worker's backends; shut the server down immediately and start
                # it again. Each lands at a random moment while the round's jobs
                # are making progress (a page or a part committed since the last).
                faults = ["terminate", "restart"]
                random_.shuffle(faults)
            for fault in faults:
                _wait_progress(dsn, jobs, worker)
                time.sleep(random_.uniform(0.0, 1.0))
                states = _states(dsn, jobs)
                if fault == "terminate":
                    figures["terminated_backends"] += _terminate_backends(dsn)
                    print(f"round {r}: terminated backends with jobs {states}")
                    continue
                t0 = time.monotonic()
                immediate_restart(cluster, down=random_.uniform(0.2, 1.5))
                figures["restarts"] += 1
                with _connect(dsn):
                    figures["recovery_s"].append(round(time.monotonic() - t0, 2))
                print(f"round {r}: restarted with jobs {states}")
            with _connect(dsn) as conn:
                try:
                    wait_for(lambda c=conn, j=jobs: _round_over(c, j, worker),
                             timeout=120, what="every job of the round to end", tolerate=RESTARTS)
                except AssertionError:
                    _dump(conn, jobs, worker)
                    raise
                writer.finish()
                _verify(conn, target, jobs, scopes, before, exclude, writer.acked)
                figures["jobs"] += len(jobs)
    finally:
        for runner in runners:
            runner.finish()
        worker.terminate()
        try:
            _, err = worker.communicate(timeout=30)
        except Exception:  # noqa: BLE001 - a stuck worker is killed
            worker.kill()
            worker.communicate()
    assert [e for runner in runners for e in runner.errors] == []
    figures["runner_reconnects"] = sum(runner.crashes for runner in runners)
    figures["seconds"] = round(time.monotonic() - started, 1)
    record("engine_faults", figures)


def _wait_progress(dsn: str, jobs: dict[str, int], worker: Any) -> None:
    """Until a delete or backfill of the round commits a page (done grows), or the
    round is over. (The export makes progress all the time.)"""
    def progressed(first: dict[int, int]) -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if _round_over(conn, jobs, worker):
                return True
            now: dict[int, int] = dict(conn.execute(
                "SELECT id, done FROM pgjobs.jobs WHERE id = ANY(%s) "
                "AND status = 'running' AND kind <> 'export'",
                (list(jobs.values()),)).fetchall())
        return any(done > first.get(job_id, 0) for job_id, done in now.items())

    with _connect(dsn) as conn:
        first = dict(conn.execute("SELECT id, done FROM pgjobs.jobs WHERE id = ANY(%s)",
                                  (list(jobs.values()),)).fetchall())
    wait_for(lambda: progressed(first), timeout=120, what="progress", interval=0.05,
             tolerate=RESTARTS)


def _round_over(conn: Conn, jobs: dict[str, int], worker: Any) -> bool:
    assert worker.poll() is None, f"the worker exited: {worker.communicate()}"
    row = conn.execute("SELECT bool_and(status NOT IN ('queued', 'running')) FROM pgjobs.jobs "
                       "WHERE id = ANY(%s)", (list(jobs.values()),)).fetchone()
    return row == (True,)


def _dump(conn: Conn, jobs: dict[str, int], worker: Any) -> None:
    """What a stuck round looks like: the jobs, the sessions, the worker's output."""
    for kind, job_id in jobs.items():
        print(kind, conn.execute(
            "SELECT status, done, total, attempts, worker, lease_expires_at - now(), "
            "run_at - now(), error, checkpoint FROM pgjobs.jobs WHERE id = %s",
            (job_id,)).fetchone())
    for row in conn.execute("SELECT pid, application_name, state, wait_event_type, wait_event, "
                            "now() - xact_start, left(query, 120) FROM pg_stat_activity "
                            "WHERE backend_type = 'client backend'"):
        print(row)
    if worker.poll() is not None:
        print("worker exited", worker.returncode, worker.communicate())


def _states(dsn: str, jobs: dict[str, int]) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {kind: f"{row[0]}:{row[1]}" for kind, job_id in jobs.items()
                for row in [conn.execute("SELECT status, done FROM pgjobs.jobs WHERE id = %s",
                                         (job_id,)).fetchone() or ("?", 0)]}


def _verify(conn: Conn, target: Target, jobs: dict[str, int], scopes: dict[str, int],
            before: dict[str, Row], exclude: list[str], acked: dict[int, set[str]]) -> None:
    for kind, job_id in jobs.items():
        row = job(conn, job_id)
        assert row["status"] == "succeeded", (kind, row)
    after = snapshot(conn, target)

    def in_scope(rows: dict[str, Row], scope: int) -> set[str]:
        return {k for k, row in rows.items() if row["table_id"] == str(scope)}

    def check_delete(kind: str, match: Callable[[Row], bool], excluded: list[str]) -> None:
        scope = scopes[kind]
        doomed = job_rows(before, str(scope), cutoff_of(conn, jobs[kind]), match,
                          frozenset(excluded))
        assert doomed, kind
        left = in_scope(after, scope)
        assert not (left & doomed), f"{kind}: rows that should be gone remain"
        cutoff = cutoff_of(conn, jobs[kind])
        late = [k for k in left if after[k]["created_at"] <= cutoff and match(after[k])
                and k not in excluded]
        assert not late, f"{kind}: rows that should be gone remain: {late[:10]}"
        spared = in_scope(before, scope) - doomed
        assert spared <= left, f"{kind}: rows outside filter/cutoff/exclusions were deleted"
        assert acked[scope] <= left, f"{kind}: rows inserted during the job were deleted"
        assert job(conn, jobs[kind])["done"] == len(doomed), kind

    check_delete("delete", lambda r: r["data"]["k"] != 0, exclude)
    check_delete("collect", lambda r: r["data"]["k"] == 1, [])

    handler_scope = str(scopes["handler"])
    covered = job_rows(before, handler_scope, cutoff_of(conn, jobs["handler"]),
                       lambda r: r["data"]["k"] != 3)
    hits = dict(conn.execute("SELECT id::text, hits FROM rows WHERE table_id = %s",
                             (int(handler_scope),)).fetchall())
    wrong = {k: v for k, v in hits.items() if v != (1 if k in covered else 0)}
    assert not wrong, f"handler counts off (row: count): {dict(list(wrong.items())[:10])}"
    assert job(conn, jobs["handler"])["done"] == len(covered)

    set_scope = str(scopes["set"])
    covered = job_rows(before, set_scope, cutoff_of(conn, jobs["set"]),
                       lambda r: r["data"]["k"] in (1, 2))
    for key, row in after.items():
        if row["table_id"] != set_scope:
            continue
        if key in covered:
            assert row["label"] == "backfilled" and row["data"]["status"] == "x", row
        else:
            assert row == before[key], row
    assert job(conn, jobs["set"])["done"] == len(covered)

    export = job(conn, jobs["export"])
    from tests.support import object_bytes

    cutoff = cutoff_of(conn, jobs["export"]).isoformat()
    reference = plain_copy(conn, f"SELECT * FROM rows WHERE table_id = {scopes['export']} "
                                 f"AND created_at <= '{cutoff}' ORDER BY id")
    assert object_bytes(export["result"]) == reference
    print(f"verified: {json.dumps({k: job(conn, j)['attempts'] for k, j in jobs.items()})}"
          " attempts")
