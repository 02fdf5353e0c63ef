CREATE OR REPLACE FUNCTION pgjobs._engine_wait_as(p_caller name)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs._engine_wait, run as pgjobs' owner for p_caller (its
-- only permitted caller: pgjobs._enter, 42501 otherwise), which calls it
-- only for a caller that sees a due delete or backfill job still queued:
-- 'waiting for the engine: next tick within 60 s' when pg_cron runs
-- pgjobs.run on a minute schedule (pg_cron 1.4 has no second schedules)
-- and no `pgjobs run` session is connected to this database; else NULL.
-- SECURITY DEFINER: it reads cron.job, which a client may not, and says
-- nothing but this sentence. Locks nothing.
DECLARE
    v_schedule text;
    v_job regclass := pgjobs._cron_relation('job');  -- pg_cron's own, not a look-alike
BEGIN
    p_caller := pgjobs._enter('_engine_wait', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    IF v_job IS NULL THEN
        RETURN pgjobs._leave(NULL::text);
    END IF;
    -- The very relation just found (by oid), not whatever the name reads as.
    -- pgjobs' own runner (pgjobs._cron_jobs): a client's job of that name
    -- says nothing of when the engine runs.
    SELECT c.schedule INTO v_schedule
      FROM pgjobs._cron_jobs() c
     WHERE c.jobname = 'pgjobs.run' AND c.active
     LIMIT 1;
    IF v_schedule IS NULL OR v_schedule ~ 'second'
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                   WHERE a.datname = current_database() AND a.application_name = 'pgjobs run'
                     -- a client's session of that name runs nothing
                     AND pgjobs._engine_runner(a.usename::text)) THEN
        RETURN pgjobs._leave(NULL::text);
    END IF;
    RETURN pgjobs._leave('waiting for the engine: next tick within 60 s'::text);
END
$$;
