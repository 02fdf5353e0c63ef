CREATE OR REPLACE FUNCTION pgjobs._claim_given(
    p_id bigint,
    p_worker text,
    p_lease interval,
    p_kind text)
RETURNS SETOF pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.claim_export and pgjobs.claim_import (p_kind 'export'
-- or 'import'): claims the one job p_id of p_kind for p_worker when it is
-- queued and its run_at has come, exactly as pgjobs.claim would (lease,
-- attempts, event `started`, the claim's own identity in `worker`), and,
-- for a writing kind, when the writer gate lets it start. Returns no row
-- when the job is not claimable right now (a worker took it first, it is
-- waiting for a retry or its turn at the gate, or it finished): the caller
-- then follows it instead. Raises P0002 for an unknown id, 22023 when it is
-- not of p_kind. Locks: the job row (SKIP LOCKED: never waits for a
-- concurrent claim).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    PERFORM pgjobs._require_job_id(p_id);  -- 22023 for NULL, not P0002
    PERFORM pgjobs._check_claim_args(p_worker, p_lease);
    SELECT j.* INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_id USING ERRCODE = 'P0002',
            HINT = 'List jobs with SELECT * FROM pgjobs.jobs.';
    END IF;
    -- IS DISTINCT FROM: a NULL p_kind compared unknown and claimed a job of
    -- any kind (the wrappers pass a constant; an administrator may call
    -- this body too).
    IF v_job.kind IS DISTINCT FROM p_kind THEN
        RAISE EXCEPTION 'job % is %, not %', p_id, pgjobs._a_job(v_job.kind),
                        coalesce(left(pgjobs._a_job(p_kind), -length(' job')), 'a job of a NULL kind')
            USING ERRCODE = '22023', HINT = 'Use pgjobs.claim() for other kinds.';
    END IF;

    PERFORM pgjobs._rescue_expired();

    RETURN QUERY SELECT * FROM pgjobs._start_attempts(ARRAY(
        SELECT q.id FROM pgjobs.jobs q
               WHERE q.id = p_id AND q.status = 'queued' AND q.run_at <= now()
                 AND (NOT q.writes
                      OR pgjobs._writer_may_start(q.target, q.scope,
                                                  coalesce(q.gate_order, q.id)))
                 FOR UPDATE SKIP LOCKED), p_worker, p_lease);
END
$$;

COMMENT ON FUNCTION pgjobs._claim_given(bigint, text, interval, text) IS
'The body of claim_export and claim_import: claims the job p_id of kind p_kind for p_worker if it is '
'queued, due and (a writing kind) let through by the writer gate; no row when it is not claimable now.';
