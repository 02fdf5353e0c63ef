"""A client cannot stall its scope's writers for good by pausing a writer it owns.

A paused writer that started keeps its place in its scope's queue (API.md:
later writers wait behind it), and a paused job was never pruned. So a role
that may only INSERT submitted an import, let a worker claim it, paused it,
and every later delete of the scope waited behind it for ever; the roles it
stalled may not cancel it (cancel asks for INSERT on the target). A client's
paused delete or backfill held the scope's imports alike.

The engine now cancels a writing job a role that is not an administrator
paused once it has been paused for set_defaults' max_client_pause
(pgjobs._expire_client_pauses, run by pgjobs.prune and pgjobs.run): event
`canceled`, an error naming pgjobs.retry, and pgjobs.retry queues it again
behind the scope's later writers. An administrator's pause is not bounded.

The table: each writing kind a client may pause (import, delete, backfill),
paused by its submitting client or by an administrator, while running (the
pause honoured when its lease is rescued) or while queued after it started
(handed back), swept by prune or by the engine's run. The clock is moved
rather than waited for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allowed_folder, drain_notifies, job, people_client, scalar
from tests.support.roles import acting_as, make_role

Conn = psycopg.Connection[Any]

KINDS = ["import", "delete", "backfill"]
PAUSERS = ["client", "admin"]
STATES = ["running", "queued after start"]


def _submit(conn: Conn, kind: str, source: str) -> int:
    args: tuple[str, ...]
    if kind == "import":
        sql, args = "SELECT pgjobs.submit_import('people', '1', %s, '{}')", (source,)
    elif kind == "delete":
        sql, args = "SELECT pgjobs.submit_delete('people', '1', '{}', '{}', '{}')", ()
    else:
        sql, args = ("SELECT pgjobs.submit_backfill('people', '1', '{}', "
                     "'{\"name\": \"filled\"}', '{}')", ())
    return int(scalar(conn, sql, args))


def _as(conn: Conn, role: str, sql: str, *args: Any) -> Any:
    with acting_as(conn, role):
        return scalar(conn, sql, args)


def _held_by(conn: Conn, job_id: int) -> int | None:
    """Who holds the gate in front of job_id (None: it may start)."""
    held: int | None = scalar(conn, "SELECT pgjobs._gate_holder(target, scope, "
                                    "coalesce(gate_order, id)) FROM pgjobs.jobs WHERE id = %s",
                              (job_id,))
    may_start = scalar(conn, "SELECT pgjobs._writer_may_start(target, scope, "
                             "coalesce(gate_order, id)) FROM pgjobs.jobs WHERE id = %s",
                       (job_id,))
    assert may_start is (held is None), (held, may_start)
    return held


@pytest.fixture
def setup(conn: Conn, tmp_path: Path) -> Callable[[str, str, str], tuple[int, int, str]]:
    """(kind, pauser, state) -> (the paused writer, a later writer behind it,
    the client): the writer submitted by a client, started, paused."""
    def make(kind: str, pauser: str, state: str) -> tuple[int, int, str]:
        client = people_client(conn, "pauser")
        folder = allowed_folder(conn, tmp_path)
        (folder / "a.csv").write_text("name\nx\n")
        conn.execute("INSERT INTO people (tenant, name) SELECT 1, 'p' || g "
                     "FROM generate_series(1, 20) g")
        conn.execute(f"SET ROLE {client}")
        paused = _submit(conn, kind, f"file://{folder}/a.csv")
        conn.execute("RESET ROLE")
        if state == "running":  # claimed by a worker
            conn.execute("UPDATE pgjobs.jobs SET status = 'running', started_at = now(), "
                         "attempts = 1, worker = 'w#1', heartbeat_at = now(), "
                         "lease_expires_at = now() + interval '1 hour' WHERE id = %s",
                         (paused,))
        else:  # it started, then was handed back (released, or retrying)
            conn.execute("UPDATE pgjobs.jobs SET started_at = now() WHERE id = %s", (paused,))
        who = client if pauser == "client" else make_role(
            conn, "pause_admin", "GRANT pgjobs_admin TO {role}")
        assert _as(conn, who, "SELECT pgjobs.pause(%s)", paused) is True
        if state == "running":  # the worker is gone: the rescue honours the pause
            conn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' "
                         "WHERE id = %s", (paused,))
            conn.execute("SELECT pgjobs.prune()")
        assert job(conn, paused)["status"] == "paused"
        later = int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1', '{}', '{}', "
                                 "'{}')"))
        return paused, later, client
    return make


@pytest.mark.parametrize("sweep", ["prune", "run"])
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("pauser", PAUSERS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_clients_pause_holds_the_scope_for_max_client_pause_only(
        conn: Conn, make_conn: Callable[..., Conn],
        setup: Callable[[str, str, str], tuple[int, int, str]],
        kind: str, pauser: str, state: str, sweep: str) -> None:
    paused, later, client = setup(kind, pauser, state)
    listener = make_conn(autocommit=True)
    listener.execute("LISTEN pgjobs")
    assert _held_by(conn, later) == paused  # submission order holds
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": "1 minute"}')""")

    def maintain() -> None:
        if sweep == "prune":
            conn.execute("SELECT pgjobs.prune()")
        else:  # the engine's run: its start sweeps; the later delete may not start
            conn.execute("CALL pgjobs.run('1 second')")

    maintain()  # not paused that long yet: kept
    assert job(conn, paused)["status"] == "paused"
    assert _held_by(conn, later) == paused
    doctor = scalar(conn, "SELECT detail FROM pgjobs.doctor() WHERE check_name = 'jobs.paused'")
    assert f"ids {paused})" in doctor
    if pauser == "client":  # doctor says when the engine cancels it
        assert "max_client_pause (00:01:00)" in doctor and f"job {paused} in 00:00:" in doctor
    else:
        assert "max_client_pause" not in doctor

    conn.execute("UPDATE pgjobs.jobs SET paused_at = paused_at - interval '2 minutes' "
                 "WHERE id = %s", (paused,))
    drain_notifies(listener, 0)
    maintain()
    events = [(e["id"], e["event"]) for e in drain_notifies(listener, 0.5)]
    row = job(conn, paused)
    if pauser == "admin":  # an administrator's pause is not bounded
        assert row["status"] == "paused" and (paused, "canceled") not in events
        assert _held_by(conn, later) == paused
        return
    assert row["status"] == "canceled", row
    assert (paused, "canceled") in events
    assert "max_client_pause" in row["error"] and f"pgjobs.retry({paused})" in row["error"]
    if sweep == "prune":
        assert _held_by(conn, later) is None  # the scope moves on
    else:  # the same run went on to the later delete
        assert job(conn, later)["status"] in ("succeeded", "running", "queued")
        assert job(conn, later)["status"] != "queued" or _held_by(conn, later) is None
    # The client may queue it again: behind the scope's later writers.
    assert _as(conn, client, "SELECT pgjobs.retry(%s)", paused) is True
    assert job(conn, paused)["status"] == "queued"
    if job(conn, later)["status"] in ("queued", "running"):
        assert _held_by(conn, paused) == later


