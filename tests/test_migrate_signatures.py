"""`pgjobs migrate` over an install whose routine differs from its file in what
CREATE OR REPLACE cannot change (return type, OUT columns, an input
parameter's name, a default removed: 42P13): the routine is dropped and
created again in the functions' transaction, and ends exactly as a fresh
install's (definition, grants, owner, comment). Something depending on the old
routine refuses the migrate whole (2BP01), nothing applied."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.errors import PgjobsError
from pgjobs.migrate import REPLACED_HINT, migrate, sql_dir
from tests.support import migrate_at_once

# The catalog of every pgjobs routine as a fresh install leaves it.
CATALOG = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text,
       p.proowner::regrole::text, obj_description(p.oid, 'pg_proc')
  FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace ORDER BY 1"""

# Each installs another version of a routine, one CREATE OR REPLACE refuses.
OTHER_VERSIONS = {
    # The case met on a real install: an unreleased build's return type.
    "return type": """
        DROP FUNCTION pgjobs._client_room_as(name);
        CREATE FUNCTION pgjobs._client_room_as(p_caller name) RETURNS text
            LANGUAGE sql AS $$ SELECT 'old build' $$""",
    "input parameter name": """
        DROP FUNCTION pgjobs._backoff(integer);
        CREATE FUNCTION pgjobs._backoff(p_tries integer) RETURNS interval
            LANGUAGE sql AS $$ SELECT interval '1 second' $$""",
    "OUT columns": """
        DROP FUNCTION pgjobs._btree_opclasses(regtype);
        CREATE FUNCTION pgjobs._btree_opclasses(p_base regtype)
            RETURNS TABLE (opclass oid, family oid)
            LANGUAGE sql AS $$ SELECT 0::oid, 0::oid $$""",
    "default removed": """
        DROP FUNCTION pgjobs._array_bounds_test(text, regtype, integer);
        CREATE FUNCTION pgjobs._array_bounds_test(p_expr text, p_type regtype DEFAULT 'int4',
                                                  p_depth integer DEFAULT 1) RETURNS text
            LANGUAGE sql AS $$ SELECT 'old build' $$""",
}
CHANGED = {"return type": "pgjobs._client_room_as(name)",
           "input parameter name": "pgjobs._backoff(integer)",
           "OUT columns": "pgjobs._btree_opclasses(regtype)",
           "default removed": "pgjobs._array_bounds_test(text,regtype,integer)"}


def catalog(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CATALOG).fetchall()


