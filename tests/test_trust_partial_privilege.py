"""A client holding some privilege on a table, but not the one its call needs,
learns nothing of the registry (BQ's follow-up).

Found: pgjobs._target refused a caller with NO privilege on the table alike
for a registered and an unregistered one, but a caller with any privilege
(INSERT alone, SELECT without DELETE, UPDATE on one column, REFERENCES) was
told "table ... is not registered with pgjobs" (22023) for a table pgjobs
never saw and "role ... lacks DELETE on ..." (42501) for a registered one:
e.g. as a role with SELECT only,

    SELECT pgjobs.submit_delete('public.surf_reg', '1');    -- 42501 lacks DELETE
    SELECT pgjobs.submit_delete('public.surf_unreg', '1');  -- 22023 not registered

Now every entry decides the privileges its call needs from the call alone
(pgjobs._entry_privilege, or the kind / options it was given) and asks them
before the registry is read (pgjobs._require_entry, from pgjobs._target and
pgjobs._target_recent): permission before existence, as in PostgreSQL.

One test per privilege subset (the grants are the fixture's), each over every
client function that takes a target (and the option variants that change
what the call needs) on both pairs of tables: registered / never registered,
and the same with row security (the registered one ignore_row_security).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed, submit_delete
from tests.support.roles import acting_as
from tests.test_trust_definer_surface import CLIENT, HIDDEN, TARGET_CALLS, _answer, world

__all__ = ["world"]  # the fixture, shared with test_trust_definer_surface

Conn = psycopg.Connection[Any]

CALLS = {
    **TARGET_CALLS,
    "preview_backfill": """SELECT pgjobs.preview({t}, '1', '{{}}', '{{}}',
                                                  '{{"kind": "backfill"}}')""",
    "submit_import_update": """SELECT pgjobs.submit_import({t}, '1', 'file:///nowhere/x.csv',
                                                           '{{"on_duplicate": "update"}}')""",
    "submit_export_columns": """SELECT pgjobs.submit_export({t}, '1', '{{}}',
                                                            '{{"columns": ["id"]}}')""",
}

# What each call needs, from the call alone (the contract, docs/security.md):
# table-level privileges, except an import's: INSERT (UPDATE, SELECT) on some
# column. None: the call reads no registration a client could tell apart.
NEEDS: dict[str, tuple[frozenset[str], bool] | None] = {
    "submit": (frozenset({"UPDATE"}), False),
    "submit_items": (frozenset({"UPDATE"}), False),
    "submit_delete": (frozenset({"DELETE", "SELECT"}), False),
    "submit_backfill": (frozenset({"UPDATE", "SELECT"}), False),
    "submit_export": (frozenset({"SELECT"}), False),
    "submit_export_columns": (frozenset({"SELECT"}), False),
    "submit_import": (frozenset({"INSERT"}), True),
    "submit_import_update": (frozenset({"INSERT", "UPDATE", "SELECT"}), True),
    "visible": (frozenset({"SELECT"}), False),
    "visible_count": (frozenset({"SELECT"}), False),
    "mask": (frozenset({"SELECT"}), False),
    "channel": (frozenset({"SELECT"}), False),
    # Canonical on a target the caller may read (or has jobs on); as given,
    # '01', for any other, registered or not.
    "canonical_scope": (frozenset({"SELECT"}), False),
    "preview": (frozenset({"DELETE", "SELECT"}), False),
    "preview_backfill": (frozenset({"UPDATE", "SELECT"}), False),
    "_gate_holder": (frozenset({"SELECT"}), False),  # jobs as the caller (policy)
    "_visible_page": (frozenset({"SELECT"}), False),  # NULL: nothing told either way
    "_row_security_confines": (frozenset({"SELECT"}), False),
}

# The column privilege "SELECT on every column of the table", granted column
# by column (the tables of HIDDEN: id, s, v, data, created_at).
EVERY_COLUMN = "SELECT (id, s, v, data, created_at)"

# Privilege subsets: (table-level privileges, column-level privileges on
# column v, or EVERY_COLUMN), each granted on all four tables of HIDDEN.
SUBSETS = {
    "none": ((), ()),
    "select": (("SELECT",), ()),
    "insert": (("INSERT",), ()),
    "update": (("UPDATE",), ()),
    "delete": (("DELETE",), ()),
    "truncate": (("TRUNCATE",), ()),
    "references": (("REFERENCES",), ()),
    "select_update": (("SELECT", "UPDATE"), ()),
    "select_delete": (("SELECT", "DELETE"), ()),
    "update_delete": (("UPDATE", "DELETE"), ()),
    "insert_update": (("INSERT", "UPDATE"), ()),
    "select_insert": (("SELECT", "INSERT"), ()),
    "column_select": ((), ("SELECT",)),
    "column_insert": ((), ("INSERT",)),
    "column_update": ((), ("UPDATE",)),
    "column_select_update": ((), ("SELECT", "UPDATE")),
    "delete_column_select": (("DELETE",), ("SELECT",)),
    # SELECT granted on every column (EVERY_COLUMN), no table-wide SELECT:
    # it reads the table as a table grant does (h146), so it counts as one.
    "every_column_select": ((), (EVERY_COLUMN,)),
    "delete_every_column_select": (("DELETE",), (EVERY_COLUMN,)),
    "update_every_column_select": (("UPDATE",), (EVERY_COLUMN,)),
    "insert_every_column_select": (("INSERT",), (EVERY_COLUMN,)),
}


def _holds(entry: str, table: tuple[str, ...], column: tuple[str, ...]) -> bool:
    need = NEEDS[entry]
    assert need is not None
    privileges, any_column = need
    held = set(table) | (set(column) - {EVERY_COLUMN} if any_column else set())
    if EVERY_COLUMN in column:
        held |= {"SELECT"}
    return privileges <= held


def _grant_columns(conn: Conn, table: str, column_privileges: tuple[str, ...]) -> None:
    for privilege in column_privileges:
        if privilege == EVERY_COLUMN:
            conn.execute(f"GRANT {EVERY_COLUMN} ON {table} TO {CLIENT}")
        else:
            conn.execute(f"GRANT {privilege} (v) ON {table} TO {CLIENT}")


def test_every_target_call_is_covered() -> None:
    assert set(TARGET_CALLS) <= set(CALLS) == set(NEEDS)


@pytest.mark.parametrize("subset", sorted(SUBSETS))
def test_lacking_the_calls_privilege_tells_registered_from_unknown_nothing(
        conn: Conn, world: int, subset: str) -> None:
    table_privileges, column_privileges = SUBSETS[subset]
    for table in HIDDEN:
        if table_privileges:
            conn.execute(f"GRANT {', '.join(table_privileges)} ON {table} TO {CLIENT}")
        _grant_columns(conn, table, column_privileges)
    conn.execute(f"SET ROLE {CLIENT}")
    answers = {entry: {table: _answer(conn, sql.format(t=f"'{table}'"), {table: "T"})
                       for table in HIDDEN}
               for entry, sql in sorted(CALLS.items())
               if not _holds(entry, table_privileges, column_privileges)}
    conn.execute("RESET ROLE")
    # Registered or not, the same answer; a refusal, and for want of a
    # privilege (42501), not of a registration.
    differ = {entry: a for entry, a in answers.items()
              if a[HIDDEN[0]] != a[HIDDEN[1]] or a[HIDDEN[2]] != a[HIDDEN[3]]}
    assert differ == {}, differ
    not_refused = {entry: a[HIDDEN[0]] for entry, a in answers.items()
                   if a[HIDDEN[0]][0] not in ("42501", "ok")}
    assert not_refused == {}, not_refused


def test_an_import_with_insert_on_some_column_is_told_the_scope_column(
        conn: Conn, world: int) -> None:
    """The pre-check asks INSERT on any column (the columns are the
    registration's and the source's); a role that has it is told, as before,
    the column it lacks."""
    conn.execute(f"GRANT INSERT (v) ON public.surf_reg TO {CLIENT}")
    conn.execute(f"SET ROLE {CLIENT}")
    answer = _answer(conn, CALLS["submit_import"].format(t="'public.surf_reg'"), {})
    conn.execute("RESET ROLE")
    assert answer[0] == "42501" and "lacks INSERT on column s of public.surf_reg" in answer[1], \
        answer
    assert answer[2].startswith("GRANT INSERT (s) ON public.surf_reg TO"), answer


def test_the_engine_schedule_is_told_only_beside_a_due_job_the_client_sees(
        cron_dsn: str) -> None:
    """pgjobs._engine_wait told every client, with no argument, whether
    pg_cron runs pgjobs.run on a minute schedule (cron.job, which a client
    may not read). What a client needs is that sentence beside a due delete
    it watches: a client that sees none gets NULL, whatever the schedule."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    watcher, stranger = f"{CLIENT}_w", f"{CLIENT}_s"
    sentence = "waiting for the engine: next tick within 60 s"
    try:
        for role in (watcher, stranger):
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
        target = make_rows_target(conn, "wait_rows")
        seed(conn, target, 30)
        conn.execute(f"GRANT SELECT ON wait_rows TO {watcher}")
        with conn.transaction():  # pg_cron never sees pgjobs.run's own command
            conn.execute("SELECT pgjobs.schedule()")
            conn.execute("UPDATE cron.job SET schedule = '* * * * *', command = 'SELECT 1'"
                         " WHERE jobname = 'pgjobs.run'")

        def told(role: str) -> object:
            with acting_as(conn, role):
                return scalar(conn, "SELECT pgjobs._engine_wait()")

        assert told(watcher) is None and told(stranger) is None  # no job at all
        job_id = submit_delete(conn, target, "2")
        assert told(watcher) == sentence  # it may read wait_rows: it sees the job
        assert told(stranger) is None  # it sees no job: the schedule is not its business
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"
    finally:
        conn.execute("RESET ROLE")
        conn.execute("SELECT pgjobs.unschedule()")
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DROP TABLE IF EXISTS wait_rows")
        for role in (watcher, stranger):
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.close()


