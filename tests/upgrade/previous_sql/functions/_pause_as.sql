CREATE OR REPLACE FUNCTION pgjobs._pause_as(
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
-- The body of pgjobs.pause, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.pause, its only permitted caller:
-- pgjobs._enter, 42501 otherwise). Who may: pgjobs._controlled_job, the
-- rule of pgjobs.cancel.
-- Queued: paused at once (event `paused`). Running: pause_requested_at is
-- set; the owner honours it after the page in flight (pgjobs._run_page), at
-- its next heartbeat, release or fail, or pgjobs._rescue_expired when its
-- lease lapses, and the job becomes paused there (event `paused`).
-- Returns false when it is paused or a pause is pending already. Raises
-- 55000 for a finished job or one whose cancel is pending.
-- Records when (paused_at) and whether an administrator (a pgjobs_admin
-- member) paused it (paused_by_admin): a writing job a client paused is
-- canceled by the engine after set_defaults' max_client_pause
-- (pgjobs._expire_client_pauses), since it holds its scope's later
-- writers. An administrator's pause of a job a client paused makes the
-- pause theirs (still false: it was paused already). A client's pause of
-- a job that has not run since a client last paused it (no heartbeat or
-- claim after paused_at: resumed and paused again, even in one
-- transaction) keeps that pause's paused_at (pgjobs._pause_since):
-- otherwise pause, resume, pause reset the clock and held the gate for
-- good.
-- Locks: the job row (waits for a claim or page in flight on it).
DECLARE
    v_job pgjobs.jobs;
    v_admin boolean;
    v_since timestamptz;
BEGIN
    p_caller := pgjobs._enter('pause', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    v_admin := pg_has_role(p_caller, 'pgjobs_admin', 'MEMBER');
    v_since := pgjobs._pause_since(v_job, v_admin);
    IF v_job.fanout AND v_job.status = 'running' THEN
        UPDATE pgjobs.jobs SET paused_at = v_since, paused_by_admin = v_admin WHERE id = p_id;
        RETURN pgjobs._leave(pgjobs._items_stop(p_id, 'paused'));  -- no owner to tell: paused at once
    END IF;
    IF v_job.status = 'queued' THEN
        UPDATE pgjobs.jobs
           SET status = 'paused', paused_at = v_since, paused_by_admin = v_admin,
               updated_at = now()
         WHERE id = p_id
        RETURNING * INTO v_job;
        PERFORM pgjobs._notify(v_job, 'paused');
        RETURN pgjobs._leave(true);
    ELSIF v_job.status = 'running' AND v_job.cancel_requested_at IS NOT NULL THEN
        RAISE EXCEPTION 'job % is being canceled', p_id USING ERRCODE = '55000',
            HINT = 'A canceled job stops at its next page; requeue it afterwards with '
                   'pgjobs.retry(id).';
    ELSIF v_job.status = 'running' THEN
        IF v_job.pause_requested_at IS NOT NULL THEN
            IF v_admin AND NOT v_job.paused_by_admin THEN
                UPDATE pgjobs.jobs SET paused_by_admin = true WHERE id = p_id;
            END IF;
            RETURN pgjobs._leave(false);
        END IF;
        -- The clock starts at the request: the job pauses at its next page.
        UPDATE pgjobs.jobs
           SET pause_requested_at = now(), paused_at = v_since, paused_by_admin = v_admin,
               updated_at = now()
         WHERE id = p_id;
        RETURN pgjobs._leave(true);
    ELSIF v_job.status = 'paused' THEN
        IF v_admin AND NOT v_job.paused_by_admin THEN
            UPDATE pgjobs.jobs SET paused_by_admin = true WHERE id = p_id;
        END IF;
        RETURN pgjobs._leave(false);
    END IF;
    RAISE EXCEPTION 'job % (%) cannot be paused', p_id, v_job.status
        USING ERRCODE = '55000',
        HINT = CASE WHEN v_job.status = 'succeeded'
                    THEN 'Only a queued or running job can be paused.'
                    ELSE 'Only a queued or running job can be paused; requeue this one with '
                         'pgjobs.retry(id).' END;
END
$$;
