CREATE OR REPLACE FUNCTION pgjobs._row_security_confines(p_target regclass, p_role name)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether row-level security on p_target confines p_role
-- (pgjobs._row_security_rule, the one place that rule lives), for view
-- pgjobs.targets, which calls it as the client with CURRENT_USER. Only about
-- the caller or a role whose privileges it has (else 42501,
-- pgjobs._require_self); on a table that role may not SELECT the
-- registration is not read, so the answer never says whether pgjobs knows
-- the table (the view only asks about tables the caller may SELECT).
-- SECURITY INVOKER on purpose: current_user here is the role asking, and
-- the SECURITY DEFINER pgjobs._row_security_confines_as (which may read
-- pgjobs.target_registry) refuses any caller but this function
-- (pgjobs._enter). Locks nothing.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._row_security_confines_as(current_user, p_target, p_role) AS sealed_call;
END
$$;
