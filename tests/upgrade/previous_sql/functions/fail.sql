CREATE OR REPLACE FUNCTION pgjobs.fail(
    p_id bigint,
    p_worker text,
    p_error text,
    p_retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Records a failed attempt of job p_id. Retryable and attempts left: the
-- job is queued again after an exponential backoff with jitter (event
-- `retrying`). Otherwise it ends `failed` with the error kept, or
-- `canceled` when a cancel was requested meanwhile. A retryable failure of
-- a job whose pause was requested parks it `paused` instead (the worker
-- stopping for the pause may report it as a failure), without counting the
-- attempt; a permanent one still fails it. Fenced like complete.
-- Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
    v_event text;
BEGIN
    UPDATE pgjobs.jobs j
       SET status = CASE
               WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
               WHEN j.pause_requested_at IS NOT NULL AND coalesce(p_retryable, true) THEN 'paused'
               WHEN coalesce(p_retryable, true) AND j.attempts < j.max_attempts THEN 'queued'
               ELSE 'failed' END,
           error = left(coalesce(p_error, 'unknown error'), 10000),
           -- A pause does not count the attempt it interrupted.
           attempts = CASE
               WHEN j.cancel_requested_at IS NULL AND j.pause_requested_at IS NOT NULL
                    AND coalesce(p_retryable, true)
               THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
           run_at = CASE WHEN j.pause_requested_at IS NULL AND coalesce(p_retryable, true)
                              AND j.attempts < j.max_attempts
                         THEN now() + pgjobs._backoff(j.attempts) ELSE j.run_at END,
           lease_expires_at = NULL,
           pause_requested_at = NULL,
           queued_at = now(),  -- a retry joins the queue at its end (pgjobs.claim)
           finished_at = CASE
               WHEN j.cancel_requested_at IS NOT NULL
                 OR NOT coalesce(p_retryable, true)
                 OR (j.pause_requested_at IS NULL AND j.attempts >= j.max_attempts)
               THEN now() END,
           updated_at = now()
     WHERE j.id = p_id
       -- The fence. No `status = 'running'`: a lease exists only while running
       -- (CHECK), and that qual lets the planner prefer jobs_leases_idx over the
       -- primary key when statistics show few running jobs, scanning them all.
       AND j.worker = p_worker
       AND j.lease_expires_at > now()
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023
        RETURN false;
    END IF;
    IF v_job.status = 'canceled' AND v_job.kind = 'export' THEN
        -- What it wrote and left, should its worker (or a part's) die
        -- before its own cleanup: pgjobs._queue_export_leftovers.
        PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
    END IF;
    v_event := CASE v_job.status WHEN 'queued' THEN 'retrying' ELSE v_job.status END;
    PERFORM pgjobs._notify(v_job, v_event);
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.fail(bigint, text, text, boolean) IS
'Records a failed attempt. Retryable with attempts left: queued again after exponential '
'backoff with jitter; else failed with the error kept (canceled if a cancel was requested). '
'Returns false and changes nothing unless p_worker holds the current lease.';
