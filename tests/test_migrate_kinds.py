"""`pgjobs migrate` over an install whose routine differs from its file in
anything CREATE OR REPLACE refuses to change, taken as one class
(pgjobs.migrate.REFUSALS): a function that became a procedure or the reverse,
an aggregate or a window function of the same signature (42809, "cannot
change routine kind"), SETOF or not, INOUT columns, whether a procedure has
output parameters (42P13), and an old
signature the file drops installed as the other kind (42809, "... is not a
function"). Each case installs the old shape in a fresh database, owned by a
role of its own, granted to pgjobs_client and an operator's role, commented;
migrate drops and creates it again with this version's shape, and it keeps
its owner, the operator's grant and comment (a comment of the file's own
wins). tests/test_migrate_signatures.py covers stop 60's cases (return type,
OUT columns, an input parameter's name, a default removed); a trigger
function's return type is a return type (42P13, the same path)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from pgjobs.errors import PgjobsError
from pgjobs.migrate import REPLACED_HINT, migrate
from tests.support.jobs import expire_lease, job
from tests.support.targets import (
    cutoff_of,
    job_rows,
    make_rows_target,
    seed,
    snapshot,
    submit_delete,
)


@dataclass(frozen=True)
class Shape:
    routine: str  # as regprocedure prints it, the same before and after
    old: str  # SQL that installs the old shape in place of this version's


# Each installs another version of a routine, one CREATE OR REPLACE refuses.
SHAPES = {
    "function that became a procedure": Shape("pgjobs.run_job(bigint)", """
        DROP PROCEDURE pgjobs.run_job(bigint);
        CREATE FUNCTION pgjobs.run_job(p_id bigint) RETURNS void
            LANGUAGE sql AS $$ SELECT $$"""),
    "procedure that became a function": Shape("pgjobs.stats()", """
        DROP FUNCTION pgjobs.stats();
        CREATE PROCEDURE pgjobs.stats() LANGUAGE sql AS $$ SELECT $$"""),
    "aggregate of the same signature": Shape("pgjobs._backoff(integer)", """
        DROP FUNCTION pgjobs._backoff(integer);
        CREATE AGGREGATE pgjobs._backoff(integer) (SFUNC = int4pl, STYPE = integer)"""),
    "window function of the same signature": Shape("pgjobs._client_room_as(name)", """
        DROP FUNCTION pgjobs._client_room_as(name);
        CREATE FUNCTION pgjobs._client_room_as(p_caller name) RETURNS jsonb[] WINDOW
            LANGUAGE sql AS $$ SELECT NULL::jsonb[] $$"""),
    "SETOF where the file returns one value": Shape("pgjobs._backoff(integer)", """
        DROP FUNCTION pgjobs._backoff(integer);
        CREATE FUNCTION pgjobs._backoff(p_attempts integer) RETURNS SETOF interval
            LANGUAGE sql AS $$ SELECT interval '1 second' $$"""),
    "INOUT parameter": Shape("pgjobs._backoff(integer)", """
        DROP FUNCTION pgjobs._backoff(integer);
        CREATE FUNCTION pgjobs._backoff(INOUT p_attempts integer)
            LANGUAGE sql AS $$ SELECT 1 $$"""),
    "procedure with an output parameter": Shape(
        "pgjobs._run_claimed(bigint,text,timestamp with time zone)", """
        DROP PROCEDURE pgjobs._run_claimed(bigint, text, timestamptz);
        CREATE PROCEDURE pgjobs._run_claimed(p_id bigint, p_worker text, p_deadline timestamptz,
                                             OUT p_pages integer)
            LANGUAGE sql AS $$ SELECT 0 $$"""),
}

# The catalog of every pgjobs routine and trigger as a fresh install leaves
# them: one routine's owner, grants and comment are compared apart.
ROUTINES = """
SELECT p.oid::regprocedure::text, p.prokind, pg_get_function_result(p.oid),
       pg_get_function_arguments(p.oid), p.prosrc,
       CASE WHEN p.oid = to_regprocedure(%(changed)s) THEN NULL ELSE p.proacl::text END,
       CASE WHEN p.oid = to_regprocedure(%(changed)s) THEN NULL ELSE p.proowner::regrole::text END,
       CASE WHEN p.oid = to_regprocedure(%(changed)s) THEN NULL
            ELSE obj_description(p.oid, 'pg_proc') END
  FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace
UNION ALL
SELECT t.tgname, NULL, t.tgrelid::regclass::text, t.tgfoid::regprocedure::text, NULL, NULL,
       NULL, NULL
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'pgjobs'::regnamespace AND NOT t.tgisinternal
 ORDER BY 1"""
KEPT = """
SELECT p.proowner::regrole::text, has_function_privilege(%(monitor)s, p.oid, 'EXECUTE'),
       has_function_privilege('pgjobs_client', p.oid, 'EXECUTE'),
       has_function_privilege('public', p.oid, 'EXECUTE'), obj_description(p.oid, 'pg_proc')
  FROM pg_proc p WHERE p.oid = to_regprocedure(%(changed)s)"""
NOTE = "the operator's note"
NOTHING = "pgjobs.nothing()"  # no routine's owner, grants or comment set apart


def routines(dsn: str, changed: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(ROUTINES, {"changed": changed}).fetchall()


@dataclass(frozen=True)
class Roles:
    monitor: str
    owner: str
    databases: list[str]  # where they own or were granted something


@pytest.fixture
def roles(cluster_url: str) -> Iterator[Roles]:
    """Two roles of this test's own (roles are the cluster's): an operator's
    role granted the routine, and the routine's owner."""
    suffix = uuid.uuid4().hex[:8]
    made = Roles(f"monitor_{suffix}", f"owner_{suffix}", [])
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {made.monitor} NOLOGIN")
        conn.execute(f"CREATE ROLE {made.owner} NOLOGIN")
    yield made
    for dsn in made.databases:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {made.monitor}, {made.owner} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {made.monitor}, {made.owner}")
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {made.monitor}")
        conn.execute(f"DROP ROLE {made.owner}")


