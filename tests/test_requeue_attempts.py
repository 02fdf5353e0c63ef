"""Every attempt re-checks the submitter's rights, not only retry and resume.

A job acts with the rights of the role that submitted it. `pgjobs.retry` and
`pgjobs.resume` check them (tests/test_requeue_privileges.py); so does every
other way a job is set going again, at the one routine that starts an
attempt (pgjobs._start_attempts, for pgjobs.claim, claim_export,
claim_import, run and run_job) and at the claim of a fan-out job's items
(pgjobs.claim_items), both through pgjobs._may_start_attempt: a job handed
back at the end of a budget, one whose lease expired, one queued again after
a retryable failure (an item after its backoff). A job whose submitter lost a
right mid-job (a REVOKE, row-level security, the role dropped) ends `failed`
at its next claim, event `failed`, the error naming the role and the hint
saying what to do, and touches no other row; one whose submitter keeps its
rights goes on as before."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import (
    LOSSES,
    allowed_folder,
    drain_notifies,
    drop_client,
    expire_lease,
    job,
    lose_right,
    people_client,
    scalar,
)
from tests.test_requeue_privileges import KINDS, PRIVILEGE, submit

Conn = psycopg.Connection[Any]

# How an attempt ends so that the job is claimed again: handed back at the end
# of a runner's budget (pgjobs.release; for a fan-out job, an item completed
# and the next one claimed), its lease expired (the worker died), a retryable
# failure (queued again after a backoff, here made due at once).
WAYS = ["budget", "lease", "retryable"]
# The claim each kind's runner makes: the engine's run loop, the worker's, an
# external worker's.
CLAIMED_BY = {"delete": ["delete", "backfill"], "backfill": ["delete", "backfill"],
              "export": ["export", "import"], "import": ["export", "import"],
              "import_update": ["export", "import"], "custom": ["thumbnail"]}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs client role with every privilege on `people`, which holds rows."""
    role = people_client(conn, "attempt")
    conn.execute("INSERT INTO people (id, tenant, name) SELECT g, 1, 'p' || g "
                 "FROM generate_series(1, 5) g")
    yield role
    drop_client(conn, role)


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    return allowed_folder(conn, tmp_path)


def submitted(conn: Conn, role: str, kind: str, src: Path) -> int:
    conn.execute(f"SET ROLE {role}")
    try:
        job_id = submit(conn, kind, src)
    finally:
        conn.execute("RESET ROLE")
    if kind in ("delete", "backfill"):  # pages of one row: the job is mid-way
        conn.execute("UPDATE pgjobs.jobs SET options = options || '{\"page_size\": 1}' "
                     "WHERE id = %s", (job_id,))
    return job_id


def claim_next(conn: Conn, kind: str, limit: int = 10) -> list[Any]:
    """What the runner of `kind` is handed next: jobs (id, worker), or items
    (id, worker) of a fan-out job."""
    if kind == "fanout":
        return conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['thumbnail'], "
                            "'w', '30 seconds', %s)", (limit,)).fetchall()
    return conn.execute("SELECT id, worker FROM pgjobs.claim(%s, 'w', '30 seconds', %s)",
                        (CLAIMED_BY[kind], limit)).fetchall()


def first_attempt(conn: Conn, kind: str, job_id: int) -> tuple[int, str]:
    """The job's first attempt, under way (a delete or backfill has done pages):
    the claimed (job or item id, claim identity)."""
    claimed = claim_next(conn, kind, 1)
    assert len(claimed) == 1, claimed
    handle, worker = claimed[0]
    if kind in ("delete", "backfill"):
        for _ in range(5):
            assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, worker)) == "more"
            if job(conn, job_id)["done"]:
                break
        assert job(conn, job_id)["done"] == 1
    return int(handle), str(worker)


