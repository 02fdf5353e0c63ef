CREATE OR REPLACE FUNCTION pgjobs._near_ceiling(p_count bigint, p_ceiling bigint)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a client's count made without a lock is near enough its ceiling
-- that it is made again under the client's lock (pgjobs._lock_client_room):
-- within a tenth of the ceiling, and at least 1, of it. Other sessions of
-- the client may have added jobs not yet committed, which the count does
-- not see: the margin is how many such jobs the ceiling stays exact for
-- (more than that, submitted at once each by its own session, can pass the
-- ceiling by what exceeds the margin). Locks nothing.
SELECT p_count >= p_ceiling - greatest(p_ceiling / 10, 1);
$$;

COMMENT ON FUNCTION pgjobs._near_ceiling(bigint, bigint) IS
'Whether a count is within a tenth (at least 1) of its ceiling: a client''s ceilings are '
'counted again under its lock (pgjobs._lock_client_room) from there.';
