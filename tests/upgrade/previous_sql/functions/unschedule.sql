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
    v_jobs regclass := pgjobs._cron_relation('job');  -- pg_cron's own, read by oid
BEGIN
    IF v_jobs IS NOT NULL THEN
        -- format(): the cron schema (and cron.unschedule) exists only where
        -- pg_cron does.
        EXECUTE format($q$
            SELECT count(%I.unschedule(c.jobid))::integer FROM %s c
             WHERE (c.jobname IN ('pgjobs.run', 'pgjobs.prune')
                    OR c.jobname ~ '^pgjobs\.run\.[0-9]+$')
               AND c.username = current_user
        $q$, 'cron', v_jobs) INTO v_count;
    END IF;
    RETURN jsonb_build_object('unscheduled', v_count);
END
$$;

COMMENT ON FUNCTION pgjobs.unschedule() IS
'Removes the pg_cron jobs installed by pgjobs.schedule(). Returns {"unscheduled": n}.';
