"""Trust, the window between checks: role commands between two pages of a
running delete or backfill.

A page runs on its verdict (pgjobs._run_page) while it is under 1 s old and
the DDL epoch (pgjobs.ddl_fence) has not moved. Role commands (GRANT role
TO, REVOKE role FROM, ALTER ROLE [NO]SUPERUSER / [NO]INHERIT /
[NO]BYPASSRLS, DROP ROLE) fire no event trigger, so they move no epoch:
after one that took trust away (an author of code in the target's reach
demoted, the submitter's group revoked), the next pages of that second ran
as trusted. Found on main: every command of ROLE_COMMANDS but the object
REVOKE (an event trigger sees it) left the next page 'more'. Now the
verdict holds the roles its full check found in the reach
(pgjobs._untrusted_roles with no acting role), and every page asks again
whether each still has the runner's rights, and the submitter its own
(pgjobs._verdict_roles_hold): the very next page fails the job.

No timing: each page after a command is called with its verdict dated
"now" in the same transaction, so on the old code it would run on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar, who
from tests.support.roles import session_as
from tests.support.verdicts import dated_page, install_dated_page

Conn = psycopg.Connection[Any]

PID = os.getpid()
R = {name: f"pgjobs_rf_{name}_{PID}"
     for name in ("runner", "middle", "author", "boss", "writers", "submitter", "outsider",
                  "coder")}

# The runner's role runs the pages; author's table (given to it once the job
# is submitted) is reached through a rule and trusted through author ->
# middle -> runner; boss's table is reached and
# trusted as boss is a superuser; the submitter's rights come from writers.
ROLES = [
    "CREATE ROLE {runner} NOLOGIN IN ROLE pgjobs_admin",
    "CREATE ROLE {middle} NOLOGIN IN ROLE {runner}",
    "CREATE ROLE {author} NOLOGIN IN ROLE {middle}",
    "CREATE ROLE {boss} NOLOGIN SUPERUSER",
    "CREATE ROLE {writers} NOLOGIN",
    "CREATE ROLE {submitter} NOLOGIN IN ROLE pgjobs_client, {writers}",
    "CREATE ROLE {outsider} NOLOGIN",
    "CREATE ROLE {coder} NOLOGIN IN ROLE {middle}",
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
GRANT SELECT, DELETE, UPDATE ON tenant.rows TO {runner}, {writers};
CREATE TABLE tenant.by_author (id bigint);
CREATE TABLE tenant.by_boss (id bigint);
ALTER TABLE tenant.by_boss OWNER TO {boss};
CREATE RULE a_d AS ON DELETE TO tenant.rows DO ALSO INSERT INTO tenant.by_author VALUES (old.id);
CREATE RULE a_u AS ON UPDATE TO tenant.rows DO ALSO INSERT INTO tenant.by_author VALUES (old.id);
CREATE RULE b_d AS ON DELETE TO tenant.rows DO ALSO INSERT INTO tenant.by_boss VALUES (old.id);
CREATE RULE b_u AS ON UPDATE TO tenant.rows DO ALSO INSERT INTO tenant.by_boss VALUES (old.id);
"""

# Row-level security on the target, which the runner and the submitter
# bypass (BYPASSRLS): for the NOBYPASSRLS case.
RLS = ("ALTER ROLE {runner} BYPASSRLS; ALTER ROLE {submitter} BYPASSRLS;"
       " ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY;"
       " CREATE POLICY everything ON tenant.rows USING (true)")

