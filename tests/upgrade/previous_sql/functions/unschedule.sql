CREATE OR REPLACE FUNCTION pgjobs.unschedule()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Removes pgjobs' pg_cron jobs (pgjobs.run, pgjobs.run.2 .., pgjobs.prune)
-- if present.
-- Without pg_cron there is nothing to remove. Returns {"unscheduled": n}.
DECLARE
    v_count integer := 0;
BEGIN
    IF pgjobs._cron_relation('job') IS NOT NULL THEN  -- pg_cron's own, not a look-alike
        -- format(): the cron schema exists only where pg_cron does.
        EXECUTE format($q$
            SELECT count(%1$I.unschedule(jobid))::integer FROM %1$I.job
             WHERE (jobname IN ('pgjobs.run', 'pgjobs.prune') OR jobname ~ '^pgjobs\.run\.[0-9]+$')
               AND username = current_user
        $q$, 'cron') INTO v_count;
    END IF;
    RETURN jsonb_build_object('unscheduled', v_count);
END
$$;

COMMENT ON FUNCTION pgjobs.unschedule() IS
'Removes the pg_cron jobs installed by pgjobs.schedule(). Returns {"unscheduled": n}.';
