CREATE OR REPLACE PROCEDURE pgjobs._run_claimed(p_id pg_catalog.int8, p_worker pg_catalog.text,
                                                p_deadline pg_catalog.timestamptz)
LANGUAGE plpgsql
AS $$
-- The page loop of the runner procedures, the one both pgjobs.run and
-- pgjobs.run_job use: works the claimed job p_id (p_worker: the claim's
-- identity, on which every call fences) one step at a time
-- (pgjobs._run_step: a page, or a throttle hold, or the release at
-- p_deadline; NULL: no deadline), COMMITting after each, until the step
-- says this job is over for this runner (done, failed, canceled, paused,
-- lost or released). A crash loses at most the page in flight.
-- A thin shell (no `SET search_path`: it would forbid COMMIT), like its
-- callers: only pgjobs.* calls of pinned functions, qualified types, COMMIT
-- and IS NULL tests (tests/test_trust_search_path.py checks the body).
DECLARE
    v_state pg_catalog.text;
BEGIN
    -- A user's cancel a page caught (pgjobs._fail_attempt notes it): raised
    -- once the attempt it counted is committed (pgjobs._run_canceled).
    v_state := pgjobs._run_canceled(false);  -- NULL: the first step's
    LOOP
        EXIT WHEN p_id IS NULL;  -- nothing claimed (pgjobs.run_job of a finished job)
        v_state := pgjobs._run_step(p_id, p_worker, p_deadline, v_state);
        COMMIT;
        EXIT WHEN v_state IS NULL;
    END LOOP;
    v_state := pgjobs._run_canceled(true);
END
$$;
