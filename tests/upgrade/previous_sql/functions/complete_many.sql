CREATE OR REPLACE FUNCTION pgjobs.complete_many(
    p_ids bigint[],
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
-- pgjobs.complete for a batch, in one statement: job p_ids[i] is marked
-- succeeded with p_results[i] (default '{}') when p_workers[i] holds the
-- unexpired lease of its running attempt, exactly the fence of
-- pgjobs.complete, judged per job. Returns the ids it completed; a job
-- fenced off (lease lost, taken over, not running) is left out and
-- unchanged, so the caller compares the ids it sent with the ids returned.
-- Each completed job announces `succeeded` (pgjobs._notify_many: the
-- contract's events are per job). Raises 22023 when the arrays differ in
-- length or a result is not a JSON object. Locks: the completed job rows.
-- Plans: generic (plan_cache_mode; see pgjobs.claim): a custom plan for a
-- batch of one looked cheaper than the generic one, so the UPDATE was
-- planned again at every pgjobs.complete, for the same jobs_pkey scan.
DECLARE
    v_jobs pgjobs.jobs[];
BEGIN
    PERFORM pgjobs._batch_arrays('ids', p_ids, p_workers, p_results);  -- 22023
    WITH done AS (
        UPDATE pgjobs.jobs j
           SET status = 'succeeded',
               result = coalesce(c.result, '{}'),
               error = NULL,
               total = coalesce(j.total, j.done),
               lease_expires_at = NULL,
               pause_requested_at = NULL,
               finished_at = now(),
               updated_at = now()
          FROM unnest(p_ids, p_workers, p_results) AS c(id, worker, result)
         WHERE j.id = c.id
           -- The fence, per job, as in pgjobs.complete (no status qual: a
           -- lease exists only while running).
           AND j.worker = c.worker
           AND j.lease_expires_at > now()
        RETURNING j AS job)
    SELECT array_agg(d.job ORDER BY (d.job).id) INTO v_jobs FROM done d;
    PERFORM pgjobs._notify_many(v_jobs, 'succeeded');
    RETURN QUERY SELECT u.id FROM unnest(v_jobs) u;
END
$$;

COMMENT ON FUNCTION pgjobs.complete_many(bigint[], text[], jsonb[]) IS
'Completes a batch in one statement: p_ids[i] succeeds with p_results[i] (default {}) when '
'p_workers[i] holds the unexpired lease of its running attempt (fenced per job, as complete). '
'Returns the ids completed; a fenced-off job is left out and unchanged. One succeeded event per job.';
