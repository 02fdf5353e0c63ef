"""The runner procedures never resolve a name on the caller's search_path (issue 9,
item 8).

`pgjobs.run` and `pgjobs.run_job` COMMIT, so they cannot pin `search_path`; a
function or operator found on the caller's path (pg_cron's, a client's) would
run with the caller's rights, often a superuser's. They are thin shells over
pinned functions: only schema-qualified pgjobs.* calls, qualified types,
COMMIT and IS NULL tests. `pgjobs run` also pins its session's path; the pg_cron
command cannot (see below) and names only pgjobs.*.

Two kinds of test: a static one over every routine of the schema (procedures
parsed: no unqualified call, operator or type; functions: search_path pinned),
and an attack: a role with CREATE on `public` plants shadowing functions and
operators (same signatures, and more specific overloads such as
format(text, integer, text)) in `public` and in the caller's `pg_temp`, each
recording a marker row and trying `ALTER ROLE ... SUPERUSER`; the engine then
runs under hostile paths and must trigger none of them and finish its jobs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed, submit_backfill, submit_delete

Conn = psycopg.Connection[Any]

# name, argument types, result type, what the shadow returns (the real thing, so
# that a hijacked engine would carry on unnoticed).
SHADOW_FUNCTIONS: list[tuple[str, str, str, str]] = [
    ("format", "text, integer, text", "text", "pg_catalog.format($1, $2, $3)"),
    ("format", "text, text", "text", "pg_catalog.format($1, $2)"),
    ("format", "text, text, text", "text", "pg_catalog.format($1, $2, $3)"),
    ("format", "text, bigint", "text", "pg_catalog.format($1, $2)"),
    ("format", "text", "text", "pg_catalog.format($1)"),
    ("left", "text, integer", "text", "pg_catalog.left($1, $2)"),
    ("left", "text, bigint", "text", "pg_catalog.left($1, $2::integer)"),
    ("md5", "text", "text", "pg_catalog.md5($1)"),
    ("random", "", "double precision", "pg_catalog.random()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("pg_backend_pid", "", "integer", "pg_catalog.pg_backend_pid()"),
    ("pg_sleep", "numeric", "void", "pg_catalog.pg_sleep($1::float8)"),
    ("pg_sleep", "double precision", "void", "pg_catalog.pg_sleep($1)"),
    ("set_config", "text, text, boolean", "text", "pg_catalog.set_config($1, $2, $3)"),
    ("current_setting", "text", "text", "pg_catalog.current_setting($1)"),
    ("concat_ws", "text, text, text", "text", "pg_catalog.concat_ws($1, $2, $3)"),
    ("gen_random_uuid", "", "uuid", "pg_catalog.gen_random_uuid()"),
    ("substr", "text, integer, integer", "text", "pg_catalog.substr($1, $2, $3)"),
]
# operator, left type, right type, the real operator, result type
SHADOW_OPERATORS: list[tuple[str, str, str, str]] = [
    ("=", "text", "text", "boolean"),
    ("<>", "text", "text", "boolean"),
    ("||", "text", "text", "text"),
    ("=", "bigint", "bigint", "boolean"),
    ("=", "integer", "integer", "boolean"),
    ("<>", "integer", "integer", "boolean"),
    ("+", "integer", "integer", "integer"),
    ("+", "bigint", "bigint", "bigint"),
    (">=", "timestamptz", "timestamptz", "boolean"),
    ("<", "timestamptz", "timestamptz", "boolean"),
    ("+", "timestamptz", "interval", "timestamptz"),
    ("<", "interval", "interval", "boolean"),
    (">", "interval", "interval", "boolean"),
    ("=", "text", "name", "boolean"),
    ("=", "name", "text", "boolean"),
]
HOSTILE_PATHS = ["public, pg_catalog", '"$user", public', "pg_temp, public, pg_catalog"]


def _shadow_body(what: str, returns: str) -> str:
    """A body that records the hijack, tries to make mallory superuser (it works when
    the caller is one), then returns the real thing."""
    return f"""
