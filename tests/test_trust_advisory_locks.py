"""Neither a worker's claim nor a client's submit waits on a lock that any
role can take.

Advisory locks need no privilege: any session may take any key, and sit on
it outside any transaction (no idle timeout ends it).

* Submits held the target's registration lock shared, an advisory lock keyed
  `hashtext('pgjobs.target:' || target oid)`: a session of any role holding
  that key hung every submit on the target, of every kind and every tenant.
  They now hold the registration's row FOR KEY SHARE (register_target takes
  it FOR UPDATE when the columns change, unregister_target deletes it), and
  no client may lock pgjobs.target_registry's rows.
* pgjobs.claim_items serializes the claimers of a fan-out job with a
`concurrency` cap on a transaction advisory lock of the job. Advisory locks
need no privilege: any role that can connect may take any key. The key was
`hashtextextended('pgjobs.items:' || job id, 0)`, and the claim waited for
it, so a client that submitted a capped job (or learnt any capped job's id,
which every NOTIFY on `pgjobs` carries) and held that lock in an idle
session hung every worker of the kind in claim_items: no item of any job,
any tenant's, was handed out until that session let go. The claim then tried
the lock and skipped the job when it was taken, with the key sealed with the
engine's secret; but pg_locks shows every session's advisory keys to every
role, so a client that watched one claim of its job read the key and held it,
starving that job. The claimers now lock the job's row FOR NO KEY UPDATE
SKIP LOCKED, which no client may lock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, make_target, scalar, who

Conn = psycopg.Connection[Any]

CLIENT = f"pgjobs_test_claimlock_{os.getpid()}"
NOBODY = f"pgjobs_test_nobody_{os.getpid()}"


def _submit(conn: Conn, scope: str, items: list[Any], options: dict[str, Any]) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items'::regclass, %s, "
                            "%s::jsonb, %s::jsonb)",
                      (scope, json.dumps(items), json.dumps(options))))


def _claim(conn: Conn, limit: int = 10) -> list[int]:
    """The job ids of the items one claim hands out, in a claim that would
    rather fail than wait (lock_timeout) for what it never needs to wait for."""
    conn.execute("SET lock_timeout = '3s'")
    return [r[0] for r in conn.execute(
        "SELECT job_id FROM pgjobs.claim_items(ARRAY['thumb'], 'w', '30 seconds', %s)",
        (limit,))]


# Every submit on a registered target (user_table_rows).
SUBMITS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', '1')",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', '{\"n\": 1}')",
    "export": "SELECT pgjobs.submit_export('user_table_rows', '1')",
    "custom": "SELECT pgjobs.submit('thumb', 'user_table_rows', '1')",
    "items": "SELECT pgjobs.submit_items('thumb', 'user_table_rows', '1', '[1]')",
}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    make_target(conn)
    make_rows_target(conn)
    conn.execute(f"DROP ROLE IF EXISTS {CLIENT}")
    conn.execute(f"CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"DROP ROLE IF EXISTS {NOBODY}")
    conn.execute(f"CREATE ROLE {NOBODY} NOLOGIN")
    conn.execute(f"GRANT SELECT, UPDATE ON items TO {CLIENT}")
    conn.execute(f"GRANT SELECT, UPDATE, DELETE ON user_table_rows TO {CLIENT}")
    yield CLIENT
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {CLIENT}")
    conn.execute(f"DROP ROLE {CLIENT}")
    conn.execute(f"DROP ROLE {NOBODY}")


# Keys a client can name for a job it knows the id of: the old key, and the
# same text under other spellings of the same idea.
GUESSES = [
    "SELECT pg_advisory_lock(hashtextextended('pgjobs.items:' || %(id)s, 0))",
    "SELECT pg_advisory_lock(hashtextextended('pgjobs.items:' || %(id)s, 1))",
    "SELECT pg_advisory_lock(hashtext('pgjobs.items:' || %(id)s))",
    "SELECT pg_advisory_lock(%(id)s::bigint)",
]


@pytest.mark.parametrize("guess", GUESSES)
def test_a_client_holding_a_capped_jobs_lock_stalls_no_worker(
        conn: Conn, make_conn: Callable[..., Conn], client: str, guess: str) -> None:
    """The client submits a capped job, then holds its lock in a session that
    does nothing else (not even in a transaction, so no idle timeout ends it).
    The workers go on handing out every job's items, its own included."""
    attacker = make_conn()
    attacker.execute(f"SET ROLE {client}")
    own = _submit(attacker, "1", ["a", "b"], {"concurrency": 1, "priority": 5})
    other = _submit(conn, "2", ["x", "y"], {})  # another tenant's, behind it
    attacker.execute(guess, {"id": own})

    worker = make_conn()
    got = _claim(worker)
    assert got.count(own) == 1  # its cap
    assert got.count(other) == 2
    assert scalar(attacker, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND pid = pg_backend_pid()") == 1


def test_a_claimer_skips_a_capped_job_another_claimer_holds(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """Two workers at once: the one that finds the job's lock taken (the
    first's claim, not yet committed) hands out the other jobs' items instead
    of waiting, and the cap holds once the first commits."""
    capped = _submit(conn, "1", ["a", "b", "c"], {"concurrency": 2, "priority": 5})
    other = _submit(conn, "2", ["x"], {})
    first = make_conn()
    first.execute("BEGIN")
    assert _claim(first, limit=1) == [capped]
    second = make_conn()
    assert _claim(second) == [other]
    first.execute("COMMIT")
    assert _claim(second) == [capped]  # its second slot
    assert _claim(second) == []  # two out: the cap


@pytest.mark.parametrize("kind", sorted(SUBMITS))
def test_a_session_holding_the_old_registration_key_stalls_no_submit(
        conn: Conn, make_conn: Callable[..., Conn], client: str, kind: str) -> None:
    """A role with no pgjobs grant at all holds the key the submits took
    shared; a client's submit of every kind goes through."""
    nobody = make_conn()
    nobody.execute(f"SET ROLE {NOBODY}")
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    nobody.execute("SELECT pg_advisory_lock(hashtext('pgjobs.target:' || %s))", (oid,))
    submitter = make_conn()
    submitter.execute(f"SET ROLE {client}")
    submitter.execute("SET lock_timeout = '3s'")
    assert scalar(submitter, SUBMITS[kind]) is not None


def test_a_registration_change_still_waits_for_an_open_submit(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """The row lock keeps what the advisory lock gave: a change of columns
    waits for the submitting transaction, a change of options does not."""
    submitter = make_conn(autocommit=False)
    submitter.execute(f"SET ROLE {client}")
    scalar(submitter, SUBMITS["delete"])
    admin = make_conn()
    admin.execute("SET lock_timeout = '1s'")
    admin.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                  " 'created_at', 'data', '{\"tune_autovacuum\": false}')")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        admin.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                      " 'created_at')")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        admin.execute("SELECT pgjobs.unregister_target('user_table_rows')")
    submitter.rollback()
    admin.execute("SELECT pgjobs.unregister_target('user_table_rows')")


# The writing submits and the retry, which take the scope's gate lock.
GATED = {
    "delete": SUBMITS["delete"],
    "backfill": SUBMITS["backfill"],
    "delete_reject": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                     " '{\"on_conflict\": \"reject\"}')",
}


@pytest.mark.parametrize("kind", [*sorted(GATED), "retry"])
def test_a_session_holding_the_old_gate_key_stalls_no_writing_submit(
        conn: Conn, make_conn: Callable[..., Conn], client: str, kind: str) -> None:
    """A role with no pgjobs grant holds the key a writing submit and a retry
    took for the tenant's gate (the target's oid and the scope: public facts):
    they hung until that session let go. They lock a row of
    pgjobs.scope_locks now, which no client can lock."""
    retried = None
    if kind == "retry":
        retried = int(scalar(conn, SUBMITS["delete"]))
        conn.execute("SELECT pgjobs.cancel(%s)", (retried,))
    nobody = make_conn()
    nobody.execute(f"SET ROLE {NOBODY}")
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    nobody.execute("SELECT pg_advisory_lock(hashtextextended('pgjobs.gate:' || %s || ':1', 0))",
                   (oid,))
    submitter = make_conn()
    submitter.execute(f"SET ROLE {client}")
    submitter.execute("SET lock_timeout = '3s'")
    if retried is not None:
        submitter.execute("SELECT pgjobs.retry(%s)", (retried,))
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (retried,)) == "queued"
    else:
        assert scalar(submitter, GATED[kind]) is not None


