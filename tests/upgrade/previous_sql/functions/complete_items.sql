CREATE OR REPLACE FUNCTION pgjobs.complete_items(
    p_items bigint[],
    p_workers text[],
    p_results jsonb[] DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- pgjobs.complete_item for a batch: item p_items[i] succeeds with
-- p_results[i] (default '{}') when p_workers[i] holds its unexpired lease,
-- judged per item. Returns the ids it completed; a fenced-off item is left
-- out and unchanged. Each job touched is settled once (pgjobs._items_settle)
-- with its count. Raises 22023 when the arrays differ in length or a result
-- is not a JSON object. Locks: the jobs' rows (in id order), then the items.
-- Plans: generic (plan_cache_mode; see pgjobs.claim): a custom plan of the
-- completing UPDATE for the batch's items, fewer than the 10 a generic plan
-- assumes of an array, looked cheaper, so it was planned again at every
-- call, for the same job_items_pkey scan. The lock of the jobs ran its
-- generic plan already (PL/pgSQL's choice after a session's first five
-- calls); pgjobs._items_settle and pgjobs._items_result, which inherit the
-- setting, look items up by their job's key (jobs_pkey, job_items_job_idx,
-- job_items_running_idx).
DECLARE
    v_done record;
BEGIN
    PERFORM pgjobs._batch_arrays('items', p_items, p_workers, p_results);  -- 22023
    -- The jobs first, in id order (the lock order of fan-out jobs).
    PERFORM FROM pgjobs.jobs j
     WHERE j.id IN (SELECT i.job_id FROM pgjobs.job_items i
                     WHERE i.id = ANY (p_items) AND i.status = 'running')
     ORDER BY j.id
       FOR NO KEY UPDATE;
    FOR v_done IN
        WITH done AS (
            UPDATE pgjobs.job_items i
               SET status = 'succeeded', result = coalesce(c.result, '{}'), error = NULL,
                   lease_expires_at = NULL, finished_at = now(), updated_at = now()
              FROM unnest(p_items, p_workers, p_results) AS c(id, worker, result)
             WHERE i.id = c.id
               -- The fence, per item, as in pgjobs.complete_item.
               AND i.worker = c.worker
               AND i.lease_expires_at > now()
            RETURNING i.id, i.job_id)
        SELECT d.job_id, array_agg(d.id ORDER BY d.id) AS ids
          FROM done d GROUP BY d.job_id ORDER BY d.job_id
    LOOP
        PERFORM pgjobs._items_settle(v_done.job_id, cardinality(v_done.ids));
        RETURN QUERY SELECT unnest(v_done.ids);
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs.complete_items(bigint[], text[], jsonb[]) IS
'Completes a batch of items: p_items[i] succeeds with p_results[i] (default {}) when '
'p_workers[i] holds its unexpired lease (fenced per item, as complete_item). Returns the ids '
'completed; a fenced-off item is left out and unchanged.';
