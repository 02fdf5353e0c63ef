CREATE OR REPLACE FUNCTION pgjobs._verdict_roles_hold(p_job pgjobs.jobs,
                                                      p_reg pgjobs.target_registry,
                                                      p_roles jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a delete or backfill page's verdict (pgjobs._run_page) still
-- holds as far as roles go: every role of p_roles (the roles whose code its
-- full check found in the target's reach, pgjobs._trust_verdict's roles:
-- the roles pgjobs._untrusted_roles names with p_as NULL) still has
-- the rights of current_user, the role the page runs as; row-level
-- security on the target does not confine current_user; and the submitter
-- still may do the job (pgjobs._submitter_problem). Role commands (GRANT
-- role TO, REVOKE role FROM, ALTER ROLE [NO]SUPERUSER, [NO]INHERIT,
-- [NO]BYPASSRLS, DROP ROLE) fire no event trigger, so the DDL fence's epoch
-- does not move for them: asked on every page that runs on a verdict, so a
-- page after one that took trust away checks in full (and fails the job)
-- instead of running up to 1 s more. What the reach is (which objects,
-- whose) changes only by DDL, which moves the epoch, or by REASSIGN OWNED,
-- which keeps the 1 s window (docs/engine.md). The same rules as the full
-- check's (pg_has_role USAGE, pgjobs._row_security_rule, the submitter's),
-- over the roles it found, not the walk: a few lookups in the backend's
-- role caches. false, not an error, when p_roles is not an array of oids
-- (whole numbers in oid's range; a verdict of an older release has none):
-- the page checks in full. Locks nothing.
BEGIN
    -- Each an oid: a whole number 0-4294967295 (1.5, -1 or 1e30 would
    -- raise at the cast below, not send the page to the full check).
    IF jsonb_typeof(p_roles) IS DISTINCT FROM 'array'
       OR EXISTS (SELECT FROM jsonb_array_elements(p_roles) a
                   WHERE CASE WHEN jsonb_typeof(a) = 'number'
                              THEN a::text !~ '^[0-9]{1,10}$' OR a::numeric > 4294967295
                              ELSE true END) THEN
        RETURN false;
    END IF;
    RETURN NOT EXISTS (SELECT FROM jsonb_array_elements_text(p_roles) a (role_oid)
                        WHERE pg_has_role(a.role_oid::oid, current_user, 'USAGE') IS NOT TRUE)
       AND NOT pgjobs._row_security_rule(p_job.target, current_user, false)
       AND (pgjobs._submitter_problem(p_job, p_reg)).message IS NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._verdict_roles_hold(pgjobs.jobs, pgjobs.target_registry, jsonb) IS
'Whether a page''s trust verdict still holds after role commands: the roles in the target''s reach '
'still have the acting role''s rights, row-level security does not confine it, the submitter may '
'still do the job.';
