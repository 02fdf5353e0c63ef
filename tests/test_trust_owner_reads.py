"""What the engine reads with its owner's rights, it tells a caller only if
the caller could have read it itself.

pgjobs' client functions are SECURITY DEFINER: they read the target's rows as
the engine's owner to judge a request (the exclude-key guard, the filter's
typo and value-type guards, the preview's counts and samples, the read path)
and report the result. Each such judgement reads the rows a plain DELETE ...
WHERE or UPDATE ... WHERE by the caller would read, so the caller must hold
what PostgreSQL asks of that statement: SELECT on the target (table-level:
the scope, the key, the filter's column or document are all read), and no
row-level security policy may confine it (pgjobs reads as its owner and
cannot apply the caller's policies). Otherwise 42501 with a hint naming what
is missing, before any row is read; never an answer.

Each routine x three set-ups of a pgjobs_client confined to scope 1:
(a) DELETE / UPDATE / INSERT but no SELECT; (b) SELECT on some columns only
(not the filter's column, not the document); (c) a row-level security policy
hiding half of the scope's rows. Then: no hidden row is deleted or changed,
including by a job submitted before the policy or the revoke came; and every
key, field, value or scope quoted in such a refusal is clipped, so a message
cannot be made huge.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import scalar
from tests.support.roles import acting_as, drop_role, make_role

Conn = psycopg.Connection[Any]

# Rows of scope 1: ids 1..10 (the policy of set-up c shows the odd ones);
# scope 2: ids 11..14. Every row's document holds {"k": "x", "n": id}.
SETUPS = {
    # (a) the caller may delete and update, but not read.
    "no_select": ["GRANT INSERT, UPDATE, DELETE ON ow TO {role}"],
    # (b) it may read some columns: not v (a filter's column), not data.
    "some_columns": ["GRANT INSERT, UPDATE, DELETE ON ow TO {role}",
                     "GRANT SELECT (id, s, created_at) ON ow TO {role}"],
    # (c) it may read, but a policy hides the even ids.
    "row_security": ["GRANT SELECT, INSERT, UPDATE, DELETE ON ow TO {role}"],
}

# Each call that judges the scope's rows on the caller's behalf, written so
# that an answer would tell something: a hidden row's key excluded, a filter
# on a column the caller may not read, a field or a value type no row has.
CALLS = {
    "submit_delete_exclude": "SELECT pgjobs.submit_delete('ow', '1', '{}', ARRAY['2'])",
    "submit_delete_filter": """SELECT pgjobs.submit_delete('ow', '1', '{"v": 7}')""",
    "submit_delete_field": """SELECT pgjobs.submit_delete('ow', '1', '{"nosuch": 1}')""",
    "submit_delete_value_type": """SELECT pgjobs.submit_delete('ow', '1',
                                       '{"n": {"$ne": "3"}}')""",
    "submit_backfill": """SELECT pgjobs.submit_backfill('ow', '1', '{"v": 7}',
                                                         '{"v": 8}')""",
    "submit_backfill_field": """SELECT pgjobs.submit_backfill('ow', '1', '{"nosuch": 1}',
                                                               '{"v": 8}')""",
    "preview_delete": "SELECT pgjobs.preview('ow', '1', '{}', ARRAY['2'])",
    "preview_delete_count": """SELECT pgjobs.preview('ow', '1', '{"v": 7}')""",
    "preview_backfill": """SELECT pgjobs.preview('ow', '1', '{"v": 7}', '{}',
                                                  '{"kind": "backfill"}')""",
    "submit_export": """SELECT pgjobs.submit_export('ow', '1', '{"v": 7}')""",
    "visible": "SELECT count(*) FROM pgjobs.visible('ow', '1')",
    "visible_count": "SELECT pgjobs.visible_count('ow', '1')",
    "mask": "SELECT pgjobs.mask('ow', '1')",
    "channel": "SELECT pgjobs.channel('ow', '1')",
    "submit_import_update": """SELECT pgjobs.submit_import('ow', '1',
                                   'file:///srv/pgjobs-owner-reads/a.csv',
                                   '{"on_duplicate": "update"}')""",
}

# The calls a set-up allows, because plain PostgreSQL would run the same
# statement for the caller: INSERT ... ON CONFLICT (s, id) DO UPDATE needs
# SELECT on the conflict columns only (the worker asks for the document's
# too, before a batch merges into it).
ALLOWED = {("submit_import_update", "some_columns")}


@pytest.fixture
def ow(conn: Conn) -> Conn:
    conn.execute("""
        CREATE TABLE ow (id bigint NOT NULL, s int NOT NULL, v int, data jsonb,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                         UNIQUE (s, id));
        INSERT INTO ow (id, s, v, data)
        SELECT g, CASE WHEN g <= 10 THEN 1 ELSE 2 END, 7,
               jsonb_build_object('k', 'x', 'n', g)
          FROM generate_series(1, 14) g;
        SELECT pgjobs.register_target('ow', 'id', 's', 'created_at', 'data');
        SELECT pgjobs.allow_storage('file:///srv/pgjobs-owner-reads');""")
    return conn


def client(conn: Conn, setup: str) -> str:
    role = make_role(conn, "owner_reads", "GRANT pgjobs_client TO {role}", *SETUPS[setup])
    if setup == "row_security":
        hide_even_rows(conn)
    return role


def hide_even_rows(conn: Conn) -> None:
    conn.execute("ALTER TABLE ow ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY odd ON ow USING (id % 2 = 1)")


def refusal(conn: Conn, sql: str) -> psycopg.Error | None:
    try:
        with conn.transaction():
            conn.execute(sql)
    except psycopg.Error as error:
        return error
    return None


def rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, s, v, data FROM ow ORDER BY id").fetchall()


def plain_refusal(conn: Conn) -> psycopg.Error | None:
    """What PostgreSQL itself answers the caller's DELETE ... WHERE v = 7."""
    return refusal(conn, "DELETE FROM ow WHERE s = 1 AND v = 7 AND id = 2")


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("call", list(CALLS))
def test_a_judgement_answers_only_what_the_caller_may_read(ow: Conn, setup: str,
                                                           call: str) -> None:
    role = client(ow, setup)
    before = rows(ow)
    try:
        with acting_as(ow, role, "1"):
            error = refusal(ow, CALLS[call])
            if (call, setup) in ALLOWED:
                assert error is None, error
                return
            assert error is not None, f"{call} answered a caller set up as {setup}"
            assert error.sqlstate == "42501", error
            hint = error.diag.message_hint or ""
            if setup == "row_security":
                assert "row-level security" in str(error), error
                assert "ignore_row_security" in hint, hint
            else:
                assert "lacks SELECT on" in str(error), error
                assert "GRANT SELECT" in hint, hint
            # Nothing of the rows in the refusal: no key, field or count.
            for said in (str(error), hint):
                assert '"2"' not in said and "nosuch" not in said, said
            # The same refusal whether the probed key exists or not.
            other = refusal(ow, CALLS[call].replace("'2'", "'99'"))
            assert other is not None
            assert (other.sqlstate, other.diag.message_primary, other.diag.message_hint) == (
                error.sqlstate, error.diag.message_primary, error.diag.message_hint)
            # PostgreSQL refuses the caller's own statement too (a and b) or
            # hides the even rows from it (c): pgjobs is no wider a door.
            plain = plain_refusal(ow)
            if setup == "row_security":
                assert plain is None
            else:
                assert plain is not None and plain.sqlstate == "42501", plain
    finally:
        assert rows(ow) == before
        assert scalar(ow, "SELECT count(*) FROM pgjobs.jobs") == ((call, setup) in ALLOWED)
        drop_role(ow, role)