def install_other_version(dsn: str, case: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(OTHER_VERSIONS[case])


@pytest.mark.parametrize("case", sorted(OTHER_VERSIONS))
def test_migrate_replaces_a_routine_whose_signature_changed(
        fresh_database: Callable[[], str], case: str) -> None:
    reference, dsn = fresh_database(), fresh_database()
    install_other_version(dsn, case)
    assert catalog(dsn) != catalog(reference)

    result = migrate(dsn)

    assert result["functions_replaced"] == [CHANGED[case]]
    assert catalog(dsn) == catalog(reference)  # definition, grants, owner, comment
    again = migrate(dsn)  # idempotent: nothing left to replace
    assert again["functions_replaced"] == []
    assert catalog(dsn) == catalog(reference)


def test_the_replaced_routine_keeps_its_owner_and_grants(
        fresh_database: Callable[[], str]) -> None:
    """As CREATE OR REPLACE would: a grant of the operator's own stays, and an
    owner other than the migrating role stays the owner."""
    dsn = fresh_database()
    suffix = uuid.uuid4().hex[:8]  # roles are the cluster's: a name of this test's own
    monitor, owner = f"monitor_{suffix}", f"owner_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {monitor} NOLOGIN")
        conn.execute(f"CREATE ROLE {owner} NOLOGIN")
        conn.execute(f"GRANT CREATE ON SCHEMA pgjobs TO {owner}")
        install_other_version(dsn, "return type")
        conn.execute(f"ALTER FUNCTION pgjobs._client_room_as(name) OWNER TO {owner}")
        conn.execute(f"GRANT EXECUTE ON FUNCTION pgjobs._client_room_as(name) TO {monitor}")
    try:
        assert migrate(dsn)["functions_replaced"] == ["pgjobs._client_room_as(name)"]
        with psycopg.connect(dsn) as conn:
            found = conn.execute("""
                SELECT p.proowner::regrole::text, p.prorettype::regtype::text,
                       has_function_privilege(%s, p.oid, 'EXECUTE'),
                       has_function_privilege('pgjobs_client', p.oid, 'EXECUTE'),
                       has_function_privilege('public', p.oid, 'EXECUTE')
                  FROM pg_proc p WHERE p.oid = 'pgjobs._client_room_as(name)'::regprocedure
                """, (monitor,)).fetchone()
        # Its owner, this version's return type, the operator's grant, the
        # version's grant to clients, none to PUBLIC.
        assert found == (owner, "jsonb[]", True, True, False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {monitor}, {owner}")
            conn.execute(f"DROP ROLE {monitor}")
            conn.execute(f"DROP ROLE {owner}")


def sql_tree_with_a_new_body(tmp_path: Path) -> Path:
    """This version's sql/, with one function file changed to a recognizable
    body: it sorts before the refused file, so it ran before the refusal."""
    root = tmp_path / "sql"
    shutil.copytree(sql_dir() / "migrations", root / "migrations")
    shutil.copytree(sql_dir() / "functions", root / "functions")
    path = root / "functions" / "_a_job.sql"
    text = path.read_text()
    assert "' job';" in text
    path.write_text(text.replace("' job';", "' job, recognizably';"))
    return root


def test_a_dependant_refuses_the_migrate_and_nothing_is_applied(
        fresh_database: Callable[[], str], tmp_path: Path) -> None:
    dsn = fresh_database()
    install_other_version(dsn, "return type")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.room_seen AS "
                     "SELECT pgjobs._client_room_as('nobody') AS room")
    before = catalog(dsn)

    with pytest.raises(PgjobsError) as raised:
        migrate(dsn, sql_tree_with_a_new_body(tmp_path))

    error = raised.value
    assert error.sqlstate == "2BP01"
    assert error.message == (
        "pgjobs migrate cannot replace pgjobs._client_room_as(name) (cannot change return "
        "type of existing function): dropping it would drop view public.room_seen; nothing was "
        "applied")
    assert error.hint == REPLACED_HINT
    assert "drop the objects named" in error.hint and "migration" in error.hint
    assert catalog(dsn) == before  # the whole functions' transaction rolled back
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT pgjobs._a_job('delete')").fetchone() == ("a delete job",)
        assert conn.execute("SELECT room FROM public.room_seen").fetchone() == ("old build",)


def test_every_kind_of_dependant_is_named(fresh_database: Callable[[], str]) -> None:
    """A column default and a policy hold the old routine as a view does."""
    dsn = fresh_database()
    install_other_version(dsn, "input parameter name")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.waits (id int, wait interval "
                     "DEFAULT pgjobs._backoff(1))")
        conn.execute("ALTER TABLE public.waits ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY short_waits ON public.waits "
                     "USING (wait < pgjobs._backoff(2))")
    with pytest.raises(PgjobsError) as raised:
        migrate(dsn)
    assert raised.value.sqlstate == "2BP01"
    assert ("dropping it would drop default value for column wait of table public.waits, "
            "policy short_waits on table public.waits; nothing was applied") in raised.value.message
    assert raised.value.hint == REPLACED_HINT


def test_two_migrates_at_once_replace_it_once(fresh_database: Callable[[], str]) -> None:
    reference, dsn = fresh_database(), fresh_database()
    install_other_version(dsn, "return type")
    results, failures = migrate_at_once(dsn)
    assert failures == []
    assert sorted(len(r["functions_replaced"]) for r in results) == [0, 1]
    assert catalog(dsn) == catalog(reference)


def test_the_command_line_names_what_it_replaced_and_what_it_refused(
        fresh_database: Callable[[], str]) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    dsn = fresh_database()
    install_other_version(dsn, "return type")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.room_seen AS "
                     "SELECT pgjobs._client_room_as('nobody') AS room")
    refused = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        "error: pgjobs migrate cannot replace pgjobs._client_room_as(name) (cannot change "
        "return type of existing function): dropping it would drop view public.room_seen; "
        f"nothing was applied [2BP01] (hint: {REPLACED_HINT})"]

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW public.room_seen")
    done = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("migrations applied: none pending; functions applied: ")
    assert done.stdout.rstrip().endswith(
        "; dropped and created again (signature changed): pgjobs._client_room_as(name)")
    again = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert "dropped and created again" not in again.stdout
