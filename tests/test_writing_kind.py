""""Writing kind" is defined once (issue 11, structure): the generated column
pgjobs.jobs.writes (migration 0018). Every rule about writers reads it: the
gate's partial indexes, the gate itself, claim, submit (throttling options,
on_conflict), retry, throttling, the mask's index and doctor.

These tests would catch a place that lists the kinds itself: a source scan
for the list, and a new writing kind made so by changing only the one
definition, which every writer rule must then apply to."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.migrate import function_files
from tests.support import claim, job, make_target, scalar, submit, who

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parent.parent
MIGRATION = ROOT / "sql" / "migrations" / "0018.writing_kind.sql"
WRITING = {"delete", "backfill", "import"}
# Landed migrations are never edited; 0018 holds the definition.
LANDED = {"0001.initial.sql", "0010.pause.sql"}


def sources() -> list[Path]:
    files = sorted((ROOT / "sql" / "functions").glob("*.sql"))
    files += sorted(p for p in (ROOT / "sql" / "migrations").glob("*.sql")
                    if p.name not in LANDED and p != MIGRATION)
    # bench/ is left out: its baselines copy earlier versions on purpose.
    for package in ("pgjobs", "cli", "poller"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


# A bracketed list: ( ... ), [ ... ] or { ... } with no bracket inside.
LIST = re.compile(r"[(\[{]([^()\[\]{}]*)[)\]}]")
QUOTED = re.compile(r"""['"]([a-z_]+)['"]""")
# One entry of a mapping: a quoted key, a colon, its value up to the next comma.
ENTRY = re.compile(r"""['"]([a-z_]+)['"]\s*:\s*([^,]*)""")


def lists_the_writing_kinds(inside: str) -> bool:
    """Does the inside of one bracket hold the writing kinds as one group? A
    list (or set, tuple, IN list, array) is one group. A mapping's keys are
    grouped by their value: {"delete": True, "backfill": True, "import": True}
    is the list again, while a table of what each kind counts, where delete
    maps to rows and import to bytes, sorts by another fact."""
    entries = ENTRY.findall(inside)
    if not entries:
        return set(QUOTED.findall(inside)) >= WRITING
    groups: dict[str, set[str]] = {}
    for key, value in entries:
        groups.setdefault(value.strip(), set()).add(key)
    return any(keys >= WRITING for keys in groups.values())


@pytest.mark.parametrize("code", [
    'WRITING = ("delete", "backfill", "import")',
    "WHERE kind IN ('import', 'delete', 'backfill', 'export')",
    "ARRAY['delete', 'backfill', 'import']::text[]",
    'if kind in {"backfill", "import", "delete"}:',
    'WRITES = {"delete": True, "backfill": True, "import": True, "export": False}',
    'GATED = {"delete": 1, "import": 1, "backfill": 1}',
])
def test_the_scanner_catches_the_list(code: str) -> None:
    assert any(lists_the_writing_kinds(m.group(1)) for m in LIST.finditer(code)), code


@pytest.mark.parametrize("code", [
    'COUNTS = {"delete": "rows", "backfill": "rows", "export": "rows", "import": "bytes"}',
    "WHERE kind IN ('delete', 'backfill')",
    'kinds = ("export", "import")',
])
def test_the_scanner_leaves_what_is_not_the_list(code: str) -> None:
    assert not any(lists_the_writing_kinds(m.group(1)) for m in LIST.finditer(code)), code


def test_no_source_lists_the_writing_kinds_itself() -> None:
    offenders = []
    for path in sources():
        text = path.read_text(encoding="utf-8")
        for match in LIST.finditer(text):
            if lists_the_writing_kinds(match.group(1)):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], (
        "read pgjobs.jobs.writes (or pgjobs._writes(kind) for a kind without a row) "
        f"instead of listing the writing kinds: {offenders}")


@pytest.mark.parametrize("kind", ["delete", "backfill", "import", "export", "custom",
                                  "deleted", "import_x", "x"])
