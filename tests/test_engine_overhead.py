"""The engine's fixed costs per call, cut without giving anything up (issue 11,
bulk speed): the expired-lease sweep runs on no claiming path unless a lease
has expired, and then rescues at once."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import (
    allow,
    claim,
    expire_lease,
    job,
    make_items,
    make_people,
    make_rows_target,
    scalar,
    seed,
    submit,
    submit_delete,
    submit_export,
    submit_import,
    who,
)
from tests.support.roles import acting_as
from tests.support.verdicts import install_dated_page

Conn = psycopg.Connection[Any]


def sweeps(conn: Conn) -> int:
    """Sweep UPDATEs run in this transaction (pgjobs._rescue_sweep's calls)."""
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_rescue_sweep'"""))


def probes(conn: Conn) -> int:
    return int(scalar(conn, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_rescue_expired'"""))


def _claim(tx: Conn, ids: dict[str, int]) -> None:
    claim(tx, "w", kinds=["nothing_of_this_kind"])


def _claim_export(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT * FROM pgjobs.claim_export(%s, 'w')", (ids["export"],)).fetchall()


def _claim_import(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT * FROM pgjobs.claim_import(%s, 'w')", (ids["import"],)).fetchall()


def _claim_id(tx: Conn, ids: dict[str, int]) -> None:  # run_job's claim
    tx.execute("SELECT pgjobs._run_job_claim(%s)", (ids["delete"],)).fetchall()


def _prune(tx: Conn, ids: dict[str, int]) -> None:
    tx.execute("SELECT pgjobs.prune()").fetchall()


ENTRY_POINTS: dict[str, Callable[[Conn, dict[str, int]], None]] = {
    "claim": _claim, "claim_export": _claim_export, "claim_import": _claim_import,
    "run_job": _claim_id, "prune": _prune,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_sweep_unless_a_lease_expired(make_conn: Any, conn: Conn, entry: str) -> None:
    """Every path that rescues expired leases probes first: no sweep UPDATE
    while none has expired, and the sweep (rescuing the job at once) when one
    has."""
    conn.execute("CREATE TABLE items_custom (id bigint PRIMARY KEY, scope int NOT NULL)")
    make_items(conn)
    make_people(conn)
    allow(conn, "file:///tmp/")
    target = make_rows_target(conn)
    seed(conn, target, 30)
    ids = {"export": submit_export(conn), "import": submit_import(conn, "file:///tmp/x.csv"),
           "delete": submit_delete(conn, target, "1")}
    stuck = submit(conn, target="items_custom")
    assert claim(conn, "w") == [stuck]
    call = ENTRY_POINTS[entry]

    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    call(tx, ids)
    assert probes(tx) >= 1
    assert sweeps(tx) == 0
    assert job(tx, stuck)["status"] == "running"
    tx.rollback()

    tx.execute("SET track_functions = 'pl'")
    expire_lease(tx, stuck)
    call(tx, ids)
    assert sweeps(tx) == 1
    rescued = job(tx, stuck)
    assert rescued["status"] == "queued"
    assert rescued["lease_expires_at"] is None
    tx.rollback()


def test_the_probe_returns_the_sweeps_shape(conn: Conn) -> None:
    """Callers (prune reports it) get the same counts with or without a sweep."""
    conn.execute("CREATE TABLE items_custom (id bigint PRIMARY KEY, scope int NOT NULL)")
    idle = scalar(conn, "SELECT pgjobs._rescue_expired()")
    assert idle == {"retried": 0, "failed": 0, "canceled": 0, "paused": 0}
    stuck = submit(conn, target="items_custom")
    assert claim(conn, "w") == [stuck]
    expire_lease(conn, stuck)
    assert scalar(conn, "SELECT pgjobs._rescue_expired()") == {
        "retried": 1, "failed": 0, "canceled": 0, "paused": 0}


# --- the run-time checks: in full once a second, and at every attempt's start ------

ROLE = f"pgjobs_overhead_{os.getpid()}"
OTHER = f"pgjobs_overhead_other_{os.getpid()}"

# Changes after the submit that must stop the job (42501): the submitter's
# rights (each privilege the kind needs, the role itself, row-level security)
# and the target's trust (an owner or a trigger of a role without the runner's
# rights).
CHANGES = {
    "revoke DELETE": ("delete", f"REVOKE DELETE ON rows FROM {ROLE}"),
    "revoke SELECT (delete)": ("delete", f"REVOKE SELECT ON rows FROM {ROLE}"),
    "revoke UPDATE": ("backfill", f"REVOKE UPDATE ON rows FROM {ROLE}"),
    "revoke SELECT (backfill)": ("backfill", f"REVOKE SELECT ON rows FROM {ROLE}"),
    "revoke the client role": ("delete", f"REVOKE pgjobs_client FROM {ROLE}; "
                                         f"REVOKE ALL ON rows FROM {ROLE}"),
    "drop role": ("delete", f"REVOKE ALL ON rows FROM {ROLE}; DROP ROLE {ROLE}"),
    "row-level security": ("delete", "ALTER TABLE rows ENABLE ROW LEVEL SECURITY; "
                                     "ALTER TABLE rows FORCE ROW LEVEL SECURITY"),
    "untrusted owner": ("delete", f"ALTER TABLE rows OWNER TO {OTHER}"),
    "TRIGGER granted": ("backfill", f"GRANT TRIGGER ON rows TO {OTHER}"),
    "untrusted trigger": ("delete",
        f"CREATE FUNCTION public.h2_trg() RETURNS trigger LANGUAGE plpgsql AS "
        f"'BEGIN RETURN OLD;END'; ALTER FUNCTION public.h2_trg() OWNER TO {OTHER}; "
        f"CREATE TRIGGER h2_trg BEFORE DELETE ON rows FOR EACH ROW "
        f"EXECUTE FUNCTION public.h2_trg()"),
}


@pytest.fixture
def roles(conn: Conn) -> Iterator[None]:
    """`rows` (40 rows of scope 1), a client ROLE with every right on it, and
    OTHER, a role without the runner's rights."""
    for role in (ROLE, OTHER):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {ROLE} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"CREATE ROLE {OTHER} NOLOGIN")
    conn.execute("""
        CREATE TABLE rows (id bigint PRIMARY KEY, scope int NOT NULL, data jsonb,
                           created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON rows (scope, id);
        INSERT INTO rows (id, scope, data)
            SELECT i, 1, jsonb_build_object('k', i) FROM generate_series(1, 40) i;
        SELECT pgjobs.register_target('rows', 'id', 'scope', 'created_at', 'data');
    """)
    conn.execute(f"GRANT SELECT, DELETE, UPDATE ON rows TO {ROLE}")
    yield
    conn.execute("RESET ROLE")
    conn.execute("DROP TABLE IF EXISTS rows")
    conn.execute("DROP FUNCTION IF EXISTS public.h2_trg()")
    for role in (ROLE, OTHER):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def _submit(conn: Conn, kind: str) -> int:
    with acting_as(conn, ROLE):
        if kind == "delete":
            job_id = scalar(conn, "SELECT pgjobs.submit_delete('rows', '1', '{}', '{}', "
                                  "'{\"page_size\": 5}')")
        else:
            job_id = scalar(conn, "SELECT pgjobs.submit_backfill('rows', '1', '{}', "
                                  "'{\"x\": 1}', '{\"page_size\": 5}')")
    return int(job_id)


def _page(conn: Conn, job_id: int, identity: str) -> str:
    return str(scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, identity)))


def _age_verdict(conn: Conn, job_id: int, seconds: float) -> None:
    """As if `seconds` had passed since the last full check (administrators
    may write jobs rows; clients may not)."""
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint, '{verified,at}', "
                 "to_jsonb((checkpoint #>> '{verified,at}')::float8 - %s)) WHERE id = %s",
                 (seconds, job_id))


def _written(conn: Conn, kind: str) -> int:
    sql = ("SELECT 40 - count(*) FROM rows" if kind == "delete"
           else "SELECT count(*) FROM rows WHERE data ? 'x'")
    return int(scalar(conn, sql))


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_after_submit_stops_the_job_once_its_verdict_is_a_second_old(
        conn: Conn, roles: None, change: str) -> None:
    kind, statements = CHANGES[change]
    job_id = _submit(conn, kind)
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    assert _page(conn, job_id, identity) == "more"   # first call: counts, checks
    assert _page(conn, job_id, identity) == "more"   # a page of 5 rows
    written = _written(conn, kind)
    assert written == 5
    verified = job(conn, job_id)["checkpoint"]["verified"]
    assert verified["worker"] == identity
    for statement in statements.split("; "):
        conn.execute(statement)
    _age_verdict(conn, job_id, 1.01)
    assert _page(conn, job_id, identity) == "failed"
    failed = job(conn, job_id)
    assert failed["status"] == "failed"
    assert "permission denied" in failed["error"] or "refuses target" in failed["error"]
    conn.execute("ALTER TABLE rows NO FORCE ROW LEVEL SECURITY")
    conn.execute("ALTER TABLE rows DISABLE ROW LEVEL SECURITY")
    conn.execute("DROP TRIGGER IF EXISTS h2_trg ON rows")
    assert _written(conn, kind) == written


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_attempt_starts_with_a_full_check(conn: Conn, roles: None, change: str) -> None:
    """A fresh verdict of an earlier attempt counts for nothing: a new claim
    (a retry, a resume, the next runner budget) checks in full, and now before
    it starts the attempt (pgjobs._start_attempts): the job fails at the claim,
    no new identity, and the old one's pages are lost."""
    kind, statements = CHANGES[change]
    job_id = _submit(conn, kind)
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    assert _page(conn, job_id, identity) == "more"
    assert _page(conn, job_id, identity) == "more"
    assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, identity)) is True
    for statement in statements.split("; "):
        conn.execute(statement)
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    row = conn.execute("SELECT status, error, worker FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and row[0] == "failed" and "cannot be started" in row[1], row
    assert _page(conn, job_id, identity) == "lost"
    conn.execute("DROP TRIGGER IF EXISTS h2_trg ON rows")
    assert _written(conn, kind) == 5


@pytest.mark.parametrize("verified", [
    {"worker": "someone#else", "at": "now"},
    {"worker": "mine", "at": "future"},
    {"worker": "mine", "at": "not a number"},
    {"worker": "mine", "at": None},
    {"worker": "mine"},
    "garbage",
    None,
])
def test_a_verdict_not_this_attempts_and_fresh_is_no_verdict(
        conn: Conn, roles: None, verified: Any) -> None:
    job_id = _submit(conn, "delete")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    assert _page(conn, job_id, identity) == "more"
    conn.execute(f"REVOKE DELETE ON rows FROM {ROLE}")
    now = float(scalar(conn, "SELECT extract(epoch FROM clock_timestamp())"))
    if isinstance(verified, dict):
        verified = dict(verified)
        if verified.get("worker") == "mine":
            verified["worker"] = identity
        verified["at"] = {"now": now, "future": now + 3600}.get(str(verified.get("at")),
                                                                  verified.get("at"))
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint || jsonb_build_object("
                 "'verified', %s::jsonb) WHERE id = %s", (json.dumps(verified), job_id))
    assert _page(conn, job_id, identity) == "failed"
    assert _written(conn, "delete") == 0


def test_within_the_second_the_pages_skip_both_checks(make_conn: Any, conn: Conn,
                                                      roles: None) -> None:
    """What the window buys: one full check (one walk of the target's reach,
    pgjobs._reach_roles, for both the trust check and the roles the verdict
    keeps, and pgjobs._require_submitter once), then pages without either,
    each asking only pgjobs._verdict_roles_hold. The full check used to walk
    the reach twice (pgjobs._untrusted_roles for the check, then again with
    no acting role for the roles); the next full check walks once more."""
    install_dated_page(conn)  # DDL: before the job, whose verdict holds the DDL epoch
    job_id = _submit(conn, "delete")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    tx = make_conn(autocommit=False)

    def page_in_the_window() -> str:
        """The next page, its verdict dated now in the page's own statement
        (tests.support.verdicts): inside the window however slow the machine
        (the three pages and the counts between them took over 1 s once)."""
        return str(scalar(tx, "SELECT public.dated_page(%s, %s, 0, NULL) ->> 0",
                          (job_id, identity)))

    def calls() -> dict[str, int]:
        return dict(tx.execute("""
            SELECT funcname, calls FROM pg_stat_xact_user_functions
             WHERE schemaname = 'pgjobs'
               AND funcname IN ('_reach_roles', '_untrusted_roles', '_require_submitter',
                                '_verdict_roles_hold')""").fetchall())

    def kept() -> list[int]:
        return list(scalar(tx, "SELECT checkpoint -> 'verified' -> 'roles' FROM pgjobs.jobs"
                               " WHERE id = %s", (job_id,)))

    owner = scalar(conn, "SELECT relowner::bigint FROM pg_class WHERE oid = 'rows'::regclass")
    try:
        tx.execute("SET track_functions = 'pl'")
        assert _page(tx, job_id, identity) == "more"
        assert calls() == {"_reach_roles": 1, "_require_submitter": 1}
        assert kept() == [owner]  # the verdict keeps the reach's roles
        for _ in range(3):
            assert page_in_the_window() == "more"
        assert calls() == {"_reach_roles": 1, "_require_submitter": 1,
                           "_verdict_roles_hold": 3}
        _age_verdict(tx, job_id, 1.01)
        assert _page(tx, job_id, identity) == "more"  # the next full check
        assert calls() == {"_reach_roles": 2, "_require_submitter": 2,
                           "_verdict_roles_hold": 3}
        assert kept() == [owner]
    finally:
        tx.rollback()


# --- the final check of a filtered delete: bitmap scans ----------------------------


@pytest.mark.parametrize("gin", [True, False], ids=["document index", "scope index only"])
def test_a_filtered_deletes_final_check_still_finds_rows_behind_the_cursor(
        conn: Conn, gin: bool) -> None:
    """The filtered job's final check reads the candidates an index hands it
    (bitmap scans, not the walk of the whole scope): rows that came to match
    behind the cursor are still found and deleted, whichever index serves."""
    conn.execute("""
        CREATE TABLE r (id bigint NOT NULL, table_id int NOT NULL, data jsonb NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        INSERT INTO r (id, table_id, data)
        SELECT g, 1 + g % 2, jsonb_build_object('k', g % 3) FROM generate_series(1, 600) g;
        CREATE INDEX r_scope_key ON r (table_id, id);
        SELECT pgjobs.register_target('r', 'id', 'table_id', 'created_at', 'data');
    """)
    if gin:
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        conn.execute("CREATE INDEX r_doc ON r USING gin (table_id, data jsonb_path_ops)")
    conn.execute("ANALYZE r")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('r', '1', '{\"k\": 1}', '{}', "
                          "'{\"page_size\": 25, \"strategy\": \"range\"}')")
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job_id,))
    identity = who(conn, job_id, "w")
    for _ in range(9):
        assert _page(conn, job_id, identity) == "more"
    doc = json.dumps({"k": 1})
    conn.execute("INSERT INTO r (id, table_id, data) VALUES (-5, 1, %s)", (doc,))
    conn.execute("UPDATE r SET data = %s WHERE id = 2", (doc,))  # came to match, behind
    conn.execute("UPDATE r SET id = -7, data = %s WHERE id = 598", (doc,))
    while (state := _page(conn, job_id, identity)) in ("more", "retry"):
        pass
    assert state == "done"
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done
    assert scalar(conn, "SELECT count(*) FROM r WHERE table_id = 1 AND data @> %s::jsonb",
                  (doc,)) == 0
    assert done["done"] == done["result"]["deleted"] == 100 + 2  # 598 is one of the 100
    assert scalar(conn, "SELECT count(*) FROM r WHERE table_id = 1") == 300 - 100 - 1
