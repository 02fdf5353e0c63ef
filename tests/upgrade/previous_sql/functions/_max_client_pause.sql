CREATE OR REPLACE FUNCTION pgjobs._max_client_pause()
RETURNS interval
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- How long a writing job paused by a role that is not an administrator may
-- stay paused before the engine cancels it (pgjobs._expire_client_pauses):
-- what an administrator stored with
-- pgjobs.set_defaults('{"max_client_pause": "2 hours"}'), else 1 hour. The
-- one place that decides it (the sweep and doctor's jobs.paused check).
-- Locks nothing.
BEGIN
    RETURN coalesce((pgjobs._defaults() ->> 'max_client_pause')::interval, interval '1 hour');
END
$$;

COMMENT ON FUNCTION pgjobs._max_client_pause() IS
'set_defaults'' max_client_pause (else 1 hour): how long a writing job a client paused may stay '
'paused before the engine cancels it (pgjobs._expire_client_pauses).';
