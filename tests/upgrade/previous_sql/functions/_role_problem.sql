CREATE OR REPLACE FUNCTION pgjobs._role_problem(
    p_role name,
    p_target regclass,
    p_privilege text,
    p_columns text[],
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
-- The one privilege check of a role acting on p_target through pgjobs, in
-- a form that does not raise: the first thing p_role lacks, as the message
-- and hint of the 42501 that pgjobs._require_role raises from it, or both
-- NULL when p_role may act. pgjobs._require_role (submit, read path, the
-- columns of an import batch) raises it. A role that no longer exists
-- (pgjobs._submitter_identity_problem, by name) is the first problem; then
-- what pgjobs._grant_problem finds (the privileges, each of p_privilege's
-- comma-separated list, on the table or on p_columns, and row-level
-- security). The claim and the pages check a job's submitter through
-- pgjobs._submitter_problem, which looks the role up by oid and name and
-- asks pgjobs._grant_problem itself. Locks nothing.
DECLARE
    v_problem record;
BEGIN
    -- Assignments, not SELECT ... FROM: a plain expression skips the
    -- executor's start and end, and this runs in every read (issue 11).
    v_problem := pgjobs._submitter_identity_problem(p_role, NULL);
    IF v_problem.message IS NULL THEN
        v_problem := pgjobs._grant_problem(p_role, p_target, p_privilege, p_columns);
    END IF;
    message := v_problem.message;
    hint := v_problem.hint;
END
$$;
