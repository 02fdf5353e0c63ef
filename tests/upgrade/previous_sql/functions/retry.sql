CREATE OR REPLACE FUNCTION pgjobs.retry(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Requeues failed or canceled job p_id from its checkpoint (a delete or
-- backfill continues after its cursor, an export resumes its upload when
-- the staged parts are still there), with attempts reset and error,
-- result and finished_at cleared; announced as `submitted`. Its filter,
-- cutoff and predicate are those it was submitted with. A writing job
-- queues behind every writing job of its scope submitted before the retry,
-- as a new submission would, and a delete masks its rows again. Returns
-- true. Raises P0002 for an unknown id, 55000 for a job that is not failed
-- or canceled, 42501 when its submitter no longer holds what the submit
-- needed (pgjobs._require_requeue), 55006 for an export while a worker is
-- removing the upload it left (pgjobs.start_storage_deletion), 55P03 when
-- the caller's lock_timeout runs out while an ended export's worker holds
-- the row to remove what the attempt wrote (pgjobs._controlled_job).
-- For pgjobs_client: the same rule as pgjobs.cancel (pgjobs._controlled_job).
-- Locks: the job row (waits for a claim or page in flight on it).
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._retry_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._retry_as(current_user, p_id) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.retry(bigint) IS
'Requeues a failed or canceled job from its checkpoint with attempts reset (event '
'submitted); a writing job queues behind the writers of its scope submitted before the '
'retry. P0002 unknown id; 55000 not failed or canceled; 42501 its submitter no longer holds '
'what the submit needed; 55000 also when the target''s registration changed its columns (or was '
'removed) since the job was submitted; 55000 also for a delete or backfill while an import of '
'its scope placed after its submit is pending or has written rows; 55006 for an export while a '
'worker is removing the upload it left (retry it in a few seconds); 55P03 when the caller''s '
'lock_timeout runs out while an export''s worker removes what its ended attempt wrote (try '
'again in a moment).';
