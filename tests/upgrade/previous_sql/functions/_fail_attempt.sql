-- The four-argument version of releases before p_timed_out: gone in the
-- same transaction that creates this one (pgjobs migrate applies every
-- function file in one), so a page never finds neither. A caller of the
-- previous release that passes four arguments (a page in flight across
-- the upgrade) gets this one with p_timed_out false: a cancel is a user's
-- unless told otherwise.
DROP FUNCTION IF EXISTS pgjobs._fail_attempt(bigint, text, text, text);

CREATE OR REPLACE FUNCTION pgjobs._fail_attempt(p_id bigint, p_worker text, p_error text,
                                                p_state text, p_timed_out boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Ends the attempt of delete or backfill job p_id (held by p_worker, the
-- claim's identity) on an error of SQLSTATE p_state that a page caught
-- (p_error: what the job's error says): pgjobs.fail, retried with backoff
-- when the class is transient (pgjobs.retryable_sqlstate, the one policy),
-- failed for good otherwise. A collect job's addresses (job_batches) serve
-- a retry and stay while the job may run again (queued, running, paused);
-- a job that ended needs none. The one ending of a page's error and of the
-- typo guard's walk's (pgjobs._run_page), which used to be written out in
-- both. Fenced as pgjobs.fail is (a caller that lost the lease changes
-- nothing). Locks: the job row. Returns 'failed', what the page returns.
-- A cancel a user asked for (57014, p_timed_out false: not a
-- statement_timeout, which the caller tells by time,
-- pgjobs._statement_timed_out, never by the message, which follows
-- lc_messages) is noted for the runner procedure to raise once this is
-- committed (pgjobs._run_canceled): caught here, it used to be swallowed.
BEGIN
    IF p_state = '57014' AND NOT coalesce(p_timed_out, false) THEN
        PERFORM set_config('pgjobs.canceled', p_id::text, false);
    END IF;
    PERFORM pgjobs.fail(p_id, p_worker, p_error, pgjobs.retryable_sqlstate(p_state));
    DELETE FROM pgjobs.job_batches b
     WHERE b.job_id = p_id
       AND NOT EXISTS (SELECT FROM pgjobs.jobs j
                        WHERE j.id = p_id AND j.status IN ('queued', 'running', 'paused'));
    RETURN 'failed';
END
$$;
