"""Cross-role controls, as a class (the adversarial pass of the last round
found them holding and wrote no tests; h174 keeps them as guards).

A pgjobs_client confined by pgjobs.allowed_scopes to tenant 1 (`client`)
meets tenant 2's jobs: of every kind, submitted by an administrator, by
tenant 2's own client (`other`) and by `client` itself before it was
confined, each queued, paused and canceled, some with excluded keys or
items. The confinement reaches the session every way an application may
set it: SET LOCAL, SET, set_config, the connection's startup options, and
a list naming tenant 1 oddly among entries that allow nothing.

For every function of the contract that takes a job id (cancel, pause,
resume, retry, add_items) the job is an unknown id: P0002, the message and
hint an unknown id gets, whatever the job's state (a 55000 for a state the
verb does not apply to would tell the job exists), and nothing changes. The
reads (pgjobs.jobs, pgjobs.job_items, pgjobs.job_exclusions, pgjobs.stats())
show none of it. Every function that takes a scope or a target refuses
tenant 2 (42501). And the confined client still controls its own tenant's
job the same way, so the refusals are the confinement's and not a blanket
one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import CLIENT_SOURCE_PREFIX, CONTROL_VERBS, acting_as

Conn = psycopg.Connection[Any]
UNKNOWN = 987654321
T = "user_table_rows"

SUBMITS = {
    "delete": f"SELECT pgjobs.submit_delete('{T}', %(scope)s, '{{\"n\": 1}}', "
              "(SELECT array_agg(id::text) FROM user_table_rows WHERE table_id = 2 "
              "AND n = 1 LIMIT 1))",
    "backfill": f"SELECT pgjobs.submit_backfill('{T}', %(scope)s, '{{\"n\": 1}}', "
                "'{\"label\": \"x\"}')",
    "export": f"SELECT pgjobs.submit_export('{T}', %(scope)s)",
    "import": f"SELECT pgjobs.submit_import('{T}', %(scope)s, '{CLIENT_SOURCE_PREFIX}/a.csv')",
    "custom": f"SELECT pgjobs.submit('resize', '{T}', %(scope)s)",
    "items": f"SELECT pgjobs.submit_items('resize', '{T}', %(scope)s, "
             "'[{\"a\": 1}, {\"a\": 2}]')",
}
VERBS = CONTROL_VERBS
SCOPE_CALLS = {
    "preview": f"SELECT pgjobs.preview('{T}', %(scope)s)",
    "mask": f"SELECT pgjobs.mask('{T}', %(scope)s)",
    "visible": f"SELECT count(*) FROM pgjobs.visible('{T}', %(scope)s)",
    "visible_count": f"SELECT pgjobs.visible_count('{T}', %(scope)s)",
    "channel": f"SELECT pgjobs.channel('{T}', %(scope)s)",
} | {f"submit {kind}": sql for kind, sql in SUBMITS.items()}

# How the confinement reaches the session: a runner of one statement as the
# client, confined. Each list names tenant 1 (and only tenant 1) of the
# integer scope.
TO_STATE = {"paused": "pause", "canceled": "cancel"}
DELIVERIES = ["set local", "set session", "set_config", "startup options", "odd list"]


@pytest.fixture
def world(conn: Conn, client_roles: dict[str, str]) -> dict[str, Any]:
    """Tenant 2's jobs, every kind, three submitters, three states; one job
    of tenant 1 submitted by the client, for the control case."""
    client = client_roles["client"]
    jobs: dict[str, int] = {}
    for kind, sql in SUBMITS.items():
        for owner in ("admin", "other", "client"):
            for state in ("queued", "paused", "canceled"):
                role = None if owner == "admin" else client_roles[owner]
                with acting_as(conn, role):
                    job_id = int(scalar(conn, sql, {"scope": "02"}))
                if state != "queued":
                    scalar(conn, f"SELECT pgjobs.{TO_STATE[state]}(%s)", (job_id,))
                jobs[f"{kind} by {owner}, {state}"] = job_id
    states = dict(conn.execute("SELECT id, status FROM pgjobs.jobs").fetchall())
    assert {states[j] for j in jobs.values()} == {"queued", "paused", "canceled"}
    with acting_as(conn, client):
        own = int(scalar(conn, SUBMITS["items"], {"scope": "1"}))
    return {"client": client, "jobs": jobs, "own": own}


@pytest.fixture
def confined(conn: Conn, make_conn: Callable[..., Conn], world: dict[str, Any],
             request: pytest.FixtureRequest) -> Iterator[Callable[[str, Any], Any]]:
    """Run one statement as the confined client (the delivery under test);
    returns its first row's first value, or raises as psycopg raised."""
    delivery, client = request.param, world["client"]
    session = make_conn(options=f"-c role={client} -c pgjobs.allowed_scopes=1"
                        ) if delivery == "startup options" else conn

    def run(sql: str, params: Any) -> Any:
        if delivery == "startup options":
            return session.execute(sql, params).fetchone()[0]  # type: ignore[index]
        if delivery == "set session":
            with acting_as(session, client, "1"):
                return session.execute(sql, params).fetchone()[0]  # type: ignore[index]
        with session.transaction():
            session.execute(f"SET LOCAL ROLE {client}")
            if delivery == "set local":
                session.execute("SET LOCAL pgjobs.allowed_scopes = '1'")
            elif delivery == "set_config":
                session.execute("SELECT set_config('pgjobs.allowed_scopes', '1', true)")
            elif delivery == "odd list":
                session.execute("SELECT set_config('pgjobs.allowed_scopes', "
                                "' 01 ,1.0, [2], 2x,\"\uff12\",, ', true)")
            return session.execute(sql, params).fetchone()[0]  # type: ignore[index]

    assert run("SELECT current_user", None) == client
    assert run("SELECT count(*) FROM pgjobs.jobs WHERE scope = '2'", None) == 0
    assert run("SELECT count(*) FROM pgjobs.jobs WHERE id = %s", (world["own"],)) == 1
    yield run


