CREATE OR REPLACE FUNCTION pgjobs._timeout_deadline()
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- When a runner procedure (pgjobs.run, pgjobs.run_job) must hand its job
-- back because the session's statement_timeout, which times the whole
-- CALL (COMMITs and all: a page's own SET of it does not re-arm the
-- timer), would otherwise cancel the page in flight: a fifth of the
-- timeout (at most 5 s: pages take page_ms, 50 ms) before the timer,
-- counted from the CALL's start (statement_timestamp()). NULL when the
-- session has no statement_timeout. The one reading of the setting for
-- both (pgjobs._run_deadline cuts a run's budget to it). Locks nothing.
DECLARE
    v_timeout_ms bigint;
BEGIN
    SELECT s.setting::bigint INTO v_timeout_ms
      FROM pg_catalog.pg_settings s WHERE s.name = 'statement_timeout';
    IF coalesce(v_timeout_ms, 0) <= 0 THEN
        RETURN NULL;
    END IF;
    RETURN statement_timestamp()
           + make_interval(secs => (v_timeout_ms - least(v_timeout_ms / 5, 5000)) / 1000.0);
END
$$;
