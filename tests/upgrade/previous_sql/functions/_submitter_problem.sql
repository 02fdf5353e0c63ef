CREATE OR REPLACE FUNCTION pgjobs._submitter_problem(
    p_job pgjobs.jobs,
    p_reg pgjobs.target_registry,
    OUT message text,
    OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What the role that submitted p_job lacks now of what its job needs, in a
-- form that does not raise: the message and hint of the 42501 that
-- pgjobs._require_submitter raises from it, or both NULL when the
-- submitter may go on. The claim (pgjobs._requeue_problem) fails a job on
-- it without an exception block. First the very role that submitted
-- (pgjobs._submitter_identity_problem: its oid and name, one lookup), then
-- its grants (pgjobs._grant_problem, which does not look it up again).
-- The privilege is the submit's (pgjobs._kind_privilege); a delete or
-- backfill needs SELECT too (it reads the rows it selects); an import needs
-- INSERT on its scope column (column-level grants count) and, with
-- on_duplicate update, UPDATE on some column and SELECT on the columns ON
-- CONFLICT DO UPDATE reads. Locks nothing.
DECLARE
    v_problem record;
    -- The name the submitter goes by now (renamed since the submit, its
    -- job still acts with its rights): pgjobs._submitter_name, by oid.
    v_role name := pgjobs._submitter_name(p_job.submitted_by, p_job.submitted_by_oid);
BEGIN
    -- The very role that submitted: one dropped and created again under the
    -- name is someone else, and its rights are not the job's. A job without
    -- an oid is no role's (pgjobs._is_submitter, migration 0180): asked for
    -- oid 0, which no role has, so it runs with nobody's rights.
    v_problem := pgjobs._submitter_identity_problem(v_role, coalesce(p_job.submitted_by_oid, 0));
    IF v_problem.message IS NULL THEN
        IF p_job.kind = 'import' THEN
            v_problem := pgjobs._grant_problem(v_role, p_job.target, 'INSERT',
                                               ARRAY[p_reg.scope_column::text]);
            IF v_problem.message IS NULL AND p_job.payload ->> 'on_duplicate' = 'update' THEN
                v_problem := pgjobs._grant_problem(v_role, p_job.target, 'UPDATE',
                                                   '{}'::text[]);
                IF v_problem.message IS NULL THEN
                    v_problem := pgjobs._grant_problem(v_role, p_job.target,
                        'SELECT', coalesce(pgjobs._import_conflict_columns(p_reg), '{}'::text[])
                                  || p_reg.scope_column::text);
                END IF;
            END IF;
        ELSE
            -- One call for both privileges of a delete or backfill: this runs
            -- before pages.
            v_problem := pgjobs._grant_problem(v_role, p_job.target,
                pgjobs._kind_privilege(p_job.kind)
                || CASE WHEN p_job.kind = ANY (pgjobs._engine_kinds()) THEN ',SELECT' ELSE '' END,
                NULL);
        END IF;
    END IF;
    message := v_problem.message;
    hint := v_problem.hint;
END
$$;
