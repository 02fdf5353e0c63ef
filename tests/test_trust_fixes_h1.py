"""Regression tests for the trust review h1: a registration judged again as the
table is at each use, not only as it was at register_target."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import build_target, job, run_job, scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()

# --- 1. ALTER TABLE after registration --------------------------------------------

# Each change makes a registered column one that register_target refuses: the
# scope one whose equal values are different tenants' texts (a case-insensitive
# collation: 'acme' matches 'ACME'; money: a spelling per lc_monetary), a key
# without one text (money) or order (jsonb), a created_at that is no time. (A
# key that lost NOT NULL fails its jobs at their pages: tests/test_trust_keys.py.)
ALTERATIONS = {
    "scope_nondeterministic": "ALTER TABLE reg ALTER COLUMN tenant TYPE text COLLATE ci",
    "scope_money": "ALTER TABLE reg ALTER COLUMN n TYPE money USING n::numeric::money",
    "key_json": "ALTER TABLE reg ALTER COLUMN id TYPE jsonb USING to_jsonb(id)",
    "created_at_text": "ALTER TABLE reg ALTER COLUMN created_at TYPE text",
    "key_money": "ALTER TABLE reg ALTER COLUMN id TYPE money USING id::numeric::money",
}


def _reg(conn: Conn, scope: str) -> None:
    conn.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', "
                 "deterministic = false)")
    build_target(conn, "reg", """id bigint NOT NULL, tenant text COLLATE "C" NOT NULL,
                 n integer NOT NULL, created_at timestamptz NOT NULL
                 DEFAULT now() - interval '1 hour'""", scope=scope)
    conn.execute("""INSERT INTO reg (id, tenant, n)
                    SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'ACME' END, g % 2
                      FROM generate_series(1, 20) g""")


@pytest.mark.parametrize("change", sorted(ALTERATIONS))
def test_a_target_altered_after_registration_is_refused_until_registered_again(
        conn: Conn, change: str) -> None:
    """register_target's column rule holds at every use: submit, preview, the
    read path. Before, only registration asked it, and ALTER TABLE afterwards
    went unseen."""
    scope = "n" if change == "scope_money" else "tenant"
    _reg(conn, scope)
    conn.execute(ALTERATIONS[change])
    value = "$0.00" if change == "scope_money" else "acme"
    for sql, args in [
            ("SELECT pgjobs.submit_delete('reg', %s)", (value,)),
            ("SELECT pgjobs.submit_export('reg', %s)", (value,)),
            ("SELECT pgjobs.preview('reg', %s)", (value,)),
            ("SELECT pgjobs.visible_count('reg', %s)", (value,)),
            ("SELECT pgjobs.mask('reg', %s)", (value,))]:
        with pytest.raises(psycopg.errors.Error) as err:
            conn.execute(sql, args)
        assert "changed after it was registered" in str(err.value), sql
        assert "register_target" in (err.value.diag.message_hint or "")
        conn.rollback()
    # doctor says so, with the fix, instead of failing on it.
    assert conn.execute("SELECT status, fix FROM pgjobs.doctor('reg')"
                        " WHERE check_name = 'target.registration'").fetchall() == [
        ("fail", scalar(conn, "SELECT hint FROM pgjobs._registration_problem("
                              "'reg', 'id', %s, 'created_at', NULL, true)", (scope,))
         + " Then register it again with pgjobs.register_target.")]
    # Registering again applies the same rule, with register_target's error.
    with pytest.raises(psycopg.errors.Error) as err:
        conn.execute("SELECT pgjobs.register_target('reg', 'id', %s, 'created_at')", (scope,))
    assert "changed after" not in str(err.value)


def test_a_delete_queued_before_its_scope_collation_changed_spares_the_other_tenant(
        conn: Conn) -> None:
    """A scope column given a case-insensitive collation after registration: a
    delete of tenant 'acme' (submitted before, or by a session whose
    pgjobs.allowed_scopes is 'acme') deleted tenant 'ACME''s rows too."""
    _reg(conn, "tenant")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg', 'acme')")
    conn.execute(ALTERATIONS["scope_nondeterministic"])
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "failed"
    assert "nondeterministic collation" in job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM reg WHERE tenant COLLATE \"C\" = 'ACME'") == 10



