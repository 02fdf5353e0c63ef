"""`pgjobs migrate` over objects of schema pgjobs owned by a role whose rights
the migrating role lacks (an `ALTER FUNCTION ... OWNER TO` by hand, a restore
as another role). Migrate replaces every routine and grants on every table,
which only an owner may: it failed halfway with PostgreSQL's bare "must be
owner of function ..." (42501), after yoyo's pending migrations had committed.
It now asks first (pgjobs.migrate.check_ownership) and refuses before it
changes anything, naming every such object, its owner, and in the hint the
statements that give them back; `pgjobs doctor` reports the same drift as
engine.ownership."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from pgjobs.cli.main import main
from pgjobs.errors import PgjobsError
from pgjobs.migrate import migrate, sql_dir
from tests.support import with_database

Installed = tuple[str, str, str]  # (the migrating role's DSN, the superuser's, the role)

# What a migrate changes when it applies: every routine's body, settings,
# owner and grants, every relation's owner and grants, yoyo's record.
CATALOG = """
SELECT (SELECT string_agg(format('%s|%s|%s|%s|%s', p.oid::regprocedure, md5(p.prosrc),
                                 p.proconfig, p.proowner::regrole, p.proacl), E'\\n'
                          ORDER BY p.oid::regprocedure::text)
          FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace) AS routines,
       (SELECT string_agg(format('%s|%s|%s', c.oid::regclass, c.relowner::regrole, c.relacl),
                          E'\\n' ORDER BY c.oid::regclass::text)
          FROM pg_class c WHERE c.relnamespace = 'pgjobs'::regnamespace) AS relations,
       (SELECT string_agg(migration_id, ',' ORDER BY migration_id)
          FROM pgjobs._yoyo_migration) AS migrations
"""


@pytest.fixture
def installed(cluster_url: str) -> Iterator[Installed]:
    """pgjobs migrated into a new database by its owner, a role that is no
    superuser (CREATEROLE, as docs/operations.md asks), and another role,
    `<role>_other`, that the migrating role is no member of."""
    role, name = f"own_{os.getpid()}", f"pgjobs_own_{os.getpid()}"
    other = f"{role}_other"
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEROLE").format(
            sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(other)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(role)))
    superuser = with_database(cluster_url, name)
    dsn = superuser + f" user={role}"
    migrate(dsn)
    yield dsn, superuser, role
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        for each in (other, role):
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(each)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(each)))


def as_superuser(installed: Installed, *statements: str) -> None:
    with psycopg.connect(installed[1], autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement.encode())


def catalog(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute(CATALOG).fetchone()
    assert row is not None
    return row


def start_a_delete(dsn: str) -> int:
    """A delete of 30 rows in pages of 10, one page done: a job in flight."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.items (id bigint PRIMARY KEY, scope int NOT NULL,"
                     " created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')")
        conn.execute("CREATE INDEX ON app.items (scope, id)")
        conn.execute("INSERT INTO app.items (id, scope) SELECT g, 1 FROM generate_series(1, 30) g")
        conn.execute("SELECT pgjobs.register_target('app.items', 'id', 'scope', 'created_at')")
        row: Any = conn.execute("SELECT pgjobs.submit_delete('app.items', '1', '{}', '{}',"
                                " '{\"page_size\": 10}')").fetchone()
        return int(row[0])


