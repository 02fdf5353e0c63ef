CREATE OR REPLACE FUNCTION pgjobs._confined_targets(p_role name)
RETURNS regclass[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The tables on which row-level security confines p_role, as one array.
-- Policy jobs_client_read on pgjobs.jobs (migration 0024) calls it once per
-- statement, as an InitPlan, with CURRENT_USER, and compares each job's
-- target with it, instead of asking pgjobs._row_security_confines once per
-- job row (12 s for a client's count(*) over 100k jobs). SECURITY INVOKER
-- on purpose: current_user here is the role asking, and the SECURITY
-- DEFINER pgjobs._confined_targets_as refuses any caller but this function
-- (pgjobs._enter). Only about the caller or a role whose privileges it has
-- (else 42501); a table that role may not SELECT is listed whenever row
-- security would confine it, registered or not (the policy shows no other
-- role's job on such a table anyway). Locks nothing.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._confined_targets_as(current_user, p_role) AS sealed_call;
END
$$;
