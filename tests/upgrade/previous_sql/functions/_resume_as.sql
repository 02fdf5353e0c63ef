CREATE OR REPLACE FUNCTION pgjobs._resume_as(
    p_caller name,
    p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.resume, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.resume, its only permitted caller:
-- pgjobs._enter, 42501 otherwise). Who may: pgjobs._controlled_job, the
-- rule of pgjobs.cancel.
-- Paused: queued again (event `resumed`) with its checkpoint, done and
-- run_at, and with its place in its scope's writer queue (it never left
-- it); an export or import takes its turn between tenants, as its submit
-- did (pgjobs._tenant_turn). Running with a pause pending: the request is
-- withdrawn and the job runs on. Raises 55000 for any other state, and
-- 42501 when its submitter no longer holds what the submit needed
-- (pgjobs._require_requeue).
-- Locks: the job row (waits for a claim or page in flight on it).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('resume', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    IF v_job.status = 'paused'
       OR (v_job.status = 'running' AND v_job.pause_requested_at IS NOT NULL) THEN
        -- What the submit needed, still held by the submitter (42501).
        PERFORM pgjobs._require_requeue(v_job, 'resumed');
    END IF;
    IF v_job.status = 'paused' THEN
        -- An export's or import's turn between tenants, as at its submit.
        UPDATE pgjobs.jobs
           SET status = 'queued', updated_at = now(),
               -- A hand-back's note is of a wait the pause ended (stats()
               -- would list the resumed job as still waiting for it).
               checkpoint = checkpoint - 'throttled',
               queued_at = pgjobs._tenant_turn(v_job.kind, v_job.target, v_job.scope,
                                               v_job.run_at)
         WHERE id = p_id
        RETURNING * INTO v_job;
        PERFORM pgjobs._notify(v_job, 'resumed');
        RETURN pgjobs._leave(true);
    ELSIF v_job.status = 'running' AND v_job.pause_requested_at IS NOT NULL THEN
        UPDATE pgjobs.jobs SET pause_requested_at = NULL, updated_at = now()
         WHERE id = p_id;
        RETURN pgjobs._leave(true);
    END IF;
    RAISE EXCEPTION 'job % (%) is not paused', p_id, v_job.status
        USING ERRCODE = '55000',
        HINT = CASE WHEN v_job.status IN ('failed', 'canceled')
                    THEN 'Requeue a failed or canceled job with pgjobs.retry(id).'
                    ELSE 'Only a paused job can be resumed (pgjobs.pause(id) pauses one).' END;
END
$$;
