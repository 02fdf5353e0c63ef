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
-- wall clock, not the transaction's start) plus the budget, or earlier
-- when the session's statement_timeout would end the call first. Raises
-- 22023 for a budget that is not more than 0 and at most 1 day: a run of
-- no time claims nothing, and returning as if there were no work would
-- hide that. Locks nothing.
--
-- statement_timeout times the whole CALL, COMMITs and all (a page's own
-- SET of it does not re-arm the timer): with one of 30 s on the engine's
-- role or database, each pg_cron `CALL pgjobs.run('50 seconds')` was
-- canceled 30 s in, in the middle of a page, and that page failed its
-- job's attempt (57014, retried with backoff): a job longer than 30 s of
-- pages failed for good after max_attempts runs, half done. The deadline
-- now falls before the timer (by a fifth of it, at most 5 s: pages take
-- page_ms, 50 ms; pgjobs._timeout_deadline, which pgjobs.run_job uses too),
-- so the run releases its job with the cursor, counting no attempt, and a
-- WARNING says why and what to set.
DECLARE
    v_deadline timestamptz;
    v_limit timestamptz;
BEGIN
    IF p_budget IS NULL OR p_budget <= interval '0' OR p_budget > interval '1 day' THEN
        RAISE EXCEPTION 'budget must be more than 0 and at most 1 day, not %', p_budget
            USING ERRCODE = '22023', HINT = 'The default is 50 seconds, under pg_cron''s minute.';
    END IF;
    v_deadline := clock_timestamp() + p_budget;
    v_limit := pgjobs._timeout_deadline();  -- NULL: no statement_timeout
    IF v_limit IS NOT NULL THEN
        IF v_limit < v_deadline THEN
            RAISE WARNING 'pgjobs.run: budget % cut to % s: this session''s statement_timeout '
                          '(%) would cancel the call, and the page in flight with it, which '
                          'fails that job''s attempt', p_budget,
                          round(greatest(extract(epoch FROM v_limit - clock_timestamp()), 0),
                                1),
                          current_setting('statement_timeout')
                USING HINT = format('Set no statement_timeout for the role the engine runs as '
                                    '(pg_cron runs a job as its owner): ALTER ROLE %I SET '
                                    'statement_timeout = 0; keep it on client roles.',
                                    session_user);
            v_deadline := v_limit;
        END IF;
    END IF;
    RETURN v_deadline;
END
$$;