def drive(conn: Conn, job_id: int) -> str:
    """Claim the job and run its pages as the engine does; its final status."""
    claimed = conn.execute("SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,)).fetchone()
    if claimed is not None and claimed[0] is not None:
        for _ in range(1000):
            state = scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, claimed[0]))
            if state not in ("more", "retry"):
                break
    return str(scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)))


# What an administrator does to the caller's rights after its submit.
TAKEN_AWAY = {
    "policy": lambda conn, role: hide_even_rows(conn),
    "revoke_select": lambda conn, role: conn.execute(f"REVOKE SELECT ON ow FROM {role}"),
    "columns_only": lambda conn, role: conn.execute(
        f"REVOKE SELECT ON ow FROM {role}; GRANT SELECT (id, s, created_at) ON ow TO {role}"),
}


@pytest.mark.parametrize("taken", list(TAKEN_AWAY))
@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_job_whose_submitter_lost_the_right_to_read_changes_no_row(ow: Conn, taken: str,
                                                                     kind: str) -> None:
    role = make_role(ow, "owner_reads", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, INSERT, UPDATE, DELETE ON ow TO {role}")
    try:
        sql = ("""SELECT pgjobs.submit_delete('ow', '1', '{"v": 7}')""" if kind == "delete"
               else """SELECT pgjobs.submit_backfill('ow', '1', '{"v": 7}', '{"v": 8}')""")
        with acting_as(ow, role, "1"):
            job_id = int(scalar(ow, sql))
        before = rows(ow)
        TAKEN_AWAY[taken](ow, role)
        status = drive(ow, job_id)
        assert status != "succeeded", status
        assert rows(ow) == before
        error = scalar(ow, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,))
        assert error is None or role in json.dumps(error), error
    finally:
        drop_role(ow, role)


