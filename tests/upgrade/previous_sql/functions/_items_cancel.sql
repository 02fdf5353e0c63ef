CREATE OR REPLACE FUNCTION pgjobs._items_cancel(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs.cancel of fan-out job p_id (pgjobs._cancel_as, which checked the
-- caller and holds the job row): queued, paused or running, the job and
-- every item not finished end canceled at once. A worker holding an item
-- learns it at its next heartbeat_item or complete_item (false: the item is
-- no longer running). The result counts the items (pgjobs._items_result).
-- Returns false when the job had already finished. Locks: the job row
-- (the caller's), then its unfinished items.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    UPDATE pgjobs.job_items i
       SET status = 'canceled', lease_expires_at = NULL, finished_at = now(), updated_at = now()
     WHERE i.job_id = p_id AND i.status IN ('queued', 'running');
    UPDATE pgjobs.jobs j
       SET status = 'canceled', cancel_requested_at = now(), finished_at = now(),
           lease_expires_at = NULL, pause_requested_at = NULL,
           result = pgjobs._items_result(p_id), updated_at = now()
     WHERE j.id = p_id AND j.status IN ('queued', 'running', 'paused')
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pgjobs._notify(v_job, 'canceled');
    RETURN true;
END
$$;
