CREATE OR REPLACE FUNCTION pgjobs.fail_item(
    p_item bigint,
    p_worker text,
    p_error text,
    p_retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Records a failed attempt of item p_item. Retryable with attempts left
-- (the job's max_attempts): the item is queued again after exponential
-- backoff with jitter (pgjobs._backoff), the other items carrying on.
-- Otherwise it fails for good: its job's done grows by one and keeps the
-- first such error, and the job, when this was its last item, ends failed
-- (pgjobs._items_settle). Either way the job's heartbeat_at moves to now:
-- its turn at pgjobs.claim_items is served. Fenced like complete_item.
-- Locks: the job row, then the item row.
DECLARE
    v_job_id bigint;
    v_item pgjobs.job_items;
BEGIN
    v_job_id := pgjobs._items_lock_job(p_item, p_worker);
    IF v_job_id IS NULL THEN
        PERFORM pgjobs._check_holder('item', p_item, p_worker);  -- 22023
        RETURN false;
    END IF;
    UPDATE pgjobs.job_items i
       SET status = CASE WHEN coalesce(p_retryable, true) AND i.attempts < j.max_attempts
                         THEN 'queued' ELSE 'failed' END,
           run_at = CASE WHEN coalesce(p_retryable, true) AND i.attempts < j.max_attempts
                         THEN now() + pgjobs._backoff(i.attempts) ELSE i.run_at END,
           finished_at = CASE WHEN coalesce(p_retryable, true) AND i.attempts < j.max_attempts
                              THEN NULL ELSE now() END,
           error = left(coalesce(p_error, 'unknown error'), 10000),
           lease_expires_at = NULL,
           updated_at = now()
      FROM pgjobs.jobs j
     WHERE i.id = p_item
       AND j.id = i.job_id
       -- The fence (a lease exists only while running: CHECK).
       AND i.worker = p_worker
       AND i.lease_expires_at > now()
    RETURNING i.* INTO v_item;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_item.status = 'failed' THEN
        PERFORM pgjobs._items_settle(v_job_id, 1,
                                     format('item %s: %s', v_item.id, left(v_item.error, 1000)));
    ELSE
        -- An attempt that ended is a turn served (pgjobs.claim_items takes the
        -- job served least recently first): left as it was, a job whose items
        -- fail at once and retry (a tenant's API down) stayed first and took
        -- every claim until each of its items was in backoff. The job's row
        -- is this transaction's already (pgjobs._items_lock_job).
        UPDATE pgjobs.jobs j SET heartbeat_at = now() WHERE j.id = v_job_id;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.fail_item(bigint, text, text, boolean) IS
'Records a failed attempt of an item. Retryable with attempts left (the job''s max_attempts): '
'queued again after exponential backoff with jitter; else failed for good (the job fails once '
'its other items have finished). Returns false and changes nothing unless p_worker holds the '
'item''s unexpired lease.';
