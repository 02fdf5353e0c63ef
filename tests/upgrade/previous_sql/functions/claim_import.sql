CREATE OR REPLACE FUNCTION pgjobs.claim_import(
    p_id bigint,
    p_worker text,
    p_lease interval DEFAULT '30 seconds')
RETURNS SETOF pgjobs.jobs
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Claims the one import job p_id for p_worker when it is queued and its
-- run_at has come, exactly as pgjobs.claim would (lease, attempts, event
-- `started`, the claim's own identity in `worker`): `pgjobs import` runs the
-- job it just submitted in-process this way. Returns no row when the job is
-- not claimable right now (a worker took it first, it is waiting for a retry,
-- it finished, or the writer gate holds it): the caller then follows it
-- instead. Raises P0002 for an unknown id, 22023 when it is not an import.
-- Locks: the job row (SKIP LOCKED: never waits for a concurrent claim). One
-- body with claim_export: pgjobs._claim_given.
SELECT * FROM pgjobs._claim_given(p_id, p_worker, p_lease, 'import');
$$;

COMMENT ON FUNCTION pgjobs.claim_import(bigint, text, interval) IS
'Claims the import job p_id (when the writer gate lets it start) for p_worker if it is queued and due (as pgjobs.claim would: lease, '
'attempts, event started); returns no row when it is not claimable now.';
