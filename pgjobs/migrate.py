"""``pgjobs migrate``: yoyo migrations for state, then every function file.

Order of work, under one session-level advisory lock so two concurrent
runs serialize instead of racing:

1. ``sql/migrations`` through yoyo (its bookkeeping tables live in schema
   ``pgjobs``, not ``public``);
2. every file of ``sql/functions`` in name order, in one transaction, so
   clients never see half of a new version; ``zz_grants.sql`` sorts last.
   A routine whose file changes its return type, OUT columns, an input
   parameter's name or removes a default (which CREATE OR REPLACE refuses,
   42P13) is dropped and created again in that transaction
   (:func:`apply_function_file`).
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pgjobs import db, queries
from pgjobs.errors import PgjobsError, has_generic_privilege_hint

if TYPE_CHECKING:
    from pgjobs.db import Connection


def sql_dir() -> Path:
    """The ``sql/`` folder shipped inside the package (works outside the repo)."""
    return Path(str(resources.files("pgjobs.sql")))


def function_files(root: Path | None = None) -> list[Path]:
    return sorted(((root or sql_dir()) / "functions").glob("*.sql"))


def migration_files(root: Path | None = None) -> list[Path]:
    return sorted(((root or sql_dir()) / "migrations").glob("*.sql"))


def yoyo_uri(dsn: str) -> str:
    """A yoyo URI for the psycopg 3 backend, from any libpq DSN or URL."""
    from psycopg.conninfo import conninfo_to_dict  # here: importing this module is cheap

    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    dbname = params.pop("dbname", "") or params.get("user", "")
    params["schema"] = "pgjobs"
    return f"postgresql+psycopg:///{quote(dbname, safe='')}?{urlencode(params)}"


def apply_migrations(dsn: str, root: Path | None = None) -> list[str]:
    """Apply pending yoyo migrations; return the ids applied. Called only under
    pgjobs' migrate lock (queries.MIGRATE_LOCK), which every release's migrate
    takes: a row in yoyo's own lock table then belongs to a run that died
    (SIGKILL, a lost connection) before it deleted it, and is cleared; it
    failed every later migrate ('Process N has locked this database')."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_uri(dsn), migration_table="_yoyo_migration")
    migrations = read_migrations(str((root or sql_dir()) / "migrations"))
    try:
        with warnings.catch_warnings():
            # yoyo warns about nested transactions on its autocommit connection.
            warnings.simplefilter("ignore")
            backend.break_lock()
            with backend.lock():
                pending = backend.to_apply(migrations)
                backend.apply_migrations(pending)
    finally:
        backend.connection.close()  # also when a migration is refused
    return [m.id for m in pending]


MIGRATE_PRIVILEGES_HINT = (
    "pgjobs migrate needs, as the role it connects as, CREATE on the database (its owner "
    "has it) and CREATEROLE or ADMIN OPTION on pgjobs_client; no superuser, and no "
    "membership of pgjobs_client or pgjobs_admin helps (docs/operations.md, \"Privileges "
    "migrate needs\")")


def migrate(dsn: str, root: Path | None = None) -> dict[str, object]:
    """Bring the database to this version of pgjobs (or to the ``sql/`` tree at
    ``root``: the upgrade test installs the previous release so). Idempotent;
    safe concurrently. A privilege PostgreSQL refuses (42501 without a hint of
    its own) gets :data:`MIGRATE_PRIVILEGES_HINT`: the generic one told a role
    without CREATE on the database to be granted pgjobs_client."""
    try:
        return _migrate(dsn, root)
    except PgjobsError as exc:
        if has_generic_privilege_hint(exc):
            exc.hint = MIGRATE_PRIVILEGES_HINT
        raise


def _migrate(dsn: str, root: Path | None) -> dict[str, object]:
    conn = db.connect(dsn, app="pgjobs migrate")
    try:
        # The function files' DO blocks run here, as pgjobs' owner: nothing they
        # call may resolve on the login's path (yoyo's connection reads `pgjobs`).
        db.execute(conn, queries.RUN_SEARCH_PATH)
        db.execute(conn, queries.MIGRATE_LOCK)
        try:
            db.execute(conn, queries.CREATE_SCHEMA)
            with db.translated():  # yoyo's own connection: one line with the SQLSTATE too
                applied = apply_migrations(dsn, root)
            files = function_files(root)
            replaced: list[str] = []
            with db.translated(), conn.transaction():
                for path in files:
                    replaced += apply_function_file(conn, path)
        finally:
            db.execute(conn, queries.MIGRATE_UNLOCK)
    finally:
        conn.close()
    return {"migrations_applied": applied, "functions_applied": len(files),
            "functions_replaced": replaced}


REPLACED_HINT = (
    "pgjobs migrate drops a pgjobs routine whose signature changed only when nothing depends "
    "on it: drop the objects named (DROP VIEW ..., DROP POLICY ..., ALTER TABLE ... ALTER "
    "COLUMN ... DROP DEFAULT), run pgjobs migrate, then create them again; a pgjobs release "
    "whose own objects depend on such a routine drops and recreates them in a migration "
    "(docs/operations.md, \"Upgrading\")")


def apply_function_file(conn: Connection, path: Path) -> list[str]:
    """Run one function file in a savepoint of the functions' transaction. When
    PostgreSQL refuses its CREATE OR REPLACE (42P13: another return type or OUT
    columns, an input parameter renamed, a default removed), the installed
    routine its hint names (of schema pgjobs, named after the file) is dropped
    with RESTRICT, the file runs again, and the routine gets back its owner and
    grants, as CREATE OR REPLACE would have kept them (zz_grants.sql, last, then
    sets the version's). Something depending on it (a view, a policy, a default:
    2BP01) refuses the migrate: the caller's transaction rolls back, nothing is
    applied. Returns the routines dropped."""
    text = path.read_text(encoding="utf-8").encode()
    dropped: list[dict[str, Any]] = []
    while True:
        try:
            with db.translated(), conn.transaction():
                conn.execute(text)
            break
        except PgjobsError as exc:
            routine = _refused_routine(conn, path.stem, exc)
            if routine is None or any(d["oid"] == routine["oid"] for d in dropped):
                raise
            _drop(conn, routine, exc)
            dropped.append(routine)
    for routine in dropped:
        for statement in (routine["revoke"], routine["owner"], *routine["grants"]):
            if statement is not None:
                db.execute(conn, statement)
    return [d["routine"] for d in dropped]


def _refused_routine(conn: Connection, name: str, exc: PgjobsError) -> dict[str, Any] | None:
    """The installed routine whose replacement ``exc`` refused, or None when
    ``exc`` is no such refusal (42P13 also says a body is wrong)."""
    if exc.sqlstate != "42P13" or not exc.hint:
        return None
    found = db.rows(conn, queries.REPLACED_ROUTINE, {"name": name, "hint": exc.hint})
    return found[0] if found else None


def _drop(conn: Connection, routine: dict[str, Any], refusal: PgjobsError) -> None:
    """Drop ``routine`` (RESTRICT), or refuse the migrate naming what depends on it."""
    try:
        with conn.transaction():
            db.execute(conn, routine["drop"])
    except PgjobsError as exc:
        if exc.sqlstate != "2BP01":
            raise
        dependants = db.scalar(conn, queries.ROUTINE_DEPENDANTS, {"oid": routine["oid"]})
        raise PgjobsError(
            f"pgjobs migrate cannot replace {routine['routine']} ({refusal.message}): "
            f"dropping it would drop {dependants or 'objects that depend on it'}; "
            "nothing was applied", sqlstate="2BP01", hint=REPLACED_HINT) from exc
