CREATE OR REPLACE FUNCTION pgjobs._run_job_end(p_job pgjobs.jobs, p_deadline timestamptz)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- After pgjobs.run_job's page loop: the job p_job (as its claim returned
-- it; NULL id: nothing was claimed) as the call leaves it. When the loop
-- stopped at p_deadline (pgjobs._timeout_deadline: the session's
-- statement_timeout would have canceled the call) and handed the job back
-- (pgjobs.release, under the claim's identity: queued with its cursor, due
-- at once, no attempt counted), a WARNING says so, why, and what to set.
-- Locks nothing.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_job.id;
    IF p_deadline IS NOT NULL AND clock_timestamp() >= p_deadline
       AND v_job.worker = p_job.worker AND v_job.status = 'queued' THEN
        RAISE WARNING 'pgjobs.run_job: job % handed back with its cursor, not done: this '
                      'session''s statement_timeout (%) would cancel the call, and the page in '
                      'flight with it, which fails the job''s attempt', v_job.id,
                      current_setting('statement_timeout')
            USING HINT = format('CALL pgjobs.run_job(%s) again to go on (pgjobs.run takes it '
                                'too); run jobs in a session without statement_timeout: SET '
                                'statement_timeout = 0, or ALTER ROLE %I SET statement_timeout '
                                '= 0.', v_job.id, session_user);
    END IF;
    RETURN v_job;
END
$$;
