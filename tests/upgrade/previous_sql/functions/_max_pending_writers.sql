CREATE OR REPLACE FUNCTION pgjobs._max_pending_writers()
RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The most writing jobs (queued, running or paused) a client may have one
-- (target, scope) hold: what an administrator stored with
-- pgjobs.set_defaults('{"max_pending_writers": N}'), else 1000. The one
-- place that decides it (pgjobs._require_queue_room). Locks nothing.
BEGIN
    RETURN coalesce((pgjobs._defaults() ->> 'max_pending_writers')::integer, 1000);
END
$$;
