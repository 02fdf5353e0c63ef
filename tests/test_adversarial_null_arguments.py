"""An adversarial pass on unset arguments: a SQL NULL in any argument of a
client entry point is refused with 22023 and a hint, before anything is
written; it is never read as the argument's default.

An application that builds a call from a request passes NULL for a value
the request left out. Read as a default, NULL changes what a job does
without anyone having asked: a NULL filter read as `{}` selected the whole
scope (refused since), and a NULL `exclude` read as `'{}'` deleted the very
rows a "select all except these" delete was told to keep: the list of keys
to keep came out unset, and `submit_delete` and `preview` took it as "keep
none". The one NULL with a documented meaning is `visible`'s `p_after`
(start at the first key).

The same holds one level down, for an option written as JSON `null`
(`{"columns": null}`, what a request's unset field serialises to): every
documented option of every submit refuses it rather than take its default.
Export's `columns` and `destination` took null as "not given": an unset
column list exported every column, an unset destination wrote to the
worker's storage.

The calls are enumerated from the catalog: every function of schema pgjobs
that pgjobs_client may execute and that is not internal must have a valid
call below, so a new entry point is covered (or this test fails naming it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import CLIENT_SOURCE_PREFIX

Conn = psycopg.Connection[Any]

T = "'user_table_rows'::regclass"

# A valid call's arguments, as SQL; :items and :job are job ids made below.
VALID: dict[str, list[str]] = {
    "add_items": [":items", "'[{\"b\": 1}]'"],
    "allowed_scopes_literal": ["ARRAY['1']"],
    "cancel": [":job"],
    "canonical_scope": [T, "'01'"],
    "channel": [T, "'1'"],
    "client_room": [],
    "controllable": ["ARRAY[:job]::bigint[]"],
    "mask": [T, "'1'"],
    "pause": [":job"],
    "preview": [T, "'1'", "'{\"n\": 1}'", "'{3}'", "'{}'"],
    "resume": [":job"],
    "retry": [":job"],
    "stats": [],
    "submit": ["'resize'", T, "'1'", "'{}'", "'{}'"],
    "submit_backfill": [T, "'1'", "'{\"n\": 1}'", "'{\"label\": \"x\"}'", "'{}'"],
    "submit_delete": [T, "'1'", "'{\"n\": 1}'", "'{3}'", "'{}'"],
    "submit_export": [T, "'1'", "'{}'", "'{}'"],
    "submit_import": [T, "'1'", f"'{CLIENT_SOURCE_PREFIX}/a.csv'", "'{}'"],
    "submit_items": ["'resize'", T, "'1'", "'[{\"a\": 1}]'", "'{}'"],
    "visible": [T, "'1'", "'{}'", "NULL", "10"],
    "visible_count": [T, "'1'", "'{}'"],
}

# NULL with a documented meaning: (function, argument position).
MEANINGFUL = {("visible", 3)}  # p_after: start at the first key

NAMES = sorted(name for name, args in VALID.items() if args)


@pytest.fixture
def client(conn: Conn, client_roles: dict[str, str]) -> Iterator[tuple[str, dict[str, int]]]:
    role = client_roles["client"]
    conn.execute(f"SET ROLE {role}")
    try:
        ids = {"items": scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                     "'2', '[{\"a\": 1}]')"),
               "job": scalar(conn, "SELECT pgjobs.submit('resize', 'user_table_rows', '2')")}
    finally:
        conn.execute("RESET ROLE")
    yield role, ids


def _call(name: str, args: list[str], ids: dict[str, int]) -> str:
    text = ", ".join(args).replace(":items", str(ids["items"])).replace(":job", str(ids["job"]))
    return f"SELECT pgjobs.{name}({text})"


def _written(conn: Conn) -> Any:
    return (scalar(conn, "SELECT count(*) FROM pgjobs.jobs"),
            scalar(conn, "SELECT count(*) FROM pgjobs.job_items"),
            scalar(conn, "SELECT string_agg(status || coalesce(cancel_requested_at::text, '')"
                         " || coalesce(pause_requested_at::text, ''), ',' ORDER BY id)"
                         " FROM pgjobs.jobs"),
            scalar(conn, "SELECT md5(string_agg(t::text, ',' ORDER BY id))"
                         " FROM user_table_rows t"))


def test_every_client_entry_point_has_a_valid_call(conn: Conn) -> None:
    entry_points = {r[0] for r in conn.execute(
        "SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'pgjobs' AND p.proname !~ '^_'"
        "   AND has_function_privilege('pgjobs_client', p.oid, 'EXECUTE')")}
    assert entry_points == set(VALID)
    for name, args in VALID.items():
        arity = {r[0] for r in conn.execute(
            "SELECT p.pronargs FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace"
            " AND p.proname = %s", (name,))}
        assert len(args) in arity, name


@pytest.mark.parametrize("name", NAMES)
def test_a_null_argument_is_refused_not_read_as_its_default(
        conn: Conn, client: tuple[str, dict[str, int]], name: str) -> None:
    role, ids = client
    failures = []
    for position in range(len(VALID[name])):
        if (name, position) in MEANINGFUL:
            continue
        args = list(VALID[name])
        args[position] = "NULL"
        before = _written(conn)
        conn.execute(f"SET ROLE {role}")
        try:
            conn.execute(_call(name, args, ids))
            refused = None
        except psycopg.Error as error:
            refused = error
        finally:
            conn.execute("RESET ROLE")
        if refused is None:
            failures.append(f"argument {position + 1} NULL: taken")
        elif refused.sqlstate != "22023" or not (refused.diag.message_hint or "").strip():
            failures.append(f"argument {position + 1} NULL: {refused.sqlstate} {refused}")
        if _written(conn) != before:
            failures.append(f"argument {position + 1} NULL: something was written")
    assert not failures, "\n".join(failures)


# Every documented option of each submit (docs/sql.md, docs/exports.md,
# docs/imports.md, docs/fanout.md, docs/engine.md), as JSON null.
OPTIONS: dict[str, tuple[str, list[str]]] = {
    "submit_delete": (
        "SELECT pgjobs.submit_delete('user_table_rows', '1', '{\"n\": 1}', '{}', %s)",
        ["priority", "max_attempts", "run_at", "on_conflict", "lease", "page_size",
         "page_ms", "strategy", "allow_unknown_fields", "max_rows_per_second", "page_delay",
         "max_replica_lag_bytes", "max_wal_rate", "pause_on_autovacuum"]),
    "submit_backfill": (
        "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{\"n\": 1}', "
        "'{\"label\": \"x\"}', %s)",
        ["priority", "max_attempts", "run_at", "on_conflict", "allow_unknown_fields",
         "replace_non_objects", "page_size", "max_rows_per_second"]),
    "submit_export": (
        "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', %s)",
        ["format", "columns", "gzip", "destination", "parallel", "priority", "max_attempts",
         "run_at", "allow_unknown_fields"]),
    "submit_import": (
        "SELECT pgjobs.submit_import('user_table_rows', '1', "
        f"'{CLIENT_SOURCE_PREFIX}/a.csv', %s)",
        ["format", "gzip", "on_duplicate", "max_rejects", "replace_non_objects",
         "allow_unknown_fields", "priority", "run_at"]),
    "submit_items": (
        "SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', '[{\"a\": 1}]', %s)",
        ["concurrency", "priority", "max_attempts", "run_at"]),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_an_option_given_as_json_null_is_refused_not_read_as_its_default(
        conn: Conn, client: tuple[str, dict[str, int]], name: str) -> None:
    role, _ = client
    sql, options = OPTIONS[name]
    failures = []
    for option in options:
        before = _written(conn)
        conn.execute(f"SET ROLE {role}")
        try:
            conn.execute(sql, (f'{{"{option}": null}}',))
            refused = None
        except psycopg.Error as error:
            refused = error
        finally:
            conn.execute("RESET ROLE")
        if refused is None:
            failures.append(f'{{"{option}": null}}: taken')
        elif refused.sqlstate != "22023" or not (refused.diag.message_hint or "").strip():
            failures.append(f'{{"{option}": null}}: {refused.sqlstate} {refused}')
        if _written(conn) != before:
            failures.append(f'{{"{option}": null}}: something was written')
    assert not failures, "\n".join(failures)
