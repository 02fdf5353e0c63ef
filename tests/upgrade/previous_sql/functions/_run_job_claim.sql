CREATE OR REPLACE FUNCTION pgjobs._run_job_claim(p_id bigint)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Claims job p_id for pgjobs.run_job (pgjobs._claim_id: the gate, the
-- errors P0002, 22023, 55006). Returns the claimed row, whose worker is the
-- claim's identity, or NULL when the job had already finished. Locks: the
-- job row (until the caller's COMMIT).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    v_job := pgjobs._claim_id(p_id, pgjobs._runner_name('run_job'));
    IF v_job.status IS DISTINCT FROM 'running' THEN
        RETURN NULL;  -- already finished
    END IF;
    RETURN v_job;
END
$$;
