"""The trusted world of the reach tests (tests/test_trust_ddl_fence.py,
tests/test_trust_reach_paths.py): tenant.rows with unique keys and notes set,
a table of the engine's (tenant.mine) that a rule on the target writes into on
delete and on update (so it is reached, and trusted: the engine owns it), the
client role and its code (tests/test_trust_reached_tables.py), a delete or a
backfill of one row a page, and a job started on it.

Import the module (`from tests.support import reach`): it is not re-exported
by the package, since it builds on tests/test_trust_reached_tables.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests.support.jobs import scalar, who
from tests.test_trust_reached_tables import _drop_roles, client_world

Conn = psycopg.Connection[Any]

TRUSTED = (
    "CREATE UNIQUE INDEX ON tenant.rows (id);"
    " CREATE UNIQUE INDEX ON tenant.rows (id, note);"
    " UPDATE tenant.rows SET note = 'n' || id;"
    " CREATE TABLE tenant.mine (id bigint, note text);"
    " GRANT SELECT ON tenant.mine TO PUBLIC;"
    " CREATE RULE keep_d AS ON DELETE TO tenant.rows"
    " DO ALSO INSERT INTO tenant.mine VALUES (old.id, old.note);"
    " CREATE RULE keep_u AS ON UPDATE TO tenant.rows"
    " DO ALSO INSERT INTO tenant.mine VALUES (old.id, old.note)")

KINDS = {
    "delete": "SELECT pgjobs.submit_delete('tenant.rows', '1', '{}', '{}',"
              " '{\"page_size\": 1}')",
    "backfill": "SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}',"
                " '{\"note\": \"x\"}', '{\"page_size\": 1}')",
}
"""A job of each writing kind, one row a page: a delete of scope 1, a
backfill of scope 2 setting note."""


@contextmanager
def trusted_world(conn: Conn) -> Iterator[None]:
    """The world for the block (a test's `world` fixture); its roles dropped after."""
    client_world(conn)
    conn.execute(TRUSTED)
    assert conn.execute("SELECT * FROM pgjobs._untrusted_roles('tenant.rows')").fetchall() == []
    yield
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def changed(conn: Conn, kind: str) -> int:
    """Rows the job has deleted or set so far."""
    if kind == "delete":
        return 20 - int(scalar(conn, "SELECT count(*) FROM tenant.rows WHERE scope = 1"))
    return int(scalar(conn, "SELECT count(*) FROM tenant.rows WHERE note = 'x'"))


def start_job(conn: Conn, kind: str) -> tuple[int, str]:
    """A job of `kind` submitted, claimed by worker 'w' and run page by page
    until a page has changed a row (its first call only counts the rows):
    the job's id and the claim's identity."""
    job = int(scalar(conn, KINDS[kind]))
    conn.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
    worker = who(conn, job, "w")
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job, worker)) == "more"
    return job, worker
