CREATE OR REPLACE FUNCTION pgjobs.heartbeat(
    p_id bigint,
    p_worker text,
    p_done bigint DEFAULT NULL,
    p_checkpoint jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Extends p_worker's lease on job p_id by the job's lease interval and
-- records progress (done) and the checkpoint, both optional. Fenced: only
-- the worker holding an unexpired lease of the running attempt changes
-- anything. Returns false when the caller must stop now: it lost the lease,
-- the job is no longer running, or a cancel was requested (the job then
-- becomes `canceled` here, and the worker just stops), or a pause (the job
-- becomes `paused` here, keeping the done and checkpoint passed, and the
-- worker just stops; pgjobs.resume queues it again).
--
-- Progress events are throttled to one per job per 250 ms.
-- Errors: 22023 for a negative p_done or a p_checkpoint that is not a JSON
-- object (pgjobs._check_progress, before the fence: a worker's bug, not a
-- lost lease), as
-- pgjobs.complete refuses a result that is not one: a job showed -5 rows
-- done, or kept a checkpoint "x" where readers (pgjobs.stats, the
-- dashboard, retry) look for an object's keys.
-- Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM pgjobs._check_progress(p_done, p_checkpoint);  -- 22023
    UPDATE pgjobs.jobs j
       SET lease_expires_at = now() + j.lease,
           heartbeat_at = now(),
           done = coalesce(p_done, j.done),
           checkpoint = coalesce(p_checkpoint, j.checkpoint),
           progress_notified_at = CASE
               WHEN j.progress_notified_at IS NULL
                 OR j.progress_notified_at <= v_now - interval '250 milliseconds'
               THEN v_now ELSE j.progress_notified_at END,
           updated_at = now()
     WHERE j.id = p_id
       -- The fence. No `status = 'running'`: a lease exists only while running
       -- (CHECK), and that qual lets the planner prefer jobs_leases_idx over the
       -- primary key when statistics show few running jobs, scanning them all.
       AND j.worker = p_worker
       AND j.lease_expires_at > now()
       AND j.cancel_requested_at IS NULL
       AND j.pause_requested_at IS NULL
    RETURNING j.* INTO v_job;

    IF FOUND THEN
        IF v_job.progress_notified_at = v_now THEN
            PERFORM pgjobs._notify(v_job, 'progress');
        END IF;
        RETURN true;
    END IF;
    PERFORM pgjobs._check_holder('job', p_id, p_worker);  -- 22023: not a lost lease

    -- A cancel or pause was requested: the owner learns it here. A cancel
    -- ends the job; a pause (when no cancel is pending) parks it `paused`
    -- with the progress and checkpoint this call reports, without counting
    -- the attempt, for pgjobs.resume to queue again.
    UPDATE pgjobs.jobs j
       SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled' ELSE 'paused' END,
           done = coalesce(p_done, j.done),
           checkpoint = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.checkpoint
                             ELSE coalesce(p_checkpoint, j.checkpoint) END,
           attempts = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.attempts
                           ELSE greatest(j.attempts - 1, 0) END,
           lease_expires_at = NULL,
           pause_requested_at = NULL,
           finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
           updated_at = now()
     WHERE j.id = p_id
       -- The fence, as above.
       AND j.worker = p_worker
       AND j.lease_expires_at > now()
       AND (j.cancel_requested_at IS NOT NULL OR j.pause_requested_at IS NOT NULL)
    RETURNING j.* INTO v_job;
    IF FOUND THEN
        IF v_job.status = 'canceled' AND v_job.kind = 'export' THEN
            -- What it wrote and left, should its worker (or a part's) die
            -- before its own cleanup: pgjobs._queue_export_leftovers.
            PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
        END IF;
        PERFORM pgjobs._notify(v_job, v_job.status);
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION pgjobs.heartbeat(bigint, text, bigint, jsonb) IS
'Extends the lease of a running job owned by p_worker and records done and checkpoint. Returns '
'false when the worker must stop now (lease lost or taken over, job not running, or cancel '
'or pause requested: the job is then canceled or paused). Progress events are throttled. A '
'negative p_done or a p_checkpoint that is not a JSON object raises 22023.';
