CREATE OR REPLACE PROCEDURE pgjobs.run(p_budget pg_catalog.interval DEFAULT '50 seconds')
LANGUAGE plpgsql
AS $$
-- The engine's loop, called by pg_cron (or `pgjobs run --loop`): claims
-- delete and backfill jobs and works through their pages until the budget
-- is spent or nothing is left, COMMITting after the claim and after every
-- page, so each page is one short transaction and a crash loses at most the
-- page in flight. A job still unfinished when the budget runs out is
-- released to the queue with its cursor (no attempt counted) for the next
-- run to resume. Every call fences on the identity the claim returned.
-- The pages are pgjobs._run_claimed's loop, the one pgjobs.run_job uses.
--
-- A thin shell: PostgreSQL forbids COMMIT in a procedure with a `SET
-- search_path` clause, so this body resolves names on the caller's path
-- (pg_cron's, a client's). It therefore holds no logic and names nothing
-- unqualified: only pgjobs.* calls of pinned functions, schema-qualified
-- types, COMMIT, and IS NULL tests (no function or operator is looked up;
-- tests/test_trust_search_path.py checks the body).
DECLARE
    v_deadline pg_catalog.timestamptz;
    v_name pg_catalog.text;
    v_job pgjobs.jobs;
BEGIN
    -- Notes the run for pgjobs.doctor (pgjobs._engine_seen), then the deadline.
    v_deadline := pgjobs._run_start(p_budget);
    v_name := pgjobs._runner_name('run');
    LOOP
        v_job := pgjobs._run_next(v_name, v_deadline);
        COMMIT;
        EXIT WHEN v_job.id IS NULL;
        CALL pgjobs._run_claimed(v_job.id, v_job.worker, v_deadline);
    END LOOP;
END
$$;

COMMENT ON PROCEDURE pgjobs.run(interval) IS
'The engine loop: claims delete/backfill jobs and runs their pages, one COMMIT per page, until '
'p_budget is spent or no work is left. pg_cron calls it; so does `pgjobs run --loop`.';
