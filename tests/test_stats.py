"""pgjobs.stats() (issue 14, item 1): queue depth by kind, status and target,
the oldest due queued job, running jobs with rate and ETA, throttled and paused
jobs, expiring leases, recent throughput; what it counts follows the row
policies of pgjobs.jobs (a role sees in stats() exactly the jobs it sees as
rows), and it reads unfinished and recently finished jobs through indexes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import claim, make_target, scalar, submit
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]
PID = os.getpid()


def stats(conn: Conn) -> dict[str, Any]:
    value = scalar(conn, "SELECT pgjobs.stats()")
    assert isinstance(value, dict)
    return value


def depth(s: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    return {(q["kind"], q["status"], q["target"]): q["jobs"] for q in s["queue"]}


def test_empty_database_has_empty_stats(conn: Conn) -> None:
    s = stats(conn)
    assert s["queue"] == [] and s["running"] == [] and s["paused"] == []
    assert s["throttled"] == [] and s["leases_expiring"] == []
    assert s["oldest_queued"] is None and s["rows"] == {} and s["finished_last_hour"] == []


def test_queue_depth_running_rate_paused_throttled_and_leases(conn: Conn) -> None:
    make_target(conn, "items")
    make_target(conn, "other")
    queued = [submit(conn, "custom", "items") for _ in range(3)]
    submit(conn, "custom", "other")
    later = submit(conn, "custom", "other", options={"run_at": "2999-01-01T00:00:00Z"})
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() - interval '90 seconds' "
                 "WHERE id = %s", (queued[1],))
    s = stats(conn)
    assert depth(s) == {("custom", "queued", "public.items"): 3,
                        ("custom", "queued", "public.other"): 2}
    # The oldest DUE job: the one due 90 s ago; the far-future one never counts.
    assert s["oldest_queued"]["id"] == queued[1]
    assert s["oldest_queued"]["age_seconds"] >= 90
    assert later not in {s["oldest_queued"]["id"]}

    [run] = claim(conn, "w1#1")
    assert run in queued
    to_pause = next(i for i in queued if i != run)
    # The rates are read against the UPDATE's now(): one transaction, so a pause
    # of the machine between the two statements cannot move them.
    with conn.transaction():
        conn.execute("UPDATE pgjobs.jobs SET done = 500, total = 1000, "
                     "started_at = now() - interval '10 seconds', "
                     "lease_expires_at = now() + interval '3 seconds', "
                     "checkpoint = '{\"throttled\": {\"reason\": \"replica_lag\", "
                     "\"since\": \"2026-01-01T00:00:00Z\"}}' WHERE id = %s", (run,))
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (to_pause,)) is True
        s = stats(conn)
        assert depth(s) == {("custom", "queued", "public.items"): 1,
                            ("custom", "running", "public.items"): 1,
                            ("custom", "paused", "public.items"): 1,
                            ("custom", "queued", "public.other"): 2}
        [r] = s["running"]
        assert r["id"] == run and r["done"] == 500 and r["total"] == 1000
        assert 30 <= r["rows_per_second"] <= 50  # 500 rows over ~10 s
        assert 5 <= r["eta_seconds"] <= 17
        assert r["throttled"]["reason"] == "replica_lag"
        assert [(t["id"], t["reason"]) for t in s["throttled"]] == [(run, "replica_lag")]
        assert [p["id"] for p in s["paused"]] == [to_pause]
        assert [x["id"] for x in s["leases_expiring"]] == [run]
        assert s["rows"]["custom"]["last_minute"] >= 499  # all of it ran in the last 10 s
        assert s["rows"]["custom"]["last_hour"] == 500


def test_rows_in_a_window_are_the_share_of_each_job_that_ran_in_it(conn: Conn) -> None:
    make_target(conn, "items")
    # A job that ran for two hours, evenly: half its rows fell in the last hour.
    old = submit(conn, "custom", "items")
    [got] = claim(conn, "w#1")
    assert got == old
    # The windows are read against the UPDATEs' now() (one transaction): a pause
    # of the machine after the UPDATE moved "the last minute" past the job's end.
    with conn.transaction():
        conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded', done = 7200, "
                     "lease_expires_at = NULL, started_at = now() - interval '2 hours', "
                     "finished_at = now() WHERE id = %s", (old,))
        # A job that finished two hours ago counts nowhere.
        gone = submit(conn, "custom", "items")
        conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', done = 99, "
                     "started_at = now() - interval '3 hours', finished_at = now() - interval "
                     "'2 hours' WHERE id = %s", (gone,))
        s = stats(conn)
        assert s["rows"]["custom"]["last_hour"] == 3600
        assert 59 <= s["rows"]["custom"]["last_minute"] <= 61
        assert s["finished_last_hour"] == [{"kind": "custom", "status": "succeeded", "jobs": 1}]
        assert s["queue"] == []


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    conn.execute("CREATE TABLE pub (id bigint PRIMARY KEY, scope int NOT NULL)")
    conn.execute("CREATE TABLE secret (id bigint PRIMARY KEY, scope int NOT NULL)")
    made = {}
    for name, parent in (("reader", "pgjobs_client"), ("nobody", "pgjobs_client"),
                         ("admin", "pgjobs_admin")):
        role = f"pgjobs_stats_{name}_{PID}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE {parent}")
        made[name] = role
    conn.execute(f"GRANT SELECT ON pub TO {made['reader']}")
    yield made
    conn.execute("RESET ROLE")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _stats_as(conn: Conn, role: str, scopes: str | None = None) -> dict[str, Any]:
    with acting_as(conn, role, scopes):
        s = stats(conn)
        ids = {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs").fetchall()}
        s["_visible_ids"] = ids
        return s


def _ids_in(s: dict[str, Any]) -> set[int]:
    found: set[int] = set()
    for part in ("running", "throttled", "paused", "leases_expiring"):
        found |= {x["id"] for x in s[part]}
    if s["oldest_queued"]:
        found.add(s["oldest_queued"]["id"])
    return found


def test_stats_count_exactly_the_jobs_the_role_may_see(conn: Conn,
                                                       roles: dict[str, str]) -> None:
    """Every part of stats() (depth, running, paused, throttled, leases, oldest,
    finished, rows) for a role without privileges on a target leaves that
    target's jobs out; a reader of one target sees that target's only; an
    admin sees all; pgjobs.allowed_scopes narrows them like the rows."""
    jobs: dict[str, list[int]] = {"pub": [], "secret": []}
    for target in ("pub", "secret"):
        for scope in ("1", "2"):
            jobs[target].append(submit(conn, "custom", target, scope))  # stays queued
        running = submit(conn, "custom", target, "1")
        conn.execute("UPDATE pgjobs.jobs SET status = 'running', worker = 'w#1', "
                     "started_at = now() - interval '5 seconds', done = 10, "
                     "lease_expires_at = now() + interval '2 seconds', checkpoint = "
                     "'{\"throttled\": {\"reason\": \"wal_rate\", \"since\": \"x\"}}' "
                     "WHERE id = %s", (running,))
        paused = submit(conn, "custom", target, "2")
        assert scalar(conn, "SELECT pgjobs.pause(%s)", (paused,)) is True
        done = submit(conn, "custom", target, "1")
        conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded', done = 7, "
                     "started_at = now() - interval '1 second', finished_at = now() "
                     "WHERE id = %s", (done,))
        jobs[target] += [running, paused, done]

    nobody = _stats_as(conn, roles["nobody"])
    assert nobody["_visible_ids"] == set()
    assert nobody["queue"] == [] and _ids_in(nobody) == set()
    assert nobody["oldest_queued"] is None
    assert nobody["finished_last_hour"] == [] and nobody["rows"] == {}

    reader = _stats_as(conn, roles["reader"])
    assert reader["_visible_ids"] == set(jobs["pub"])
    assert {q["target"] for q in reader["queue"]} == {"public.pub"}
    assert sum(q["jobs"] for q in reader["queue"]) == 4
    assert _ids_in(reader) <= set(jobs["pub"]) and _ids_in(reader)
    assert reader["finished_last_hour"] == [{"kind": "custom", "status": "succeeded", "jobs": 1}]
    assert reader["rows"]["custom"]["last_hour"] == 17

    scoped = _stats_as(conn, roles["reader"], scopes="2")
    assert all(x["scope"] == "2" for x in scoped["paused"] + scoped["running"])
    assert sum(q["jobs"] for q in scoped["queue"]) == 2  # one queued, one paused, scope 2

    admin = _stats_as(conn, roles["admin"])
    assert {q["target"] for q in admin["queue"]} == {"public.pub", "public.secret"}
    assert sum(q["jobs"] for q in admin["queue"]) == 8
    assert json.dumps(admin, default=str)


def test_stats_reads_indexes_not_the_whole_table(conn: Conn) -> None:
    """With many finished jobs and a few unfinished ones, the plan of each part
    reads through an index (never a sequential scan of pgjobs.jobs)."""
    make_target(conn, "items")
    conn.execute("""
        INSERT INTO pgjobs.jobs (kind, target, scope, status, done, started_at, finished_at)
        SELECT 'custom', 'items'::regclass, (i % 50)::text, 'succeeded', 10,
               now() - interval '3 days', now() - interval '2 days'
          FROM generate_series(1, 20000) i""")
    for _ in range(5):
        submit(conn, "custom", "items")
    conn.execute("ANALYZE pgjobs.jobs")
    body = scalar(conn, "SELECT prosrc FROM pg_proc WHERE oid = 'pgjobs.stats()'::regprocedure")
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN " + body.split("-- nothing.", 1)[-1].strip().rstrip(";")).fetchall())
    assert "Seq Scan on jobs" not in plan, plan
    assert "jobs_unfinished_idx" in plan and "jobs_finished_idx" in plan, plan
    assert sum(q["jobs"] for q in stats(conn)["queue"]) == 5
