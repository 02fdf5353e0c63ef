CREATE OR REPLACE FUNCTION pgjobs._run_deadline(p_budget interval)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- When a pgjobs.run call of budget p_budget must stop claiming: now (the
-- wall clock, not the transaction's start) plus the budget. Raises 22023
-- for a budget that is not more than 0 and at most 1 day: a run of no time
-- claims nothing, and returning as if there were no work would hide that.
-- Locks nothing.
BEGIN
    IF p_budget IS NULL OR p_budget <= interval '0' OR p_budget > interval '1 day' THEN
        RAISE EXCEPTION 'budget must be more than 0 and at most 1 day, not %', p_budget
            USING ERRCODE = '22023', HINT = 'The default is 50 seconds, under pg_cron''s minute.';
    END IF;
    RETURN clock_timestamp() + p_budget;
END
$$;