def end_attempt(conn: Conn, kind: str, job_id: int, handle: int, worker: str, way: str) -> None:
    """The attempt ends `way`, leaving the job (or its next item) due for a claim."""
    if kind == "fanout":
        if way == "budget":  # the job goes on with its next item
            assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (handle, worker)) is True
        elif way == "lease":
            conn.execute("UPDATE pgjobs.job_items SET lease_expires_at = now() - interval "
                         "'1 second' WHERE id = %s", (handle,))
        else:
            assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'transient', true)",
                          (handle, worker)) is True
            conn.execute("UPDATE pgjobs.job_items SET run_at = now() WHERE id = %s", (handle,))
        return
    if way == "budget":
        assert scalar(conn, "SELECT pgjobs.release(%s, %s)", (job_id, worker)) is True
    elif way == "lease":
        expire_lease(conn, job_id)
    else:
        assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'transient', true)",
                      (job_id, worker)) is True
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))


def rows(conn: Conn) -> Any:
    return conn.execute("SELECT array_agg(p.* ORDER BY id)::text FROM people p").fetchone()


def run_on(conn: Conn, kind: str) -> list[Any]:
    """The runner of `kind` goes on: the engine's run loop for a delete or backfill
    (a claim and its pages), else the claim its worker makes."""
    if kind in ("delete", "backfill"):
        conn.execute("CALL pgjobs.run('5 seconds')")
        return []
    return claim_next(conn, kind)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_right_lost_mid_job_stops_it_at_its_next_attempt(
        conn: Conn, make_conn: Any, client: str, src: Path, kind: str, loss: str,
        way: str) -> None:
    job_id = submitted(conn, client, kind, src)
    handle, worker = first_attempt(conn, kind, job_id)
    lose_right(conn, client, PRIVILEGE[kind], loss)
    end_attempt(conn, kind, job_id, handle, worker, way)
    before = rows(conn)
    listener = make_conn()
    listener.execute("LISTEN pgjobs")

    assert run_on(conn, kind) == []

    assert rows(conn) == before  # not one more row deleted, updated or inserted
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert row["finished_at"] is not None and row["lease_expires_at"] is None
    error = row["error"] or ""
    assert f"job {job_id} cannot be started" in error
    assert client in error
    assert f"pgjobs.retry({job_id})" in error
    if loss == "revoke":
        assert PRIVILEGE[kind] in error
    elif loss == "rls":
        assert "row-level security" in error
    elif loss == "recreated":
        assert "is not the role that submitted the job" in error
    else:
        assert "does not exist" in error
    events = [e for e in drain_notifies(listener, 1.0, until=lambda e: e["event"] == "failed")
              if e["id"] == job_id]
    # (`retrying` first when the claim took back an expired lease)
    assert [e["event"] for e in events][-1:] == ["failed"] and "started" not in str(events)
    assert events[-1]["status"] == "failed"
    if kind == "fanout":  # nothing of it is left to hand out
        assert scalar(conn, "SELECT count(*) FROM pgjobs.job_items WHERE job_id = %s "
                            "AND status IN ('queued', 'running')", (job_id,)) == 0
        assert claim_next(conn, kind) == []


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("kind", KINDS)
def test_rights_kept_the_next_attempt_runs_as_before(
        conn: Conn, client: str, src: Path, kind: str, way: str) -> None:
    job_id = submitted(conn, client, kind, src)
    handle, worker = first_attempt(conn, kind, job_id)
    end_attempt(conn, kind, job_id, handle, worker, way)
    attempts = job(conn, job_id)["attempts"]
    if kind in ("delete", "backfill"):
        run_on(conn, kind)
        row = job(conn, job_id)
        assert row["status"] == "succeeded", row["error"]
        assert row["done"] == 5
        expected = 0 if kind == "delete" else 5
        assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1 AND "
                            + ("true" if kind == "delete" else "name = 'changed'")) == expected
        return
    claimed = claim_next(conn, kind)
    if kind == "fanout":  # the other item, and the first again unless it completed
        assert len(claimed) == (1 if way == "budget" else 2)
    else:
        assert len(claimed) == 1
    row = job(conn, job_id)
    assert row["status"] == "running"
    assert "cannot be started" not in (row["error"] or "")
    if kind != "fanout":
        assert claimed[0][0] == job_id and row["attempts"] == attempts + 1


