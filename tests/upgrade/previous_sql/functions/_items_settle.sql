CREATE OR REPLACE FUNCTION pgjobs._items_settle(p_id bigint, p_finished integer,
                                                p_error text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The parent's side of items that just finished (succeeded, or failed for
-- good) in the caller's transaction: done grows by p_finished, the first
-- error of an item failed for good is kept in error (p_error), and when no
-- item is queued or running any more the job ends: succeeded when every
-- item succeeded, else failed, with result pgjobs._items_result (event
-- succeeded or failed); otherwise a progress event, throttled to one per
-- job per 250 ms as heartbeat's. The one place a fan-out job ends by its
-- items. The UPDATE of the job row comes first: it waits for any other
-- transaction settling items of this job, so the check of what is left
-- that follows (a new snapshot) sees their items finished: the last two
-- items finishing at once end the job exactly once. Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
    v_now timestamptz := clock_timestamp();
    v_result jsonb;
BEGIN
    UPDATE pgjobs.jobs j
       SET done = j.done + p_finished,
           error = coalesce(j.error, p_error),
           heartbeat_at = now(),
           progress_notified_at = CASE
               WHEN j.progress_notified_at IS NULL
                 OR j.progress_notified_at <= v_now - interval '250 milliseconds'
               THEN v_now ELSE j.progress_notified_at END,
           updated_at = now()
     WHERE j.id = p_id AND j.fanout
    RETURNING j.* INTO v_job;
    IF NOT FOUND OR v_job.status NOT IN ('queued', 'running', 'paused') THEN
        RETURN;
    END IF;
    -- done counts the finished items and total all of them, both kept under
    -- the job row's lock (here, pgjobs._items_add, pgjobs._items_retry), so
    -- done = total says the job is over without reading its items (a scan
    -- whose cost would grow with the job); the items are read once, then,
    -- to make sure.
    IF v_job.done >= v_job.total
       AND NOT EXISTS (SELECT FROM pgjobs.job_items i
                        WHERE i.job_id = p_id AND i.status = 'queued')
       AND NOT EXISTS (SELECT FROM pgjobs.job_items i
                        WHERE i.job_id = p_id AND i.status = 'running') THEN
        v_result := pgjobs._items_result(p_id);
        UPDATE pgjobs.jobs j
           SET status = CASE WHEN (v_result ->> 'failed')::bigint > 0 THEN 'failed'
                             ELSE 'succeeded' END,
               result = v_result,
               lease_expires_at = NULL,
               pause_requested_at = NULL,
               finished_at = now(),
               updated_at = now()
         WHERE j.id = p_id
        RETURNING j.* INTO v_job;
        PERFORM pgjobs._notify(v_job, v_job.status);
    ELSIF v_job.progress_notified_at = v_now THEN
        PERFORM pgjobs._notify(v_job, 'progress');
    END IF;
END
$$;
