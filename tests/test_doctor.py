"""`pgjobs.doctor()` and `pgjobs doctor`: each finding is found, explained, and
its `fix` really fixes it (the fix is executed, then doctor says ok).

The per-test databases are never pg_cron's database, so there doctor reports
pg_cron as unusable with the `pgjobs run --loop` alternative; the pg_cron
checks passing are tested in the session's cron database (`cron_dsn`, which
needs a throwaway cluster: run pytest without PGJOBS_TEST_URL).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from tests.support import (
    claim,
    expire_lease,
    job,
    make_rows_target,
    make_target,
    scalar,
    submit,
    who,
)

Conn = psycopg.Connection[Any]
Finding = dict[str, Any]


def doctor(conn: Conn, target: str | None = None) -> list[Finding]:
    cur = conn.execute("SELECT * FROM pgjobs.doctor(%s::regclass)", (target,))
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def finding(conn: Conn, check: str, target: str | None = None) -> Finding:
    found = [f for f in doctor(conn, target) if f["check_name"] == check]
    assert len(found) == 1, (check, found)
    return found[0]


def apply_fix(conn: Conn, fix: str) -> None:
    """Run a fix's statements one by one (autocommit: CONCURRENTLY is allowed,
    which it is not in one multi-statement query)."""
    sql = fix.split("--")[0]
    for statement in (s.strip() for s in sql.split(";")):
        if statement:
            conn.execute(statement)


def assert_ok(f: Finding) -> None:
    assert (f["status"], f["fix"]) == ("ok", None), f


@pytest.fixture
def runner_session(make_conn: Callable[..., Conn]) -> Conn:
    """A connection that looks like `pgjobs run --loop` driving the engine."""
    return make_conn(application_name="pgjobs run")


@pytest.fixture
def engine_owner(conn: Conn) -> Iterator[str]:
    """The recommended set-up (docs/operations.md): schema pgjobs and its
    objects, and the targets, owned by one ordinary role, not a superuser
    (doctor warns with engine.owner otherwise), member of pg_monitor. Tables the test creates
    afterwards are handed over by the test."""
    role = f"pgjobs_test_engine_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    # pg_monitor: throttling reads replica lag and autovacuum as the owner
    # (doctor warns with throttle.visibility otherwise)
    conn.execute(f"GRANT pg_monitor TO {role}")
    conn.execute(f"ALTER SCHEMA pgjobs OWNER TO {role}")
    statements = [r[0] for r in conn.execute("""
        SELECT format('ALTER ROUTINE %%s OWNER TO %%I', p.oid::regprocedure, %s::text)
          FROM pg_proc p WHERE p.pronamespace = 'pgjobs'::regnamespace
        UNION ALL
        SELECT format('ALTER TABLE %%s OWNER TO %%I', c.oid::regclass, %s::text)
          FROM pg_class c
         WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind IN ('r', 'v')""",
        (role, role)).fetchall()]
    for statement in statements:
        conn.execute(statement)
    yield role
    conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_superuser_owned_engine_is_flagged(conn: Conn) -> None:
    f = finding(conn, "engine.owner")
    assert f["status"] == "warn"
    assert "superuser" in f["detail"] and "docs/operations.md" in f["fix"]


def test_engine_owned_by_an_ordinary_role_passes(conn: Conn, engine_owner: str) -> None:
    assert_ok(finding(conn, "engine.owner"))


# --- targets ----------------------------------------------------------------------


def test_healthy_document_target_passes(conn: Conn) -> None:
    make_rows_target(conn)
    conn.execute("CREATE INDEX ON user_table_rows USING gin (table_id, data jsonb_path_ops)")
    findings = [f for f in doctor(conn, "user_table_rows") if f["target"] is not None]
    assert [f["check_name"] for f in findings] == [
        "target.trusted", "target.grants", "target.key_index", "target.document_index",
        "target.autovacuum", "target.dead_tuples", "jobs.leases", "jobs.heartbeats",
        "jobs.paused", "jobs.throttled", "jobs.queued_age", "workers.listening"]
    for f in findings:
        assert_ok(f)
        assert f["target"] == "public.user_table_rows"


def test_missing_key_index_is_explained_and_the_fix_creates_it(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    conn.execute("DROP INDEX user_table_rows_table_id_id_idx")
    f = finding(conn, "target.key_index", "user_table_rows")
    assert f["status"] == "fail"
    assert "(table_id, id)" in f["detail"]
    assert f["fix"] == ("CREATE INDEX CONCURRENTLY user_table_rows_table_id_id_idx"
                        " ON public.user_table_rows USING btree (table_id, id);")
    # The very statement register_target's hint gives.
    conn.execute("DELETE FROM pgjobs.target_registry")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                     " 'created_at')")
    assert err.value.diag.message_hint == f["fix"]

    apply_fix(conn, f["fix"])
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 " 'created_at')")
    assert_ok(finding(conn, "target.key_index", "user_table_rows"))


def test_index_in_the_wrong_order_does_not_count(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    conn.execute("DROP INDEX user_table_rows_table_id_id_idx")
    conn.execute("CREATE INDEX wrong_order ON user_table_rows (id, table_id)")
    assert finding(conn, "target.key_index")["status"] == "fail"


def test_invalid_key_index_is_reindexed(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    conn.execute("UPDATE pg_catalog.pg_index SET indisvalid = false"
                 " WHERE indexrelid = 'user_table_rows_table_id_id_idx'::regclass")
    f = finding(conn, "target.key_index")
    assert f["status"] == "fail" and "invalid" in f["detail"]
    assert f["fix"] == "REINDEX INDEX CONCURRENTLY public.user_table_rows_table_id_id_idx;"
    apply_fix(conn, f["fix"])
    assert_ok(finding(conn, "target.key_index"))


def test_missing_gin_index_on_a_document_target(conn: Conn) -> None:
    make_rows_target(conn)
    f = finding(conn, "target.document_index")
    assert f["status"] == "warn"
    assert f["fix"] == (
        "CREATE EXTENSION IF NOT EXISTS btree_gin; CREATE INDEX CONCURRENTLY"
        " user_table_rows_table_id_data_idx ON public.user_table_rows"
        " USING gin (table_id, data jsonb_path_ops);")
    apply_fix(conn, f["fix"])
    f = finding(conn, "target.document_index")
    assert_ok(f)
    assert "user_table_rows_table_id_data_idx" in f["detail"]
    # A target without a document has no such check.
    make_rows_target(conn, "plain_rows", document=False)
    assert [x for x in doctor(conn, "plain_rows")
            if x["check_name"] == "target.document_index"] == []


def test_autovacuum_left_at_the_default_is_tuned_by_the_fix(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    conn.execute("ALTER TABLE user_table_rows RESET (autovacuum_vacuum_scale_factor)")
    f = finding(conn, "target.autovacuum")
    assert f["status"] == "warn" and "20.0%" in f["detail"]
    assert f["fix"] == ("ALTER TABLE public.user_table_rows SET (autovacuum_vacuum_scale_factor"
                        " = 0.02, autovacuum_analyze_scale_factor = 0.02);")
    apply_fix(conn, f["fix"])
    assert_ok(finding(conn, "target.autovacuum"))

    conn.execute("ALTER TABLE user_table_rows SET (autovacuum_enabled = false)")
    f = finding(conn, "target.autovacuum")
    assert f["status"] == "warn"
    assert f["fix"] == "ALTER TABLE public.user_table_rows RESET (autovacuum_enabled);"
    apply_fix(conn, f["fix"])
    assert_ok(finding(conn, "target.autovacuum"))


def test_autovacuum_is_not_judged_when_registered_without_tuning(conn: Conn) -> None:
    make_rows_target(conn, document=False, register=False)
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id',"
                 " 'created_at', NULL, '{\"tune_autovacuum\": false}')")
    f = finding(conn, "target.autovacuum")
    assert_ok(f)
    assert "tune_autovacuum off" in f["detail"]


def test_dead_tuples_after_a_mass_delete_and_vacuum_clears_them(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    # No autovacuum racing the test; statistics flushed when the session idles.
    conn.execute("ALTER TABLE user_table_rows SET (autovacuum_enabled = false)")
    conn.execute("INSERT INTO user_table_rows (table_id) SELECT 1 FROM generate_series(1, 5000)")
    conn.execute("DELETE FROM user_table_rows WHERE id <= 3000")
    conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
    f = finding(conn, "target.dead_tuples")
    assert f["status"] == "warn"
    assert f["detail"].startswith("3000 dead tuples for 2000 live")
    assert f["fix"] == "VACUUM (ANALYZE) public.user_table_rows;"
    apply_fix(conn, f["fix"])
    conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
    assert_ok(finding(conn, "target.dead_tuples"))


def test_dropped_target_is_a_failure_and_the_fix_unregisters_it(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    oid = scalar(conn, "SELECT 'user_table_rows'::regclass::oid")
    conn.execute("DROP TABLE user_table_rows")
    f = finding(conn, "target.exists")
    assert (f["status"], f["target"]) == ("fail", str(oid))
    assert f["fix"] == f"SELECT pgjobs.unregister_target({oid}::regclass);"
    apply_fix(conn, f["fix"])
    assert [x for x in doctor(conn) if x["check_name"].startswith("target.")] == []


def test_unregistered_target_is_an_error(conn: Conn) -> None:
    make_target(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not registered"):
        doctor(conn, "items")
    with pytest.raises(psycopg.errors.UndefinedTable):
        doctor(conn, "no_such_table")


# --- pg_cron ----------------------------------------------------------------------


def test_pg_cron_unusable_here_names_pgjobs_run_loop(conn: Conn,
                                                     make_conn: Callable[..., Conn]) -> None:
    cron = [f for f in doctor(conn) if f["check_name"].startswith("pg_cron.")]
    problems = [f for f in cron if f["status"] != "ok"]
    # Steps before the first problem pass; later ones are not judged.
    assert problems == [cron[-1]], cron
    problem = problems[0]
    assert problem["status"] == "warn"
    assert problem["check_name"] in ("pg_cron.installed", "pg_cron.preloaded",
                                     "pg_cron.database")
    assert "pgjobs run --loop" in problem["fix"]
    assert conn.info.dbname in problem["fix"]

    # A connected `pgjobs run` session drives the engine: nothing to fix.
    make_conn(application_name="pgjobs run")
    again = [f for f in doctor(conn) if f["check_name"] == problem["check_name"]][0]
    assert_ok(again)
    assert "1 connected `pgjobs run` session" in again["detail"]


# --- jobs -------------------------------------------------------------------------


def test_expired_lease_is_found_and_prune_takes_the_job_back(conn: Conn) -> None:
    make_rows_target(conn, document=False)
    make_target(conn)
    job_id = submit(conn, target="user_table_rows")
    other_id = submit(conn, target="items")
    assert sorted(claim(conn, "w1", limit=2)) == [job_id, other_id]
    expire_lease(conn, job_id)
    expire_lease(conn, other_id)
    f = finding(conn, "jobs.leases")
    assert f["status"] == "warn"
    assert f"(ids {job_id}, {other_id})" in f["detail"]
    assert f["fix"] == "SELECT pgjobs.prune();"
    # Restricted to one target: that target's jobs only.
    f = finding(conn, "jobs.leases", "user_table_rows")
    assert (f["status"], f["target"]) == ("warn", "public.user_table_rows")
    assert f"(ids {job_id})" in f["detail"]
    apply_fix(conn, f["fix"])
    assert_ok(finding(conn, "jobs.leases"))
    assert job(conn, job_id)["status"] == "queued"


def test_running_job_without_heartbeat_is_taken_back(conn: Conn) -> None:
    make_target(conn)
    job_id = submit(conn, options={"lease": "1 hour"})
    assert claim(conn, "hung-worker") == [job_id]
    assert_ok(finding(conn, "jobs.heartbeats"))
    conn.execute("UPDATE pgjobs.jobs SET heartbeat_at = now() - interval '40 minutes'"
                 " WHERE id = %s", (job_id,))
    f = finding(conn, "jobs.heartbeats")
    assert f["status"] == "warn"
    assert f"(ids {job_id})" in f["detail"]
    apply_fix(conn, f["fix"])
    assert_ok(finding(conn, "jobs.heartbeats"))
    assert job(conn, job_id)["status"] == "queued"
    # The hung worker is fenced off.
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s)",
                  (job_id, who(conn, job_id, 'hung-worker'))) is False


def test_old_pending_storage_deletions(conn: Conn) -> None:
    assert_ok(finding(conn, "storage.deletions"))
    conn.execute("INSERT INTO pgjobs.storage_deletions (uri, job_id, queued_at)"
                 " VALUES ('file:///tmp/x.csv', 1, now() - interval '2 days')")
    f = finding(conn, "storage.deletions")
    assert f["status"] == "warn"
    assert f["fix"].startswith("pgjobs worker --once")
    conn.execute("UPDATE pgjobs.storage_deletions SET attempts = 10, last_error = 'denied'")
    f = finding(conn, "storage.deletions")
    assert f["status"] == "warn" and "denied" in f["detail"]
    assert f["fix"].startswith("UPDATE pgjobs.storage_deletions SET attempts = 0")


def test_doctor_is_for_admins_only(conn: Conn) -> None:
    assert scalar(conn, "SELECT has_function_privilege('pgjobs_client',"
                        " 'pgjobs.doctor(regclass)', 'EXECUTE')") is False
    assert scalar(conn, "SELECT has_function_privilege('pgjobs_admin',"
                        " 'pgjobs.doctor(regclass)', 'EXECUTE')") is True


# --- the command --------------------------------------------------------------------


@pytest.fixture
def cli(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_DOCTOR_FAIL_ON", "PGJOBS_JSON"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, "doctor", *args])

    return invoke


LINE = re.compile(r"^(OK  |WARN|FAIL)  (\S+)  (\S+)  (.+)$")


def test_cli_piped_lines_and_exit_1_when_something_needs_fixing(
        cli: Callable[..., Result], conn: Conn) -> None:
    make_rows_target(conn, document=False)
    conn.execute("DROP INDEX user_table_rows_table_id_id_idx")
    result = cli()
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    parsed: list[tuple[str, str, str]] = []
    for i, line in enumerate(lines):
        if line.startswith("  fix: "):
            assert parsed and parsed[-1][0] != "OK", lines
            continue
        match = LINE.match(line)
        assert match, line
        parsed.append((match[1].strip(), match[2], match[3]))
        # Every finding that is not ok is followed by its fix.
        if parsed[-1][0] != "OK":
            assert lines[i + 1].startswith("  fix: "), lines
    assert ("FAIL", "target.key_index", "public.user_table_rows") in parsed
    fix = lines[lines.index(next(x for x in lines if "target.key_index" in x)) + 1]
    assert fix == ("  fix: CREATE INDEX CONCURRENTLY user_table_rows_table_id_id_idx"
                   " ON public.user_table_rows USING btree (table_id, id);")
    assert re.fullmatch(r"\d+ ok, \d+ warn, [1-9]\d* fail\n", result.stderr)


def test_cli_exit_0_when_healthy(cli: Callable[..., Result], conn: Conn,
                                 runner_session: Conn, engine_owner: str) -> None:
    # registered once pgjobs' owner may read it (register_target refuses
    # otherwise), then handed to that owner
    make_rows_target(conn, register=False)
    conn.execute(f"GRANT SELECT ON user_table_rows TO {engine_owner}")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', "
                 "'created_at', 'data')")
    conn.execute(f"ALTER TABLE user_table_rows OWNER TO {engine_owner}")
    conn.execute("CREATE INDEX ON user_table_rows USING gin (table_id, data jsonb_path_ops)")
    result = cli("user_table_rows")
    assert result.exit_code == 0, result.output
    assert "  fix: " not in result.stdout
    assert all(line.startswith("OK  ") for line in result.stdout.splitlines())


def test_cli_fail_on_and_json(cli: Callable[..., Result], conn: Conn,
                              runner_session: Conn, engine_owner: str) -> None:
    make_rows_target(conn, register=False)  # no gin index: a warning only
    conn.execute(f"GRANT SELECT ON user_table_rows TO {engine_owner}")
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', "
                 "'created_at', 'data')")
    conn.execute(f"ALTER TABLE user_table_rows OWNER TO {engine_owner}")
    assert cli().exit_code == 1
    assert cli("--fail-on", "fail").exit_code == 0
    result = cli("--json", "user_table_rows")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    warn = [f for f in findings if f["status"] != "ok"]
    assert [f["check_name"] for f in warn] == ["target.document_index"]
    assert set(warn[0]) == {"check_name", "status", "target", "detail", "fix"}


def test_cli_unknown_target_is_a_usage_error(cli: Callable[..., Result], conn: Conn) -> None:
    make_target(conn)
    result = cli("items")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: table public.items is not registered")
    assert "Traceback" not in result.stderr
    assert cli("no_such_table").exit_code == 2


# --- in pg_cron's own database ----------------------------------------------------------


@pytest.fixture
def cron(cron_dsn: str) -> Iterator[Conn]:
    """pg_cron's database, pgjobs scheduled; unscheduled and emptied after."""
    conn = psycopg.connect(cron_dsn, autocommit=True)
    try:
        conn.execute("SELECT pgjobs.schedule()")
        yield conn
    finally:
        conn.execute("DELETE FROM cron.job_run_details WHERE command = 'doctor-test'")
        conn.execute("SELECT pgjobs.unschedule()")
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("DELETE FROM pgjobs.target_registry")
        conn.close()


