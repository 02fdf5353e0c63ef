CREATE OR REPLACE FUNCTION pgjobs._max_parallel()
RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The most parts an export may ask for (option "parallel"): what an
-- administrator stored with pgjobs.set_defaults('{"max_parallel": N}'), else
-- 64. The one place that decides it: pgjobs._submit_export_as refuses more
-- (22023), pgjobs.export_parts_split cuts a job submitted before the
-- ceiling was lowered into at most this many parts. Locks nothing.
BEGIN
    RETURN coalesce((pgjobs._defaults() ->> 'max_parallel')::integer, 64);
END
$$;
