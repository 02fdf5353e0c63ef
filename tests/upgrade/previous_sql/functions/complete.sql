CREATE OR REPLACE FUNCTION pgjobs.complete(
    p_id bigint,
    p_worker text,
    p_result jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Marks job p_id succeeded with p_result. Fenced: false, and nothing
-- changed, unless p_worker holds an unexpired lease of the running attempt.
-- Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    IF p_result IS NULL OR jsonb_typeof(p_result) <> 'object' THEN
        RAISE EXCEPTION 'result must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for no result.';
    END IF;
    UPDATE pgjobs.jobs j
       SET status = 'succeeded',
           result = p_result,
           error = NULL,
           total = coalesce(j.total, j.done),
           lease_expires_at = NULL,
           pause_requested_at = NULL,
           finished_at = now(),
           updated_at = now()
     WHERE j.id = p_id
       -- The fence. No `status = 'running'`: a lease exists only while running
       -- (CHECK), and that qual lets the planner prefer jobs_leases_idx over the
       -- primary key when statistics show few running jobs, scanning them all.
       AND j.worker = p_worker
       AND j.lease_expires_at > now()
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pgjobs._notify(v_job, 'succeeded');
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.complete(bigint, text, jsonb) IS
'Marks a running job succeeded with p_result. Returns false and changes nothing unless '
'p_worker holds the unexpired lease of the current attempt.';
