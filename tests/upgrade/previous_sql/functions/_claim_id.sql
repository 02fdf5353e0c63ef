CREATE OR REPLACE FUNCTION pgjobs._claim_id(p_id bigint, p_worker text,
                                            p_lease interval DEFAULT '30 seconds')
RETURNS pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Claims the one job p_id for p_worker (used by run_job), with the same
-- gate as pgjobs.claim. Returns the job row: running and owned when
-- claimed (its worker is the claim's identity, p_worker#token, that the
-- caller passes on to pgjobs._run_page), unchanged when it had already
-- finished, failed when its submitter lost a right since the submit
-- (pgjobs._start_attempts). Raises P0002 (unknown),
-- 22023 (not a kind the database runs), 55006 (held by another worker, or
-- a writing job of its scope must run first). Reads nothing of the target:
-- a deferred typo guard is the job's first page's (pgjobs._run_page).
-- Locks: the job row.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    PERFORM pgjobs._require_job_id(p_id);  -- 22023 for NULL, not P0002
    PERFORM pgjobs._rescue_expired();
    SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'List jobs with SELECT * FROM pgjobs.jobs.';
    END IF;
    IF NOT v_job.kind = ANY (pgjobs._engine_kinds()) THEN
        RAISE EXCEPTION 'job % is %; the database runs delete and backfill jobs',
            p_id, pgjobs._a_job(v_job.kind) USING ERRCODE = '22023',
            HINT = 'Exports run in `pgjobs export` or `pgjobs worker`; custom kinds in your '
                   'own worker via pgjobs.claim().';
    END IF;
    IF v_job.status IN ('succeeded', 'failed', 'canceled') THEN
        RETURN v_job;
    END IF;
    IF v_job.status = 'paused' THEN
        RAISE EXCEPTION 'job % is paused', p_id USING ERRCODE = '55000',
            HINT = 'Resume it first with pgjobs.resume(id).';
    END IF;
    IF v_job.status = 'running' THEN
        RAISE EXCEPTION 'job % is running on worker %', p_id, v_job.worker
            USING ERRCODE = '55006',
            HINT = format('Wait for it, or cancel it; its lease ends at %s.',
                          v_job.lease_expires_at);
    END IF;
    IF NOT pgjobs._writer_may_start(v_job.target, v_job.scope,
                                     coalesce(v_job.gate_order, v_job.id)) THEN
        RAISE EXCEPTION 'job % must wait: an earlier writing job of % scope % is pending',
            p_id, v_job.target, v_job.scope USING ERRCODE = '55006',
            HINT = 'Writing jobs of one scope run one at a time in submission order; run the '
                   'earlier one first or wait for it.';
    END IF;
    SELECT * INTO v_job FROM pgjobs._start_attempts(ARRAY[p_id], p_worker, p_lease);
    IF NOT FOUND THEN
        -- Failed instead of started: its submitter lost a right
        -- (pgjobs._may_start_attempt); the job as it ended.
        SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id;
    END IF;
    RETURN v_job;
END
$$;
