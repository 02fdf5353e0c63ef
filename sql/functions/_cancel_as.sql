CREATE OR REPLACE FUNCTION pgjobs._cancel_as(
    p_caller name,
    p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.cancel, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.cancel, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Cancels job p_id. Queued or paused: canceled at once (an export's upload
-- leftovers queued for a worker to remove: pgjobs._queue_export_leftovers).
-- Running: a cancel is
-- requested and the owner stops at its next page or heartbeat (a dead
-- owner's job is canceled when its lease is rescued). Returns false when
-- the job had already finished; raises P0002 for an unknown id.
-- SECURITY DEFINER for pgjobs_client: the submitter, an admin, or a role
-- with the privilege the job's kind needs on its target may cancel (42501),
-- and only a job of a scope in the session's pgjobs.allowed_scopes, if set.
-- Locks: the job row (waits for a claim or page in flight on it).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('cancel', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    IF v_job.fanout THEN
        RETURN pgjobs._leave(pgjobs._items_stop(p_id, 'canceled'));  -- the job and its items, at once
    END IF;
    -- A queued or paused job has no owner to tell: it ends here.
    IF v_job.status IN ('queued', 'paused') THEN
        UPDATE pgjobs.jobs
           SET status = 'canceled', cancel_requested_at = now(), finished_at = now(),
               updated_at = now()
         WHERE id = p_id
        RETURNING * INTO v_job;
        IF v_job.kind = 'export' THEN
            -- No worker runs it to remove what its checkpoint names (a
            -- handed-back attempt's open multipart upload, temporary file,
            -- staged parts): a worker's housekeeping does, at once.
            PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
        END IF;
        -- A writer canceled before it started passes its scope's turn on,
        -- as its start would have: the next one may be parked behind it.
        PERFORM pgjobs._pass_writer_turn(ARRAY[v_job]);
        PERFORM pgjobs._notify(v_job, 'canceled');
        RETURN pgjobs._leave(true);
    ELSIF v_job.status = 'running' THEN
        UPDATE pgjobs.jobs
           SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
         WHERE id = p_id;
        RETURN pgjobs._leave(true);
    END IF;
    RETURN pgjobs._leave(false);
END
$$;
