CREATE OR REPLACE FUNCTION pgjobs.pause(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Pauses job p_id. Queued: paused at once. Running: a pause is requested
-- and the job becomes paused after the page in flight (the engine), at its
-- worker's next heartbeat, or when its lease is rescued; it keeps its
-- cursor and the attempt is not counted. A paused job is never handed out;
-- a paused writer keeps its place in its scope's queue (later writers
-- wait) and a paused delete keeps its rows masked. Returns true when the
-- job was paused or a pause requested, false when it was paused (or a
-- pause requested) already. Raises P0002 for an unknown id, 55000 for a
-- job that finished or whose cancel is pending.
-- For pgjobs_client: the same rule as pgjobs.cancel (pgjobs._controlled_job).
-- Locks: the job row (waits for a claim or page in flight on it).
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._pause_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._pause_as(current_user, p_id) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.pause(bigint) IS
'Pauses a job: a queued one at once, a running one after its page in flight or at its next '
'heartbeat (cursor kept, attempt not counted). False if already paused; P0002 unknown id; '
'55000 finished or being canceled.';
