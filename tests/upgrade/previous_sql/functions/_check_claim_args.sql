CREATE OR REPLACE FUNCTION pgjobs._check_claim_args(p_worker text, p_lease interval)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The arguments every claim takes: a non-empty worker name and a lease from
-- one second to one day, without a month or year part (pgjobs._interval_fixed:
-- '1 mon -29 days' compares as 1 day and lasts 1 to 3 on the calendar).
-- Raises 22023. Locks nothing.
BEGIN
    IF p_worker IS NULL OR p_worker = '' THEN
        RAISE EXCEPTION 'worker name must not be empty' USING ERRCODE = '22023',
            HINT = 'Use a name unique to the process, e.g. host:pid:random.';
    END IF;
    IF p_lease IS NULL OR p_lease < interval '1 second' OR p_lease > interval '1 day'
       OR NOT pgjobs._interval_fixed(p_lease) THEN
        RAISE EXCEPTION 'lease must be from 1 second to 1 day, not %', p_lease
            USING ERRCODE = '22023',
            HINT = 'The default is 30 seconds; heartbeat well within it. No months or years: '
                   'their length depends on the date.';
    END IF;
END
$$;
