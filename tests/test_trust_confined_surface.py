"""A client confined to one tenant reaches nothing of another through the
surface grown lately (an attacker's pass, h124: every attempt below held on
main and is kept as a guard).

The attacker is a role granted only pgjobs_client, with SELECT, INSERT,
UPDATE and DELETE on the shared target, and pgjobs.allowed_scopes = '1'.
Another tenant (scope 2) has jobs: one an administrator submitted and one
the attacker itself submitted before it was confined, each a plain custom
job and a fan-out job. Tried:

* every entry point that takes a scope, on scope 2: preview, channel,
  submit_import, submit_items, submit (42501, the scope named);
* every verb that takes a job id, on each scope-2 job: pause, resume, retry,
  cancel, add_items (P0002, as for a job that does not exist);
* reading them: pgjobs.jobs, pgjobs.job_items, pgjobs.job_exclusions and
  pgjobs.stats() show none of them;
* fields that would name another scope or source from inside a payload or
  options: an import's `scope` or `columns` option, a backfill setting the
  scope or key column, pgjobs.submit of a built-in kind (or one spelled
  with other case or blanks) with a payload of its choosing, a fan-out job
  of a built-in kind (22023);
* the engine's own tables and functions: a target naming pgjobs.jobs,
  pgjobs.settings or pg_authid (42501 or 22023), set_defaults,
  rotate_channel_secret, claim_items, import_batch (42501: not granted).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, in_role, make_role

Conn = psycopg.Connection[Any]
SOURCE = "file:///srv/pgjobs-confined"


@pytest.fixture
def world(conn: Conn) -> Iterator[dict[str, Any]]:
    seed(conn, make_rows_target(conn), 30)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (SOURCE,))
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "confined", "GRANT pgjobs_client TO {role}", grant)
    jobs = {
        "admin custom": scalar(conn, "SELECT pgjobs.submit('resize', 'user_table_rows', '2')"),
        "admin items": scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                    "'2', '[{\"a\": 1}]')"),
        "admin delete": scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2', "
                                     "'{\"n\": 1}', '{\"7\"}')"),
    }
    conn.execute(f"SET ROLE {client}")
    jobs["own custom"] = scalar(conn, "SELECT pgjobs.submit('resize', 'user_table_rows', '2')")
    jobs["own items"] = scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                     "'2', '[{\"a\": 1}]')")
    conn.execute("RESET ROLE")
    yield {"client": client, "jobs": jobs}
    drop_role(conn, client)


def _confined(conn: Conn, client: str, sql: str, *args: Any) -> Any:
    with in_role(conn, client, scopes="1"):
        return conn.execute(sql, args).fetchall()


SCOPE_2 = {
    "preview": "SELECT pgjobs.preview('user_table_rows', '2')",
    "channel": "SELECT pgjobs.channel('user_table_rows', '2')",
    "channel spelled 02": "SELECT pgjobs.channel('user_table_rows', '02')",
    "submit_import": f"SELECT pgjobs.submit_import('user_table_rows', '2', '{SOURCE}/a.csv')",
    "submit_items": "SELECT pgjobs.submit_items('resize', 'user_table_rows', '2', '[1]')",
    "submit": "SELECT pgjobs.submit('resize', 'user_table_rows', ' 2')",
    "visible": "SELECT pgjobs.visible('user_table_rows', '2')",
    "mask": "SELECT pgjobs.mask('user_table_rows', '+2')",
}


def _refusals(conn: Conn, client: str, calls: dict[str, str],
              error: type[psycopg.Error], *args: Any) -> dict[str, str]:
    """Each call that was not refused with `error`, and what it gave."""
    wrong = {}
    for name, sql in calls.items():
        try:
            wrong[name] = f"accepted: {_confined(conn, client, sql, *args)}"
        except error:
            continue
        except psycopg.Error as exc:
            wrong[name] = f"{exc.sqlstate}: {exc.diag.message_primary}"
    return wrong


def test_every_scope_taking_call_refuses_another_scope(conn: Conn,
                                                       world: dict[str, Any]) -> None:
    assert _refusals(conn, world["client"], SCOPE_2, errors.InsufficientPrivilege) == {}
    with pytest.raises(errors.InsufficientPrivilege, match="allowed_scopes"):
        _confined(conn, world["client"], SCOPE_2["preview"])


VERBS = {
    "pause": "SELECT pgjobs.pause(%s)",
    "resume": "SELECT pgjobs.resume(%s)",
    "retry": "SELECT pgjobs.retry(%s)",
    "cancel": "SELECT pgjobs.cancel(%s)",
    "add_items": "SELECT pgjobs.add_items(%s, '[2]')",
}


def test_another_scopes_job_is_an_unknown_id(conn: Conn, world: dict[str, Any]) -> None:
    state = "SELECT array_agg((id, status, total, updated_at)::text ORDER BY id) FROM pgjobs.jobs"
    before = scalar(conn, state)
    for which, job_id in world["jobs"].items():
        wrong = _refusals(conn, world["client"], VERBS, errors.NoDataFound, job_id)
        assert wrong == {}, which
    assert scalar(conn, state) == before
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        _confined(conn, world["client"], VERBS["pause"], world["jobs"]["own custom"])


def test_no_read_shows_another_scopes_jobs(conn: Conn, world: dict[str, Any]) -> None:
    client = world["client"]
    assert _confined(conn, client, "SELECT id FROM pgjobs.jobs") == []
    assert _confined(conn, client, "SELECT id FROM pgjobs.job_items") == []
    assert _confined(conn, client, "SELECT job_id FROM pgjobs.job_exclusions") == []
    stats = _confined(conn, client, "SELECT pgjobs.stats()")[0][0]
    assert stats["queue"] == [] and stats["oldest_queued"] is None, stats
    # Unconfined, the same role sees its own (a control: the reads work).
    conn.execute(f"SET ROLE {client}")
    try:
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") >= 2
    finally:
        conn.execute("RESET ROLE")


FORGED = {
    "import option scope": f"SELECT pgjobs.submit_import('user_table_rows', '1', "
                           f"'{SOURCE}/a.csv', '{{\"scope\": \"2\"}}')",
    "import option columns": f"SELECT pgjobs.submit_import('user_table_rows', '1', "
                             f"'{SOURCE}/a.csv', '{{\"columns\": {{\"x\": \"table_id\"}}}}')",
    "backfill sets the scope": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                               "'{\"table_id\": 2}', '{\"allow_unknown_fields\": true}')",
    "backfill sets the key": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                             "'{\"id\": 2}')",
    "submit kind import": "SELECT pgjobs.submit('import', 'user_table_rows', '1', "
                          "'{\"source\": \"file:///etc/passwd\"}')",
    "submit kind delete": "SELECT pgjobs.submit('delete', 'user_table_rows', '1', "
                          "'{\"predicate\": \"true\"}')",
    "submit kind Export": "SELECT pgjobs.submit('Export', 'user_table_rows', '1')",
    "submit kind ' delete'": "SELECT pgjobs.submit(' delete', 'user_table_rows', '1')",
    "items kind export": "SELECT pgjobs.submit_items('export', 'user_table_rows', '1', '[1]')",
    "items kind backfill": "SELECT pgjobs.submit_items('backfill', 'user_table_rows', '1', "
                           "'[1]')",
}


def test_no_field_names_another_scope_or_a_built_in_payload(
        conn: Conn, world: dict[str, Any]) -> None:
    count = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    assert _refusals(conn, world["client"], FORGED, errors.InvalidParameterValue) == {}
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == count


ENGINE = {
    "target pgjobs.jobs": "SELECT pgjobs.submit('resize', 'pgjobs.jobs', '1')",
    "target pg_authid": "SELECT pgjobs.submit('resize', 'pg_authid', '1')",
    "visible pgjobs.settings": "SELECT pgjobs.visible('pgjobs.settings', '1')",
    "set_defaults": "SELECT pgjobs.set_defaults('{\"max_item_bytes_per_job\": 2147483647}')",
    "rotate_channel_secret": "SELECT pgjobs.rotate_channel_secret()",
    "claim_items": "SELECT * FROM pgjobs.claim_items('{resize}', 'w')",
    "claim": "SELECT * FROM pgjobs.claim('{resize}', 'w')",
    "settings": "SELECT * FROM pgjobs.settings",
}


def test_the_engines_own_tables_and_functions_stay_out_of_reach(
        conn: Conn, world: dict[str, Any]) -> None:
    assert _refusals(conn, world["client"], ENGINE, errors.InsufficientPrivilege) == {}
