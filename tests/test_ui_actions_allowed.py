"""The dashboard offers a job's actions (cancel, pause, resume, retry) only
to a role that may use them: it offered every action a job's status takes to
any role that could see the job, and a role that may read a table but not
delete from it was answered 403 at the click. It now asks the database, once
for a page of jobs (pgjobs.controllable, in the list's one statement;
once for a job's own page or row), through the rule the four actions check
(pgjobs._controlled_job; pgjobs._control_allowed is its form that does not
raise).

The rule's two forms are held to one answer: for every role made here (the
submitter, readers and writers of the target, column grants, another
tenant's pgjobs.allowed_scopes, an administrator with and without it,
row-level security, no grant) and every job (each built-in kind, a custom
kind, one submitted by a reader, one on a table under row-level security),
pgjobs.controllable names the job exactly when the action itself gets past
its check of the caller (a refusal of the job's state, 55000, is past it),
for each of the four actions. Over HTTP, the list, a job's page and its row
show a role only the buttons it may use; a browser test is in
test_ui_browser.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import queries
from tests.support import make_rows_target, scalar
from tests.support.roles import drop_role, function_calls_as, make_role
from tests.support.ui import request, scoped_login, serving

Conn = psycopg.Connection[Any]
ACTIONS = ("cancel", "pause", "resume", "retry")
PID = os.getpid()
ROWS = "user_table_rows"
CONFINED = "confined_rows"  # row-level security on: no client acts there


@pytest.fixture
def world(conn: Conn) -> Iterator[tuple[dict[str, tuple[str, str | None]], list[int]]]:
    """Roles (name, pgjobs.allowed_scopes or None) and jobs of every sort."""
    make_rows_target(conn, ROWS)
    make_rows_target(conn, CONFINED)
    conn.execute(f"ALTER TABLE {CONFINED} ENABLE ROW LEVEL SECURITY")
    columns = "id, table_id, n, label, data, created_at"
    made = {
        "writer": make_role(conn, "writer", "GRANT pgjobs_client TO {role}",
                            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {ROWS} TO {{role}}"),
        "reader": make_role(conn, "reader", "GRANT pgjobs_client TO {role}",
                            f"GRANT SELECT ON {ROWS}, {CONFINED} TO {{role}}"),
        "deleter": make_role(conn, "deleter", "GRANT pgjobs_client TO {role}",
                             f"GRANT SELECT, DELETE ON {ROWS}, {CONFINED} TO {{role}}"),
        "columns": make_role(conn, "columns", "GRANT pgjobs_client TO {role}",
                             f"GRANT SELECT ({columns}), UPDATE ON {ROWS} TO {{role}}"),
        "nobody": make_role(conn, "nobody", "GRANT pgjobs_client TO {role}"),
        "admin": make_role(conn, "admin", "GRANT pgjobs_admin TO {role}"),
    }
    roles: dict[str, tuple[str, str | None]] = {
        name: (role, None) for name, role in made.items()}
    roles["writer, another tenant"] = (made["writer"], "2")
    roles["writer, its tenant"] = (made["writer"], "01")
    roles["admin, another tenant"] = (made["admin"], "2")

    def as_role(role: str, sql: str) -> int:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {role}")
            return int(scalar(conn, sql))

    jobs = [as_role(made["writer"], f"SELECT pgjobs.submit_delete('{ROWS}', '1')"),
            as_role(made["writer"], f"SELECT pgjobs.submit_backfill('{ROWS}', '1', '{{}}', "
                                    "'{\"n\": 1}')"),
            as_role(made["writer"], f"SELECT pgjobs.submit_export('{ROWS}', '1')"),
            as_role(made["writer"], f"SELECT pgjobs.submit('custom', '{ROWS}', '1')"),
            as_role(made["reader"], f"SELECT pgjobs.submit_export('{ROWS}', '1')"),
            int(scalar(conn, f"SELECT pgjobs.submit_delete('{CONFINED}', '1')"))]
    # A failed one (retry's state), a paused one (resume's).
    conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now() "
                 "WHERE id = %s", (jobs[1],))
    scalar(conn, "SELECT pgjobs.pause(%s)", (jobs[3],))
    try:
        yield roles, jobs
    finally:
        for role in made.values():
            drop_role(conn, role)


def answers(conn: Conn, role: str, scopes: str | None, jobs: list[int],
            action: str) -> tuple[set[int], set[int]]:
    """(the jobs pgjobs.controllable names, those the action got past its
    check of the caller with), as ``role`` with ``scopes``; nothing kept."""
    passed = set()
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {role}")
        if scopes is not None:
            conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, true)", (scopes,))
        named = set(scalar(conn, "SELECT pgjobs.controllable(%s::bigint[])", (jobs,)))
        for job in jobs:
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(f"SELECT pgjobs.{action}(%s)", (job,))
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.NoDataFound):
                continue
            except psycopg.errors.ObjectNotInPrerequisiteState:
                pass  # its state: the caller was let in
            passed.add(job)
    return named, passed


@pytest.mark.parametrize("action", ACTIONS)
def test_controllable_names_exactly_the_jobs_each_action_lets_the_caller_act_on(
        conn: Conn, world: tuple[dict[str, tuple[str, str | None]], list[int]],
        action: str) -> None:
    roles, jobs = world
    wrong, allowed, refused = {}, 0, 0
    for name, (role, scopes) in roles.items():
        named, passed = answers(conn, role, scopes, jobs, action)
        if named != passed:
            wrong[name] = {"controllable": sorted(named), action: sorted(passed)}
        allowed += len(passed)
        refused += len(jobs) - len(passed)
    assert wrong == {}
    assert allowed >= 10 and refused >= 10, (allowed, refused)  # both answers were tried


def test_controllable_refuses_what_it_cannot_answer(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.controllable(NULL)")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        conn.execute("SELECT pgjobs.controllable(array(SELECT generate_series(1, 10001))"
                     "::bigint[])")
    assert scalar(conn, "SELECT pgjobs.controllable('{}')") == []
    assert scalar(conn, "SELECT pgjobs.controllable('{999999}')") == []


def buttons(html: str, job: int) -> set[str]:
    return {action for action in ACTIONS
            if f'data-action="{action}" data-id="{job}"' in html}


def test_a_role_is_offered_only_the_actions_it_may_use(conn: Conn, dsn: str) -> None:
    """A reader of the table sees a delete (a writer's) with no button, and
    its own export with cancel and pause: on the list, the job's page and its
    row (what the page's script fetches); the 403 it would have had stands."""
    make_rows_target(conn, ROWS)
    writer = make_role(conn, "writer", "GRANT pgjobs_client TO {role}",
                       f"GRANT SELECT, DELETE ON {ROWS} TO {{role}}")
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {writer}")
            delete = int(scalar(conn, f"SELECT pgjobs.submit_delete('{ROWS}', '1')"))
        with scoped_login(conn, dsn, "reader", f"GRANT SELECT ON {ROWS} TO {{role}}",
                          "") as login:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE pgjobs_ui_reader_{PID}")  # scoped_login's
                export = int(scalar(conn, f"SELECT pgjobs.submit_export('{ROWS}', '1')"))
            with serving(login) as base:
                for path in ("/", "/?scope=01", f"/jobs/{delete}", f"/jobs/{delete}/row"):
                    html = request(base, "GET", path)[2].decode()
                    assert f"job-{delete}" in html and buttons(html, delete) == set(), path
                for path in ("/", f"/jobs/{export}", f"/jobs/{export}/row"):
                    html = request(base, "GET", path)[2].decode()
                    assert buttons(html, export) == {"cancel", "pause"}, path
                status = request(base, "POST", f"/api/jobs/{delete}/cancel",
                                 headers={"X-Pgjobs-Action": "1"})[0]
                assert status == 403
            # The administrator's dashboard offers both.
            with serving(dsn) as base:
                html = request(base, "GET", "/")[2].decode()
                assert buttons(html, delete) == buttons(html, export) == {"cancel", "pause"}
    finally:
        drop_role(conn, writer)


def test_the_list_asks_once_for_its_page_of_jobs(conn: Conn) -> None:
    """pgjobs.controllable runs once in the list's statement, whatever the
    number of jobs on the page."""
    make_rows_target(conn, ROWS)
    for _ in range(30):
        scalar(conn, f"SELECT pgjobs.submit('custom', '{ROWS}', '1')")
    params = {"before": None, "kind": None, "status": None, "target": None, "scope": None,
              "limit": 51}
    listing = psycopg.ClientCursor(conn).mogrify(queries.UI_JOBS, params)
    admin = str(scalar(conn, "SELECT current_user::text"))
    calls = function_calls_as(conn, admin, listing)
    assert calls.get("controllable") == 1 and calls.get("_controllable_as") == 1, calls
    assert calls.get("_control_allowed") == 30, calls
