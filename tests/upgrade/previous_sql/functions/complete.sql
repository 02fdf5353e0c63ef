CREATE OR REPLACE FUNCTION pgjobs.complete(
    p_id bigint,
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
-- Marks job p_id succeeded with p_result. Fenced: false, and nothing
-- changed, unless p_worker holds an unexpired lease of the running attempt.
-- A parallel CSV or JSON Lines export's part objects are queued for
-- deletion in the same transaction (pgjobs._queue_export_parts_joined).
-- Locks: the job row.
BEGIN
    IF p_result IS NULL OR jsonb_typeof(p_result) <> 'object' THEN
        RAISE EXCEPTION 'result must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for no result.';
    END IF;
    PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023, named as this call's
    -- One completion for one job or a batch: the fence, the row and the
    -- event are pgjobs.complete_many's.
    IF NOT EXISTS (SELECT FROM pgjobs.complete_many(ARRAY[p_id], ARRAY[p_worker],
                                                    ARRAY[p_result])) THEN
        RETURN false;
    END IF;
    IF p_result ? 'parallel_parts' THEN
        -- A parallel export's part objects, joined: gone even if its
        -- coordinator dies before removing them (pgjobs._queue_export_parts_joined).
        PERFORM pgjobs._queue_export_parts_joined(p_id, p_result);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.complete(bigint, text, jsonb) IS
'Marks a running job succeeded with p_result. Returns false and changes nothing unless '
'p_worker holds the unexpired lease of the current attempt.';
