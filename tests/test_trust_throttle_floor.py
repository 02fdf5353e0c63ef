"""A client's writing job may throttle itself more than the defaults in force,
never less (pgjobs._require_throttle_within; docs/operations.md "Throttling").

Found attacking as a client: a job's own throttling options won over the
defaults, so any client could submit {"max_replica_lag_bytes": 0} (turning
off the built-in 256 MB limit that protects every tenant's standby reads),
{"pause_on_autovacuum": false}, or a rate above the one an administrator set
with set_defaults. Every writing submit (delete, backfill, import) of a role
that is not an administrator now refuses a looser value with 22023 and a
hint, before anything is written; a stricter one, the default itself, or an
option no default limits is accepted; administrators are not held to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed
from tests.support.roles import drop_role, make_role, scalar_as

Conn = psycopg.Connection[Any]

SOURCE_PREFIX = "file:///srv/pgjobs-throttle"

WRITERS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{\"n\": 1}', '{}', "
              "%(options)s)",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{\"n\": 1}', "
                "'{\"label\": \"x\"}', %(options)s)",
    "import": "SELECT pgjobs.submit_import('user_table_rows', '1', "
              f"'{SOURCE_PREFIX}/a.csv', %(options)s)",
}

# (defaults an administrator stored, or {} for the built-in ones,
#  option, looser values refused, stricter or equal values accepted)
CASES = [
    ({}, "max_replica_lag_bytes", [0, 268435457, 1125899906842624], [268435456, 1048576, 1]),
    ({}, "pause_on_autovacuum", [False], [True]),
    ({"max_rows_per_second": 100}, "max_rows_per_second", [0, 101, 1000000000], [100, 1]),
    ({"max_wal_rate": 67108864}, "max_wal_rate", [0, 67108865], [67108864, 1024]),
    ({"max_replica_lag_bytes": 1048576}, "max_replica_lag_bytes", [0, 1048577, 268435456],
     [1048576]),
    ({"max_xact_age": "10 min"}, "max_xact_age", ["0", "11 min", "1 day"], ["10 min", "1 s"]),
    ({"page_delay": "200 ms"}, "page_delay", ["0", "199 ms"], ["200 ms", "1 s", "1 hour"]),
]
IDS = [f"{option}-{'stored' if stored else 'built-in'}" for stored, option, _, _ in CASES]

# Options no default limits: a client may choose any valid value.
UNLIMITED = [("max_rows_per_second", 0), ("max_wal_rate", 0), ("max_xact_age", "0"),
             ("page_delay", "0"), ("max_rows_per_second", 1000000000)]


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    seed(conn, make_rows_target(conn), 30)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (SOURCE_PREFIX,))
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}"
    client = make_role(conn, "tclient", "GRANT pgjobs_client TO {role}", grant)
    admin = make_role(conn, "tadmin", "GRANT pgjobs_admin TO {role}", grant)
    yield {"client": client, "admin": admin}
    drop_role(conn, client)
    drop_role(conn, admin)


def _submit(conn: Conn, role: str, kind: str, options: dict[str, Any]) -> int:
    return int(scalar_as(conn, role, WRITERS[kind], {"options": json.dumps(options)}))


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize(("stored", "option", "looser", "stricter"), CASES, ids=IDS)
def test_a_client_may_not_loosen_a_default(conn: Conn, roles: dict[str, str], kind: str,
                                           stored: dict[str, Any], option: str,
                                           looser: list[Any], stricter: list[Any]) -> None:
    if stored:
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(stored),))
    before = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    for value in looser:
        with pytest.raises(errors.InvalidParameterValue) as info:
            _submit(conn, roles["client"], kind, {option: value})
        assert f'"{option}"' in str(info.value)
        assert "set_defaults" in (info.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == before, "nothing is written"
    for value in stricter:
        job_id = _submit(conn, roles["client"], kind, {option: value, "on_conflict": "queue"})
        assert scalar(conn, "SELECT options -> %s FROM pgjobs.jobs WHERE id = %s",
                      (option, job_id)) == value
    for value in looser:  # an administrator is not held to it
        _submit(conn, roles["admin"], kind, {option: value, "on_conflict": "queue"})


@pytest.mark.parametrize(("option", "value"), UNLIMITED)
def test_an_option_no_default_limits_is_the_clients_choice(conn: Conn, roles: dict[str, str],
                                                           option: str, value: Any) -> None:
    job_id = _submit(conn, roles["client"], "delete", {option: value})
    assert scalar(conn, "SELECT options -> %s FROM pgjobs.jobs WHERE id = %s",
                  (option, job_id)) == value


def test_leaving_the_options_out_runs_with_the_defaults(conn: Conn,
                                                        roles: dict[str, str]) -> None:
    conn.execute("SELECT pgjobs.set_defaults('{\"max_rows_per_second\": 100, "
                 "\"pause_on_autovacuum\": true}')")
    job_id = _submit(conn, roles["client"], "backfill", {})
    options = scalar(conn, "SELECT options FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert options["max_rows_per_second"] == 100 and options["pause_on_autovacuum"] is True