def test_a_refused_job_does_not_hide_the_jobs_behind_it(conn: Conn, client: str,
                                                         src: Path) -> None:
    """The claim picks again past a job it failed: a claim of one still gets one."""
    lost = submitted(conn, client, "custom", src)
    other = int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'people', '2', '{}')"))
    lose_right(conn, client, "UPDATE", "revoke")
    assert [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.claim(ARRAY['thumbnail'], 'w')").fetchall()] == [other]
    assert job(conn, lost)["status"] == "failed"


def test_run_job_of_a_refused_job_ends_it_failed(conn: Conn, client: str, src: Path) -> None:
    job_id = submitted(conn, client, "delete", src)
    lose_right(conn, client, "DELETE", "revoke")
    before = rows(conn)
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert rows(conn) == before
    assert job(conn, job_id)["status"] == "failed"


def test_given_back_the_failed_job_is_retried_and_finishes(conn: Conn, client: str,
                                                           src: Path) -> None:
    job_id = submitted(conn, client, "backfill", src)
    handle, worker = first_attempt(conn, "backfill", job_id)
    lose_right(conn, client, "UPDATE", "revoke")
    end_attempt(conn, "backfill", job_id, handle, worker, "budget")
    run_on(conn, "backfill")
    assert job(conn, job_id)["status"] == "failed"
    conn.execute(f"GRANT UPDATE ON people TO {client}")
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (job_id,)) is True
    run_on(conn, "backfill")
    assert job(conn, job_id)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM people WHERE name = 'changed'") == 5


@pytest.mark.parametrize("kind", ["custom", "fanout"])
def test_an_external_worker_is_not_judged_as_the_engine(conn: Conn, client: str, src: Path,
                                                        kind: str) -> None:
    """Trust in a target is judged for the role pgjobs runs as (pgjobs._target): at a
    claim, the claimer, which runs the jobs pgjobs runs itself (tests/
    test_trust_owner.py). A custom kind's job or a fan-out job's items go to an
    external worker acting with its own rights, and pgjobs runs none of the
    target's code for them: such a worker (a pgjobs_admin member that does not
    own the target) claiming on a target with row-level security, registered to
    ignore it, is handed them, and the submitter's jobs are not failed (with a
    hint blaming the submitter) for the worker's rights."""
    worker = f"attempt_worker_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {worker} NOLOGIN IN ROLE pgjobs_admin")
    try:
        conn.execute("ALTER TABLE people ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY everyone ON people USING (true)")
        conn.execute("SELECT pgjobs.register_target('people', 'id', 'tenant', 'created_at', "
                     "'data', '{\"ignore_row_security\": true}')")
        job_id = submitted(conn, client, kind, src)
        conn.execute(f"SET ROLE {worker}")
        try:
            claimed = claim_next(conn, kind)
        finally:
            conn.execute("RESET ROLE")
        row = job(conn, job_id)
        assert row["status"] == "running", row["error"]
        assert len(claimed) == (2 if kind == "fanout" else 1)
        if kind == "custom":
            assert claimed[0][0] == job_id
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {worker}")


def test_jobs_share_a_check_only_when_it_reads_the_same(conn: Conn, client: str) -> None:
    """Jobs of one claim share a check only when their submitter, target, kind and
    on_duplicate are the same: told apart as values, not as one string of them. A
    role's name may hold spaces and a custom kind's payload any text, so "a", "1 b
    c" and "a 1 b", "c" must not read as one."""
    oid = int(scalar(conn, "SELECT 'people'::regclass::oid"))
    other = f"{client} {oid} thumbnail"  # the client's name and more, a role of its own
    conn.execute(f'CREATE ROLE "{other}" NOLOGIN IN ROLE pgjobs_client')
    try:
        conn.execute(f'GRANT UPDATE ON people TO "{other}"')
        conn.execute(f"SET ROLE {client}")
        kept = int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'people', '1', %s::jsonb)",
                          (json.dumps({"on_duplicate": f"{oid} thumbnail "}),)))
        conn.execute(f'SET ROLE "{other}"')
        lost = int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'people', '1', '{}')"))
        conn.execute("RESET ROLE")
        conn.execute(f'REVOKE UPDATE ON people FROM "{other}"')
        assert [r[0] for r in claim_next(conn, "custom")] == [kept]
        row = job(conn, lost)
        assert row["status"] == "failed" and "lacks UPDATE" in (row["error"] or ""), row
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f'DROP OWNED BY "{other}"')
        conn.execute(f'DROP ROLE "{other}"')


