CREATE OR REPLACE FUNCTION pgjobs._requeue_problem(p_job pgjobs.jobs,
                                                   p_verb text,
                                                   OUT message text,
                                                   OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Why job p_job may not go on, in a form that does not raise: the message
-- and hint of the 42501 that pgjobs._require_requeue raises from it, or
-- both NULL when it may. What queueing p_job again needs (pgjobs._retry_as,
-- p_verb 'retried'; pgjobs._resume_as, 'resumed'), and starting any
-- attempt of it or handing out its items (pgjobs._may_start_attempt,
-- 'started', which fails the job instead, and so takes the problem as a
-- value: a claim that passes opens no subtransaction): what its submit
-- needed, held now by the role that submitted it, whoever asks (an admin
-- too): the job goes on acting with its submitter's rights. A registered
-- target must still be trusted (pgjobs._trust_verdict, the check of
-- pgjobs._target; at an attempt's start, only for the jobs pgjobs runs
-- itself, see below), and the submitter must still hold the privilege of the
-- job's kind (pgjobs._submitter_problem, the check the engine and the
-- worker repeat as they run delete, backfill, export and import jobs).
-- Custom kinds and fan-out jobs run outside the engine, so for them this
-- is the check: a submitter whose UPDATE was revoked may still cancel its
-- job, not set it going again (as pgjobs.add_items). The message names the
-- job and what is missing; the hint is the grant that is missing and what
-- becomes of the job (for 'started': it fails). Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_judge_trust boolean;
    v_problem record;
    v_submitter name;
BEGIN
    -- Trust is judged for current_user (pgjobs._trust_verdict): here the
    -- role pgjobs runs as, retry's and resume's owner, or at an attempt's
    -- start the role that claims. For a job pgjobs runs itself (an export, a
    -- writing kind) that is the role that runs it, which judges it again at
    -- every page and chunk. A custom kind's job or a fan-out job's items go
    -- to an external worker acting on the target with its own rights, and
    -- pgjobs runs none of the target's code for them: judged as that worker
    -- (no owner of any target, say), the submitter's jobs would fail for the
    -- worker's rights. They are judged where pgjobs evaluates the target's
    -- code for them: submit, retry, resume, add_items.
    v_judge_trust := p_verb <> 'started'
                     OR (NOT p_job.fanout AND (p_job.kind = 'export' OR p_job.writes));
    -- The registry row serves the trust check (a registered target only) and
    -- an import's grants (its scope column): at the start of an attempt of
    -- any other job, the common claim of a custom kind, it is not read.
    IF v_judge_trust OR p_job.kind = 'import' THEN
        SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_job.target;
    END IF;
    IF v_judge_trust AND v_reg.target IS NOT NULL THEN
        v_problem := pgjobs._trust_verdict(p_job.target);  -- no longer trusted
        message := v_problem.message;
        hint := v_problem.hint;
    END IF;
    IF message IS NULL THEN
        v_problem := pgjobs._submitter_problem(p_job, v_reg);  -- a grant revoked since submit
        message := v_problem.message;
        hint := v_problem.hint;
    END IF;
    -- Queued again by retry or resume, a job runs with the engine's own
    -- grants as well (pgjobs._engine_grant_problem, its submit's check):
    -- refused here with the GRANT, not failed at its first page. Not at an
    -- attempt's start: the page itself reports it there.
    IF message IS NULL AND p_verb <> 'started' AND v_reg.target IS NOT NULL THEN
        v_problem := pgjobs._engine_grant_problem(p_job.target, p_job.kind, p_job.payload);
        IF v_problem.message IS NOT NULL THEN
            message := format('job %s cannot be %s: %s', p_job.id, p_verb, v_problem.message);
            hint := v_problem.hint || format(' The job stays %s (pgjobs.cancel(%s) ends it).',
                                             p_job.status, p_job.id);
            RETURN;
        END IF;
    END IF;
    IF message IS NULL THEN
        RETURN;
    END IF;
    message := format('job %s cannot be %s: %s', p_job.id, p_verb, message);
    -- The name the submitter goes by now (renamed since the submit, it is
    -- the role whose rights the job acts with): pgjobs._submitter_name.
    v_submitter := pgjobs._submitter_name(p_job.submitted_by, p_job.submitted_by_oid);
    hint := concat_ws(' ', nullif(hint, ''),
                      CASE WHEN p_verb = 'started'
                      THEN format('The job acts with the rights of %I, who submitted it, so it '
                                  'failed instead of starting an attempt; once they are '
                                  'granted back pgjobs.retry(%s) sets it going again, or '
                                  'submit it again as a role that holds them.',
                                  v_submitter, p_job.id)
                      ELSE format('The job acts with the rights of %I, who submitted it; it '
                                  'stays %s (pgjobs.cancel(%s) ends it), or submit it again '
                                  'as a role that holds them.', v_submitter,
                                  p_job.status, p_job.id) END);
END
$$;
