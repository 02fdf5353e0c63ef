CREATE OR REPLACE FUNCTION pgjobs.complete_item(
    p_item bigint,
    p_worker text,
    p_result jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Marks item p_item succeeded with p_result and settles its job
-- (pgjobs._items_settle: done + 1; the job ends when this was its last
-- item). Fenced: false, and nothing changed, unless p_worker (the worker
-- its claim returned) holds the item's unexpired lease; an item of a job
-- canceled meanwhile is no longer running, so its worker learns it here.
-- Locks: the job row, then the item row.
DECLARE
    v_job_id bigint;
BEGIN
    IF p_result IS NULL OR jsonb_typeof(p_result) <> 'object' THEN
        RAISE EXCEPTION 'result must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for no result.';
    END IF;
    v_job_id := pgjobs._items_lock_job(p_item, p_worker);
    IF v_job_id IS NULL THEN
        PERFORM pgjobs._check_holder('item', p_item, p_worker);  -- 22023
        RETURN false;
    END IF;
    UPDATE pgjobs.job_items i
       SET status = 'succeeded', result = p_result, error = NULL,
           lease_expires_at = NULL, finished_at = now(), updated_at = now()
     WHERE i.id = p_item
       -- The fence (a lease exists only while running: CHECK).
       AND i.worker = p_worker
       AND i.lease_expires_at > now();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pgjobs._items_settle(v_job_id, 1);
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.complete_item(bigint, text, jsonb) IS
'Marks a running item succeeded with p_result; its job''s done grows by one and the job ends '
'with its last item. Returns false and changes nothing unless p_worker holds the item''s '
'unexpired lease (a canceled job''s items are no longer running).';