@pytest.mark.parametrize("call", [
    "SELECT pgjobs.submit_delete('reg', 'acme')",
    "SELECT pgjobs.submit_backfill('reg', 'acme', '{}', '{\"n\": 1}')",
    "SELECT pgjobs.submit_export('reg', 'acme')",
    "SELECT pgjobs.preview('reg', 'acme')",
    "SELECT pgjobs.visible('reg', 'acme')",
    "SELECT pgjobs.visible_count('reg', 'acme')",
    "SELECT pgjobs.mask('reg', 'acme')",
    "SELECT pgjobs.channel('reg', 'acme')",
])
def test_a_role_without_privilege_learns_nothing_of_an_altered_target(
        conn: Conn, call: str) -> None:
    """The registration re-check names the table's columns and types (its hint
    lists them). A client role with no privilege on the table must be refused
    as on a sound table (42501), and learn none of that: the checks keep their
    order. So must a role with some privilege but not the call's (SELECT on
    one column: pgjobs._require_entry asks the call's privileges before the
    registration is read). A role with the call's privileges is told what
    changed."""
    _reg(conn, "tenant")
    conn.execute("ALTER TABLE reg ALTER COLUMN tenant TYPE text COLLATE ci")
    stranger, column, reader = f"h1_stranger_{PID}", f"h1_column_{PID}", f"h1_reader_{PID}"
    try:
        for role in (stranger, column, reader):
            conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
        conn.execute(f"GRANT SELECT (id) ON reg TO {column}")
        conn.execute(f"GRANT SELECT, UPDATE, DELETE ON reg TO {reader}")
        conn.commit()
        for role, refused in ((stranger, True), (column, True), (reader, False)):
            conn.execute(f"SET ROLE {role}")
            with pytest.raises(psycopg.errors.Error) as err:
                conn.execute(call)
            conn.rollback()
            text = f"{err.value} {err.value.diag.message_hint or ''}"
            if refused:
                assert isinstance(err.value, psycopg.errors.InsufficientPrivilege), text
                assert "tenant" not in text and "collation" not in text, text
            else:
                assert "changed after it was registered" in text, text
    finally:
        conn.rollback()
        conn.execute("RESET ROLE")
        conn.execute("DROP TABLE reg")
        conn.execute("DROP COLLATION ci")
        for role in (stranger, column, reader):
            conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.commit()

# --- 2. a schema named cron where pg_cron is not ------------------------------------


@pytest.fixture
def creator(conn: Conn) -> Iterator[str]:
    """A client role that may create schemas in the database (no pg_cron here)."""
    role = f"pgjobs_h1_creator_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role} CASCADE")
    conn.execute(f"DROP ROLE {role}")


