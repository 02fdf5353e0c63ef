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
-- still be trusted (pgjobs._target; at an attempt's start, only for the
-- jobs pgjobs runs itself, see below), and the submitter must still hold
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
    -- Trust is judged for current_user (pgjobs._require_trusted): here the
    -- role pgjobs runs as, retry's and resume's owner, or at an attempt's
    -- start the role that claims. For a job pgjobs runs itself (an export, a
    -- writing kind) that is the role that runs it, which judges it again at
    -- every page and chunk. A custom kind's job or a fan-out job's items go
    -- to an external worker acting on the target with its own rights, and
    -- pgjobs runs none of the target's code for them: judged as that worker
    -- (no owner of any target, say), the submitter's jobs would fail for the
    -- worker's rights. They are judged where pgjobs evaluates the target's
    -- code for them: submit, retry, resume, add_items.
    IF FOUND AND (p_verb <> 'started'
                  OR (NOT p_job.fanout AND (p_job.kind = 'export' OR p_job.writes))) THEN
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
