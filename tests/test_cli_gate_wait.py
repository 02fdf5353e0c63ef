"""`pgjobs status` and `pgjobs watch` say which job a queued writer waits
behind (the gate: one writing job per (target, scope) at a time), and tell a
client only the id of a job it may see itself.

Found in the operator-safety pass: a delete queued behind another writer of
its scope showed `status: queued` and nothing else, in `status` and in
`watch`; only the in-process import said (once, without an id) that it
waits its turn. pgjobs._gate_holder names the job by the gate's own rule and
reads as the caller, so the row policy jobs_client_read decides what it may
name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import db, queries
from pgjobs.cli.main import main
from tests.support import make_rows_target, seed, submit_delete
from tests.support.cli import unset_ambient_settings
from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def gate_of(dsn: str, job_id: int) -> dict[str, Any]:
    with db.connect(dsn) as conn:
        job = db.get_job(conn, job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("first_state", ["queued", "running", "paused"])
def test_status_names_the_writer_a_job_waits_behind(conn: Conn, dsn: str,
                                                    first_state: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")
    second = submit_delete(conn, target, "1", {"n": 3})
    other_scope = submit_delete(conn, target, "2")
    if first_state == "running":
        conn.execute("UPDATE pgjobs.jobs SET status = 'running', started_at = now(), worker = 'w',"
                     " lease_expires_at = now() + interval '1 hour' WHERE id = %s", (first,))
    elif first_state == "paused":
        conn.execute("SELECT pgjobs.pause(%s)", (first,))
    job = gate_of(dsn, second)
    assert job["waits_behind"] == first
    assert f"behind job {first}" in job["waiting"], job["waiting"]
    # The first of each scope waits behind nobody.
    assert gate_of(dsn, first)["waits_behind"] is None
    assert gate_of(dsn, other_scope)["waits_behind"] is None

    result = CliRunner().invoke(main, ["--dsn", dsn, "status", str(second)])
    assert result.exit_code == 3, result.output
    assert f"waits_behind: {first}" in result.stdout
    assert f"waits its turn behind job {first}" in result.stdout
    as_json = json.loads(CliRunner().invoke(
        main, ["--dsn", dsn, "status", str(second), "--json"]).stdout)
    assert as_json["waits_behind"] == first


def test_a_running_writer_is_named_before_one_queued_ahead(conn: Conn, dsn: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")
    retried = submit_delete(conn, target, "1", {"n": 1})
    waiting = submit_delete(conn, target, "1", {"n": 2})
    conn.execute("UPDATE pgjobs.jobs SET status = 'running', started_at = now(), worker = 'w',"
                 " lease_expires_at = now() + interval '1 hour' WHERE id = %s", (retried,))
    assert gate_of(dsn, waiting)["waits_behind"] == retried
    assert gate_of(dsn, first)["waits_behind"] == retried


def test_watch_says_which_job_it_waits_behind(conn: Conn, dsn: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")
    second = submit_delete(conn, target, "1", {"n": 3})
    result = CliRunner().invoke(main, ["--dsn", dsn, "watch", str(second), "--timeout", "2s",
                                       "--no-progress"])
    assert result.exit_code == 3, result.output
    plain = CliRunner().invoke(main, ["--dsn", dsn, "watch", str(second), "--timeout", "2s",
                                      "--json"])
    events = [json.loads(line) for line in plain.stdout.splitlines() if line.strip()]
    assert any(f"behind job {first}" in (e.get("note") or "") for e in events), plain.stdout


def test_a_client_is_not_told_the_id_of_a_job_it_may_not_see(conn: Conn) -> None:
    """The writer ahead is another role's, on a target this client no longer
    may read (its SELECT revoked after it submitted): the policy shows it its
    own job only, and status names no other."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")  # the session's own role: an admin
    client = make_role(conn, "gatewait", "GRANT pgjobs_client TO {role}",
                       f"GRANT SELECT, DELETE ON {target.name} TO {{role}}")
    get_job = f"SELECT waits_behind, waiting FROM ({queries.GET_JOB}) g"
    try:
        conn.execute(f"SET ROLE {client}")
        second = submit_delete(conn, target, "1", {"n": 3})
        assert conn.execute(get_job, {"id": second}).fetchone() == (
            first, AnyWith(f"behind job {first}"))
        conn.execute("RESET ROLE")
        conn.execute(f"REVOKE SELECT ON {target.name} FROM {client}")
        conn.execute(f"SET ROLE {client}")
        assert conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE id = %s",
                            (first,)).fetchone() == (0,)
        row = conn.execute(get_job, {"id": second}).fetchone()
        assert row is not None and row[0] is None, row
        assert str(first) not in (row[1] or ""), row
    finally:
        drop_role(conn, client)