def checks(tx: Conn) -> int:
    """Submitter checks made in this transaction (calls of pgjobs._may_start_attempt)."""
    return int(scalar(tx, """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
         WHERE schemaname = 'pgjobs' AND funcname = '_may_start_attempt'"""))


def test_one_check_per_claim_never_per_page_or_item(make_conn: Any, client: str,
                                                    src: Path) -> None:
    """The check costs one call per claim: jobs of one claim with the same
    submitter, target and kind share it; a job's pages and a claim's items make
    none."""
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    tx.execute("SET track_functions = 'pl'")
    ids = [submitted(tx, client, "custom", src) for _ in range(10)]
    assert sorted(r[0] for r in claim_next(tx, "custom")) == ids
    assert checks(tx) == 1
    delete = submitted(tx, client, "delete", src)
    [(_, worker)] = claim_next(tx, "delete")
    assert checks(tx) == 2
    pages = 0
    while scalar(tx, "SELECT pgjobs._run_page(%s, %s)", (delete, worker)) == "more":
        pages += 1
    assert pages >= 5 and checks(tx) == 2
    fanout = submitted(tx, client, "fanout", src)
    assert len(claim_next(tx, "fanout")) == 2 and checks(tx) == 3
    assert claim_next(tx, "fanout") == [] and checks(tx) == 3  # nothing left to hand out
    assert job(tx, fanout)["status"] == "running"
    tx.rollback()


def test_a_fanout_job_held_elsewhere_hands_nothing_out_and_never_waits(
        conn: Conn, make_conn: Any, client: str, src: Path) -> None:
    """Two connections: while another transaction holds the fan-out job's row (a
    cancel, an item settling), a claimer that finds its submitter lost a right
    neither waits for it nor hands an item out; the next claim fails the job."""
    job_id = submitted(conn, client, "fanout", src)
    lose_right(conn, client, "UPDATE", "revoke")
    holder = make_conn(autocommit=False)
    holder.execute("SELECT 1 FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (job_id,))
    conn.execute("SET lock_timeout = '2s'")  # a wait would fail the claim below
    assert claim_next(conn, "fanout") == []
    assert job(conn, job_id)["status"] == "queued"
    holder.rollback()
    assert claim_next(conn, "fanout") == []
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT array_agg(DISTINCT status) FROM pgjobs.job_items "
                        "WHERE job_id = %s", (job_id,)) == ["canceled"]


# --- the check is a value, not a caught error -------------------------------------


def called_with_exception_blocks(tx: Conn) -> list[str]:
    """pgjobs functions called in this transaction whose body holds an exception
    block: each call of one opens (and releases) a subtransaction."""
    return [r[0] for r in tx.execute(r"""
        SELECT p.proname::text FROM pg_stat_xact_user_functions f
          JOIN pg_catalog.pg_proc p ON p.oid = f.funcid
         WHERE f.schemaname = 'pgjobs' AND f.calls > 0
           AND regexp_replace(p.prosrc, '--[^\n]*', '', 'g') ~* '\mEXCEPTION\s+WHEN\M'
         ORDER BY 1""").fetchall()]


