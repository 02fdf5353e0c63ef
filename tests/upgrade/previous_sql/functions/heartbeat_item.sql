CREATE OR REPLACE FUNCTION pgjobs.heartbeat_item(p_item bigint, p_worker text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Extends p_worker's lease on item p_item by the item's lease. Returns
-- false when the worker must stop now: it lost the lease (expired and
-- rescued, or taken over), the job was canceled (its items are canceled
-- with it), or the job is paused: the item then goes back to the queue
-- without counting the attempt, for pgjobs.resume to hand out again.
-- Fenced: only the holder of the item's unexpired lease changes anything.
-- Locks: the item row (and, once a minute, the job row before it).
DECLARE
    v_item pgjobs.job_items;
    v_paused boolean;
BEGIN
    -- The job's heartbeat_at says its workers are alive (pgjobs.doctor and
    -- the dashboard read it): refreshed at most once a minute, before the
    -- item row is locked (the lock order: the job row, then its items).
    UPDATE pgjobs.jobs j SET heartbeat_at = now()
     WHERE j.id = (SELECT i.job_id FROM pgjobs.job_items i
                    WHERE i.id = p_item AND i.worker = p_worker AND i.lease_expires_at > now())
       AND j.status = 'running'
       AND j.heartbeat_at < now() - interval '1 minute';
    SELECT i.* INTO v_item FROM pgjobs.job_items i
     WHERE i.id = p_item
       -- The fence (a lease exists only while running: CHECK).
       AND i.worker = p_worker
       AND i.lease_expires_at > now()
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('item', p_item, p_worker);  -- 22023
        RETURN false;
    END IF;
    SELECT j.status = 'paused' INTO v_paused FROM pgjobs.jobs j WHERE j.id = v_item.job_id;
    IF v_paused THEN
        UPDATE pgjobs.job_items i
           SET status = 'queued', attempts = greatest(i.attempts - 1, 0),
               lease_expires_at = NULL, run_at = now(), updated_at = now()
         WHERE i.id = p_item;
        RETURN false;
    END IF;
    UPDATE pgjobs.job_items i
       SET lease_expires_at = now() + coalesce(i.lease, interval '30 seconds'), updated_at = now()
     WHERE i.id = p_item;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.heartbeat_item(bigint, text) IS
'Extends the lease of a running item owned by p_worker. Returns false when the worker must stop '
'now: lease lost or taken over, job canceled, or job paused (the item is then queued again, the '
'attempt not counted).';
