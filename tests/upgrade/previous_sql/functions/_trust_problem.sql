CREATE OR REPLACE FUNCTION pgjobs._trust_problem(p_target regclass,
                                                 OUT message text,
                                                 OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- Why pgjobs, running as current_user, must not act on p_target, in a form
-- that does not raise: the message and hint of the 42501 that
-- pgjobs._require_trusted raises from it, or both NULL when the target is
-- trusted. A target is refused when its code would run with rights its
-- authors do not have (pgjobs._untrusted_roles: owners of the table, its
-- partitions, triggers, defaults, constraints, policies, index
-- expressions, column types and domain checks, and roles holding TRIGGER
-- or REFERENCES on it), and when its row-level security policies would confine
-- current_user itself (a job would silently miss rows). The claim
-- (pgjobs._requeue_problem) fails a job on it without an exception block.
-- Generic plans (plan_cache_mode), as
-- pgjobs._untrusted_roles says why: its catalog lookups were re-planned on
-- every call. Locks nothing.
DECLARE
    v_role text;
    v_reason text;
BEGIN
    SELECT u.role_name, u.reason INTO v_role, v_reason
      FROM pgjobs._untrusted_roles(p_target) u
     LIMIT 1;
    IF FOUND THEN
        message := format('pgjobs refuses target %s: role %s (which %s) lacks the rights of '
                          'role %s, which pgjobs runs as here', p_target, v_role, v_reason,
                          current_user);
        hint := 'Run pgjobs (own its schema and functions, run its engine) as a role with no '
                'more rights than the owners of its targets, e.g. the role that owns them, '
                'not a superuser; see docs/operations.md. SELECT * FROM pgjobs.doctor() '
                'lists every untrusted target.';
        RETURN;
    END IF;
    -- pgjobs' own role confined by a policy on the target would see (and
    -- delete, update, export, count) only part of a scope and call it done.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                WHERE c.oid = p_target AND c.relrowsecurity
                  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                        WHERE r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls)) THEN
        message := format('pgjobs refuses target %s: its row-level security policies apply to '
                          'role %s, which pgjobs runs as here, so a job would see only part of '
                          'a scope', p_target, current_user);
        hint := 'Run pgjobs as the table''s owner (and do not FORCE ROW LEVEL SECURITY on '
                'it), or give the role pgjobs runs as BYPASSRLS; see docs/operations.md.';
    END IF;
END
$$;
