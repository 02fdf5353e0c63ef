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
-- false). Empty: the target is trusted (pgjobs._require_trusted).
-- PL/pgSQL cannot enter a security-restricted operation as VACUUM does, and
-- a SET ROLE to the owner could be undone by the owner's own code, so
-- pgjobs refuses such targets instead of running their code.
--
-- Which roles could: pgjobs._reach_roles (the walk, and what it covers).
BEGIN
    RETURN QUERY
    SELECT DISTINCT ON (1)
           CASE WHEN r.role_oid = 0 THEN 'PUBLIC'
                ELSE (SELECT a.rolname::text FROM pg_roles a WHERE a.oid = r.role_oid) END,
           r.why
      FROM pgjobs._reach_roles(p_target) r
     WHERE r.role_oid = 0 OR NOT pg_has_role(r.role_oid, p_as, 'USAGE')
     -- A role's first reason names code it has (a table, a function) before
     -- a REFERENCES it could add some with.
     ORDER BY 1, r.why LIKE 'holds REFERENCES %', 2;
END
$$;
