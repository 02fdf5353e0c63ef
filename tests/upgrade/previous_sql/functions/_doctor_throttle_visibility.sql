CREATE OR REPLACE FUNCTION pgjobs._doctor_throttle_visibility()
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's throttle.visibility check. Read-only.
DECLARE
    v_name text;
BEGIN
    -- The health signals need the LSNs of pg_stat_replication and the tables
    -- of pg_stat_progress_vacuum, visible to pg_read_all_stats (pg_monitor).
    target := NULL;
    check_name := 'throttle.visibility';
    fix := NULL;
    SELECT p.proowner::regrole::text INTO v_name
      FROM pg_catalog.pg_proc p WHERE p.oid = 'pgjobs._health()'::regprocedure;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE r.rolname = v_name
                  AND (r.rolsuper OR pg_has_role(r.oid, 'pg_read_all_stats', 'USAGE'))) THEN
        status := 'ok';
        detail := format('%s, which owns pgjobs._health, sees replica lag and autovacuum',
                         v_name);
    ELSE
        status := 'warn';
        detail := format('%s, which owns pgjobs._health, is not a member of pg_monitor: the '
                         'replica lag of standbys without a slot, autovacuum and old '
                         'transactions of other roles are invisible to throttling, and a '
                         'submit''s cutoff horizon is -infinity while a session of another '
                         'role is open in the database (rows updated after the submit are '
                         'then spared)', v_name);
        fix := format('GRANT pg_monitor TO %s;  -- as a superuser', v_name);
    END IF;
    RETURN NEXT;
END
$function$;
