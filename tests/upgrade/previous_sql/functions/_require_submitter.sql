CREATE OR REPLACE FUNCTION pgjobs._require_submitter(
    p_job pgjobs.jobs,
    p_reg pgjobs.target_registry)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Run-time check of the role that submitted p_job: the engine and the worker
-- act on the target with pgjobs' rights, so a privilege revoked after the
-- submit (or a role dropped, or a row-level security policy turned on) must
-- stop the job before it touches another row. Called before every page of a
-- delete or backfill (pgjobs._run_page), every chunk of an export
-- (pgjobs.export_chunk_sql) and when an import starts (pgjobs.import_prepare;
-- each batch's statement checks the very columns it writes,
-- pgjobs._import_insert_sql). What it checks is pgjobs._submitter_problem's
-- (the form that does not raise: the claim's). Raises 42501 with its
-- message and hint: the caller fails the job, not retried. Locks nothing.
DECLARE
    v_problem record;
BEGIN
    v_problem := pgjobs._submitter_problem(p_job, p_reg);
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;
END
$$;
