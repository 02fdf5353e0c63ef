"""Review r3 (adversarial): fan-out jobs (migration 0025) and the read path's
sealed trust verdicts (migration 0024), as a pgjobs_client tenant and as a
careless worker.

1. pgjobs.add_items is a submission of new work, not control of a job: it
   needs what pgjobs.submit_items needs, at the time of the call (the
   privilege its kind needs on the target, a registered target still trusted,
   a scope in pgjobs.allowed_scopes), whoever submitted the job.
2. An item's payload has the limit of every job's payload (1 MiB), on both
   ways in (submit_items, add_items), with a hint.
3. A verdict (pgjobs._verdict_keep) is valid only in the slot it was kept in:
   a value copied from one slot to another (the tenancy slot 'roles_', which
   checks less, into the read path's 'trusted_') is no verdict.
4. A claim that waited for a job's other claimers (option concurrency) hands
   out nothing of a job paused or canceled while it waited.
5. An item ends once, whatever a careless worker sends (a regression test:
   it held before the review).
6. A verdict reached on an old snapshot (REPEATABLE READ, SERIALIZABLE)
   counts from that snapshot, not from the check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, make_target, scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()

SUBMIT = "SELECT pgjobs.submit_items('doc', %s::regclass, %s, %s::jsonb)"
ADD = "SELECT pgjobs.add_items(%s, %s::jsonb)"


def _role(conn: Conn, name: str, *grants: str) -> str:
    role = f"pgjobs_r3_{name}_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    for grant in grants:
        conn.execute(grant.format(role=role))
    return role


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    make_target(conn)                        # unregistered: a custom kind's table
    make_rows_target(conn)                   # registered: user_table_rows
    made = {
        "writer": _role(conn, "writer", "GRANT pgjobs_client TO {role}",
                        "GRANT SELECT, UPDATE ON items, user_table_rows TO {role}"),
        "blind": _role(conn, "blind", "GRANT pgjobs_client TO {role}",
                       "GRANT UPDATE ON items, user_table_rows TO {role}"),
        "stranger": _role(conn, "stranger"),
    }
    yield made
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    for role in made.values():
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _items(conn: Conn, job_id: int) -> int:
    conn.execute("RESET ROLE")
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.job_items WHERE job_id = %s",
                      (job_id,)))


# --- 1. add_items checks what submit_items checks, at the time of the call

@pytest.mark.parametrize("target", ["items", "user_table_rows"])
@pytest.mark.parametrize("who", ["writer", "blind"])
def test_add_items_needs_the_privilege_still(conn: Conn, roles: dict[str, str],
                                             target: str, who: str) -> None:
    """The submitter whose UPDATE was revoked may no longer append work (it
    may still cancel: that is control, not new work)."""
    conn.execute(f"SET ROLE {roles[who]}")
    job_id = scalar(conn, SUBMIT, (target, "1", "[1]"))
    conn.execute("RESET ROLE")
    conn.execute(f"REVOKE UPDATE ON {target} FROM {roles[who]}")
    conn.execute(f"SET ROLE {roles[who]}")
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute(ADD, (job_id, "[2]"))
    assert exc.value.diag.message_hint
    assert _items(conn, job_id) == 1
    conn.execute(f"SET ROLE {roles[who]}")
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True


@pytest.mark.parametrize("setting", ["2", " 2 ", "2,3", "01x"])
def test_add_items_keeps_to_allowed_scopes(conn: Conn, roles: dict[str, str],
                                           setting: str) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    job_id = scalar(conn, SUBMIT, ("user_table_rows", "1", "[1]"))
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (setting,))
    with pytest.raises((errors.InsufficientPrivilege, errors.NoDataFound)):
        conn.execute(ADD, (job_id, "[2]"))
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', '01', false)")
    assert scalar(conn, ADD, (job_id, "[2]")) == 1  # the same scope, spelled otherwise
    assert _items(conn, job_id) == 2


@pytest.mark.parametrize("as_admin", [False, True])
def test_add_items_refuses_a_target_that_became_untrusted(
        conn: Conn, roles: dict[str, str], as_admin: bool) -> None:
    """A registered target whose owner changed to a role without pgjobs'
    rights: a submit is refused (42501), and so is more work for a job
    submitted before the change, by anyone."""
    conn.execute(f"SET ROLE {roles['writer']}")
    job_id = scalar(conn, SUBMIT, ("user_table_rows", "1", "[1]"))
    conn.execute("RESET ROLE")
    conn.execute(f"ALTER TABLE user_table_rows OWNER TO {roles['stranger']}")
    if not as_admin:
        conn.execute(f"SET ROLE {roles['writer']}")
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute(SUBMIT, ("user_table_rows", "1", "[1]"))
    assert "refuses target" in str(exc.value)
    with pytest.raises(errors.InsufficientPrivilege) as exc:
        conn.execute(ADD, (job_id, "[2]"))
    assert "refuses target" in str(exc.value) and exc.value.diag.message_hint
    assert _items(conn, job_id) == 1


# --- 2. an item's payload has every payload's limit

BIG = json.dumps("x" * (1024 * 1024 + 1))


@pytest.mark.parametrize("items", [
    f"[{BIG}]",
    f"[1, {BIG}, 2]",
    f"[{{\"doc\": {BIG}}}]",
    f"[[[{BIG}]]]",
])
def test_an_items_payload_is_at_most_1_mib(conn: Conn, roles: dict[str, str],
                                           items: str) -> None:
    conn.execute(f"SET ROLE {roles['writer']}")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute(SUBMIT, ("items", "1", items))
    assert "1 MiB" in str(exc.value) and exc.value.diag.message_hint
    job_id = scalar(conn, SUBMIT, ("items", "1", "[1]"))
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute(ADD, (job_id, items))
    assert "1 MiB" in str(exc.value) and exc.value.diag.message_hint
    assert _items(conn, job_id) == 1
    # At the limit exactly: accepted.
    conn.execute(f"SET ROLE {roles['writer']}")
    exact = json.dumps("y" * (1024 * 1024 - 2))
    assert len(exact) == 1024 * 1024
    assert scalar(conn, ADD, (job_id, f"[{exact}]")) == 1


# --- 3. a verdict is valid only in its own slot

def _oid(conn: Conn, table: str) -> str:
    return str(scalar(conn, "SELECT %s::regclass::oid", (table,)))


@pytest.mark.parametrize(("kept", "used"), [
    ("roles_{oid}", "trusted_{oid}"),
    ("trusted_{oid}", "roles_{oid}"),
    ("submitter", "trusted_{oid}"),
])
def test_a_verdict_copied_to_another_slot_is_no_verdict(conn: Conn, roles: dict[str, str],
                                                        kept: str, used: str) -> None:
    """Same key, same role, same backend, same time: only the slot differs.
    (Kept and checked in one block, well inside the 1 s window.)"""
    oid = _oid(conn, "user_table_rows")
    kept, used = kept.format(oid=oid), used.format(oid=oid)
    conn.execute(f"""
        DO $$
        BEGIN
            PERFORM pgjobs._verdict_keep('{kept}', '{oid}',
                                         extract(epoch FROM clock_timestamp()));
            ASSERT pgjobs._verdict_fresh('{kept}', '{oid}'), 'kept';
            PERFORM set_config('pgjobs.verified_{used}',
                               current_setting('pgjobs.verified_{kept}'), false);
            ASSERT NOT pgjobs._verdict_fresh('{used}', '{oid}'), 'accepted in another slot';
        END $$""")


def test_a_tenants_scope_verdict_does_not_pass_as_a_read_verdict(
        conn: Conn, roles: dict[str, str]) -> None:
    """The attack end to end: a tenant's query on pgjobs.jobs makes
    pgjobs._allowed_scope_keys keep a 'roles_' verdict (untrusted roles only)
    in the tenant's session, where it can read it and copy it into the read
    path's 'trusted_' slot (which also covers row security on pgjobs' role)."""
    oid = _oid(conn, "user_table_rows")
    conn.execute(f"SET ROLE {roles['writer']}")
    conn.execute(SUBMIT, ("user_table_rows", "1", "[1]"))
    # Not the stored spelling: the policy needs the canonical keys.
    conn.execute("SET pgjobs.allowed_scopes = '01'")
    conn.execute(f"""
        DO $$
        BEGIN
            PERFORM count(*) FROM pgjobs.jobs;
            ASSERT current_setting('pgjobs.verified_roles_{oid}', true) <> '', 'no verdict kept';
            PERFORM set_config('pgjobs.verified_trusted_{oid}',
                               current_setting('pgjobs.verified_roles_{oid}'), false);
            RESET ROLE;
            ASSERT NOT pgjobs._verdict_fresh('trusted_{oid}', '{oid}'),
                'a tenancy verdict passed as a read verdict';
        END $$""")


# --- 4. a claim hands out nothing of a job paused while another claimer held it

@pytest.mark.parametrize("started", [True, False])
@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_a_claim_that_waited_sees_the_job_as_it_is_now(make_conn: Any, started: bool,
                                                       control: str) -> None:
    """claim_items reads the jobs to serve, then (option concurrency) takes the
    job's row for its claimers. It waited for another claimer in flight (an
    advisory lock); since round 31 it skips the job for that call instead
    (the row, FOR NO KEY UPDATE SKIP LOCKED: a lock no client can take or
    hold; tests/test_trust_advisory_locks.py), so this test holds the row as
    that claimer would and checks the skip. What it guarded holds still: a
    pause or cancel committed meanwhile holds for every later claim."""
    a, b, watch = make_conn(), make_conn(), make_conn()
    make_target(a)
    job_id = scalar(a, "SELECT pgjobs.submit_items('doc', 'items', '1', '[1, 2, 3]',"
                       " '{\"concurrency\": 2}')")
    claim = "SELECT id FROM pgjobs.claim_items(ARRAY['doc'], %s, '30 seconds', 1)"
    if started:
        assert len(a.execute(claim, ("w1",)).fetchall()) == 1
    a.execute("BEGIN")  # another claimer of this job, in flight
    a.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR NO KEY UPDATE", (job_id,))
    b.execute("SET lock_timeout = '5s'")  # a wait would raise here
    assert b.execute(claim, ("w2",)).fetchall() == []
    a.execute("COMMIT")
    assert scalar(watch, f"SELECT pgjobs.{control}(%s)", (job_id,)) is True
    assert b.execute(claim, ("w2",)).fetchall() == []
    assert scalar(watch, "SELECT count(*) FROM pgjobs.job_items"
                         " WHERE job_id = %s AND worker LIKE 'w2#%%'", (job_id,)) == 0


# --- 5. an item ends once, whatever a careless worker sends

def test_an_item_is_counted_once_whatever_the_worker_sends(conn: Conn) -> None:
    make_target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_items('doc', 'items', '1', '[1, 2, 3, 4]')")
    rows = conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w',"
                        " '30 seconds', 4)").fetchall()
    (one, w1), (two, w2), (three, w3), (four, w4) = sorted(rows)
    done = "SELECT done FROM pgjobs.jobs WHERE id = %s"
    # The same item twice in one batch, and a wrong identity beside it.
    assert [r[0] for r in conn.execute(
        "SELECT * FROM pgjobs.complete_items(%s, %s)",
        ([one, one, two], [w1, w1, w1])).fetchall()] == [one]
    assert scalar(conn, done, (job_id,)) == 1
    # Twice over, by every way in.
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (one, w1)) is False
    assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'x', false)", (one, w1)) is False
    assert conn.execute("SELECT * FROM pgjobs.complete_items(%s, %s)",
                        ([one], [w1])).fetchall() == []
    # The name without the claim's token, another claim's token: not the holder.
    for worker in ("w", w3):
        assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (two, worker)) is False
        assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (two, worker)) is False
    # NULL names no attempt at all: refused (22023), nothing counted.
    for call in ("complete_item", "heartbeat_item"):
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute(f"SELECT pgjobs.{call}(%s, NULL)", (two,))
    # Failed for good, then completed: the failure stands.
    assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'x', false)", (three, w3)) is True
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (three, w3)) is False
    assert scalar(conn, done, (job_id,)) == 2
    # A retryable failure queues it again: the old identity no longer holds it.
    assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'x')", (four, w4)) is True
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (four, w4)) is False
    assert scalar(conn, done, (job_id,)) == 2
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (two, w2)) is True
    assert scalar(conn, done, (job_id,)) == 3
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "running"


# --- 6. a verdict reached on an old snapshot is as old as its snapshot

@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_verdict_reached_on_an_old_snapshot_is_not_fresh(make_conn: Any,
                                                           isolation: str) -> None:
    """A full check in a REPEATABLE READ transaction reads the catalogs as of
    its snapshot: the verdict it keeps must count from then, or a session
    could hold a snapshot from before a target was made untrusted, check
    once more, commit, and read on the stale verdict after the change."""
    reader, other = make_conn(), make_conn()
    make_rows_target(other)
    stranger = f"pgjobs_r3_snap_{PID}"
    other.execute(f"DROP ROLE IF EXISTS {stranger}")
    other.execute(f"CREATE ROLE {stranger} NOLOGIN")
    read = "SELECT count(*) FROM pgjobs.visible('user_table_rows', '1')"
    try:
        reader.execute(f"BEGIN ISOLATION LEVEL {isolation}")
        reader.execute("SELECT 1")  # the snapshot
        other.execute(f"ALTER TABLE user_table_rows OWNER TO {stranger}")
        assert other.execute("SELECT * FROM pgjobs._untrusted_roles('user_table_rows')"
                             ).fetchall()
        other.execute("SELECT pg_sleep(1.05)")  # longer ago than any verdict lasts
        reader.execute(read).fetchall()  # the old snapshot's view (not this review's)
        reader.execute("COMMIT")
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute(read).fetchall()
    finally:
        reader.rollback()
        other.execute(f"REASSIGN OWNED BY {stranger} TO CURRENT_USER")
        other.execute(f"DROP ROLE {stranger}")
