CREATE OR REPLACE FUNCTION pgjobs._require_role(
    p_role name,
    p_target regclass,
    p_privilege text,
    p_columns text[])
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one privilege check of a role acting on p_target through pgjobs: at
-- submit (pgjobs._require, for the caller) and again when the worker or the
-- engine runs the job (pgjobs._require_submitter, for the role that
-- submitted it: a grant revoked meanwhile stops the job before it writes).
-- What it checks, and the first thing missing it names, is
-- pgjobs._role_problem's (the form that does not raise: the claim's).
-- Raises 42501 with that message and hint: a role that no longer exists, a
-- missing privilege, a row-level security policy that would confine the
-- role. Locks nothing.
DECLARE
    v_problem record;
BEGIN
    v_problem := pgjobs._role_problem(p_role, p_target, p_privilege, p_columns);
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;
END
$$;
