"""A role that lost access to a scope stops receiving that scope's events
once the channel secret is rotated (pgjobs.rotate_channel_secret).

LISTEN needs no privilege, so a role that learned a name from pgjobs.channel
kept hearing it after losing the right to ask: the name was sha256 of a
secret that also sealed verdicts (pgjobs._verdict_mac) and so could never
change. Names now have a secret of their own (migration 0069) that an
administrator rotates: every loss of access (REVOKE SELECT, the scope gone
from pgjobs.allowed_scopes, REVOKE pgjobs_client) ends at the rotation,
listeners that may still ask get the new name, and verdicts stay sealed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors

from pgjobs.cli.main import main
from tests.support import drain_notifies, make_rows_target, run_job, scalar, seed
from tests.support.roles import session_as

Conn = psycopg.Connection[Any]
PID = os.getpid()

# How a role loses the right to ask pgjobs.channel for (user_table_rows, 1).
LOSSES = {
    "revoke_select": "REVOKE SELECT ON user_table_rows FROM {role}",
    "scope_removed": None,  # its session's pgjobs.allowed_scopes no longer lists '1'
    "revoke_client": "REVOKE pgjobs_client FROM {role}",
}


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    made = {}
    for name in ("hsel", "other"):
        role = f"pgjobs_rot_{name}_{PID}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
        conn.execute(f"GRANT SELECT ON user_table_rows TO {role}")
        made[name] = role
    yield made
    conn.execute("RESET ROLE")
    for role in made.values():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _ask(make_conn: Callable[..., Conn], role: str, allowed: str = "1, 2") -> Conn:
    """A session as `role` whose pgjobs.allowed_scopes lists `allowed`."""
    session = session_as(make_conn, role)
    session.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (allowed,))
    return session


def _channel(session: Conn) -> str:
    return str(scalar(session, "SELECT pgjobs.channel('user_table_rows', '1')"))


def _listen(make_conn: Callable[..., Conn], role: str, channel: str) -> Conn:
    listener = session_as(make_conn, role)
    listener.execute(f"LISTEN {channel}")
    return listener


def _lose(conn: Conn, session: Conn, loss: str, role: str) -> None:
    if LOSSES[loss] is None:
        session.execute("SELECT set_config('pgjobs.allowed_scopes', '2', false)")
    else:
        conn.execute(str(LOSSES[loss]).format(role=role))
    with pytest.raises(errors.InsufficientPrivilege):
        _channel(session)


def _rotate(conn: Conn, dsn: str, how: str, told: int) -> None:
    """The administrator's rotation: the SQL call or `pgjobs rotate-channel-secret`."""
    if how == "call":
        assert scalar(conn, "SELECT pgjobs.rotate_channel_secret()") == told
        return
    result = CliRunner().invoke(main, ["--dsn", dsn, "rotate-channel-secret"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"rotated the channel secret; told {told} old channel name(s)")


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("rotation", ["call", "cli"])
def test_a_role_that_lost_access_hears_nothing_after_a_rotation(
        conn: Conn, make_conn: Callable[..., Conn], dsn: str, roles: dict[str, str],
        loss: str, rotation: str) -> None:
    asker = _ask(make_conn, roles["hsel"])
    old = _channel(asker)
    assert _channel(_ask(make_conn, roles["other"])) == old  # one name per (target, scope)
    revoked = _listen(make_conn, roles["hsel"], old)
    before = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    _lose(conn, asker, loss, roles["hsel"])

    _rotate(conn, dsn, rotation, told=1)  # one (target, scope) has jobs
    new = _channel(_ask(make_conn, roles["other"]))  # a role still allowed re-asks
    assert new != old
    allowed = _listen(make_conn, roles["other"], new)
    run_job(conn, before)  # the job in flight ends after the rotation
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    run_job(conn, job_id)

    heard = drain_notifies(allowed, until=lambda e: e["id"] == job_id and e["event"] == "succeeded")
    assert [(e["id"], e["event"]) for e in heard if e["event"] != "progress"] == [
        (before, "started"), (before, "succeeded"),
        (job_id, "submitted"), (job_id, "started"), (job_id, "succeeded")]
    # The revoked listener heard the job before the rotation, then the
    # rotation, then nothing: not the old job's end, not the new job.
    assert drain_notifies(revoked, timeout=0.5) == [
        {"id": before, "kind": "delete", "event": "submitted", "scope": "1",
         "target": "public.user_table_rows", "status": "queued", "done": 0, "total": None},
        {"event": "channel_rotated", "target": "public.user_table_rows", "scope": "1"}]


def test_every_old_name_of_a_scope_with_jobs_is_told_once(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    """Each (target, scope) pgjobs.jobs has a job of gets one last event on its
    old name; the shared channel `pgjobs` is untouched by a rotation."""
    session = _ask(make_conn, roles["other"], "1, 2, 3")
    names = {s: str(scalar(session, "SELECT pgjobs.channel('user_table_rows', %s)", (s,)))
             for s in ("1", "2", "3")}
    listeners = {s: _listen(make_conn, roles["other"], n) for s, n in names.items()}
    shared = _listen(make_conn, roles["other"], "pgjobs")
    for scope in ("1", "2", "2"):
        scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', %s)", (scope,))
    drain_notifies(shared)
    for listener in listeners.values():
        drain_notifies(listener)
    assert scalar(conn, "SELECT pgjobs.rotate_channel_secret()") == 2
    for scope in ("1", "2"):
        assert drain_notifies(listeners[scope]) == [
            {"event": "channel_rotated", "target": "public.user_table_rows", "scope": scope}]
    assert drain_notifies(listeners["3"]) == []  # no job: nobody to tell
    assert drain_notifies(shared) == []
    again = {s: str(scalar(session, "SELECT pgjobs.channel('user_table_rows', %s)", (s,)))
             for s in names}
    assert not set(again.values()) & set(names.values())
    assert len(set(again.values())) == 3


def test_a_full_queue_rotates_and_tells_nobody(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str]) -> None:
    """A listener stuck in a transaction (the revoked role's own, say) fills
    the notification queue, and a full queue fails a NOTIFY's commit: the
    rotation still happens, telling nobody, so no listener can block it."""
    old = _channel(_ask(make_conn, roles["other"]))
    listener = _listen(make_conn, roles["other"], old)
    scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    drain_notifies(listener)
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgjobs._notification_queue_usage()"
        " RETURNS double precision LANGUAGE sql VOLATILE"
        " SET search_path = pg_catalog, pg_temp AS $$ SELECT 0.6::double precision $$")
    assert scalar(conn, "SELECT pgjobs.rotate_channel_secret()") == 0
    assert _channel(_ask(make_conn, roles["other"])) != old
    assert drain_notifies(listener, timeout=0.5) == []


