CREATE OR REPLACE FUNCTION pgjobs._cancel_as(
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
-- The body of pgjobs.cancel, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.cancel, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- Cancels job p_id. Queued: canceled at once. Running: a cancel is
-- requested and the owner stops at its next page or heartbeat (a dead
-- owner's job is canceled when its lease is rescued). Returns false when
-- the job had already finished; raises P0002 for an unknown id.
-- SECURITY DEFINER for pgjobs_client: the submitter, an admin, or a role
-- with the privilege the job's kind needs on its target may cancel (42501),
-- and only a job of a scope in the session's pgjobs.allowed_scopes, if set.
-- Locks: the job row (waits for a claim or page in flight on it).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    p_caller := pgjobs._enter('cancel', p_caller);  -- 42501 for any other caller
    -- A job the caller may not see (policy jobs_client_read: not its own, and
    -- its target unreadable to it or confined by row-level security) does
    -- not exist for it: the same P0002 as an unknown id, and no row lock, so
    -- neither the error nor a wait tells it which ids exist or what they touch.
    SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id;
    IF FOUND AND NOT (pg_has_role(p_caller, 'pgjobs_admin', 'MEMBER')
                      OR p_caller = v_job.submitted_by
                      OR (coalesce(has_table_privilege(p_caller, v_job.target, 'SELECT'), false)
                          AND NOT pgjobs._row_security_confines(v_job.target, p_caller))) THEN
        v_job := NULL;
    ELSIF FOUND THEN
        SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id FOR UPDATE;
    END IF;
    IF v_job.id IS NULL THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'List jobs with SELECT * FROM pgjobs.jobs; finished jobs are pruned '
                   'after the retention period.';
    END IF;
    PERFORM pgjobs._require_scope(v_job.target, v_job.scope);
    -- Whoever could have submitted the job may cancel it, and admins.
    IF NOT (pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER')
            OR pgjobs._caller() = v_job.submitted_by) THEN
        PERFORM pgjobs._require(v_job.target, pgjobs._kind_privilege(v_job.kind));
    END IF;
    IF v_job.status = 'queued' THEN
        UPDATE pgjobs.jobs
           SET status = 'canceled', cancel_requested_at = now(), finished_at = now(),
               updated_at = now()
         WHERE id = p_id
        RETURNING * INTO v_job;
        PERFORM pgjobs._notify(v_job, 'canceled');
        RETURN true;
    ELSIF v_job.status = 'running' THEN
        UPDATE pgjobs.jobs
           SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
         WHERE id = p_id;
        RETURN true;
    END IF;
    RETURN false;
END
$$;
