CREATE OR REPLACE FUNCTION pgjobs._row_security_rule(p_target regclass, p_role name,
                                                     p_registered boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether row-level security on p_target confines p_role: the table has RLS
-- enabled, the role is not a superuser nor BYPASSRLS, it is not the owner
-- (or FORCE ROW LEVEL SECURITY is set), and no administrator registered the
-- target with {"ignore_row_security": true}. pgjobs then acts for that role
-- nowhere on the target (pgjobs._require refuses; policy jobs_client_read
-- hides its jobs; pgjobs.targets hides it): its functions run as the engine
-- and could not apply the role's policies. The one place this rule lives.
-- p_registered false: the registration is not read (the answer is the
-- catalog's alone, as for a table registered without ignore_row_security):
-- what pgjobs._row_security_confines and pgjobs._confined_targets tell a
-- client about a table that the role asked about may not SELECT, so that
-- they never say whether pgjobs knows it. Not executable by clients: the
-- engine's own checks call it (pgjobs._grant_problem, pgjobs._controlled_job)
-- as pgjobs' owner. Locks nothing.
-- PL/pgSQL rather than SQL so that its plan is cached for the session: a
-- SQL function with SET clauses is planned again on every call, a third
-- of a millisecond on every read (pgjobs.visible) and every page.
-- Most tables have no row-level security: one read of the table's flag
-- answers for them, before the statement below (three subqueries, one over
-- the view pg_roles, which the executor sets up whole on every call even
-- when the first one answers: ~20-30 us of every read; issue 11). The
-- statement still tests the flag itself: it is the rule.
DECLARE
    v_row_security boolean;
BEGIN
    SELECT c.relrowsecurity INTO v_row_security FROM pg_catalog.pg_class c WHERE c.oid = p_target;
    IF NOT coalesce(v_row_security, false) THEN
        RETURN false;  -- no such table, or no row-level security on it
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                    WHERE c.oid = p_target AND c.relrowsecurity
                      AND (c.relforcerowsecurity
                           OR NOT pg_catalog.pg_has_role(p_role, c.relowner, 'USAGE')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                        WHERE r.rolname = p_role AND (r.rolsuper OR r.rolbypassrls))
       AND NOT (p_registered
                AND coalesce((SELECT (g.options ->> 'ignore_row_security')::boolean
                                FROM pgjobs.target_registry g WHERE g.target = p_target),
                             false));
END
$$;
