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
-- A thin shell, like pgjobs.run (no `SET search_path`: it would forbid
-- COMMIT): only pgjobs.* calls of pinned functions, qualified types,
-- COMMIT and IS NULL tests.
DECLARE
    v_job pgjobs.jobs;
BEGIN
    v_job := pgjobs._run_job_claim(p_id);
    COMMIT;
    CALL pgjobs._run_claimed(v_job.id, v_job.worker, NULL);
END
$$;

COMMENT ON PROCEDURE pgjobs.run_job(bigint) IS
'Runs one delete or backfill job to completion now, one COMMIT per page. P0002 for an unknown '
'id; 55006 if another worker holds it or an earlier writing job of its scope is pending.';
