CREATE OR REPLACE FUNCTION pgjobs._items_rescue()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Takes back the items whose lease expired (their worker died or hung):
-- queued again at once (the item already waited a whole lease) while its
-- job's max_attempts allow, else failed for good and its job settled
-- (pgjobs._items_settle). Called by pgjobs.claim_items and pgjobs.prune.
-- A probe of job_items_leases_idx comes first and writes nothing when no
-- lease expired. Per job, the job row is locked before its items (the lock
-- order of fan-out jobs); the items SKIP LOCKED, so concurrent claimers
-- never queue behind each other here. The dead worker's later calls are
-- fenced off. Returns {"retried", "failed"}.
DECLARE
    v_job_id bigint;
    v_row record;
    v_retried integer := 0;
    v_failed integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pgjobs.job_items e
                    WHERE e.status = 'running' AND e.lease_expires_at < now()) THEN
        RETURN jsonb_build_object('retried', 0, 'failed', 0);
    END IF;
    FOR v_job_id IN
        SELECT DISTINCT e.job_id FROM pgjobs.job_items e
         WHERE e.status = 'running' AND e.lease_expires_at < now()
         ORDER BY e.job_id
         LIMIT 100
    LOOP
        PERFORM FROM pgjobs.jobs j WHERE j.id = v_job_id FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;  -- busy: the next claimer takes these
        WITH expired AS (
            SELECT e.id FROM pgjobs.job_items e
             WHERE e.job_id = v_job_id AND e.status = 'running'
               AND e.lease_expires_at < now()
             LIMIT 1000
               FOR UPDATE SKIP LOCKED),
        changed AS (
            UPDATE pgjobs.job_items i
               SET status = CASE WHEN i.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
                   error = format('lease expired: worker %s stopped heartbeating', i.worker),
                   lease_expires_at = NULL,
                   run_at = now(),
                   finished_at = CASE WHEN i.attempts >= j.max_attempts THEN now() END,
                   updated_at = now()
              FROM expired, pgjobs.jobs j
             WHERE i.id = expired.id AND j.id = i.job_id
            RETURNING i.id, i.status, i.error)
        SELECT count(*) FILTER (WHERE r.status = 'queued') AS retried,
               count(*) FILTER (WHERE r.status = 'failed') AS failed,
               min(format('item %s: %s', r.id, r.error)) FILTER (WHERE r.status = 'failed')
                   AS error
          INTO v_row
          FROM changed r;
        v_retried := v_retried + v_row.retried;
        v_failed := v_failed + v_row.failed;
        IF v_row.failed > 0 THEN
            PERFORM pgjobs._items_settle(v_job_id, v_row.failed::integer, v_row.error);
        END IF;
    END LOOP;
    RETURN jsonb_build_object('retried', v_retried, 'failed', v_failed);
END
$$;
