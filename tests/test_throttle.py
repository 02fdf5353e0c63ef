"""Throttling (issue 10 items 6-7): the rate limit and health signals that
hold a writing job's pages, against real signals: a streaming standby with
its replay paused, real autovacuum on the target, the WAL rate, an old
transaction. A held job stays running with checkpoint.throttled, sends ONE
`throttled` event per spell, never fails or burns an attempt, and pages
again by itself once the signal clears, with exact final rows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    Conn,
    Target,
    cutoff_of,
    drain_notifies,
    job,
    job_rows,
    make_rows_target,
    scalar,
    seed,
    slow_deletes,
    snapshot,
    submit_backfill,
    submit_delete,
    wait_for,
)
from tests.support.standby import Standby, start_standby

BUILT_IN = {"notify_target_scope": False, "max_replica_lag_bytes": 268435456,
            "pause_on_autovacuum": True, "max_rows_per_second": None, "page_delay": None,
            "max_wal_rate": None, "max_xact_age": None}


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 900)
    return t


@pytest.fixture(scope="session")
def standby(cluster_url: str) -> Iterator[Standby]:
    """A streaming standby of the test cluster; started only by the tests that
    use it, stopped at the end of the session."""
    s = start_standby(cluster_url)
    try:
        yield s
    finally:
        s.stop()


def _runner(make_conn: Callable[..., Conn], job_id: int,
            budget: str | None = None) -> threading.Thread:
    """Run the job in a thread (run_job, or pgjobs.run with a budget)."""
    runner = make_conn()

    def go() -> None:
        if budget is None:
            runner.execute("CALL pgjobs.run_job(%s)", (job_id,))
        else:
            runner.execute("CALL pgjobs.run(%s::interval)", (budget,))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def _autovacuums(conn: Conn, table: str) -> int:
    """Autovacuum workers vacuuming `table` now."""
    return int(scalar(conn, "SELECT count(*) FROM pg_stat_progress_vacuum p"
                            " JOIN pg_stat_activity a ON a.pid = p.pid"
                            " WHERE p.relid = %s::regclass"
                            " AND a.backend_type = 'autovacuum worker'", (table,)))


def _throttled(conn: Conn, job_id: int) -> dict[str, Any] | None:
    value = scalar(conn, "SELECT checkpoint -> 'throttled' FROM pgjobs.jobs WHERE id = %s",
                   (job_id,))
    return value if isinstance(value, dict) else None


def _listen(make_conn: Callable[..., Conn]) -> Conn:
    listener = make_conn()
    listener.execute("LISTEN pgjobs")
    return listener


def _job_events(listener: Conn, job_id: int, until: str) -> list[dict[str, Any]]:
    events = drain_notifies(listener, timeout=30,
                            until=lambda e: e["id"] == job_id and e["event"] == until)
    return [e for e in events if e["id"] == job_id]


def _events(listener: Conn, job_id: int, until: str) -> list[str]:
    return [e["event"] for e in _job_events(listener, job_id, until)]


def _assert_one_event_per_spell(events: list[dict[str, Any]]) -> None:
    """Held at least once, and one `throttled` event per spell: a spell ends only
    when a page runs, so each event's `done` is past the one before. (How many
    spells is the signal's: a WAL-rate hold lapses for a page whenever a
    half-second sample saw no WAL, a replica-lag hold when the standby caught
    up meanwhile; counting them would time the test against those samples.)"""
    done = [e["done"] for e in events if e["event"] == "throttled"]
    assert done, events
    assert done == sorted(set(done)), events


def _assert_exact(conn: Conn, target: Target, before: dict[str, Any], job_id: int,
                  scope: str = "2") -> None:
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    doomed = job_rows(before, scope, cutoff_of(conn, job_id), lambda r: True)
    assert set(snapshot(conn, target)) == set(before) - doomed
    assert done["done"] == len(doomed)
    assert "throttled" not in (done["checkpoint"] or {})


# --- options and defaults --------------------------------------------------------------

BAD = [
    ("max_rows_per_second", -1), ("max_rows_per_second", 1.5), ("max_rows_per_second", "10"),
    ("max_rows_per_second", None), ("max_rows_per_second", 10**10),
    ("page_delay", "soon"), ("page_delay", 5), ("page_delay", "-1 second"),
    ("page_delay", "2 hours"), ("max_replica_lag_bytes", -5), ("max_replica_lag_bytes", "1MB"),
    ("max_replica_lag_bytes", True), ("max_wal_rate", 2**60), ("max_wal_rate", [1]),
    ("pause_on_autovacuum", "yes"), ("pause_on_autovacuum", 1), ("pause_on_autovacuum", None),
    ("max_xact_age", "forever"), ("max_xact_age", 60), ("max_xact_age", "2 days"),
]


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize(("key", "value"), BAD)
def test_bad_throttle_options_are_refused_at_submit(conn: Conn, target: Target, kind: str,
                                                    key: str, value: Any) -> None:
    with pytest.raises(errors.InvalidParameterValue) as err:
        if kind == "delete":
            submit_delete(conn, target, "2", options={key: value})
        else:
            submit_backfill(conn, target, "2", {}, {"n": 1}, options={key: value})
    assert key in str(err.value)
    assert err.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    if value is not None:  # in set_defaults, null resets a key
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({key: value}),))
    assert scalar(conn, "SELECT pgjobs._defaults()") == BUILT_IN


GOOD = {"max_rows_per_second": 5000, "page_delay": "200 ms", "max_replica_lag_bytes": 0,
        "max_wal_rate": 67108864, "pause_on_autovacuum": False, "max_xact_age": "10 min"}


@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_good_throttle_options_are_stored_as_given(conn: Conn, target: Target,
                                                   kind: str) -> None:
    if kind == "delete":
        job_id = submit_delete(conn, target, "2", options=GOOD)
    else:
        job_id = submit_backfill(conn, target, "2", {}, {"n": 1}, options=GOOD)
    assert job(conn, job_id)["options"] == GOOD


def test_export_and_custom_kinds_do_not_take_throttle_options(conn: Conn,
                                                              target: Target) -> None:
    conn.execute("SELECT pgjobs.allow_storage('file:///tmp/')")
    with pytest.raises(errors.InvalidParameterValue, match="unknown option"):
        conn.execute("SELECT pgjobs.submit_export('user_table_rows', '2', '{}',"
                      " '{\"destination\": \"file:///tmp/x.csv\", \"page_delay\": \"1s\"}')")
    with pytest.raises(errors.InvalidParameterValue, match="unknown option"):
        conn.execute("SELECT pgjobs.submit('custom', 'user_table_rows', '2', '{}',"
                     " '{\"max_rows_per_second\": 5}')")


def test_set_defaults_are_merged_into_later_writing_jobs(conn: Conn, target: Target) -> None:
    earlier = submit_delete(conn, target, "1")
    in_force = scalar(conn, "SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(
        {"max_rows_per_second": 100, "max_replica_lag_bytes": 1048576,
         "pause_on_autovacuum": False}),))
    assert in_force == {**BUILT_IN, "max_rows_per_second": 100,
                        "max_replica_lag_bytes": 1048576, "pause_on_autovacuum": False}
    assert scalar(conn, "SELECT pgjobs._defaults()") == in_force
    later = submit_delete(conn, target, "2", options={"max_rows_per_second": 7,
                                                      "on_conflict": "queue"})
    backfill = submit_backfill(conn, target, "3", {}, {"n": 1})
    assert job(conn, earlier)["options"] == {}
    assert job(conn, later)["options"] == {"max_rows_per_second": 7,
                                           "max_replica_lag_bytes": 1048576,
                                           "pause_on_autovacuum": False,
                                           "on_conflict": "queue"}
    assert job(conn, backfill)["options"] == {"max_rows_per_second": 100,
                                              "max_replica_lag_bytes": 1048576,
                                              "pause_on_autovacuum": False}
    # null goes back to the built-in default; other keys stay
    assert scalar(conn, "SELECT pgjobs.set_defaults('{\"max_rows_per_second\": null}')") == {
        **BUILT_IN, "max_replica_lag_bytes": 1048576, "pause_on_autovacuum": False}
    assert "max_rows_per_second" not in job(conn, submit_delete(
        conn, target, "1", options={"on_conflict": "queue"}))["options"]


def test_clients_cannot_set_throttle_defaults_nor_read_health(conn: Conn) -> None:
    conn.execute("CREATE ROLE throttle_client LOGIN IN ROLE pgjobs_client")
    conn.execute("SET ROLE throttle_client")
    for sql in ("SELECT pgjobs.set_defaults('{\"page_delay\": \"1s\"}')",
                "SELECT pgjobs._health()"):
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)


# --- rate limit ------------------------------------------------------------------------

def test_max_rows_per_second_paces_pages(conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "2", options={"max_rows_per_second": 150})
    started = time.monotonic()
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    elapsed = time.monotonic() - started
    _assert_exact(conn, target, before, job_id)
    done = job(conn, job_id)
    # ~287 rows at 150 rows/s: pages of at most 150 rows, and the engine slept
    # between them (a lower bound only: never a strict timing)
    assert done["checkpoint"]["pages"] >= 2
    assert elapsed >= (done["done"] - 150) / 150 * 0.9


def test_page_delay_sleeps_between_pages(conn: Conn, target: Target) -> None:
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "2", options={"page_delay": "300 ms",
                                                       "page_size": 100})
    started = time.monotonic()
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    elapsed = time.monotonic() - started
    _assert_exact(conn, target, before, job_id)
    pages = job(conn, job_id)["checkpoint"]["pages"]
    assert pages >= 3
    assert elapsed >= (pages - 1) * 0.3 * 0.9


def test_rate_limited_job_is_handed_back_at_the_budget_end(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "2", options={"page_delay": "1 hour",
                                                       "page_size": 100})
    conn.execute("CALL pgjobs.run('2 seconds')")
    held = job(conn, job_id)
    assert held["status"] == "queued" and held["attempts"] == 0
    assert held["checkpoint"]["pages"] == 1  # the first page ran, the delay held the next


# --- health signals --------------------------------------------------------------------

def test_replica_lag_holds_pages_until_the_standby_replays(
        conn: Conn, make_conn: Callable[..., Conn], target: Target, standby: Standby) -> None:
    before = snapshot(conn, target)
    listener = _listen(make_conn)
    with psycopg.connect(standby.url, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            # WAL the standby receives but does not replay
            conn.execute("CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad"
                         " FROM generate_series(1, 5000) g")
            job_id = submit_delete(conn, target, "2", options={
                "max_replica_lag_bytes": 65536, "page_size": 50})
            runner = _runner(make_conn, job_id)
            wait_for(lambda: _throttled(conn, job_id) is not None)
            held = job(conn, job_id)
            assert held["status"] == "running"
            assert "replica lag" in held["checkpoint"]["throttled"]["reason"]
            assert "pgjobs_test_standby" in held["checkpoint"]["throttled"]["reason"]
            time.sleep(1.5)  # several checks while held: still one event
            assert job(conn, job_id)["done"] == held["done"]
            assert job(conn, job_id)["status"] == "running"
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    runner.join(60)
    assert not runner.is_alive()
    _assert_exact(conn, target, before, job_id)
    events = _job_events(listener, job_id, "succeeded")
    _assert_one_event_per_spell(events)
    assert events[-1]["event"] == "succeeded"


@pytest.mark.parametrize("layout", ["table", "partitioned"])
def test_autovacuum_on_the_target_holds_pages(
        conn: Conn, make_conn: Callable[..., Conn], cluster_url: str, layout: str) -> None:
    """Real autovacuum, made to crawl on the target (on a partition of it when
    partitioned: autovacuum works on leaves; cost limit 1, 100 ms delay), then
    stopped by turning it off for that table (autovacuum cancels itself for the
    lock that needs)."""
    if layout == "table":
        target = make_rows_target(conn)
        vacuumed = target.name
    else:
        conn.execute("""CREATE TABLE user_table_rows (
            id bigint GENERATED BY DEFAULT AS IDENTITY, table_id integer NOT NULL, n integer,
            label text, data jsonb, created_at timestamptz NOT NULL DEFAULT now())
            PARTITION BY LIST (table_id)""")
        conn.execute("CREATE TABLE rows_1_3 PARTITION OF user_table_rows FOR VALUES IN (1, 2, 3)")
        conn.execute("CREATE TABLE rows_9 PARTITION OF user_table_rows FOR VALUES IN (9)")
        conn.execute("CREATE INDEX ON user_table_rows (table_id, id)")
        conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                     " 'created_at', 'data')")
        target = Target("user_table_rows", "bigint", "int", True)
        vacuumed = "rows_9"
    seed(conn, target, 900)
    conn.execute(f"""ALTER TABLE {vacuumed} SET (autovacuum_vacuum_threshold = 0,
        autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_insert_threshold = 0,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_cost_limit = 1,
        autovacuum_vacuum_cost_delay = 100)""")
    conn.execute(f"INSERT INTO {target.name} (table_id, n, created_at)"
                 f" SELECT 9, g, now() FROM generate_series(1, 20000) g")
    conn.execute(f"DELETE FROM {target.name} WHERE table_id = 9")
    before = snapshot(conn, target)
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET autovacuum_naptime = 1")
        admin.execute("SELECT pg_reload_conf()")
        try:
            # An autovacuum worker's, as pgjobs._health counts: a VACUUM of
            # someone else on the table (an operator's; PGJOBS_TEST_NOISE's,
            # which failed this test) ends in a moment and holds nothing.
            wait_for(lambda: _autovacuums(conn, vacuumed) > 0, timeout=60,
                     what=f"autovacuum on {vacuumed}")
            job_id = submit_delete(conn, target, "2")
            runner = _runner(make_conn, job_id)
            wait_for(lambda: _throttled(conn, job_id) is not None)
            assert "autovacuum" in job(conn, job_id)["checkpoint"]["throttled"]["reason"]
            assert job(conn, job_id)["status"] == "running"
            # the same autovacuum does not hold a job that opted out
            unheld = submit_delete(conn, target, "1", options={"pause_on_autovacuum": False})
            conn.execute("CALL pgjobs.run_job(%s)", (unheld,))
            assert job(conn, unheld)["status"] == "succeeded"
            assert _autovacuums(conn, vacuumed) == 1
            conn.execute(f"ALTER TABLE {vacuumed} SET (autovacuum_enabled = off)")
        finally:
            admin.execute("ALTER SYSTEM RESET autovacuum_naptime")
            admin.execute("SELECT pg_reload_conf()")
    runner.join(60)
    assert not runner.is_alive()
    held = job(conn, job_id)
    assert held["status"] == "succeeded" and held["attempts"] == 1
    assert "throttled" not in held["checkpoint"]
    doomed = (job_rows(before, "2", cutoff_of(conn, job_id), lambda r: True)
              | job_rows(before, "1", cutoff_of(conn, unheld), lambda r: True))
    assert set(snapshot(conn, target)) == set(before) - doomed


def test_wal_rate_holds_pages_and_resumes_when_the_limit_allows(
        conn: Conn, make_conn: Callable[..., Conn], target: Target) -> None:
    before = snapshot(conn, target)
    listener = _listen(make_conn)
    slow_deletes(conn, target, 0.005)  # pages take time: a WAL sample falls within the job
    job_id = submit_delete(conn, target, "2", options={"max_wal_rate": 1, "page_size": 20})
    runner = _runner(make_conn, job_id)
    wait_for(lambda: _throttled(conn, job_id) is not None)
    throttled = _throttled(conn, job_id)
    assert throttled is not None and "WAL rate" in throttled["reason"]
    assert job(conn, job_id)["status"] == "running"
    # the operator raises the limit of the running job
    conn.execute("UPDATE pgjobs.jobs SET options = options || '{\"max_wal_rate\": 0}'"
                 " WHERE id = %s", (job_id,))
    runner.join(60)
    assert not runner.is_alive()
    _assert_exact(conn, target, before, job_id)
    _assert_one_event_per_spell(_job_events(listener, job_id, "succeeded"))


def test_old_transaction_holds_pages_and_budget_end_hands_back_without_an_attempt(
        conn: Conn, make_conn: Callable[..., Conn], target: Target) -> None:
    before = snapshot(conn, target)
    job_id = submit_delete(conn, target, "2", options={"max_xact_age": "1 second"})
    idle = make_conn(autocommit=False)
    idle.execute("SELECT 1")  # a transaction left open
    time.sleep(1.2)
    conn.execute("CALL pgjobs.run('2 seconds')")
    held = job(conn, job_id)
    assert held["status"] == "queued" and held["attempts"] == 0
    assert "oldest transaction" in held["checkpoint"]["throttled"]["reason"]
    since = held["checkpoint"]["throttled"]["since"]
    # the next runner continues the same spell (same since) ...
    conn.execute("CALL pgjobs.run('1 second')")
    assert job(conn, job_id)["checkpoint"]["throttled"]["since"] == since
    idle.rollback()
    # ... and pages again once the transaction ended
    conn.execute("CALL pgjobs.run('30 seconds')")
    _assert_exact(conn, target, before, job_id)


def test_cancel_stops_a_throttled_job(conn: Conn, make_conn: Callable[..., Conn],
                                      target: Target) -> None:
    slow_deletes(conn, target, 0.005)  # pages take time: a WAL sample falls within the job
    job_id = submit_delete(conn, target, "2", options={"max_wal_rate": 1, "page_size": 20})
    runner = _runner(make_conn, job_id)
    wait_for(lambda: _throttled(conn, job_id) is not None)
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    runner.join(30)
    assert not runner.is_alive()
    assert job(conn, job_id)["status"] == "canceled"


def test_held_job_keeps_its_lease(conn: Conn, make_conn: Callable[..., Conn],
                                  target: Target) -> None:
    """The hold renews the lease once half of it is spent, and the job stays
    its runner's. The test spends the lease itself (as expire_lease does)
    rather than sleeping past a lease of 2 s: that bet on the runner's backend
    renewing within a second, and a 2.5 s stall of it (SIGSTOP, or a loaded
    machine) let prune() rescue the job."""
    slow_deletes(conn, target, 0.005)  # pages take time: a WAL sample falls within the job
    job_id = submit_delete(conn, target, "2", options={"max_wal_rate": 1, "page_size": 20,
                                                       "lease": "60 seconds"})
    runner = _runner(make_conn, job_id)
    wait_for(lambda: _throttled(conn, job_id) is not None)
    # Three quarters of the lease spent: the next hold renews it.
    conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() + lease / 4"
                 " WHERE id = %s", (job_id,))
    wait_for(lambda: scalar(conn, "SELECT lease_expires_at > now() + lease / 2"
                                  " FROM pgjobs.jobs WHERE id = %s", (job_id,)),
             what="the hold to renew the lease")
    conn.execute("SELECT pgjobs.prune()")
    held = job(conn, job_id)
    assert held["status"] == "running" and held["attempts"] == 1
    conn.execute("UPDATE pgjobs.jobs SET options = options - 'max_wal_rate' WHERE id = %s",
                 (job_id,))
    runner.join(30)
    assert job(conn, job_id)["status"] == "succeeded"


def test_import_jobs_take_the_same_options_at_the_shared_place(conn: Conn,
                                                               target: Target) -> None:
    """Every writing kind's options pass pgjobs._insert_job, import's included."""
    insert = ("SELECT (pgjobs._insert_job('import', 'user_table_rows'::regclass, '2', '{}',"
              " %s::jsonb)).options")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_wal_rate\": 1000000}')")
    assert scalar(conn, insert, (json.dumps(GOOD),)) == GOOD
    assert scalar(conn, insert, ('{"on_conflict": "queue"}',)) == {
        "on_conflict": "queue", "max_wal_rate": 1000000}
    for key, value in BAD:
        with pytest.raises(errors.InvalidParameterValue, match=key):
            conn.execute(insert, (json.dumps({key: value}),))


def test_a_backfill_is_held_and_a_new_spell_sends_a_new_event(
        conn: Conn, make_conn: Callable[..., Conn], target: Target) -> None:
    listener = _listen(make_conn)
    conn.execute(f"""
        CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE UPDATE ON {target.name}
            FOR EACH ROW EXECUTE FUNCTION slow_update();""")
    job_id = submit_backfill(conn, target, "2", {}, {"label": "filled"},
                             options={"max_xact_age": "200 ms", "page_size": 20})
    runner = _runner(make_conn, job_id)
    wait_for(lambda: job(conn, job_id)["done"] > 0)
    for _spell in range(2):
        idle = make_conn(autocommit=False)
        idle.execute("SELECT 1")  # a transaction left open
        wait_for(lambda: _throttled(conn, job_id) is not None)
        assert job(conn, job_id)["status"] == "running"
        done = job(conn, job_id)["done"]
        idle.rollback()
        wait_for(lambda: _throttled(conn, job_id) is None
                 and job(conn, job_id)["done"] > done)  # noqa: B023
    runner.join(60)
    assert not runner.is_alive()
    finished = job(conn, job_id)
    assert finished["status"] == "succeeded" and finished["attempts"] == 1
    assert scalar(conn, f"SELECT count(*) FROM {target.name} WHERE table_id = 2"
                        " AND label IS DISTINCT FROM 'filled'"
                        " AND created_at <= %s", (cutoff_of(conn, job_id),)) == 0
    assert _events(listener, job_id, "succeeded").count("throttled") == 2


def test_an_owner_without_pg_monitor_cannot_see_replica_lag(
        conn: Conn, make_conn: Callable[..., Conn], target: Target, standby: Standby) -> None:
    """The signal is read as pgjobs' owner (SECURITY DEFINER): without
    pg_read_all_stats the standby's positions are hidden and the job is not
    held (doctor says so); with pg_monitor it is."""
    conn.execute("CREATE ROLE lag_blind NOLOGIN")
    conn.execute("ALTER FUNCTION pgjobs._health() OWNER TO lag_blind")
    with psycopg.connect(standby.url, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            conn.execute("CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad"
                         " FROM generate_series(1, 5000) g")
            blind = submit_delete(conn, target, "1", options={"max_replica_lag_bytes": 65536})
            conn.execute("CALL pgjobs.run_job(%s)", (blind,))
            assert job(conn, blind)["status"] == "succeeded"
            assert scalar(conn, "SELECT status FROM pgjobs.doctor()"
                                " WHERE check_name = 'throttle.visibility'") == "warn"
            conn.execute("GRANT pg_monitor TO lag_blind")
            seen = submit_delete(conn, target, "2", options={"max_replica_lag_bytes": 65536,
                                                             "page_size": 50})
            # a new runner session (a session keeps its sample for 0.5 s)
            make_conn().execute("CALL pgjobs.run('2 seconds')")
            held = job(conn, seen)
            assert held["status"] == "queued" and held["attempts"] == 0
            assert "replica lag" in held["checkpoint"]["throttled"]["reason"]
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    conn.execute("CALL pgjobs.run('30 seconds')")
    assert job(conn, seen)["status"] == "succeeded"


def test_integer_options_are_stored_as_integers(conn: Conn, target: Target) -> None:
    job_id = submit_delete(conn, target, "2", options={"max_rows_per_second": 1000.0,
                                                       "max_wal_rate": 1e6})
    assert scalar(conn, "SELECT options::text FROM pgjobs.jobs WHERE id = %s", (job_id,)) == (
        '{"max_wal_rate": 1000000, "max_rows_per_second": 1000}')
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"


@pytest.mark.parametrize(("key", "value"), [("max_rows_per_second", 2.5),
                                            ("page_delay", "soon"),
                                            ("max_replica_lag_bytes", "1MB"),
                                            ("pause_on_autovacuum", "yes"),
                                            ("max_xact_age", 60)])
def test_a_limit_edited_into_something_invalid_fails_the_job_not_the_runner(
        conn: Conn, target: Target, key: str, value: Any) -> None:
    other = submit_delete(conn, target, "1")
    job_id = submit_delete(conn, target, "2", options={"page_size": 50})
    conn.execute("SELECT pgjobs._run_page(id, (pgjobs._claim_id(id, 'w')).worker)"
                 " FROM pgjobs.jobs WHERE id = %s", (job_id,))  # started, then released
    conn.execute("SELECT pgjobs.release(id, worker) FROM pgjobs.jobs WHERE id = %s", (job_id,))
    conn.execute("UPDATE pgjobs.jobs SET options = options || jsonb_build_object(%s::text,"
                 " %s::jsonb) WHERE id = %s", (key, json.dumps(value), job_id))
    conn.execute("CALL pgjobs.run('20 seconds')")  # does not raise
    failed = job(conn, job_id)
    assert failed["status"] == "failed" and key in failed["error"]
    assert job(conn, other)["status"] == "succeeded"
