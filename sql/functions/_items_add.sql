CREATE OR REPLACE FUNCTION pgjobs._items_add(p_id bigint, p_items jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Inserts one queued item of fan-out job p_id per element of the JSON
-- array p_items, in array order (item ids ascend with it: the claim
-- order), and adds their number to the job's total. The caller has checked
-- the job and the array and holds the job row. Returns the number added.
-- Locks: the job row (already the caller's).
DECLARE
    v_count integer;
BEGIN
    INSERT INTO pgjobs.job_items (job_id, payload)
    SELECT p_id, e.value
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, n)
     ORDER BY e.n;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE pgjobs.jobs SET total = coalesce(total, 0) + v_count, updated_at = now()
     WHERE id = p_id;
    RETURN v_count;
END
$$;
