"""What the user asked to keep must not silently keep nothing.

A key of `exclude` (pgjobs.submit_delete's p_exclude, pgjobs.preview's,
`pgjobs delete --exclude`) that names no row of the scope keeps nothing: a
typo, white space around it, a key of another scope (another tenant's), a row
deleted already or being deleted by a pending delete. The delete then took the
row the user meant to keep. Every entry point now refuses such a key with
22023 naming it, unless {"allow_unknown_keys": true}; the message is the same
whether the key exists in another scope or nowhere. The preview also says
when the submit would defer its filter's judgment to the job's start
("judged_at_start"), including the deferral that lists no field (a json
column's value check on an empty scope).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import run_pages, scalar

Conn = psycopg.Connection[Any]

SUBMIT = "SELECT pgjobs.submit_delete('kk', %s, '{}', %s::text[], %s::jsonb)"
PREVIEW = "SELECT pgjobs.preview('kk', %s, '{}', %s::text[], %s::jsonb)"


@pytest.fixture
def kk(conn: Conn) -> Conn:
    """Text keys a1..a5 in scope a, b1..b3 in scope b; integer keys 1..5 in
    scope 1 of table nn."""
    conn.execute("""
        CREATE TABLE kk (id text NOT NULL, tenant text NOT NULL, data jsonb, meta jsonb,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON kk (tenant, id);
        INSERT INTO kk (id, tenant, data)
        SELECT 'a' || g, 'a', '{"s": "x"}'::jsonb FROM generate_series(1, 5) g
        UNION ALL SELECT 'b' || g, 'b', '{"s": "x"}' FROM generate_series(1, 3) g;
        SELECT pgjobs.register_target('kk', 'id', 'tenant', 'created_at', 'data');
        CREATE TABLE nn (id bigint NOT NULL, s int NOT NULL,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 day');
        CREATE INDEX ON nn (s, id);
        INSERT INTO nn (id, s) SELECT g, 1 FROM generate_series(1, 5) g;
        SELECT pgjobs.register_target('nn', 'id', 's', 'created_at');""")
    return conn


def refusal(conn: Conn, sql: str, args: tuple[Any, ...]) -> psycopg.Error:
    with conn.transaction(), pytest.raises(psycopg.Error) as exc:
        conn.execute(sql, args)
    return exc.value


def jobs(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs"))


# Keys that keep nothing in scope a: a typo, another scope's key, white space
# around a key, a key of no row at all; with and without good keys around.
NO_ROW = [["a9"], ["b1"], [" a1"], ["a1 "], ["A1"], ["a1", "zz"], ["zz", "zz"]]


@pytest.mark.parametrize("keys", NO_ROW, ids=json.dumps)
@pytest.mark.parametrize("entry", ["submit", "preview"])
def test_a_key_that_names_no_row_of_the_scope_is_refused(kk: Conn, keys: list[str],
                                                          entry: str) -> None:
    error = refusal(kk, SUBMIT if entry == "submit" else PREVIEW, ("a", keys, "{}"))
    assert error.sqlstate == "22023", error
    bad = [k for k in dict.fromkeys(keys) if k not in {"a1"}]
    for key in bad:
        assert json.dumps(key) in str(error), error
    assert ("a key" if len(bad) == 1 else f"{len(bad)} keys") in str(error)
    assert "allow_unknown_keys" in (error.diag.message_hint or "")
    assert jobs(kk) == 0


def test_the_message_is_the_same_for_another_scopes_key_and_no_rows(kk: Conn) -> None:
    # b1 is a row of scope b; then it is no row at all: scope a's caller
    # cannot tell the two apart.
    there = refusal(kk, SUBMIT, ("a", ["b1"], "{}"))
    preview_there = refusal(kk, PREVIEW, ("a", ["b1"], "{}"))
    kk.execute("DELETE FROM kk WHERE id = 'b1'")
    gone = refusal(kk, SUBMIT, ("a", ["b1"], "{}"))
    preview_gone = refusal(kk, PREVIEW, ("a", ["b1"], "{}"))
    def said(error: psycopg.Error) -> tuple[str | None, str | None, str | None]:
        return error.sqlstate, error.diag.message_primary, error.diag.message_hint
    assert said(there) == said(gone) == said(preview_there) == said(preview_gone)
    assert '"b1"' in (there.diag.message_primary or "")


def test_keys_of_rows_of_the_scope_are_kept(kk: Conn) -> None:
    job_id = scalar(kk, SUBMIT, ("a", ["a1", "a1", "a3"], "{}"))
    run_pages(kk, job_id)
    left = kk.execute("SELECT id FROM kk WHERE tenant = 'a' ORDER BY id").fetchall()
    assert left == [("a1",), ("a3",)]
    assert scalar(kk, "SELECT count(*) FROM kk WHERE tenant = 'b'") == 3


def test_an_integer_key_is_judged_as_the_column_reads_it(kk: Conn) -> None:
    # ' 3' and '03' are key 3 to a bigint column: kept, not refused.
    job_id = scalar(kk, "SELECT pgjobs.submit_delete('nn', '1', '{}', %s::text[], '{}')",
                    ([" 3", "04"],))
    run_pages(kk, job_id)
    assert kk.execute("SELECT id FROM nn ORDER BY id").fetchall() == [(3,), (4,)]
    error = refusal(kk, "SELECT pgjobs.submit_delete('nn', '1', '{}', %s::text[], '{}')",
                    (["3", "9"],))
    assert error.sqlstate == "22023" and '"9"' in str(error), error
    # A key the column cannot read is refused, as before.
    error = refusal(kk, "SELECT pgjobs.submit_delete('nn', '1', '{}', %s::text[], '{}')",
                    (["x3"],))
    assert error.sqlstate == "22023" and "not a valid bigint" in str(error), error


def test_a_key_whose_row_a_pending_delete_takes_is_refused(kk: Conn) -> None:
    # The row is still in the table, but hidden (pgjobs.visible) and going:
    # excluding it here keeps nothing.
    first = scalar(kk, """SELECT pgjobs.submit_delete('kk', 'a', '{"s": "x"}',
                                 ARRAY['a1', 'a3', 'a4', 'a5'], '{}')""")
    assert first is not None
    error = refusal(kk, SUBMIT, ("a", ["a2"], "{}"))
    assert error.sqlstate == "22023" and '"a2"' in str(error), error
    assert "pending delete" in (error.diag.message_hint or "")


def test_empty_list_null_list_and_null_key(kk: Conn) -> None:
    assert scalar(kk, PREVIEW, ("a", [], "{}"))["matches"] == 5
    error = refusal(kk, SUBMIT, ("a", None, "{}"))
    assert error.sqlstate == "22023" and "not NULL" in str(error)
    error = refusal(kk, SUBMIT, ("a", ["a1", None], "{}"))
    assert error.sqlstate == "22023" and "null" in str(error)


def test_allow_unknown_keys_lets_them_through_and_is_a_boolean(kk: Conn) -> None:
    options = json.dumps({"allow_unknown_keys": True})
    shown = scalar(kk, PREVIEW, ("a", ["a1", "zz"], options))
    assert shown["matches"] == 4
    job_id = scalar(kk, SUBMIT, ("a", ["a1", "zz"], options))
    run_pages(kk, job_id)
    assert kk.execute("SELECT id FROM kk WHERE tenant = 'a'").fetchall() == [("a1",)]
    for entry in (SUBMIT, PREVIEW):
        error = refusal(kk, entry, ("a", ["zz"], json.dumps({"allow_unknown_keys": "yes"})))
        assert error.sqlstate == "22023" and "allow_unknown_keys" in str(error), error


def test_a_scope_outside_allowed_scopes_is_42501_before_any_key_is_probed(kk: Conn) -> None:
    kk.execute("SET pgjobs.allowed_scopes = 'b'")
    for entry in (SUBMIT, PREVIEW):
        error = refusal(kk, entry, ("a", ["b1"], "{}"))
        assert error.sqlstate == "42501", error


# --- the command line ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("extra", [["--yes"], ["--dry-run"], ["--dry-run", "--json"]])
def test_the_cli_refuses_with_the_hint(kk: Conn, dsn: str, extra: list[str]) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "kk", "--scope", "a",
                                       "--exclude", "a1", "--exclude", "a1x", *extra])
    assert result.exit_code == 2, result.output
    assert '"a1x"' in result.output and "allow_unknown_keys" in result.output
    assert jobs(kk) == 0
    allowed = CliRunner().invoke(main, ["--dsn", dsn, "delete", "kk", "--scope", "a",
                                        "--exclude", "a1", "--exclude", "a1x", *extra,
                                        "--options", '{"allow_unknown_keys": true}'])
    assert allowed.exit_code == 0, allowed.output


# --- what the preview says the submit defers --------------------------------------


def test_the_preview_says_a_json_column_check_is_deferred(kk: Conn) -> None:
    # Scope c has no row: a comparison of json column meta cannot be judged,
    # and the submit defers it with an empty list.
    filter_ = json.dumps({"meta": {"$ne": "1"}})
    shown = scalar(kk, "SELECT pgjobs.preview('kk', 'c', %s::jsonb)", (filter_,))
    assert (shown["unchecked_fields"], shown["judged_at_start"]) == ([], True)
    job_id = scalar(kk, "SELECT pgjobs.submit_delete('kk', 'c', %s::jsonb)", (filter_,))
    payload = scalar(kk, "SELECT payload FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert payload["unchecked_fields"] == []
    # A path on the empty scope: listed; on a scope with rows: nothing deferred.
    shown = scalar(kk, """SELECT pgjobs.preview('kk', 'c', '{"s": {"$ne": "y"}}')""")
    assert (shown["unchecked_fields"], shown["judged_at_start"]) == (["s"], True)
    for scope, options in (("a", {}), ("c", {"allow_unknown_fields": True})):
        shown = scalar(kk, "SELECT pgjobs.preview('kk', %s, %s::jsonb, '{}', %s::jsonb)",
                       (scope, filter_, json.dumps(options)))
        assert (shown["unchecked_fields"], shown["judged_at_start"]) == ([], False), scope


def test_the_cli_preview_names_the_deferred_json_check(kk: Conn, dsn: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "delete", "kk", "--scope", "c",
                                       "--filter", '{"meta": {"$ne": "1"}}', "--dry-run"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["unchecked_fields"], shown["judged_at_start"]) == ([], True)
    # What the table and the confirmation print for it: never an empty list.
    from pgjobs.cli.jobs import _deferred  # (here: the module's helper is new)
    assert _deferred(shown) == "the filter's comparisons of json columns"
    assert _deferred({**shown, "unchecked_fields": ["s", "t"]}) == "s, t"


def test_an_exports_deferred_json_check_is_named_not_an_empty_field_list(kk: Conn,
                                                                         dsn: str) -> None:
    job_id = scalar(kk, """SELECT pgjobs.submit_export('kk', 'c', '{"meta": {"$ne": "1"}}')""")
    assert scalar(kk, "SELECT payload -> 'unchecked_fields' FROM pgjobs.jobs WHERE id = %s",
                  (job_id,)) == []
    [(claimed, _)] = kk.execute("SELECT id, worker FROM pgjobs.claim_export(%s, 'w')",
                                (job_id,)).fetchall()
    assert claimed == job_id
    kk.execute("INSERT INTO kk (id, tenant, meta) VALUES ('c1', 'c', '{\"x\": 1}')")
    with psycopg.connect(dsn, autocommit=True) as chunk:
        chunk.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as exc:
            chunk.execute("SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 1000)",
                          (job_id,))
    message = exc.value.diag.message_primary or ""
    assert "comparisons of json columns" in message, message
    assert "fields  were" not in message and "document fields" not in message, message