def test_pg_cron_checks_pass_once_scheduled(cron: Conn) -> None:
    findings = {f["check_name"]: f for f in doctor(cron)
                if f["check_name"].startswith("pg_cron.")}
    assert sorted(findings) == ["pg_cron.database", "pg_cron.history", "pg_cron.installed",
                                "pg_cron.preloaded", "pg_cron.scheduled"]
    for f in findings.values():
        assert_ok(f)
    assert "pgjobs.run" in findings["pg_cron.scheduled"]["detail"]

    cron.execute("SELECT pgjobs.unschedule()")
    f = finding(cron, "pg_cron.scheduled")
    assert (f["status"], f["fix"]) == ("warn", "SELECT pgjobs.schedule();")
    apply_fix(cron, f["fix"])
    assert_ok(finding(cron, "pg_cron.scheduled"))


def test_pg_cron_history_not_trimmed(cron: Conn) -> None:
    jobs = dict(cron.execute("SELECT jobname, jobid FROM cron.job"
                             " WHERE jobname LIKE 'pgjobs.%'").fetchall())
    # pg_cron's own prune run must not trim the rows before doctor sees them:
    # deactivating it stops the next ticks, and one transaction hides the rows
    # from a run a tick started already (the fixture's schedule is moments old).
    with cron.transaction(force_rollback=True):
        cron.execute("SELECT cron.alter_job(%s, active => false)", (jobs["pgjobs.prune"],))
        cron.execute(
            "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command,"
            " status, return_message, start_time, end_time)"
            " SELECT %s, 0, current_database(), current_user, 'doctor-test', 'succeeded',"
            "        'test', now() - interval '3 days', now() - interval '3 days'"
            "   FROM generate_series(1, 10001)", (jobs["pgjobs.run"],))
        f = finding(cron, "pg_cron.history")
        assert f["status"] == "warn"
        assert f["fix"] == "SELECT pgjobs.prune('24:00:00');"
        assert finding(cron, "pg_cron.scheduled")["status"] == "warn"  # prune inactive
        apply_fix(cron, f["fix"])
        assert_ok(finding(cron, "pg_cron.history"))


def test_an_unschedule_in_pg_crons_own_database_is_seen_despite_recent_runs(cron: Conn) -> None:
    """pg_cron ran pgjobs here a moment ago, then pgjobs was unscheduled: doctor
    trusts cron.job, not the note of past runs (evidence counts only where pg_cron
    cannot schedule here: the managed-service recipe)."""
    cron.execute("""
        INSERT INTO pgjobs.settings (key, value)
        SELECT 'engine_seen.' || what, jsonb_build_object('at', now(), 'backend_type', 'pg_cron')
          FROM unnest(ARRAY['run', 'prune']) AS what
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""")
    try:
        for unscheduled in ("pgjobs.run", "pgjobs.prune"):
            cron.execute("SELECT cron.unschedule(%s)", (unscheduled,))
            f = finding(cron, "pg_cron.scheduled")
            assert (f["status"], f["fix"]) == ("warn", "SELECT pgjobs.schedule();"), unscheduled
            apply_fix(cron, f["fix"])
            assert_ok(finding(cron, "pg_cron.scheduled"))
    finally:
        cron.execute("DELETE FROM pgjobs.settings WHERE key LIKE 'engine_seen%'")