@pytest.mark.parametrize("kind", KINDS)
def test_a_claim_that_passes_the_check_opens_no_subtransaction(
        make_conn: Any, client: str, src: Path, kind: str) -> None:
    """The claim asks pgjobs._requeue_problem, which returns the problem instead
    of raising it: a submitter who keeps its rights costs the claim no exception
    block (pgjobs._may_start_attempt caught the check's 42501 in one, and the
    check caught it in another to rewrite it: two subtransactions a claim)."""
    tx = make_conn(autocommit=False)  # one transaction: pg_stat_xact_* counts its calls
    job_id = submitted(tx, client, kind, src)
    tx.execute("SET track_functions = 'pl'")
    assert claim_next(tx, kind, 1)
    assert called_with_exception_blocks(tx) == []
    assert scalar(tx, "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                      "WHERE schemaname = 'pgjobs' AND funcname = '_requeue_problem'") == 1
    assert job(tx, job_id)["status"] == "running"
    tx.rollback()


def expected_refusal(conn: Conn, role: str, loss: str) -> tuple[str, str]:
    """What the submitter check says when `role` lost UPDATE on `people` `loss`
    (LOSSES, and "untrusted": a TRIGGER grant to it makes the target untrusted),
    the table named as the check's pinned search_path prints it."""
    if loss == "revoke":
        return (f"permission denied: role {role} lacks UPDATE on public.people",
                f"GRANT UPDATE ON public.people TO {role};")
    if loss == "rls":
        return (f"permission denied: row-level security on public.people applies to role "
                f"{role}, and pgjobs cannot act under its policies",
                "Query the table directly (its policies apply), use a role with BYPASSRLS, "
                "or, if the policies need not bind pgjobs' clients, an administrator may "
                'register the target with {"ignore_row_security": true}.')
    if loss == "drop_role":
        return (f"permission denied: role {role} does not exist (any more)",
                "Submit the job again as an existing role.")
    if loss == "recreated":
        return (f"permission denied: role {role} is not the role that submitted the job "
                "(that one was dropped or renamed, and this one took its name)",
                f"A job acts with the rights of the role that submitted it. If {role} should "
                f"run it, submit it again as {role}.")
    engine = scalar(conn, "SELECT current_user")
    return (f"pgjobs refuses target public.people: role {role} (which holds TRIGGER on "
            f"public.people) lacks the rights of role {engine}, which pgjobs runs as here",
            "Run pgjobs (own its schema and functions, run its engine) as a role with no "
            "more rights than the owners of its targets, e.g. the role that owns them, not a "
            "superuser; see docs/operations.md. SELECT * FROM pgjobs.doctor() lists every "
            "untrusted target.")


@pytest.mark.parametrize("loss", [*LOSSES, "untrusted"])
def test_a_submitter_that_lost_a_right_fails_word_for_word_as_before(
        conn: Conn, client: str, src: Path, loss: str) -> None:
    """The claim's error and retry's 42501 (message and hint) are what the raising
    check (pgjobs._require_requeue) has always said, for each way to lose a right.
    A target's trust is judged at a claim only for a job pgjobs runs itself
    (test_an_external_worker_is_not_judged_as_the_engine): a backfill there."""
    kind = "backfill" if loss == "untrusted" else "custom"
    job_id = submitted(conn, client, kind, src)
    if loss == "untrusted":
        conn.execute(f"GRANT TRIGGER ON people TO {client}")
    else:
        lose_right(conn, client, "UPDATE", loss)
    message, hint = expected_refusal(conn, client, loss)

    assert claim_next(conn, kind) == []
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert row["error"] == (
        f"job {job_id} cannot be started: {message}. {hint} The job acts with the rights "
        f"of {client}, who submitted it, so it failed instead of starting an attempt; once "
        f"they are granted back pgjobs.retry({job_id}) sets it going again, or submit it "
        "again as a role that holds them.")

    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    assert raised.value.diag.message_primary == f"job {job_id} cannot be retried: {message}"
    assert raised.value.diag.message_hint == (
        f"{hint} The job acts with the rights of {client}, who submitted it; it stays failed "
        f"(pgjobs.cancel({job_id}) ends it), or submit it again as a role that holds them.")
    assert job(conn, job_id)["status"] == "failed"


def test_a_role_created_again_under_the_name_does_not_control_the_job(
        conn: Conn, client: str, src: Path) -> None:
    """A role dropped and then created again under its name (with no rights on
    the target) is not the submitter: it does not see the old role's job
    (policy jobs_client_read), may not cancel, pause or retry it as its
    submitter could (P0002, as for any job it may not control), and the job
    does not run with its rights (LOSSES' "recreated")."""
    job_id = submitted(conn, client, "delete", src)
    conn.execute(f"DROP OWNED BY {client}")
    conn.execute(f"DROP ROLE {client}")
    conn.execute(f"CREATE ROLE {client} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"SET ROLE {client}")
    try:
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = %s", (job_id,)) == 0
        for call in ("cancel", "pause", "retry"):
            with pytest.raises(psycopg.errors.NoDataFound):
                conn.execute(f"SELECT pgjobs.{call}(%s)", (job_id,))
    finally:
        conn.execute("RESET ROLE")
    assert job(conn, job_id)["status"] == "queued"
    assert job(conn, job_id)["submitted_by_oid"] != scalar(
        conn, "SELECT oid FROM pg_roles WHERE rolname = %s", (client,))
