CREATE OR REPLACE FUNCTION pgjobs._interval_fixed(p_interval interval)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether p_interval is one fixed length of time: no month or year part.
-- The one rule of every interval a job's options or a claim give (lease,
-- page_delay, max_xact_age; pgjobs._insert_job_row, _throttle_options,
-- _check_claim_args). Each is checked against its bounds by an interval
-- comparison, which counts a month as 30 days and a year as 360, then used
-- as now() + it (a calendar month of 28 to 31 days) or as extract(epoch ...)
-- (a year of 365.25 days). A month part offset by days made the three
-- disagree: {"lease": "1000 mon -29999 days"} compared as 1 day and held a
-- job 437 days; {"page_delay": "-100 years 36000 days 1 hour"} compared as
-- 1 hour (at least an administrator's default) and ran with no delay;
-- {"max_xact_age": "100 years -35999 days -23 hours -50 min"} compared as
-- 10 minutes and waited for no transaction younger than 525 days. Days and
-- time read the same in the comparison and the epoch. NULL for NULL. No
-- exception block: a claim calls it. Locks nothing.
BEGIN
    RETURN extract(year FROM p_interval) = 0 AND extract(month FROM p_interval) = 0;
END
$$;

COMMENT ON FUNCTION pgjobs._interval_fixed(interval) IS
'Whether an interval has no month or year part (a fixed length of time: its comparisons, its '
'epoch and now() plus it agree); the rule of the lease, page_delay and max_xact_age options '
'and of a claim''s lease.';