def test_the_column_and_the_function_agree(conn: Conn, kind: str) -> None:
    make_target(conn)
    writes = scalar(conn, "INSERT INTO pgjobs.jobs (kind, target, scope) "
                          "VALUES (%s, 'items', '1') RETURNING writes", (kind,))
    assert writes is (kind in WRITING)
    assert scalar(conn, "SELECT pgjobs._writes(%s)", (kind,)) is (kind in WRITING)


def test_the_function_is_compiled_from_the_column(conn: Conn) -> None:
    expr = scalar(conn, """
        SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
          JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = 'pgjobs.jobs'::regclass AND a.attname = 'writes'""")
    body = scalar(conn, "SELECT prosrc FROM pg_proc "
                        "WHERE oid = 'pgjobs._writes(text)'::regprocedure")
    assert f"SELECT {expr} FROM (SELECT p_kind AS kind) j;" in body


def test_the_gate_indexes_are_built_on_the_definition(conn: Conn) -> None:
    predicates = dict(conn.execute("""
        SELECT c.relname, pg_get_expr(i.indpred, i.indrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname IN ('jobs_one_writer_idx', 'jobs_pending_writers_idx')""").fetchall())
    assert set(predicates) == {"jobs_one_writer_idx", "jobs_pending_writers_idx"}
    for predicate in predicates.values():
        assert "writes" in predicate and "'import'" not in predicate, predicate


def index_scans(conn: Conn, index: str) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(scalar(conn, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s",
                      (index,)))


def test_the_gate_and_the_mask_read_the_pending_writers_index(
        make_conn: Callable[..., Conn]) -> None:
    """The queries that look for a scope's writers must imply the partial
    index's predicate (a query on kind alone does not imply `writes`)."""
    conn = make_conn()
    make_target(conn)
    conn.execute("SET enable_seqscan = off")
    # On an empty job table the planner may as well take stats()'s index of all
    # unfinished jobs (0022), which needs no `writes` predicate: without it, only a
    # query that implies the partial index's predicate gets an index at all. The
    # same for the index of a client's pending jobs (0047, whose predicate the
    # gate's status list implies): on an empty table a full scan of it is as
    # cheap. (That of a client's jobs by name, 0045, is gone: 0181.)
    conn.execute("DROP INDEX pgjobs.jobs_unfinished_idx")
    conn.execute("DROP INDEX pgjobs.jobs_pending_submitter_idx")
    before = index_scans(conn, "jobs_pending_writers_idx")
    conn.execute("SELECT pgjobs._mask('items'::regclass, '1')")
    conn.execute("SELECT pgjobs._writer_may_start('items'::regclass, '1', 1)")
    assert index_scans(conn, "jobs_pending_writers_idx") >= before + 2


def redefine(conn: Conn, kinds: list[str]) -> None:
    """Change the one definition as a later migration would: the column and
    the indexes built on it, nothing else; then apply the function files as
    `pgjobs migrate` does after its migrations."""
    text = MIGRATION.read_text(encoding="utf-8")
    old = "kind IN ('delete', 'backfill', 'import')"
    assert text.count(old) == 1
    listed = ", ".join(f"'{k}'" for k in kinds)
    conn.execute("ALTER TABLE pgjobs.jobs DROP COLUMN writes")  # drops its indexes too
    conn.execute(text.replace(old, f"kind IN ({listed})")
                     .replace("DROP INDEX ", "DROP INDEX IF EXISTS ").encode())
    for path in function_files():
        conn.execute(path.read_text(encoding="utf-8").encode())


@pytest.fixture
def purge(conn: Conn, make_conn: Callable[..., Conn]) -> Conn:
    """A database where custom kind 'purge' writes; a fresh session (no
    plans cached against the old column)."""
    make_target(conn)
    redefine(conn, ["delete", "backfill", "import", "purge"])
    return make_conn()


def test_a_new_writing_kind_takes_the_throttling_options(purge: Conn) -> None:
    purge.execute("""SELECT pgjobs.set_defaults('{"max_rows_per_second": 500}')""")
    assert job(purge, submit(purge, "purge", scope="2"))["options"] == \
        job(purge, submit(purge, "import", scope="3"))["options"] == {"max_rows_per_second": 500}
    assert job(purge, submit(purge, "custom"))["options"] == {}
    submit(purge, "purge", options={"max_rows_per_second": 10})
    with pytest.raises(errors.InvalidParameterValue):
        submit(purge, "custom", options={"max_rows_per_second": 10})