class AnyWith(str):
    """Equal to any text that holds it."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__str__(self) in other

    __hash__ = str.__hash__


@pytest.mark.parametrize("ahead", [
    "SET status = 'queued'",                                        # due: holds
    "SET run_at = now() + interval '1 day'",                        # not due, never started
    "SET run_at = now() + interval '1 day', started_at = now()",    # started, backing off
    "SET status = 'paused'",
    "SET status = 'running', worker = 'w', started_at = now(),"
    " lease_expires_at = now() + interval '1 hour'",
    "SET kind = 'import', run_at = now() - interval '1 hour'",      # unclaimed for long
    "SET kind = 'import', run_at = now() - interval '1 minute'",    # maybe being claimed
    "SET status = 'succeeded', finished_at = now()",
    "SET status = 'canceled', finished_at = now()",
])
def test_the_job_named_is_the_gates_own_answer(conn: Conn, ahead: str) -> None:
    """pgjobs._gate_holder names a job exactly when the gate
    (pgjobs._writer_may_start) holds the writer behind it."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    first = submit_delete(conn, target, "1")
    second = submit_delete(conn, target, "1", {"n": 3})
    conn.execute(f"UPDATE pgjobs.jobs {ahead} WHERE id = %s", (first,))
    row = conn.execute("""
        SELECT pgjobs._writer_may_start(target, scope, coalesce(gate_order, id)),
               pgjobs._gate_holder(target, scope, coalesce(gate_order, id))
          FROM pgjobs.jobs WHERE id = %s""", (second,)).fetchone()
    assert row is not None
    may_start, holder = row
    assert holder == (None if may_start else first), (may_start, holder)


FUNCTIONS = Path(__file__).resolve().parent.parent / "sql" / "functions"


@pytest.mark.parametrize("function", ["_writer_may_start", "_gate_holder"])
def test_the_gate_and_the_job_named_are_compiled_from_one_rule(conn: Conn,
                                                                function: str) -> None:
    """The rule is written once (pgjobs._gate_clause) and compiled verbatim into
    both functions on every migrate: a copy edited in one of them alone (the
    two were kept in step by a "change both together" comment) fails here."""
    rule = conn.execute("SELECT pgjobs._gate_clause()").fetchone()
    assert rule is not None and "w.writes" in rule[0]
    body = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regproc",
                        (f"pgjobs.{function}",)).fetchone()
    assert body is not None and rule[0] in body[0], function


@pytest.mark.parametrize("piece", [
    "now() - interval '10 minutes'",              # an import holds for 10 minutes due
    "w.started_at IS NOT NULL",                   # a started writer keeps its place
    "coalesce(w.gate_order, w.id) < p_place",     # the queue order
])
def test_no_other_function_restates_the_gate(piece: str) -> None:
    """The pieces of the gate's rule appear in sql/functions only in its one
    definition (sql/functions/_gate_clause.sql)."""
    holders = sorted(path.name for path in FUNCTIONS.glob("*.sql")
                     if piece in path.read_text(encoding="utf-8"))
    assert holders == ["_gate_clause.sql"], holders