def test_pgjobs_never_runs_a_look_alike_cron_schema_s_code(conn: Conn, creator: str) -> None:
    """Without pg_cron, a role that may create schemas made `cron.job` (a view
    over its own function), `cron.job_run_details` (with its trigger) and
    `cron.unschedule`: pgjobs read and changed them by name, so the client
    function pgjobs._engine_wait ran the role's code as pgjobs' owner (a
    superuser here), and prune, unschedule and doctor as the administrator.
    Only pg_cron's own relations count."""
    assert scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'") == 0
    conn.execute(f"SET ROLE {creator}")
    conn.execute("""
        CREATE SCHEMA cron;
        CREATE TABLE cron.seen (who name, what text);
        GRANT USAGE ON SCHEMA cron TO PUBLIC;
        GRANT INSERT, SELECT ON cron.seen TO PUBLIC;
        CREATE FUNCTION cron.note(p_what text) RETURNS text LANGUAGE sql
            AS $f$ INSERT INTO cron.seen VALUES (current_user, p_what) RETURNING '* * * * *' $f$;
        CREATE VIEW cron.job AS
            SELECT 1::bigint AS jobid, cron.note('job') AS schedule,
                   'pgjobs.run'::text AS jobname, 'x'::text AS command, true AS active,
                   current_database()::text AS database, current_user::text AS username;
        CREATE TABLE cron.job_run_details (jobid bigint, end_time timestamptz, command text);
        INSERT INTO cron.job_run_details
            VALUES (1, now() - interval '9 days', 'CALL pgjobs.run(1)');
        CREATE FUNCTION cron.trg() RETURNS trigger LANGUAGE plpgsql
            AS $f$ BEGIN PERFORM cron.note('trigger'); RETURN OLD; END $f$;
        CREATE TRIGGER t BEFORE DELETE ON cron.job_run_details
            FOR EACH ROW EXECUTE FUNCTION cron.trg();
        CREATE FUNCTION cron.unschedule(bigint) RETURNS boolean LANGUAGE sql
            AS $f$ SELECT cron.note('unschedule') IS NOT NULL $f$;
        GRANT SELECT ON cron.job TO PUBLIC;
        GRANT SELECT, DELETE ON cron.job_run_details TO PUBLIC;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA cron TO PUBLIC""")
    conn.execute("RESET ROLE")
    # pgjobs._engine_wait reads cron.job only for a role that sees a due
    # delete queued (pgjobs._engine_wait_as): give the creator one.
    conn.execute("""
        CREATE TABLE public.h1_rows (id bigint NOT NULL, s int NOT NULL, data jsonb,
                                     created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON public.h1_rows (s, id);
        INSERT INTO public.h1_rows (id, s) VALUES (1, 1);
        SELECT pgjobs.register_target('public.h1_rows', 'id', 's', 'created_at', 'data');""")
    conn.execute(f"GRANT SELECT, DELETE ON public.h1_rows TO {creator}")
    conn.execute(f"SET ROLE {creator}")
    conn.execute("SELECT pgjobs.submit_delete('public.h1_rows', '1')")
    assert scalar(conn, "SELECT pgjobs._engine_wait()") is None
    conn.execute("RESET ROLE")
    conn.execute("SELECT pgjobs.prune()")
    assert scalar(conn, "SELECT pgjobs.unschedule() ->> 'unscheduled'") == "0"
    conn.execute("SELECT * FROM pgjobs.doctor()")
    assert conn.execute("SELECT who, what FROM cron.seen").fetchall() == []
    assert scalar(conn, "SELECT count(*) FROM cron.job_run_details") == 1


# --- 3. a backfill handler owned by a role with fewer rights -------------------------


def test_a_backfill_handler_runs_only_while_its_owner_has_the_engine_s_rights(
        conn: Conn, creator: str) -> None:
    """A handler runs with the engine's rights, and its owner can replace its body
    whenever it likes: one owned by a client role was accepted at submit, and
    one given to such a role after the submit ran at every page, the rule a
    target's own code (pgjobs._untrusted_roles) has always had to meet."""
    build_target(conn, "reg", """id bigint NOT NULL, tenant text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant")
    conn.execute("INSERT INTO reg (id, tenant) SELECT g, 'a' FROM generate_series(1, 5) g")
    conn.execute("CREATE TABLE seen (who name)")
    conn.execute("GRANT INSERT ON seen TO PUBLIC")
    conn.execute("""CREATE FUNCTION public.fill(p regclass, k text[]) RETURNS bigint
                    LANGUAGE sql AS $f$ INSERT INTO seen VALUES (current_user);
                                       SELECT cardinality(k)::bigint $f$""")
    submit = ("SELECT pgjobs.submit_backfill('reg', 'a', '{}', NULL, "
              """'{"handler": "public.fill"}')""")
    job_id = scalar(conn, submit)
    conn.execute(f"ALTER FUNCTION public.fill(regclass, text[]) OWNER TO {creator}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        conn.execute(submit)
    assert "handler" in str(err.value)
    conn.rollback()
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "failed"
    assert creator in job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM seen") == 0


# --- 4. another tenant's job ids, from a session confined to one tenant ------------


@pytest.fixture
def tenant_client(conn: Conn) -> Iterator[str]:
    """A client that may read, delete and update rows of `reg`, every tenant's."""
    role = f"pgjobs_h1_tenant_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    build_target(conn, "reg", """id bigint NOT NULL, tenant text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="tenant")
    conn.execute("INSERT INTO reg (id, tenant) SELECT g, 'a' FROM generate_series(1, 5) g")
    conn.execute(f"GRANT SELECT, DELETE, UPDATE ON reg TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    conn.execute(f"DROP OWNED BY {role} CASCADE")
    conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("verb", ["cancel", "pause", "resume", "retry", "add_items"])
def test_a_confined_session_cannot_tell_another_tenant_s_job_from_no_job(
        conn: Conn, tenant_client: str, verb: str) -> None:
    """A session whose pgjobs.allowed_scopes is one tenant sees no job of another
    (policy jobs_client_read); controlling one by id raised 42501 naming that
    tenant's scope instead of P0002, so ids could be probed for other tenants'
    jobs and their scopes read off the error."""
    secret = "other-tenant-secret-name"
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg', %s, '{}', '{}', "
                          """'{"run_at": "2100-01-01T00:00:00Z"}')""", (secret,))
    if verb == "add_items":
        conn.execute("CREATE TABLE fan (id bigint PRIMARY KEY, tenant text NOT NULL)")
        conn.execute(f"GRANT SELECT, UPDATE ON fan TO {tenant_client}")
        job_id = scalar(conn, "SELECT pgjobs.submit_items('thumb', 'fan', %s, '[1]')",
                        (secret,))
    elif verb == "resume":
        conn.execute("SELECT pgjobs.pause(%s)", (job_id,))
    elif verb == "retry":
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    before = job(conn, job_id)["status"]
    conn.execute(f"SET ROLE {tenant_client}")
    conn.execute("SET pgjobs.allowed_scopes = 'a'")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE id = %s", (job_id,)) == 0
    call = ("SELECT pgjobs.add_items(%s, '[2]')" if verb == "add_items"
            else f"SELECT pgjobs.{verb}(%s)")
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        conn.execute(call, (job_id,))
    assert secret not in str(err.value) and secret not in (err.value.diag.message_hint or "")
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    assert job(conn, job_id)["status"] == before