def test_a_rotation_leaves_sealed_verdicts_verified(conn: Conn) -> None:
    """Channel names and verdict seals have separate secrets: rotating the
    first leaves every seal as it was, and a verdict kept just before the
    rotation is still fresh after it."""
    secrets = conn.execute("SELECT key, value FROM pgjobs.settings WHERE key LIKE 'channel%'")
    by_key = dict(secrets.fetchall())
    assert set(by_key) == {"channel_secret", "channel_name_secret"}
    assert by_key["channel_secret"] != by_key["channel_name_secret"]
    mac = "SELECT pgjobs._verdict_mac('k', '1700000000.000000')"
    seal = scalar(conn, mac)
    name = scalar(conn, "SELECT pgjobs._channel_name('pgjobs.jobs', '1')")
    # Kept, rotated and checked in one statement, no round trip between them:
    # a session stalled for 1 s between statements let the verdict age out of
    # its window (a lapse the design asks for, not the rotation's doing).
    conn.execute("""
        DO $$
        BEGIN
            PERFORM pgjobs._verdict_keep('rot', 'k',
                                         extract(epoch FROM clock_timestamp())::float8);
            PERFORM pgjobs.rotate_channel_secret();
            ASSERT pgjobs._verdict_fresh('rot', 'k'), 'the rotation unsealed the verdict';
        END $$""")
    assert scalar(conn, mac) == seal
    assert scalar(conn, "SELECT pgjobs._channel_name('pgjobs.jobs', '1')") != name


def test_only_an_administrator_rotates(conn: Conn, roles: dict[str, str]) -> None:
    conn.execute(f"SET ROLE {roles['other']}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.rotate_channel_secret()")