BEGIN
    INSERT INTO public.hijacks (what, by_role) VALUES ({_lit(what)}, current_user);
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    {returns}
END"""


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def plant(conn: Conn, schema: str) -> None:
    """Shadowing functions and operators in `schema` (created by the current role)."""
    for n, (name, args, result, real) in enumerate(SHADOW_FUNCTIONS):
        returns = f"PERFORM {real}; RETURN;" if result == "void" else f"RETURN {real};"
        conn.execute(
            f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {result} LANGUAGE plpgsql "
            f"AS $b{n}${_shadow_body(f'{schema}.{name}({args})', returns)}$b{n}$")
    for n, (op, left, right, result) in enumerate(SHADOW_OPERATORS):
        fn = f"{schema}.shadow_op_{n}"
        body = _shadow_body(f"{schema}.{op}({left}, {right})",
                            f"RETURN a OPERATOR(pg_catalog.{op}) b;")
        conn.execute(
            f"CREATE FUNCTION {fn}(a {left}, b {right}) RETURNS {result} LANGUAGE plpgsql "
            f"AS $b${body}$b$")
        conn.execute(f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = {fn})")


@pytest.fixture
def hostile(conn: Conn) -> Callable[[], list[tuple[str, str]]]:
    """Role mallory (CREATE on public, as on clusters before PostgreSQL 15) plants
    shadows in public; returns a probe listing what hijacks fired."""
    conn.execute("CREATE TABLE public.hijacks (what text, by_role text)")
    conn.execute("GRANT INSERT ON public.hijacks TO PUBLIC")
    exists = scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = 'mallory'")
    if not exists:
        conn.execute("CREATE ROLE mallory NOSUPERUSER")
    conn.execute("ALTER ROLE mallory NOSUPERUSER")
    conn.execute("GRANT CREATE, USAGE ON SCHEMA public TO mallory")
    conn.execute("SET ROLE mallory")
    plant(conn, "public")
    conn.execute("RESET ROLE")

    def probe() -> list[tuple[str, str]]:
        return [tuple(r) for r in conn.execute("SELECT what, by_role FROM public.hijacks")]

    return probe


def _jobs(conn: Conn) -> tuple[int, int]:
    t = make_rows_target(conn)
    seed(conn, t)
    delete = submit_delete(conn, t, "1", {"k": 1}, options={"page_size": 20})
    backfill = submit_backfill(conn, t, "2", {}, {"label": "filled"}, options={"page_size": 20})
    return delete, backfill


def _assert_clean(conn: Conn, probe: Callable[[], list[tuple[str, str]]]) -> None:
    conn.execute("RESET search_path")
    assert probe() == []
    assert scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") is False


def _status(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)))


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_run_and_run_job_resolve_nothing_on_a_hostile_path(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]], path: str) -> None:
    delete, backfill = _jobs(conn)
    plant(conn, "pg_temp")  # the calling session's own temporary schema too
    conn.execute(f"SET search_path = {path}")
    conn.execute("CALL pgjobs.run_job(%s)", (backfill,))
    conn.execute("CALL pgjobs.run('30 seconds')")
    # run_job of a finished job, and run with nothing to do, take their paths too.
    conn.execute("CALL pgjobs.run_job(%s)", (delete,))
    conn.execute("CALL pgjobs.run('1 second')")
    _assert_clean(conn, hostile)
    assert (_status(conn, delete), _status(conn, backfill)) == ("succeeded", "succeeded")
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 2 "
                        "AND label IS DISTINCT FROM 'filled' AND created_at < now()") == 0


def test_run_budget_errors_resolve_nothing_on_a_hostile_path(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]]) -> None:
    conn.execute("SET search_path = public, pg_catalog")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("CALL pgjobs.run('-1 second')")
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("CALL pgjobs.run_job(999999)")
    _assert_clean(conn, hostile)


@pytest.mark.parametrize("path", ["public,pg_catalog", "pg_temp,public,pg_catalog"])
def test_pgjobs_run_cli_resolves_nothing_on_a_hostile_path(
        conn: Conn, dsn: str, hostile: Callable[[], list[tuple[str, str]]], path: str) -> None:
    delete, backfill = _jobs(conn)
    env = dict(os.environ, PGOPTIONS=f"-c search_path={path}")
    out = subprocess.run(
        [sys.executable, "-m", "pgjobs.cli.main", "--dsn", dsn, "run", "--budget", "20s"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    _assert_clean(conn, hostile)
    assert (_status(conn, delete), _status(conn, backfill)) == ("succeeded", "succeeded")


def test_the_cron_commands_are_single_qualified_statements(cron_dsn: str) -> None:
    """pg_cron runs a command of several statements as one transaction in which a
    CALL is not top level (its ExecuteSqlString, and libpq's implicit block), so the
    procedure could not COMMIT: the command cannot `SET search_path` first. It is
    one statement naming only pgjobs.* (the shell resolves nothing on the path)."""
    with psycopg.connect(cron_dsn, autocommit=True) as cron:
        try:
            jobs = scalar(cron, "SELECT pgjobs.schedule()")["jobs"]
        finally:
            cron.execute("SELECT pgjobs.unschedule()")
    commands = {j["name"]: j["command"] for j in jobs}
    assert re.fullmatch(r"CALL pgjobs\.run\('[^';]*'\)", commands["pgjobs.run"])
    assert re.fullmatch(r"SELECT pgjobs\.prune\('[^';]*'\)", commands["pgjobs.prune"])


# --- static: every routine of the schema ---------------------------------------------

_OPERATOR_CHARS = re.compile(r"[+\-*/<>=~!@#%^&|`?]")
_KEYWORDS_HIDING_OPERATORS = {"in", "between", "like", "ilike", "similar", "distinct",
                              "any", "all", "some", "overlaps", "case", "foreach", "for",
                              "while", "perform", "select", "execute", "raise", "return",
                              "if", "elsif"}


def _code_of(body: str) -> str:
    """The body without comments and string literals."""
    body = re.sub(r"--[^\n]*", " ", body)
    body = re.sub(r"/\*.*?\*/", " ", body, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", " '' ", body)


def shell_violations(body: str) -> list[str]:
    """What a routine that cannot pin search_path must not contain: an unqualified
    call, an operator outside OPERATOR(pg_catalog.x), a keyword that implies one, an
    unqualified type in DECLARE."""
    code = _code_of(body)
    problems: list[str] = []
    for m in re.finditer(r"(?<![.\w])([A-Za-z_]\w*)\s*\(", code):
        problems.append(f"unqualified call or construct: {m.group(1)}(")
    for m in re.finditer(r"OPERATOR\s*\(\s*([\w.]+)\s*\)", code, flags=re.I):
        if not m.group(1).lower().startswith("pg_catalog."):
            problems.append(f"operator not in pg_catalog: {m.group(0)}")
    stripped = re.sub(r"OPERATOR\s*\([^)]*\)", " ", code, flags=re.I).replace(":=", " ")
    for m in _OPERATOR_CHARS.finditer(stripped):
        problems.append(f"operator character {m.group(0)!r} near "
                        f"{stripped[max(0, m.start() - 20):m.end() + 20]!r}")
    for word in re.findall(r"[A-Za-z_]\w*", stripped):
        if word.lower() in _KEYWORDS_HIDING_OPERATORS:
            problems.append(f"keyword {word} (implies a lookup or dynamic SQL)")
    declare = re.search(r"\bDECLARE\b(.*?)\bBEGIN\b", code, flags=re.S | re.I)
    if declare:
        for line in declare.group(1).split(";"):
            words = line.split()
            if len(words) >= 2 and "." not in words[1]:
                problems.append(f"unqualified type in DECLARE: {line.strip()}")
    return problems


def test_the_static_check_catches_the_old_bodies() -> None:
    old = """
DECLARE
    v_deadline timestamptz := clock_timestamp() + p_budget;
    v_worker text := format('run:%s', pg_catalog.pg_backend_pid());
BEGIN
    EXIT WHEN pg_catalog.clock_timestamp() >= v_deadline;
    EXIT WHEN v_state NOT IN ('more', 'retry');
    IF v_state IS DISTINCT FROM 'running' THEN RETURN; END IF;
END"""
    found = " ".join(shell_violations(old))
    for expected in ("clock_timestamp(", "format(", "'>'", "'+'", "keyword IN",
                     "keyword DISTINCT", "unqualified type in DECLARE"):
        assert expected in found, expected
    assert shell_violations("BEGIN x := a OPERATOR(public.=) b; END")
    assert not shell_violations("DECLARE v pgjobs.jobs; BEGIN v := pgjobs.f(v.id, NULL); "
                                "COMMIT; EXIT WHEN v IS NULL; END")


def test_every_procedure_is_a_thin_shell(conn: Conn) -> None:
    procedures = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosrc, p.proconfig FROM pg_proc p "
        "WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prokind = 'p'").fetchall()
    assert {p[0] for p in procedures} >= {"pgjobs.run(interval)", "pgjobs.run_job(bigint)"}
    for name, body, config in procedures:
        if config and "search_path=pg_catalog, pg_temp" in config:
            continue  # pinned: may not COMMIT, but resolves nothing on the caller's path
        assert shell_violations(body) == [], name
        # Argument types were resolved at creation; they must be the catalog's.
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, t.typnamespace::regnamespace::text FROM pg_proc p, "
        "unnest(p.proargtypes) a JOIN pg_type t ON t.oid = a "
        "WHERE p.pronamespace = 'pgjobs'::regnamespace").fetchall()
    for name, schema in rows:
        assert schema in ("pg_catalog", "pgjobs"), (name, schema)


def test_every_function_pins_its_search_path(conn: Conn) -> None:
    unpinned = [r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prokind <> 'p' "
        "AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)")]
    assert unpinned == []


# Better matches than pg_catalog's for what pgjobs' SQL text leaves to resolution:
# `x #>> '{}'` (an untyped literal) picks an operator taking text over
# pg_catalog's text[] wherever one is visible, even with pg_catalog searched first.
BETTER_MATCHES: list[tuple[str, str, str, str, str]] = [
    ("#>>", "jsonb", "text", "text", "RETURN a OPERATOR(pg_catalog.#>>) b::text[];"),
]


def plant_better_matches(conn: Conn, schema: str) -> None:
    for n, (op, left, right, result, real) in enumerate(BETTER_MATCHES):
        fn = f"{schema}.better_op_{n}"
        body = _shadow_body(f"{schema}.{op}({left}, {right})", real)
        conn.execute(f"CREATE FUNCTION {fn}(a {left}, b {right}) RETURNS {result} "
                     f"LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = {fn})")


# A document filter ($contains compiles to `(data -> 'name') #>> '{}'`), a column
# filter and a document column: the chunk's COPY carries them all.
EXPORT_FILTER = {"name": {"$contains": "n1"}, "n": {"$gte": 1}}
EXPORT_COLUMNS = ["id", "table_id", "n", "name"]


@pytest.mark.parametrize("path", [None, "public,pg_catalog"])
def test_an_export_worker_resolves_nothing_on_its_own_path(
        conn: Conn, dsn: str, local_dir: str, hostile: Callable[[], list[tuple[str, str]]],
        path: str | None) -> None:
    """The worker runs each chunk's COPY, which pgjobs.export_chunk_sql writes
    (the job's predicate, the mask, the columns), in its own session: on its
    login's search_path (PostgreSQL's default `"$user", public`, or any other).
    A role with CREATE on a schema there planted operators that the COPY picked,
    and they ran as the worker's role (pgjobs_admin, usually pgjobs' owner). The
    reader session now pins `search_path = pg_catalog, pg_temp`, as `pgjobs run`
    does."""
    from pgjobs.poller.export import Exporter

    t = make_rows_target(conn)
    seed(conn, t)
    # A column of a domain: pg_catalog has no operator of the domain itself, so
    # one taking exactly it wins wherever it is visible, first in the path or not.
    conn.execute("CREATE DOMAIN public.count_of AS integer")
    conn.execute("ALTER TABLE user_table_rows ALTER COLUMN n TYPE public.count_of")
    conn.execute("SET ROLE mallory")
    plant_better_matches(conn, "public")
    body = _shadow_body("public.>=(count_of, count_of)",
                        "RETURN a::integer OPERATOR(pg_catalog.>=) b::integer;")
    conn.execute("CREATE FUNCTION public.count_ge(a public.count_of, b public.count_of) "
                 f"RETURNS boolean LANGUAGE plpgsql AS $b${body}$b$")
    conn.execute("CREATE OPERATOR public.>= (LEFTARG = public.count_of, "
                 "RIGHTARG = public.count_of, FUNCTION = public.count_ge)")
    conn.execute("RESET ROLE")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1', %s, %s)",
                        (json.dumps(EXPORT_FILTER),
                         json.dumps({"columns": EXPORT_COLUMNS, "format": "jsonl"}))))
    # The pending delete's mask is in every chunk too.
    submit_delete(conn, t, "1", {"k": 1})
    # None: the server's default path, `"$user", public`.
    worker_dsn = dsn if path is None else psycopg.conninfo.make_conninfo(
        dsn, options=f"-c search_path={path}")
    [(_, worker)] = conn.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'w', "
                                 "'30 seconds')", (job_id,)).fetchall()
    outcome = Exporter(worker_dsn, job_id, worker, local_dir).run()
    assert outcome.status == "succeeded", outcome
    _assert_clean(conn, hostile)
    result = scalar(conn, "SELECT result FROM pgjobs.jobs WHERE id = %s", (job_id,))
    with open(result["uri"].removeprefix("file://"), encoding="utf-8") as f:
        got = [json.loads(line) for line in f]
    expected = conn.execute(
        "SELECT id, table_id, n, data ->> 'name' FROM user_table_rows "
        "WHERE table_id = 1 AND data ->> 'name' ILIKE '%%n1%%' AND n >= 1 "
        "AND created_at <= now() AND (data ->> 'k')::int <> 1 ORDER BY id").fetchall()
    assert expected
    assert [(r["id"], r["table_id"], r["n"], r["name"]) for r in got] == \
        [tuple(r) for r in expected]


def test_a_mask_read_on_the_default_path_resolves_nothing_elsewhere(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]]) -> None:
    """pgjobs.mask() is SQL text for the client's own queries, read on the
    client's path: with pg_catalog searched first (the default), every operator
    it uses must be an exact match there, never left to an untyped literal that a
    better overload elsewhere would take."""
    t = make_rows_target(conn)
    seed(conn, t)
    conn.execute("SET ROLE mallory")
    plant_better_matches(conn, "public")
    conn.execute("RESET ROLE")
    submit_delete(conn, t, "1", EXPORT_FILTER)
    mask = scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')")
    assert "#>>" in mask
    conn.execute('SET search_path = "$user", public')
    visible = scalar(conn, f"SELECT count(*) FROM user_table_rows WHERE table_id = 1 AND {mask}")
    _assert_clean(conn, hostile)
    assert visible == scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')")


# Exact matches for what the Python side's own statements (pgjobs/queries.py)
# compare, where pg_catalog has none: an untyped literal beside a jsonb is read
# as jsonb first, a name beside a name as a name; and non-variadic overloads of
# the catalog functions the SQL reference reads.
PYTHON_SIDE_OPERATORS: list[tuple[str, str, str, str, str]] = [
    ("->", "jsonb", "jsonb", "jsonb",
     "RETURN a OPERATOR(pg_catalog.->) (b OPERATOR(pg_catalog.#>>) '{}'::text[]);"),
    ("->>", "jsonb", "jsonb", "text",
     "RETURN a OPERATOR(pg_catalog.->>) (b OPERATOR(pg_catalog.#>>) '{}'::text[]);"),
    ("?", "jsonb", "jsonb", "boolean",
     "RETURN a OPERATOR(pg_catalog.?) (b OPERATOR(pg_catalog.#>>) '{}'::text[]);"),
    ("!~", "name", "name", "boolean", "RETURN a::text OPERATOR(pg_catalog.!~) b::text;"),
]
PYTHON_SIDE_FUNCTIONS: list[tuple[str, str, str, str]] = [
    ("format", "text, text, name, text, text", "text",
     "pg_catalog.format($1, $2, $3, $4, $5)"),
    ("obj_description", "oid, text", "text", "pg_catalog.obj_description($1, $2::name)"),
    ("has_function_privilege", "text, oid, text", "boolean",
     "pg_catalog.has_function_privilege($1::name, $2, $3)"),
]


def test_the_python_sides_statements_resolve_nothing_on_the_default_path(
        conn: Conn, make_conn: Callable[..., Conn],
        hostile: Callable[[], list[tuple[str, str]]]) -> None:
    """The CLI's sessions (`pgjobs status`, `watch`, `list`) and the worker's
    control session keep the login's search_path, `"$user", public` by default:
    a target name given on the command line resolves there. Their own
    statements must then resolve nothing a role with CREATE on public planted
    there. Before, `checkpoint -> 'throttled'` (GET_JOB: every status and
    watch) and `checkpoint ->> 'bytes'` (EXPORT_PARTS: every parallel export's
    join) took a planted `->(jsonb, jsonb)`, whose operand 'throttled' is no
    JSON: both failed for every user, and the SQL reference ran the planted
    `!~(name, name)`, format, obj_description and has_function_privilege as
    whoever generated it."""
    from psycopg.rows import dict_row

    from pgjobs import db, queries, reference

    conn.execute("SET ROLE mallory")
    for n, (op, left, right, result, real) in enumerate(PYTHON_SIDE_OPERATORS):
        fn = f"public.python_side_op_{n}"
        body = _shadow_body(f"public.{op}({left}, {right})", real)
        conn.execute(f"CREATE FUNCTION {fn}(a {left}, b {right}) RETURNS {result} "
                     f"LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = {fn})")
    for n, (name, args, result, real) in enumerate(PYTHON_SIDE_FUNCTIONS):
        conn.execute(
            f"CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE plpgsql "
            f"AS $b{n}${_shadow_body(f'public.{name}({args})', f'RETURN {real};')}$b{n}$")
    conn.execute("RESET ROLE")
    delete, _ = _jobs(conn)
    session = make_conn(row_factory=dict_row)  # the server's default path
    assert "public" in str(db.scalar(session, "SHOW search_path"))

    job = db.get_job(session, delete)
    assert job is not None and job["status"] == "queued" and job["throttled"] is None
    assert [r["id"] for r in db.rows(session, queries.LIST_JOBS,
                                     {"status": "queued", "limit": 10})] != []
    assert db.rows(session, queries.EXPORT_PARTS, {"id": delete}) == []
    assert db.rows(session, queries.EXPORT_ACTIVE_JOBS, {"ids": [delete]}) == [{"id": delete}]
    db.rows(session, queries.HELD_ELSEWHERE)
    for items in (queries.JOB_ITEMS_PAGE, queries.JOB_ITEM_COUNTS,
                  queries.JOB_FIRST_FAILED_ITEM):  # `pgjobs items`, a fan-out `status`
        assert db.rows(session, items, {"id": delete, "status": "failed", "after": 0,
                                        "limit": 10}) == []
    assert "## `pgjobs.submit_delete`" in reference.render(session)
    _assert_clean(conn, hostile)


@pytest.mark.parametrize("path", [None, "public,pg_catalog"])
def test_migrate_resolves_nothing_on_its_own_path(
        conn: Conn, dsn: str, hostile: Callable[[], list[tuple[str, str]]],
        path: str | None) -> None:
    """`pgjobs migrate` runs as pgjobs' owner (often with CREATEROLE), and the
    DO blocks of its function files (zz_grants.sql, _writes.sql) call
    format(): on the login's path a format(text, regprocedure) or
    format(text, text) in `public` is a better match than pg_catalog's
    format(text, VARIADIC "any"), so a role with CREATE there ran its code as
    the owner at every migrate. The migrate session now pins
    `search_path = pg_catalog, pg_temp` (yoyo's already reads `pgjobs`)."""
    from pgjobs.migrate import migrate

    conn.execute("SET ROLE mallory")
    body = _shadow_body("public.format(text, regprocedure)",
                        "RETURN pg_catalog.format(f, p);")
    conn.execute("CREATE FUNCTION public.format(f text, p regprocedure) RETURNS text "
                 f"LANGUAGE plpgsql AS $b${body}$b$")
    conn.execute("RESET ROLE")
    # None: the server's default path, `"$user", public`.
    migrate(dsn if path is None else psycopg.conninfo.make_conninfo(
        dsn, options=f"-c search_path={path}"))
    _assert_clean(conn, hostile)
    assert scalar(conn, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgjobs'::regnamespace "
                        "AND proname = 'submit_delete'") == 1


# Domains over built-in types, and the operators mallory plants for them: pg_catalog
# holds none of a domain's own, so on ANY path one of these is the exact match an
# unqualified operator takes. And the built-in operators and functions the generated
# text uses, for a path that searches public before pg_catalog.
DOMAINS = {"id": ("key_of", "bigint"), "table_id": ("scope_of", "integer"),
           "n": ("count_of", "integer"), "label": ("label_of", "text"),
           "created_at": ("at_of", "timestamptz")}
DOMAIN_OPERATORS = ["=", "<>", "<", "<=", ">", ">="]
BUILT_IN_OPERATORS: list[tuple[str, str, str, str]] = [
    ("->", "jsonb", "text", "jsonb"), ("=", "jsonb", "jsonb", "boolean"),
    ("@>", "jsonb", "jsonb", "boolean"), (">", "jsonb", "jsonb", "boolean"),
    ("#>>", "jsonb", "text[]", "text"), ("~~*", "text", "text", "boolean"),
    ("&", "bigint", "bigint", "bigint"), (">", "bigint", "integer", "boolean"),
    ("=", "xid", "xid", "boolean"), ("<=", "timestamptz", "timestamptz", "boolean"),
]


def plant_domain_operators(conn: Conn) -> None:
    n = 0
    for domain, base in DOMAINS.values():
        for op in DOMAIN_OPERATORS:
            n += 1
            body = _shadow_body(f"public.{op}({domain}, {domain})",
                                f"RETURN a::{base} OPERATOR(pg_catalog.{op}) b::{base};")
            conn.execute(f"CREATE FUNCTION public.domain_op_{n}(a public.{domain}, "
                         f"b public.{domain}) RETURNS boolean LANGUAGE plpgsql "
                         f"AS $b${body}$b$")
            conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = public.{domain}, "
                         f"RIGHTARG = public.{domain}, FUNCTION = public.domain_op_{n})")
    for k, (op, left, right, result) in enumerate(BUILT_IN_OPERATORS):
        body = _shadow_body(f"public.{op}({left}, {right})",
                            f"RETURN a OPERATOR(pg_catalog.{op}) b;")
        conn.execute(f"CREATE FUNCTION public.built_in_op_{k}(a {left}, b {right}) "
                     f"RETURNS {result} LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = public.built_in_op_{k})")
    body = _shadow_body("public.jsonb_typeof(jsonb)", "RETURN pg_catalog.jsonb_typeof(j);")
    conn.execute("CREATE FUNCTION public.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql "
                 f"AS $b${body}$b$")


