CREATE OR REPLACE PROCEDURE pgjobs.run_job(p_id bigint)
LANGUAGE plpgsql
AS $$
-- Runs one delete or backfill job to completion now, in this session: it
-- claims the job (the gate still applies), then works its pages with one
-- COMMIT per page. A job that already finished is left as it is.
-- Raises P0002 for an unknown id, 22023 for a kind pgjobs does not run
-- in the database, 55006 when another worker holds it or a writing job of
-- the same (target, scope) must go first.
-- No `SET search_path` clause (it would forbid COMMIT); names are qualified.
DECLARE
    v_worker text := format('run_job:%s:%s', pg_catalog.pg_backend_pid(),
                            pg_catalog.left(pg_catalog.md5(pg_catalog.random()::text), 6));
    v_job pgjobs.jobs;
    v_state text;
BEGIN
    v_job := pgjobs._claim_id(p_id, v_worker);
    COMMIT;
    IF v_job.status IS DISTINCT FROM 'running' THEN
        RETURN;  -- already finished
    END IF;
    LOOP
        v_state := pgjobs._run_page(p_id, v_worker);
        COMMIT;
        EXIT WHEN v_state NOT IN ('more', 'retry');
        IF v_state = 'retry' THEN
            PERFORM pg_catalog.pg_sleep(0.05);
        END IF;
    END LOOP;
END
$$;

COMMENT ON PROCEDURE pgjobs.run_job(bigint) IS
'Runs one delete or backfill job to completion now, one COMMIT per page. P0002 for an unknown '
'id; 55006 if another worker holds it or an earlier writing job of its scope is pending.';
