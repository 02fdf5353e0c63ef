"""No writing job reports success for rows a trigger kept (adversarial pass hT).

A delete whose rows a BEFORE DELETE trigger or a rule keeps fails, naming
them (test_trust_keys). A backfill did not: a BEFORE UPDATE row trigger that
returns NULL keeps its row out of the page's UPDATE, which just counts one
row fewer, and the job ended `succeeded` with those rows never set (found
with `RETURN CASE WHEN OLD.id % 4 = 0 THEN NULL ELSE NEW END`: 10 of 20
rows set, done = 10, status succeeded). A page now counts (and locks) its
rows first when the target or any table under it has such a trigger, and
an UPDATE that sets fewer raises 27000: the page is undone and the job
fails for good, its error saying how many rows and why.

An import with on_duplicate error had the same hole: a BEFORE INSERT trigger
returning NULL kept records out, import_batch counted them as `skipped`
and the job succeeded, though that mode skips nothing ("every record lands
exactly once"); so did on_duplicate update on a (scope, key) unique index,
with a BEFORE INSERT or UPDATE trigger. Such a batch now raises 27000 and
the job fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allowed_folder, build_target, job, run_import, run_job, run_pages, scalar

Conn = psycopg.Connection[Any]

KEEP_EVERY_4TH = """CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN RETURN CASE WHEN OLD.id % 4 = 0 THEN NULL ELSE NEW END; END$$"""


def _table(conn: Conn, *, partitioned: bool = False) -> None:
    columns = """id bigint NOT NULL, scope text NOT NULL, status text, n int,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'"""
    if partitioned:
        conn.execute(f"CREATE TABLE t ({columns}) PARTITION BY LIST (scope)")
        conn.execute("CREATE TABLE t_a PARTITION OF t FOR VALUES IN ('a')")
        conn.execute("CREATE TABLE t_b PARTITION OF t FOR VALUES IN ('b')")
        conn.execute("CREATE INDEX ON t (scope, id)")
        conn.execute("SELECT pgjobs.register_target('t', 'id', 'scope', 'created_at')")
    else:
        build_target(conn, "t", columns)
    conn.execute("""INSERT INTO t (id, scope, status, n)
                    SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'x', g
                      FROM generate_series(1, 40) g""")


def _backfill(conn: Conn, filter_: dict[str, Any], options: dict[str, Any]) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('t', 'a', %s::jsonb, "
                            "'{\"status\": \"y\"}', %s::jsonb)",
                      (json.dumps(filter_), json.dumps(options))))


def _set(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM t WHERE scope = 'a' AND status = 'y'"))


@pytest.mark.parametrize(("filter_", "options"), [
    ({}, {}),
    ({}, {"page_size": 3}),
    ({"n": {"$gt": 10}}, {"page_size": 4}),
    ({"status": "x"}, {}),
])
def test_a_backfill_whose_rows_a_trigger_keeps_fails(conn: Conn, filter_: dict[str, Any],
                                                     options: dict[str, Any]) -> None:
    _table(conn)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, filter_, options)
    states = run_pages(conn, job_id)
    row = job(conn, job_id)
    assert states[-1] == "failed"
    assert row["status"] == "failed", row
    assert "not updated" in row["error"] and "BEFORE UPDATE trigger" in row["error"]
    assert "SQLSTATE 27000" in row["error"]
    # Not retried: the trigger keeps them on every attempt.
    assert row["attempts"] == 1
    # What it reports done is what it set; the failing page was undone.
    assert row["done"] == _set(conn)
    assert scalar(conn, "SELECT count(*) FROM t WHERE scope = 'b' AND status = 'y'") == 0


def test_a_trigger_on_a_partition_is_seen_from_the_partitioned_target(conn: Conn) -> None:
    _table(conn, partitioned=True)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t_a FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {"page_size": 5})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "BEFORE UPDATE trigger" in row["error"]
    assert row["done"] == _set(conn)