def _deleted_by(row: tuple[Any, ...], doomed_cutoff: Any) -> bool:
    """The two pending deletes' row sets (below), in Python: the reference."""
    key, n, label, data, created_at = row
    if created_at > doomed_cutoff:
        return False
    first = (n >= 5 or n == 3 or (n != 2 and n < 1) or "7" in label
             or label in ("label 10", "label 13")
             or (isinstance(data["nest"]["a"], int) and data["nest"]["a"] > 1)
             or "n2" in data["name"] or data["k"] in (1, 2, 3, 5, 6, 7, 8, 9, 10))
    second = n == 6 or (data["k"] == 0 and n == 1)
    return (first and key not in (3, 15)) or (second and key > 150)


@pytest.mark.parametrize("path", [None, "public, pg_catalog"])
def test_a_mask_on_domain_columns_resolves_only_pg_catalog_operators(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]], path: str | None) -> None:
    """pgjobs.mask() is SQL text a client splices into its own query, on its own
    search_path. Its operators were unqualified: on a column of a domain (key,
    scope, created_at or a filtered column) an operator of that domain in a
    writable schema was the exact match on any path, and with public searched
    first every built-in one was too; the planted function ran as the reader.
    Every operator and function of the generated text is pg_catalog's now,
    named so (OPERATOR(pg_catalog.=)), which still resolves a domain to its base
    type's operator: the rows are those plain SQL gives."""
    t = make_rows_target(conn, register=False)
    seed(conn, t, 600)
    conn.execute("ALTER TABLE user_table_rows ALTER COLUMN id DROP IDENTITY")
    for column, (domain, base) in DOMAINS.items():
        conn.execute(f"CREATE DOMAIN public.{domain} AS {base}")
        conn.execute(f"ALTER TABLE user_table_rows ALTER COLUMN {column} TYPE public.{domain}")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', "
                 "'created_at', 'data')")
    conn.execute("SET ROLE mallory")
    plant_domain_operators(conn)
    plant_better_matches(conn, "public")
    conn.execute("RESET ROLE")
    submit_delete(conn, t, "1", {"$or": [
        {"n": {"$gte": 5}}, {"n": 3}, {"n": {"$ne": 2, "$lt": 1}},
        {"label": {"$contains": "7"}}, {"label": {"$in": ["label 10", "label 13"]}},
        {"nest.a": {"$gt": 1}}, {"name": {"$contains": "n2"}},
        {"k": {"$in": [1, 2, 3, 5, 6, 7, 8, 9, 10]}}]}, exclude=["3", "15"])
    # More than 100 excluded keys: the probe of pgjobs.job_exclusions (keys of
    # every scope, and of rows the first delete dooms: allow_unknown_keys).
    submit_delete(conn, t, "1", {"$or": [{"n": 6}, {"k": 0, "n": 1}]},
                  exclude=[str(k) for k in range(1, 151)],
                  options={"allow_unknown_keys": True})
    cutoff = scalar(conn, "SELECT now()")
    mask = scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')")
    conn.execute("SET search_path = " + (path or '"$user", public'))
    seen = [r[0] for r in conn.execute(
        # (The client's own part of the query is its business: qualified here.)
        f"SELECT id FROM user_table_rows WHERE table_id OPERATOR(pg_catalog.=) 1 AND {mask} "
        "ORDER BY id")]
    _assert_clean(conn, hostile)
    rows = conn.execute("SELECT id, n, label, data, created_at FROM user_table_rows "
                        "WHERE table_id = 1 ORDER BY id").fetchall()
    expected = [r[0] for r in rows if not _deleted_by(r, cutoff)]
    assert 0 < len(expected) < len(rows)
    assert seen == expected
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == len(expected)
    assert mask.count("OPERATOR(pg_catalog.") > 20


