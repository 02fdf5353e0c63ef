"""The read path's shortcuts (issue 11) against what they replaced.

pgjobs.visible and visible_count probe pgjobs.jobs for a pending delete of
the scope before they build the mask (pgjobs._mask); the internals pass the
call pgjobs._enter checked to pgjobs._target_recent instead of reading it
back from the call stack; a page is read as to_jsonb(t.*) first. Each is
held here against its reference:

- the probe: for a delete in every status, submitted in every way (in the
  reader's own open transaction, for a later run_at, the scope spelled
  differently, another target's scope of the same value), the rows visible
  and the count are the scope's rows that the mask (pgjobs._mask, applied
  unconditionally as the old code did) lets by;
- the running call: the helpers that take it are not a client's to call,
  nor are the SECURITY DEFINER bodies with another role's name;
- the row: a role granted SELECT on some columns only reads nothing (a
  page is every column of the row); and every value whose to_jsonb could
  differ (json's duplicate keys and number forms, numeric scale, NaN,
  infinities, timestamps and intervals under the reader's DateStyle,
  IntervalStyle and TimeZone, bytea, arrays, a composite) reads as the old
  row built it (each json column through pgjobs._json_as_jsonb).

Every test here but the forged call's (whose helper signatures are new)
passes on the code before issue 11's change (b5d6e60) as well: the
shortcuts changed no answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()
READER = f"pgjobs_probe_reader_{PID}"


def _drop_role(conn: Conn) -> None:
    if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (READER,)):
        conn.execute(f"DROP OWNED BY {READER}")
        conn.execute(f"DROP ROLE {READER}")


@pytest.fixture
def admin(conn: Conn) -> Iterator[Conn]:
    _drop_role(conn)
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    for table in ("t_probe", "t_other"):
        conn.execute(f"""
            CREATE TABLE {table} (id bigint NOT NULL, scope int NOT NULL, data jsonb, note text,
                                  created_at timestamptz NOT NULL
                                      DEFAULT now() - interval '1 day');
            CREATE INDEX ON {table} (scope, id);
            INSERT INTO {table} (id, scope, data, note)
            SELECT i, 1 + i % 2, jsonb_build_object('k', i % 3), 'n' || i
              FROM generate_series(1, 60) i;
            SELECT pgjobs.register_target('{table}', 'id', 'scope', 'created_at', 'data');""")
        conn.execute(f"GRANT SELECT ON {table} TO {READER}")
    yield conn
    _drop_role(conn)


def _reference(conn: Conn, scope: int) -> list[int]:
    """The keys the old read gave: the scope's rows through pgjobs._mask,
    called whatever is pending."""
    mask = scalar(conn, "SELECT pgjobs._mask('t_probe', %s)", (str(scope),))
    return [r[0] for r in conn.execute(
        f"SELECT t.id FROM t_probe t WHERE t.scope = %s AND ({mask}) ORDER BY t.id", (scope,))]


def _read(conn: Conn, spelled: str) -> tuple[list[int], int]:
    keys = [int(r[0]) for r in conn.execute(
        "SELECT v ->> 'id' FROM pgjobs.visible('t_probe', %s, '{}', NULL, 1000) v", (spelled,))]
    return keys, int(scalar(conn, "SELECT pgjobs.visible_count('t_probe', %s)", (spelled,)))


# How the delete's job row stands when the read comes (set as the engine
# would have left it).
STATES = {
    "queued": "",
    "future_run_at": "run_at = now() + interval '1 day'",
    "running": "status = 'running', worker = 'w', lease_expires_at = now() + interval '1 h'",
    "pause_requested": ("status = 'running', worker = 'w', lease_expires_at = now() + "
                        "interval '1 h', pause_requested_at = now()"),
    "paused": "status = 'paused'",
    "retrying": "attempts = 1, error = 'boom', run_at = now() + interval '1 min'",
    "failed_half_done": "status = 'failed', finished_at = now(), attempts = 3",
    "canceled": "status = 'canceled', finished_at = now()",
    "succeeded": "status = 'succeeded', finished_at = now()",
}
SPELLINGS = ["1", "01", " 1", "+1"]


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_probe_lets_no_doomed_row_by(admin: Conn, state: str) -> None:
    for spelled in SPELLINGS:  # the delete's scope as spelled, the read's as each
        admin.execute("DELETE FROM pgjobs.jobs")
        job = scalar(admin, "SELECT pgjobs.submit_delete('t_probe', %s, '{\"k\": 1}')",
                     (spelled,))
        if STATES[state]:
            admin.execute(f"UPDATE pgjobs.jobs SET {STATES[state]} WHERE id = %s", (job,))
        expected = _reference(admin, 1)
        pending = state not in ("succeeded", "canceled", "failed_half_done")
        assert len(expected) == (20 if pending else 30)  # the k = 1 third hidden, if pending
        for read in SPELLINGS:
            assert _read(admin, read) == (expected, len(expected)), (spelled, read)
        # Scope 2, and the other target's scope of the same value: nothing hidden.
        assert _read(admin, "2")[1] == 30
        assert scalar(admin, "SELECT pgjobs.visible_count('t_other', '1')") == 30


def test_a_delete_submitted_in_the_readers_transaction_hides_at_once(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.commit()
    session = make_conn()
    with session.transaction():
        assert _read(session, "1")[1] == 30
        session.execute("SELECT pgjobs.submit_delete('t_probe', '1', '{\"k\": 2}')")
        keys, count = _read(session, "1")
        assert count == 20 and keys == _reference(session, 1)
        raise psycopg.Rollback()  # the submit undone with the transaction
    # ... and one committed by another session between two reads of this one.
    assert _read(session, "1")[1] == 30
    admin.execute("SELECT pgjobs.submit_delete('t_probe', '1', '{\"k\": 0}')")
    admin.commit()
    keys, count = _read(session, "1")
    assert count == 20 and keys == _reference(session, 1)


# The helpers that take the running call, and the bodies, each with a call
# forged for another role: not a client's to execute.
FORGED = [
    "SELECT pgjobs._target_recent('t_probe', true, ARRAY['visible', 'postgres'])",
    "SELECT pgjobs._target_recent('t_probe', true, NULL)",
    "SELECT pgjobs._require_entry('t_probe', NULL, ARRAY['visible', 'postgres'])",
    "SELECT pgjobs._require_entry('t_probe', 'SELECT', NULL)",
    "SELECT pgjobs._visible_as('postgres', 't_probe', '1', '{}', NULL, 10)",
    "SELECT pgjobs._visible_as(current_user, 't_probe', '1', '{}', NULL, 10)",
    "SELECT pgjobs._visible_count_as('postgres', 't_probe', '1', '{}')",
    "SELECT pgjobs._mask_as('postgres', 't_probe', '1')",
]


def test_a_forged_running_call_is_refused(make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.commit()
    reader = make_conn()
    reader.execute(f"SET ROLE {READER}")
    for call in FORGED:
        with pytest.raises(errors.InsufficientPrivilege), reader.transaction():
            reader.execute(call)


COLUMN_READS = [
    "SELECT count(*) FROM pgjobs.visible('t_probe', '1', '{}', NULL, 10)",
    "SELECT pgjobs.visible_count('t_probe', '1')",
    "SELECT pgjobs.mask('t_probe', '1')",
]


def test_a_role_with_some_columns_only_reads_none(
        make_conn: Callable[[], Conn], admin: Conn) -> None:
    admin.execute(f"REVOKE SELECT ON t_probe FROM {READER}")
    admin.execute(f"GRANT SELECT (id, scope, created_at, data) ON t_probe TO {READER}")
    admin.commit()
    reader = make_conn()
    reader.execute(f"SET ROLE {READER}")
    for read in COLUMN_READS:
        with pytest.raises(errors.InsufficientPrivilege) as refused, reader.transaction():
            reader.execute(read)
        assert "lacks SELECT on public.t_probe" in str(refused.value), read


# Columns whose to_jsonb text could differ from the row the old code built
# (each json column through pgjobs._json_as_jsonb, the rest as they are).
VALUES = {
    "json_dup_keys": ("json", "'{\"b\": 1, \"a\": 2, \"a\": 3}'"),
    "json_number_forms": ("json", "'[1.0, 1e2, -0, 100000000000000000000000000001]'"),
    "json_dom": ("json_dom_p", "'{\"z\": [1.50, null], \"a\": \"\\u00e9\"}'"),
    "numeric_scale": ("numeric", "1.000"),
    "numeric_nan": ("numeric", "'NaN'"),
    "huge_numeric": ("numeric", "1e300"),
    "float_inf": ("float8", "'-Infinity'"),
    "timestamptz_inf": ("timestamptz", "'infinity'"),
    "timestamptz": ("timestamptz", "'2026-01-02 03:04:05.678+05'"),
    "interval": ("interval", "'1 year 2 mons -3 days 04:05:06.7'"),
    "bytea": ("bytea", "'\\x00ff'"),
    "jsonb_array": ("jsonb[]", "ARRAY['{\"a\": 1}'::jsonb, 'null']"),
    "json_array": ("json[]", "ARRAY['{\"a\": 1, \"a\": 2}'::json]"),
    "composite": ("probe_pair", "ROW(1, '{\"k\": 1, \"k\": 2}')::probe_pair"),
}
SETTINGS = [
    "SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'; SET TimeZone = 'Asia/Kolkata'; "
    "SET extra_float_digits = 0",
    "SET DateStyle = 'German'; SET IntervalStyle = 'sql_standard'; SET TimeZone = 'UTC'",
]


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_row_reads_as_the_old_code_built_it(conn: Conn, name: str) -> None:
    column_type, literal = VALUES[name]
    conn.execute("CREATE DOMAIN json_dom_p AS json")
    conn.execute("CREATE TYPE probe_pair AS (n int, j json)")
    conn.execute(f"""
        CREATE TABLE t_val (id bigint NOT NULL, scope int NOT NULL, v {column_type},
                            j json DEFAULT '{{"x": 1, "x": 2}}',
                            created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON t_val (scope, id);
        SELECT pgjobs.register_target('t_val', 'id', 'scope', 'created_at');
        INSERT INTO t_val (id, scope, v) VALUES (1, 1, {literal}), (2, 1, NULL);""")
    value = "pgjobs._json_as_jsonb(t.v)" if column_type in ("json", "json_dom_p") else "t.v"
    if name == "jsonb_array":
        # It holds a JSON null: read as its PostgreSQL text, since JSON would
        # spell it as SQL NULL's null (docs/engine.md, pgjobs.visible).
        value = "to_jsonb(t.v::text)"
    for settings in SETTINGS:  # the reader's own: both reads run under them
        conn.execute(settings)
        old = scalar(conn, f"""
            SELECT array_agg((SELECT to_jsonb(x.*) FROM (SELECT t.id, t.scope, {value} AS v,
                                     pgjobs._json_as_jsonb(t.j) AS j, t.created_at) x)
                             ORDER BY t.id)
              FROM t_val t""")
        new = scalar(conn, "SELECT array_agg(v ORDER BY (v ->> 'id')::int) "
                           "FROM pgjobs.visible('t_val', '1', '{}', NULL, 10) v")
        assert new == old, settings