@pytest.mark.parametrize("role", ["client", "nobody"])
def test_no_client_can_lock_a_scopes_gate(conn: Conn, make_conn: Callable[..., Conn],
                                          client: str, role: str) -> None:
    scalar(conn, SUBMITS["delete"])  # the scope's row exists
    other = make_conn()
    other.execute(f"SET ROLE {client if role == 'client' else NOBODY}")
    for lock in ("FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute(f"SELECT FROM pgjobs.scope_locks {lock}")


def test_writing_submits_of_one_scope_still_queue_one_at_a_time(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """The row lock keeps what the advisory lock gave: a second `reject`
    submit of the scope waits for the first's transaction and then refuses
    (55006); another scope's does not wait."""
    first = make_conn(autocommit=False)
    first.execute(f"SET ROLE {client}")
    scalar(first, GATED["delete_reject"])
    second = make_conn()
    second.execute(f"SET ROLE {client}")
    second.execute("SET lock_timeout = '500ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        second.execute(GATED["delete_reject"])
    assert scalar(second, "SELECT pgjobs.submit_delete('user_table_rows', '2')") is not None
    first.commit()
    second.execute("SET lock_timeout = '3s'")
    with pytest.raises(psycopg.errors.ObjectInUse):
        second.execute(GATED["delete_reject"])


@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_a_client_holding_its_running_jobs_row_stalls_no_runner(
        conn: Conn, make_conn: Callable[..., Conn], client: str, control: str) -> None:
    """A client pauses (or cancels) its own running job in a transaction it
    leaves open: that holds the job's row. The runner in the middle of that
    job waited for the row at its next page, for as long as the client liked,
    and every other tenant's job behind it with it. It now leaves the job for
    the call (with a warning) and goes on to the others."""
    conn.execute("INSERT INTO user_table_rows (table_id, n, created_at) "
                 "SELECT s, g, now() - interval '1 hour' "
                 "FROM generate_series(1, 50) g, generate_series(1, 2) s")
    attacker = make_conn(autocommit=False)
    attacker.execute(f"SET ROLE {client}")
    own = int(scalar(attacker, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}',"
                               " '{\"page_size\": 10}')"))
    attacker.commit()
    other = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2')"))
    runner = make_conn()
    runner.execute("SELECT pgjobs._claim_id(%s, 'w')", (own,))
    worker = who(conn, own, "w")
    scalar(attacker, f"SELECT pgjobs.{control}(%s)", (own,))  # and the transaction stays open
    runner.execute("SET statement_timeout = '60s'")
    runner.execute("CALL pgjobs._run_claimed(%s, %s, now() + interval '5 seconds')",
                   (own, worker))
    runner.execute("CALL pgjobs.run('5 seconds')")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (other,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2") == 0
    attacker.rollback()
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (own,)) == "running"


@pytest.mark.parametrize("kind", ["export", "import"])
@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_a_client_holding_its_running_jobs_row_stalls_no_worker(
        conn: Conn, make_conn: Callable[..., Conn], client: str, tmp_path: Any,
        kind: str, control: str) -> None:
    """The same for an export or import worker (`--concurrency 1`: the one
    worker of every tenant): its heartbeat, batch or complete waited for the
    row the client held. It now leaves the job to a later claim ('lost') and
    is free for the next one."""
    import threading

    from pgjobs.poller.export import Exporter
    from pgjobs.poller.importer import Importer
    from tests.support import allow

    conn.execute("INSERT INTO user_table_rows (table_id, n) "
                 "SELECT 1, g FROM generate_series(1, 50) g")
    folder = tmp_path / "store"
    folder.mkdir()
    allow(conn, f"file://{tmp_path}")
    source = tmp_path / "in.csv"
    source.write_text("n\n" + "".join(f"{i}\n" for i in range(50)))
    conn.execute(f"GRANT INSERT ON user_table_rows TO {client}")
    attacker = make_conn(autocommit=False)
    attacker.execute(f"SET ROLE {client}")
    if kind == "export":
        own = int(scalar(attacker, "SELECT pgjobs.submit_export('user_table_rows', '1')"))
    else:
        own = int(scalar(attacker, "SELECT pgjobs.submit_import('user_table_rows', '1', %s)",
                         (f"file://{source}",)))
    attacker.commit()
    claim = "claim_export" if kind == "export" else "claim_import"
    worker = str(scalar(conn, f"SELECT worker FROM pgjobs.{claim}(%s, 'w', '1 hour')", (own,)))
    scalar(attacker, f"SELECT pgjobs.{control}(%s)", (own,))  # and the transaction stays open
    runner = Exporter if kind == "export" else Importer
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(
        runner(conn.info.dsn, own, worker, f"file://{folder}").run()), daemon=True)
    thread.start()
    thread.join(120)
    stuck = thread.is_alive()
    attacker.rollback()
    thread.join(60)
    assert not stuck, "the worker waited for the client's transaction"
    assert outcome[0].status == "lost", outcome
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (own,)) == "running"


