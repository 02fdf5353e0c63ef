CREATE OR REPLACE FUNCTION pgjobs._pause_since(p_job pgjobs.jobs, p_admin boolean)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The paused_at that pgjobs.pause records for p_job (its row before the
-- pause), paused by an administrator (p_admin) or not: now(), except for a
-- client's pause of a job a client paused before (paused_at set, not by an
-- administrator) that has not run since (no claim or heartbeat after that
-- paused_at): that pause's clock runs on. Otherwise a client could resume
-- its paused writer and pause it again (in one transaction, so no worker
-- claims it between) just before max_client_pause and hold its scope's
-- later writers for good (pgjobs._expire_client_pauses). Locks nothing.
SELECT CASE WHEN NOT p_admin AND p_job.paused_at IS NOT NULL AND NOT p_job.paused_by_admin
                 AND coalesce(p_job.heartbeat_at, '-infinity') <= p_job.paused_at
            THEN p_job.paused_at
            ELSE now() END
$$;

COMMENT ON FUNCTION pgjobs._pause_since(pgjobs.jobs, boolean) IS
'When a pause by pgjobs.pause counts from: now(), or, for a client''s pause of a job a client '
'paused before and that has not run since, that earlier pause''s paused_at (max_client_pause '
'cannot be reset by resume and pause).';
