CREATE OR REPLACE FUNCTION pgjobs._engine_wait()
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Why a due delete or backfill job may sit queued for a while, for
-- `pgjobs watch` and `pgjobs status` beside such a job:
-- 'waiting for the engine: next tick within 60 s' when pg_cron runs
-- pgjobs.run on a minute schedule and no `pgjobs run` session is connected
-- (pgjobs._engine_wait_as); else NULL. What a client needs of the runner's
-- schedule is that sentence about a job of its own, so it is told only
-- while it sees (policy jobs_client_read: this reads pgjobs.jobs as the
-- caller) a due delete or backfill job still queued, and NULL otherwise,
-- whatever the schedule: a client with no such job learnt from it whether
-- and how pg_cron runs the engine. SECURITY INVOKER on purpose: current_user
-- here is the role asking, and the SECURITY DEFINER pgjobs._engine_wait_as
-- (which reads cron.job) refuses any caller but this function
-- (pgjobs._enter). Locks nothing.
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgjobs.jobs j
                    WHERE j.status = 'queued' AND j.kind = ANY (pgjobs._engine_kinds())
                      AND j.run_at <= now()) THEN
        RETURN NULL;
    END IF;
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._engine_wait_as(current_user) AS sealed_call;
END
$$;