def test_run_job_fails_it_too(conn: Conn) -> None:
    """The engine's own path (CALL pgjobs.run_job) pages through the same check."""
    _table(conn)
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {})
    run_job(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "BEFORE UPDATE trigger" in row["error"]


@pytest.mark.parametrize("trigger", [
    # A trigger that lets every row through (stamps a column) is no reason to fail.
    ("CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS "
     "$$BEGIN NEW.n := NEW.n + 1000; RETURN NEW; END$$",
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()"),
    # A disabled trigger keeps nothing.
    (KEEP_EVERY_4TH,
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep(); "
     "ALTER TABLE t DISABLE TRIGGER keep"),
    # Nor does one on another event, or a statement trigger.
    (KEEP_EVERY_4TH,
     "CREATE TRIGGER keep BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION keep()"),
    ("CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
     "CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH STATEMENT EXECUTE FUNCTION keep()"),
])
def test_triggers_that_keep_no_row_let_the_backfill_succeed(conn: Conn,
                                                            trigger: tuple[str, str]) -> None:
    _table(conn)
    for statement in trigger:
        conn.execute(statement)
    job_id = _backfill(conn, {}, {"page_size": 3})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    assert row["done"] == 20 == _set(conn)


# --- imports ----------------------------------------------------------------------------

CSV = "id,name\n1,a\n2,b\n3,c\n4,d\n6,f\n"
JSONL = "".join(json.dumps({"id": i, "name": n}) + "\n"
                for i, n in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (6, "f")])


def _import_target(conn: Conn, trigger: str | None) -> None:
    build_target(conn, "g", """id bigint NOT NULL, tenant text NOT NULL, name text,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant", index="unique")
    conn.execute("""CREATE FUNCTION keep3() RETURNS trigger LANGUAGE plpgsql AS
                    $$BEGIN RETURN CASE WHEN NEW.id % 3 = 0 THEN NULL ELSE NEW END; END$$""")
    if trigger is not None:
        conn.execute(trigger)


def _import(conn: Conn, dsn: str, tmp_path: Path, name: str, text: str,
            options: dict[str, Any]) -> dict[str, Any]:
    folder = allowed_folder(conn, tmp_path)
    (folder / name).write_text(text)
    job_id = scalar(conn, "SELECT pgjobs.submit_import('g', 'acme', %s, %s)",
                    (f"file://{folder}/{name}", json.dumps(options)))
    run_import(dsn, job_id, f"file://{folder}/store")
    return job(conn, job_id)


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
@pytest.mark.parametrize(("options", "events"), [
    ({}, "INSERT"),
    ({"on_duplicate": "error", "max_rejects": 5}, "INSERT"),
])
def test_an_import_whose_records_a_trigger_keeps_fails(conn: Conn, dsn: str, tmp_path: Path,
                                                       name: str, text: str,
                                                       options: dict[str, Any],
                                                       events: str) -> None:
    _import_target(conn, f"CREATE TRIGGER keep3 BEFORE {events} ON g FOR EACH ROW "
                         "EXECUTE FUNCTION keep3()")
    before: list[tuple[int, str]] = []
    if options.get("on_duplicate") == "update":
        # Rows that the records 3 and 6 update.
        conn.execute("ALTER TABLE g DISABLE TRIGGER keep3")
        conn.execute("INSERT INTO g (id, tenant, name) VALUES (3, 'acme', 'old'), "
                     "(6, 'acme', 'old')")
        conn.execute("ALTER TABLE g ENABLE TRIGGER keep3")
        before = [(3, "old"), (6, "old")]
    row = _import(conn, dsn, tmp_path, name, text, options)
    assert row["status"] == "failed", row
    assert "were not written" in row["error"] and "trigger" in row["error"]
    assert "27000" in row["error"]
    assert row["attempts"] == 1
    # The batch was undone: nothing of it landed.
    assert conn.execute("SELECT id, name FROM g ORDER BY id").fetchall() == before


@pytest.mark.parametrize("trigger", [
    None,
    "CREATE TRIGGER keep3 BEFORE INSERT ON g FOR EACH ROW EXECUTE FUNCTION keep3(); "
    "ALTER TABLE g DISABLE TRIGGER keep3",
    # A trigger that lets every record through.
    "CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$; "
    "CREATE TRIGGER up BEFORE INSERT ON g FOR EACH ROW EXECUTE FUNCTION up()",
])
def test_an_import_no_trigger_keeps_from_lands_every_record(conn: Conn, dsn: str,
                                                            tmp_path: Path,
                                                            trigger: str | None) -> None:
    _import_target(conn, trigger)
    row = _import(conn, dsn, tmp_path, "g.csv", CSV, {})
    assert row["status"] == "succeeded", row
    assert row["result"]["inserted"] == 5 and row["result"]["skipped"] == 0
    assert scalar(conn, "SELECT count(*) FROM g") == 5


def test_an_import_that_skips_duplicates_still_counts_them(conn: Conn, dsn: str,
                                                           tmp_path: Path) -> None:
    """on_duplicate skip skips on purpose: those records are no failure."""
    _import_target(conn, None)
    conn.execute("INSERT INTO g (id, tenant, name) VALUES (2, 'acme', 'old'), (4, 'acme', 'old')")
    row = _import(conn, dsn, tmp_path, "g.csv", CSV, {"on_duplicate": "skip"})
    assert row["status"] == "succeeded", row
    assert row["result"]["inserted"] == 3 and row["result"]["skipped"] == 2


def test_an_update_on_a_key_only_index_still_skips_another_scopes_key(conn: Conn, dsn: str,
                                                                      tmp_path: Path) -> None:
    """With a key-only unique index, update leaves a key another scope holds
    alone and counts it skipped, as imports.md says: no failure."""
    build_target(conn, "g", """id bigint NOT NULL UNIQUE, tenant text NOT NULL, name text,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant")
    conn.execute("INSERT INTO g (id, tenant, name) VALUES (2, 'globex', 'theirs'), "
                 "(4, 'acme', 'old')")
    row = _import(conn, dsn, tmp_path, "g.csv", CSV, {"on_duplicate": "update"})
    assert row["status"] == "succeeded", row
    assert row["result"]["skipped"] == 1 and row["result"]["updated"] == 1
    assert scalar(conn, "SELECT name FROM g WHERE id = 2") == "theirs"


# --- a trigger that keeps only rows the write would not change (hR review) --------------
# PostgreSQL's own suppress_redundant_updates_trigger() returns NULL for an
# UPDATE that changes nothing: the row already holds what the job writes.
# Such a row is not "kept": it is as the job would leave it. The 27000 check
# failed a backfill over rows partly set already, and a re-import with
# on_duplicate update of records that were already there.

SUPPRESS = ("CREATE TRIGGER same BEFORE UPDATE ON {t} FOR EACH ROW "
            "EXECUTE FUNCTION suppress_redundant_updates_trigger()")


@pytest.mark.parametrize("partitioned", [False, True])
@pytest.mark.parametrize("options", [{}, {"page_size": 3}])
def test_a_backfill_over_rows_already_set_succeeds_with_a_no_op_suppressing_trigger(
        conn: Conn, partitioned: bool, options: dict[str, Any]) -> None:
    _table(conn, partitioned=partitioned)
    conn.execute("UPDATE t SET status = 'y' WHERE id % 4 = 0")
    conn.execute(SUPPRESS.format(t="t_a" if partitioned else "t"))
    job_id = _backfill(conn, {}, options)
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row
    assert _set(conn) == 20
    assert scalar(conn, "SELECT count(*) FROM t WHERE scope = 'b' AND status = 'y'") == 0


@pytest.mark.parametrize("column", ["pgjobs_before", "pgjobs_after"])
def test_the_no_op_look_takes_any_column_name_of_the_target(conn: Conn, column: str) -> None:
    """The look at the passed-over rows copies them with a column of its
    own beside the target's: a target with a column of that name
    (pgjobs_before) failed the backfill, 42701 (hV review)."""
    _table(conn)
    conn.execute(f"ALTER TABLE t ADD COLUMN {column} int")
    conn.execute("UPDATE t SET status = 'y' WHERE id % 4 = 0")
    conn.execute(SUPPRESS.format(t="t"))
    job_id = _backfill(conn, {}, {"page_size": 3})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert _set(conn) == 20


def test_a_trigger_that_keeps_rows_needing_a_change_still_fails_the_backfill(conn: Conn) -> None:
    """The no-op allowance is no way around the check: a row the trigger
    keeps that the set would have changed still fails the job."""
    _table(conn)
    conn.execute("UPDATE t SET status = 'y' WHERE id % 8 = 0")
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {"page_size": 40})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "SQLSTATE 27000" in row["error"]
    assert _set(conn) == 5  # the rows set before the job; the page undone


@pytest.mark.parametrize("rule", [
    "CREATE RULE keep AS ON UPDATE TO t WHERE old.id % 4 = 0 DO INSTEAD NOTHING",
    "CREATE RULE keep AS ON UPDATE TO t DO INSTEAD NOTHING",
    "CREATE RULE keep AS ON UPDATE TO t WHERE old.id % 4 = 0 DO ALSO NOTHING",
])
def test_a_backfill_never_succeeds_with_rows_a_rule_keeps(conn: Conn, rule: str) -> None:
    """A rule on UPDATE: the backfill fails, or sets every row it reports."""
    _table(conn)
    conn.execute(rule)
    job_id = _backfill(conn, {}, {"page_size": 3})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    if row["status"] == "succeeded":
        assert _set(conn) == 20 == row["done"], row
    else:
        assert row["status"] == "failed", row
        assert row["done"] == _set(conn), row


# --- a trigger that routes records into a child table (hR review) -----------------------
# Inheritance partitioning as before PostgreSQL 10: the parent's BEFORE INSERT
# trigger inserts the row into a child and returns NULL. The INSERT counts no
# row for such a record, yet it landed (and reads of the parent see it): the
# 27000 check failed every import into such a target. Rows the statement put
# into the children now count as inserted; a record landing nowhere still fails.

ROUTE = """CREATE FUNCTION route() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN
        IF NEW.id % 3 = 0 AND TG_ARGV[0] = 'keep' THEN RETURN NULL; END IF;
        INSERT INTO public.g_acme VALUES (NEW.*);
        RETURN NULL;
    END$$"""


def _routed_target(conn: Conn, mode: str) -> None:
    build_target(conn, "g", """id bigint NOT NULL, tenant text NOT NULL, name text,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant")
    conn.execute("CREATE TABLE g_acme () INHERITS (g)")
    conn.execute("CREATE INDEX ON g_acme (tenant, id)")
    conn.execute(ROUTE)
    conn.execute(f"CREATE TRIGGER route BEFORE INSERT ON g FOR EACH ROW "
                 f"EXECUTE FUNCTION route('{mode}')")


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
@pytest.mark.parametrize("options", [{}, {"max_rejects": 5}])
def test_an_import_into_a_trigger_routed_parent_lands_every_record(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str,
        options: dict[str, Any]) -> None:
    _routed_target(conn, "all")
    row = _import(conn, dsn, tmp_path, name, text, options)
    assert row["status"] == "succeeded", row
    assert row["result"]["inserted"] == 5 and row["result"]["skipped"] == 0
    assert scalar(conn, "SELECT count(*) FROM ONLY g_acme") == 5
    assert scalar(conn, "SELECT count(*) FROM ONLY g") == 0


def test_an_import_with_a_bad_record_into_a_routed_parent_counts_each_once(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """A group that fails (a bad record) goes record by record: the rows the
    failed group routed are undone, and not counted."""
    _routed_target(conn, "all")
    text = "id,name\n1,a\n2,b\nx,c\n4,d\n"
    row = _import(conn, dsn, tmp_path, "g.csv", text, {"max_rejects": 5})
    assert row["status"] == "succeeded", row
    assert row["result"]["inserted"] == 3 and row["result"]["rejected"] == 1
    assert scalar(conn, "SELECT count(*) FROM g") == 3


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
def test_a_routing_trigger_that_drops_records_still_fails_the_import(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str) -> None:
    _routed_target(conn, "keep")
    row = _import(conn, dsn, tmp_path, name, text, {})
    assert row["status"] == "failed", row
    assert "were not written" in row["error"] and "27000" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM g") == 0


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
def test_a_reimport_with_update_of_identical_records_succeeds_with_a_suppressing_trigger(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str) -> None:
    """on_duplicate update of records already there, on a table with
    suppress_redundant_updates_trigger(): the trigger returns NULL for the
    updates that change nothing, and the 27000 check (hT) failed this
    legitimate re-import. With update, records no statement wrote count as
    skipped, as before this round (docs/imports.md says a trigger that keeps
    records out is not caught in that mode)."""
    _import_target(conn, SUPPRESS.format(t="g"))
    conn.execute("INSERT INTO g (id, tenant, name) VALUES (1, 'acme', 'a'), (3, 'acme', 'old')")
    row = _import(conn, dsn, tmp_path, name, text, {"on_duplicate": "update"})
    assert row["status"] == "succeeded", row
    assert conn.execute("SELECT id, name FROM g ORDER BY id").fetchall() == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"), (6, "f")]
    assert row["result"]["skipped"] == 1 and row["result"]["updated"] == 1


# --- rows routed into a child, counted by the statement too (hV review) -----------------
# Inheritance partitioning with a rule, the other way before PostgreSQL 10:
# an unconditional DO INSTEAD rule on INSERT puts the record into a child,
# and the INSERT's own row count says so. The child's insert counter (the
# trigger routing of the hR review) counted each record a second time: the
# import reported 10 inserted and -5 skipped for 5 records, and a batch that
# lost records read as whole. A statement writes at most one row a record.

RULE_ROUTE = ("CREATE RULE route AS ON INSERT TO g DO INSTEAD "
              "INSERT INTO g_acme VALUES (NEW.*) RETURNING g_acme.*")


def _rule_routed_target(conn: Conn) -> None:
    build_target(conn, "g", """id bigint NOT NULL, tenant text NOT NULL, name text,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant")
    conn.execute("CREATE TABLE g_acme () INHERITS (g)")
    conn.execute(RULE_ROUTE)


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
@pytest.mark.parametrize("options", [{}, {"max_rejects": 5}])
def test_an_import_into_a_rule_routed_parent_counts_each_record_once(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str,
        options: dict[str, Any]) -> None:
    _rule_routed_target(conn)
    row = _import(conn, dsn, tmp_path, name, text, options)
    assert row["status"] == "succeeded", row["error"]
    assert scalar(conn, "SELECT count(*) FROM ONLY g_acme") == 5
    assert row["result"]["inserted"] == 5, row
    assert row["result"]["skipped"] == 0, row


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
def test_records_a_child_keeps_out_of_a_rule_routed_parent_fail_the_import(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str) -> None:
    """The double count hid lost records: 2 of 5 kept out by the child's
    trigger read as 6 inserted, and the import succeeded."""
    _rule_routed_target(conn)
    conn.execute(KEEP_EVERY_3RD_ON.format(t="g_acme"))
    row = _import(conn, dsn, tmp_path, name, text, {})
    assert row["status"] == "failed", row
    assert "were not written" in row["error"] and "27000" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM g") == 0


@pytest.mark.parametrize(("name", "text"), [("g.csv", CSV), ("g.jsonl", JSONL)])
def test_records_a_child_keeps_out_of_a_trigger_routed_parent_fail_the_import(
        conn: Conn, dsn: str, tmp_path: Path, name: str, text: str) -> None:
    _routed_target(conn, "all")
    conn.execute(KEEP_EVERY_3RD_ON.format(t="g_acme"))
    row = _import(conn, dsn, tmp_path, name, text, {})
    assert row["status"] == "failed", row
    assert "were not written" in row["error"] and "27000" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM g") == 0


KEEP_EVERY_3RD_ON = """CREATE FUNCTION keep3() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN RETURN CASE WHEN NEW.id % 3 = 0 THEN NULL ELSE NEW END; END$$;
    CREATE TRIGGER keep3 BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION keep3()"""


def test_routed_records_uncounted_with_track_counts_off_say_so(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """The routed counts come from the transaction's insert counters, which
    a session with track_counts off does not keep: the import failed 27000,
    blaming the trigger for records that landed (hV review). It fails
    naming the setting, and nothing lands."""
    _routed_target(conn, "all")
    conn.execute(f"ALTER DATABASE {conn.info.dbname} SET track_counts = off")
    row = _import(conn, dsn, tmp_path, "g.csv", CSV, {})
    assert row["status"] == "failed", row
    assert "track_counts is off" in row["error"] and "55000" in row["error"], row["error"]
    assert scalar(conn, "SELECT count(*) FROM g") == 0


UPSERT = """CREATE FUNCTION ups() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
        UPDATE public.g SET name = NEW.name WHERE tenant = NEW.tenant AND id = NEW.id;
        IF FOUND THEN RETURN NULL; END IF;
        RETURN NEW;
    END$$;
    CREATE TRIGGER ups BEFORE INSERT ON g FOR EACH ROW EXECUTE FUNCTION ups()"""


@pytest.mark.parametrize("mode", ["error", "update"])
def test_an_upsert_trigger_is_refused_by_error_and_named_in_its_hint(
        conn: Conn, dsn: str, tmp_path: Path, mode: str) -> None:
    """A BEFORE INSERT trigger that updates the row already there and
    returns NULL (an upsert in a trigger): on_duplicate error stays strict
    (27000, nothing lands), its hint now names the mode that takes such a
    trigger, which lands every record (hV review)."""
    _import_target(conn, UPSERT)
    conn.execute("INSERT INTO g (id, tenant, name) VALUES (3, 'acme', 'old')")
    row = _import(conn, dsn, tmp_path, "g.csv", CSV, {"on_duplicate": mode})
    names = conn.execute("SELECT id, name FROM g ORDER BY id").fetchall()
    if mode == "error":
        assert row["status"] == "failed", row
        assert "27000" in row["error"] and "needs on_duplicate update" in row["error"], row
        assert names == [(3, "old")]
    else:
        assert row["status"] == "succeeded", row["error"]
        assert names == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (6, "f")]
        assert row["result"]["inserted"] == 4, row


@pytest.fixture
def runner_without_temp(conn: Conn) -> Any:
    """A role of the runner's rights (pgjobs_admin) with UPDATE on t, in a
    database whose TEMPORARY privilege PUBLIC no longer holds."""
    name = f"pgjobs_t_notemp_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {name}")
    conn.execute(f"CREATE ROLE {name} NOLOGIN IN ROLE pgjobs_admin")
    conn.execute(f"REVOKE TEMPORARY ON DATABASE {conn.info.dbname} FROM PUBLIC")
    yield name
    conn.execute("RESET ROLE")
    conn.execute(f"GRANT TEMPORARY ON DATABASE {conn.info.dbname} TO PUBLIC")
    conn.execute(f"DROP OWNED BY {name}")
    conn.execute(f"DROP ROLE {name}")


def test_a_runner_without_temp_is_told_to_grant_it(conn: Conn, runner_without_temp: str) -> None:
    """The no-op look copies the passed-over rows into a temporary table: a
    runner's role without TEMPORARY failed the backfill with PostgreSQL's
    bare 'permission denied to create temporary tables' (hV review). It
    still fails (the rows cannot be judged), saying what to grant."""
    _table(conn)
    conn.execute("UPDATE t SET status = 'y' WHERE id % 4 = 0")
    conn.execute(SUPPRESS.format(t="t"))
    conn.execute(f"GRANT SELECT, UPDATE ON t TO {runner_without_temp}")
    job_id = _backfill(conn, {}, {"page_size": 3})
    conn.execute(f"SET ROLE {runner_without_temp}")
    run_pages(conn, job_id)
    conn.execute("RESET ROLE")
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "42501" in row["error"] and "may not create temporary tables" in row["error"], row
    assert f"GRANT TEMPORARY ON DATABASE {conn.info.dbname} TO {runner_without_temp}" \
        in row["error"], row["error"]
    assert _set(conn) == 10  # the rows set before the job; the page undone


def test_the_no_op_look_copies_odd_columns_and_partitions_of_other_layouts(conn: Conn) -> None:
    """The trigger-less copy of the passed-over rows, across column types a
    copy may trip on (a domain with a CHECK, an array of an enum, json
    without equality, a generated and an identity column) and partitions
    whose columns lie in another order, one with a dropped column (hV
    review): a backfill over rows partly set succeeds, one a trigger keeps
    fails."""
    conn.execute("CREATE DOMAIN pos AS int CHECK (VALUE > 0)")
    conn.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
    conn.execute("""CREATE TABLE t (id bigint NOT NULL, scope text NOT NULL, status text,
                    created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                    p pos DEFAULT 1, moods mood[] DEFAULT '{ok}', j json DEFAULT '{"a": 1}',
                    g bigint GENERATED ALWAYS AS (id * 2) STORED,
                    k bigint GENERATED BY DEFAULT AS IDENTITY) PARTITION BY LIST (scope)""")
    conn.execute("""CREATE TABLE t_a (gone int, k bigint NOT NULL, j json, moods mood[],
                    p pos, created_at timestamptz NOT NULL DEFAULT now() - interval '1 day',
                    status text, scope text NOT NULL, id bigint NOT NULL,
                    g bigint GENERATED ALWAYS AS (id * 2) STORED)""")
    conn.execute("ALTER TABLE t_a DROP COLUMN gone")
    conn.execute("ALTER TABLE t ATTACH PARTITION t_a FOR VALUES IN ('a')")
    conn.execute("CREATE TABLE t_b PARTITION OF t FOR VALUES IN ('b')")
    conn.execute("CREATE INDEX ON t (scope, id)")
    conn.execute("SELECT pgjobs.register_target('t', 'id', 'scope', 'created_at')")
    conn.execute("""INSERT INTO t (id, scope, status)
                    SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'x'
                      FROM generate_series(1, 40) g""")
    conn.execute("UPDATE t SET status = 'y' WHERE id % 4 = 0")
    conn.execute(SUPPRESS.format(t="t_a"))
    job_id = _backfill(conn, {}, {"page_size": 3})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert _set(conn) == 20
    conn.execute("UPDATE t SET status = 'x' WHERE id % 8 <> 0")
    conn.execute(KEEP_EVERY_4TH)
    conn.execute("CREATE TRIGGER keep BEFORE UPDATE ON t_a FOR EACH ROW EXECUTE FUNCTION keep()")
    job_id = _backfill(conn, {}, {"page_size": 40})
    run_pages(conn, job_id)
    row = job(conn, job_id)
    assert row["status"] == "failed", row
    assert "SQLSTATE 27000" in row["error"], row["error"]
