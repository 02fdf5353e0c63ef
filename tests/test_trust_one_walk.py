"""Trust, the full check of a delete or backfill page: one walk of the
target's reach for both of its answers.

A page checks in full (pgjobs._run_page) at an attempt's first page, when
its verdict is 1 s old, after a DDL moved the fence's epoch, and when its
verdict keeps no list of roles. The full check answers two things from the
target's reach: whether a role whose code is there lacks the runner's
rights (the trust check, 42501), and which roles are there at all (kept in
the verdict, asked again on the next pages by pgjobs._verdict_roles_hold,
as role commands move no epoch). Found on main: it walked the reach twice,
once for each (pgjobs._untrusted_roles as the runner, then again with no
acting role), about 1 ms each. Now one walk (pgjobs._reach_roles, through
pgjobs._trust_verdict) yields both.

The guards hold on main too: the roles the verdict keeps are every role the
walk names (pgjobs._untrusted_roles with no acting role), and a target
refused at a page's full check is refused with the very message of the
trust check (pgjobs._trust_problem, as the runner), whatever way the
untrusted code reaches it. Call counts come from pg_stat_xact_user_functions
(track_functions = 'pl'), never from a clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar, who
from tests.support.roles import session_as
from tests.support.verdicts import install_dated_page

Conn = psycopg.Connection[Any]

PID = os.getpid()
R = {name: f"pgjobs_ow_{name}_{PID}"
     for name in ("runner", "author", "stranger", "other", "typer")}

# runner runs the pages (and submits: pgjobs_admin is a client too); the
# target is the test's superuser's, which every role trusts; author and
# typer are trusted (members of runner), stranger and other are not. The
# submit checks trust as pgjobs' owner (the superuser), so code of a role
# that is not the superuser's comes after it.
ROLES = [
    "CREATE ROLE {runner} NOLOGIN IN ROLE pgjobs_admin",
    "CREATE ROLE {author} NOLOGIN IN ROLE {runner}",
    "CREATE ROLE {stranger} NOLOGIN",
    "CREATE ROLE {other} NOLOGIN",
    "CREATE ROLE {typer} NOLOGIN IN ROLE {runner}",
]

SETUP = """
CREATE SCHEMA tenant;
GRANT USAGE ON SCHEMA tenant TO PUBLIC;
CREATE TABLE tenant.rows (
    id bigint NOT NULL, scope int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), note text);
CREATE INDEX ON tenant.rows (scope, id);
INSERT INTO tenant.rows (id, scope, created_at)
SELECT i, 1 + i % 2, now() - interval '1 hour' FROM generate_series(1, 40) i;
SELECT pgjobs.register_target('tenant.rows', 'id', 'scope', 'created_at');
GRANT SELECT, DELETE, UPDATE ON tenant.rows TO {runner};
CREATE FUNCTION tenant.keep() RETURNS trigger LANGUAGE plpgsql
    AS 'BEGIN RETURN coalesce(new, old); END';
CREATE FUNCTION tenant.keep_too() RETURNS trigger LANGUAGE plpgsql
    AS 'BEGIN RETURN coalesce(new, old); END';
