CREATE OR REPLACE FUNCTION pgjobs._cron_scheduler(p_username text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a pg_cron job (or run) of role p_username may be pgjobs' own:
-- that role exists and may call pgjobs.schedule(), which installs them.
-- pg_cron lets every role that may use its schema schedule jobs that run
-- as itself, under any name (a name is unique only per role), so a job
-- named pgjobs.run or pgjobs.prune is pgjobs' only when its role passes
-- this. The one rule behind pgjobs._cron_jobs and prune's trim of pg_cron's
-- history. False for a role that is gone. Locks nothing.
BEGIN
    RETURN EXISTS (
        SELECT FROM pg_catalog.pg_roles r
         WHERE r.rolname = p_username
           AND has_function_privilege(r.oid, 'pgjobs.schedule(jsonb)'::regprocedure,
                                      'EXECUTE'));
END
$$;