# The client calls answered alike for SELECT on the table and SELECT on
# every column (the engine's helpers _visible_page, _gate_holder and
# _row_security_confines keep asking table SELECT: NULL or less for such a
# role, never more).
EVERY_COLUMN_CALLS = ("submit_delete", "submit_export", "submit_export_columns", "visible",
                      "visible_count", "mask", "channel", "preview")


def test_select_on_every_column_is_answered_as_select_on_the_table(
        conn: Conn, world: int) -> None:
    """h146: a role granted SELECT on each column, not on the table, was
    refused (42501) what plain PostgreSQL lets it read; now its calls are
    answered as those of a role with SELECT on the table, registered target
    or not."""
    answers: dict[str, dict[str, tuple[str, ...]]] = {}
    for subset in ("select_delete", "delete_every_column_select"):
        table_privileges, column_privileges = SUBSETS[subset]
        for table in HIDDEN:
            conn.execute(f"GRANT {', '.join(table_privileges)} ON {table} TO {CLIENT}")
            _grant_columns(conn, table, column_privileges)
        assert all(_holds(entry, table_privileges, column_privileges)
                   for entry in EVERY_COLUMN_CALLS)
        conn.execute(f"SET ROLE {CLIENT}")
        answers[subset] = {
            entry: tuple(_answer(conn, CALLS[entry].format(t=f"'{table}'"), {table: "T"})[0]
                         for table in HIDDEN)
            for entry in EVERY_COLUMN_CALLS}
        conn.execute("RESET ROLE")
        conn.execute("DELETE FROM pgjobs.jobs WHERE submitted_by = %s", (CLIENT,))
        for table in HIDDEN:
            conn.execute(f"REVOKE ALL ON {table} FROM {CLIENT}")
            conn.execute(f"REVOKE ALL (id, s, v, data, created_at) ON {table} FROM {CLIENT}")
    assert answers["delete_every_column_select"] == answers["select_delete"], answers
    refused = {entry: a for entry, a in answers["select_delete"].items() if a[0] != "ok"}
    assert refused == {}, refused  # the registered one is answered
