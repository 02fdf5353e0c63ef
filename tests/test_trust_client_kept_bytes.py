"""Every byte a client makes the engine keep counts toward one ceiling,
max_item_bytes_per_client (review of h135).

Found: the ceiling (migration 0135) counted fan-out items and delete
exclude lists only, as a sum read at each call, and
* a job's payload (up to 1 MiB, a custom kind's or a backfill's `set`, a
  filter) counted toward nothing: 100,000 kept jobs of 1 MiB, about 100 GB;
* an import's rejects (up to 16 MiB a job) counted toward nothing either;
* the sum was read from the caller's snapshot: a REPEATABLE READ
  transaction that took its snapshot before another session added bytes
  passed the ceiling by what it missed;
* the lock was taken only near the ceiling (within ten calls of the size
  added): more than ten sessions adding at once, each far from it, passed
  it together.
Now each addition updates the client's running total in place
(pgjobs._keep_client_bytes; client_room_locks.kept_bytes), given back when
its job is deleted. Every storing path x under/at/over the ceiling, the
administrator exempt, isolation levels and many sessions (interleavings
forced with locks, never timed).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.poller.importer import Importer
from tests.support import claim_import, job, make_rows_target, scalar, seed, submit_import
from tests.support.imports import allow, drop_client, people_client
from tests.support.roles import (
    acting_as,
    drop_role,
    item_bytes,
    kept_total,
    make_role,
    scalar_as,
)
from tests.support.waiting import waits_on_lock_or_ends

Conn = psycopg.Connection[Any]

HINT = 'pgjobs.set_defaults(\'{"max_item_bytes_per_client": N}\')'
FREE = 4096  # the bytes of payload and options each job keeps uncounted
ADD_ITEMS = "SELECT pgjobs.add_items(%s, %s::jsonb)"


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "kbclient", "GRANT pgjobs_client TO {role}", grant)
    other = make_role(conn, "kbother", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "kbadmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "other": other, "admin": admin}
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    for role in (client, other, admin):
        drop_role(conn, role)


def _set(conn: Conn, **settings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(settings),))


_scopes = iter(range(1000, 10**6))


def _submit(conn: Conn, role: str, path: str, size: int) -> int:
    """A job of kind `path` whose payload and options keep `size` bytes past
    the allowance (size 0: exactly at it), submitted by role in its own
    transaction."""
    scope = str(next(_scopes))
    calls = {
        "custom": ("SELECT pgjobs.submit('kb_kind', 'user_table_rows', %s, %s::jsonb)",
                   lambda pad: (scope, json.dumps({"pad": pad}))),
        "backfill": ("SELECT pgjobs.submit_backfill('user_table_rows', %s, "
                     "'{}'::jsonb, %s::jsonb)",
                     lambda pad: (scope, json.dumps({"label": pad}))),
        "delete": ("SELECT pgjobs.submit_delete('user_table_rows', %s, %s::jsonb)",
                   lambda pad: (scope, json.dumps({"label": {"$ne": pad}}))),
        "export": ("SELECT pgjobs.submit_export('user_table_rows', %s, %s::jsonb)",
                   lambda pad: (scope, json.dumps({"label": {"$ne": pad}}))),
    }
    call, params = calls[path]
    # The padding that makes the job keep FREE + size bytes: measured once
    # with an administrator's submit (not counted toward anyone's ceiling).
    pad = _pad_for(conn, path, call, params, FREE + size)
    return int(scalar_as(conn, role, call, params(pad)))


_pads: dict[tuple[str, int], str] = {}


def _pad_for(conn: Conn, path: str, call: str, params: Callable[[str], Any], want: int) -> str:
    """The padding that makes the job keep `want` bytes of inputs as the
    engine counts them: its payload and options and what was compiled from
    them beside them (pgjobs._job_input_bytes; a filter's or a set's value
    is kept in the payload and again in the predicate or assignments, a
    quote doubled there)."""
    if (path, want) in _pads:
        return _pads[(path, want)]

    def kept(pad: str) -> int:
        with conn.transaction():
            probe = int(scalar(conn, call, params(pad)))
            bytes_ = int(scalar(conn, "SELECT pgjobs._job_input_bytes(j) FROM pgjobs.jobs j "
                                      "WHERE id = %s", (probe,)))
            conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (probe,))
        return bytes_

    big = "x" * FREE  # past the allowance, where each byte counts
    base = kept(big)
    per_x, per_quote = kept(big + "x") - base, kept(big + "'") - base
    needed = want - FREE - base  # bytes to add (or take off) past `big`'s
    for quotes in range(per_x):
        if (needed - quotes * per_quote) % per_x == 0:
            pad = "x" * (FREE + (needed - quotes * per_quote) // per_x) + "'" * quotes
            break
    else:
        raise AssertionError(f"no padding keeps {want} bytes for {path}")
    if want > FREE:
        assert kept(pad) + FREE == want
    else:  # at the allowance exactly: one byte more would count
        assert kept(pad) == 0 and kept(pad + "x") > 0
    _pads[(path, want)] = pad
    return pad


PATHS = ["custom", "backfill", "delete", "export"]


@pytest.mark.parametrize("path", PATHS)
def test_payloads_past_the_allowance_count_toward_the_clients_ceiling(
        conn: Conn, make_conn: Callable[..., Conn], roles: dict[str, str], path: str) -> None:
    """Under, at and over the ceiling by each kind of submit; a job at the
    allowance counts nothing; the administrator is not held; pruning gives
    the bytes back."""
    # A transaction left open: a delete's cutoff (in its predicate, which
    # counts) is its start, the same for every submit below, so each keeps
    # exactly the bytes its padding was measured to.
    pin = make_conn(autocommit=False)
    pin.execute("SELECT 1")
    client = roles["client"]
    _set(conn, max_item_bytes_per_client=3000)
    _submit(conn, client, path, 0)                   # at the allowance: nothing
    assert kept_total(conn, client) == 0
    _submit(conn, client, path, 2000)                # under
    assert kept_total(conn, client) == 2000
    _submit(conn, client, path, 1000)                # at the ceiling exactly
    assert kept_total(conn, client) == 3000
    _submit(conn, client, path, 0)                   # still nothing to count
    jobs = int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs"))
    with pytest.raises(errors.ObjectInUse) as info:  # over, by one byte
        _submit(conn, client, path, 1)
    assert "at most 3000 bytes of items over all its jobs" in (
        info.value.diag.message_primary or "")
    assert "payload" in (info.value.diag.message_primary or "")
    assert HINT in (info.value.diag.message_hint or "")
    assert int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs")) == jobs  # nothing written
    assert kept_total(conn, client) == 3000
    # Another client has its own room; an administrator is not held, and
    # what it keeps counts for nobody's ceiling.
    _submit(conn, roles["other"], path, 3000)
    _submit(conn, roles["admin"], path, 9000)
    assert kept_total(conn, client) == 3000
    # Room comes back when the client's finished jobs are pruned.
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 days' WHERE submitted_by = %s", (client,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    assert kept_total(conn, client) == 0
    _submit(conn, client, path, 3000)


def test_all_paths_share_the_one_ceiling(conn: Conn, roles: dict[str, str]) -> None:
    """Payloads, items and exclude lists count toward the same total."""
    client = roles["client"]
    _set(conn, max_item_bytes_per_client=5003)
    _submit(conn, client, "custom", 2500)
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {client}")
        item_job = int(scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                    "'5', '[1]')"))
    items = "[" + ", ".join(json.dumps("y" * 96) for _ in range(25)) + "]"  # 2500 bytes
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {client}")
        conn.execute(ADD_ITEMS, (item_job, "[" + items[1:-1] + "]"))
    total = kept_total(conn, client)
    assert total == 2500 + 2500 + 3  # the job's first '[1]' too
    with pytest.raises(errors.ObjectInUse), conn.transaction():
        conn.execute(f"SET LOCAL ROLE {client}")
        conn.execute("SELECT pgjobs.submit_delete('user_table_rows', '7', '{}'::jsonb, %s, "
                     "'{\"allow_unknown_keys\": true}'::jsonb)",
                     ([str(i) for i in range(100000, 100150)],))
    assert kept_total(conn, client) == total


# Races: real sessions, interleavings forced with locks.

@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    seed(conn, make_rows_target(conn), 3)
    role = make_role(conn, "kbrace", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 1000}')")
    yield role
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    drop_role(conn, role)


def _sized(width: int) -> str:
    text = "[" + json.dumps("x" * (width - 4)) + "]"
    assert len(text) == width
    return text


def _fanout_jobs(conn: Conn, role: str, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {role}")
            ids.append(int(scalar(
                conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', %s, '[1]')",
                (str(next(_scopes)),))))
    return ids


@pytest.mark.parametrize("sessions", [12, 20])
def test_many_sessions_far_from_the_ceiling_do_not_pass_it_together(
        conn: Conn, make_conn: Callable[..., Conn], client: str, sessions: int) -> None:
    """Each session adds 90 bytes, which alone leaves the client far from
    its ceiling; the first holds its transaction open while each next one
    adds: together they would keep 90 * sessions > 1000."""
    # Ten calls of 90 bytes are not 1050 - 126: the old rule counted
    # without the lock.
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 1050}')")
    jobs = _fanout_jobs(conn, client, sessions)
    base = item_bytes(conn, client)
    conns = []
    for _ in range(sessions):
        session = make_conn(autocommit=False)
        session.execute(f"SET ROLE {client}")
        session.commit()
        conns.append(session)
    outcomes = [""] * sessions

    def add(i: int) -> None:
        try:
            conns[i].execute(ADD_ITEMS, (jobs[i], _sized(90)))
            conns[i].commit()
            outcomes[i] = "added"
        except psycopg.Error as exc:
            conns[i].rollback()
            outcomes[i] = exc.sqlstate or "?"

    conns[0].execute(ADD_ITEMS, (jobs[0], _sized(90)))
    threads = []
    for i in range(1, sessions):
        done = threading.Event()

        def target(i: int = i, done: threading.Event = done) -> None:
            try:
                add(i)
            finally:
                done.set()

        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)
        waits_on_lock_or_ends(conn, conns[i].info.backend_pid, done)
    conns[0].commit()
    outcomes[0] = "added"
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert item_bytes(conn, client) <= 1050
    assert outcomes.count("added") == (1050 - base) // 90
    assert outcomes.count("55006") == sessions - outcomes.count("added")


def _add_300(session: Conn, call: str, job_id: int) -> None:
    """About 300 bytes more for the client: items, or a payload past the
    allowance."""
    if call == "add_items":
        session.execute(ADD_ITEMS, (job_id, _sized(300)))
    else:
        session.execute("SELECT pgjobs.submit('kb_kind', 'user_table_rows', %s, %s::jsonb)",
                        (str(next(_scopes)), json.dumps({"pad": "x" * (FREE + 290)})))


@pytest.mark.parametrize("call", ["add_items", "payload"])
@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_an_old_snapshot_does_not_pass_the_ceiling(
        conn: Conn, make_conn: Callable[..., Conn], client: str, isolation: str,
        call: str) -> None:
    """A transaction whose snapshot was taken before another session added
    bytes must not count from it: it fails (40001, retry) or is refused,
    never keeps more than the ceiling."""
    first, second = _fanout_jobs(conn, client, 2)
    with conn.transaction():          # 606 of 1000: the client has been near it
        conn.execute(f"SET LOCAL ROLE {client}")
        conn.execute(ADD_ITEMS, (first, _sized(600)))
    old = make_conn(autocommit=False)
    old.execute(f"SET ROLE {client}")
    old.commit()
    old.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation.upper()}")
    old.execute("SELECT count(*) FROM pgjobs.jobs")          # the snapshot is taken
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {client}")
        conn.execute(ADD_ITEMS, (first, _sized(300)))        # committed after it
    with pytest.raises(psycopg.Error) as info:
        _add_300(old, call, second)
        old.commit()
    old.rollback()
    assert info.value.sqlstate in ("40001", "55006")
    if info.value.sqlstate == "40001":
        assert "Run the transaction again" in (info.value.diag.message_hint or "")
    assert kept_total(conn, client) <= 1000
    # Run again, it sees the other's bytes and is refused.
    with pytest.raises(errors.ObjectInUse):
        _add_300(old, call, second)
    old.rollback()


def test_another_role_adding_to_the_clients_job_at_once_does_not_pass_it(
        conn: Conn, make_conn: Callable[..., Conn], client: str) -> None:
    """The bytes count for the job's submitter whoever adds them, and the
    two additions count one after the other."""
    other = make_role(conn, "kbrace_other", "GRANT pgjobs_client TO {role}",
                      "GRANT SELECT, UPDATE ON user_table_rows TO {role}")
    try:
        first, second = _fanout_jobs(conn, client, 2)
        mine = make_conn(autocommit=False)
        mine.execute(f"SET ROLE {client}")
        mine.commit()
        mine.execute(ADD_ITEMS, (first, _sized(600)))        # uncommitted
        theirs = make_conn(autocommit=False)
        theirs.execute(f"SET ROLE {other}")
        theirs.commit()
        outcome: list[str] = []
        done = threading.Event()

        def target() -> None:
            try:
                theirs.execute(ADD_ITEMS, (second, _sized(600)))
                theirs.commit()
                outcome.append("added")
            except psycopg.Error as exc:
                theirs.rollback()
                outcome.append(exc.sqlstate or "?")
            finally:
                done.set()

        thread = threading.Thread(target=target)
        thread.start()
        waits_on_lock_or_ends(conn, theirs.info.backend_pid, done)
        mine.commit()
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert outcome in (["55006"], ["42501"])  # refused either way, never kept
        assert item_bytes(conn, client) <= 1000
    finally:
        drop_role(conn, other)


# Imports: rejects count toward the client's ceiling too.

LINES = 40
BAD_EVERY = 4
KEPT = 4


def _source() -> bytes:
    out = [b"name,age\n"]
    for n in range(1, LINES + 1):
        bad = n % BAD_EVERY == 0
        name = f"p{n}" + ("y" * 2000 if bad else "")
        out.append(f"{name},{'x' if bad else n}\n".encode())
    return b"".join(out)


def _rejects(conn: Conn, job_id: int) -> list[tuple[int, int]]:
    return [tuple(r) for r in conn.execute(
        "SELECT line, octet_length(reason) + coalesce(octet_length(record), 0) "
        "FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,)).fetchall()]


def _import(conn: Conn, dsn: str, role: str | None, uri: str, store: str) -> tuple[int, str]:
    with acting_as(conn, role):
        job_id = submit_import(conn, uri, "1", {"max_rejects": 1000})
    status = Importer(dsn, job_id, claim_import(dsn, job_id), store,
                      batch_bytes=5000).run().status
    return job_id, status


def test_an_imports_rejects_past_the_clients_ceiling_fail_it(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    role = people_client(conn, "kbimport")
    try:
        folder = tmp_path / "in"
        folder.mkdir()
        allow(conn, f"file://{folder}")
        (folder / "people.csv").write_bytes(_source())
        uri = f"file://{folder}/people.csv"
        store = f"file://{tmp_path}/store"
        admin_job, status = _import(conn, dsn, None, uri, store)   # learns the rejects
        assert status == "succeeded"
        found = _rejects(conn, admin_job)
        assert len(found) == LINES // BAD_EVERY
        conn.execute("DELETE FROM people")
        ceiling = sum(b for _, b in found[:KEPT + 1]) - 1
        _set(conn, max_item_bytes_per_client=ceiling)
        job_id, status = _import(conn, dsn, role, uri, store)
        assert status == "failed"
        row = job(conn, job_id)
        assert row["error"].startswith(f"line {found[KEPT][0]}:"), row["error"]
        assert "max_item_bytes_per_client" in row["error"], row["error"]
        assert HINT in row["error"], row["error"]
        # It says the room the client had left (h142): the ceiling less the
        # rejects of the batches committed before the failing one.
        left = re.search(r"and (\d+) bytes were left to the client", row["error"])
        assert left, row["error"]
        assert ceiling - sum(b for _, b in found[:KEPT]) <= int(left.group(1)) <= ceiling
        # Exactly the rejects that fit are kept, and counted.
        assert _rejects(conn, job_id) == found[:KEPT]
        assert kept_total(conn, role) == sum(b for _, b in found[:KEPT]) <= ceiling
        # A second import of the client has what is left: the rejects that
        # fit in it, then it fails.
        room = ceiling - sum(b for _, b in found[:KEPT])
        fit = 0
        while sum(b for _, b in found[:fit + 1]) <= room:
            fit += 1
        second, status = _import(conn, dsn, role, uri, store)
        assert status == "failed"
        assert "max_item_bytes_per_client" in job(conn, second)["error"]
        assert _rejects(conn, second) == found[:fit]
        assert kept_total(conn, role) <= ceiling
        # The ceiling raised, a retry redoes the failed batch: its rejects are
        # forgotten and written again, counted once (the total stays what the
        # client's jobs keep: _total checks it against them).
        _set(conn, max_item_bytes_per_client=None)
        conn.execute(f"SET ROLE {role}")
        try:
            assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
        finally:
            conn.execute("RESET ROLE")
        status = Importer(dsn, job_id, claim_import(dsn, job_id), store,
                          batch_bytes=5000).run().status
        assert status == "succeeded", job(conn, job_id)["error"]
        assert _rejects(conn, job_id) == found
        assert kept_total(conn, role) == sum(b for _, b in found) + sum(b for _, b in found[:fit])
        # Pruned, the room comes back.
        conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' "
                     "WHERE submitted_by = %s", (role,))
        conn.execute("SELECT pgjobs.prune('1 day')")
        assert kept_total(conn, role) == 0
    finally:
        conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
        drop_client(conn, role)


def test_an_import_batch_writing_no_rejects_does_not_wait_for_the_clients_total(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """One client role may submit imports for many scopes: a batch that writes no
    reject reads the client's room without locking its total, so it runs while
    another transaction of the client holds the total (a large submit, another
    import's batch writing rejects). Each batch locking the total until its
    commit ran a client's imports one batch at a time."""
    role = people_client(conn, "kbnowait")
    holder = psycopg.connect(dsn)
    try:
        folder = tmp_path / "in"
        folder.mkdir()
        allow(conn, f"file://{folder}")
        (folder / "people.csv").write_bytes(
            b"name,age\n" + b"".join(f"p{n},{n}\n".encode() for n in range(1, 41)))
        uri = f"file://{folder}/people.csv"
        conn.execute(f"SET ROLE {role}")
        try:
            job_id = submit_import(conn, uri, "1", {"max_rejects": 1000})
        finally:
            conn.execute("RESET ROLE")
        conn.execute("INSERT INTO pgjobs.client_room_locks (submitter_oid) "
                     "SELECT oid FROM pg_roles WHERE rolname = %s ON CONFLICT DO NOTHING",
                     (role,))
        assert holder.execute(
            "SELECT 1 FROM pgjobs.client_room_locks WHERE submitter_oid = "
            "(SELECT oid FROM pg_roles WHERE rolname = %s) FOR UPDATE", (role,)).fetchone()
        done = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(Importer(dsn, job_id, claim_import(dsn, job_id),
                                        f"file://{tmp_path}/store", batch_bytes=200).run().status)
            except BaseException as exc:  # reported below
                outcome.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=run)
        thread.start()
        waited = False
        while not done.is_set():  # polls an order of events, not a time
            if scalar(conn, "SELECT count(*) FROM pg_locks WHERE NOT granted "
                            "AND pid <> pg_backend_pid()"):
                waited = scalar(conn, "SELECT string_agg(query, ' | ') FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock'") or "a lock"
                break
            done.wait(0.01)
        holder.rollback()  # lets a waiting batch go on, so the thread ends
        thread.join()
        assert not waited, f"the import waited for the client's total: {waited}"
        assert not isinstance(outcome[0], BaseException), outcome[0]
        assert outcome[0] == "succeeded", job(conn, job_id)["error"]
        assert scalar(conn, "SELECT count(*) FROM people") == 40
        assert _rejects(conn, job_id) == []
    finally:
        holder.close()
        drop_client(conn, role)
