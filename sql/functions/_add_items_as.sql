CREATE OR REPLACE FUNCTION pgjobs._add_items_as(
    p_caller name,
    p_id bigint,
    p_items jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SECURITY DEFINER
AS $$
-- The body of pgjobs.add_items, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.add_items, its only permitted caller:
-- pgjobs._enter, 42501 otherwise). Who may: pgjobs._controlled_job, the
-- rule of pgjobs.cancel. The job row is locked first, so the items land
-- either before its last item finishes (the job then waits for them) or
-- not at all (55000: it has finished). Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('add_items', p_caller);  -- 42501 for any other caller
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    IF NOT v_job.fanout THEN
        RAISE EXCEPTION 'job % is not a fan-out job', p_id USING ERRCODE = '22023',
            HINT = 'Items belong to jobs submitted with pgjobs.submit_items().';
    END IF;
    IF v_job.status NOT IN ('queued', 'running', 'paused') THEN
        RAISE EXCEPTION 'job % has % and takes no more items', p_id, v_job.status
            USING ERRCODE = '55000',
            HINT = 'Submit the items as a new job with pgjobs.submit_items().';
    END IF;
    IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = '22023',
            HINT = 'Pass one element per item, e.g. ''[{"doc": 1}]''.';
    END IF;
    RETURN pgjobs._items_add(p_id, p_items);
END
$$;
