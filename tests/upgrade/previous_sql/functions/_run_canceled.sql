CREATE OR REPLACE FUNCTION pgjobs._run_canceled(p_raise boolean)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The runner procedures' end of a cancel a page caught. A page's handlers
-- (pgjobs._run_page: the page's own statements, the typo guard's walk) catch
-- query_canceled to count the job's attempt (pgjobs._fail_attempt), which
-- then notes a cancel asked for by a user (pg_cancel_backend, a client's
-- cancel request; not a statement_timeout, whose deadline the runners
-- already keep) in the session setting pgjobs.canceled. Caught, the cancel
-- was swallowed: CALL pgjobs.run went on to its next job and returned
-- normally. pgjobs._run_claimed calls this with p_raise false before its
-- first page (a note left by a direct call of _run_page is dropped) and
-- with p_raise true after its last COMMIT: the attempt is then recorded,
-- and the CALL ends with 57014 as the user asked. A cancel that
-- pgjobs._run_step caught outside a page (note 'between:<id>') handed the
-- job back and counted nothing: its message says so. Returns NULL (a value, for
-- the thin shell to assign: it may not PERFORM). Locks nothing.
DECLARE
    v_note text := current_setting('pgjobs.canceled', true);
BEGIN
    IF coalesce(v_note, '') = '' THEN
        RETURN NULL;
    END IF;
    -- Cleared either way (an error below reverts this: the next
    -- pgjobs._run_claimed clears it again before its first page).
    PERFORM set_config('pgjobs.canceled', '', false);
    IF p_raise AND v_note LIKE 'between:%' THEN
        -- pgjobs._run_step caught it outside a page.
        RAISE EXCEPTION 'canceling statement due to user request (between pages of job %: the '
                        'job was handed back, no attempt counted)', substr(v_note, 9)
            USING ERRCODE = '57014',
            HINT = 'The job goes on at the next pgjobs.run or run_job; pgjobs.pause or '
                   'pgjobs.cancel stops it instead.';
    ELSIF p_raise THEN
        RAISE EXCEPTION 'canceling statement due to user request (during a page of job %: its '
                        'attempt was counted and the job queued again)', v_note
            USING ERRCODE = '57014',
            HINT = 'The job goes on at the next pgjobs.run or run_job; pgjobs.pause or '
                   'pgjobs.cancel stops it instead.';
    END IF;
    RETURN NULL;
END
$$;
