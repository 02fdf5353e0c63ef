CREATE OR REPLACE FUNCTION pgjobs.cancel(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Cancels job p_id. Queued or paused: canceled at once. Running: a cancel is
-- requested and the owner stops at its next page or heartbeat (a dead
-- owner's job is canceled when its lease is rescued). Returns false when
-- the job had already finished; raises P0002 for an unknown id.
-- For pgjobs_client: the submitter, an admin, or a role
-- with the privilege the job's kind needs on its target may cancel (42501),
-- and only a job of a scope in the session's pgjobs.allowed_scopes, if set.
-- Locks: the job row (waits for a claim or page in flight on it).
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._cancel_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._cancel_as(current_user, p_id) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.cancel(bigint) IS
'Cancels a job: a queued one at once, a running one at its next page or heartbeat. Returns '
'false if it had already finished; raises P0002 for an unknown id.';
