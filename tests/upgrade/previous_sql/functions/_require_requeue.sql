CREATE OR REPLACE FUNCTION pgjobs._require_requeue(p_job pgjobs.jobs, p_verb text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What queueing job p_job again needs (pgjobs._retry_as, p_verb
-- 'retried'; pgjobs._resume_as, 'resumed'), and starting any attempt of it
-- or handing out its items (pgjobs._may_start_attempt, 'started', which
-- fails the job instead): what its submit needed, held
-- now by the role that submitted it, whoever asks (an admin too): the job
-- goes on acting with its submitter's rights. A registered target must
-- still be trusted (pgjobs._target), and the submitter must still hold
-- the privilege of the job's kind (pgjobs._require_submitter, the check
-- the engine and the worker repeat as they run delete, backfill, export and
-- import jobs). Custom kinds and fan-out jobs run outside the engine, so
-- for them this is the check: a submitter whose UPDATE was revoked may
-- still cancel its job, not set it going again (as pgjobs.add_items).
-- Raises 42501 naming the job, with the grant that is missing as hint;
-- the job is left as it was (the hint for 'started' says what the caller
-- does: the job fails). Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_message text;
    v_hint text;
BEGIN
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_job.target;
    IF FOUND THEN
        v_reg := pgjobs._target(p_job.target);  -- 42501: no longer trusted
    END IF;
    PERFORM pgjobs._require_submitter(p_job, v_reg);  -- 42501: a grant revoked since submit
EXCEPTION WHEN insufficient_privilege THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
    RAISE EXCEPTION 'job % cannot be %: %', p_job.id, p_verb, v_message
        USING ERRCODE = '42501',
        HINT = concat_ws(' ', nullif(v_hint, ''),
                         CASE WHEN p_verb = 'started'
                         THEN format('The job acts with the rights of %I, who submitted it, so it '
                                     'failed instead of starting an attempt; once they are '
                                     'granted back pgjobs.retry(%s) sets it going again, or '
                                     'submit it again as a role that holds them.',
                                     p_job.submitted_by, p_job.id)
                         ELSE format('The job acts with the rights of %I, who submitted it; it '
                                     'stays %s (pgjobs.cancel(%s) ends it), or submit it again '
                                     'as a role that holds them.', p_job.submitted_by,
                                     p_job.status, p_job.id) END);
END
$$;