def test_an_administrators_pause_of_a_clients_paused_job_makes_it_theirs(
        conn: Conn, setup: Callable[[str, str, str], tuple[int, int, str]]) -> None:
    paused, later, _ = setup("delete", "client", "queued after start")
    admin = make_role(conn, "pause_admin2", "GRANT pgjobs_admin TO {role}")
    assert _as(conn, admin, "SELECT pgjobs.pause(%s)", paused) is False  # paused already
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": "1 minute"}')""")
    conn.execute("UPDATE pgjobs.jobs SET paused_at = now() - interval '1 hour' WHERE id = %s",
                 (paused,))
    assert scalar(conn, "SELECT pgjobs.prune() -> 'pauses_expired'") == 0
    assert job(conn, paused)["status"] == "paused"
    assert _held_by(conn, later) == paused


@pytest.mark.parametrize("value", ['"0"', '"-1 hour"', '"101 years"', '"soon"', "3600", "true"])
def test_max_client_pause_is_an_interval_of_one_second_to_100_years(
        conn: Conn, value: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(f"""SELECT pgjobs.set_defaults('{{"max_client_pause": {value}}}')""")
    assert "max_client_pause" in str(caught.value)
    assert caught.value.diag.message_hint and "set_defaults" in caught.value.diag.message_hint
    stored = scalar(conn, """SELECT pgjobs.set_defaults('{"max_client_pause": "4 hours"}')""")
    assert stored["max_client_pause"] == "4 hours"
    assert scalar(conn, "SELECT pgjobs._max_client_pause()").total_seconds() == 4 * 3600
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": null}')""")
    assert scalar(conn, "SELECT pgjobs._max_client_pause()").total_seconds() == 3600
    assert json.dumps(scalar(conn, "SELECT pgjobs._defaults()")).count("max_client_pause") == 0


