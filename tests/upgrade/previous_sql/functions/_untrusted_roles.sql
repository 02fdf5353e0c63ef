CREATE OR REPLACE FUNCTION pgjobs._untrusted_roles(p_target regclass,
                                                   p_as name DEFAULT current_user)
RETURNS TABLE (role_name text, reason text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
-- Which roles could make their own code run while pgjobs, acting as p_as
-- (default current_user), reads or writes p_target's rows or evaluates its
-- types, and lack p_as's rights (pg_has_role(role, p_as, 'USAGE') is
-- false; PUBLIC always), with the first reason of each, by name. Empty:
-- the target is trusted. p_as NULL: every such role, whatever its rights
-- (PUBLIC too). What pgjobs.doctor and operators read; the walk and the
-- rule are pgjobs._reach_roles', which the trust check
-- (pgjobs._trust_verdict) and the scope checks call directly. Locks
-- nothing.
BEGIN
    RETURN QUERY
    SELECT DISTINCT ON (r.role_name) r.role_name, r.reason
      FROM pgjobs._reach_roles(p_target, p_as)
           WITH ORDINALITY r (role_oid, role_name, reason, lacks_rights, n)
     WHERE p_as IS NULL OR r.lacks_rights
     ORDER BY r.role_name, r.n;
END
$$;
