"""Retry and resume re-check the submitter's rights (the stop 21 design note).

A job acts with the rights of the role that submitted it. The engine and the
worker check them again as they run delete, backfill, export and import jobs;
custom kinds and fan-out jobs run outside them, so `pgjobs.retry` and
`pgjobs.resume` (the calls that set a job going again) check, at one place
(pgjobs._require_requeue), that the submitter still holds what the submit
needed, whoever asks: 42501 with a hint, the job left as it was. Cancel still
works. With the rights kept, or given back, both work as before."""

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
    drop_client,
    job,
    lose_right,
    people_client,
    scalar,
    submit_import,
)

Conn = psycopg.Connection[Any]

KINDS = ["delete", "backfill", "export", "import", "import_update", "custom", "fanout"]
PRIVILEGE = {"delete": "DELETE", "backfill": "UPDATE", "export": "SELECT", "import": "INSERT",
             "import_update": "UPDATE", "custom": "UPDATE", "fanout": "UPDATE"}
VERBS = ["retry", "resume"]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs client role with every privilege on `people`."""
    role = people_client(conn, "requeue")
    yield role
    drop_client(conn, role)


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    return allowed_folder(conn, tmp_path)


def submit(conn: Conn, kind: str, src: Path) -> int:
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('people', '1')"))
    if kind == "backfill":
        return int(scalar(conn, "SELECT pgjobs.submit_backfill('people', '1', '{}', %s::jsonb)",
                          (json.dumps({"name": "changed"}),)))
    if kind == "export":
        return int(scalar(conn, "SELECT pgjobs.submit_export('people', '1')"))
    if kind == "custom":
        return int(scalar(conn, "SELECT pgjobs.submit('thumbnail', 'people', '1', '{}')"))
    if kind == "fanout":
        return int(scalar(conn, "SELECT pgjobs.submit_items('thumbnail', 'people', '1', "
                                "'[{\"doc\": 1}, {\"doc\": 2}]')"))
    path = src / f"{kind}.csv"
    path.write_bytes(b"id,name\n1,changed\n" if kind == "import_update" else b"name,age\nnew,1\n")
    options = {"on_duplicate": "update"} if kind == "import_update" else {}
    return submit_import(conn, f"file://{path}", "1", options)


def stopped(conn: Conn, role: str, kind: str, verb: str, src: Path) -> int:
    """A job of `kind` submitted by `role`, left where `verb` picks it up: canceled
    (for retry) or paused (for resume), both while queued, by its submitter."""
    conn.execute(f"SET ROLE {role}")
    try:
        job_id = submit(conn, kind, src)
        control = "cancel" if verb == "retry" else "pause"
        assert scalar(conn, f"SELECT pgjobs.{control}(%s)", (job_id,)) is True
    finally:
        conn.execute("RESET ROLE")
    assert job(conn, job_id)["status"] == ("canceled" if verb == "retry" else "paused")
    return job_id


def lose(conn: Conn, role: str, kind: str, loss: str) -> None:
    lose_right(conn, role, PRIVILEGE[kind], loss)


def give_back(conn: Conn, role: str, kind: str, loss: str) -> None:
    if loss == "revoke":
        conn.execute(f"GRANT {PRIVILEGE[kind]} ON people TO {role}")
    else:
        conn.execute("DROP POLICY own ON people")
        conn.execute("ALTER TABLE people DISABLE ROW LEVEL SECURITY")


def state(conn: Conn, job_id: int) -> tuple[Any, ...]:
    """What a refused retry or resume must leave as it was: the job and its items."""
    row = job(conn, job_id)
    items = conn.execute("SELECT id, status, attempts FROM pgjobs.job_items WHERE job_id = %s "
                         "ORDER BY id", (job_id,)).fetchall()
    return (row["status"], row["attempts"], row["error"], row["updated_at"], items)


def requeue(conn: Conn, verb: str, job_id: int) -> Any:
    return scalar(conn, f"SELECT pgjobs.{verb}(%s)", (job_id,))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_right_lost_after_submit_refuses_retry_and_resume(
        conn: Conn, client: str, src: Path, kind: str, verb: str, loss: str) -> None:
    job_id = stopped(conn, client, kind, verb, src)
    before = state(conn, job_id)
    lose(conn, client, kind, loss)
    # Asked by an administrator: the job would still act with its submitter's rights.
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        requeue(conn, verb, job_id)
    diag = refused.value.diag
    done = {"retry": "retried", "resume": "resumed"}[verb]
    assert f"job {job_id} cannot be {done}" in (diag.message_primary or "")
    assert client in (diag.message_primary or "")
    assert diag.message_hint and client in diag.message_hint
    assert state(conn, job_id) == before
    if loss in ("drop_role", "recreated"):  # no grant gives the submitter back
        return
    give_back(conn, client, kind, loss)
    assert requeue(conn, verb, job_id) is True
    assert job(conn, job_id)["status"] == "queued"


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_submitter_itself_is_refused_and_may_still_cancel(
        conn: Conn, client: str, src: Path, kind: str, verb: str) -> None:
    job_id = stopped(conn, client, kind, verb, src)
    lose(conn, client, kind, "revoke")
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        requeue(conn, verb, job_id)
    if verb == "resume":  # a paused job can still be ended; a canceled one has ended
        assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    conn.execute("RESET ROLE")
    assert job(conn, job_id)["status"] == "canceled"


@pytest.mark.parametrize("asker", ["submitter", "admin"])
@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("kind", KINDS)
def test_rights_kept_retry_and_resume_as_before(
        conn: Conn, client: str, src: Path, kind: str, verb: str, asker: str) -> None:
    job_id = stopped(conn, client, kind, verb, src)
    if asker == "submitter":
        conn.execute(f"SET ROLE {client}")
    assert requeue(conn, verb, job_id) is True
    conn.execute("RESET ROLE")
    row = job(conn, job_id)
    assert row["status"] == "queued"
    if kind == "fanout" and verb == "retry":  # its canceled items queued again
        assert scalar(conn, "SELECT array_agg(DISTINCT status) FROM pgjobs.job_items "
                            "WHERE job_id = %s", (job_id,)) == ["queued"]


def test_a_target_made_untrusted_refuses_retry(conn: Conn, client: str, src: Path) -> None:
    """The submit's other condition: a registered target pgjobs still trusts."""
    job_id = stopped(conn, client, "custom", "retry", src)
    untrusted = f"requeue_owner_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {untrusted} NOLOGIN")
    try:
        conn.execute(f"ALTER TABLE people OWNER TO {untrusted}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            requeue(conn, "retry", job_id)
        assert job(conn, job_id)["status"] == "canceled"
    finally:
        conn.execute("ALTER TABLE people OWNER TO CURRENT_USER")
        conn.execute(f"DROP ROLE {untrusted}")
    assert requeue(conn, "retry", job_id) is True


def test_resume_withdrawing_a_pending_pause_is_checked_too(conn: Conn, client: str,
                                                           src: Path) -> None:
    """A running custom job with a pause pending: resume lets it run on, so it checks."""
    conn.execute(f"SET ROLE {client}")
    job_id = submit(conn, "custom", src)
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT * FROM pgjobs.claim(ARRAY['thumbnail'], 'w')").fetchall()
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,)) is True
    assert job(conn, job_id)["pause_requested_at"] is not None
    lose(conn, client, "custom", "revoke")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        requeue(conn, "resume", job_id)
    assert job(conn, job_id)["pause_requested_at"] is not None
    give_back(conn, client, "custom", "revoke")
    assert requeue(conn, "resume", job_id) is True
    assert job(conn, job_id)["pause_requested_at"] is None
