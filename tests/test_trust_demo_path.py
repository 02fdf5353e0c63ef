"""`pgjobs demo` runs as whoever may create its schema (often a superuser) on
any database it is pointed at (`--dsn`). Its sessions kept the login's
search_path (`"$user", public`), so its fill and its counts took a function or
operator that a role with CREATE on public had planted there as a better match
than pg_catalog's (`'row ' || i` takes `||(text, integer)`; `table_id = $1`
with an untyped parameter takes `=(integer, text)`), and ran it with the
demo's rights. Every session of the demo now pins `pg_catalog, pg_temp`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from tests.support.databases import empty_database

# (operator, left, right, result, the real thing): better matches than
# pg_catalog's for the demo's own statements, on the login's path.
PLANTED = [
    ("||", "text", "integer", "text", "a OPERATOR(pg_catalog.||) b::text"),
    ("=", "integer", "text", "boolean", "a OPERATOR(pg_catalog.=) b::integer"),
]


def _plant(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE public.hijacks (what text, by_role text)")
    conn.execute("GRANT INSERT ON public.hijacks TO PUBLIC")
    if not conn.execute("SELECT FROM pg_roles WHERE rolname = 'mallory'").fetchall():
        conn.execute("CREATE ROLE mallory NOSUPERUSER")
    conn.execute("ALTER ROLE mallory NOSUPERUSER")
    conn.execute("GRANT CREATE, USAGE ON SCHEMA public TO mallory")
    conn.execute("SET ROLE mallory")
    for n, (op, left, right, result, real) in enumerate(PLANTED):
        conn.execute(f"""
CREATE FUNCTION public.demo_shadow_{n}(a {left}, b {right}) RETURNS {result}
LANGUAGE plpgsql AS $b$
BEGIN
    INSERT INTO public.hijacks VALUES ('{op}({left}, {right})', current_user);
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN {real};
END $b$""")
        conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = public.demo_shadow_{n})")
    conn.execute("RESET ROLE")


def test_the_demo_resolves_nothing_on_its_login_path(cluster_url: str, tmp_path: Path) -> None:
    from pgjobs.cli.demo import run_demo

    with empty_database(cluster_url, "demo_path") as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        _plant(conn)
        # The login's path is the server's default: public is on it.
        assert "public" in str(conn.execute("SHOW search_path").fetchone())
        outcomes = run_demo(dsn, 1000, f"file://{tmp_path}",
                            console=Console(file=io.StringIO(), width=120))
        assert [o.status for o in outcomes] == ["succeeded"] * 4
        assert conn.execute("SELECT what, by_role FROM public.hijacks").fetchall() == []
        assert conn.execute("SELECT rolsuper FROM pg_roles "
                            "WHERE rolname = 'mallory'").fetchone() == (False,)