def test_a_mask_on_json_columns_names_pg_catalog_jsonb(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]]) -> None:
    """`jsonb` is no keyword: a '...'::jsonb literal in the mask (a json or
    jsonb column compared in a filter) took a domain named jsonb in a schema
    searched before pg_catalog, and its CHECK ran as the reader. The compiler
    names pg_catalog.jsonb."""
    t = make_rows_target(conn)
    conn.execute("ALTER TABLE user_table_rows ADD COLUMN meta jsonb, ADD COLUMN raw json")
    seed(conn, t, 60)
    conn.execute("UPDATE user_table_rows SET meta = jsonb_build_object('a', id % 2), "
                 "raw = json_build_object('b', id % 3)")
    conn.execute("SET ROLE mallory")
    body = _shadow_body("public.jsonb domain check", "RETURN true;")
    conn.execute("CREATE FUNCTION public.jsonb_ok(v pg_catalog.jsonb) RETURNS boolean "
                 f"LANGUAGE plpgsql AS $b${body}$b$")
    conn.execute("CREATE DOMAIN public.jsonb AS pg_catalog.jsonb CHECK (public.jsonb_ok(VALUE))")
    conn.execute("RESET ROLE")
    submit_delete(conn, t, "1", {"$or": [{"meta": {"a": 1}}, {"raw": {"$in": [{"b": 2}]}}]})
    mask = scalar(conn, "SELECT pgjobs.mask('user_table_rows', '1')")
    conn.execute("SET search_path = public, pg_catalog")
    seen = scalar(conn, "SELECT count(*) FROM user_table_rows "
                        f"WHERE table_id OPERATOR(pg_catalog.=) 1 AND {mask}")
    _assert_clean(conn, hostile)
    expected = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 AND NOT "
                            "(created_at <= now() AND (meta = '{\"a\": 1}' "
                            "OR raw::jsonb = '{\"b\": 2}'))")
    assert 0 < seen == expected


