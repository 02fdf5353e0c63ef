CREATE OR REPLACE FUNCTION pgjobs.resume(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Resumes paused job p_id: queued again with its cursor (checkpoint,
-- done) and its place in its scope's queue, and announced as `resumed`. A
-- running job whose pause was requested but not yet honoured just keeps
-- running. Returns true. Raises P0002 for an unknown id, 55000 for a job
-- that is not paused, 42501 when its submitter no longer holds what the
-- submit needed (pgjobs._require_requeue).
-- For pgjobs_client: the same rule as pgjobs.cancel (pgjobs._controlled_job).
-- Locks: the job row (waits for a claim or page in flight on it).
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._resume_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._resume_as(current_user, p_id) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.resume(bigint) IS
'Resumes a paused job: queued again with its cursor and its place in the writer queue of '
'its scope (event resumed). A running job with a pending pause keeps running. P0002 unknown '
'id; 55000 not paused; 42501 its submitter no longer holds what the submit needed.';