# Each takes trust away: (extra setup, the command, what the failure names).
ROLE_COMMANDS = {
    "revoke_authors_membership": ("", "REVOKE {middle} FROM {author}", "{author}"),
    "revoke_a_middle_membership": ("", "REVOKE {runner} FROM {middle}", "{author}"),
    "author_noinherit": ("", "ALTER ROLE {author} NOINHERIT", "{author}"),
    "middle_noinherit": ("", "ALTER ROLE {middle} NOINHERIT", "{author}"),
    "drop_the_middle_role": ("", "DROP ROLE {middle}", "{author}"),
    "boss_nosuperuser": ("", "ALTER ROLE {boss} NOSUPERUSER", "{boss}"),
    "revoke_the_submitters_group": ("", "REVOKE {writers} FROM {submitter}", "{submitter}"),
    "submitter_noinherit": ("", "ALTER ROLE {submitter} NOINHERIT", "{submitter}"),
    "drop_the_submitter": ("", "DROP ROLE {submitter}", "{submitter}"),
    "submitter_nobypassrls": (RLS, "ALTER ROLE {submitter} NOBYPASSRLS", "row-level security"),
    # The runner's own role, which the target's policies now confine.
    "runner_nobypassrls": (RLS, "ALTER ROLE {runner} NOBYPASSRLS", "row-level security"),
    # An object privilege: an event trigger sees it (the DDL fence).
    "revoke_the_submitters_table_privilege": (
        "", "REVOKE DELETE, UPDATE ON tenant.rows FROM {writers}", "{submitter}"),
    # Row-level security turned on while the job runs (the runner and the
    # submitter own no policy exemption): DDL, the fence sees it.
    "row_security_enabled": ("", "ALTER TABLE tenant.rows ENABLE ROW LEVEL SECURITY",
                             "row-level security"),
}
# The ones the DDL fence saw by itself (an event trigger fires: the epoch moves).
BUMP = {"revoke_the_submitters_table_privilege", "row_security_enabled"}

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
    return session_as(make_conn, R["runner"], autocommit=False)


def _start(conn: Conn, runner: Conn, kind: str) -> tuple[int, str]:
    """The submitter's job of one row a page, claimed by the runner's role
    and run until a page changed a row (so its verdict is there)."""
    conn.execute(f"SET ROLE {R['submitter']}")
    job = int(scalar(conn, KINDS[kind]))
    conn.execute("RESET ROLE")
    # Given to author after the submit: the submit checks trust as pgjobs'
    # owner (the test's superuser), the pages as the runner's role.
    conn.execute(f"ALTER TABLE tenant.by_author OWNER TO {R['author']}")
    runner.execute("SELECT pgjobs._claim_id(%s, 'w')", (job,))
    runner.commit()
    worker = who(conn, job, "w")
    while not scalar(conn, "SELECT done FROM pgjobs.jobs WHERE id = %s", (job,)):
        assert _page(runner, job, worker) == "more"
    assert scalar(conn, "SELECT checkpoint -> 'verified' ->> 'at' FROM pgjobs.jobs"
                        " WHERE id = %s", (job,)) is not None
    return job, worker


def _page(runner: Conn, job: int, worker: str) -> str:
    state = str(scalar(runner, "SELECT pgjobs._run_page(%s, %s)", (job, worker)))
    runner.commit()
    return state


def _page_on_a_fresh_verdict(runner: Conn, job: int, worker: str) -> str:
    """The next page, its verdict dated now in the page's own statement: a
    page that trusts its verdict runs on it, whatever the clock did before."""
    return _page_dated(runner, job, worker)[0]


def _page_dated(runner: Conn, job: int, worker: str, age: float = 0.0) -> tuple[str, Any]:
    """_page_on_a_fresh_verdict (its verdict dated age seconds ago), and the
    date it wrote (tests.support.verdicts: no round trip between the two)."""
    return dated_page(runner, job, worker, age=age, role=R["runner"])