def test_a_new_writing_kind_waits_at_its_scopes_gate(purge: Conn) -> None:
    first = submit(purge, "purge")
    second = submit(purge, "purge")
    other_scope = submit(purge, "purge", scope="2")
    custom = submit(purge, "custom")
    assert claim(purge, "w1", ["purge"], limit=10) == [first, other_scope]
    assert claim(purge, "w2", ["purge"], limit=10) == []  # second waits behind first
    assert claim(purge, "w3", ["custom"]) == [custom]  # not a writer: no gate
    with pytest.raises(errors.ObjectInUse):
        submit(purge, "purge", options={"on_conflict": "reject"})
    # The unique index of the gate: never two running writers of a scope.
    with pytest.raises(errors.UniqueViolation):
        purge.execute("UPDATE pgjobs.jobs SET status = 'running', worker = 'x', "
                      "lease_expires_at = now() + interval '1 minute', started_at = now() "
                      "WHERE id = %s", (second,))
    purge.execute("SELECT pgjobs.complete(%s, %s, '{}')", (first, who(purge, first, "w1")))
    assert claim(purge, "w2", ["purge"]) == [second]


def test_a_kind_that_no_longer_writes_passes_the_gate(conn: Conn,
                                                        make_conn: Callable[..., Conn]) -> None:
    """The other direction: drop import from the definition, and imports of
    one scope no longer queue behind each other."""
    make_target(conn)
    redefine(conn, ["delete", "backfill"])
    fresh = make_conn()
    first = submit(fresh, "import")
    second = submit(fresh, "import")
    assert claim(fresh, "w", ["import"], limit=10) == [first, second]


def test_doctor_names_a_paused_job_of_a_new_writing_kind(purge: Conn) -> None:
    paused = submit(purge, "purge")
    later = submit(purge, "purge")
    purge.execute("UPDATE pgjobs.jobs SET status = 'paused' WHERE id = %s", (paused,))
    row = purge.execute("SELECT status, detail FROM pgjobs.doctor() "
                        "WHERE check_name = 'jobs.paused'").fetchone()
    assert row is not None and row[0] == "warn" and str(paused) in row[1], (row, later)


# A writer of scope 1 in each state the gate distinguishes (UPDATE applied to it).
HOLDER_STATES = {
    "running": "status = 'running', worker = 'x', started_at = now(), "
               "lease_expires_at = now() + interval '1 minute'",
    "paused": "status = 'paused', started_at = now()",
    "queued, due": "run_at = now() - interval '1 minute'",
    "queued, due long ago": "run_at = now() - interval '1 hour'",
    "queued, not due": "run_at = now() + interval '1 hour'",
    "queued, started, waiting for a retry": "started_at = now() - interval '1 minute', "
                                           "run_at = now() + interval '1 hour'",
}


@pytest.mark.parametrize("kind", ["delete", "import"])
@pytest.mark.parametrize("state", sorted(HOLDER_STATES))
def test_on_conflict_reject_refuses_exactly_when_the_gate_would_hold(
        conn: Conn, kind: str, state: str) -> None:
    """on_conflict: reject asks the gate itself (pgjobs._writer_may_start),
    so it refuses a submit exactly when a writer queued last would wait."""
    make_target(conn)
    first = submit(conn, "import")
    conn.execute(f"UPDATE pgjobs.jobs SET kind = %s, {HOLDER_STATES[state]} WHERE id = %s",
                 (kind, first))
    try:
        accepted = submit(conn, "import", options={"on_conflict": "reject"})
        conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (accepted,))
        refused = False
    except errors.ObjectInUse:
        refused = True
    later = submit(conn, "import")
    waits = not scalar(conn, "SELECT pgjobs._writer_may_start('items'::regclass, '1', %s)",
                       (later,))
    assert refused == waits, (kind, state)
