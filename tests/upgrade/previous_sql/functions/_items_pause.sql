CREATE OR REPLACE FUNCTION pgjobs._items_pause(p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs.pause of running fan-out job p_id (pgjobs._pause_as, which checked
-- the caller and holds the job row): paused at once (event paused). No item
-- is handed out while it is paused; the items out finish (complete_item,
-- fail_item) or come back to the queue at their next heartbeat_item, the
-- attempt not counted. pgjobs.resume queues the job again. Locks: the job
-- row (the caller's).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    UPDATE pgjobs.jobs j
       SET status = 'paused', lease_expires_at = NULL, pause_requested_at = NULL,
           updated_at = now()
     WHERE j.id = p_id AND j.status = 'running'
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pgjobs._notify(v_job, 'paused');
    RETURN true;
END
$$;