def install_old_shape(dsn: str, shape: Shape, roles: Roles) -> None:
    """The old shape, owned by roles.owner, granted to pgjobs_client and
    roles.monitor, with a comment of the operator's."""
    roles.databases.append(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"GRANT CREATE ON SCHEMA pgjobs TO {roles.owner}")
        conn.execute(shape.old)
        conn.execute(f"ALTER ROUTINE {shape.routine} OWNER TO {roles.owner}")
        conn.execute(f"GRANT EXECUTE ON ROUTINE {shape.routine} TO pgjobs_client, {roles.monitor}")
        quoted = NOTE.replace("'", "''")
        conn.execute(f"COMMENT ON ROUTINE {shape.routine} IS '{quoted}'")


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_migrate_replaces_a_routine_create_or_replace_refuses(
        fresh_database: Callable[[], str], roles: Roles, case: str) -> None:
    shape = SHAPES[case]
    reference, dsn = fresh_database(), fresh_database()
    install_old_shape(dsn, shape, roles)
    assert routines(dsn, shape.routine) != routines(reference, shape.routine)

    assert migrate(dsn)["functions_replaced"] == [shape.routine]

    # This version's shape (kind, result, arguments, body) and every other
    # routine and trigger as a fresh install's ...
    assert routines(dsn, shape.routine) == routines(reference, shape.routine)
    with psycopg.connect(reference) as conn:
        fresh = conn.execute(KEPT, {"monitor": roles.monitor, "changed": shape.routine}).fetchone()
    assert fresh is not None
    with psycopg.connect(dsn) as conn:
        kept = conn.execute(KEPT, {"monitor": roles.monitor, "changed": shape.routine}).fetchone()
    # ... its owner, the operator's grant, this version's grant to clients,
    # none to PUBLIC, and its comment (the file's, when it has one).
    assert kept == (roles.owner, True, fresh[2], False, fresh[4] or NOTE)
    assert migrate(dsn)["functions_replaced"] == []  # idempotent
    assert routines(dsn, shape.routine) == routines(reference, shape.routine)


def test_an_old_signature_installed_as_the_other_kind_is_dropped(
        fresh_database: Callable[[], str]) -> None:
    """_fail_attempt's file drops its four-argument signature with DROP
    FUNCTION IF EXISTS: one installed as a procedure (42809, "... is not a
    function") goes as a function would, and is not created again."""
    reference, dsn = fresh_database(), fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE PROCEDURE pgjobs._fail_attempt(bigint, text, text, text) "
                     "LANGUAGE sql AS $$ SELECT $$")

    assert migrate(dsn)["functions_replaced"] == []

    assert routines(dsn, NOTHING) == routines(reference, NOTHING)


def test_a_dependant_of_a_routine_of_another_kind_refuses_the_migrate(
        fresh_database: Callable[[], str]) -> None:
    """A view on the old aggregate holds it as one on a function whose
    return type changed does (2BP01): nothing is applied."""
    dsn = fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHAPES["aggregate of the same signature"].old)
        conn.execute("CREATE VIEW public.waits AS SELECT pgjobs._backoff(n) AS total "
                     "FROM generate_series(1, 3) n")
    before = routines(dsn, NOTHING)

    with pytest.raises(PgjobsError) as raised:
        migrate(dsn)

    assert raised.value.sqlstate == "2BP01"
    assert raised.value.message == (
        "pgjobs migrate cannot replace pgjobs._backoff(integer) (cannot change routine kind): "
        "dropping it would drop view public.waits; nothing was applied")
    assert raised.value.hint == REPLACED_HINT
    assert routines(dsn, NOTHING) == before
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT total FROM public.waits").fetchone() == (6,)


def test_a_delete_in_flight_finishes_after_its_page_loop_changed_kind(
        fresh_database: Callable[[], str]) -> None:
    """The page loop pgjobs.run and run_job call, installed as a function: a
    delete three pages in, its runner gone, finishes exactly once migrate made
    the loop a procedure again."""
    dsn = fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = make_rows_target(conn)
        seed(conn, target, 300)
        before = snapshot(conn, target)
        job_id = submit_delete(conn, target, "1", options={"page_size": 20})
        runner = conn.execute("SELECT worker FROM pgjobs._claim_id(%s, 'old-runner')",
                              (job_id,)).fetchone()
        assert runner is not None
        for _ in range(3):
            page = conn.execute("SELECT pgjobs._run_page(%s, %s)", (job_id, runner[0])).fetchone()
            assert page == ("more",)
        left = len(set(snapshot(conn, target)) & job_rows(
            before, "1", cutoff_of(conn, job_id), lambda row: True))
        assert left > 0  # the job is half done
        expire_lease(conn, job_id)
        conn.execute("""
            DROP PROCEDURE pgjobs._run_claimed(bigint, text, timestamptz);
            CREATE FUNCTION pgjobs._run_claimed(p_id bigint, p_worker text,
                                                p_deadline timestamptz) RETURNS void
                LANGUAGE sql AS $$ SELECT $$""")

    assert migrate(dsn)["functions_replaced"] == [
        "pgjobs._run_claimed(bigint,text,timestamp with time zone)"]

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
        assert job(conn, job_id)["status"] == "succeeded"
        deleted = job_rows(before, "1", cutoff_of(conn, job_id), lambda row: True)
        assert set(snapshot(conn, target)) == set(before) - deleted