CREATE DOMAIN tenant.label AS text CHECK (VALUE <> '');
"""

# Ways code reaches the target; each is DDL (the next page checks in full).
# {who} is the role whose code it is.
SHAPES = {
    "owner_of_a_reached_table": (
        "CREATE TABLE tenant.log (id bigint); ALTER TABLE tenant.log OWNER TO {who};"
        " CREATE RULE l_d AS ON DELETE TO tenant.rows DO ALSO"
        " INSERT INTO tenant.log VALUES (old.id);"
        " CREATE RULE l_u AS ON UPDATE TO tenant.rows DO ALSO"
        " INSERT INTO tenant.log VALUES (old.id)"),
    "trigger_function": (
        "ALTER FUNCTION tenant.keep() OWNER TO {who};"
        " CREATE TRIGGER keep BEFORE DELETE OR UPDATE ON tenant.rows"
        " FOR EACH ROW EXECUTE FUNCTION tenant.keep()"),
    "trigger_privilege": "GRANT TRIGGER ON tenant.rows TO {who}",
    "column_references": "GRANT REFERENCES (note) ON tenant.rows TO {who}",
    "domain_of_a_column": (
        "ALTER DOMAIN tenant.label OWNER TO {who};"
        " ALTER TABLE tenant.rows ADD COLUMN label tenant.label"),
}

KINDS = {
    "delete": "SELECT pgjobs.submit_delete('tenant.rows', '1', '{}', '{}',"
              " '{\"page_size\": 1}')",
    "backfill": "SELECT pgjobs.submit_backfill('tenant.rows', '2', '{}',"
                " '{\"note\": \"x\"}', '{\"page_size\": 1}')",
}


def _drop_roles(conn: Conn) -> None:
    for role in R.values():
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    _drop_roles(conn)
    for statement in ROLES:
        conn.execute(statement.format(**R))
    conn.execute(SETUP.format(**R))
    install_dated_page(conn)
    yield
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def _runner(make_conn: Callable[..., Conn]) -> Conn:
    # track_functions is a superuser's setting: before the role.
    return session_as(make_conn, R["runner"], before=("SET track_functions = 'pl'",),
                      autocommit=False)


WALKS = """
    SELECT funcname, calls FROM pg_stat_xact_user_functions
     WHERE schemaname = 'pgjobs' AND funcname IN ('_reach_roles', '_untrusted_roles')"""


def _page(runner: Conn, job: int, worker: str) -> tuple[str, dict[str, int]]:
    """One page in its own transaction, and the calls of the walk's functions
    it made. (The view also shows calls of earlier transactions that the
    backend has not reported yet, never those of another transaction in
    between: within one transaction, after minus before.)"""
    before = dict(runner.execute(WALKS).fetchall())
    state = str(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
    after = dict(runner.execute(WALKS).fetchall())
    runner.commit()
    return state, {f: n - before.get(f, 0) for f, n in after.items() if n != before.get(f, 0)}


def _on_its_verdict(conn: Conn, runner: Conn, job: int, worker: str) -> tuple[str, dict[str, int]]:
    """The next page, its verdict dated now in the page's own statement
    (tests.support.verdicts): a page that trusts its verdict runs on it,
    however long the machine took since the last, or between two statements."""
    before = dict(runner.execute(WALKS).fetchall())
    runner.execute("RESET ROLE")
    row = runner.execute("SELECT public.dated_page(%s, %s, 0, %s)",
                         (job, worker, R["runner"])).fetchone()
    assert row is not None
    after = dict(runner.execute(WALKS).fetchall())
    runner.commit()
    runner.execute(f"SET ROLE {R['runner']}")
    runner.commit()
    return str(row[0][0]), {f: n - before.get(f, 0) for f, n in after.items()
                            if n != before.get(f, 0)}


def _start(conn: Conn, runner: Conn, kind: str, *code: str) -> tuple[int, str]:
    """runner's job, the statements of `code` run after its submit, claimed."""
    job = int(scalar(runner, KINDS[kind]))
    runner.commit()
    for statement in code:
        conn.execute(statement)
    runner.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
    runner.commit()
    return job, who(conn, job, "w")


def _verified(conn: Conn, job: int) -> Any:
    return scalar(conn, "SELECT checkpoint -> 'verified' FROM pgjobs.jobs WHERE id = %s", (job,))


def _reach(conn: Conn) -> list[int]:
    """The oids of every role the walk names (no acting role), PUBLIC aside."""
    return [r[0] for r in conn.execute("""
        SELECT a.oid::bigint FROM pgjobs._untrusted_roles('tenant.rows', NULL) u
          JOIN pg_roles a ON a.rolname = u.role_name ORDER BY a.oid""").fetchall()]


# How a page comes to check in full, once the attempt runs on a verdict.
OCCASIONS: dict[str, Callable[[Conn, int], None]] = {
    "verdict_a_second_old": lambda conn, job: conn.execute(
        "UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint, '{verified,at}',"
        " to_jsonb(extract(epoch FROM clock_timestamp()) - 1.5)) WHERE id = %s", (job,)),
    "a_ddl_committed": lambda conn, job: conn.execute(
        "COMMENT ON TABLE tenant.rows IS 'a DDL: the epoch moves'"),
    "verdict_without_roles": lambda conn, job: conn.execute(
        "UPDATE pgjobs.jobs SET checkpoint = checkpoint #- '{verified,roles}'"
        " WHERE id = %s", (job,)),
}


