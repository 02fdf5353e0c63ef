"""An entry of pgjobs.allowed_scopes names one tenant in every session
(adversarial pass h3).

Scopes and the list are both parsed in the request's session. For a scope
column of a date, time or interval type, an entry the application wrote
without an offset (`2030-01-02 00:00`), in a day/month order (`01/02/2030`)
or relative (`today`) named whatever tenant the session's TimeZone,
DateStyle or IntervalStyle made of it, and a request that may choose its
TimeZone (PostgREST's `Prefer: timezone`) reached another tenant's rows with
the list its tier set. Such an entry allows nothing now, in every consumer;
an entry in ISO form with its offset allows its tenant in any session.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, scalar

Conn = psycopg.Connection[Any]

# (scope type, the tenants as stored, entries that depend on the session,
#  settings that move them onto the second tenant, an entry that does not)
CASES: list[tuple[str, list[str], list[str], dict[str, str], str]] = [
    ("timestamptz", ["2030-01-02 00:00:00+00", "2030-01-01 15:00:00+00"],
     ["2030-01-02 00:00", "2030-01-02", "01/02/2030 00:00"], {"TimeZone": "Asia/Tokyo"},
     "2030-01-02 00:00:00+00"),
    ("timestamp", ["2030-01-02 00:00:00", "2030-02-01 00:00:00"],
     ["01/02/2030"], {"DateStyle": "ISO, DMY"}, "2030-01-02 00:00"),
    ("date", ["2030-01-02", "2030-02-01"], ["01/02/2030", "1/2/2030"],
     {"DateStyle": "ISO, DMY"}, "2030-01-02"),
    ("timetz", ["00:00:00+00", "00:00:00+09"], ["00:00"], {"TimeZone": "Asia/Tokyo"},
     "00:00:00+00"),
]
IDS = [c[0] for c in CASES]

CALLS = [
    "SELECT pgjobs.submit_delete('ts', %(scope)s, '{}')",
    "SELECT pgjobs.mask('ts', %(scope)s)",
    "SELECT count(*) FROM pgjobs.visible('ts', %(scope)s)",
    "SELECT pgjobs.visible_count('ts', %(scope)s)",
    "SELECT pgjobs.channel('ts', %(scope)s)",
]


def _set(conn: Conn, name: str, value: str) -> None:
    conn.execute("SELECT set_config(%s, %s, false)", (name, value))


@pytest.mark.parametrize(("type_", "tenants", "loose", "moved", "fixed"), CASES, ids=IDS)
def test_an_entry_that_depends_on_the_session_allows_nothing(
        conn: Conn, type_: str, tenants: list[str], loose: list[str], moved: dict[str, str],
        fixed: str) -> None:
    _set(conn, "TimeZone", "UTC")
    _set(conn, "DateStyle", "ISO, MDY")
    build_target(conn, "ts", f"""id bigint NOT NULL, s {type_} NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute("INSERT INTO ts (id, s) VALUES (1, %s), (2, %s)", tenants)
    jobs = [scalar(conn, "SELECT pgjobs.submit('custom', 'ts', %s)", (t,)) for t in tenants]
    for name, value in moved.items():  # the request picks its own settings
        _set(conn, name, value)
    for entry in loose:
        _set(conn, "pgjobs.allowed_scopes", entry)
        for scope in [entry, tenants[0], tenants[1]]:
            for call in CALLS:
                with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(call, {"scope": scope})
        for job_id in jobs:
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    # Written with its offset in ISO form, the entry is its tenant anywhere.
    _set(conn, "pgjobs.allowed_scopes", fixed)
    assert scalar(conn, "SELECT pgjobs.visible_count('ts', %s)", (tenants[0],)) == 1
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.visible_count('ts', %s)", (tenants[1],))
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (jobs[0],)) is True
    assert scalar(conn, "SELECT count(*) FROM ts") == 2


@pytest.mark.parametrize(("type_", "tenants", "loose", "moved", "fixed"), CASES, ids=IDS)
def test_a_client_sees_no_job_through_an_entry_that_depends_on_the_session(
        conn: Conn, type_: str, tenants: list[str], loose: list[str], moved: dict[str, str],
        fixed: str) -> None:
    _set(conn, "TimeZone", "UTC")
    _set(conn, "DateStyle", "ISO, MDY")
    build_target(conn, "ts", f"""id bigint NOT NULL, s {type_} NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    for t in tenants:
        conn.execute("SELECT pgjobs.submit('custom', 'ts', %s)", (t,))
    conn.execute("CREATE ROLE pgjobs_test_h3tz NOLOGIN IN ROLE pgjobs_client")
    try:
        conn.execute("GRANT SELECT ON ts TO pgjobs_test_h3tz")
        conn.execute("SET ROLE pgjobs_test_h3tz")
        for name, value in moved.items():
            _set(conn, name, value)
        for entry in loose:
            _set(conn, "pgjobs.allowed_scopes", entry)
            assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0, entry
        _set(conn, "pgjobs.allowed_scopes", fixed)
        assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP OWNED BY pgjobs_test_h3tz")
        conn.execute("DROP ROLE pgjobs_test_h3tz")
