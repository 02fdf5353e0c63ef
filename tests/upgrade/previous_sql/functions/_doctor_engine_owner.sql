CREATE OR REPLACE FUNCTION pgjobs._doctor_engine_owner()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's engine.owner check. Read-only.
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
END
$function$;
