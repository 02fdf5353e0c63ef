"""NOTIFY is open to every role that can connect (issue 9, item 13): the
shared channel `pgjobs` carries only id, kind, event, status, done and total
unless an administrator allowed target and scope (pgjobs.set_defaults);
pgjobs.channel gives a caller allowed to read a (target, scope) an
unguessable channel that carries the full events."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import drain_notifies, make_rows_target, run_job, scalar, seed
from tests.support.roles import session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
SHARED_KEYS = {"id", "kind", "event", "status", "done", "total"}
# The throttling defaults pgjobs._defaults also returns (tests/test_throttle.py)
THROTTLE_DEFAULTS = {"max_replica_lag_bytes": 268435456, "pause_on_autovacuum": True,
                     "max_rows_per_second": None, "page_delay": None, "max_wal_rate": None,
                     "max_xact_age": None}


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    made = {}
    for name, parent in (("nobody", None), ("reader", "pgjobs_client"),
                         ("blind", "pgjobs_client")):
        role = f"pgjobs_ntf_{name}_{PID}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN" + (f" IN ROLE {parent}" if parent else ""))
        made[name] = role
    conn.execute(f"GRANT SELECT ON user_table_rows TO {made['reader']}")
    yield made
    conn.execute("RESET ROLE")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _listen(make_conn: Callable[..., Conn], role: str, channel: str = "pgjobs") -> Conn:
    listener = session_as(make_conn, role)
    listener.execute(f"LISTEN {channel}")
    return listener


def test_shared_channel_carries_no_target_or_scope(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    listener = _listen(make_conn, roles["nobody"])
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')")
    run_job(conn, job_id)
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    assert [e["event"] for e in events][0] == "submitted"
    assert events[-1]["event"] == "succeeded"
    for event in events:
        assert set(event) == SHARED_KEYS
        assert "user_table_rows" not in json.dumps(event)


def test_administrator_may_allow_target_and_scope(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    assert scalar(conn, "SELECT pgjobs.set_defaults('{\"notify_target_scope\": true}')") == {
        **THROTTLE_DEFAULTS, "notify_target_scope": True}
    listener = _listen(make_conn, roles["nobody"])
    scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')")
    (event,) = drain_notifies(listener, until=lambda e: True)
    assert (event["target"], event["scope"]) == ("public.user_table_rows", "2")
    assert scalar(conn, "SELECT pgjobs.set_defaults('{\"notify_target_scope\": null}')") == {
        **THROTTLE_DEFAULTS, "notify_target_scope": False}


@pytest.mark.parametrize("bad", ['{"notify_target_scope": "yes"}', '{"nope": true}', '[]'])
def test_set_defaults_rejects_unknown_and_mistyped(conn: Conn, bad: str) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (bad,))
    assert scalar(conn, "SELECT pgjobs._defaults()") == {
        **THROTTLE_DEFAULTS, "notify_target_scope": False}


def test_clients_cannot_set_defaults_nor_read_the_secret(conn: Conn,
                                                         roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['reader']}")
    for sql in ("SELECT pgjobs.set_defaults('{\"notify_target_scope\": true}')",
                "SELECT * FROM pgjobs.settings",
                "SELECT pgjobs._channel_name('user_table_rows', '1')"):
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)


def test_channel_carries_full_events_for_its_scope_only(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['reader']}")
    channel = scalar(conn, "SELECT pgjobs.channel('user_table_rows', '2')")
    other = scalar(conn, "SELECT pgjobs.channel('user_table_rows', '1')")
    conn.execute("RESET ROLE")
    assert channel.startswith("pgjobs_") and len(channel) == 47 and channel != other
    listener = _listen(make_conn, roles["reader"], channel)
    scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')")
    run_job(conn, job_id)
    events = drain_notifies(listener, until=lambda e: e["event"] == "succeeded")
    assert {e["id"] for e in events} == {job_id}
    assert [e["event"] for e in events][0] == "submitted"
    for event in events:
        assert set(event) == SHARED_KEYS | {"target", "scope"}
        assert (event["target"], event["scope"]) == ("public.user_table_rows", "2")


def test_channel_is_canonical_and_secret(conn: Conn, roles: dict[str, str]) -> None:
    names = {scalar(conn, "SELECT pgjobs.channel('user_table_rows', %s)", (s,))
             for s in ("2", "02", " 2", "+2")}
    assert len(names) == 1
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.channel('user_table_rows', 'two')")
    # Not derivable from what a client knows.
    name = names.pop()
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    for guess in (f"{oid}:2", "user_table_rows:2", f":{oid}:2"):
        digest = scalar(conn, "SELECT encode(sha256(convert_to(%s, 'UTF8')), 'hex')", (guess,))
        assert not name.endswith(digest[:40])


def test_channel_refuses_callers_who_may_not_read(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['blind']}")
    with pytest.raises(errors.InsufficientPrivilege, match="lacks SELECT"):
        conn.execute("SELECT pgjobs.channel('user_table_rows', '2')")
    conn.execute(f"SET ROLE {roles['reader']}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    with pytest.raises(errors.InsufficientPrivilege, match="allowed_scopes"):
        conn.execute("SELECT pgjobs.channel('user_table_rows', '2')")
    assert scalar(conn, "SELECT pgjobs.channel('user_table_rows', '1')").startswith("pgjobs_")


def test_payloads_stay_under_1kb(conn: Conn, make_conn: Callable[..., Conn],
                                 roles: dict[str, str]) -> None:
    conn.execute('CREATE TABLE "a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx"'
                 " (id int)")
    target = '"a_table_with_a_rather_long_name_that_goes_on_and_on_xxxxxxx"'
    channel = scalar(conn, "SELECT pgjobs._channel_name(%s::regclass, %s)", (target, "é" * 1000))
    full = make_conn()
    full.execute(f"LISTEN {channel}")
    shared = make_conn()
    shared.execute("LISTEN pgjobs")
    scalar(conn, "SELECT pgjobs.submit('custom', %s::regclass, %s)", (target, "é" * 1000))
    for listener in (full, shared):
        (n,) = list(listener.notifies(timeout=30, stop_after=1))
        assert len(n.payload.encode()) < 1024


def test_watch_follows_the_jobs_channel_when_it_may(
        conn: Conn, make_conn: Callable[..., Conn], dsn: str, roles: dict[str, str]) -> None:
    """`pgjobs watch JOB` (cli/progress.py) LISTENs on the job's own channel
    through pgjobs.db.listen_job_channel when its role may read the target
    and scope, and keeps to the shared channel otherwise."""
    from pgjobs import db

    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')")
    for role, allowed in ((roles["reader"], True), (roles["blind"], False)):
        watcher = db.connect(dsn, app="pgjobs watch")
        try:
            db.execute(watcher, f"SET ROLE {role}")
            name = db.listen_job_channel(watcher, "public.user_table_rows", "2")
            assert (name is not None) == allowed
            if name:
                conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
                (n,) = list(watcher.notifies(timeout=30, stop_after=1))
                assert n.channel == name
                assert json.loads(n.payload)["scope"] == "2"
        finally:
            watcher.close()
