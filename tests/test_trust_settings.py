"""The engine's text does not depend on the caller's session (issue 9, item 6).

Every function in schema pgjobs pins, in its own configuration, the
settings its text depends on: standard_conforming_strings (how its body and
its dynamic SQL parse backslashes) and extra_float_digits (how floats
print); the ones that do not parse a caller's values also pin DateStyle and
IntervalStyle. The functions that parse a caller's values (filters, scopes,
exclusions, options) parse them in the caller's session on purpose and write
them back in a fixed form (pgjobs._canonical_text). A page whose cursor
does not advance fails the job instead of looping.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import run_pages, scalar, unpin_everywhere

Conn = psycopg.Connection[Any]

PINNED = ["standard_conforming_strings=on", "extra_float_digits=3"]
OUTPUT = ["DateStyle=ISO, YMD", "IntervalStyle=postgres"]
# These parse values a client wrote in its own DateStyle / IntervalStyle
# ('03/04/2030' under DMY), then print them in fixed settings.
PARSE_IN_CALLERS_SESSION = {
    "_typed_literal", "_canonical_scope", "_scope_literal", "_scope_allowed", "_require_scope",
    "_allowed_scope_keys", "_allowed_scope_keys_as", "_scope_entry",
    "compile_filter", "_compile_filter_node", "_compile_filter_field",
    "_compile_filter_column_op", "_compile_filter_array_op", "_compile_set", "_row_predicate",
    "_row_selection", "_require_known_keys",
    "submit_delete",
    "submit_backfill", "submit_export", "submit", "_insert_job", "_insert_job_row", "_job_options",
    "visible",
    "visible_count",
    "mask", "schedule", "channel", "_submit_as", "_submit_delete_as", "_submit_backfill_as",
    "_submit_export_as", "_visible_as", "_visible_page", "_visible_count_as", "_mask_as",
    "_channel_as", "canonical_scope", "_canonical_scope_as",
    "_compile_filter", "preview", "_preview_as"}


def test_every_function_pins_the_settings_its_text_depends_on(conn: Conn) -> None:
    rows = conn.execute("""
        SELECT p.proname, p.oid::regprocedure::text, coalesce(p.proconfig, '{}')
          FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace AND p.prokind = 'f'""").fetchall()
    assert len(rows) > 40
    missing = []
    for name, signature, config in rows:
        want = PINNED + ([] if name in PARSE_IN_CALLERS_SESSION else OUTPUT)
        missing += [(signature, w) for w in want if w not in config]
        if name in PARSE_IN_CALLERS_SESSION:
            # ... and must not pin the parse settings (the caller's are meant).
            assert not [c for c in config if c.startswith(("DateStyle", "IntervalStyle"))], name
    assert missing == []


def float_table(conn: Conn) -> None:
    conn.execute("""
        CREATE TABLE f (k double precision NOT NULL, s int NOT NULL, v text,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, k));
        INSERT INTO f (k, s) SELECT g * 0.1 + 1e-9 * g, s
          FROM generate_series(1, 50) g, generate_series(1, 2) s;
        SELECT pgjobs.register_target('f', 'k', 's', 'created_at');""")


@pytest.mark.parametrize("digits", ["0", "-15", "1", "3"])
def test_a_float_key_job_ends_whatever_extra_float_digits(conn: Conn, make_conn: Any,
                                                          digits: str) -> None:
    float_table(conn)
    submitter = make_conn()
    submitter.execute(f"SET extra_float_digits = {digits}")
    keep = scalar(conn, "SELECT (k::text) FROM f WHERE s = 1 ORDER BY k OFFSET 5 LIMIT 1")
    job_id = scalar(submitter, """SELECT pgjobs.submit_delete('f', '1', '{}', ARRAY[%s],
                                                           '{"page_size": 4}')""", (keep,))
    runner = make_conn()
    runner.execute(f"SET extra_float_digits = {digits}")
    run_pages(runner, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM f WHERE s = 1") == 1
    assert scalar(conn, "SELECT count(*) FROM f WHERE s = 2") == 50
    # visible pages through every key of the other scope in that session too.
    seen: list[str] = []
    after = None
    while True:
        page = [r[0] for r in runner.execute(
            "SELECT v ->> 'k' FROM pgjobs.visible('f', '2', '{}', %s, 7) v", (after,))]
        seen += page
        if len(page) < 7:
            break
        after = page[-1]
    assert len(set(seen)) == 50


def test_standard_conforming_strings_off_changes_nothing(conn: Conn, make_conn: Any) -> None:
    """With the caller's standard_conforming_strings off, '\\s' in the bodies
    would lose its backslash: 'tenants,other' must still not allow 'tenant',
    and a filter value with backslashes matches exactly."""
    conn.execute("""
        CREATE TABLE b (id bigint NOT NULL, s text NOT NULL, v text,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, id));
        INSERT INTO b VALUES (1, 'tenant', 'a\\b'), (2, 'tenant', 'a\\\\b'), (3, 'tenant', 'ab'),
                             (4, 'tenants', 'a\\b');
        SELECT pgjobs.register_target('b', 'id', 's', 'created_at');""")
    caller = make_conn()  # a fresh session: the bodies compile in it
    caller.execute("SET standard_conforming_strings = off")
    caller.execute("SET escape_string_warning = off")
    caller.execute("SELECT set_config('pgjobs.allowed_scopes', 'tenants,other', false)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        caller.execute("SELECT pgjobs.visible_count('b', 'tenant')")
    assert scalar(caller, "SELECT pgjobs.visible_count('b', 'tenants')") == 1
    caller.execute("RESET pgjobs.allowed_scopes")
    one = scalar(conn, "SELECT v FROM b WHERE id = 1")
    assert one == "a\\b"
    for filter_value, expected in [(one, [1]), ("a\\\\b", [2]), ("ab", [3])]:
        got = scalar(caller, """SELECT array_agg((r ->> 'id')::int ORDER BY 1)
                                  FROM pgjobs.visible('b', 'tenant',
                                                      jsonb_build_object('v', %s::text)) r""",
                     (filter_value,))
        assert got == expected, filter_value
    job_id = scalar(caller, "SELECT pgjobs.submit_delete('b', 'tenant', "
                            "jsonb_build_object('v', %s::text))", (one,))
    run_pages(caller, job_id)
    assert [r[0] for r in conn.execute("SELECT id FROM b ORDER BY id")] == [2, 3, 4]


@pytest.mark.parametrize("settings", [
    {"DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard", "TimeZone": "Pacific/Kiritimati"},
    {"DateStyle": "German", "IntervalStyle": "iso_8601", "TimeZone": "Etc/GMT+12"},
    {"DateStyle": "Postgres, MDY", "IntervalStyle": "postgres_verbose", "TimeZone": "UTC"},
])
def test_timestamp_and_interval_keys_under_hostile_runner_settings(
        conn: Conn, make_conn: Any, settings: dict[str, str]) -> None:
    conn.execute("""
        CREATE TABLE e (at timestamptz NOT NULL, d interval NOT NULL, s date NOT NULL,
                        created_at timestamp NOT NULL DEFAULT '2000-01-01',
                        PRIMARY KEY (s, at));
        CREATE UNIQUE INDEX ON e (s, d);
        INSERT INTO e (at, d, s)
        SELECT timestamptz '2030-03-01 00:00+00' + g * interval '1 hour 1 microsecond',
               g * interval '-1 day 3 hours', date '2030-01-02' + (g % 2)
          FROM generate_series(1, 60) g;
        SELECT pgjobs.register_target('e', 'at', 's', 'created_at');""")
    hostile = make_conn()
    for name, value in settings.items():
        hostile.execute(f"SET {name} = '{value}'")
    job_id = scalar(hostile, """SELECT pgjobs.submit_delete('e', '2030-01-02', '{}', '{}',
                                                         '{"page_size": 4}')""")
    run_pages(hostile, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM e WHERE s = '2030-01-02'") == 0
    assert scalar(conn, "SELECT count(*) FROM e WHERE s = '2030-01-03'") == 30
    # An interval key walks the same way.
    conn.execute("SELECT pgjobs.register_target('e', 'd', 's', 'created_at')")
    job_id = scalar(hostile, """SELECT pgjobs.submit_delete('e', '2030-01-03', '{}', '{}',
                                                         '{"page_size": 4}')""")
    run_pages(hostile, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM e") == 0


def test_a_cursor_that_does_not_advance_fails_the_job(conn: Conn, make_conn: Any) -> None:
    """Force what pinning prevents: unpin extra_float_digits from every
    routine (the page function, the one that prints its bound, any other),
    and print floats with no extra digit at all, so that keys 1 + 1e-12 * g
    all print as '1'. The job fails, naming key and type."""
    conn.execute("""
        CREATE TABLE f (k double precision NOT NULL, s int NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, k));
        INSERT INTO f (k, s) SELECT 1 + 1e-12 * g, 1 FROM generate_series(1, 20) g;
        SELECT pgjobs.register_target('f', 'k', 's', 'created_at');""")
    unpin_everywhere(conn, "extra_float_digits")
    runner = make_conn()
    runner.execute("SET extra_float_digits = -15")
    job_id = scalar(runner, """SELECT pgjobs.submit_delete('f', '1', '{}', '{}',
                                                        '{"page_size": 3}')""")
    states = run_pages(runner, job_id)
    assert states[-1] == "failed" and len(states) < 10
    status, error = runner.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                   (job_id,)).fetchone() or (None, None)
    assert status == "failed"
    assert "does not advance" in error and "double precision" in error and '"k"' not in error
    assert " k " in error


def test_an_export_cursor_that_does_not_advance_raises(conn: Conn, make_conn: Any) -> None:
    """The same forcing for an export's chunks: the chunk after a cursor that
    prints as '1' would start at '1' again; it raises 55000 instead."""
    conn.execute("""
        CREATE TABLE f (k double precision NOT NULL, s int NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                        PRIMARY KEY (s, k));
        INSERT INTO f (k, s) SELECT 1 + 1e-12 * g, 1 FROM generate_series(1, 20) g;
        SELECT pgjobs.register_target('f', 'k', 's', 'created_at');""")
    job_id = scalar(conn, "SELECT pgjobs.submit_export('f', '1')")
    unpin_everywhere(conn, "extra_float_digits")
    worker = make_conn()
    worker.execute("SET extra_float_digits = -15")
    after = scalar(worker, "SELECT next_after FROM pgjobs.export_chunk_sql(%s, NULL, 3)",
                   (job_id,))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as exc:
        worker.execute("SELECT next_after FROM pgjobs.export_chunk_sql(%s, %s, 3)",
                       (job_id, after))
    assert "does not advance" in str(exc.value) and "double precision" in str(exc.value)
