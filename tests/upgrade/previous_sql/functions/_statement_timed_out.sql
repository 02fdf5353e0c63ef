CREATE OR REPLACE FUNCTION pgjobs._statement_timed_out(p_timeout text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a query_canceled (57014) caught now is statement_timeout's, told
-- by time: true when the running top-level statement (a CALL pgjobs.run or
-- run_job, a SELECT) has run for at least p_timeout, the statement_timeout
-- in force when it began, as current_setting prints it ('2s', '0': none),
-- read by the caller before it set any of its own. PostgreSQL arms the
-- timer once, at the statement's start, from the setting then; a SET inside
-- the statement (a page's SET LOCAL, a function's SET clause) arms none.
-- A cancel before that time is a user's (pg_cancel_backend, a client's
-- cancel request, Ctrl-C). The message cannot tell them: it follows
-- lc_messages, and was read in English ('%statement timeout%'), so on a
-- server with translated messages a timeout counted as a user's cancel
-- (the CALL ended with 57014) and the hint naming the setting was lost.
-- 10 ms of margin: the timer starts a moment before or after
-- statement_timestamp() is taken. Locks nothing.
DECLARE
    v_timeout interval;
BEGIN
    v_timeout := nullif(btrim(coalesce(p_timeout, '')), '')::interval;
    RETURN v_timeout > interval '0'
           AND clock_timestamp() - statement_timestamp() >= v_timeout - interval '10 ms';
END
$$;
