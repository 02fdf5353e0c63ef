CREATE OR REPLACE FUNCTION pgjobs._runner_name(p_role text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The worker name of an in-database runner (pgjobs.run, pgjobs.run_job):
-- its role and backend pid, for diagnosis. Each claim appends its own
-- token to it (pgjobs._claim_identity), which is what fences. Locks nothing.
SELECT p_role || ':' || pg_backend_pid()::text
$$;
