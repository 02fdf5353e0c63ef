CREATE OR REPLACE FUNCTION pgjobs._allowed_scope_keys()
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The keys '<target oid>:<scope>' of the jobs a session with
-- pgjobs.allowed_scopes set may see on registered targets
-- (pgjobs._allowed_scope_keys_as), for policy jobs_client_read (migration
-- 0024), which calls it once per statement (an InitPlan) instead of
-- pgjobs._scope_allowed per row: 7 s for a tenant's count(*) over 100k
-- jobs before. Only targets the caller may SELECT or has submitted jobs on
-- get keys. SECURITY INVOKER on purpose: current_user here is the role the
-- policy is evaluated for, and the SECURITY DEFINER
-- pgjobs._allowed_scope_keys_as (which may read pgjobs.target_registry)
-- refuses any caller but this function (pgjobs._enter). Locks nothing.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._allowed_scope_keys_as(current_user) AS sealed_call;
END
$$;
