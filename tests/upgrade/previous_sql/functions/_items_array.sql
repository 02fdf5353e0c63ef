CREATE OR REPLACE FUNCTION pgjobs._items_array(p_items jsonb, p_submit boolean)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The items argument of pgjobs.submit_items (p_submit true: a non-empty
-- JSON array, a job has at least one item) and of pgjobs.add_items (false:
-- any JSON array, an empty one adds nothing): one element per item.
-- Raises 22023 otherwise. Each element's size is pgjobs._items_add's
-- check. Locks nothing.
BEGIN
    IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array'
       OR (p_submit AND jsonb_array_length(p_items) = 0) THEN
        RAISE EXCEPTION 'items must be a %JSON array', CASE WHEN p_submit THEN 'non-empty ' ELSE '' END
            USING ERRCODE = '22023',
            HINT = CASE WHEN p_submit
                        THEN 'Pass one element per item, e.g. ''[{"doc": 1}, {"doc": 2}]''; '
                             'append more later with pgjobs.add_items(job, items).'
                        ELSE 'Pass one element per item, e.g. ''[{"doc": 1}]''.' END;
    END IF;
END
$$;