def test_an_admin_registration_that_ignores_row_security_is_the_one_way_past_a_policy(
        ow: Conn) -> None:
    # The documented door (docs/security.md): an administrator registers the
    # target with ignore_row_security, and the policy no longer binds what
    # pgjobs does for its clients. Without it, nothing hidden is touched.
    role = client(ow, "row_security")
    try:
        with acting_as(ow, role, "1"):
            assert refusal(ow, "SELECT pgjobs.submit_delete('ow', '1', '{}')") is not None
        ow.execute("""SELECT pgjobs.register_target('ow', 'id', 's', 'created_at', 'data',
                                                     '{"ignore_row_security": true}')""")
        with acting_as(ow, role, "1"):
            job_id = int(scalar(ow, "SELECT pgjobs.submit_delete('ow', '1', '{}')"))
        assert drive(ow, job_id) == "succeeded"
        assert scalar(ow, "SELECT count(*) FROM ow WHERE s = 1") == 0
    finally:
        drop_role(ow, role)


# Each refusal that quotes what the caller wrote or what the scope's rows
# hold, given something huge: a key, a scope, a field name, many fields.
LONG = "k" * 5000
SCOPE = "k" * 1000  # the longest scope a submit takes
HUGE_INPUTS = {
    "exclude_keys": ("SELECT pgjobs.submit_delete('ot', 'a', '{}', %s::text[])",
                     ([f"{i}{LONG}" for i in range(12)],), "exclude names"),
    "preview_keys": ("SELECT pgjobs.preview('ot', 'a', '{}', %s::text[])",
                     ([f"{i}{LONG}" for i in range(12)],), "exclude names"),
    "exclude_scope": ("SELECT pgjobs.submit_delete('ot', %s, '{}', ARRAY['x'])",
                      (SCOPE,), "exclude names"),
    "field": ("SELECT pgjobs.submit_delete('ow', '1', %s::jsonb)",
              (json.dumps({LONG: 1}),), "names document field"),
    "many_fields": ("SELECT pgjobs.submit_delete('ow', '1', %s::jsonb)",
                    (json.dumps({f"f{i}x{'y' * 70}": 1 for i in range(200)}),),
                    "names document field"),
    "field_scope": ("SELECT pgjobs.submit_delete('ot', %s, %s::jsonb)",
                    (SCOPE, json.dumps({"nosuch": 1})), "names document field"),
    "backfill_field": ("SELECT pgjobs.submit_backfill('ow', '1', %s::jsonb, '{\"v\": 1}')",
                       (json.dumps({LONG: 1}),), "names document field"),
    "export_field": ("SELECT pgjobs.submit_export('ow', '1', %s::jsonb)",
                     (json.dumps({LONG: 1}),), "names document field"),
    "guess": ("SELECT pgjobs.submit_delete('ot', 'a', %s::jsonb)",
              (json.dumps({"z" * 99 + "q": 1}),), "names document field"),
    "value_type_scope": ("SELECT pgjobs.submit_delete('ot', %s, %s::jsonb)",
                         (SCOPE, json.dumps({"k": {"$ne": 3}})), "filter compares"),
    "value_type_preview": ("SELECT pgjobs.preview('ot', %s, %s::jsonb)",
                           (SCOPE, json.dumps({"k": {"$ne": [3]}})), "filter compares"),
}


