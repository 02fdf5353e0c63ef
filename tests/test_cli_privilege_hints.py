"""The hint of a privilege PostgreSQL refused (42501 without a hint of its
own) follows the object refused, never other words of the message.

Found in the operator-safety pass: any name `pgjobs` in the message (a
database, a user's table or schema called so, a tenant's `pgjobs-acme`) got
the hint "the role is in neither pgjobs_client nor pgjobs_admin", and any of
the message's names that is also a pgjobs routine (a user's table called
`stats` or `run`) got "stats is for administrators" — `pgjobs migrate` alone
had been taught better. Now: schema pgjobs -> the roles; a pgjobs routine ->
administrators only; anything else -> the grant on that object, named.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgjobs import db, errors
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

ROLES = "GRANT pgjobs_client TO"
ADMIN = "is for administrators (pgjobs_admin)"


@pytest.mark.parametrize("message, wanted, unwanted", [
    # pgjobs' own schema and routines (as guessed without asking the server)
    ("permission denied for schema pgjobs", ROLES, ADMIN),
    ("permission denied for function claim", "claim " + ADMIN, ROLES),
    ("permission denied for procedure run", "run " + ADMIN, ROLES),
    ("keine Berechtigung für Schema pgjobs", ROLES, ADMIN),
    ("keine Berechtigung für Funktion prune", "prune " + ADMIN, ROLES),
    # names that merely contain pgjobs, or a routine's name, somewhere else
    ("permission denied for schema pgjobs-acme", 'on "pgjobs-acme"', ROLES),
    ("permission denied for schema pgjobs_tenant", "on pgjobs_tenant", ROLES),
    ("permission denied for schema tenant_pgjobs", "on tenant_pgjobs", ROLES),
    ("permission denied for table acme.pgjobs_data", 'on "acme.pgjobs_data"', ROLES),
    ("droit refusé pour le schéma « pgjobs-acme »", 'on "pgjobs-acme"', ROLES),
    ("permission denied for table pgjobs_run_log", "on pgjobs_run_log", ADMIN),
    ("permission denied for table user_table_rows", "on user_table_rows", ROLES),
    ("permission denied to create role", "on role", ROLES),
])
def test_the_guess_follows_the_object_refused(message: str, wanted: str, unwanted: str) -> None:
    hint = errors._privilege_hint("42501", message)
    assert hint is not None
    assert wanted in hint, hint
    assert unwanted not in hint, hint


# A refused object whose name holds a space (a quoted identifier such as
# "my table"): PostgreSQL prints it unquoted in English, quoted in other
# languages; the hint names it whole (it read as its last word, "table").
@pytest.mark.parametrize("message, name", [
    ("permission denied for table my table", "my table"),
    ("permission denied for schema pgjobs acme", "pgjobs acme"),
    ("permission denied for schema acme pgjobs", "acme pgjobs"),
    ("permission denied for sequence my seq", "my seq"),
    ("permission denied for materialized view sales by day", "sales by day"),
    ("permission denied for view a  b", "a  b"),
    ("permission denied for function do it", "do it"),
    ("permission denied for database my db", "my db"),
    ("permission denied for foreign table remote rows", "remote rows"),
    ('permission denied for column "c" of relation "my table"', "my table"),
    ('new row violates row-level security policy for table "my table"', "my table"),
    ("droit refusé pour la table « my table »", "my table"),
    ("keine Berechtigung für Tabelle „my table“", "my table"),
    ("テーブル「my table」へのアクセス権限がありません", "my table"),
])
def test_a_refused_name_with_a_space_is_named_whole(message: str, name: str) -> None:
    assert errors.refused_name(message) == name
    hint = errors._privilege_hint("42501", message)
    assert hint is not None
    quoted = '"' + name + '"'
    assert f"on {quoted}" in hint and f"ON ... {quoted} TO" in hint, hint
    assert ROLES not in hint and ADMIN not in hint, hint


@pytest.mark.parametrize("message", ["permission denied for table pgjobs",
                                     "permission denied for database pgjobs",
                                     "keine Berechtigung für Tabelle pgjobs",
                                     'new row violates row-level security policy for table '
                                     '"pgjobs"'])
def test_a_role_that_uses_schema_pgjobs_is_not_told_to_join_it(message: str) -> None:
    hint = errors.privilege_hint("42501", message, outside=False, admin_only=False)
    assert hint is not None and ROLES not in hint and "on pgjobs" in hint, hint


@pytest.mark.parametrize("message", ["permission denied for table stats",
                                     "permission denied for sequence claim",
                                     "permission denied for schema cancel"])
def test_a_role_that_may_run_the_routine_is_not_told_it_is_for_administrators(
        message: str) -> None:
    hint = errors.privilege_hint("42501", message, outside=False, admin_only=False)
    assert hint is not None and ADMIN not in hint, hint
    assert f"on {message.split()[-1]}" in hint, hint


def test_other_sqlstates_get_no_privilege_hint() -> None:
    assert errors._privilege_hint("22023", "permission denied for schema pgjobs") is None


@pytest.fixture
def stranger(conn: Conn) -> Any:
    """A role in no pgjobs role, and a session that may take it on."""
    role = "h22_stranger"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role}")
    session = db.connect(conn.info.dsn)

    def refused(sql: str, as_role: str = role) -> errors.PgjobsError:
        """What the command line reports (pgjobs.db, on the refused session)."""
        with acting_as(session, as_role), pytest.raises(errors.PgjobsError) as caught:
            db.one(session, sql)
        return caught.value

    try:
        yield role, refused
    finally:
        session.close()
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("table", ["pgjobs", "stats", '"pgjobs-acme"', "user_rows",
                                   '"my table"', '"pgjobs acme"'])
def test_a_users_own_table_gets_its_grant_live(conn: Conn, stranger: Any, table: str) -> None:
    role, refused = stranger
    conn.execute(f"CREATE TABLE public.{table} (id int)")
    conn.execute(f"GRANT pgjobs_client TO {role}")
    error = refused(f"SELECT * FROM public.{table}")
    assert isinstance(error, errors.PermissionDenied)
    assert error.hint is not None and f"on {table}" in error.hint, error.hint
    assert ROLES not in error.hint and ADMIN not in error.hint, error.hint


@pytest.mark.parametrize("schema", ["pgjobs_acme", '"pgjobs acme"', '"acme-pgjobs"'])
def test_a_tenants_schema_named_like_pgjobs_gets_its_grant_live(conn: Conn, stranger: Any,
                                                                schema: str) -> None:
    role, refused = stranger
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (id int)")
    conn.execute(f"GRANT pgjobs_client TO {role}")
    error = refused(f"SELECT * FROM {schema}.t")
    # The schema named whole, a name with a space too (it read as its last word).
    assert error.hint is not None and "lacks a privilege on" in error.hint, error.hint
    name = schema.strip('"')
    assert f"on {name if name.isidentifier() else chr(34) + name + chr(34)} " in error.hint, \
        error.hint
    assert ROLES not in error.hint, error.hint


def test_pgjobs_schema_and_routines_keep_their_hints_live(conn: Conn, stranger: Any) -> None:
    role, refused = stranger
    assert ROLES in (refused("SELECT pgjobs.stats()").hint or "")
    conn.execute(f"GRANT pgjobs_client TO {role}")
    assert "prune " + ADMIN in (refused("SELECT pgjobs.prune()").hint or "")


@pytest.fixture
def login_role(conn: Conn, dsn: str) -> Any:
    """A LOGIN role in no pgjobs role, and the DSN that connects as it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = "h22_login"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN")
    params = conninfo_to_dict(dsn)
    params["user"] = role
    try:
        yield role, make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_the_command_line_says_what_the_role_lacks(conn: Conn, login_role: Any) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.main import main

    role, dsn = login_role
    result = CliRunner().invoke(main, ["--dsn", dsn, "list"])
    assert result.exit_code == 1, result.output
    assert "[42501]" in result.stderr and ROLES in result.stderr, result.stderr
    conn.execute(f"GRANT pgjobs_client TO {role}")
    result = CliRunner().invoke(main, ["--dsn", dsn, "prune"])
    assert result.exit_code == 1, result.output
    assert "[42501]" in result.stderr and "prune " + ADMIN in result.stderr, result.stderr
