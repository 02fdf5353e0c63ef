CREATE OR REPLACE FUNCTION pgjobs._items_result(p_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
STABLE
AS $$
-- The result of fan-out job p_id, from its items: {"items", "succeeded",
-- "failed", "canceled", "errors"}, errors being the first five items that
-- failed for good, in the order they failed, as {"item", "error"} (each
-- error cut to 500 characters). Locks nothing.
DECLARE
    v_result jsonb;
BEGIN
    SELECT jsonb_build_object(
               'items', count(*),
               'succeeded', count(*) FILTER (WHERE i.status = 'succeeded'),
               'failed', count(*) FILTER (WHERE i.status = 'failed'),
               'canceled', count(*) FILTER (WHERE i.status = 'canceled'))
      INTO v_result
      FROM pgjobs.job_items i
     WHERE i.job_id = p_id;
    RETURN v_result || jsonb_build_object('errors', (
        SELECT coalesce(jsonb_agg(jsonb_build_object('item', e.id, 'error', left(e.error, 500))
                                  ORDER BY e.finished_at, e.id), '[]'::jsonb)
          FROM (SELECT i.id, i.error, i.finished_at FROM pgjobs.job_items i
                 WHERE i.job_id = p_id AND i.status = 'failed'
                 ORDER BY i.finished_at, i.id
                 LIMIT 5) e));
END
$$;
