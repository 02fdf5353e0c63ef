"""A job runs against the registration it was submitted under (trust review h1,
round 30).

A job is compiled at its submit: its predicate names the scope column, its
cursor and its exclusions are keys of the key column. `register_target` used to
accept new key, scope, created_at or document columns for a target whose jobs
were still pending, and `retry` requeued a failed or canceled job under whatever
registration the target had by then. A whole-tenant delete re-registered under
another scope column then ended `succeeded` with most of its tenant's rows left
(the pages walked the new column's tenant, the old predicate kept only the
intersection), and exclusions spared the rows of other keys than the client
listed. Now the columns cannot change under a queued, running or paused job
(55006, as `unregister_target`), and a failed or canceled job of the old
columns is never retried (55000)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import build_target, job, run_job, scalar, wait_for

Conn = psycopg.Connection[Any]

# register_target arguments (key, scope, created_at, document) that change one
# column each from the registration the target starts with.
CHANGES = {
    "scope": ("id", "other", "created_at", "data"),
    "key": ("code", "tenant", "created_at", "data"),
    "created_at": ("id", "tenant", "touched_at", "data"),
    "document": ("id", "tenant", "created_at", "meta"),
}


def _target(conn: Conn) -> None:
    build_target(conn, "reg_change", """id bigint NOT NULL, code bigint NOT NULL,
                 tenant int NOT NULL, other int NOT NULL, data jsonb, meta jsonb,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                 touched_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""",
                 scope="tenant", document="data")
    for scope, key in [("other", "id"), ("tenant", "code")]:
        conn.execute(f"CREATE INDEX ON reg_change ({scope}, {key})")
    # code runs backwards: key 5 of id is not key 5 of code.
    conn.execute("""INSERT INTO reg_change (id, code, tenant, other, data, meta)
                    SELECT g, 1000 - g, g % 2, g % 3, jsonb_build_object('k', g), '{}'
                      FROM generate_series(1, 60) g""")


def _register(conn: Conn, columns: tuple[str, str, str, str]) -> None:
    conn.execute("SELECT pgjobs.register_target('reg_change', %s, %s, %s, %s)", columns)


def _tenant_rows(conn: Conn) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT id FROM reg_change WHERE tenant = 1 ORDER BY id").fetchall()]


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("state", ["queued", "paused"])
def test_the_columns_do_not_change_under_a_pending_job(conn: Conn, change: str,
                                                       state: str) -> None:
    """Before: the new registration was stored, and the queued whole-tenant
    delete (below) ended succeeded with rows of its tenant left."""
    _target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1', '{}', %s)",
                    (["5", "7"],))
    if state == "paused":
        conn.execute("SELECT pgjobs.pause(%s)", (job_id,))
    before = scalar(conn, "SELECT registered_at FROM pgjobs.targets"
                          " WHERE target = 'reg_change'::regclass")
    with pytest.raises(psycopg.errors.ObjectInUse) as err:
        _register(conn, CHANGES[change])
    assert f"'{{{job_id}}}'" in (err.value.diag.message_hint or "")
    assert "pgjobs.cancel" in (err.value.diag.message_hint or "")
    assert scalar(conn, "SELECT (key, scope, created_at, document)::text FROM pgjobs.targets"
                        " WHERE target = 'reg_change'::regclass") == "(id,tenant,created_at,data)"
    assert scalar(conn, "SELECT registered_at FROM pgjobs.targets"
                        " WHERE target = 'reg_change'::regclass") == before
    # Options may change under it; the columns it was compiled against stay.
    conn.execute("""SELECT pgjobs.register_target('reg_change', 'id', 'tenant', 'created_at',
                    'data', '{"tune_autovacuum": false}')""")
    if state == "paused":
        conn.execute("SELECT pgjobs.resume(%s)", (job_id,))
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    # Every row of tenant 1 went, except the two keys (of id) it excluded.
    assert _tenant_rows(conn) == [5, 7]


@pytest.mark.parametrize("change", sorted(CHANGES) + ["unregistered"])
@pytest.mark.parametrize("end", ["canceled", "failed"])
def test_a_job_of_the_old_columns_is_not_retried_under_new_ones(conn: Conn, change: str,
                                                                 end: str) -> None:
    """Before: retry requeued it, and under the scope change it ended
    succeeded with 20 of its tenant's 30 rows left."""
    _target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1', '{}', %s)",
                    (["5", "7"],))
    if end == "canceled":
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    else:
        # As a page's permanent error leaves it.
        conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now(),"
                     " error = 'boom' WHERE id = %s", (job_id,))
    assert job(conn, job_id)["status"] == end
    if change == "unregistered":
        conn.execute("SELECT pgjobs.unregister_target('reg_change')")
        _register(conn, CHANGES["scope"])
    else:
        _register(conn, CHANGES[change])
    ended = job(conn, job_id)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    assert "registration of public.reg_change changed" in str(err.value)
    assert "submit it again" in (err.value.diag.message_hint or "")
    assert job(conn, job_id)["status"] == end
    assert job(conn, job_id)["updated_at"] == ended["updated_at"]
    assert len(_tenant_rows(conn)) == 30