def _failure(run: Callable[[str, Any], Any], sql: str, params: Any) -> psycopg.Error | str:
    try:
        return f"accepted: {run(sql, params)!r}"
    except psycopg.Error as exc:
        return exc


def _state(conn: Conn, job_id: int) -> Any:
    return (conn.execute("SELECT to_jsonb(j) - 'target_columns' FROM pgjobs.jobs j "
                         "WHERE id = %s", (job_id,)).fetchone(),
            conn.execute("SELECT count(*), coalesce(jsonb_agg(status ORDER BY id), '[]') "
                         "FROM pgjobs.job_items WHERE job_id = %s", (job_id,)).fetchone())


def _same_as_unknown(refused: psycopg.Error | str, unknown: psycopg.Error | str,
                     job_id: int) -> bool:
    if not isinstance(refused, psycopg.Error) or not isinstance(unknown, psycopg.Error):
        return False
    return (refused.sqlstate == unknown.sqlstate == "P0002"
            and (refused.diag.message_primary or "").replace(str(job_id), "N")
            == (unknown.diag.message_primary or "").replace(str(UNKNOWN), "N")
            and refused.diag.message_hint == unknown.diag.message_hint)


@pytest.mark.parametrize("confined", DELIVERIES, indirect=True)
def test_another_tenants_jobs_and_scope_are_out_of_reach(
        conn: Conn, world: dict[str, Any], confined: Callable[[str, Any], Any]) -> None:
    wrong: dict[str, Any] = {}
    for verb, sql in VERBS.items():
        unknown = _failure(confined, sql, (UNKNOWN,))
        for name, job_id in world["jobs"].items():
            before = _state(conn, job_id)
            refused = _failure(confined, sql, (job_id,))
            if not _same_as_unknown(refused, unknown, job_id):
                wrong[f"{verb} {name}"] = str(refused)
            if _state(conn, job_id) != before:
                wrong[f"{verb} {name} changed it"] = _state(conn, job_id)
    assert wrong == {}
    _reads_and_scope_calls(conn, world, confined)
    # Its own tenant's job, the same verbs: served (the refusals above are
    # the confinement's).
    own = world["own"]
    assert confined(VERBS["add_items"], (own,)) == 1
    assert confined(VERBS["pause"], (own,)) is True
    assert confined(VERBS["resume"], (own,)) is True
    assert confined(VERBS["cancel"], (own,)) is True
    assert confined(VERBS["retry"], (own,)) is True


def _reads_and_scope_calls(conn: Conn, world: dict[str, Any],
                           confined: Callable[[str, Any], Any]) -> None:
    """The reads show none of tenant 2's jobs; every call taking a scope or
    a target refuses tenant 2, however spelled."""
    ids = list(world["jobs"].values())
    seen = {name: confined(f"SELECT count(*) FROM pgjobs.{name} WHERE {column} = ANY (%s)",
                           (ids,))
            for name, column in [("jobs", "id"), ("job_items", "job_id"),
                                 ("job_exclusions", "job_id")]}
    assert seen == {"jobs": 0, "job_items": 0, "job_exclusions": 0}
    assert confined("SELECT count(*) FROM pgjobs.jobs WHERE scope <> '1'", None) == 0
    stats = json.dumps(confined("SELECT pgjobs.stats()", None))
    for kind in ("delete", "backfill", "export", "import"):  # its own job is a resize
        assert f'"{kind}"' not in stats, stats
    wrong = {}
    for name, sql in SCOPE_CALLS.items():
        for scope in ("2", "02", " 2", "+2"):
            got = _failure(confined, sql, {"scope": scope})
            if not isinstance(got, psycopg.errors.InsufficientPrivilege):
                wrong[f"{name} {scope!r}"] = str(got)
    assert wrong == {}
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE scope = '2'") == len(ids)