REPAUSES = ["resume and pause in one transaction", "resume, then pause"]


@pytest.mark.parametrize("repause", REPAUSES)
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_resume_and_pause_again_do_not_reset_a_clients_pause_clock(
        conn: Conn, setup: Callable[[str, str, str], tuple[int, int, str]],
        kind: str, state: str, repause: str) -> None:
    """A client resumed its paused writer and paused it again just before
    max_client_pause ran out (in one transaction no worker can claim it
    between): the pause's clock started again, so the client held the
    scope's later writers for good, one resume and pause an hour."""
    paused, later, client = setup(kind, "client", state)
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": "1 minute"}')""")
    # Paused (and, running, last heard from its worker) 2 minutes ago.
    conn.execute("UPDATE pgjobs.jobs SET paused_at = paused_at - interval '2 minutes', "
                 "heartbeat_at = heartbeat_at - interval '2 minutes' WHERE id = %s", (paused,))
    conn.execute(f"SET ROLE {client}")
    try:
        if repause == "resume and pause in one transaction":
            with conn.transaction():
                conn.execute("SELECT pgjobs.resume(%s)", (paused,))
                conn.execute("SELECT pgjobs.pause(%s)", (paused,))
        else:
            conn.execute("SELECT pgjobs.resume(%s)", (paused,))
            conn.execute("SELECT pgjobs.pause(%s)", (paused,))
    finally:
        conn.execute("RESET ROLE")
    assert job(conn, paused)["status"] == "paused"
    assert scalar(conn, "SELECT pgjobs.prune() -> 'pauses_expired'") == 1
    assert job(conn, paused)["status"] == "canceled"
    assert _held_by(conn, later) is None


@pytest.mark.parametrize("between", ["a worker ran it", "it was canceled and retried"])
def test_a_pause_after_the_job_ran_or_was_retried_starts_a_new_clock(
        conn: Conn, setup: Callable[[str, str, str], tuple[int, int, str]],
        between: str) -> None:
    paused, _, client = setup("delete", "client", "queued after start")
    conn.execute("""SELECT pgjobs.set_defaults('{"max_client_pause": "1 minute"}')""")
    conn.execute("UPDATE pgjobs.jobs SET paused_at = paused_at - interval '2 minutes' "
                 "WHERE id = %s", (paused,))
    if between == "a worker ran it":
        assert _as(conn, client, "SELECT pgjobs.resume(%s)", paused) is True
        conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() WHERE id = %s", (paused,))
    else:
        assert scalar(conn, "SELECT pgjobs.prune() -> 'pauses_expired'") == 1
        assert _as(conn, client, "SELECT pgjobs.retry(%s)", paused) is True
    assert _as(conn, client, "SELECT pgjobs.pause(%s)", paused) is True
    assert scalar(conn, "SELECT pgjobs.prune() -> 'pauses_expired'") == 0
    assert job(conn, paused)["status"] == "paused"
