CREATE OR REPLACE FUNCTION pgjobs._items_retry(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The items' side of pgjobs.retry of fan-out job p_id (pgjobs._retry_as,
-- which checked the caller, holds the job row and then queues the job):
-- only the items that failed (and, of a canceled job, those canceled) are
-- queued again with attempts reset; the succeeded ones stay done. The job's
-- done counts its finished items again (the succeeded ones). Locks: the job row (the
-- caller's), then those items.
BEGIN
    UPDATE pgjobs.job_items i
       SET status = 'queued', attempts = 0, error = NULL, result = NULL,
           run_at = now(), finished_at = NULL, updated_at = now()
     WHERE i.job_id = p_id AND i.status IN ('failed', 'canceled');
    UPDATE pgjobs.jobs j
       SET done = (SELECT count(*) FROM pgjobs.job_items i
                    WHERE i.job_id = p_id AND i.status IN ('succeeded', 'failed'))
     WHERE j.id = p_id;
END
$$;
