"""Which privileges `pgjobs migrate` needs (docs/operations.md, "Privileges
migrate needs"): no superuser. The owner of the database (or a role with
CREATE on it) that may also grant membership of pgjobs_client (CREATEROLE,
or ADMIN OPTION on it) migrates, and owns what it creates; a role short of
either is refused with the SQLSTATE and nothing half done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgjobs.errors import PgjobsError
from pgjobs.migrate import migrate
from tests.support import with_database

Make = Callable[[str, str], str]


@pytest.fixture
def database_for(cluster_url: str) -> Iterator[Make]:
    """make(role attributes, database grant) -> the DSN of a new, empty database
    reached as a new login role with those attributes."""
    made: list[tuple[str, str]] = []

    def make(attributes: str, grant: str) -> str:
        n = len(made)
        role, name = f"mig_{os.getpid()}_{n}", f"pgjobs_mig_{os.getpid()}_{n}"
        with psycopg.connect(cluster_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes).format(
                sql.Identifier(role)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if grant == "owner":
                admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)))
            elif grant == "create":
                admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)))
        made.append((role, name))
        return with_database(cluster_url, name) + f" user={role}"

    yield make
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        for role, name in made:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def sessions_on(dsn: str) -> int:
    """Sessions of other backends connected to the DSN's database."""
    with psycopg.connect(dsn) as conn:
        row: Any = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                " current_database() AND pid <> pg_backend_pid()").fetchone()
    return int(row[0])


def owner_of_schema(dsn: str) -> tuple[str, bool]:
    with psycopg.connect(dsn) as conn:
        row: Any = conn.execute(
            "SELECT nspowner::regrole::text, rolsuper FROM pg_namespace"
            " JOIN pg_roles r ON r.oid = nspowner WHERE nspname = 'pgjobs'").fetchone()
    return row[0], row[1]


@pytest.mark.parametrize("grant", ["owner", "create"])
def test_a_database_owner_with_createrole_migrates_without_superuser(
        database_for: Make, grant: str) -> None:
    dsn = database_for("NOSUPERUSER CREATEROLE", grant)
    migrate(dsn)
    migrate(dsn)  # and again: idempotent under the same rights
    owner, superuser = owner_of_schema(dsn)
    assert owner.startswith("mig_") and superuser is False
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")  # PostgreSQL 15: no CREATE on public for all
        conn.execute("CREATE TABLE app.items (id bigint PRIMARY KEY, scope int NOT NULL,"
                     " created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE INDEX ON app.items (scope, id)")
        conn.execute("SELECT pgjobs.register_target('app.items', 'id', 'scope', 'created_at')")
        job_id = conn.execute("SELECT pgjobs.submit_delete('app.items', '1', '{}')").fetchone()
        assert job_id is not None and job_id[0] >= 1


def test_without_create_on_the_database_migrate_is_refused(database_for: Make) -> None:
    dsn = database_for("NOSUPERUSER CREATEROLE", "none")
    with pytest.raises(PgjobsError) as caught:
        migrate(dsn)
    assert caught.value.sqlstate == "42501"
    assert sessions_on(dsn) == 0, "a refused migrate left a connection open"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('pgjobs')").fetchone() == (None,)


def test_without_createrole_granting_the_roles_is_refused(database_for: Make,
                                                          cluster_url: str) -> None:
    """pgjobs_client and pgjobs_admin are cluster-wide: the first migrate of a cluster
    creates them, every migrate grants pgjobs_client to pgjobs_admin; a role that
    may do neither is refused (an administrator grants it ADMIN OPTION, or
    CREATEROLE)."""
    dsn = database_for("NOSUPERUSER NOCREATEROLE", "owner")
    with pytest.raises(PgjobsError) as caught:
        migrate(dsn)
    assert caught.value.sqlstate == "42501"
    assert sessions_on(dsn) == 0, "a refused migrate left a connection open"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('pgjobs.jobs')").fetchone() == (None,)
        role = conn.info.user
    # Given the right, the same command completes.
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(role)))
    assert migrate(dsn)["migrations_applied"]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('pgjobs.jobs')::text").fetchone() == (
            "pgjobs.jobs",)


@pytest.mark.parametrize("attributes, grant", [("NOSUPERUSER CREATEROLE", "none"),
                                               ("NOSUPERUSER NOCREATEROLE", "owner"),
                                               ("NOSUPERUSER NOCREATEROLE", "none")])
def test_the_cli_says_what_migrate_needs(database_for: Make, attributes: str,
                                         grant: str) -> None:
    """`pgjobs migrate` refused for a privilege says what migrate needs, not the
    generic 42501 hint, which told a role without CREATE on a database named
    pgjobs to be granted pgjobs_client (it read the database's name as the
    schema's)."""
    from click.testing import CliRunner

    from pgjobs.cli.main import main
    from pgjobs.migrate import MIGRATE_PRIVILEGES_HINT

    dsn = database_for(attributes, grant)
    result = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert lines[0].endswith(f"[42501] (hint: {MIGRATE_PRIVILEGES_HINT})"), lines[0]


def test_the_generic_hint_is_recognised_and_nothing_else() -> None:
    """Only the guess replaces: a 42501 with the server's or pgjobs' own hint keeps it."""
    from pgjobs.errors import PermissionDenied, _privilege_hint, has_generic_privilege_hint

    for message in ("permission denied for database pgjobs",
                    "permission denied for schema pgjobs",
                    "permission denied to grant role \"pgjobs_client\""):
        generic = PermissionDenied(message, hint=_privilege_hint("42501", message))
        assert has_generic_privilege_hint(generic)
        assert not has_generic_privilege_hint(PermissionDenied(message, hint="do this"))