def _epoch(conn: Conn) -> int:
    return int(scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence"))


def _changed(conn: Conn, kind: str) -> int:
    if kind == "delete":
        return 20 - int(scalar(conn, "SELECT count(*) FROM tenant.rows WHERE scope = 1"))
    return int(scalar(conn, "SELECT count(*) FROM tenant.rows WHERE note = 'x'"))


@pytest.mark.parametrize("command", sorted(ROLE_COMMANDS))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_role_command_that_takes_trust_away_fails_the_job_at_the_next_page(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str,
        command: str) -> None:
    setup, statement, named = ROLE_COMMANDS[command]
    if setup:
        conn.execute(setup.format(**R))
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, kind)
    assert _changed(conn, kind) == 1
    # The verdict is good: a page on it runs.
    assert _page_on_a_fresh_verdict(runner, job, worker) == "more"
    epoch = _epoch(conn)
    conn.execute(statement.format(**R))
    # Which commands the DDL fence sees by itself (an event trigger fires).
    assert (_epoch(conn) != epoch) == (command in BUMP), (_epoch(conn), epoch)
    state = _page_on_a_fresh_verdict(runner, job, worker)
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job,)).fetchone() or (None, None)
    assert (state, status) == ("failed", "failed"), (state, status, error)
    assert named.format(**R) in error, error
    assert _changed(conn, kind) == 2


# Role commands that take no trust away: the pages run on their verdict
# (no full check, which a digest of the role catalogs would have cost).
HARMLESS = {
    "connection_limit": "ALTER ROLE {author} CONNECTION LIMIT 3",
    "password": "ALTER ROLE {author} PASSWORD 'x'",
    "role_setting": "ALTER ROLE {author} SET work_mem = '8MB'",
    "a_new_role": "CREATE ROLE {outsider}_new IN ROLE {writers}",
    "a_membership_granted": "GRANT {writers} TO {outsider}",
    "a_membership_revoked_elsewhere": "REVOKE pgjobs_client FROM {outsider}",
    "a_role_dropped_elsewhere": "DROP ROLE {outsider}",
    # Trust is author -> runner membership (pg_has_role), not an attribute
    # compared: the runner made a superuser leaves author trusted.
    "runner_made_superuser": "ALTER ROLE {runner} SUPERUSER",
    "author_made_superuser": "ALTER ROLE {author} SUPERUSER",
}


@pytest.mark.parametrize("change", sorted(HARMLESS))
def test_a_role_command_that_keeps_trust_leaves_the_verdict_standing(
        conn: Conn, world: None, make_conn: Callable[..., Conn], change: str) -> None:
    """The page after it runs on its verdict (the date the test wrote stays:
    no full check), and the job goes on."""
    conn.execute(f"GRANT pgjobs_client TO {R['outsider']}")
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, "delete")
    try:
        before = scalar(conn, "SELECT checkpoint -> 'verified' FROM pgjobs.jobs WHERE id = %s",
                        (job,))
        conn.execute(HARMLESS[change].format(**R))
        state, at = _page_dated(runner, job, worker)
        assert state == "more"
        after = scalar(conn, "SELECT checkpoint -> 'verified' FROM pgjobs.jobs WHERE id = %s",
                       (job,))
        assert after["at"] == at, (at, after)
        assert after["roles"] == before["roles"], (before, after)
        assert _changed(conn, "delete") == 2
    finally:
        conn.execute(f"DROP ROLE IF EXISTS {R['outsider']}_new")


