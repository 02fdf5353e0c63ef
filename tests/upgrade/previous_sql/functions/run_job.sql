CREATE OR REPLACE PROCEDURE pgjobs.run_job(p_id pg_catalog.int8)
LANGUAGE plpgsql
AS $$
-- Runs one delete or backfill job to completion now, in this session: it
-- claims the job (the gate still applies), then works its pages with one
-- COMMIT per page, fenced on the identity the claim returned (the page
-- loop is pgjobs._run_claimed, the one pgjobs.run uses). A job that
-- already finished is left as it is.
-- Raises P0002 for an unknown id, 22023 for a kind pgjobs does not run
-- in the database, 55006 when another worker holds it or a writing job of
-- the same (target, scope) must go first.
-- The session's statement_timeout, which times the whole CALL, is its
-- budget (pgjobs._timeout_deadline): the call hands the job back with its
-- cursor before the timer (pgjobs.release: queued, due at once, no
-- attempt counted) and returns with a WARNING saying so
-- (pgjobs._run_job_end); the timer used to cancel the page in flight,
-- which failed the job's attempt (retried after a backoff, failed for
-- good after max_attempts calls). No statement_timeout: no deadline.
-- A thin shell, like pgjobs.run (no `SET search_path`: it would forbid
-- COMMIT): only pgjobs.* calls of pinned functions, qualified types,
-- COMMIT and IS NULL tests.
DECLARE
    v_job pgjobs.jobs;
    v_deadline pg_catalog.timestamptz;
BEGIN
    v_deadline := pgjobs._timeout_deadline();
    v_job := pgjobs._run_job_claim(p_id);
    COMMIT;
    CALL pgjobs._run_claimed(v_job.id, v_job.worker, v_deadline);
    v_job := pgjobs._run_job_end(v_job, v_deadline);
END
$$;

COMMENT ON PROCEDURE pgjobs.run_job(bigint) IS
'Runs one delete or backfill job to completion now, one COMMIT per page; under a session '
'statement_timeout, hands it back with its cursor before the timer (a WARNING says so). P0002 '
'for an unknown id; 55006 if another worker holds it or an earlier writing job of its scope is '
'pending.';
