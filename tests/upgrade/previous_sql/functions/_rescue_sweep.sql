CREATE OR REPLACE FUNCTION pgjobs._rescue_sweep()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The sweep of pgjobs._rescue_expired, called only when its probe found an
-- expired lease. Takes back the jobs whose lease expired (their worker died or hung):
-- canceled when a cancel was requested, paused (the attempt not counted)
-- when a pause was, failed when attempts are used up,
-- else queued again at once (the job already waited a whole lease). The
-- dead worker's later calls are fenced off: it no longer holds the lease.
--
-- Locks: the expired rows, SKIP LOCKED, so concurrent claimers never queue
-- behind each other here. Returns {"retried", "failed", "canceled", "paused"}.
DECLARE
    v_job pgjobs.jobs;
    v_retried integer := 0;
    v_failed integer := 0;
    v_canceled integer := 0;
    v_paused integer := 0;
BEGIN
    FOR v_job IN
        WITH expired AS (
            SELECT j.id FROM pgjobs.jobs j
             WHERE j.status = 'running' AND j.lease_expires_at < now()
             ORDER BY j.lease_expires_at
             LIMIT 1000
               FOR UPDATE SKIP LOCKED)
        UPDATE pgjobs.jobs j
           SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
                             WHEN j.pause_requested_at IS NOT NULL THEN 'paused'
                             WHEN j.attempts >= j.max_attempts THEN 'failed'
                             ELSE 'queued' END,
               -- A pause does not count the attempt it interrupted.
               attempts = CASE WHEN j.cancel_requested_at IS NULL
                                    AND j.pause_requested_at IS NOT NULL
                               THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
               pause_requested_at = NULL,
               error = format('lease expired: worker %s stopped heartbeating', j.worker),
               lease_expires_at = NULL,
               run_at = now(),
               queued_at = now(),
               finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                                   OR (j.pause_requested_at IS NULL
                                       AND j.attempts >= j.max_attempts) THEN now() END,
               updated_at = now()
          FROM expired
         WHERE j.id = expired.id
        RETURNING j.*
    LOOP
        CASE v_job.status
        WHEN 'queued' THEN
            v_retried := v_retried + 1;
            PERFORM pgjobs._notify(v_job, 'retrying');
        WHEN 'failed' THEN
            v_failed := v_failed + 1;
            IF v_job.kind = 'export' THEN
                -- What it recorded is kept for pgjobs.retry; uploads it
                -- opened and never recorded serve no retry: removed now.
                PERFORM pgjobs._queue_export_unrecorded(v_job.id, v_job.checkpoint);
            END IF;
            PERFORM pgjobs._notify(v_job, 'failed');
        WHEN 'paused' THEN
            v_paused := v_paused + 1;
            PERFORM pgjobs._notify(v_job, 'paused');
        ELSE
            v_canceled := v_canceled + 1;
            IF v_job.kind = 'export' THEN
                -- Its worker is gone: nothing else removes its upload (a
                -- job failed here keeps it for pgjobs.retry until pruned).
                PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
            END IF;
            PERFORM pgjobs._notify(v_job, 'canceled');
        END CASE;
    END LOOP;
    RETURN jsonb_build_object('retried', v_retried, 'failed', v_failed,
                              'canceled', v_canceled, 'paused', v_paused);
END
$$;
