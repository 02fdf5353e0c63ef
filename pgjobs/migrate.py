"""``pgjobs migrate``: yoyo migrations for state, then every function file.

Order of work, under one session-level advisory lock so two concurrent
runs serialize instead of racing:

1. ``sql/migrations`` through yoyo (its bookkeeping tables live in schema
   ``pgjobs``, not ``public``);
2. every file of ``sql/functions`` in name order, in one transaction, so
   clients never see half of a new version; ``zz_grants.sql`` sorts last.
   A routine whose file changes what CREATE OR REPLACE cannot (its kind, its
   return type, OUT columns, an input parameter's name, a default removed:
   :data:`REFUSALS`) is dropped and created again in that transaction
   (:func:`apply_function_file`).
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pgjobs import db, queries
from pgjobs.errors import PermissionDenied, PgjobsError, has_generic_privilege_hint

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
    params["client_encoding"] = db.CLIENT_ENCODING  # as every pgjobs session (db.connect)
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
            check_ownership(conn)  # before anything changes: nothing half done
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


def check_ownership(conn: Connection) -> None:
    """Refuse (42501, nothing applied) when an object of schema pgjobs is owned
    by a role whose rights the migrating role lacks (queries.FOREIGN_OWNED):
    migrate replaces every routine and grants on every table, which only an
    owner may, so such an object (an `ALTER FUNCTION ... OWNER TO` by hand, a
    restore as another role) failed it halfway with PostgreSQL's bare "must be
    owner of function ...", after the pending migrations had committed. The
    error names every such object and its owner; the hint gives the statements
    that hand them back."""
    found = db.rows(conn, queries.FOREIGN_OWNED, {"role": None})
    if not found:
        return
    role = found[0]["role"]
    owners = sorted({row["owner"] for row in found})
    objects = ", ".join(f"{row['kind'].lower()} {row['name']} (owner {row['owner']})"
                        for row in found)
    fixes = "; ".join(row["fix"] for row in found)
    raise PermissionDenied(
        f"pgjobs migrate cannot change {len(found)} object(s) of schema pgjobs owned by a "
        f"role whose rights {role} does not have: {objects}; nothing was applied",
        hint=f"as a superuser (or the owner), give them back to the role that migrates: "
             f"{fixes}; or run pgjobs migrate as {', '.join(owners)} (or a role with its "
             "rights, or a superuser); `pgjobs doctor` reports this as engine.ownership "
             "(docs/operations.md, \"Privileges migrate needs\")")


REPLACED_HINT = (
    "pgjobs migrate drops a pgjobs routine whose signature changed only when nothing depends "
    "on it: drop the objects named (DROP VIEW ..., DROP POLICY ..., ALTER TABLE ... ALTER "
    "COLUMN ... DROP DEFAULT), run pgjobs migrate, then create them again; a pgjobs release "
    "whose own objects depend on such a routine drops and recreates them in a migration "
    "(docs/operations.md, \"Upgrading\")")


# What PostgreSQL 15 answers when a function file's statement cannot apply
# to the routine installed under its name and input types: 42P13 when CREATE
# OR REPLACE would change what it keeps (the return type, SETOF or not, the
# OUT or INOUT columns, whether a procedure has output parameters, an input
# parameter's name, a default removed or its type changed); 42809 when it
# would change the routine's kind (a function that became a procedure, or the
# reverse, an aggregate or window function of the same signature) or a
# statement names a routine of the other kind (DROP FUNCTION IF EXISTS of an
# old signature installed as a procedure). One class: the routine is dropped
# and the file runs again. Anything else (a wrong body, a privilege) fails.
REFUSALS = frozenset({"42P13", "42809"})


def apply_function_file(conn: Connection, path: Path) -> list[str]:
    """Run one function file in a savepoint of the functions' transaction. When
    PostgreSQL refuses one of its statements for what the installed routine is
    (:data:`REFUSALS`), that routine (of schema pgjobs, :func:`_refused_routines`)
    is dropped with RESTRICT, the file runs again, and a routine the file
    created again gets back its owner, grants and comment, as CREATE OR REPLACE
    would have kept them (zz_grants.sql, last, then sets the version's grants; a
    comment of the file's own wins). Something depending on it (a view, a
    policy, a default: 2BP01) refuses the migrate: the caller's transaction
    rolls back, nothing is applied. Returns the routines dropped and created
    again."""
    text = path.read_text(encoding="utf-8")
    dropped: list[dict[str, Any]] = []
    while True:
        try:
            with db.translated(), conn.transaction():
                conn.execute(text.encode())
            break
        except PgjobsError as exc:
            routines = _refused_routines(conn, path.stem, text, exc)
            if not routines or any(d["oid"] == r["oid"] for d in dropped for r in routines):
                raise
            for routine in routines:
                _drop(conn, routine, exc)
            dropped += routines
    replaced: list[str] = []
    for routine in dropped:
        found = db.one(conn, queries.RECREATED, {"routine": routine["routine"]})
        if not found["recreated"]:  # the file's own DROP of an old signature
            continue
        comment = None if found["commented"] else routine["comment"]
        for statement in (routine["revoke"], routine["owner"], *routine["grants"], comment):
            if statement is not None:
                db.execute(conn, statement)
        replaced.append(routine["routine"])
    return replaced


def _refused_routines(conn: Connection, name: str, text: str,
                      exc: PgjobsError) -> list[dict[str, Any]]:
    """The installed routines whose shape ``exc`` refused (:data:`REFUSALS`):
    the one the refusal names by its signature, else (a change of kind, whose
    detail gives only the name) those :func:`_created_as_another_kind` finds.
    Empty when ``exc`` is no such refusal (42P13 also says a body is wrong)."""
    if exc.sqlstate not in REFUSALS:
        return []
    found = db.rows(conn, queries.NAMED_ROUTINE, {
        "name": name, "file": text, "text": f"{exc.message}\n{exc.hint or ''}"})
    if found or exc.sqlstate != "42809":
        return found
    return _created_as_another_kind(conn, name, text)


class _Probed(Exception):
    """Rolls the probe's savepoint back (:func:`_created_as_another_kind`)."""


def _created_as_another_kind(conn: Connection, name: str, text: str) -> list[dict[str, Any]]:
    """The routines named after the file that it creates again, under the same
    input types, as another kind. A probe, undone: in a savepoint the routines
    named after the file are renamed aside (a rename keeps what depends on
    them), the file runs, and each is compared with what the file created in
    its place. Empty when the file fails even so (the refusal was not theirs)."""
    routines = [r for r in db.rows(conn, queries.FILE_ROUTINES, {"name": name, "file": text})
                if r["name"] == name]  # what "cannot change routine kind" names
    oids: list[int] = []
    try:
        with conn.transaction():
            for routine in routines:
                db.execute(conn, routine["aside"])
            try:
                with db.translated(), conn.transaction():
                    conn.execute(text.encode())
            except PgjobsError:
                raise _Probed from None
            oids = [row["oid"] for row in db.rows(conn, queries.CREATED_AS_ANOTHER_KIND, {
                "name": name, "oids": [r["oid"] for r in routines]})]
            raise _Probed
    except _Probed:
        pass
    return [r for r in routines if r["oid"] in oids]


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
