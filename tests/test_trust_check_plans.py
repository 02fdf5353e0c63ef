"""The trust and registration checks plan their catalog lookups once per
session (issue 11: a submit's and a job's first call's fixed costs).

Found profiling a submit of a small filtered delete: `pgjobs._untrusted_roles`
took 1.2-6.7 ms a call although each of its statements runs in well under
0.2 ms. PL/pgSQL re-planned every statement on every call: a custom plan for
an array of a few OIDs looked cheaper than the generic one, so the plan cache
never kept one, and planning a dozen catalog queries was nearly all of the
check's time. The same held for `pgjobs._trust_problem` and
`pgjobs._registration_problem`, which run at every submit and (through
`pgjobs._target`) at every page. Their statements are lookups by OID in the
catalogs, so they ask for generic plans (plan_cache_mode), as claim does. The
checks themselves are unchanged: every call still reads the catalogs as they
are now (tests/test_trust_*.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, seed, submit_delete
from tests.test_claim_batch import plans_of

Conn = psycopg.Connection[Any]

CHECKS = {
    "untrusted_roles": ("SELECT count(*) FROM pgjobs._untrusted_roles(%(t)s::regclass)",
                        "pg_catalog.pg_depend"),
    "trust_problem": ("SELECT (pgjobs._trust_problem(%(t)s::regclass)).message",
                      "pg_catalog.pg_depend"),
    # The walk itself, and the check a page's full check makes with it.
    "reach_roles": ("SELECT count(*) FROM pgjobs._reach_roles(%(t)s::regclass)",
                    "pg_catalog.pg_depend"),
    "trust_verdict": ("SELECT (pgjobs._trust_verdict(%(t)s::regclass)).roles",
                      "pg_catalog.pg_depend"),
    "registration_problem": ("SELECT message FROM pgjobs._registration_problem("
                             "%(t)s::regclass, 'id', 'table_id', 'created_at', 'data')",
                             "pg_catalog.pg_attribute"),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_a_check_plans_its_catalog_lookups_once_per_session(conn: Conn, check: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    call, catalog = CHECKS[check]
    for _ in range(6):  # the session's first plans (the plan cache's custom ones)
        conn.execute(call, {"t": target.name})

    def calls(c: Conn) -> None:
        for _ in range(5):
            c.execute(call, {"t": target.name})

    assert plans_of(conn, calls, catalog) == 0


def test_a_submit_plans_no_trust_lookup_once_warm(conn: Conn) -> None:
    """Submits one after another (each its own transaction, as an application's
    pooled connection sends them) plan none of the trust check's lookups after
    the first few."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    for n in range(6):
        submit_delete(conn, target, "1", {"n": n})
    assert plans_of(conn, lambda c: [submit_delete(c, target, "1", {"n": n})
                                     for n in range(6, 10)], "pg_catalog.pg_depend") == 0


def test_a_change_between_two_checks_is_seen_by_the_second(conn: Conn) -> None:
    """Generic plans cache how to look, not what was found: a trigger function
    of another role added between two calls in one session is reported."""
    target = make_rows_target(conn)
    seed(conn, target, 30)
    call = CHECKS["untrusted_roles"][0]
    for _ in range(6):
        assert conn.execute(call, {"t": target.name}).fetchone() == (0,)
    conn.execute("CREATE ROLE plans_stranger NOLOGIN")
    try:
        conn.execute("CREATE FUNCTION public.plans_stranger_fn() RETURNS trigger "
                     "LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$")
        conn.execute("ALTER FUNCTION public.plans_stranger_fn() OWNER TO plans_stranger")
        conn.execute(f"CREATE TRIGGER plans_stranger BEFORE UPDATE ON {target.name} "
                     "FOR EACH ROW EXECUTE FUNCTION public.plans_stranger_fn()")
        roles = conn.execute(
            "SELECT role_name FROM pgjobs._untrusted_roles(%s::regclass)",
            (target.name,)).fetchall()
        assert roles == [("plans_stranger",)]
    finally:
        conn.execute(f"DROP TRIGGER IF EXISTS plans_stranger ON {target.name}")
        conn.execute("DROP FUNCTION IF EXISTS public.plans_stranger_fn()")
        conn.execute("DROP ROLE plans_stranger")
