CREATE OR REPLACE FUNCTION pgjobs._cron_jobs()
RETURNS TABLE (jobid bigint, jobname text, schedule text, command text, active boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs' own pg_cron jobs in this database (pgjobs.run, pgjobs.run.N,
-- pgjobs.prune), as current_user may see them; none when pg_cron's job
-- table is not here. Any role may own cron jobs under those names (pg_cron
-- runs them as that role), so only the jobs of a role that may run the
-- engine count (pgjobs._engine_runner: it may call pgjobs.run): a reader
-- pg_cron's row security does not confine (a superuser running doctor, a superuser-owned
-- engine's bodies) never takes a client's look-alike for the engine's
-- runner. What doctor, prune and the engine's wait note read
-- (pgjobs.unschedule removes its caller's own jobs, in every database).
-- Locks nothing.
DECLARE
    v_job regclass := pgjobs._cron_relation('job');  -- pg_cron's own, read by oid
BEGIN
    IF v_job IS NULL THEN
        RETURN;
    END IF;
    FOR jobid, jobname, schedule, command, active IN EXECUTE format($q$
        SELECT c.jobid::bigint, c.jobname::text, c.schedule::text, c.command::text,
               c.active::boolean
          FROM %s c
         WHERE (c.jobname IN ('pgjobs.run', 'pgjobs.prune')
                OR c.jobname ~ '^pgjobs\.run\.[0-9]+$')
           AND c.database = current_database()
           AND pgjobs._engine_runner(c.username::text)
         ORDER BY c.jobname, c.jobid
    $q$, v_job) LOOP
        RETURN NEXT;
    END LOOP;
END
$$;
