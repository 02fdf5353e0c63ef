CREATE OR REPLACE FUNCTION pgjobs._run_next(p_worker text, p_deadline timestamptz)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The next job for the pgjobs.run loop: claims one delete or backfill job
-- for p_worker (pgjobs.claim: gate, lease, `started`), unless p_deadline
-- has passed. Returns the claimed row, whose worker is the claim's identity
-- to pass to pgjobs._run_step, or NULL (nothing to do, or time is up).
-- Locks: the claimed job row (until the caller's COMMIT).
DECLARE
    v_job pgjobs.jobs;
BEGIN
    IF clock_timestamp() >= p_deadline THEN
        RETURN NULL;
    END IF;
    SELECT c.* INTO v_job
      FROM pgjobs.claim(pgjobs._engine_kinds(), p_worker, interval '30 seconds', 1) c;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN v_job;
END
$$;
