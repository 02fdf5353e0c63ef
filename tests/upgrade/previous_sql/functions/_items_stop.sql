CREATE OR REPLACE FUNCTION pgjobs._items_stop(p_id bigint, p_status text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs.cancel (p_status 'canceled') or pgjobs.pause ('paused') of
-- fan-out job p_id, at once: no owner to tell, its items are leased one by
-- one. The caller (pgjobs._cancel_as, pgjobs._pause_as) checked it and
-- holds the job row. Event: p_status.
-- * canceled: queued, paused or running, the job and every item not
--   finished end canceled. A worker holding an item learns it at its next
--   heartbeat_item or complete_item (false: the item is no longer
--   running). The result counts the items (pgjobs._items_result).
-- * paused: a running job; no item is handed out while it is paused; the
--   items out finish (complete_item, fail_item) or come back to the queue
--   at their next heartbeat_item, the attempt not counted. pgjobs.resume
--   queues the job again.
-- Returns false when the job was in no state to stop (canceled: it had
-- already finished). Locks: the job row (the caller's), then, to cancel,
-- its unfinished items.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    IF p_status = 'canceled' THEN
        UPDATE pgjobs.job_items i
           SET status = 'canceled', lease_expires_at = NULL, finished_at = now(),
               updated_at = now()
         WHERE i.job_id = p_id AND i.status IN ('queued', 'running');
        UPDATE pgjobs.jobs j
           SET status = 'canceled', cancel_requested_at = now(), finished_at = now(),
               lease_expires_at = NULL, pause_requested_at = NULL,
               result = pgjobs._items_result(p_id), updated_at = now()
         WHERE j.id = p_id AND j.status IN ('queued', 'running', 'paused')
        RETURNING j.* INTO v_job;
    ELSIF p_status = 'paused' THEN
        UPDATE pgjobs.jobs j
           SET status = 'paused', lease_expires_at = NULL, pause_requested_at = NULL,
               updated_at = now()
         WHERE j.id = p_id AND j.status = 'running'
        RETURNING j.* INTO v_job;
    ELSE
        RAISE EXCEPTION 'a fan-out job stops as canceled or paused, not %', p_status
            USING ERRCODE = '22023', HINT = 'Call pgjobs.cancel(id) or pgjobs.pause(id).';
    END IF;
    IF v_job.id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pgjobs._notify(v_job, v_job.status);  -- p_status, as just set
    RETURN true;
END
$$;
