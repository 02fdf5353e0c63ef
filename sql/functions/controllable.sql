CREATE OR REPLACE FUNCTION pgjobs.controllable(p_ids bigint[])
RETURNS bigint[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The ids among p_ids of the jobs the caller may cancel, pause, resume and
-- retry, in id order: the rule those four check (pgjobs._controlled_job),
-- asked of every job at once and without raising
-- (pgjobs._control_allowed). What a job's state allows is not asked (the
-- function itself says, 55000); nor, for resume and retry, whether its
-- submitter still holds what the submit needed (pgjobs._require_requeue).
-- An id the caller may not see, or of no job, is left out as one it may
-- not control. For the dashboard (pgjobs ui), which offers a job's actions
-- only to a role that may use them. NULL raises 22023; more than 10,000
-- ids 54000. For pgjobs_client. Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._controllable_as checks that role's
-- rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._controllable_as(current_user, p_ids) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.controllable(bigint[]) IS
'The ids among these of the jobs the caller may cancel, pause, resume and retry (the rule '
'those four check), in id order; a job it may not see is left out. Whether a job''s state '
'allows an action is not asked. At most 10,000 ids. Acts on nothing.';