def run_to_the_end(dsn: str, job_id: int) -> tuple[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(20):
            status: Any = conn.execute("SELECT status FROM pgjobs.jobs WHERE id = %s",
                                       (job_id,)).fetchone()
            if status[0] not in ("queued", "running"):
                break
            conn.execute("CALL pgjobs.run('10s')")
        row: Any = conn.execute("SELECT j.status, (SELECT count(*) FROM app.items)"
                                "  FROM pgjobs.jobs j WHERE j.id = %s", (job_id,)).fetchone()
        return row[0], int(row[1])


DRIFT = ("ALTER FUNCTION pgjobs.cancel(bigint) OWNER TO {other}",
         "ALTER TABLE pgjobs.job_batches OWNER TO {other}",
         "ALTER PROCEDURE pgjobs.run(interval) OWNER TO {other}")


def drift(installed: Installed) -> str:
    other = f"{installed[2]}_other"
    as_superuser(installed, *(s.format(other=other) for s in DRIFT))
    return other


def test_migrate_refuses_up_front_naming_every_object_and_changes_nothing(
        installed: Installed, tmp_path: Path) -> None:
    dsn, _, role = installed
    job_id = start_a_delete(dsn)
    other = drift(installed)
    # Something the migrate would set back, were it to apply anything: a
    # routine's settings (CREATE OR REPLACE takes the file's) and a grant
    # (zz_grants.sql gives pgjobs_admin EXECUTE on every routine).
    as_superuser(installed, "ALTER FUNCTION pgjobs.stats() SET work_mem = '1MB'",
                 "REVOKE EXECUTE ON FUNCTION pgjobs.stats() FROM pgjobs_admin")
    # And a migration to apply: this version's sql/ tree with one more.
    root = tmp_path / "sql"
    shutil.copytree(sql_dir(), root)
    (root / "migrations" / "9999.pending.sql").write_text(
        "CREATE TABLE pgjobs.pending_h172 (id int);\n", encoding="utf-8")
    before = catalog(dsn)

    with pytest.raises(PgjobsError) as caught:
        migrate(dsn, root)
    error = caught.value
    assert error.sqlstate == "42501"
    assert error.message == (
        f"pgjobs migrate cannot change 3 object(s) of schema pgjobs owned by a role whose "
        f"rights {role} does not have: table pgjobs.job_batches (owner {other}), function "
        f"pgjobs.cancel(bigint) (owner {other}), procedure pgjobs.run(interval) (owner "
        f"{other}); nothing was applied"), error.message
    assert error.hint is not None
    assert error.hint.startswith(
        f"as a superuser (or the owner), give them back to the role that migrates: "
        f"ALTER TABLE pgjobs.job_batches OWNER TO {role}; ALTER FUNCTION pgjobs.cancel(bigint) "
        f"OWNER TO {role}; ALTER PROCEDURE pgjobs.run(interval) OWNER TO {role}; or run "
        f"pgjobs migrate as {other} (or a role with its rights, or a superuser)"), error.hint
    assert catalog(dsn) == before  # nothing applied, not even the pending migration

    # The hint's statements, run as a superuser, are the whole fix.
    as_superuser(installed, *error.hint.split(": ", 1)[1].split("; or run")[0].split("; "))
    migrate(dsn, root)
    after = catalog(dsn)
    assert after["migrations"] == before["migrations"] + ",9999.pending"  # applied now
    assert run_to_the_end(dsn, job_id) == ("succeeded", 0)


def test_after_the_refusal_jobs_in_flight_still_run(installed: Installed) -> None:
    dsn, _, _ = installed
    job_id = start_a_delete(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL pgjobs.run('10s')")  # whatever it did, it goes on below
    as_superuser(installed, f"ALTER FUNCTION pgjobs.cancel(bigint) OWNER TO {installed[2]}_other")
    with pytest.raises(PgjobsError):
        migrate(dsn)
    assert run_to_the_end(dsn, job_id) == ("succeeded", 0)


def test_the_cli_prints_one_line_with_the_hint(installed: Installed) -> None:
    dsn, _, role = installed
    other = drift(installed)
    result = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pgjobs migrate cannot change 3 "
                                                   "object(s) of schema pgjobs"), lines
    assert f"function pgjobs.cancel(bigint) (owner {other})" in lines[0]
    assert "[42501] (hint: as a superuser" in lines[0]
    assert f"ALTER FUNCTION pgjobs.cancel(bigint) OWNER TO {role};" in lines[0]


def test_a_superuser_migrates_over_them(installed: Installed) -> None:
    """A superuser has every role's rights: nothing to refuse."""
    drift(installed)
    assert migrate(installed[1])["functions_applied"]


def test_a_member_of_the_owner_migrates(installed: Installed) -> None:
    """Rights, not names: a role that inherits the owner's rights may replace."""
    other = drift(installed)
    as_superuser(installed, f"GRANT {other} TO {installed[2]}")
    assert migrate(installed[0])["functions_applied"]


def doctor(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM pgjobs.doctor() WHERE check_name ="
                            " 'engine.ownership'").fetchall()


def test_doctor_reports_the_drift_with_the_fix(installed: Installed) -> None:
    dsn, _, role = installed
    [ok] = doctor(dsn)
    assert ok["status"] == "ok" and ok["fix"] is None, ok
    other = drift(installed)
    [found] = doctor(dsn)
    assert found["status"] == "warn"
    assert found["detail"] == (
        f"objects of schema pgjobs are owned by a role whose rights its owner {role} does not "
        f"have: table pgjobs.job_batches (owner {other}), function pgjobs.cancel(bigint) (owner "
        f"{other}), procedure pgjobs.run(interval) (owner {other}); pgjobs migrate as {role} "
        "refuses (42501) until they are given back"), found
    assert found["fix"].startswith(
        f"as a superuser (or each object's owner): ALTER TABLE pgjobs.job_batches OWNER TO {role}; "
        f"ALTER FUNCTION pgjobs.cancel(bigint) OWNER TO {role}; ALTER PROCEDURE "
        f"pgjobs.run(interval) OWNER TO {role};"), found
    as_superuser(installed, found["fix"].split(": ", 1)[1])  # its SQL, as given, fixes it
    assert doctor(dsn)[0]["status"] == "ok"
    migrate(dsn)


def test_doctor_and_migrate_judge_alike(installed: Installed) -> None:
    """The doctor's SQL (pgjobs._doctor_ownership) and migrate's query
    (queries.FOREIGN_OWNED) read the same catalog: for the schema's owner they
    name the same objects, here of every kind either reads."""
    from pgjobs import queries

    dsn, _, role = installed
    other = drift(installed)
    as_superuser(installed,
                 "CREATE SEQUENCE pgjobs.h172_seq", "CREATE VIEW pgjobs.h172_view AS SELECT 1",
                 "CREATE TYPE pgjobs.h172_enum AS ENUM ('a')",
                 "CREATE TYPE pgjobs.h172_pair AS (a int)",
                 "CREATE DOMAIN pgjobs.h172_domain AS int",
                 *(f"ALTER {kind} pgjobs.h172_{name} OWNER TO {other}"
                   for kind, name in (("SEQUENCE", "seq"), ("VIEW", "view"), ("TYPE", "enum"),
                                      ("TYPE", "pair"), ("DOMAIN", "domain"))))
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        named = conn.execute(queries.FOREIGN_OWNED, {"role": role}).fetchall()
    [found] = doctor(dsn)
    listed = ", ".join(f"{r['kind'].lower()} {r['name']} (owner {r['owner']})" for r in named)
    assert len(named) == 8 and f": {listed}; pgjobs migrate" in found["detail"], (named, found)
    assert {r["name"] for r in named} >= {"pgjobs.h172_seq", "pgjobs.h172_view",
                                           "pgjobs.h172_enum", "pgjobs.h172_pair",
                                           "pgjobs.h172_domain"}