def test_a_job_is_retried_when_only_the_options_changed(conn: Conn) -> None:
    _target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1', '{}')")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    conn.execute("""SELECT pgjobs.register_target('reg_change', 'id', 'tenant', 'created_at',
                    'data', '{"tune_autovacuum": false}')""")
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,))
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded"
    assert _tenant_rows(conn) == []


@pytest.mark.parametrize("change", ["scope", "unregistered"])
def test_a_submit_racing_a_registration_change_is_refused(
        conn: Conn, make_conn: Callable[..., Conn], change: str) -> None:
    """The registration commits while a submit that read the old one is
    between its checks and its INSERT. Before: the submit returned a job
    compiled against the old columns, which the new registration (its
    pending-job check had run before the job existed) then ran under."""
    _target(conn)
    admin = make_conn(autocommit=False)
    client = make_conn()
    pid = scalar(client, "SELECT pg_backend_pid()")
    admin.execute("SELECT pgjobs.unregister_target('reg_change')" if change == "unregistered"
                  else "SELECT pgjobs.register_target('reg_change', 'id', 'other',"
                       " 'created_at', 'data')")
    outcome: dict[str, Any] = {}

    def submit() -> None:
        try:
            outcome["job"] = scalar(client, "SELECT pgjobs.submit_delete('reg_change', '1')")
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=submit)
    thread.start()
    try:
        # The submit either waits for the registration (its row's lock: the
        # registration's transaction, no longer an advisory lock) or is done.
        wait_for(lambda: outcome or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
            (pid,)), what="the submit to wait or end")
    finally:
        admin.commit()
        thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.SerializationFailure), outcome
    assert "submit it again" in (outcome["error"].diag.message_hint or "").lower()
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("change", ["scope", "unregistered"])
def test_a_retry_in_flight_holds_the_registration_back(
        conn: Conn, make_conn: Callable[..., Conn], change: str) -> None:
    """A retry has requeued a canceled job and not committed yet when the
    registration changes. Before: the change's pending-job check ran first
    and saw the job canceled, its marking then skipped the job the retry
    had made queued: the job ran under the new columns."""
    _target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1')")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    retrier = make_conn(autocommit=False)
    admin = make_conn()
    pid = scalar(admin, "SELECT pg_backend_pid()")
    assert scalar(retrier, "SELECT pgjobs.retry(%s)", (job_id,))
    outcome: dict[str, Any] = {}

    def register() -> None:
        try:
            admin.execute("SELECT pgjobs.unregister_target('reg_change')"
                          if change == "unregistered" else
                          "SELECT pgjobs.register_target('reg_change', 'id', 'other',"
                          " 'created_at', 'data')")
            outcome["done"] = True
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=register)
    thread.start()
    try:
        wait_for(lambda: outcome or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)),
                 what="the registration to wait or end")
    finally:
        retrier.commit()
        thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.ObjectInUse), outcome
    assert job(conn, job_id)["status"] == "queued"
    assert scalar(conn, "SELECT scope FROM pgjobs.targets"
                        " WHERE target = 'reg_change'::regclass") == "tenant"
    assert "registration_changed" not in (job(conn, job_id)["checkpoint"] or {})


@pytest.mark.parametrize("kind", ["export", "import"])
def test_a_registration_committed_during_the_checks_refuses_the_submit(
        conn: Conn, make_conn: Callable[..., Conn], kind: str) -> None:
    """The registration commits while a submit is past its own read of the
    registration and before its INSERT (held here at its storage check, which
    both kinds make between the two). Before: export and import did not hand
    the registration they had checked and compiled against to
    pgjobs._insert_job_row, which read it again, saw the new columns, compared
    them with themselves and let the job in: an export whose predicate names
    the old scope column, walked under the new one."""
    _target(conn)
    conn.execute("SELECT pgjobs.allow_storage('memory://race')")
    locker = make_conn(autocommit=False)
    locker.execute("LOCK TABLE pgjobs.storage_allow IN ACCESS EXCLUSIVE MODE")
    client = make_conn()
    pid = scalar(client, "SELECT pg_backend_pid()")
    outcome: dict[str, Any] = {}

    def submit() -> None:
        try:
            outcome["job"] = scalar(
                client,
                "SELECT pgjobs.submit_export('reg_change', '1', '{}',"
                " '{\"destination\": \"memory://race/out/\"}')" if kind == "export" else
                "SELECT pgjobs.submit_import('reg_change', '1', 'memory://race/in.csv')")
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=submit)
    thread.start()
    try:
        wait_for(lambda: outcome or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'relation'"
                  " AND NOT granted", (pid,)), what="the submit to wait at its storage check")
        assert not outcome, outcome
        conn.execute("""SELECT pgjobs.register_target('reg_change', 'id', 'other', 'created_at',
                        'data', '{"tune_autovacuum": false}')""")
    finally:
        locker.rollback()
        thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.SerializationFailure), outcome
    assert "submit it again" in (outcome["error"].diag.message_hint or "").lower()
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_compiled_job_row_needs_the_registration_it_was_compiled_against(conn: Conn) -> None:
    """The class behind export's and import's race: pgjobs._insert_job_row can
    only compare the registration a job was compiled against with the
    registry if it is handed that registration. A predicate without one is
    refused (22023) rather than checked against a registration read later."""
    _target(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT pgjobs._insert_job('delete', 'reg_change', '1', '{}', '{}', '{}',"
                     " 'true')")
    assert "p_reg" in (err.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    reg = "(SELECT r FROM pgjobs.target_registry r WHERE r.target = 'reg_change'::regclass)"
    assert scalar(conn, f"SELECT (pgjobs._insert_job('delete', 'reg_change', '1', '{{}}', '{{}}',"
                        f" '{{}}', 'true', NULL, {reg})).id") is not None


@pytest.mark.parametrize("change", ["scope", "unregistered"])
def test_the_refusal_tells_the_operator_the_whole_way_through(conn: Conn, change: str) -> None:
    """An operator who must change the columns under a pending job follows
    the 55006 hint: cancel, register again, and submit again, since the
    canceled job is not retried under the new columns (55000). Before: the
    hint stopped at "register it again", and the retry the operator then
    tried was the first they heard of resubmitting."""
    _target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1')")
    with pytest.raises(psycopg.errors.ObjectInUse) as err:
        if change == "unregistered":
            conn.execute("SELECT pgjobs.unregister_target('reg_change')")
        else:
            _register(conn, CHANGES["scope"])
    hint = err.value.diag.message_hint or ""
    assert "pgjobs.cancel" in hint, hint
    assert "submit" in hint and "not retried" in hint, hint
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    if change == "unregistered":
        conn.execute("SELECT pgjobs.unregister_target('reg_change')")
    _register(conn, CHANGES["scope"])
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    again = scalar(conn, "SELECT pgjobs.submit_delete('reg_change', '1')")
    run_job(conn, again)
    assert job(conn, again)["status"] == "succeeded"
    # The new scope column's tenant 1 went, whatever its rows' old tenant.
    assert scalar(conn, "SELECT count(*) FROM reg_change WHERE other = 1") == 0
    assert scalar(conn, "SELECT count(*) FROM reg_change") == 40


def test_a_change_of_options_does_not_wait_for_a_submitting_transaction(
        conn: Conn, make_conn: Callable[..., Conn]) -> None:
    """A client's transaction has submitted a job and stays open. Registering
    the target again with the same columns (new options) changes nothing its
    job was compiled against: it goes through at once, and other clients'
    submits on the target go on. Before: it waited on the lock the open
    submit held (shared) until that transaction ended, and every later submit
    on the target queued behind it."""
    _target(conn)
    client = make_conn(autocommit=False)
    scalar(client, "SELECT pgjobs.submit_delete('reg_change', '1')")
    admin = make_conn()
    pid = scalar(admin, "SELECT pg_backend_pid()")
    outcome: dict[str, Any] = {}

    def register() -> None:
        try:
            admin.execute("""SELECT pgjobs.register_target('reg_change', 'id', 'tenant',
                             'created_at', 'data', '{"tune_autovacuum": false}')""")
            outcome["done"] = True
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=register)
    thread.start()
    try:
        wait_for(lambda: outcome or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)),
                 what="the registration to wait or end")
        waited = not outcome
    finally:
        client.rollback()
        thread.join(30)
    assert not thread.is_alive()
    assert not waited, "the registration waited for the submitting transaction"
    assert outcome == {"done": True}, outcome
    assert scalar(conn, "SELECT options ->> 'tune_autovacuum' FROM pgjobs.targets"
                        " WHERE target = 'reg_change'::regclass") == "false"


@pytest.mark.parametrize("first", ["register", "unregister"])
@pytest.mark.parametrize("columns", ["same", "scope"])
def test_registrations_and_unregistrations_of_a_table_take_turns(
        conn: Conn, make_conn: Callable[..., Conn], first: str, columns: str) -> None:
    """register_target and unregister_target of one table wait for each other
    (the registrations' own lock, then the registry row, then the submits'
    lock, in that order in both) and neither deadlocks nor is lost."""
    _target(conn)
    sql = {"register": "SELECT pgjobs.register_target('reg_change', %s, %s, %s, %s,"
                       " '{\"tune_autovacuum\": false}')",
           "unregister": "SELECT pgjobs.unregister_target('reg_change')"}
    args = {"register": CHANGES["scope"] if columns == "scope"
            else ("id", "tenant", "created_at", "data"), "unregister": None}
    second = "unregister" if first == "register" else "register"
    holder = make_conn(autocommit=False)
    holder.execute(sql[first], args[first])
    other = make_conn()
    pid = scalar(other, "SELECT pg_backend_pid()")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            other.execute(sql[second], args[second])
            outcome["done"] = True
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: outcome or scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)),
                 what="the second to wait or end")
        assert not outcome, outcome
    finally:
        holder.commit()
        thread.join(30)
    assert not thread.is_alive()
    assert outcome == {"done": True}, outcome
    registered = [r[0] for r in conn.execute(
        "SELECT scope FROM pgjobs.targets WHERE target = 'reg_change'::regclass").fetchall()]
    assert registered == ([] if second == "unregister" else [args["register"][1]])