@pytest.mark.parametrize("hold", ["session", "transaction"])
def test_a_client_that_saw_a_claimers_lock_cannot_starve_a_capped_job(
        conn: Conn, make_conn: Callable[..., Conn], client: str, hold: str) -> None:
    """pg_locks shows every session's locks to every role: a client watching it
    while a worker claimed its capped job read the sealed advisory key
    (classid, objid), the same at every claim of that job, then held it; every
    claim_items skipped the job from then on, and its items were never handed
    out. The claimers now serialize on the job's row, which no client may
    lock (FOR UPDATE needs UPDATE on pgjobs.jobs), so nothing a client sees
    in pg_locks is a lock it can take from them."""
    attacker = make_conn()
    attacker.execute(f"SET ROLE {client}")
    own = _submit(attacker, "1", ["a", "b", "c"], {"concurrency": 2, "priority": 5})
    worker = make_conn()
    worker.execute("BEGIN")
    assert _claim(worker, limit=1) == [own]
    # Every lock the claim holds that the client may take: advisory ones.
    keys = [r[0] for r in attacker.execute(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = %s", (worker.info.backend_pid,))]
    worker.execute("COMMIT")
    if hold == "transaction":
        attacker.execute("BEGIN")
    for key in keys:
        attacker.execute(f"SELECT pg_advisory{'_xact' if hold == 'transaction' else ''}"
                         "_lock(%s)", (key,))
    # One item out of two allowed: the next claim takes the second.
    assert _claim(make_conn()) == [own]
    if hold == "transaction":
        attacker.execute("ROLLBACK")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attacker.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR NO KEY UPDATE", (own,))
