CREATE OR REPLACE FUNCTION pgjobs._doctor_cron_jobs()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs' cron jobs in this database, {"pgjobs.run": {schedule, command,
-- active}, "pgjobs.prune": {...}} ('{}' when neither is scheduled), or NULL
-- when pg_cron's job table is not in this database. pgjobs.doctor reads it
-- once: _doctor_pg_cron judges the schedule, and the prune command and its
-- retention are what the fixes and the history check refer to. Read-only.
DECLARE
    v_jobs jsonb;
    v_job regclass := pgjobs._cron_relation('job');  -- pg_cron's own, read by oid
BEGIN
    IF v_job IS NULL THEN
        RETURN NULL;
    END IF;
    -- pgjobs' own jobs only: a client's look-alike of the same name
    -- (pgjobs._cron_jobs) neither schedules the engine nor hides its runner.
    SELECT jsonb_object_agg(c.jobname, jsonb_build_object(
               'schedule', c.schedule, 'command', c.command, 'active', c.active))
      INTO v_jobs
      FROM pgjobs._cron_jobs() c
     WHERE c.jobname IN ('pgjobs.run', 'pgjobs.prune');
    v_jobs := coalesce(v_jobs, '{}');
    RETURN v_jobs;
END
$function$;
