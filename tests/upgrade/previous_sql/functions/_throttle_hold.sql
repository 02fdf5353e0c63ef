CREATE OR REPLACE FUNCTION pgjobs._throttle_hold(p_job pgjobs.jobs, p_worker text,
                                                 p_reason text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A page of p_job (as read by pgjobs._throttle) is held: by a health
-- signal named in p_reason, or by the rate limit (p_reason NULL). Keeps
-- the job p_worker's while it waits: the lease is extended once half of
-- it is spent (fenced, as pgjobs.heartbeat, without a progress event).
-- With a reason: checkpoint.throttled = {"reason", "since"} is merged into
-- the checkpoint (since: when the spell began, kept while it lasts) and a
-- spell's first hold sends the `throttled` event. Locks: the job row, only
-- when something changes.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    IF p_reason IS NOT DISTINCT FROM (p_job.checkpoint -> 'throttled' ->> 'reason')
       AND p_job.lease_expires_at > now() + p_job.lease / 2 THEN
        RETURN;
    END IF;
    UPDATE pgjobs.jobs j
       SET lease_expires_at = now() + j.lease,
           heartbeat_at = now(),
           updated_at = now(),
           checkpoint = CASE WHEN p_reason IS NULL THEN j.checkpoint
                             ELSE j.checkpoint || jsonb_build_object('throttled',
                                 jsonb_build_object('reason', p_reason, 'since',
                                     coalesce(j.checkpoint -> 'throttled' -> 'since',
                                              to_jsonb(now())))) END
     WHERE j.id = p_job.id
       -- The fence, as in pgjobs.heartbeat.
       AND j.worker = p_worker
       AND j.lease_expires_at > now()
       AND j.cancel_requested_at IS NULL
    RETURNING j.* INTO v_job;
    IF FOUND AND p_reason IS NOT NULL AND NOT p_job.checkpoint ? 'throttled' THEN
        PERFORM pgjobs._notify(v_job, 'throttled');
    END IF;
END
$$;
