CREATE OR REPLACE FUNCTION pgjobs.release(p_id bigint, p_worker text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Hands a running job back to the queue without counting a failure: the
-- worker is shutting down or its time budget ran out. The checkpoint stays,
-- so the next owner resumes from it. A pending cancel ends the job instead;
-- a pending pause parks it `paused` (pgjobs.resume queues it again).
-- The job queues anew (queued_at): it goes behind the jobs that waited
-- while it ran, so a runner's budgets go round the due jobs (pgjobs.claim).
-- Fenced like complete. Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    UPDATE pgjobs.jobs j
       SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
                         WHEN j.pause_requested_at IS NOT NULL THEN 'paused'
                         ELSE 'queued' END,
           attempts = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.attempts
                           ELSE greatest(j.attempts - 1, 0) END,
           run_at = now(),
           queued_at = now(),
           lease_expires_at = NULL,
           pause_requested_at = NULL,
           finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
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
    IF v_job.status IN ('canceled', 'paused') THEN
        PERFORM pgjobs._notify(v_job, v_job.status);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs.release(bigint, text) IS
'Returns a running job to the queue (worker shutdown, budget spent) without counting the '
'attempt; the checkpoint is kept, and the job goes behind the jobs queued meanwhile. '
'Fenced: false unless p_worker holds the current lease.';
