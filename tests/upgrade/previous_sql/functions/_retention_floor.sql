CREATE OR REPLACE FUNCTION pgjobs._retention_floor()
RETURNS interval
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The shortest retention pgjobs.schedule installs for its pg_cron prune:
-- an hour. pg_cron runs that prune every minute, unattended; under a
-- retention of 0 every finished job went within the minute, and with it
-- (queued for deletion) the files of an export just handed to its user. A
-- one-off `pgjobs prune` may go shorter (on a terminal it asks first).
-- pgjobs.doctor warns of a schedule installed below it before the floor
-- existed. Locks nothing.
SELECT interval '1 hour'
$$;
