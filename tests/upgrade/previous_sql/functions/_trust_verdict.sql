CREATE OR REPLACE FUNCTION pgjobs._trust_verdict(p_target regclass,
                                                 OUT message text,
                                                 OUT hint text,
                                                 OUT roles jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- The trust check of p_target for pgjobs running as current_user, from one
-- walk of its reach (pgjobs._reach_roles): message and hint, the 42501
-- that pgjobs._require_trusted raises (both NULL when the target is
-- trusted), and roles, the oids of every role in the reach (PUBLIC left
-- out: it is never trusted), ascending. A target is refused when its code
-- would run with rights its authors do not have (a role of the reach that
-- lacks current_user's rights: owners of the table, its partitions,
-- triggers, defaults, constraints, policies, index expressions, column
-- types and domain checks, and roles holding TRIGGER or REFERENCES on it;
-- the first one by name is named), and when its row-level security
-- policies would confine current_user itself (a job would silently miss
-- rows). roles is what a delete or backfill page's full check
-- (pgjobs._run_page) keeps in its verdict, whose next pages ask again
-- whether each still has the rights (pgjobs._verdict_roles_hold): the
-- full check walks the reach once for both. Every other check calls it
-- too (pgjobs._require_trusted, the claim's pgjobs._requeue_problem) and
-- ignores roles; pgjobs._trust_problem is its form without them. Generic
-- plans (plan_cache_mode), as pgjobs._reach_roles says why. Locks nothing.
DECLARE
    v_untrusted bigint;
    v_role text;
    v_reason text;
BEGIN
    SELECT count(*) FILTER (WHERE r.lacks_rights),
           (array_agg(r.role_name ORDER BY r.n) FILTER (WHERE r.lacks_rights))[1],
           (array_agg(r.reason ORDER BY r.n) FILTER (WHERE r.lacks_rights))[1],
           coalesce(jsonb_agg(r.role_oid::bigint ORDER BY r.role_oid)
                        FILTER (WHERE r.role_oid <> 0 AND r.role_name IS NOT NULL),
                    '[]'::jsonb)
      INTO v_untrusted, v_role, v_reason, roles
      FROM pgjobs._reach_roles(p_target)
           WITH ORDINALITY r (role_oid, role_name, reason, lacks_rights, n);
    IF v_untrusted > 0 THEN
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
