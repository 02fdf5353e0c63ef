CREATE OR REPLACE FUNCTION pgjobs._items_lock_job(p_item bigint, p_worker text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The job of item p_item when p_worker holds the item's unexpired lease
-- (else NULL, nothing locked), with the job row locked: the lock order of
-- fan-out jobs is the job row, then its items (migration 0025), and every
-- call that ends an item settles its job. The caller checks the fence
-- again as it changes the item. Locks: the job row (FOR NO KEY UPDATE).
DECLARE
    v_job_id bigint;
BEGIN
    SELECT i.job_id INTO v_job_id FROM pgjobs.job_items i
     WHERE i.id = p_item AND i.worker = p_worker AND i.lease_expires_at > now();
    IF v_job_id IS NOT NULL THEN
        PERFORM FROM pgjobs.jobs j WHERE j.id = v_job_id FOR NO KEY UPDATE;
    END IF;
    RETURN v_job_id;
END
$$;
