"""The trust walk follows every way a column's type is made of another.

A value of a column's type is built from its parts' input functions and
checked by their domains' CHECKs: a range's bounds by its subtype's, a
multirange's ranges by the range type's (so by its subtype's), an array's
elements, a composite's attributes, a domain's base. pgjobs casts literals
to a column's type (a backfill's set, a filter, a scope, an import's rows),
so code a role without the runner's rights put anywhere in that structure
runs as pgjobs. The walk (pgjobs._reach_roles) followed domains, arrays,
composites and ranges, but not a multirange's range type: a column of a
multirange over a role's domain was trusted.

Every shape below hides a client's domain (whose CHECK calls the client's
function) one or more steps down; each must be named by the walk and refused
by register_target (42501), the entry point every target goes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.roles import drop_role, make_role

Conn = psycopg.Connection[Any]

# The column's type, built (as the administrator) over the client's domain
# public.mal_int; each statement runs after the range adm_range exists.
SHAPES = {
    "range": ("", "public.adm_range"),
    "range_array": ("", "public.adm_range[]"),
    "multirange": ("", "public.adm_multirange"),
    "multirange_array": ("", "public.adm_multirange[]"),
    "domain_over_multirange": (
        "CREATE DOMAIN public.adm_md AS public.adm_multirange", "public.adm_md"),
    "composite_of_multirange": (
        "CREATE TYPE public.adm_pair AS (m public.adm_multirange)", "public.adm_pair"),
    "range_of_composite_of_multirange": (
        "CREATE TYPE public.adm_pair AS (m public.adm_multirange);"
        " CREATE TYPE public.adm_pr AS RANGE (subtype = public.adm_pair,"
        " multirange_type_name = adm_pmr)", "public.adm_pmr"),
}


@pytest.fixture
def mallory(conn: Conn) -> Iterator[str]:
    """A client owning domain public.mal_int (CHECK calls its function
    public.mal_chk), and the administrator's range adm_range over it."""
    role = make_role(conn, "shape_mallory", "GRANT pgjobs_client TO {role}",
                     "GRANT CREATE ON SCHEMA public TO {role}")
    try:
        conn.execute(f"SET ROLE {role}")
        conn.execute("CREATE FUNCTION public.mal_chk(integer) RETURNS boolean"
                     " LANGUAGE sql AS 'SELECT true'")
        conn.execute("CREATE DOMAIN public.mal_int AS integer CHECK (public.mal_chk(VALUE))")
        conn.execute("RESET ROLE")
        conn.execute("CREATE TYPE public.adm_range AS RANGE (subtype = public.mal_int,"
                     " multirange_type_name = adm_multirange)")
        yield role
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP TABLE IF EXISTS public.shaped")
        conn.execute("DROP TYPE IF EXISTS public.adm_range CASCADE")
        drop_role(conn, role)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_clients_domain_anywhere_in_a_columns_type_is_untrusted(
        conn: Conn, mallory: str, shape: str) -> None:
    extra, column_type = SHAPES[shape]
    if extra:
        conn.execute(extra)
    conn.execute("CREATE TABLE public.shaped (id bigint PRIMARY KEY, scope int NOT NULL,"
                 f" created_at timestamptz NOT NULL DEFAULT now(), v {column_type})")
    conn.execute("CREATE INDEX ON public.shaped (scope, id)")
    named = [r[0] for r in conn.execute(
        "SELECT role_name FROM pgjobs._untrusted_roles('public.shaped'::regclass)")]
    assert named == [mallory], shape
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        conn.execute("SELECT pgjobs.register_target('public.shaped', 'id', 'scope',"
                     " 'created_at')")
    assert mallory in str(e.value), shape