def test_the_verdict_holds_the_roles_of_the_reach(
        conn: Conn, world: None, make_conn: Callable[..., Conn]) -> None:
    """What the pages ask again: the owners of the target and of the two
    tables its rules write into, found by the full check."""
    runner = _runner(make_conn)
    job, _ = _start(conn, runner, "delete")
    roles = scalar(conn, "SELECT checkpoint -> 'verified' -> 'roles' FROM pgjobs.jobs"
                         " WHERE id = %s", (job,))
    names = {r[0] for r in conn.execute(
        "SELECT rolname FROM pg_roles WHERE oid = ANY (%s::oid[])", (roles,)).fetchall()}
    assert names == {R["author"], R["boss"], str(scalar(conn, "SELECT current_user"))}, names


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reassign_owned_keeps_the_one_second_window(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str) -> None:
    """REASSIGN OWNED fires no event trigger and changes no role (it rewrites
    owners in this database's catalogs): the epoch does not move and the
    roles the verdict holds keep their rights, so the pages of that second
    run on their verdict (the
    code in the reach is the same code; what its new owner adds comes by
    DDL, which is fenced: docs/engine.md). The first page whose verdict is
    1 s old checks in full and fails the job."""
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, kind)
    epoch = _epoch(conn)
    conn.execute(f"REASSIGN OWNED BY {R['author']} TO {R['outsider']}")
    assert _epoch(conn) == epoch
    assert _page_on_a_fresh_verdict(runner, job, worker) == "more"
    assert _page_dated(runner, job, worker, age=1.5)[0] == "failed"
    error = scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job,))
    assert R["outsider"] in error, error


# Code of coder's reaching the target otherwise than as a table: each shape
# uses function tenant.coded (owned by coder once the job runs), and coder is
# trusted through coder -> middle -> runner. Every role whose code the full
# check judges must be among the verdict's roles, so that its demotion stops
# the next page whatever way its code is reached.
CODED = ("CREATE FUNCTION tenant.coded(v bigint) RETURNS bigint LANGUAGE sql IMMUTABLE"
         " AS 'SELECT v'")
REACHED_BY = {
    "trigger_function": (
        "CREATE FUNCTION tenant.coded_trigger() RETURNS trigger LANGUAGE plpgsql"
        " AS 'BEGIN RETURN coalesce(new, old); END';"
        " CREATE TRIGGER coded BEFORE DELETE OR UPDATE ON tenant.rows"
        " FOR EACH ROW EXECUTE FUNCTION tenant.coded_trigger()",
        "ALTER FUNCTION tenant.coded_trigger() OWNER TO {coder}"),
    "index_expression": (
        "CREATE INDEX coded ON tenant.rows (tenant.coded(id))",
        "ALTER FUNCTION tenant.coded(bigint) OWNER TO {coder}"),
    "generated_column": (
        "ALTER TABLE tenant.rows ADD COLUMN twice bigint"
        " GENERATED ALWAYS AS (tenant.coded(id)) STORED",
        "ALTER FUNCTION tenant.coded(bigint) OWNER TO {coder}"),
    "domain_check": (
        "CREATE DOMAIN tenant.coded_id AS bigint CHECK (tenant.coded(VALUE) = VALUE);"
        " ALTER TABLE tenant.rows ADD COLUMN other tenant.coded_id",
        "ALTER FUNCTION tenant.coded(bigint) OWNER TO {coder}"),
    "default_of_a_table_a_rule_writes": (
        "ALTER TABLE tenant.by_boss ADD COLUMN twice bigint DEFAULT tenant.coded(1)",
        "ALTER FUNCTION tenant.coded(bigint) OWNER TO {coder}"),
    "view_a_rule_writes": (
        "CREATE TABLE tenant.under (id bigint); GRANT INSERT ON tenant.under TO {coder};"
        " CREATE VIEW tenant.seen AS SELECT id FROM tenant.under;"
        " CREATE RULE c_d AS ON DELETE TO tenant.rows DO ALSO"
        " INSERT INTO tenant.seen VALUES (old.id);"
        " CREATE RULE c_u AS ON UPDATE TO tenant.rows DO ALSO"
        " INSERT INTO tenant.seen VALUES (old.id)",
        "ALTER VIEW tenant.seen OWNER TO {coder}"),
}


