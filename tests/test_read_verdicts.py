"""Read-path verdicts and set-based job visibility (issue 11, reads and
client-role costs).

1. The read path (visible, visible_count, mask, compile_filter, preview) and
   export chunks run on a trust/submitter verdict this session reached less
   than 1 s ago (pgjobs._target_recent, pgjobs.export_chunk_sql), kept in a
   session setting sealed with the engine's secret. A change that makes a
   target untrusted, or takes a submitter's privilege away, is refused at once
   in any other session and within 1 s in the session that holds a verdict;
   a forged, edited, copied or future-dated value is no verdict.
2. Policy jobs_client_read decides confinement and tenancy once per
   statement (migration 0024). Every role, target and allowed_scopes setting
   below sees exactly the rows the per-row rule (pgjobs._row_security_confines,
   pgjobs._scope_allowed) lets through.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]
PID = os.getpid()
OWNER = f"pgjobs_verdict_owner_{PID}"
READER = f"pgjobs_verdict_reader_{PID}"

# Each turns a trusted target untrusted in one way ({t}: the table).
UNTRUST = {
    "table_owner": "ALTER TABLE {t} OWNER TO {owner}",
    "trigger_grant_public": "GRANT TRIGGER ON {t} TO PUBLIC",
    "default_function": "CREATE FUNCTION {t}_d() RETURNS text LANGUAGE sql AS $$ SELECT 'd' $$;"
                        " ALTER TABLE {t} ADD COLUMN note text DEFAULT {t}_d();"
                        " ALTER FUNCTION {t}_d() OWNER TO {owner}",
    "column_type_owner": "CREATE DOMAIN {t}_code AS text;"
                         " ALTER TABLE {t} ADD COLUMN code {t}_code;"
                         " ALTER DOMAIN {t}_code OWNER TO {owner}",
}

READS = {
    "visible": "SELECT count(*) FROM pgjobs.visible('{t}', '1')",
    "visible_count": "SELECT pgjobs.visible_count('{t}', '1')",
    "mask": "SELECT pgjobs.mask('{t}', '1')",
    "compile_filter": """SELECT pgjobs.compile_filter('{t}', '{{"k": 1}}')""",
    "preview": "SELECT pgjobs.preview('{t}', '1')",
}


def _table(conn: Conn, name: str) -> None:
    conn.execute(f"""
        CREATE TABLE {name} (id bigint NOT NULL, scope int NOT NULL, data jsonb,
                             created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON {name} (scope, id);
        INSERT INTO {name} (id, scope, data)
        SELECT i, 1 + i % 2, '{{"k": 1}}' FROM generate_series(1, 20) i;
        SELECT pgjobs.register_target('{name}', 'id', 'scope', 'created_at', 'data');""")


def _drop_roles(conn: Conn) -> None:
    for role in (OWNER, READER):
        if scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)):
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def roles(conn: Conn) -> Iterator[None]:
    _drop_roles(conn)
    conn.execute(f"CREATE ROLE {OWNER} NOLOGIN")
    conn.execute(f"CREATE ROLE {READER} NOLOGIN IN ROLE pgjobs_client")
    yield
    conn.execute("RESET ROLE")
    _drop_roles(conn)


def _slot(conn: Conn, table: str) -> str:
    return f"pgjobs.verified_trusted_{scalar(conn, 'SELECT %s::regclass::oid', (table,))}"


def _refused(conn: Conn, sql: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(sql).fetchall()
    except errors.InsufficientPrivilege as exc:
        assert "refuses target" in str(exc) or "permission denied" in str(exc), exc
        return True
    return False


def test_a_read_keeps_a_sealed_verdict(conn: Conn) -> None:
    """The verdict is kept (so the window is real) and sealed: 64 hex digits
    that depend on the key, the role, the backend and the time."""
    _table(conn, "t_seal")
    assert conn.execute(f"SELECT current_setting('{_slot(conn, 't_seal')}', true)"
                        ).fetchone() in (None, (None,), ("",))
    conn.execute(READS["visible"].format(t="t_seal")).fetchall()
    value = scalar(conn, f"SELECT current_setting('{_slot(conn, 't_seal')}')")
    at, mac = value.split("/")
    assert len(mac) == 64 and abs(float(at) - time.time()) < 60
    # The key sealed is the slot and what the verdict is about (review r3:
    # a seal good in one slot must not pass in another).
    oid = str(scalar(conn, "SELECT 't_seal'::regclass::oid"))
    sealed = "SELECT pgjobs._verdict_mac(jsonb_build_array(%s::text, %s::text)::text, %s)"
    assert scalar(conn, sealed, (f"trusted_{oid}", oid, at)) == mac
    for other in ((f"trusted_{oid}", "0", at), (f"trusted_{oid}", oid, at + "1"),
                  (f"roles_{oid}", oid, at)):
        assert scalar(conn, sealed, other) != mac


def test_the_fresh_check_writes_out_the_seal_verdict_mac_makes(conn: Conn) -> None:
    """pgjobs._verdict_fresh computes pgjobs._verdict_mac's seal itself (a
    call of it cost more than its hashes): a value sealed by _verdict_mac
    now is fresh in its slot for its key, and in no other."""
    sealed = "SELECT pgjobs._verdict_mac(jsonb_build_array(%s::text, %s::text)::text, %s)"
    fresh = "SELECT pgjobs._verdict_fresh(%s, %s)"
    for _ in range(5):  # the verdict lasts 1 s: a loaded machine may pause longer
        at = scalar(conn, "SELECT to_char(extract(epoch FROM clock_timestamp()),"
                          " 'FM999999999990.000000')")
        conn.execute("SELECT set_config('pgjobs.verified_h144_slot', %s, false)",
                     (f"{at}/{scalar(conn, sealed, ('h144_slot', 'k', at))}",))
        if scalar(conn, fresh, ("h144_slot", "k")):
            break
    else:
        pytest.fail("a value sealed by pgjobs._verdict_mac was never fresh")
    assert scalar(conn, fresh, ("h144_slot", "other")) is False
    conn.execute("SELECT set_config('pgjobs.verified_h144_other', "
                 "current_setting('pgjobs.verified_h144_slot'), false)")
    assert scalar(conn, fresh, ("h144_other", "k")) is False


@pytest.mark.parametrize("how", sorted(UNTRUST))
def test_untrusted_is_refused_at_once_elsewhere_and_within_a_second_here(
        make_conn: Any, roles: None, how: str) -> None:
    reader = make_conn()
    other = make_conn()
    _table(reader, "t_win")
    for sql in READS.values():  # every path keeps or uses the verdict
        reader.execute(sql.format(t="t_win")).fetchall()
    changed_at = time.monotonic()
    for statement in UNTRUST[how].split(";"):
        other.execute(statement.format(t="t_win", owner=OWNER))
    assert other.execute("SELECT * FROM pgjobs._untrusted_roles('t_win')").fetchall()
    # Any session without a verdict: at once, on every path.
    fresh = make_conn()
    for name, sql in READS.items():
        assert _refused(fresh, sql.format(t="t_win")), name
    # The session that holds one: once the window has passed.
    time.sleep(max(0.0, 1.05 - (time.monotonic() - changed_at)))
    for name, sql in READS.items():
        assert _refused(reader, sql.format(t="t_win")), name


def test_forged_or_copied_verdicts_are_no_verdicts(make_conn: Any, roles: None) -> None:
    """Anyone can SET a pgjobs.* setting: none of these makes an untrusted
    target readable."""
    setup = make_conn()
    _table(setup, "t_good")
    _table(setup, "t_bad")
    donor = make_conn()
    donor.execute(READS["visible"].format(t="t_good")).fetchall()
    donor.execute(READS["visible"].format(t="t_bad")).fetchall()
    good = scalar(donor, f"SELECT current_setting('{_slot(donor, 't_good')}')")
    bad_from_donor = scalar(donor, f"SELECT current_setting('{_slot(donor, 't_bad')}')")
    setup.execute(f"ALTER TABLE t_bad OWNER TO {OWNER}")
    now = f"{time.time():.6f}"
    forged = {
        "garbage": "yes",
        "random seal": f"{now}/{secrets.token_hex(32)}",
        "another target's seal": good,
        "another session's seal": bad_from_donor,
        "future-dated": f"{time.time() + 30:.6f}/{bad_from_donor.split('/')[1]}",
        "edited time": f"{now}/{bad_from_donor.split('/')[1]}",
    }
    for name, value in forged.items():
        session = make_conn()
        session.execute("SELECT set_config(%s, %s, false)", (_slot(session, "t_bad"), value))
        for path, sql in READS.items():
            assert _refused(session, sql.format(t="t_bad")), (name, path)
        # ... and as a client, whose role cannot read the secret.
        session.execute(f"GRANT SELECT ON t_bad TO {READER}")
        session.execute(f"SET ROLE {READER}")
        session.execute("SELECT set_config(%s, %s, false)", (_slot(session, "t_bad"), value))
        assert _refused(session, READS["visible"].format(t="t_bad")), name
        session.execute("RESET ROLE")
    # The donor's own verdict on t_bad was taken before the change: it lapses.
    time.sleep(1.05)
    assert _refused(donor, READS["visible"].format(t="t_bad"))


def test_export_chunks_recheck_the_submitter_within_a_second(
        make_conn: Any, roles: None) -> None:
    admin = make_conn()
    _table(admin, "t_exp")
    admin.execute(f"GRANT SELECT ON t_exp TO {READER}")
    admin.execute(f"SET ROLE {READER}")
    job = scalar(admin, "SELECT pgjobs.submit_export('t_exp', '1')")
    admin.execute("RESET ROLE")
    worker = make_conn()
    chunk = "SELECT copy_sql FROM pgjobs.export_chunk_sql(%s, NULL, 5)"
    assert worker.execute(chunk, (job,)).fetchone()
    revoked_at = time.monotonic()
    admin.execute(f"REVOKE SELECT ON t_exp FROM {READER}")
    with pytest.raises(errors.InsufficientPrivilege):
        make_conn().execute(chunk, (job,))
    time.sleep(max(0.0, 1.05 - (time.monotonic() - revoked_at)))
    with pytest.raises(errors.InsufficientPrivilege):
        worker.execute(chunk, (job,))
    # A refusal is not kept: granted again, the next chunk goes through.
    admin.execute(f"GRANT SELECT ON t_exp TO {READER}")
    assert worker.execute(chunk, (job,)).fetchone()


# --- policy jobs_client_read: set-based, same rule as the per-row functions

SCOPES_SETTINGS = ["", "1", "01", " 1 , 2", "+2", "x", "1,x", "acme", " acme ", "7"]


@pytest.fixture
def world(conn: Conn, roles: None) -> Iterator[list[str]]:
    """Targets of every kind of visibility, jobs of several scopes and
    submitters on each; yields the client roles to look through."""
    made = [READER]
    for name in ("other", "confined"):
        role = f"pgjobs_verdict_{name}_{PID}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
        made.append(role)
    _table(conn, "v_read")      # READER may read
    _table(conn, "v_hidden")    # nobody but the admin may read
    _table(conn, "v_rls")       # row security confines its readers
    _table(conn, "v_rls_ok")    # row security, registered ignore_row_security
    conn.execute("""
        CREATE TABLE v_text (id bigint NOT NULL, scope text NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON v_text (scope, id);
        SELECT pgjobs.register_target('v_text', 'id', 'scope', 'created_at');
        CREATE TABLE v_plain (id bigint PRIMARY KEY, scope int NOT NULL);""")
    for table in ("v_rls", "v_rls_ok"):
        conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY p ON {table} USING (scope = 1)")
    conn.execute("UPDATE pgjobs.target_registry SET options = options"
                 " || '{\"ignore_row_security\": true}' WHERE target = 'v_rls_ok'::regclass")
    for role in made:
        conn.execute(f"GRANT SELECT ON v_read, v_rls, v_rls_ok, v_text, v_plain TO {role}")
    for table, scopes in (("v_read", ["1", "2", "7"]), ("v_hidden", ["1", "2"]),
                          ("v_rls", ["1", "2"]), ("v_rls_ok", ["1", "2"]),
                          ("v_text", ["acme", " acme", "1"]), ("v_plain", ["1", "01", "x"])):
        for scope in scopes:
            for submitter in (made[1], "postgres"):
                conn.execute(
                    "INSERT INTO pgjobs.jobs (kind, target, scope, status, submitted_by,"
                    " submitted_by_oid)"
                    " VALUES ('custom', %s::regclass, %s, 'queued', %s, %s::regrole::oid)",
                    (table, scope, submitter, submitter))
    # A stored scope that is not canonical (only a legacy row can hold one):
    # the policy compares it verbatim, never granting more than the rule.
    conn.execute("INSERT INTO pgjobs.jobs (kind, target, scope, status, submitted_by)"
                 " VALUES ('custom', 'v_read', '02', 'queued', 'postgres')")
    yield made
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    for role in made[1:]:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_policy_matches_the_per_row_rule(conn: Conn, world: list[str]) -> None:
    """Every client, every allowed_scopes spelling: the ids it sees are those
    the per-row rule lets through (for a legacy non-canonical stored scope,
    a subset: the policy never shows more)."""
    legacy = scalar(conn, "SELECT id FROM pgjobs.jobs WHERE scope = '02'")
    checked = 0
    for role in world:
        for setting in SCOPES_SETTINGS:
            conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (setting,))
            rule = {r[0] for r in conn.execute("""
                SELECT j.id FROM pgjobs.jobs j
                 WHERE (j.submitted_by_oid = (SELECT oid FROM pg_roles
                                               WHERE rolname = %(role)s)
                        OR (coalesce(has_table_privilege(%(role)s, j.target, 'SELECT'), false)
                            AND NOT pgjobs._row_security_confines(j.target, %(role)s)))
                   AND pgjobs._scope_allowed(j.target, j.scope)""", {"role": role})}
            conn.execute(f"SET ROLE {role}")
            seen = {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs")}
            counted = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
            conn.execute("RESET ROLE")
            assert seen - rule == set(), (role, setting)
            assert rule - seen <= {legacy}, (role, setting, rule - seen)
            assert counted == len(seen)
            checked += len(seen)
    conn.execute("RESET pgjobs.allowed_scopes")
    assert checked > 50  # the comparison saw rows, not only empty sets


def test_policy_sees_confinement_and_grants_in_the_next_statement(
        conn: Conn, world: list[str]) -> None:
    """Decided per statement, not per session: row security turned on, a
    grant revoked, allowed_scopes changed: the next statement sees it."""
    reader = world[0]

    def seen(table: str) -> int:
        with acting_as(conn, reader):
            return int(scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE target = %s::regclass",
                              (table,)))

    assert seen("v_read") == 7
    conn.execute("ALTER TABLE v_read ENABLE ROW LEVEL SECURITY")
    assert seen("v_read") == 0
    conn.execute("ALTER TABLE v_read DISABLE ROW LEVEL SECURITY")
    assert seen("v_read") == 7
    conn.execute("SET pgjobs.allowed_scopes = '07'")
    assert seen("v_read") == 2
    conn.execute("RESET pgjobs.allowed_scopes")
    conn.execute(f"REVOKE SELECT ON v_read FROM {reader}")
    assert seen("v_read") == 0


def test_policy_evaluates_the_rule_once_per_statement(conn: Conn, world: list[str]) -> None:
    """The plan shows the confinement and tenancy lists as InitPlans, not as
    calls per row (the 7-12 s class)."""
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    conn.execute(f"SET ROLE {world[0]}")
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM pgjobs.jobs"))
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    filters = [line for line in plan.splitlines() if "Filter:" in line]
    assert filters and all("_scope_allowed" not in f and "_row_security_confines" not in f
                           for f in filters), plan
    assert "_confined_targets" in plan and "_allowed_scope_keys" in plan, plan
    assert plan.count("InitPlan") >= 3, plan


def test_stats_for_a_tenant_counts_only_its_scopes(conn: Conn, world: list[str]) -> None:
    conn.execute("SET pgjobs.allowed_scopes = '01'")
    conn.execute(f"SET ROLE {world[0]}")
    stats = scalar(conn, "SELECT pgjobs.stats()")
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    queued = {(q["target"], q["jobs"]) for q in stats["queue"]}
    # '01' is scope 1 of the integer targets v_read and v_rls_ok (2 jobs each),
    # and the text '01' of the unregistered v_plain; not v_text's '1' (text),
    # not v_rls (confined) nor v_hidden (not readable).
    assert queued == {("public.v_read", 2), ("public.v_rls_ok", 2), ("public.v_plain", 2)}, \
        json.dumps(stats["queue"])