@pytest.mark.parametrize("case", list(HUGE_INPUTS))
def test_what_a_refusal_quotes_is_clipped(ow: Conn, case: str) -> None:
    # ot: text keys and scopes, a row in the huge scope, so the guards judge it.
    ow.execute("""
        CREATE TABLE ot (id text NOT NULL, s text NOT NULL, data jsonb,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON ot (s, id);
        SELECT pgjobs.register_target('ot', 'id', 's', 'created_at', 'data');""")
    ow.execute("""INSERT INTO ot (id, s, data) VALUES ('1', %s, '{"k": "x"}'),
                                                      ('2', 'a', '{"k": "x"}'),
                                                      ('3', 'a', %s)""",
               (SCOPE, json.dumps({"z" * 100: 1})))
    sql, args, what = HUGE_INPUTS[case]
    with ow.transaction(), pytest.raises(psycopg.Error) as exc:
        ow.execute(sql, args)
    error = exc.value
    assert error.sqlstate == "22023", error
    primary = error.diag.message_primary or ""
    assert what in primary, primary
    # Each quoted input is cut at 64 characters and marked; the message and
    # the hint stay short whatever was written.
    hint = error.diag.message_hint or ""
    for run in ("k" * 65, "y" * 65, "z" * 65):
        assert run not in primary and run not in hint, (primary, hint)
    assert "..." in primary, primary
    if case == "guess":
        assert "Did you mean" in hint and "zzz..." in hint, hint
    if case == "many_fields":
        assert "and 190 more" in primary, primary
    assert len(primary) < 1500, len(primary)
    assert len(error.diag.message_hint or "") < 1500, len(error.diag.message_hint or "")
    assert scalar(ow, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("setup", list(SETUPS))
def test_another_clients_job_counts_are_not_shown_to_a_caller_who_may_not_read(
        ow: Conn, setup: str) -> None:
    # A delete's total is how many rows of the scope match its filter: a
    # count the caller could not take itself. pgjobs.jobs and pgjobs.stats()
    # show it only to a role that may read the target (or submitted the job).
    other = make_role(ow, "owner_reads_other", "GRANT pgjobs_client TO {role}",
                      "GRANT SELECT, DELETE ON ow TO {role}", "ALTER ROLE {role} BYPASSRLS")
    role = client(ow, setup)
    try:
        with acting_as(ow, other, "1"):
            job_id = int(scalar(ow, """SELECT pgjobs.submit_delete('ow', '1', '{"v": 7}')"""))
        ow.execute("UPDATE pgjobs.jobs SET total = 5, done = 2 WHERE id = %s", (job_id,))
        with acting_as(ow, role, "1"):
            assert scalar(ow, "SELECT count(*) FROM pgjobs.jobs") == 0
            stats = scalar(ow, "SELECT pgjobs.stats()")
            assert stats["queue"] == [] and stats["oldest_queued"] is None, stats
        assert scalar(ow, "SELECT pgjobs.stats()")["queue"] != []  # the job is there
    finally:
        drop_role(ow, role)
        drop_role(ow, other)


@pytest.mark.parametrize("taken", ["nothing", *TAKEN_AWAY])
@pytest.mark.parametrize("kind", ["delete", "backfill"])
def test_a_judgement_deferred_to_the_jobs_start_is_not_told_to_a_submitter_who_lost_the_right(
        ow: Conn, taken: str, kind: str) -> None:
    # Submitted on a scope with no rows, the typo guard is judged at the
    # job's start, reading the rows that came since; by then the submitter
    # may read them no more: the job fails on the privilege, and its error
    # (which the submitter reads in pgjobs.jobs) says nothing of the rows.
    role = make_role(ow, "owner_reads", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, INSERT, UPDATE, DELETE ON ow TO {role}")
    try:
        conn_scope = "3"
        sql = (f"""SELECT pgjobs.submit_delete('ow', '{conn_scope}', '{{"nosuch": 1}}')"""
               if kind == "delete" else
               f"""SELECT pgjobs.submit_backfill('ow', '{conn_scope}', '{{"nosuch": 1}}',
                                                 '{{"v": 8}}')""")
        with acting_as(ow, role, conn_scope):
            job_id = int(scalar(ow, sql))
        ow.execute("""INSERT INTO ow (id, s, v, data)
                      VALUES (30, 3, 7, '{"nosuch_": 1}'), (31, 3, 7, '{"k": "x"}')""")
        before = rows(ow)
        if taken != "nothing":
            TAKEN_AWAY[taken](ow, role)
        status = drive(ow, job_id)
        assert status == "failed", status
        assert rows(ow) == before
        error = str(scalar(ow, "SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,)))
        if taken == "nothing":  # the probe: what the judgement tells one who may read
            assert '"nosuch"' in error and "nosuch_" in error, error
        else:
            assert "nosuch" not in error and "no row" not in error, error
            assert "42501" in error or "permission denied" in error, error
    finally:
        drop_role(ow, role)