@pytest.mark.parametrize("shape", sorted(REACHED_BY))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_role_reached_only_through_code_is_kept_and_asked_again(
        conn: Conn, world: None, make_conn: Callable[..., Conn], kind: str,
        shape: str) -> None:
    """coder's code reaches the target (a trigger's function, an index
    expression, a generated column, a domain's CHECK, a default or a view
    that a rule writes): the full check after it was given to coder keeps
    coder among the verdict's roles, and REVOKE of the membership that made
    coder trusted fails the job at the next page."""
    setup, give = REACHED_BY[shape]
    conn.execute(CODED)
    conn.execute(setup.format(**R))
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, kind)
    conn.execute(give.format(**R))
    # A DDL: the next page checks in full, as the runner, and goes on.
    assert _page(runner, job, worker) == "more"
    roles = scalar(conn, "SELECT checkpoint -> 'verified' -> 'roles' FROM pgjobs.jobs"
                         " WHERE id = %s", (job,))
    coder = scalar(conn, "SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (R["coder"],))
    assert coder in roles, (roles, coder)
    assert _page_on_a_fresh_verdict(runner, job, worker) == "more"
    conn.execute("REVOKE {middle} FROM {coder}".format(**R))
    assert _page_on_a_fresh_verdict(runner, job, worker) == "failed"
    error = scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job,))
    assert R["coder"] in error, error


def test_a_kept_role_renamed_is_the_same_role(
        conn: Conn, world: None, make_conn: Callable[..., Conn]) -> None:
    """The verdict keeps oids, not names: ALTER ROLE ... RENAME leaves the
    pages on their verdict, and a demotion of the renamed role is seen at
    the next page."""
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, "delete")
    renamed = R["author"] + "_renamed"
    conn.execute(f"ALTER ROLE {R['author']} RENAME TO {renamed}")
    try:
        assert _page_on_a_fresh_verdict(runner, job, worker) == "more"
        conn.execute(f"REVOKE {R['middle']} FROM {renamed}")
        assert _page_on_a_fresh_verdict(runner, job, worker) == "failed"
        error = scalar(conn, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job,))
        assert renamed in error, error
    finally:
        conn.execute(f"ALTER ROLE {renamed} RENAME TO {R['author']}")


# Roles lists a verdict may carry that are no list of oids: a release
# before the roles were kept (none), or anything else. Each sends the page to
# the full check (its verdict rewritten with the reach's roles), never an
# error of the page's own.
ODD_ROLES = {
    "missing": None,
    "json_null": "null",
    "an_object": '{"a": 1}',
    "a_string": '"10"',
    "a_fraction": "[1.5]",
    "negative": "[-1]",
    "beyond_oid": "[4294967296]",
    "exponent": "[1e30]",
    "a_string_element": '["10"]',
    "a_nested_array": "[[10]]",
    "a_dropped_role": "[4294967295]",
    "huge": "(SELECT jsonb_agg(4294967295) FROM generate_series(1, 100000))",
}


@pytest.mark.parametrize("odd", sorted(ODD_ROLES))
def test_a_verdict_whose_roles_are_no_list_of_oids_checks_in_full(
        conn: Conn, world: None, make_conn: Callable[..., Conn], odd: str) -> None:
    runner = _runner(make_conn)
    job, worker = _start(conn, runner, "delete")
    good = scalar(conn, "SELECT checkpoint -> 'verified' -> 'roles' FROM pgjobs.jobs"
                        " WHERE id = %s", (job,))
    value = ODD_ROLES[odd]
    if value is None:
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint #- '{verified,roles}'"
                     " WHERE id = %s", (job,))
    else:
        expression = value if value.startswith("(") else f"'{value}'::jsonb"
        conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint,"
                     f" '{{verified,roles}}', {expression}) WHERE id = %s", (job,))
    state, at = _page_dated(runner, job, worker)
    assert state == "more"
    verified = scalar(conn, "SELECT checkpoint -> 'verified' FROM pgjobs.jobs WHERE id = %s",
                      (job,))
    # Checked in full: a verdict of its own, with the reach's roles.
    assert verified["at"] != at and verified["roles"] == good, (verified, at, good)
    assert _changed(conn, "delete") == 2
