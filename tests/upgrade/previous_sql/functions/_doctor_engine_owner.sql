CREATE OR REPLACE FUNCTION pgjobs._doctor_engine_owner()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's engine.owner, engine.ddl_fence and engine.ddl_fence_held
-- checks. Read-only.
DECLARE
    v_name text;
BEGIN
    -- Engine owner: a superuser-owned engine runs the code of every target
    -- as a superuser, so every target not owned by a superuser is refused
    -- (pgjobs._require_trusted), and any mistake in pgjobs is a superuser's.
    check_name := 'engine.owner';
    target := NULL;
    SELECT string_agg(DISTINCT o.rolname, ', ')
      INTO v_name
      FROM (SELECT n.nspowner AS owner FROM pg_catalog.pg_namespace n
             WHERE n.nspname = 'pgjobs'
            UNION
            SELECT p.proowner FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pgjobs'::regnamespace) x
      JOIN pg_catalog.pg_roles o ON o.oid = x.owner
     WHERE o.rolsuper;
    IF v_name IS NULL THEN
        status := 'ok';
        detail := 'schema pgjobs and its functions are owned by roles that are not superusers';
        fix := NULL;
    ELSE
        status := 'warn';
        detail := format('schema pgjobs or its functions are owned by superuser %s: pgjobs runs '
                         'as a superuser and refuses every target a superuser does not own',
                         v_name);
        fix := 'CREATE ROLE pgjobs_owner NOLOGIN;  -- then, as a superuser: ALTER SCHEMA '
               'pgjobs OWNER TO pgjobs_owner, and ALTER TABLE / VIEW / SEQUENCE / FUNCTION '
               '... OWNER TO pgjobs_owner for every object of schema pgjobs; run `pgjobs run` '
               '(or pg_cron) as a role with no more rights than the owners of the targets '
               '(docs/operations.md)';
    END IF;
    RETURN NEXT;
    -- The DDL fence (migration 0091, pgjobs._ddl_fence_installed): without
    -- it a running delete or backfill re-checks trust at most once a
    -- second, and a DDL that lets a client's code into the target's reach
    -- (a rule, a GRANT of TRIGGER or REFERENCES, a policy, a table given
    -- away) can run that code as the runner on the pages of that second.
    check_name := 'engine.ddl_fence';
    IF pgjobs._ddl_fence_installed() THEN
        status := 'ok';
        detail := 'event triggers pgjobs_ddl_fence and pgjobs_ddl_fence_drop are enabled always: a '
                  'delete or backfill page checks trust in full after any DDL committed since '
                  'its last check';
        fix := NULL;
    ELSE
        status := 'warn';
        detail := 'the DDL fence is missing, disabled or enabled for origin sessions only '
                  '(event triggers pgjobs_ddl_fence and pgjobs_ddl_fence_drop, which only a '
                  'superuser may create, or the trigger ddl_fence_marks_commit, each must be '
                  'ENABLE ALWAYS: one merely ENABLEd does not fire for DDL in a '
                  'session_replication_role = replica session): a running delete or backfill re-checks trust at '
                  'most once a second, so a client''s code that a DDL lets into its target''s '
                  'reach can run as the runner''s role for up to a second of pages';
        fix := 'as a superuser: DROP EVENT TRIGGER IF EXISTS pgjobs_ddl_fence; DROP EVENT '
               'TRIGGER IF EXISTS pgjobs_ddl_fence_drop; CREATE EVENT TRIGGER pgjobs_ddl_fence '
               'ON ddl_command_end EXECUTE FUNCTION pgjobs._ddl_fence_mark(); CREATE EVENT '
               'TRIGGER pgjobs_ddl_fence_drop ON sql_drop EXECUTE FUNCTION '
               'pgjobs._ddl_fence_mark(); ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS; '
               'ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE ALWAYS; ALTER TABLE '
               'pgjobs.ddl_fence_marks ENABLE ALWAYS TRIGGER ddl_fence_marks_commit;  -- '
               '(docs/engine.md, The 1 s window and DDL)';
    END IF;
    RETURN NEXT;
    -- The fence held past a commit (pgjobs._ddl_fence_holders): a DDL
    -- transaction that ran SET CONSTRAINTS ALL IMMEDIATE and stays open, or a
    -- prepared one. SET CONSTRAINTS needs no privilege, so any role that may
    -- run some DDL can do it; every delete and backfill page of the database
    -- is 'blocked' until that transaction ends, and only this names it.
    check_name := 'engine.ddl_fence_held';
    v_name := pgjobs._ddl_fence_holders();
    IF v_name IS NULL THEN
        status := 'ok';
        detail := 'no transaction holds the DDL fence past its commit';
        fix := NULL;
    ELSE
        status := 'warn';
        detail := 'the DDL fence is held by ' || v_name || ': every delete and backfill page '
                  'of the database is blocked (no running job makes progress) until that '
                  'transaction ends (a DDL transaction that ran SET CONSTRAINTS ALL IMMEDIATE '
                  'and stays open, or a prepared one)';
        fix := 'end that transaction (commit or roll it back), as the words above say; '
               '(docs/engine.md, The fence and migrations'' locks)';
    END IF;
    RETURN NEXT;
END
$function$;