def test_a_dropped_target_does_not_fail_a_confined_session_s_reads_of_jobs(
        conn: Conn, tenant_client: str) -> None:
    """A registered table dropped (or its scope column renamed) left its
    registration behind, and every read of pgjobs.jobs by a session with
    pgjobs.allowed_scopes set failed with 42703 on it: every tenant's job list,
    stats and dashboard, for one dropped table."""
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('reg', 'a', '{}', '{}', "
                          """'{"run_at": "2100-01-01T00:00:00Z"}')""")
    # Another tenant's job: the policy then needs the allowed (target, scope)
    # keys, which read every registration.
    conn.execute("SELECT pgjobs.submit_delete('reg', 'b', '{}', '{}', "
                 """'{"run_at": "2100-01-01T00:00:00Z"}')""")
    build_target(conn, "gone", """id bigint NOT NULL, s text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now()""", scope="s")
    conn.execute("DROP TABLE gone")
    conn.execute(f"SET ROLE {tenant_client}")
    conn.execute("SET pgjobs.allowed_scopes = 'a'")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert scalar(conn, "SELECT pgjobs.stats() IS NOT NULL") is True


# --- 5. a key under a collation other than the database's --------------------------


def test_a_key_under_an_icu_collation_is_walked_in_its_own_order(conn: Conn) -> None:
    """The check that a page's (or an export chunk's) cursor moves forward
    compared two key literals under the database's default collation, while
    the walk orders by the column's: under 'en-US' ('-c2' before '_d1', "C"
    the other way) a delete failed mid-way, 'the cursor does not advance',
    having deleted part of what it matched."""
    conn.execute("CREATE COLLATION en_icu (provider = icu, locale = 'en-US')")
    build_target(conn, "icu", """k text COLLATE en_icu NOT NULL, tenant int NOT NULL,
                 v int NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 key="k", scope="tenant", index="unique")
    conn.execute("""INSERT INTO icu (k, tenant, v)
                    SELECT (ARRAY['a', 'B', '-c', '_d', 'é', 'E ', ' f', 'Z'])[1 + g % 8] || g,
                           1, g FROM generate_series(1, 2000) g""")
    # Every chunk of an export, 50 keys at a time, in the column's order.
    export_id = scalar(conn, "SELECT pgjobs.submit_export('icu', '1')")
    after, seen = None, 0
    while True:
        copy_sql, after = conn.execute("SELECT copy_sql, next_after FROM "
                                       "pgjobs.export_chunk_sql(%s, %s, 50)",
                                       (export_id, after)).fetchone()
        with conn.cursor().copy(copy_sql) as copy:
            seen += b"".join(bytes(data) for data in copy).count(b"\n")
        seen -= copy_sql.endswith("HEADER true)")  # the first chunk's header line
        if after is None:
            break
    assert seen == 2000
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('icu', '1', '{\"v\": {\"$gt\": 5}}', "
                          "'{}', '{\"page_size\": 50}')")
    run_job(conn, job_id)
    assert job(conn, job_id)["status"] == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM icu") == 5
