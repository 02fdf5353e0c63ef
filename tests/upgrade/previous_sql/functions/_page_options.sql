CREATE OR REPLACE FUNCTION pgjobs._page_options(p_options jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Validates the paging options of delete and backfill jobs: page_size
-- (1..100000 rows, fixed) and page_ms (5..10000, the adaptive target).
-- Raises 22023 naming the option. Locks nothing.
BEGIN
    IF p_options ? 'page_size' THEN
        PERFORM pgjobs._option_int('page_size', p_options -> 'page_size', 1, 100000);
    END IF;
    IF p_options ? 'page_ms' THEN
        PERFORM pgjobs._option_int('page_ms', p_options -> 'page_ms', 5, 10000);
    END IF;
END
$$;
