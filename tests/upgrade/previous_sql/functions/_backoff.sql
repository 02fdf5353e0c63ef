CREATE OR REPLACE FUNCTION pgjobs._backoff(p_attempts integer)
RETURNS interval
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The delay before retry number p_attempts + 1: exponential from one second,
-- capped at one hour, plus up to 25% random jitter so that jobs failed by
-- one outage do not all come back in the same instant.
SELECT pg_catalog.make_interval(secs =>
    LEAST(3600, 2 ^ GREATEST(p_attempts - 1, 0)) * (1 + 0.25 * pg_catalog.random()));
$$;