@pytest.mark.parametrize("occasion", ["first_page", *sorted(OCCASIONS)])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_full_check_walks_the_reach_once(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str,
        occasion: str) -> None:
    """Every full check walks once (on main: pgjobs._untrusted_roles twice),
    and its verdict keeps the reach's roles; a page on that verdict walks
    nothing."""
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, kind, SHAPES["trigger_function"].format(who=R["author"]))
    state, walks = _page(runner, job, worker)  # the attempt's first call: a full check
    assert state == "more"
    if occasion == "first_page":
        assert walks == {"_reach_roles": 1}, walks
    else:
        assert _on_its_verdict(conn, runner, job, worker) == ("more", {})  # no walk
        OCCASIONS[occasion](conn, job)
        state, walks = _page(runner, job, worker)
        assert state == "more"
        assert walks == {"_reach_roles": 1}, walks
    roles = _verified(conn, job)["roles"]
    assert roles == _reach(conn), roles
    author = scalar(conn, "SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (R["author"],))
    assert author in roles and len(roles) == 2, roles  # the table's owner and author
    assert _on_its_verdict(conn, runner, job, worker) == ("more", {})


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_verdict_keeps_every_role_the_walk_names(
        conn: Conn, world: None, make_conn: Callable[..., Conn], shape: str) -> None:
    """Whichever way a trusted role's code reaches the target, the full check
    after the DDL keeps exactly the roles the walk names (the owner's, the
    author's and the domain's), each once, ascending."""
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, "delete", SHAPES[shape].format(who=R["author"]),
                         SHAPES["domain_of_a_column"].format(who=R["typer"])
                         if shape != "domain_of_a_column" else "SELECT 1")
    assert _page(runner, job, worker)[0] == "more"
    roles = _verified(conn, job)["roles"]
    assert roles == _reach(conn) == sorted(set(roles)), roles
    names = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE oid = ANY (%s)",
                                        (roles,)).fetchall()}
    expected = {scalar(conn, "SELECT current_user"), R["author"]}
    if shape != "domain_of_a_column":
        expected.add(R["typer"])
    assert names == expected, names


# Untrusted code brought in by DDL while the job runs: (role, shape).
UNTRUSTED = {
    "stranger_owns_a_reached_table": ("stranger", "owner_of_a_reached_table"),
    "strangers_trigger_function": ("stranger", "trigger_function"),
    "trigger_granted_to_a_stranger": ("stranger", "trigger_privilege"),
    "trigger_granted_to_public": ("PUBLIC", "trigger_privilege"),
    "references_on_a_column": ("stranger", "column_references"),
    "strangers_domain": ("stranger", "domain_of_a_column"),
}


@pytest.mark.parametrize("case", [*sorted(UNTRUSTED), "two_strangers", "row_security"])
def test_a_target_refused_at_a_full_check_is_refused_with_the_trust_checks_message(
        conn: Conn, world: None, make_conn: Callable[..., Conn], case: str) -> None:
    """The DDL moves the epoch: the next page checks in full and fails the job
    with the message the trust check gives the runner (the first untrusted
    role by name and its first reason; row-level security that confines the
    runner), having changed nothing more."""
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, "backfill" if case == "row_security" else "delete")
    assert _page(runner, job, worker)[0] == "more"
    assert _page(runner, job, worker)[0] == "more"
    if case == "two_strangers":
        conn.execute(SHAPES["trigger_function"].format(who=R["stranger"]))
        conn.execute("ALTER FUNCTION tenant.keep_too() OWNER TO {other};"
                     " CREATE TRIGGER keep_too BEFORE DELETE OR UPDATE ON tenant.rows"
                     " FOR EACH ROW EXECUTE FUNCTION tenant.keep_too()".format(**R))
    elif case == "row_security":
        conn.execute("ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY;"
                     " ALTER TABLE tenant.rows FORCE ROW LEVEL SECURITY")
    else:
        role, shape = UNTRUSTED[case]
        conn.execute(SHAPES[shape].format(who=R.get(role, role)))
    expected = scalar(runner, "SELECT (pgjobs._trust_problem('tenant.rows')).message")
    runner.commit()
    assert expected is not None
    if case == "two_strangers":
        assert min(R["stranger"], R["other"]) in expected, expected
    done = scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,))
    assert done > 0
    state, _ = _on_its_verdict(conn, runner, job, worker)  # the epoch moved: in full
    status, error, after = conn.execute("SELECT status, error, done FROM pgjobs.jobs"
                                        " WHERE id = %s", (job,)).fetchone() or (None,) * 3
    assert (state, status) == ("failed", "failed"), (state, status, error)
    assert error == expected, (error, expected)
    assert after == done