def test_a_mask_names_pg_catalog_types_for_its_literals(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]]) -> None:
    """The literals of the mask ('tenant-1'::text for a text scope, the
    cutoff's '...'::timestamptz, a text key's exclusions, a filter value) were
    cast to bare type names that are no keywords: with public searched first,
    a domain named text or timestamptz there took the cast and its CHECK ran
    as the reader. They are written pg_catalog.text and so on
    (pgjobs._type_sql); keyword spellings (integer, bigint) need nothing."""
    t = make_rows_target(conn, key_type="text", scope_type="text")
    seed(conn, t, 90)
    conn.execute("SET ROLE mallory")
    for name in ("text", "timestamptz"):
        body = _shadow_body(f"public.{name} domain check", "RETURN true;")
        conn.execute(f"CREATE FUNCTION public.{name}_ok(v pg_catalog.{name}) RETURNS boolean "
                     f"LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE DOMAIN public.{name} AS pg_catalog.{name} "
                     f"CHECK (public.{name}_ok(VALUE))")
    conn.execute("RESET ROLE")
    submit_delete(conn, t, "tenant-1", {"$or": [{"label": "label 3"}, {"n": {"$gte": 5}}]},
                  exclude=["row-6"])
    mask = scalar(conn, "SELECT pgjobs.mask('user_table_rows', 'tenant-1')")
    conn.execute("SET search_path = public, pg_catalog")
    seen = [r[0] for r in conn.execute(
        f"SELECT id FROM user_table_rows WHERE {mask} ORDER BY id")]
    _assert_clean(conn, hostile)
    expected = [r[0] for r in conn.execute(
        "SELECT id FROM user_table_rows WHERE NOT (table_id = 'tenant-1' AND created_at <= now() "
        "AND (label = 'label 3' OR n >= 5) AND id <> 'row-6') ORDER BY id")]
    assert 0 < len(seen) < 90 and seen == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_export_chunk_names_pg_catalog_types_and_operators(
        conn: Conn, hostile: Callable[[], list[tuple[str, str]]], fmt: str) -> None:
    """Each chunk's COPY is text pgjobs.export_chunk_sql writes for a worker to
    run (docs/exports.md): a worker of one's own, not only `pgjobs run`'s
    pinned reader, runs it on its own path. Its keyset bounds cast to the key
    column's bare type ('row-5'::text), a document field was `data #>>
    '{name}'::text[]`, and the Parquet wire expressions cast to text, int8,
    timestamptz, date: with public searched first, a domain or operator planted
    there took them. Every name is now pg_catalog's (pgjobs._type_sql for the
    key's type), as in the predicate and the mask the COPY carries."""
    t = make_rows_target(conn, key_type="text", scope_type="text")
    seed(conn, t, 90)
    conn.execute("SET ROLE mallory")
    for name in ("text", "timestamptz", "int8", "date", "jsonb"):
        body = _shadow_body(f"public.{name} domain check", "RETURN true;")
        conn.execute(f"CREATE FUNCTION public.{name}_ok(v pg_catalog.{name}) RETURNS boolean "
                     f"LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE DOMAIN public.{name} AS pg_catalog.{name} "
                     f"CHECK (public.{name}_ok(VALUE))")
    for n, op in enumerate(("#>>", "#>")):
        result = "text" if op == "#>>" else "jsonb"
        body = _shadow_body(f"public.{op}(jsonb, text[])",
                            f"RETURN a OPERATOR(pg_catalog.{op}) b;")
        conn.execute(f"CREATE FUNCTION public.doc_op_{n}(a jsonb, b text[]) "
                     f"RETURNS pg_catalog.{result} LANGUAGE plpgsql AS $b${body}$b$")
        conn.execute(f"CREATE OPERATOR public.{op} (LEFTARG = jsonb, RIGHTARG = text[], "
                     f"FUNCTION = public.doc_op_{n})")
    conn.execute("RESET ROLE")
    columns = ["id", "n", "created_at", "name"]
    job_id = int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', 'tenant-1', "
                              "'{}', %s)", (json.dumps({"columns": columns, "format": fmt}),)))
    conn.execute("SELECT pgjobs.claim_export(%s, 'w', '30 seconds')", (job_id,))
    copy_sql = scalar(conn, "SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, %s, 5, %s)",
                      (job_id, "row-1", "row-60"))
    conn.execute("SET search_path = public, pg_catalog")
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    _assert_clean(conn, hostile)
    assert data.count(b"\n") >= 5
