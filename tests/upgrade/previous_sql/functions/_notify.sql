CREATE OR REPLACE FUNCTION pgjobs._notify(p_job pgjobs.jobs, p_event text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Sends one event about p_job: pgjobs._notify_many of that one job, the
-- one place events are built (the channels, the payloads, and the drop rule
-- when the shared notification queue fills). Locks nothing.
BEGIN
    PERFORM pgjobs._notify_many(ARRAY[p_job], p_event);
END
$$;
