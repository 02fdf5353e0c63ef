CREATE OR REPLACE FUNCTION pgjobs.claim_export(
    p_id bigint,
    p_worker text,
    p_lease interval DEFAULT '30 seconds')
RETURNS SETOF pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Claims the one export job p_id for p_worker when it is queued and its
-- run_at has come, exactly as pgjobs.claim would (lease, attempts, event
-- `started`, the claim's own identity in `worker`): `pgjobs export` runs the job it just submitted in-process this
-- way. Returns no row when the job is not claimable right now (a worker
-- took it first, it is waiting for a retry, or it finished): the caller
-- then follows it instead. Raises P0002 for an unknown id, 22023 when it is
-- not an export. Locks: the job row (SKIP LOCKED: never waits for a
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
    IF v_job.kind <> 'export' THEN
        RAISE EXCEPTION 'job % is %, not an export', p_id, pgjobs._a_job(v_job.kind)
            USING ERRCODE = '22023', HINT = 'Use pgjobs.claim() for other kinds.';
    END IF;

    PERFORM pgjobs._rescue_expired();

    RETURN QUERY SELECT * FROM pgjobs._start_attempts(ARRAY(
        SELECT q.id FROM pgjobs.jobs q
               WHERE q.id = p_id AND q.status = 'queued' AND q.run_at <= now()
                 FOR UPDATE SKIP LOCKED), p_worker, p_lease);
END
$$;

COMMENT ON FUNCTION pgjobs.claim_export(bigint, text, interval) IS
'Claims the export job p_id for p_worker if it is queued and due (as pgjobs.claim would: lease, '
'attempts, event started); returns no row when it is not claimable now.';
