CREATE OR REPLACE FUNCTION pgjobs._control_allowed(p_job pgjobs.jobs)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether the calling role (pgjobs._caller) may control job p_job (cancel,
-- pause, resume, retry): the checks of pgjobs._controlled_job, in the form
-- that does not raise (as pgjobs._role_problem is pgjobs._require_role's),
-- each asked through the function _controlled_job asks: the job is visible
-- to the caller as policy jobs_client_read has it (an admin; or the
-- submitter, pgjobs._is_submitter, or a role that reads every column of the
-- target and no row-level security confines, pgjobs._reads_every_column
-- and pgjobs._row_security_rule; and of a scope in the session's
-- pgjobs.allowed_scopes, pgjobs._scope_allowed), its scope is allowed (an
-- admin too, pgjobs._require_scope), and the caller is an admin, the
-- submitter, or holds the privilege the job's kind needs on its target
-- (pgjobs._kind_privilege, pgjobs._role_problem: pgjobs._require's check).
-- tests/test_ui_actions_allowed.py holds the two to one answer for every
-- role and job it makes. A NULL job (no such row): false. Locks nothing.
DECLARE
    v_caller name := pgjobs._caller();
    v_admin boolean;
    v_submitter boolean;
BEGIN
    IF p_job.id IS NULL THEN
        RETURN false;
    END IF;
    v_admin := pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER');
    v_submitter := pgjobs._is_submitter(v_caller, p_job.submitted_by, p_job.submitted_by_oid);
    IF NOT pgjobs._scope_allowed(p_job.target, p_job.scope) THEN
        RETURN false;  -- hidden from a client (P0002), refused to an admin (42501)
    END IF;
    IF v_admin OR v_submitter THEN
        RETURN true;
    END IF;
    RETURN pgjobs._reads_every_column(v_caller, p_job.target)
       AND NOT pgjobs._row_security_rule(p_job.target, v_caller)
       AND (pgjobs._role_problem(v_caller, p_job.target,
                                 pgjobs._kind_privilege(p_job.kind), NULL)).message IS NULL;
END
$$;
